//! Idempotency keys (PROTOCOL.md §9): a publish with a `key` already seen in
//! its room within `idempotency_window` is acked with the first offset and
//! neither stored nor delivered again. Keys belong to the room's name, not
//! to its state: they outlive a freed room and do not count toward
//! `max_rooms`. At most `max_idempotency_keys` are kept; past it the oldest
//! is forgotten early (counted in [`super::Stats::keys_evicted`]).

#[cfg(feature = "alloc")]
use alloc::collections::{BTreeMap, VecDeque};

#[cfg(feature = "alloc")]
use crate::room::RoomName;
use crate::time::{Duration, Instant};

/// The longest idempotency key.
pub const MAX_KEY_LEN: usize = 64;

/// An idempotency key.
pub type Key = heapless::String<MAX_KEY_LEN>;

/// Is `key` 1–64 bytes of `[A-Za-z0-9_.:@/+=-]`?
pub fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:@/+=-".contains(&b))
}

/// The keys seen, with the offset each was acked with.
#[derive(Default)]
pub(crate) struct Keys {
    #[cfg(feature = "alloc")]
    seen: BTreeMap<(RoomName, Key), (u64, Instant)>,
    /// Keys in the order they expire (all windows are equal).
    #[cfg(feature = "alloc")]
    order: VecDeque<(Instant, RoomName, Key)>,
    pub(crate) evicted: u64,
}

impl Keys {
    /// The offset the first publish with `key` to `room` got, if it is
    /// still within its window.
    pub(crate) fn seen(&self, now: Instant, room: &str, key: &str) -> Option<u64> {
        #[cfg(feature = "alloc")]
        {
            let (room, key) = (RoomName::try_from(room).ok()?, Key::try_from(key).ok()?);
            let (offset, expires) = self.seen.get(&(room, key))?;
            (now < *expires).then_some(*offset)
        }
        #[cfg(not(feature = "alloc"))]
        {
            let _ = (now, room, key);
            None
        }
    }

    /// Records that `key` was acked with `offset` in `room`. `Err` when this
    /// hub keeps no keys (no allocator).
    #[allow(clippy::result_unit_err)]
    pub(crate) fn remember(
        &mut self,
        now: Instant,
        room: &str,
        key: &str,
        offset: u64,
        window: Duration,
        max: usize,
    ) -> Result<(), ()> {
        #[cfg(feature = "alloc")]
        {
            self.expire(now);
            let (Ok(room), Ok(key)) = (RoomName::try_from(room), Key::try_from(key)) else {
                return Err(());
            };
            while self.seen.len() >= max.max(1) {
                let Some((_, r, k)) = self.order.pop_front() else {
                    break;
                };
                if self.seen.remove(&(r, k)).is_some() {
                    self.evicted += 1;
                }
            }
            let expires = now + window;
            self.seen
                .insert((room.clone(), key.clone()), (offset, expires));
            self.order.push_back((expires, room, key));
            Ok(())
        }
        #[cfg(not(feature = "alloc"))]
        {
            let _ = (now, room, key, offset, window, max);
            Err(())
        }
    }

    /// Forgets the keys whose window is over.
    pub(crate) fn expire(&mut self, now: Instant) {
        #[cfg(feature = "alloc")]
        while let Some((expires, _, _)) = self.order.front() {
            if now < *expires {
                break;
            }
            if let Some((_, room, key)) = self.order.pop_front() {
                let entry = (room, key);
                // A key re-recorded after its window has a later expiry.
                if self.seen.get(&entry).is_some_and(|(_, e)| *e <= now) {
                    self.seen.remove(&entry);
                }
            }
        }
        #[cfg(not(feature = "alloc"))]
        let _ = now;
    }

    /// Keys kept.
    pub(crate) fn len(&self) -> usize {
        #[cfg(feature = "alloc")]
        return self.seen.len();
        #[cfg(not(feature = "alloc"))]
        0
    }
}
