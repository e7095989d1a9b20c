//! Room producers: a task per room that runs while the room has subscribers.
//!
//! The core says when a room gets its first subscriber
//! (`Output::RoomOccupied`) and loses its last one (`Output::RoomVacant`);
//! the runtime starts the registered producers whose pattern matches and
//! aborts them on vacancy, so a background task never outlives its audience.
//!
//! In a cluster (a hub with a remote store) a room may have subscribers on
//! several nodes, but its producer runs on one: each node with the room
//! occupied competes for the lease `producer:N` of the room in the store
//! (Redis: `SET NX PX`, renewed every third of its time by the holder); the
//! holder runs the producer, the others try again every third of the lease
//! time, so a holder that loses its subscribers (and gives the lease up) or
//! dies (and lets it expire) is replaced within one lease time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::runtime::Runtime;
use crate::store::Store;
use futures_util::future::BoxFuture;
use switchboard_core::hub::PublishError;
use switchboard_core::room::pattern_matches;

/// What a producer task gets: its room and a way to publish to it.
#[derive(Clone)]
pub struct RoomContext {
    room: String,
    engine: Arc<dyn Engine>,
}

impl std::fmt::Debug for RoomContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomContext")
            .field("room", &self.room)
            .finish()
    }
}

impl RoomContext {
    /// The room this producer serves.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Publishes `data` to the room (server-side publish: `from` is null)
    /// and returns its offset once it is stored (at once in memory; after
    /// the store's answer in a cluster). For JSON subscribers, `data` should
    /// be JSON text.
    ///
    /// The publish is issued when this is called (publishes keep the order
    /// of the calls); the future only waits for its answer.
    pub fn publish(
        &self,
        data: impl AsRef<[u8]>,
    ) -> impl std::future::Future<Output = Result<u64, PublishError>> + Send + 'static {
        let wait = self.engine.publish_request(&self.room, data.as_ref(), None);
        async move { wait.wait().await.map(|(_, offset)| offset) }
    }
}

type ProducerFn = Arc<dyn Fn(RoomContext) -> BoxFuture<'static, ()> + Send + Sync>;

/// The registered producers, by room pattern.
#[derive(Clone, Default)]
pub(crate) struct Producers {
    list: Vec<(String, ProducerFn)>,
}

impl Producers {
    pub(crate) fn add(&mut self, pattern: String, f: ProducerFn) {
        self.list.push((pattern, f));
    }

    /// Starts every producer whose pattern matches `room`; dropping a
    /// returned task cancels it.
    pub(crate) fn start<R: Runtime>(
        &self,
        room: &str,
        engine: Arc<dyn Engine>,
        rt: &R,
    ) -> Vec<R::Task> {
        self.list
            .iter()
            .filter(|(pattern, _)| pattern_matches(pattern, room))
            .enumerate()
            .map(|(i, (_, f))| {
                let ctx = RoomContext {
                    room: room.to_owned(),
                    engine: engine.clone(),
                };
                tracing::debug!(room, "starting room producer");
                match engine.store() {
                    None => rt.spawn(f(ctx)),
                    Some(store) => {
                        let holder = engine.node_id();
                        rt.spawn(leased(rt.clone(), store, i, holder, f.clone(), ctx))
                    }
                }
            })
            .collect()
    }
}

/// How long a producer's lease lasts unless renewed.
const LEASE: Duration = Duration::from_secs(6);

/// Gives the lease up when the producer's task ends or is cancelled.
struct Release {
    store: Arc<dyn Store>,
    name: String,
    holder: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.store.release(&self.name, &self.holder);
    }
}

/// Runs the producer while this node holds the room's lease.
async fn leased<R: Runtime>(
    rt: R,
    store: Arc<dyn Store>,
    index: usize,
    holder: String,
    f: ProducerFn,
    ctx: RoomContext,
) {
    let name = format!("producer:{index}:{}", ctx.room);
    let _release = Release {
        store: store.clone(),
        name: name.clone(),
        holder: holder.clone(),
    };
    loop {
        if store.lease(&name, &holder, LEASE).await {
            tracing::debug!(room = ctx.room, "producer lease taken");
            let renew = async {
                loop {
                    rt.sleep_until(Instant::now() + LEASE / 3).await;
                    if !store.lease(&name, &holder, LEASE).await {
                        return;
                    }
                }
            };
            let producer = f(ctx.clone());
            let renew = std::pin::pin!(renew);
            match futures_util::future::select(producer, renew).await {
                futures_util::future::Either::Left(_) => return,
                futures_util::future::Either::Right(_) => {
                    tracing::warn!(room = ctx.room, "producer lease lost: producer stopped");
                }
            }
        }
        rt.sleep_until(Instant::now() + LEASE / 3).await;
    }
}
