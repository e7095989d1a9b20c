//! The store contract: offsets, history, presence and idempotency keys kept
//! by a store that answers later (the shared store of a cluster).
//!
//! A hub built with [`Hub::with_remote_store`] keeps none of that itself.
//! It asks its store through [`Output::Store`] ([`StoreOp`], each with an
//! [`OpId`]) and takes the answers through [`Hub::handle_store`]; what other
//! nodes (and this one) published comes back through [`Hub::handle_relay`]
//! ([`Relay`]). The rules a cluster relies on are decided here:
//!
//! - **An `ack` only after the store confirmed.** A client's `publish` is
//!   answered from [`StoreResult::Appended`]; a failed or unavailable store
//!   answers `error 4013`, and nothing is delivered by this hub for it.
//! - **Fan-out once per node, in offset order.** Messages reach local
//!   subscribers only from the relay, whoever published them. The hub keeps
//!   the last offset it delivered per room: a duplicate is dropped, a message
//!   past a gap waits while the gap is read from the store
//!   ([`StoreOp::Read`]), and a new epoch (the store lost the room) starts the
//!   room over.
//! - **The recovery splice.** A `subscribe` waits for its [`StoreOp::Read`];
//!   meanwhile the room's live messages are held for it. The reply carries
//!   what the store returned (up to offset `L`), then the held messages past
//!   `L` follow, and later relayed messages up to `L` are skipped for it: no
//!   gap, no duplicate.
//! - **Bounded operations.** At most `max_inflight` per connection and
//!   `max_inflight_total` in the hub; over that, `error 4006` at once. An
//!   operation whose connection closed is forgotten when it completes; one
//!   the store never answers fails after twice `store_timeout`.
//!
//! The in-memory store is the hub's own tables (a hub built with
//! [`Hub::new`]): it answers inside the same call, so a publish on one node
//! takes no extra step.

use super::output::str_at;
use super::*;

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;

use crate::time::Duration;

/// Identifies one store operation, to match its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(u64);

impl OpId {
    /// The operation id with this number.
    pub const fn new(raw: u64) -> Self {
        OpId(raw)
    }

    /// Its number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// What the hub asks of its store. Every operation with an `op` must be
/// answered once with [`Hub::handle_store`] (an answer after the hub failed
/// it is ignored).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreOp<'a> {
    /// Publish: unless `key` was seen in `room` within the idempotency
    /// window (then answer [`StoreResult::Appended`] with the first offset
    /// and `duplicate: true`), allocate the room's next offset, keep the
    /// message in the room's history (at most `history_size` messages, none
    /// older than `history_ttl_secs`; nothing when `history_size` is 0),
    /// remember `key` for `key_window`, and relay it to every node, this
    /// one included, all in one atomic step. Refuse it
    /// ([`StoreResult::Failed`]) once `deadline` has passed, so that a
    /// `4013` stays final.
    Append {
        /// The operation.
        op: OpId,
        /// The room.
        room: &'a str,
        /// The publisher (`None` for server-side publishes).
        from: Option<Sender<'a>>,
        /// The payload.
        data: &'a [u8],
        /// The idempotency key.
        key: Option<&'a str>,
        /// How long `key` is remembered.
        key_window: Duration,
        /// After this (hub time), refuse the operation.
        deadline: Instant,
        /// The namespace's `history_size`.
        history_size: u32,
        /// The namespace's `history_ttl_secs`.
        history_ttl_secs: u64,
    },
    /// Read `room`: its epoch, its latest offset and kept messages, oldest
    /// first: those with offsets past `after`, at most `limit`; without
    /// `after`, the latest `limit`. `limit` 0 reads only the epoch and offset.
    Read {
        /// The operation.
        op: OpId,
        /// The room.
        room: &'a str,
        /// Messages after this offset (exclusive).
        after: Option<u64>,
        /// At most this many messages.
        limit: usize,
    },
    /// The members of `room` on every node ([`StoreResult::Members`]).
    Presence {
        /// The operation.
        op: OpId,
        /// The room.
        room: &'a str,
    },
    /// `member` joined `room` on this node: record it, with an expiry of
    /// `ttl` that the runtime refreshes while the member stays, and relay it
    /// to the other nodes ([`Relay::Join`]). No answer.
    Join {
        /// The room.
        room: &'a str,
        /// The member.
        member: Member<'a>,
        /// The entry's expiry.
        ttl: Duration,
    },
    /// `member` left `room` on this node: forget it and relay it
    /// ([`Relay::Leave`]). No answer.
    Leave {
        /// The room.
        room: &'a str,
        /// The member.
        member: Member<'a>,
    },
}

/// A message as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage<'a> {
    /// Its offset.
    pub offset: u64,
    /// The publisher.
    pub from: Option<Sender<'a>>,
    /// The payload.
    pub data: &'a [u8],
}

/// The store's answer to one [`StoreOp`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum StoreResult<'a> {
    /// [`StoreOp::Append`] succeeded (or found its key: `duplicate`).
    Appended {
        /// The room's epoch.
        epoch: &'a str,
        /// The message's offset (the first one's, for a duplicate).
        offset: u64,
        /// The key was seen: nothing was stored or relayed.
        duplicate: bool,
    },
    /// [`StoreOp::Read`]'s answer.
    Read {
        /// The room's epoch.
        epoch: &'a str,
        /// Its latest offset (0 when nothing was published in the epoch).
        offset: u64,
        /// The messages asked for, oldest first, with increasing offsets.
        messages: &'a [StoredMessage<'a>],
    },
    /// [`StoreOp::Presence`]'s answer.
    Members(&'a [Member<'a>]),
    /// The store refused or failed the operation (nothing was stored).
    Failed,
    /// The store cannot be reached (nothing was stored).
    Unavailable,
}

