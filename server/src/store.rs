//! The seam between the engine and a remote store (a cluster's, e.g.
//! Redis): the engine hands each [`StoreOp`] and each room's listening
//! start and end to a [`Store`]; the store answers through its
//! [`StoreLink`], which feeds the hub under the engine's lock and drains its
//! outputs as every other input does.
//!
//! A [`Store`] is called with the engine's lock held: it must only queue
//! the work (a channel to its own task) and return, and never call its link
//! from inside those calls. The link may be called from any task, at any
//! time; it takes the lock only for the hub's step, never across an await.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use switchboard_core::Instant;
use switchboard_core::hub::{Disconnect, OpId, Relay, Stats, StoreOp, StoreResult};

use crate::engine::Engine;

/// A remote store (the second implementation of the core's store contract,
/// `switchboard_core::hub::StoreOp`). Object safe; see the module docs for
/// the locking rule.
pub trait Store: Send + Sync + 'static {
    /// This node's id for client ids unique across the cluster (1–8 bytes
    /// of `[0-9a-z]`), if the store hands one out.
    fn node_id(&self) -> Option<String>;

    /// The engine is built: from now on, answer and relay through `link`.
    /// Called once, before any other call but [`Store::node_id`].
    fn start(&self, link: StoreLink);

    /// Perform `op` and answer it through [`StoreLink::result`] (every
    /// operation with an id, exactly once). `now` is the hub's time, to
    /// read `op`'s deadline against. Called under the engine lock: queue, do
    /// not wait.
    fn request(&self, now: Instant, op: StoreOp<'_>);

    /// `room` has local subscribers: listen to its relay. The operations
    /// requested after this call run only once the relay listens (the
    /// core's rule for the read that follows `RoomOccupied`).
    fn listen(&self, room: &str);

    /// `room` has no local subscriber left: stop listening to its relay.
    fn unlisten(&self, room: &str);

    /// Sends `target` with the close `reason` to every node of the cluster
    /// (this one included, through [`StoreLink::disconnect`]): the control
    /// channel.
    fn broadcast_disconnect(&self, target: OwnedDisconnect, reason: &str);

    /// The live nodes of the cluster, as registered in the store (each
    /// node registers itself with an expiry it refreshes, with its counts
    /// from [`StoreLink::stats`]); `None` when the store cannot be read.
    fn nodes(&self) -> BoxFuture<'static, Option<Vec<NodeInfo>>>;

    /// Tries to take, or to keep, the lease `name` for `holder` during
    /// `ttl`: true when `holder` holds it afterwards. Used to run a room
    /// producer once per cluster.
    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> BoxFuture<'static, bool>;

    /// Gives up the lease `name` if `holder` holds it.
    fn release(&self, name: &str, holder: &str);

    /// The store's counters (for `/healthz` and `/metrics`).
    fn stats(&self) -> StoreStats;

    /// The histogram of the store's round trips, if it keeps one
    /// (`switchboard_redis_roundtrip_seconds` in `/metrics`).
    fn round_trips(&self) -> Option<crate::RoundTrips> {
        None
    }
}

/// Counters of a remote store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Is the store reachable (`switchboard_redis_up`)?
    pub up: bool,
    /// Round trips measured (operations and health pings).
    pub roundtrips: u64,
    /// Their total time, in microseconds.
    pub roundtrip_micros: u64,
    /// The last health ping's round trip, in microseconds.
    pub last_ping_micros: u64,
    /// Reconnections after the store was lost.
    pub reconnects: u64,
    /// Messages received from the relay.
    pub relayed: u64,
}

/// One live node of a cluster (the server API's `info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its node id.
    pub node: String,
    /// Connections in its table.
    pub connections: u64,
    /// Rooms it holds state for.
    pub rooms: u64,
}

/// Which connections a cluster-wide disconnect closes, owned (it crosses
/// the control channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedDisconnect {
    /// Every connection of this user (`sub`).
    User(String),
    /// The connection with this client id.
    Client(String),
}

impl OwnedDisconnect {
    /// The core's view of it.
    pub fn as_target(&self) -> Disconnect<'_> {
        match self {
            OwnedDisconnect::User(u) => Disconnect::User(u),
            OwnedDisconnect::Client(c) => Disconnect::Client(c),
        }
    }
}

/// The store's way back into the hub. Cheap to clone; it does not keep
/// the engine alive (after the server is dropped, calls do nothing).
#[derive(Clone)]
pub struct StoreLink {
    engine: Weak<dyn Engine>,
}

impl std::fmt::Debug for StoreLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLink")
    }
}

impl StoreLink {
    pub(crate) fn new(engine: &Arc<dyn Engine>) -> Self {
        StoreLink {
            engine: Arc::downgrade(engine),
        }
    }

    /// The answer to operation `op`.
    pub fn result(&self, op: OpId, result: StoreResult<'_>) {
        if let Some(e) = self.engine.upgrade() {
            e.store_result(op, result);
        }
    }

    /// Something arrived from the relay (a message, a presence change, the
    /// store's health).
    pub fn relay(&self, relay: Relay<'_>) {
        if let Some(e) = self.engine.upgrade() {
            e.store_relay(relay);
        }
    }

    /// A disconnect arrived on the control channel: close the matching
    /// connections of this node with 4010 and `reason`; returns how many.
    pub fn disconnect(&self, target: &OwnedDisconnect, reason: &str) -> usize {
        self.engine
            .upgrade()
            .map_or(0, |e| e.disconnect(target.as_target(), reason))
    }

    /// This node's counts (for the store's node registry), while the
    /// server is there.
    pub fn stats(&self) -> Option<Stats> {
        self.engine.upgrade().map(|e| e.stats())
    }

    /// Is the server still there?
    pub fn is_live(&self) -> bool {
        self.engine.strong_count() > 0
    }
}
