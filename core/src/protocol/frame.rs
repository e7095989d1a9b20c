//! The frame types. Their serde derive *is* the postcard wire format
//! (PROTOCOL.md §9 "Postcard"): variant order and field order matter.

use serde::{Deserialize, Serialize};

use super::text::{Data, Seq, Text};

/// `recover: {epoch, offset}` of a `subscribe`: the last message the client saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recover<'a> {
    /// Epoch the client knows the room by.
    #[serde(borrow)]
    pub epoch: Text<'a>,
    /// Offset of the last message the client saw.
    pub offset: u64,
}

/// A frame from a client (PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientFrame<'a> {
    /// `auth`: credentials (first frame) or a token refresh.
    Auth {
        /// The JWT.
        #[serde(borrow)]
        token: Text<'a>,
    },
    /// `subscribe` to a room.
    Subscribe {
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Request id echoed in the reply.
        id: Option<u64>,
        /// Recovery position.
        #[serde(borrow)]
        recover: Option<Recover<'a>>,
        /// Ask for `join`/`leave` events.
        presence: Option<bool>,
    },
    /// `unsubscribe` from a room.
    Unsubscribe {
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Request id echoed in the reply.
        id: Option<u64>,
    },
    /// `publish` a payload to a room.
    Publish {
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Opaque payload (JSON text for JSON clients).
        #[serde(borrow)]
        data: Data<'a>,
        /// Request id; when given, the server answers `ack`.
        id: Option<u64>,
        /// Idempotency key (PROTOCOL.md §9): a later publish to the same room
        /// with the same key is acked with the first one's offset and not
        /// delivered again.
        #[serde(borrow)]
        key: Option<Text<'a>>,
    },
    /// `presence`: list the members of a room.
    Presence {
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Request id echoed in the reply.
        id: Option<u64>,
    },
    /// `history`: fetch stored messages.
    History {
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Request id echoed in the reply.
        id: Option<u64>,
        /// Exclusive lower bound (offset).
        since: Option<u64>,
        /// Maximum number of messages (default 100, clamped to 1000).
        limit: Option<u64>,
    },
    /// Application-level `ping`.
    Ping {
        /// Request id echoed in the `pong`.
        id: Option<u64>,
    },
}

impl ClientFrame<'_> {
    /// The request id the frame carried, if any.
    pub fn id(&self) -> Option<u64> {
        match self {
            ClientFrame::Auth { .. } => None,
            ClientFrame::Subscribe { id, .. }
            | ClientFrame::Unsubscribe { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::Presence { id, .. }
            | ClientFrame::History { id, .. }
            | ClientFrame::Ping { id } => *id,
        }
    }

    /// The wire name of the frame's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Subscribe { .. } => "subscribe",
            ClientFrame::Unsubscribe { .. } => "unsubscribe",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::Presence { .. } => "presence",
            ClientFrame::History { .. } => "history",
            ClientFrame::Ping { .. } => "ping",
        }
    }
}

/// `from` of a message: the publishing connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sender<'a> {
    /// Connection id of the publisher.
    #[serde(borrow)]
    pub client: Text<'a>,
    /// User id of the publisher, if authenticated.
    #[serde(borrow)]
    pub user: Option<Text<'a>>,
}

/// A `message` (also nested in `subscribed` and `history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageFrame<'a> {
    /// Room name.
    #[serde(borrow)]
    pub room: Text<'a>,
    /// The room's epoch.
    #[serde(borrow)]
    pub epoch: Text<'a>,
    /// The message's offset in the room.
    pub offset: u64,
    /// The publisher, or `None` for server-side publishes.
    #[serde(borrow)]
    pub from: Option<Sender<'a>>,
    /// Opaque payload.
    #[serde(borrow)]
    pub data: Data<'a>,
}

/// A presence member (`join`/`leave`/`presence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member<'a> {
    /// Connection id.
    #[serde(borrow)]
    pub client: Text<'a>,
    /// User id, if authenticated.
    #[serde(borrow)]
    pub user: Option<Text<'a>>,
    /// JSON text from the token's `info` claim.
    #[serde(borrow)]
    pub info: Option<Data<'a>>,
}

/// A frame from the server (PROTOCOL.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ServerFrame<'a> {
    /// First frame of an open session.
    Welcome {
        /// Connection id, unique across the cluster.
        #[serde(borrow)]
        client: Text<'a>,
        /// User id, or `None` for anonymous sessions.
        #[serde(borrow)]
        user: Option<Text<'a>>,
        /// Server ping interval in milliseconds.
        ping_interval_ms: u64,
        /// Protocol version (1).
        protocol: u64,
    },
    /// A published message.
    #[serde(borrow)]
    Message(MessageFrame<'a>),
    /// A member joined a room.
    Join {
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Who joined.
        #[serde(borrow)]
        member: Member<'a>,
    },
    /// A member left a room.
    Leave {
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Who left.
        #[serde(borrow)]
        member: Member<'a>,
    },
    /// Reply to `subscribe`.
    Subscribed {
        /// Request id.
        id: Option<u64>,
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// The room's epoch.
        #[serde(borrow)]
        epoch: Text<'a>,
        /// The room's latest offset.
        offset: u64,
        /// Whether `messages` is the full gap since the recovery position.
        recovered: bool,
        /// Replayed messages, oldest first.
        #[serde(borrow)]
        messages: Seq<'a, MessageFrame<'a>>,
    },
    /// Reply to `unsubscribe`.
    Unsubscribed {
        /// Request id.
        id: Option<u64>,
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
    },
    /// Reply to `publish` with an id.
    Ack {
        /// Request id.
        id: u64,
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Offset given to the message.
        offset: u64,
    },
    /// Reply to `presence`.
    Presence {
        /// Request id.
        id: Option<u64>,
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// Current members.
        #[serde(borrow)]
        members: Seq<'a, Member<'a>>,
    },
    /// Reply to `history`.
    History {
        /// Request id.
        id: Option<u64>,
        /// Room name.
        #[serde(borrow)]
        room: Text<'a>,
        /// The room's epoch.
        #[serde(borrow)]
        epoch: Text<'a>,
        /// The room's latest offset.
        offset: u64,
        /// Messages, oldest first.
        #[serde(borrow)]
        messages: Seq<'a, MessageFrame<'a>>,
    },
    /// Reply to `ping`.
    Pong {
        /// Request id.
        id: Option<u64>,
    },
    /// Reply to a refreshing (or late, anonymous-upgrading) `auth`.
    Authed {
        /// User id of the new token.
        #[serde(borrow)]
        user: Option<Text<'a>>,
    },
    /// A command failed; the connection stays open.
    Error {
        /// Request id of the failed command, when it could be read.
        id: Option<u64>,
        /// Error code (PROTOCOL.md §6).
        code: u16,
        /// Human-readable reason.
        #[serde(borrow)]
        reason: Text<'a>,
    },
}

impl ServerFrame<'_> {
    /// The wire name of the frame's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome { .. } => "welcome",
            ServerFrame::Message(_) => "message",
            ServerFrame::Join { .. } => "join",
            ServerFrame::Leave { .. } => "leave",
            ServerFrame::Subscribed { .. } => "subscribed",
            ServerFrame::Unsubscribed { .. } => "unsubscribed",
            ServerFrame::Ack { .. } => "ack",
            ServerFrame::Presence { .. } => "presence",
            ServerFrame::History { .. } => "history",
            ServerFrame::Pong { .. } => "pong",
            ServerFrame::Authed { .. } => "authed",
            ServerFrame::Error { .. } => "error",
        }
    }
}