/// What arrives from the store's relay: every node's publishes and presence
/// changes, and the store's health.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Relay<'a> {
    /// A message stored in `room` (by any node, this one included).
    Message {
        /// The room.
        room: &'a str,
        /// The room's epoch.
        epoch: &'a str,
        /// The message's offset.
        offset: u64,
        /// The publisher.
        from: Option<Sender<'a>>,
        /// The payload.
        data: &'a [u8],
    },
    /// A member joined `room` (members of this node are ignored: the hub
    /// announced them itself).
    Join {
        /// The room.
        room: &'a str,
        /// The member.
        member: Member<'a>,
    },
    /// A member left `room`.
    Leave {
        /// The room.
        room: &'a str,
        /// The member.
        member: Member<'a>,
    },
    /// Every member of `room` the store lists now, read after this node
    /// (re)subscribed to the room's relay. The hub compares them with the
    /// other nodes' members it knows: with `announce`, its presence watchers
    /// get a `join` for each member it had not seen and a `leave` for each
    /// it knew that is gone (an announcement missed while the relay was not
    /// subscribed, e.g. after the store came back empty); without, the list
    /// is only taken as known (the read after a first subscription).
    /// Members of this node are ignored.
    Members {
        /// The room.
        room: &'a str,
        /// Its members on every node.
        members: &'a [Member<'a>],
        /// Send the differences as `join`/`leave`.
        announce: bool,
    },
    /// The store is unreachable: requests answer `error 4013` at once.
    StoreDown,
    /// The store is back: every room is read again from the last offset
    /// delivered, so that what was published meanwhile is not missed.
    StoreUp,
}

/// The answer to a server-side publish ([`Output::Published`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishAck<'a> {
    /// The room's epoch.
    pub epoch: &'a str,
    /// The message's offset (0 when the room keeps nothing and has no
    /// subscribers on a hub with the in-memory store).
    pub offset: u64,
}

/// Offset `after` of a subscriber still waiting for its store read: no
/// live message reaches it.
pub(super) const WAITING: u64 = u64::MAX;

/// A room's place in the relay's sequence (remote store only).
#[derive(Default)]
pub(super) struct RoomRelay {
    /// The epoch and offset are known (from a read or the relay).
    known: bool,
    /// Subscribers waiting for their store read.
    pub(super) holding: u32,
    /// Messages delivered while someone waits: `(offset, record)`.
    pub(super) held: VecDeque<(u64, Vec<u8>)>,
    /// Messages relayed past a gap, waiting for it to be filled.
    ahead: BTreeMap<u64, Vec<u8>>,
    /// A read of the gap is in flight.
    fetching: bool,
    /// The latest offset known to exist.
    latest: u64,
    /// The other nodes' members this hub knows of (client ids), from the
    /// relay's joins and leaves and from [`Relay::Members`].
    others: BTreeMap<String, MemberCopy>,
}

/// The hub's side of a remote store.
pub(super) struct Remote {
    ops: BTreeMap<u64, Pending>,
    next_op: u64,
    down: bool,
    /// Rooms whose gap read failed: read again at `retry_at`.
    retry_at: Instant,
    gaps_filled: u64,
    gaps_lost: u64,
}

struct Pending {
    issued: Instant,
    conn: Option<ConnId>,
    waiting: Waiting,
}

pub(super) enum Waiting {
    Publish {
        req: Option<u64>,
        room: RoomName,
    },
    Subscribe {
        req: Option<u64>,
        room: RoomName,
        recover: Option<(Epoch, u64)>,
        fresh: bool,
        tries: u8,
    },
    History {
        req: Option<u64>,
        room: RoomName,
    },
    Presence {
        req: Option<u64>,
        room: RoomName,
    },
    /// A server-side history query ([`Hub::query_history`]).
    QueryHistory {
        room: RoomName,
    },
    /// A server-side presence query ([`Hub::query_presence`]).
    QueryPresence {
        room: RoomName,
    },
    Gap {
        room: RoomName,
    },
}

/// An operation waiting in the output queue (ranges into the arena).
#[derive(Debug, Clone)]
pub(super) enum StoreRecord {
    Append {
        room: Range<usize>,
        client: Option<Range<usize>>,
        user: Option<Range<usize>>,
        data: Range<usize>,
        key: Option<Range<usize>>,
        deadline: Instant,
        history_size: u32,
        history_ttl_secs: u64,
    },
    Read {
        room: Range<usize>,
        after: Option<u64>,
        limit: usize,
    },
    Presence {
        room: Range<usize>,
    },
    Member {
        join: bool,
        room: Range<usize>,
        client: Range<usize>,
        user: Option<Range<usize>>,
        info: Option<Range<usize>>,
    },
}

