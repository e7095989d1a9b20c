//! The session's collections, chosen by feature: growable (`Vec`,
//! `BTreeMap`, `VecDeque`, `String`) with `alloc`, fixed-capacity
//! (`heapless`) without. The state machine is written once against the
//! operations both offer; the fixed build refuses what does not fit (a
//! [`RequestError::Capacity`](super::RequestError) or a dropped frame
//! counted by [`Session::dropped`](super::Session::dropped)), never panics.
//!
//! The capacities of the fixed build are the `MAX_*` constants below.

#[cfg(feature = "alloc")]
mod imp {
    use alloc::collections::{BTreeMap, VecDeque};
    use alloc::string::String;
    use alloc::vec::Vec;

    /// A string owned by an event or the session (room, epoch, client, user).
    pub type Str = String;
    /// A token.
    pub type Token = String;
    /// A payload (`data`, `info`).
    pub type Bytes = Vec<u8>;
    /// A list in a reply (messages, members).
    pub type List<T> = Vec<T>;

    pub(crate) type RoomMap<V> = BTreeMap<Str, V>;
    pub(crate) type IdMap<V> = BTreeMap<u64, V>;
    /// A FIFO; `N` is the fixed build's capacity (unbounded here).
    pub(crate) type Queue<T, const N: usize> = VecDeque<T>;

    pub(crate) const OFFLINE: usize = 0;
    pub(crate) const EVENTS: usize = 0;
    pub(crate) const TAGS: usize = 0;
    pub(crate) const AUTHS: usize = 0;

    pub(crate) fn text(s: &str) -> Result<Str, ()> {
        Ok(Str::from(s))
    }

    pub(crate) fn fit(s: &str) -> Str {
        Str::from(s)
    }

    pub(crate) fn fits_list(_: usize) -> bool {
        true
    }

    pub(crate) fn queue_full<T>(_: &VecDeque<T>) -> bool {
        false
    }

    pub(crate) fn map_full<V>(_: &IdMap<V>) -> bool {
        false
    }

    /// A short-lived list inside one call.
    pub(crate) type Scratch<T> = Vec<T>;

    pub(crate) fn scratch_push<T>(v: &mut Scratch<T>, item: T) -> Result<(), T> {
        v.push(item);
        Ok(())
    }

    pub(crate) fn bytes(b: &[u8]) -> Result<Bytes, ()> {
        Ok(b.to_vec())
    }

    pub(crate) fn list_push<T>(list: &mut List<T>, item: T) -> Result<(), T> {
        list.push(item);
        Ok(())
    }

    pub(crate) fn push_back<T>(q: &mut VecDeque<T>, item: T) -> Result<(), T> {
        q.push_back(item);
        Ok(())
    }

    pub(crate) fn insert<K: Ord, V>(map: &mut BTreeMap<K, V>, k: K, v: V) -> Result<(), V> {
        map.insert(k, v);
        Ok(())
    }
}

#[cfg(not(feature = "alloc"))]
mod imp {
    use heapless::{Deque, LinearMap, String, Vec};

    /// The longest string the fixed session holds (a room name, epoch,
    /// client or user id); a longer one is refused.
    pub const MAX_TEXT: usize = 64;
    /// The longest token.
    pub const MAX_TOKEN: usize = 512;
    /// The largest payload (`data`, `info`) of a publish or a received
    /// message.
    pub const MAX_DATA: usize = 256;
    /// The most elements of a list in a reply (history messages, presence
    /// members, a subscribe's replay); a history reply keeps the oldest
    /// ones (page on with `since`).
    pub const MAX_LIST: usize = 2;
    /// Rooms subscribed at once.
    pub const MAX_ROOMS: usize = 4;
    /// Requests waiting for their reply.
    pub const MAX_PENDING: usize = 8;
    /// The offline queue's most entries (publishes kept while disconnected;
    /// [`ClientConfig::offline_queue`](super::super::ClientConfig) may only lower it).
    pub const MAX_OFFLINE: usize = 8;
    /// Events waiting for [`Session::poll_output`](super::super::Session::poll_output).
    pub const MAX_EVENTS: usize = 32;
    /// Bytes of frames waiting for `poll_output`, and the largest frame the
    /// session sends.
    pub const MAX_TX_BYTES: usize = 5120;

    /// A string owned by an event or the session (room, epoch, client, user).
    pub type Str = String<MAX_TEXT>;
    /// A token.
    pub type Token = String<MAX_TOKEN>;
    /// A payload (`data`, `info`).
    pub type Bytes = Vec<u8, MAX_DATA>;
    /// A list in a reply (messages, members).
    pub type List<T> = Vec<T, MAX_LIST>;

    pub(crate) type RoomMap<V> = LinearMap<Str, V, MAX_ROOMS>;
    pub(crate) type IdMap<V> = LinearMap<u64, V, MAX_PENDING>;
    pub(crate) type Queue<T, const N: usize> = Deque<T, N>;

    pub(crate) const OFFLINE: usize = MAX_OFFLINE;
    pub(crate) const EVENTS: usize = MAX_EVENTS;
    /// Outputs (a tag each) waiting.
    pub(crate) const TAGS: usize = MAX_EVENTS + MAX_PENDING + MAX_ROOMS + MAX_OFFLINE + 4;
    pub(crate) const TX_BYTES: usize = MAX_TX_BYTES;
    pub(crate) const AUTHS: usize = 4;

    pub(crate) fn text(s: &str) -> Result<Str, ()> {
        Str::try_from(s).map_err(|_| ())
    }

    /// `s`, cut at a character boundary to what fits (for texts shown to the
    /// application only: a reason, a client or user id).
    pub(crate) fn fit(s: &str) -> Str {
        let mut end = s.len().min(MAX_TEXT);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Str::try_from(&s[..end]).unwrap_or_default()
    }

    pub(crate) fn fits_list(len: usize) -> bool {
        len <= MAX_LIST
    }

    pub(crate) fn queue_full<T, const N: usize>(q: &Queue<T, N>) -> bool {
        q.is_full()
    }

    pub(crate) fn map_full<V>(m: &IdMap<V>) -> bool {
        m.is_full()
    }

    /// A short-lived list inside one call (room names).
    pub(crate) type Scratch<T> = Vec<T, MAX_ROOMS>;

    pub(crate) fn scratch_push<T>(v: &mut Scratch<T>, item: T) -> Result<(), T> {
        v.push(item)
    }

    pub(crate) fn bytes(b: &[u8]) -> Result<Bytes, ()> {
        Bytes::from_slice(b).map_err(|_| ())
    }

    pub(crate) fn list_push<T>(list: &mut List<T>, item: T) -> Result<(), T> {
        list.push(item)
    }

    pub(crate) fn push_back<T, const N: usize>(q: &mut Queue<T, N>, item: T) -> Result<(), T> {
        q.push_back(item)
    }

    pub(crate) fn insert<K: Eq, V, const N: usize>(
        map: &mut LinearMap<K, V, N>,
        k: K,
        v: V,
    ) -> Result<(), V> {
        map.insert(k, v).map(|_| ()).map_err(|(_, v)| v)
    }
}

pub use imp::*;

/// The leading elements of `seq` that fit a [`List`], each converted by
/// `f`; stops at the first that does not (all of them with `alloc`).
pub(crate) fn keep_fitting<T, U>(seq: &[T], f: impl Fn(&T) -> Result<U, ()>) -> List<U> {
    let mut out = List::new();
    for item in seq {
        let Ok(item) = f(item) else { break };
        if list_push(&mut out, item).is_err() {
            break;
        }
    }
    out
}
