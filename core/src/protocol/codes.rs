//! The protocol's codes (PROTOCOL.md §6): WebSocket close codes that end a
//! connection, and `error` codes that fail one command.

use core::fmt;

/// A WebSocket close code (PROTOCOL.md §6), with what it tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// 1000: normal close.
    Normal,
    /// 1001: the server is going away (shutdown); reconnect with backoff.
    GoingAway,
    /// 1002: a malformed WebSocket frame.
    ProtocolError,
    /// 1003: the wrong frame kind for the sub-protocol.
    WrongFrameKind,
    /// 1007: invalid UTF-8 in a text frame.
    InvalidUtf8,
    /// 1009: a frame larger than `max_frame`.
    TooLarge,
    /// 1011: internal error.
    Internal,
    /// 1012: service restart; reconnect with backoff and recover.
    Restart,
    /// 1013: over capacity, try again later.
    TryAgainLater,
    /// 4001: missing, malformed or rejected token.
    Unauthorized,
    /// 4002: no `auth` frame in time.
    AuthTimeout,
    /// 4003: valid token, but not allowed to connect.
    Forbidden,
    /// 4004: the token expired.
    TokenExpired,
    /// 4008: over the rate limit, persistently.
    RateLimited,
    /// 4009: the outbound queue overflowed.
    SlowConsumer,
    /// 4010: disconnected by the application; do not reconnect with the same token.
    Disconnected,
    /// Another valid code (a peer's close code, echoed).
    Other(u16),
}

impl CloseCode {
    /// The number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::GoingAway => 1001,
            CloseCode::ProtocolError => 1002,
            CloseCode::WrongFrameKind => 1003,
            CloseCode::InvalidUtf8 => 1007,
            CloseCode::TooLarge => 1009,
            CloseCode::Internal => 1011,
            CloseCode::Restart => 1012,
            CloseCode::TryAgainLater => 1013,
            CloseCode::Unauthorized => 4001,
            CloseCode::AuthTimeout => 4002,
            CloseCode::Forbidden => 4003,
            CloseCode::TokenExpired => 4004,
            CloseCode::RateLimited => 4008,
            CloseCode::SlowConsumer => 4009,
            CloseCode::Disconnected => 4010,
            CloseCode::Other(code) => code,
        }
    }

    /// The code with this number (`Other` for those without a meaning here).
    pub const fn from_code(code: u16) -> Self {
        match code {
            1000 => CloseCode::Normal,
            1001 => CloseCode::GoingAway,
            1002 => CloseCode::ProtocolError,
            1003 => CloseCode::WrongFrameKind,
            1007 => CloseCode::InvalidUtf8,
            1009 => CloseCode::TooLarge,
            1011 => CloseCode::Internal,
            1012 => CloseCode::Restart,
            1013 => CloseCode::TryAgainLater,
            4001 => CloseCode::Unauthorized,
            4002 => CloseCode::AuthTimeout,
            4003 => CloseCode::Forbidden,
            4004 => CloseCode::TokenExpired,
            4008 => CloseCode::RateLimited,
            4009 => CloseCode::SlowConsumer,
            4010 => CloseCode::Disconnected,
            other => CloseCode::Other(other),
        }
    }

    /// Does a client stop here, rather than reconnect (PROTOCOL.md §6:
    /// 4001, 4003 and 4010 would fail the same way again)?
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            CloseCode::Unauthorized | CloseCode::Forbidden | CloseCode::Disconnected
        )
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// The code of an `error` frame (PROTOCOL.md §6): a command failed, the
/// connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 4000: a malformed frame or an unknown type.
    Malformed,
    /// 4003: not allowed on that room.
    Forbidden,
    /// 4004: the token expired (a command racing the expiry).
    TokenExpired,
    /// 4005: a bad room name.
    BadRoom,
    /// 4006: a limit was reached (rooms per connection, rooms in the hub,
    /// requests in flight).
    Limit,
    /// 4008: rate limited; the frame was dropped.
    RateLimited,
    /// 4013: the store is unavailable; nothing was accepted.
    Unavailable,
    /// Another code (from a newer server).
    Other(u16),
}

impl ErrorCode {
    /// The number on the wire.
    pub const fn code(self) -> u16 {
        match self {
            ErrorCode::Malformed => 4000,
            ErrorCode::Forbidden => 4003,
            ErrorCode::TokenExpired => 4004,
            ErrorCode::BadRoom => 4005,
            ErrorCode::Limit => 4006,
            ErrorCode::RateLimited => 4008,
            ErrorCode::Unavailable => 4013,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code with this number.
    pub const fn from_code(code: u16) -> Self {
        match code {
            4000 => ErrorCode::Malformed,
            4003 => ErrorCode::Forbidden,
            4004 => ErrorCode::TokenExpired,
            4005 => ErrorCode::BadRoom,
            4006 => ErrorCode::Limit,
            4008 => ErrorCode::RateLimited,
            4013 => ErrorCode::Unavailable,
            other => ErrorCode::Other(other),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1009, 1011, 1012, 1013, 3000, 4001, 4002,
        ]
        .into_iter()
        .chain([4003, 4004, 4008, 4009, 4010, 4999])
        {
            assert_eq!(CloseCode::from_code(code).code(), code);
        }
        for code in [4000, 4003, 4004, 4005, 4006, 4008, 4013, 4100] {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        assert!(CloseCode::from_code(4010).is_final());
        assert!(!CloseCode::from_code(4004).is_final());
        assert_eq!(CloseCode::from_code(3000), CloseCode::Other(3000));
    }
}
