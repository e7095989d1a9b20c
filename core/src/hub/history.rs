//! History and recovery: kept messages per room, the hub-wide budget, bounded replies.

use super::*;

impl<A: Authenticator, S: Storage> Hub<A, S> {
    /// Drops messages older than the namespace's `history_ttl_secs` and
    /// returns when the oldest remaining one expires.
    pub(super) fn trim_history(&mut self, key: u32, now: Instant) -> Option<Instant> {
        let room = self.rooms.get(key)?;
        let ns = *self.config.namespace_of(&room.name);
        let ttl = crate::time::Duration::from_secs(ns.history_ttl_secs);
        let keep = (ns.history_size as usize).min(room.history.capacity());
        loop {
            let room = self.rooms.get(key)?;
            let (_, at, _) = room.history.get(0)?;
            if room.history.len() <= keep && now < at + ttl {
                return Some(at + ttl);
            }
            self.pop_kept(key);
        }
    }

    /// Drops room `key`'s oldest kept message, keeping the hub-wide counts.
    pub(super) fn pop_kept(&mut self, key: u32) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some((_, _, record)) = room.history.get(0) else {
            return;
        };
        let size = record.len() + HISTORY_OVERHEAD;
        room.history.pop_oldest();
        self.history_bytes -= size;
        self.history_messages -= 1;
    }

    /// Keeps message `offset` of room `key` in its history: within the
    /// room's `history_size`, its store's capacity (a fixed ring drops its
    /// oldest messages to make room) and the hub's `max_history_bytes` (the
    /// oldest messages of the whole hub go first). `record` is the stored
    /// form, `(from, data)` in postcard, written in place.
    pub(super) fn keep_message(
        &mut self,
        key: u32,
        offset: u64,
        now: Instant,
        record: &(Option<Sender<'_>>, Data<'_>),
    ) {
        let Ok(len) =
            postcard::serialize_with_flavor(record, postcard::ser_flavors::Size::default())
        else {
            return;
        };
        let size = len + HISTORY_OVERHEAD;
        self.evict_for(size, key);
        while self
            .rooms
            .get(key)
            .is_some_and(|r| !r.history.fits(len) && !r.history.is_empty())
        {
            self.pop_kept(key);
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let ns = *self.config.namespace_of(&room.name);
        let written = room.history.push_with(offset, now, len, |buf| {
            postcard::to_slice(record, buf).map(|_| ()).map_err(|_| ())
        });
        if written.is_err() {
            return;
        }
        self.history_bytes += size;
        self.history_messages += 1;
        if self.kept.push_back(Kept { room: key, offset }).is_ok() {
            self.kept_len += 1;
        }
        while self
            .rooms
            .get(key)
            .is_some_and(|r| r.history.len() > ns.history_size as usize)
        {
            self.pop_kept(key);
        }
        let ttl = crate::time::Duration::from_secs(ns.history_ttl_secs);
        self.next_room_sweep = self.next_room_sweep.min(now + ttl);
        self.next_sweep = self.next_sweep.min(now + ttl);
    }

    /// Drops the hub's oldest kept messages until `size` more bytes fit
    /// `max_history_bytes`. Room `publishing` is not freed meanwhile.
    pub(super) fn evict_for(&mut self, size: usize, publishing: u32) {
        while self.history_bytes + size > self.config.max_history_bytes {
            let Some(k) = self.kept.pop_front() else {
                break;
            };
            self.kept_len -= 1;
            let oldest = self
                .rooms
                .get(k.room)
                .and_then(|r| r.history.get(0))
                .map(|(o, _, _)| o);
            if oldest == Some(k.offset) {
                self.pop_kept(k.room);
                self.history_evicted += 1;
                if k.room != publishing {
                    self.free_if_unused(k.room);
                }
            }
        }
        // Entries of messages that left by size or age pile up in busy
        // rooms: compact once they outnumber the kept messages.
        if self.kept_len > 2 * self.history_messages + 1024 {
            for _ in 0..self.kept_len {
                let Some(k) = self.kept.pop_front() else {
                    break;
                };
                let live = self.rooms.get(k.room).is_some_and(|r| {
                    r.history
                        .get(0)
                        .is_some_and(|(oldest, _, _)| oldest <= k.offset && k.offset <= r.offset)
                });
                if !live || self.kept.push_back(k).is_err() {
                    self.kept_len -= 1;
                }
            }
        }
    }

    /// Expires history everywhere and frees unused rooms; schedules the next
    /// expiry.
    pub(super) fn sweep_rooms(&mut self, now: Instant) {
        self.keys.expire(now);
        let mut next = Instant::NEVER;
        for key in 0..self.rooms.key_bound() {
            if self.rooms.get(key).is_none() {
                continue;
            }
            if let Some(at) = self.trim_history(key, now) {
                next = next.min(at);
            }
            self.free_if_unused(key);
        }
        self.next_room_sweep = next;
        self.schedule(next.max(now + self.config.timer_granularity));
    }

    pub(super) fn history_reply(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        name: &str,
        since: Option<u64>,
        limit: Option<u64>,
    ) {
        let Some(codec) = self.conns.at(id).map(|c| c.codec) else {
            return;
        };
        // A no-op with `alloc` (REPLY_MESSAGES is usize::MAX there).
        #[allow(clippy::unnecessary_min_or_max)]
        let limit = (limit.unwrap_or(100).min(1000) as usize).min(REPLY_MESSAGES);
        #[cfg(feature = "alloc")]
        if self.remote.is_some() {
            return self.history_remote(now, id, req, name, since, limit);
        }
        let r = self.history_local(now, codec, req, name, since, limit);
        self.unicast(id, codec, r)
    }

    /// Encodes the `history` frame of `name` from this hub's own tables
    /// (the in-memory store), `limit` already clamped.
    pub(super) fn history_local(
        &mut self,
        now: Instant,
        codec: Codec,
        req: Option<u64>,
        name: &str,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Range<usize>, crate::protocol::EncodeError> {
        let mut key = self.index.find(name);
        if let Some(k) = key {
            // What expired may leave the room without state: free it now,
            // not at the next sweep (PROTOCOL.md §9 "Offsets").
            self.trim_history(k, now);
            self.free_if_unused(k);
            key = self.index.find(name);
        }
        let Some(room) = key.and_then(|k| self.rooms.get(k)) else {
            let frame = ServerFrame::History {
                id: req,
                room: Text::Borrowed(name),
                epoch: Text::Borrowed(""),
                offset: 0,
                messages: Default::default(),
            };
            return self.arena.encode(codec, &frame);
        };
        let len = room.history.len();
        let first_after_since = match (since, room.history.get(0)) {
            (Some(since), Some((oldest, _, _))) => {
                (since.saturating_add(1).saturating_sub(oldest) as usize).min(len)
            }
            _ => 0,
        };
        // `since` given: the oldest `limit` after it; otherwise the latest `limit`.
        let (from, to) = match since {
            Some(_) => (first_after_since, (first_after_since + limit).min(len)),
            None => (len.saturating_sub(limit), len),
        };
        // Replies are bounded (PROTOCOL.md §9): stop before `max_reply_bytes`,
        // with at least one message; the client pages on with `since`.
        let max = self.config.max_reply_bytes;
        let count = fit_messages(&mut self.arena, codec, room, from, to - from, max);
        encode_bounded(&mut self.arena, max, count, |arena, count| {
            encode_with_messages(
                arena,
                codec,
                room,
                from,
                count,
                WithMessages::History { id: req },
            )
        })
    }
}

/// The most messages one `history` or `subscribed` reply carries. With an
/// allocator, `max_reply_bytes` and `max_recover` bound replies; without one
/// the messages of a reply are gathered on the stack, so a `history` reply
/// carries at most this many (the client pages on with `since`, PROTOCOL.md
/// §9 "Replies are bounded") and a longer recovery answers `recovered: false`.
#[cfg(feature = "alloc")]
pub const REPLY_MESSAGES: usize = usize::MAX;
/// The most messages one `history` or `subscribed` reply carries (see the
/// `alloc` build's docs): gathered on the stack without an allocator.
#[cfg(not(feature = "alloc"))]
pub const REPLY_MESSAGES: usize = 16;

/// Encodes `reply(count)`, a reply carrying `count` messages, with one
/// message fewer each time it comes out over `max` bytes, down to one
/// (PROTOCOL.md §9 "Replies are bounded"). `count` is a first guess from
/// [`fit_messages`] / [`fit_frames`], so this rarely loops.
pub(super) fn encode_bounded<A: crate::storage::Arena>(
    arena: &mut A,
    max: usize,
    mut count: usize,
    reply: impl Fn(&mut A, usize) -> Result<Range<usize>, crate::protocol::EncodeError>,
) -> Result<Range<usize>, crate::protocol::EncodeError> {
    loop {
        let r = reply(arena, count);
        match &r {
            Ok(range) if range.len() > max && count > 1 => {
                arena.truncate(range.start);
                count -= 1;
            }
            _ => return r,
        }
    }
}

/// Encodes a frame carrying the room's kept messages from index `from` on
/// (oldest first), decoded from their records without copying.
pub(super) fn encode_with_messages<S: Storage>(
    arena: &mut S::Arena,
    codec: Codec,
    room: &Room<S>,
    from: usize,
    count: usize,
    reply: WithMessages,
) -> Result<Range<usize>, crate::protocol::EncodeError> {
    #[cfg(feature = "alloc")]
    let mut messages: Vec<MessageFrame<'_>> = Vec::new();
    #[cfg(not(feature = "alloc"))]
    let mut messages: heapless::Vec<MessageFrame<'_>, REPLY_MESSAGES> = heapless::Vec::new();
    for i in from..from.saturating_add(count) {
        let Some(kept) = kept_message(room, i) else {
            break;
        };
        // A record that does not decode is skipped.
        let Some(m) = kept else {
            continue;
        };
        #[cfg(feature = "alloc")]
        messages.push(m);
        // Callers ask for at most `REPLY_MESSAGES` (history pages, and a
        // recovery longer than that is not one): nothing is cut here.
        #[cfg(not(feature = "alloc"))]
        if messages.push(m).is_err() {
            break;
        }
    }
    let (name, epoch) = (
        Text::Borrowed(room.name.as_str()),
        Text::Borrowed(room.epoch.as_str()),
    );
    let messages = crate::protocol::Seq::Borrowed(&messages[..]);
    let frame = match reply {
        WithMessages::Subscribed { id, recovered } => ServerFrame::Subscribed {
            id,
            room: name,
            epoch,
            offset: room.offset,
            recovered,
            messages,
        },
        WithMessages::History { id } => ServerFrame::History {
            id,
            room: name,
            epoch,
            offset: room.offset,
            messages,
        },
    };
    arena.encode(codec, &frame)
}

/// The room's `i`-th oldest kept message, borrowed from its record: `None`
/// past the end, `Some(None)` for a record that does not decode.
fn kept_message<S: Storage>(room: &Room<S>, i: usize) -> Option<Option<MessageFrame<'_>>> {
    let (offset, _, record) = room.history.get(i)?;
    let decoded = postcard::from_bytes::<(Option<Sender<'_>>, Data<'_>)>(record).ok();
    Some(decoded.map(|(from, data)| MessageFrame {
        room: Text::Borrowed(&room.name),
        epoch: Text::Borrowed(&room.epoch),
        offset,
        from,
        data,
    }))
}

