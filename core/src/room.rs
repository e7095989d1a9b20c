//! Room names and grant patterns (PROTOCOL.md §3, §7).

/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 128;

/// A room name stored inline.
pub type RoomName = heapless::String<MAX_ROOM_LEN>;

/// Is `b` allowed in a room name (`[A-Za-z0-9_.:@/-]`)?
pub const fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'/' | b'-')
}

/// Is `name` a valid room name (1–128 bytes of `[A-Za-z0-9_.:@/-]`)?
pub fn is_valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_ROOM_LEN && name.bytes().all(is_name_byte)
}

/// The namespace of a room: the part before the first `:`, or `""` (the
/// default namespace) when there is none.
pub fn namespace(room: &str) -> &str {
    match room.find(':') {
        Some(i) => &room[..i],
        None => "",
    }
}

/// Does grant `pattern` match `room`? A trailing `*` matches any suffix
/// (`chat:*` matches `chat:lobby`); otherwise the match is exact.
pub fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

/// Stores `name` inline, if valid.
pub fn to_name(name: &str) -> Option<RoomName> {
    if !is_valid(name) {
        return None;
    }
    let mut out = RoomName::new();
    out.push_str(name).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid("chat:lobby"));
        assert!(is_valid("a"));
        assert!(is_valid("user@example.com/x-y_z.1"));
        assert!(!is_valid(""));
        assert!(!is_valid("has space"));
        assert!(!is_valid("é"));
        let long = [b'a'; 129];
        assert!(!is_valid(core::str::from_utf8(&long).unwrap()));
        assert!(is_valid(core::str::from_utf8(&long[..128]).unwrap()));
    }

    #[test]
    fn namespaces_and_patterns() {
        assert_eq!(namespace("chat:lobby"), "chat");
        assert_eq!(namespace("lobby"), "");
        assert_eq!(namespace("a:b:c"), "a");
        assert!(pattern_matches("chat:*", "chat:lobby"));
        assert!(!pattern_matches("chat:*", "news:x"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("news", "news"));
        assert!(!pattern_matches("news", "news2"));
    }
}