/// A request refused before it reached the store.
type Refused = (ErrorCode, &'static str);

const STORE_DOWN: Refused = (ErrorCode::Unavailable, "unavailable: the store is down");
const STORE_FAILED: &str = "unavailable: the store did not accept it";
/// How long after a failed gap read the hub reads again.
const GAP_RETRY: Duration = Duration::from_secs(1);
/// Most tries of a subscribe whose held messages did not cover its read.
const SUBSCRIBE_TRIES: u8 = 3;
/// Most messages one gap read asks for.
const GAP_READ: u64 = 1_000;

fn to_room(name: &str) -> RoomName {
    room::to_name(name).unwrap_or_default()
}

impl StoreRecord {
    pub(super) fn op<'a>(
        &self,
        op: OpId,
        bytes: &'a [u8],
        window: Duration,
        ttl: Duration,
    ) -> StoreOp<'a> {
        let s = |r: &Range<usize>| str_at(bytes, r.clone());
        match self {
            StoreRecord::Append {
                room,
                client,
                user,
                data,
                key,
                deadline,
                history_size,
                history_ttl_secs,
            } => StoreOp::Append {
                op,
                room: s(room),
                from: client.as_ref().map(|c| Sender {
                    client: Text::Borrowed(s(c)),
                    user: user.as_ref().map(|u| Text::Borrowed(s(u))),
                }),
                data: &bytes[data.clone()],
                key: key.as_ref().map(s),
                key_window: window,
                deadline: *deadline,
                history_size: *history_size,
                history_ttl_secs: *history_ttl_secs,
            },
            StoreRecord::Read { room, after, limit } => StoreOp::Read {
                op,
                room: s(room),
                after: *after,
                limit: *limit,
            },
            StoreRecord::Presence { room } => StoreOp::Presence { op, room: s(room) },
            StoreRecord::Member {
                join,
                room,
                client,
                user,
                info,
            } => {
                let member = Member {
                    client: Text::Borrowed(s(client)),
                    user: user.as_ref().map(|u| Text::Borrowed(s(u))),
                    info: info.as_ref().map(|i| Data::Borrowed(&bytes[i.clone()])),
                };
                if *join {
                    StoreOp::Join {
                        room: s(room),
                        member,
                        ttl,
                    }
                } else {
                    StoreOp::Leave {
                        room: s(room),
                        member,
                    }
                }
            }
        }
    }
}

impl<A: Authenticator, S: Storage> Hub<A, S> {
    /// This hub keeps offsets, history, presence and idempotency keys in a
    /// remote store (a cluster's), spoken to through [`Output::Store`],
    /// [`Hub::handle_store`] and [`Hub::handle_relay`]. Call it before the
    /// first connection.
    pub fn with_remote_store(mut self) -> Self {
        self.remote = Some(Box::new(Remote {
            ops: BTreeMap::new(),
            next_op: 1,
            down: false,
            retry_at: Instant::NEVER,
            gaps_filled: 0,
            gaps_lost: 0,
        }));
        self
    }

    /// Does this hub speak to a remote store?
    pub fn has_remote_store(&self) -> bool {
        self.remote.is_some()
    }

    /// Publishes `data` to `room` from the server side (`from` null), with
    /// an optional idempotency `key`. The answer comes as
    /// [`Output::Published`] with the returned id: at once with the
    /// in-memory store, once the store answered with a remote one.
    pub fn publish_request(
        &mut self,
        now: Instant,
        room: &str,
        data: &[u8],
        key: Option<&str>,
    ) -> Result<OpId, PublishError> {
        self.check_server_publish(room, data, key)?;
        if self.remote.is_some() {
            return self
                .append(now, None, None, room, data, key)
                .map_err(|(code, _)| {
                    if code == ErrorCode::Unavailable {
                        PublishError::Unavailable
                    } else {
                        PublishError::Busy
                    }
                });
        }
        let op = OpId(self.next_local_op);
        self.next_local_op += 1;
        let result = self.publish_once(now, room, None, data, key);
        let epoch = self
            .index
            .find(room)
            .and_then(|k| self.rooms.get(k))
            .map(|r| r.epoch.clone())
            .unwrap_or_default();
        self.push_published(op, room, &epoch, result);
        Ok(op)
    }

    pub(super) fn push_published(
        &mut self,
        op: OpId,
        room: &str,
        epoch: &str,
        result: Result<u64, PublishError>,
    ) {
        let (Ok(room), Ok(epoch)) = (
            self.arena.push(room.as_bytes()),
            self.arena.push(epoch.as_bytes()),
        ) else {
            return;
        };
        let (offset, error) = match result {
            Ok(offset) => (offset, None),
            Err(e) => (0, Some(e)),
        };
        self.push(Record::Published {
            op: op.0,
            room,
            epoch,
            offset,
            error,
        });
    }

    /// Sends an [`StoreOp::Append`] for a publish by `conn` (or the server).
    pub(super) fn append(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        req: Option<u64>,
        room: &str,
        data: &[u8],
        key: Option<&str>,
    ) -> Result<OpId, Refused> {
        self.admit(conn)?;
        let ns = *self.config.namespace_of(room);
        let deadline = now + self.config.store_timeout;
        let push = |arena: &mut S::Arena, b: &[u8]| arena.push(b).ok();
        let from = conn.and_then(|c| self.conns.at(c)).map(|c| {
            (
                c.client.clone(),
                c.identity
                    .as_ref()
                    .and_then(|i| i.user())
                    .and_then(to_short),
            )
        });
        let record = (|| {
            let room = push(&mut self.arena, room.as_bytes())?;
            let (client, user) = match &from {
                Some((client, user)) => (
                    Some(push(&mut self.arena, client.as_bytes())?),
                    match user {
                        Some(u) => Some(push(&mut self.arena, u.as_bytes())?),
                        None => None,
                    },
                ),
                None => (None, None),
            };
            let data = push(&mut self.arena, data)?;
            let key = match key {
                Some(k) => Some(push(&mut self.arena, k.as_bytes())?),
                None => None,
            };
            Some(StoreRecord::Append {
                room,
                client,
                user,
                data,
                key,
                deadline,
                history_size: ns.history_size,
                history_ttl_secs: ns.history_ttl_secs,
            })
        })()
        .ok_or((ErrorCode::Unavailable, "unavailable: output storage full"))?;
        let waiting = Waiting::Publish {
            req,
            room: to_room(room),
        };
        Ok(self.issue(now, conn, waiting, record))
    }

