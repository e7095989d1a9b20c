//! Consistency checks of the hub's tables, for fuzz targets and tests
//! (`fuzz/fuzz_targets/hub_ops.rs` calls [`Hub::check_invariants`] after
//! every operation).
//!
//! The hub keeps the same facts in several places (a room's subscriber list
//! and each connection's room list, per-codec counters, the name index,
//! hub-wide history counters); these checks walk every table and say which
//! of those copies disagree. They are slow on a large hub and are not meant
//! for production paths.

use crate::auth::Authenticator;
use crate::connection::Phase;
use crate::protocol::{Codec, Data, Sender};
use crate::room;
use crate::storage::{History as _, List, Queue as _, RoomIndex, Slab, Storage};

use super::{ConnId, ConnTable, End, HISTORY_OVERHEAD, Hub};

/// The error of a room left without subscribers and without history. It is
/// reported only when every other invariant holds, so that a harness that
/// tolerates it (a known finding) still checks the rest.
#[doc(hidden)]
pub const UNFREED: &str = "a room without subscribers and without history was not freed";

/// Fails with `what` unless `cond`.
fn ensure(cond: bool, what: &'static str) -> Result<(), &'static str> {
    if cond { Ok(()) } else { Err(what) }
}

impl<A: Authenticator, S: Storage> Hub<A, S> {
    /// Checks that the hub's tables agree with each other; `Err` names the
    /// first broken invariant:
    ///
    /// - every subscriber of a room is a live, open connection of the same
    ///   codec that lists the room, once; every room a connection lists has
    ///   it as a subscriber, once (both ways);
    /// - a room's `json`/`postcard` counters count its subscribers by codec;
    /// - no room is without subscribers and without history (such a room is
    ///   freed); checked last, failing with [`UNFREED`];
    /// - the name index maps every room's name to its key; names are valid;
    /// - history offsets are contiguous, oldest first, and end at the room's
    ///   offset; a room keeps at most its namespace's `history_size`, none
    ///   where history is off; kept records decode;
    /// - presence: subscribers are exactly the members, so every subscriber
    ///   is an open connection;
    /// - counters: `pending_auth` is the number of connections awaiting
    ///   auth, the pending ends are the closes/drops not yet emitted, the
    ///   hub-wide history bytes and messages add up, a connection being
    ///   ended is in no room, table lengths match their contents, and the
    ///   room and per-connection limits hold.
    ///
    /// For fuzz targets and tests: it walks every table.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        self.check_conns()?;
        self.check_rooms()?;
        Ok(())
    }

    fn check_conns(&self) -> Result<(), &'static str> {
        let mut count = 0usize;
        let mut awaiting = 0usize;
        let mut ends = 0usize;
        for key in 0..self.conns.key_bound() {
            let Some(conn) = self.conns.get(key) else {
                continue;
            };
            count += 1;
            match conn.phase {
                Phase::AwaitingAuth { .. } => {
                    awaiting += 1;
                    ensure(
                        conn.identity.is_none(),
                        "a connection awaiting auth has an identity",
                    )?;
                }
                Phase::Open => ensure(
                    conn.end == End::None,
                    "an open connection is marked for ending",
                )?,
                Phase::Ending => ensure(
                    conn.end != End::None,
                    "an ending connection has no end recorded",
                )?,
            }
            if matches!(conn.end, End::Close(..) | End::CloseWith(..) | End::Drop) {
                ends += 1;
            }
            let rooms = conn.rooms.as_slice();
            if conn.phase != Phase::Open {
                ensure(
                    rooms.is_empty(),
                    "a connection that is not open is subscribed to a room",
                )?;
            }
            ensure(
                rooms.len() <= self.config.max_rooms_per_connection,
                "a connection is in more rooms than max_rooms_per_connection",
            )?;
            for (i, &r) in rooms.iter().enumerate() {
                ensure(!rooms[..i].contains(&r), "a connection lists a room twice")?;
                let room = self
                    .rooms
                    .get(r)
                    .ok_or("a connection lists a room that does not exist")?;
                let subs = room.subscribers.as_slice();
                let mine = subs.iter().filter(|s| s.conn.slot() == key).count();
                ensure(
                    mine == 1,
                    "a connection lists a room that does not list it exactly once",
                )?;
            }
        }
        ensure(
            count == self.conns.len(),
            "conns.len() ≠ connections stored",
        )?;
        ensure(
            awaiting == self.pending_auth,
            "pending_auth ≠ connections awaiting auth",
        )?;
        ensure(
            ends == self.pending_ends,
            "pending_ends ≠ closes and drops not yet emitted",
        )?;
        let stats = self.stats();
        ensure(stats.connections == count, "stats.connections is off")?;
        ensure(stats.pending_auth == awaiting, "stats.pending_auth is off")?;
        Ok(())
    }

    fn check_rooms(&self) -> Result<(), &'static str> {
        let mut count = 0usize;
        let mut bytes = 0usize;
        let mut messages = 0usize;
        let mut unfreed = false;
        for key in 0..self.rooms.key_bound() {
            let Some(room) = self.rooms.get(key) else {
                continue;
            };
            count += 1;
            ensure(room::is_valid(&room.name), "a room has an invalid name")?;
            ensure(!room.epoch.is_empty(), "a room has an empty epoch")?;
            ensure(
                self.index.find(&room.name) == Some(key),
                "the index does not map a room's name to its key",
            )?;
            let subs = room.subscribers.as_slice();
            let (mut json, mut postcard) = (0u32, 0u32);
            for (i, s) in subs.iter().enumerate() {
                ensure(
                    !subs[..i].iter().any(|o| o.conn == s.conn),
                    "a room lists a subscriber twice",
                )?;
                match s.codec {
                    Codec::Json => json += 1,
                    Codec::Postcard => postcard += 1,
                }
                let conn = self
                    .conns
                    .at(s.conn)
                    .ok_or("a room lists a connection that does not exist")?;
                ensure(
                    conn.codec == s.codec,
                    "a subscriber's codec differs from its connection's",
                )?;
                // Presence lists the subscribers: each must be an open
                // connection (welcomed, not being ended).
                ensure(
                    conn.phase == Phase::Open,
                    "a subscriber's connection is not open",
                )?;
                ensure(
                    conn.rooms.as_slice().contains(&key),
                    "a subscriber's connection does not list the room",
                )?;
            }
            ensure(room.json == json, "a room's json counter is off")?;
            #[cfg(feature = "alloc")]
            if let Some(relay) = &room.relay {
                let waiting = subs.iter().filter(|s| s.after == super::WAITING).count();
                ensure(
                    relay.holding as usize == waiting,
                    "a room's holding count differs from its waiting subscribers",
                )?;
                ensure(
                    relay.holding > 0 || relay.held.is_empty(),
                    "a room holds messages for nobody",
                )?;
            }
            ensure(
                room.postcard == postcard,
                "a room's postcard counter is off",
            )?;
            let history = &room.history;
            // Reported after every other check (see `check_invariants`).
            unfreed |= subs.is_empty() && history.is_empty();
            let ns = self.config.namespace_of(&room.name);
            ensure(
                history.len() <= ns.history_size as usize,
                "a room keeps more than its namespace's history_size",
            )?;
            let mut previous_at = None;
            for i in 0..history.len() {
                let (offset, at, record) = history
                    .get(i)
                    .ok_or("history.get(i) is None below history.len()")?;
                if let Some((first, _, _)) = history.get(0) {
                    ensure(
                        offset == first + i as u64,
                        "history offsets are not contiguous",
                    )?;
                }
                ensure(offset >= 1, "a kept message has offset 0")?;
                ensure(
                    offset <= room.offset,
                    "a kept message is past the room's offset",
                )?;
                if i + 1 == history.len() {
                    ensure(
                        offset == room.offset,
                        "the newest kept message is not the room's latest",
                    )?;
                }
                ensure(
                    previous_at.is_none_or(|p| p <= at),
                    "history is not in the order it was kept",
                )?;
                previous_at = Some(at);
                ensure(
                    postcard::from_bytes::<(Option<Sender<'_>>, Data<'_>)>(record).is_ok(),
                    "a kept record does not decode",
                )?;
                bytes += record.len() + HISTORY_OVERHEAD;
                messages += 1;
            }
        }
        ensure(count == self.rooms.len(), "rooms.len() ≠ rooms stored")?;
        ensure(
            count <= self.config.max_rooms,
            "more rooms than max_rooms hold state",
        )?;
        ensure(
            bytes == self.history_bytes,
            "history_bytes ≠ the bytes of every kept message",
        )?;
        ensure(
            messages == self.history_messages,
            "history_messages ≠ the kept messages",
        )?;
        ensure(
            self.kept.is_empty() == (self.kept_len == 0),
            "kept_len disagrees with the kept queue",
        )?;
        ensure(
            self.kept_len >= messages,
            "fewer entries in the kept order than kept messages",
        )?;
        let stats = self.stats();
        ensure(stats.rooms == count, "stats.rooms is off")?;
        ensure(stats.history_bytes == bytes, "stats.history_bytes is off")?;
        ensure(
            stats.history_messages == messages,
            "stats.history_messages is off",
        )?;
        ensure(!unfreed, UNFREED)
    }

    /// The rooms `conn` is subscribed to, for harnesses that check their
    /// own model of the subscriptions against the hub's.
    #[doc(hidden)]
    pub fn debug_rooms_of(&self, conn: ConnId) -> impl Iterator<Item = &str> + '_ {
        self.conns
            .at(conn)
            .map(|c| c.rooms.as_slice())
            .unwrap_or(&[])
            .iter()
            .filter_map(|&k| self.rooms.get(k).map(|r| r.name.as_str()))
    }

    /// Is `conn` in the connection table (opened, not yet closed)?
    #[doc(hidden)]
    pub fn debug_has_conn(&self, conn: ConnId) -> bool {
        self.conns.at(conn).is_some()
    }
}