/// How many of the room's kept messages from index `from` (at most `count`)
/// fit a reply of `max` bytes: at least one. Each message is measured by
/// encoding it once (the arena is left as it was).
pub(super) fn fit_messages<S: Storage>(
    arena: &mut S::Arena,
    codec: Codec,
    room: &Room<S>,
    from: usize,
    count: usize,
    max: usize,
) -> usize {
    let kept = (from..from.saturating_add(count)).map_while(|i| kept_message(room, i));
    fit(arena, codec, room.name.len(), kept, max)
}

/// How many of `frames` fit a reply of `max` bytes about room `name`: at
/// least one.
#[cfg(feature = "alloc")]
pub(super) fn fit_frames<A: crate::storage::Arena>(
    arena: &mut A,
    codec: Codec,
    name: &str,
    frames: &[MessageFrame<'_>],
    max: usize,
) -> usize {
    fit(
        arena,
        codec,
        name.len(),
        frames.iter().cloned().map(Some),
        max,
    )
}

/// How many of `messages` (`None`: a record that does not decode) fit a
/// reply of `max` bytes, at least one. Each message is measured by encoding
/// it once (the arena is left as it was).
fn fit<'m, A: crate::storage::Arena>(
    arena: &mut A,
    codec: Codec,
    name_len: usize,
    messages: impl Iterator<Item = Option<MessageFrame<'m>>>,
    max: usize,
) -> usize {
    // Room name, epoch, ids and the frame's own keys.
    let mut total = 128 + 2 * name_len;
    let mut n = 0;
    for kept in messages {
        let size = match kept {
            Some(m) => {
                let start = arena.bytes().len();
                let size = arena
                    .encode(codec, &ServerFrame::Message(m))
                    .map_or(0, |r| r.len());
                arena.truncate(start);
                size
            }
            None => 0,
        };
        total += size + 1;
        if total > max && n > 0 {
            break;
        }
        n += 1;
    }
    n
}

/// The replies that carry kept messages.
#[derive(Debug, Clone, Copy)]
pub(super) enum WithMessages {
    Subscribed { id: Option<u64>, recovered: bool },
    History { id: Option<u64> },
}