    /// Refuses a request over the in-flight bounds, or while the store is down.
    fn admit(&self, conn: Option<ConnId>) -> Result<(), Refused> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        if remote.down {
            return Err(STORE_DOWN);
        }
        if let Some(c) = conn.and_then(|c| self.conns.at(c))
            && usize::from(c.inflight) >= self.config.max_inflight
        {
            return Err((ErrorCode::Limit, "too many requests in flight"));
        }
        if remote.ops.len() >= self.config.max_inflight_total {
            return Err((ErrorCode::Limit, "too many requests in flight on this node"));
        }
        Ok(())
    }

    fn issue(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        waiting: Waiting,
        record: StoreRecord,
    ) -> OpId {
        let Some(remote) = self.remote.as_mut() else {
            return OpId(0);
        };
        let op = remote.next_op;
        remote.next_op += 1;
        remote.ops.insert(
            op,
            Pending {
                issued: now,
                conn,
                waiting,
            },
        );
        if let Some(c) = conn.and_then(|c| self.conns.at_mut(c)) {
            c.inflight += 1;
        }
        self.push(Record::Store(op, Box::new(record)));
        self.schedule(now + self.config.store_timeout + self.config.store_timeout);
        OpId(op)
    }

    pub(super) fn read(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        waiting: Waiting,
        after: Option<u64>,
        limit: usize,
    ) -> Result<OpId, Refused> {
        let name = match &waiting {
            Waiting::Subscribe { room, .. }
            | Waiting::History { room, .. }
            | Waiting::Gap { room }
            | Waiting::Publish { room, .. }
            | Waiting::Presence { room, .. }
            | Waiting::QueryHistory { room }
            | Waiting::QueryPresence { room } => room.clone(),
        };
        if !matches!(waiting, Waiting::Gap { .. }) {
            self.admit(conn)?;
        }
        let room = self
            .arena
            .push(name.as_bytes())
            .map_err(|_| (ErrorCode::Unavailable, "unavailable: output storage full"))?;
        let record = match waiting {
            Waiting::Presence { .. } | Waiting::QueryPresence { .. } => {
                StoreRecord::Presence { room }
            }
            _ => StoreRecord::Read { room, after, limit },
        };
        Ok(self.issue(now, conn, waiting, record))
    }

    // ------------------------------------------------------- requests

    /// A subscriber was added to room `key` (or was there already): read the
    /// room from the store before answering.
    pub(super) fn subscribe_remote(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        key: u32,
        fresh: bool,
        recover: Option<&crate::protocol::Recover<'_>>,
    ) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let name = room.name.clone();
        if fresh {
            if let Some(s) = room
                .subscribers
                .as_mut_slice()
                .iter_mut()
                .find(|s| s.conn == id)
            {
                s.after = WAITING;
            }
            if let Some(relay) = room.relay.as_mut() {
                relay.holding += 1;
            }
        }
        let recover = recover.map(|r| {
            let mut epoch = Epoch::new();
            let _ = epoch.push_str(&r.epoch);
            (epoch, r.offset)
        });
        let (after, limit) = match &recover {
            Some((_, offset)) => (Some(*offset), self.config.max_recover + 1),
            None => (None, 0),
        };
        let waiting = Waiting::Subscribe {
            req,
            room: name,
            recover,
            fresh,
            tries: 1,
        };
        if let Err((code, reason)) = self.read(now, Some(id), waiting, after, limit) {
            if fresh {
                self.drop_subscription(key, id);
            }
            self.reply_error(id, req, code, reason);
        }
    }

    /// Removes `id`'s subscription to room `key` entirely.
    fn drop_subscription(&mut self, key: u32, id: ConnId) {
        if let Some(conn) = self.conns.at_mut(id)
            && let Some(pos) = conn.rooms.as_slice().iter().position(|r| *r == key)
        {
            conn.rooms.swap_remove(pos);
        }
        self.remove_subscriber(key, id);
    }

    pub(super) fn history_remote(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        name: &str,
        since: Option<u64>,
        limit: usize,
    ) {
        let waiting = Waiting::History {
            req,
            room: to_room(name),
        };
        if let Err((code, reason)) = self.read(now, Some(id), waiting, since, limit) {
            self.reply_error(id, req, code, reason);
        }
    }

    pub(super) fn presence_remote(
        &mut self,
        now: Instant,
        id: ConnId,
        req: Option<u64>,
        name: &str,
    ) {
        let waiting = Waiting::Presence {
            req,
            room: to_room(name),
        };
        if let Err((code, reason)) = self.read(now, Some(id), waiting, None, 0) {
            self.reply_error(id, req, code, reason);
        }
    }

    /// Tells the store that `member` joined or left room `key` on this node.
    pub(super) fn announce_to_store(&mut self, key: u32, join: bool, member: &MemberCopy) {
        if self.remote.is_none() {
            return;
        }
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let m = member.get();
        let arena = &mut self.arena;
        let record = (|| {
            Some(StoreRecord::Member {
                join,
                room: arena.push(room.name.as_bytes()).ok()?,
                client: arena.push(m.client.as_bytes()).ok()?,
                user: match &m.user {
                    Some(u) => Some(arena.push(u.as_bytes()).ok()?),
                    None => None,
                },
                info: match &m.info {
                    Some(i) => Some(arena.push(i).ok()?),
                    None => None,
                },
            })
        })();
        if let Some(record) = record {
            self.push(Record::Store(0, Box::new(record)));
        }
    }

    // ------------------------------------------------------- answers

    /// The store answered operation `op` (see [`StoreOp`] for what each
    /// expects). Drain [`Hub::poll_output`] afterwards.
    pub fn handle_store(&mut self, now: Instant, op: OpId, result: StoreResult<'_>) {
        let Some(remote) = self.remote.as_mut() else {
            return;
        };
        let Some(pending) = remote.ops.remove(&op.0) else {
            return;
        };
        let conn = pending
            .conn
            .filter(|c| self.conns.at(*c).is_some_and(|c| c.phase != Phase::Ending));
        if let Some(c) = pending.conn.and_then(|c| self.conns.at_mut(c)) {
            c.inflight = c.inflight.saturating_sub(1);
        }
        match pending.waiting {
            Waiting::Publish { req, room } => {
                self.publish_done(op, pending.conn, conn, req, &room, result)
            }
            Waiting::Subscribe {
                req,
                room,
                recover,
                fresh,
                tries,
            } => self.subscribe_done(
                now,
                pending.conn,
                conn,
                req,
                &room,
                recover,
                fresh,
                tries,
                result,
            ),
            Waiting::History { req, room } => {
                if let Some(id) = conn {
                    self.read_done(id, req, &room, result, Self::history_frame);
                }
            }
            Waiting::Presence { req, room } => {
                if let Some(id) = conn {
                    self.read_done(id, req, &room, result, Self::presence_frame);
                }
            }
            Waiting::QueryHistory { room } => {
                let encoded = self.history_frame(Codec::Json, None, &room, result);
                self.push_answer(op, encoded);
            }
            Waiting::QueryPresence { room } => {
                let encoded = self.presence_frame(Codec::Json, None, &room, result);
                self.push_answer(op, encoded);
            }
            Waiting::Gap { room } => self.gap_done(now, &room, result),
        }
    }

    fn publish_done(
        &mut self,
        op: OpId,
        origin: Option<ConnId>,
        conn: Option<ConnId>,
        req: Option<u64>,
        room: &str,
        result: StoreResult<'_>,
    ) {
        let ack = match result {
            StoreResult::Appended {
                epoch,
                offset,
                duplicate,
            } => {
                if !duplicate {
                    self.published += 1;
                }
                Ok((epoch, offset))
            }
            _ => Err(()),
        };
        if origin.is_none() {
            let (epoch, result) = match ack {
                Ok((epoch, offset)) => (epoch, Ok(offset)),
                Err(()) => ("", Err(PublishError::Unavailable)),
            };
            return self.push_published(op, room, epoch, result);
        }
        let Some(id) = conn else {
            return;
        };
        match (ack, req) {
            (Ok((_, offset)), Some(req)) => self.reply(
                id,
                &ServerFrame::Ack {
                    id: req,
                    room: Text::Borrowed(room),
                    offset,
                },
            ),
            (Ok(_), None) => {}
            (Err(()), req) => self.reply_error(id, req, ErrorCode::Unavailable, STORE_FAILED),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn subscribe_done(
        &mut self,
        now: Instant,
        origin: Option<ConnId>,
        conn: Option<ConnId>,
        req: Option<u64>,
        name: &str,
        recover: Option<(Epoch, u64)>,
        fresh: bool,
        tries: u8,
        result: StoreResult<'_>,
    ) {
        let key = self.index.find(name);
        let waiting = |hub: &Self, id: ConnId| {
            key.and_then(|k| hub.rooms.get(k)).is_some_and(|r| {
                r.subscribers
                    .as_slice()
                    .iter()
                    .any(|s| s.conn == id && s.after == WAITING)
            })
        };
        // Still waiting (not unsubscribed or closed meanwhile)?
        let live = fresh && origin.is_some_and(|id| waiting(self, id));
        let StoreResult::Read {
            epoch,
            offset: latest,
            messages,
        } = result
        else {
            if let (true, Some(key), Some(id)) = (live, key, origin) {
                self.drop_subscription(key, id);
            }
            if let Some(id) = conn {
                self.reply_error(id, req, ErrorCode::Unavailable, STORE_FAILED);
            }
            return;
        };
        let (Some(key), Some(id)) = (key, conn) else {
            return;
        };
        self.learn(key, epoch, latest);
        if latest > self.rooms.get(key).map_or(0, |r| r.offset) {
            self.start_gap(now, key);
        }
        let Some(room) = self.rooms.get(key) else {
            return;
        };
        let head = room.offset;
        // The held messages must take over right after the read's `latest`.
        let covered = !live || head <= latest || {
            let first = room
                .relay
                .as_ref()
                .and_then(|r| r.held.front())
                .map(|(o, _)| *o);
            first.is_some_and(|f| f <= latest + 1) && room.epoch.as_str() == epoch
        };
        if !covered && tries < SUBSCRIBE_TRIES {
            // Messages went past while the store answered and were not all
            // held: read again.
            let (after, limit) = match &recover {
                Some((_, offset)) => (Some(*offset), self.config.max_recover + 1),
                None => (None, 0),
            };
            let waiting = Waiting::Subscribe {
                req,
                room: to_room(name),
                recover,
                fresh,
                tries: tries + 1,
            };
            if self.read(now, Some(id), waiting, after, limit).is_err() {
                self.drop_subscription(key, id);
                self.reply_error(id, req, ErrorCode::Unavailable, STORE_FAILED);
            }
            return;
        }
        if !covered {
            self.drop_subscription(key, id);
            return self.reply_error(
                id,
                req,
                ErrorCode::Unavailable,
                "unavailable: the room moves too fast",
            );
        }
        let codec = match self.conns.at(id) {
            Some(c) => c.codec,
            None => return,
        };
        let recovered = recover.as_ref().is_some_and(|(e, from)| {
            e.as_str() == epoch
                && *from <= latest
                && (latest - from) as usize <= self.config.max_recover
                && messages.len() as u64 == latest - from
                && messages
                    .iter()
                    .enumerate()
                    .all(|(i, m)| m.offset == from + 1 + i as u64)
        });
        let frames: Vec<MessageFrame<'_>> = if recovered {
            messages
                .iter()
                .map(|m| stored_frame(name, epoch, m))
                .collect()
        } else {
            Vec::new()
        };
        let reply = |recovered: bool, frames| ServerFrame::Subscribed {
            id: req,
            room: Text::Borrowed(name),
            epoch: Text::Borrowed(epoch),
            offset: latest,
            recovered,
            messages: crate::protocol::Seq::Borrowed(frames),
        };
        let mut r = self.arena.encode(codec, &reply(recovered, &frames[..]));
        if let Ok(range) = &r
            && recovered
            && range.len() > self.config.max_reply_bytes
        {
            self.arena.truncate(range.start);
            r = self.arena.encode(codec, &reply(false, &frames[..0]));
        }
        drop(frames);
        self.unicast(id, codec, r);
        if !live {
            return;
        }
        // The splice: what was delivered past `latest` while it waited.
        let mut after = latest;
        if let Some(room) = self.rooms.get(key)
            && let Some(relay) = room.relay.as_ref()
            && room.epoch.as_str() == epoch
        {
            for (offset, record) in relay.held.iter().filter(|(o, _)| *o > latest) {
                let Ok((from, data)) =
                    postcard::from_bytes::<(Option<Sender<'_>>, Data<'_>)>(record)
                else {
                    continue;
                };
                let frame = ServerFrame::Message(MessageFrame {
                    room: Text::Borrowed(&room.name),
                    epoch: Text::Borrowed(&room.epoch),
                    offset: *offset,
                    from,
                    data,
                });
                let r = self.arena.encode(codec, &frame);
                match r {
                    Ok(bytes) => {
                        let _ = self.records.push_back(Record::Unicast {
                            conn: id,
                            codec,
                            bytes,
                        });
                    }
                    Err(_) => break,
                }
                after = *offset;
            }
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if let Some(s) = room
            .subscribers
            .as_mut_slice()
            .iter_mut()
            .find(|s| s.conn == id)
        {
            s.after = after.max(latest);
        }
        if let Some(relay) = room.relay.as_mut() {
            relay.holding = relay.holding.saturating_sub(1);
            if relay.holding == 0 {
                relay.held.clear();
            }
        }
        if self.config.namespace_of(name).presence
            && let Some(member) = self.member_of(id)
        {
            let member = member_static(&member);
            self.broadcast_presence(key, true, &member);
            self.announce_to_store(key, true, &member);
        }
    }

    /// Answers connection `id`'s read request (`history` or `presence`)
    /// with the frame that `frame` encodes from the store's result, or
    /// `error 4013` when the store failed it.
    fn read_done(
        &mut self,
        id: ConnId,
        req: Option<u64>,
        name: &str,
        result: StoreResult<'_>,
        frame: ReadFrame<Self>,
    ) {
        let Some(codec) = self.conns.at(id).map(|c| c.codec) else {
            return;
        };
        match frame(self, codec, req, name, result) {
            Some(encoded) => self.unicast(id, codec, encoded),
            None => self.reply_error(id, req, ErrorCode::Unavailable, STORE_FAILED),
        }
    }

    /// Encodes the `history` frame of what the store read (bounded by
    /// `max_reply_bytes`); `None` when the store failed the read.
    pub(super) fn history_frame(
        &mut self,
        codec: Codec,
        req: Option<u64>,
        name: &str,
        result: StoreResult<'_>,
    ) -> Option<Result<Range<usize>, crate::protocol::EncodeError>> {
        let StoreResult::Read {
            epoch,
            offset,
            messages,
        } = result
        else {
            return None;
        };
        let frames: Vec<MessageFrame<'_>> = messages
            .iter()
            .map(|m| stored_frame(name, epoch, m))
            .collect();
        let max = self.config.max_reply_bytes;
        let count = fit_frames(&mut self.arena, codec, name, &frames, max);
        Some(encode_bounded(
            &mut self.arena,
            max,
            count,
            |arena, count| {
                arena.encode(
                    codec,
                    &ServerFrame::History {
                        id: req,
                        room: Text::Borrowed(name),
                        epoch: Text::Borrowed(epoch),
                        offset,
                        messages: crate::protocol::Seq::Borrowed(&frames[..count]),
                    },
                )
            },
        ))
    }

    /// Encodes the `presence` frame of the members the store listed; `None`
    /// when the store failed the operation.
    pub(super) fn presence_frame(
        &mut self,
        codec: Codec,
        req: Option<u64>,
        name: &str,
        result: StoreResult<'_>,
    ) -> Option<Result<Range<usize>, crate::protocol::EncodeError>> {
        let StoreResult::Members(members) = result else {
            return None;
        };
        let frame = ServerFrame::Presence {
            id: req,
            room: Text::Borrowed(name),
            members: crate::protocol::Seq::Borrowed(members),
        };
        Some(self.arena.encode(codec, &frame))
    }

    // ------------------------------------------------------- the relay

    /// Something arrived from the store's relay. Drain
    /// [`Hub::poll_output`] afterwards.
    pub fn handle_relay(&mut self, now: Instant, relay: Relay<'_>) {
        let Some(remote) = self.remote.as_mut() else {
            return;
        };
        match relay {
            Relay::StoreDown => remote.down = true,
            Relay::StoreUp => {
                remote.down = false;
                // The store may have lost its members (and this hub their
                // announcements): the next `Relay::Members` announces every
                // member it lists again.
                for key in 0..self.rooms.key_bound() {
                    if let Some(relay) = self.rooms.get_mut(key).and_then(|r| r.relay.as_mut()) {
                        relay.others.clear();
                    }
                }
                for key in 0..self.rooms.key_bound() {
                    if self
                        .rooms
                        .get(key)
                        .and_then(|r| r.relay.as_ref())
                        .is_some_and(|r| r.known)
                    {
                        self.start_gap(now, key);
                    }
                }
            }
            Relay::Join { room, member } | Relay::Leave { room, member }
                if self.is_local(&member) =>
            {
                let _ = room;
            }
            Relay::Join { room, member } => self.relay_presence(room, true, &member),
            Relay::Leave { room, member } => self.relay_presence(room, false, &member),
            Relay::Members {
                room,
                members,
                announce,
            } => self.relay_members(room, members, announce),
            Relay::Message {
                room,
                epoch,
                offset,
                from,
                data,
            } => self.relay_message(now, room, epoch, offset, from, data),
        }
    }

    fn is_local(&self, member: &Member<'_>) -> bool {
        member
            .client
            .strip_prefix(self.node.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
    }

    /// A join or leave of another node's member: a join already known (also
    /// listed by a [`Relay::Members`]) is not announced twice.
    fn relay_presence(&mut self, room: &str, join: bool, member: &Member<'_>) {
        let Some(key) = self.index.find(room) else {
            return;
        };
        if let Some(relay) = self.rooms.get_mut(key).and_then(|r| r.relay.as_mut()) {
            let client: &str = &member.client;
            let fresh = if join {
                relay
                    .others
                    .insert(client.into(), member_static(member))
                    .is_none()
            } else {
                relay.others.remove(client);
                true
            };
            if !fresh {
                return;
            }
        }
        let member = member_static(member);
        self.broadcast_presence(key, join, &member);
    }

    /// [`Relay::Members`]: the room's members as the store lists them.
    fn relay_members(&mut self, room: &str, members: &[Member<'_>], announce: bool) {
        let Some(key) = self.index.find(room) else {
            return;
        };
        let node = self.node.as_str();
        let remote = |m: &&Member<'_>| {
            !m.client
                .strip_prefix(node)
                .is_some_and(|rest| rest.starts_with('-'))
        };
        let listed: Vec<&Member<'_>> = members.iter().filter(remote).collect();
        let Some(relay) = self.rooms.get_mut(key).and_then(|r| r.relay.as_mut()) else {
            return;
        };
        if !announce {
            for m in listed {
                relay
                    .others
                    .insert(String::from(&*m.client), member_static(m));
            }
            return;
        }
        let mut joined = Vec::new();
        for m in &listed {
            if !relay.others.contains_key(&*m.client) {
                relay
                    .others
                    .insert(String::from(&*m.client), member_static(m));
                joined.push(member_static(m));
            }
        }
        let gone: Vec<String> = relay
            .others
            .keys()
            .filter(|c| !listed.iter().any(|m| *m.client == ***c))
            .cloned()
            .collect();
        let gone: Vec<MemberCopy> = gone.iter().filter_map(|c| relay.others.remove(c)).collect();
        for m in &joined {
            self.broadcast_presence(key, true, m);
        }
        for m in &gone {
            self.broadcast_presence(key, false, m);
        }
    }

    fn relay_message(
        &mut self,
        now: Instant,
        name: &str,
        epoch: &str,
        offset: u64,
        from: Option<Sender<'_>>,
        data: &[u8],
    ) {
        let Some(key) = self.index.find(name) else {
            return;
        };
        if offset == 0 {
            return;
        }
        self.learn(key, epoch, offset - 1);
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        if offset <= room.offset {
            return;
        }
        let head = room.offset;
        let Some(relay) = room.relay.as_mut() else {
            return;
        };
        relay.latest = relay.latest.max(offset);
        if offset == head + 1 {
            self.deliver(key, offset, from, data);
            self.drain_ahead(key);
        } else {
            if relay.ahead.len() < self.config.max_recover
                && let Ok(record) = postcard::to_allocvec(&(from, Data::Borrowed(data)))
            {
                relay.ahead.insert(offset, record);
            }
            self.start_gap(now, key);
        }
    }

    /// Takes the room's epoch and offset from the store when it has none yet;
    /// a different epoch means the store lost the room: start it over.
    fn learn(&mut self, key: u32, epoch: &str, offset: u64) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let Some(relay) = room.relay.as_mut() else {
            return;
        };
        if relay.known && room.epoch.as_str() == epoch {
            return;
        }
        let reset = relay.known;
        relay.known = true;
        relay.held.clear();
        relay.ahead.clear();
        relay.latest = offset;
        room.epoch.clear();
        let _ = room.epoch.push_str(epoch);
        room.offset = if reset { 0 } else { offset };
        if reset {
            for s in room.subscribers.as_mut_slice() {
                if s.after != WAITING {
                    s.after = 0;
                }
            }
        }
    }

    /// Fans message `offset` of room `key` out and holds it for the
    /// subscribers still waiting for their read.
    fn deliver(&mut self, key: u32, offset: u64, from: Option<Sender<'_>>, data: &[u8]) {
        let max_recover = self.config.max_recover;
        // Only a room with subscribers waiting for their read keeps a copy
        // (rare): the common delivery allocates nothing here.
        let holding = self
            .rooms
            .get(key)
            .and_then(|r| r.relay.as_ref())
            .is_some_and(|r| r.holding > 0);
        let record = holding
            .then(|| postcard::to_allocvec(&(from.clone(), Data::Borrowed(data))).ok())
            .flatten();
        if self.fan_out(key, offset, from, data).is_err() {
            return;
        }
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        room.offset = offset;
        if let (Some(relay), Some(record)) = (room.relay.as_mut(), record) {
            if relay.held.len() >= max_recover {
                relay.held.pop_front();
            }
            relay.held.push_back((offset, record));
        }
    }

    /// Delivers the messages that waited past a gap, as far as they are contiguous.
    fn drain_ahead(&mut self, key: u32) {
        loop {
            let Some(room) = self.rooms.get_mut(key) else {
                return;
            };
            let next = room.offset + 1;
            let Some(relay) = room.relay.as_mut() else {
                return;
            };
            while relay
                .ahead
                .first_key_value()
                .is_some_and(|(o, _)| *o < next)
            {
                relay.ahead.pop_first();
            }
            let Some(record) = relay.ahead.remove(&next) else {
                return;
            };
            self.deliver_record(key, next, record);
        }
    }

    fn deliver_record(&mut self, key: u32, offset: u64, record: Vec<u8>) {
        match postcard::from_bytes::<(Option<Sender<'_>>, Data<'_>)>(&record) {
            Ok((from, data)) => self.deliver(key, offset, from, &data),
            Err(_) => {
                if let Some(room) = self.rooms.get_mut(key) {
                    room.offset = offset;
                }
            }
        }
    }

    /// Reads what room `key` is missing past its last delivered offset,
    /// unless a read is already in flight.
    fn start_gap(&mut self, now: Instant, key: u32) {
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let head = room.offset;
        let name = room.name.clone();
        let Some(relay) = room.relay.as_mut() else {
            return;
        };
        if relay.fetching {
            return;
        }
        relay.fetching = true;
        let limit = relay.latest.saturating_sub(head).clamp(1, GAP_READ) as usize;
        if self
            .read(now, None, Waiting::Gap { room: name }, Some(head), limit)
            .is_err()
            && let Some(relay) = self.rooms.get_mut(key).and_then(|r| r.relay.as_mut())
        {
            relay.fetching = false;
        }
    }

    fn gap_done(&mut self, now: Instant, name: &str, result: StoreResult<'_>) {
        let Some(key) = self.index.find(name) else {
            return;
        };
        if let Some(relay) = self.rooms.get_mut(key).and_then(|r| r.relay.as_mut()) {
            relay.fetching = false;
        }
        let StoreResult::Read {
            epoch,
            offset: latest,
            messages,
        } = result
        else {
            // Read again later.
            if let Some(remote) = self.remote.as_mut() {
                remote.retry_at = remote.retry_at.min(now + GAP_RETRY);
            }
            return self.schedule(now + GAP_RETRY);
        };
        self.learn(key, epoch, latest);
        let before = self.rooms.get(key).map_or(0, |r| r.offset);
        if let Some(relay) = self.rooms.get_mut(key).and_then(|r| r.relay.as_mut()) {
            relay.latest = relay.latest.max(latest);
        }
        for m in messages {
            let Some(room) = self.rooms.get(key) else {
                return;
            };
            if m.offset != room.offset + 1 {
                continue;
            }
            self.deliver(key, m.offset, m.from.clone(), m.data);
        }
        self.drain_ahead(key);
        let Some(room) = self.rooms.get_mut(key) else {
            return;
        };
        let head = room.offset;
        let Some(relay) = room.relay.as_mut() else {
            return;
        };
        if head > before {
            if let Some(remote) = self.remote.as_mut() {
                remote.gaps_filled += 1;
            }
        } else if head < relay.latest && messages.is_empty() {
            // The store no longer keeps what is missing: skip to what came
            // next, counted in `relay_gaps_lost`.
            let next = relay.ahead.first_key_value().map(|(o, _)| *o);
            room.offset = next.map_or(relay.latest, |o| o - 1);
            if let Some(remote) = self.remote.as_mut() {
                remote.gaps_lost += 1;
            }
            self.drain_ahead(key);
        }
        if self
            .rooms
            .get(key)
            .and_then(|r| r.relay.as_ref().map(|l| r.offset < l.latest))
            .unwrap_or(false)
        {
            self.start_gap(now, key);
        }
    }

    /// Fails operations that the store left unanswered for twice
    /// `store_timeout`, and reads again the gaps whose read failed.
    pub(super) fn store_timers(&mut self, now: Instant) {
        let Some(remote) = self.remote.as_mut() else {
            return;
        };
        let limit = self.config.store_timeout + self.config.store_timeout;
        let mut late = Vec::new();
        for (op, p) in &remote.ops {
            if now < p.issued + limit {
                self.next_sweep = self.next_sweep.min(p.issued + limit);
                break;
            }
            late.push(*op);
        }
        let retry = now >= remote.retry_at;
        if retry {
            remote.retry_at = Instant::NEVER;
        } else {
            let at = remote.retry_at;
            self.schedule(at);
        }
        for op in late {
            self.handle_store(now, OpId(op), StoreResult::Unavailable);
        }
        if retry {
            for key in 0..self.rooms.key_bound() {
                let behind = self.rooms.get(key).is_some_and(|r| {
                    r.relay
                        .as_ref()
                        .is_some_and(|l| l.known && !l.fetching && r.offset < l.latest)
                });
                if behind {
                    self.start_gap(now, key);
                }
            }
        }
    }

    /// Counts of the remote store: operations in flight, gaps filled and lost.
    pub(super) fn store_stats(&self) -> (usize, u64, u64, bool) {
        match &self.remote {
            Some(r) => (r.ops.len(), r.gaps_filled, r.gaps_lost, !r.down),
            None => (0, 0, 0, true),
        }
    }
}

fn stored_frame<'a>(room: &'a str, epoch: &'a str, m: &StoredMessage<'a>) -> MessageFrame<'a> {
    MessageFrame {
        room: Text::Borrowed(room),
        epoch: Text::Borrowed(epoch),
        offset: m.offset,
        from: m.from.clone(),
        data: Data::Borrowed(m.data),
    }
}

/// [`Hub::history_frame`] or [`Hub::presence_frame`]: a read's answer encoded
/// from the store's result (`None` when the store failed it).
type ReadFrame<H> = fn(
    &mut H,
    Codec,
    Option<u64>,
    &str,
    StoreResult<'_>,
) -> Option<Result<Range<usize>, crate::protocol::EncodeError>>;
