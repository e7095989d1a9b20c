//! Room producers: a task per room that runs while the room has subscribers.
//!
//! The core says when a room gets its first subscriber
//! (`Output::RoomOccupied`) and loses its last one (`Output::RoomVacant`);
//! the runtime starts the registered producers whose pattern matches and
//! aborts them on vacancy, so a background task never outlives its audience.

use std::sync::Arc;

use crate::engine::Engine;
use crate::runtime::Runtime;
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

    /// Publishes `data` to the room (server-side publish: `from` is null).
    /// For JSON subscribers, `data` should be JSON text.
    pub fn publish(&self, data: impl AsRef<[u8]>) -> Result<u64, PublishError> {
        self.engine.publish(&self.room, data.as_ref(), None)
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
            .map(|(_, f)| {
                let ctx = RoomContext {
                    room: room.to_owned(),
                    engine: engine.clone(),
                };
                tracing::debug!(room, "starting room producer");
                rt.spawn(f(ctx))
            })
            .collect()
    }
}
