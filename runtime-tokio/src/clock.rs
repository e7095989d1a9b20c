//! The server's clock, with tokio instants for the client's timers.

use switchboard_core::Instant;

/// Converts between tokio's monotonic clock and the core's [`Instant`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(switchboard_server::Clock);

impl Clock {
    pub(crate) fn new() -> Self {
        Clock(switchboard_server::Clock::new())
    }

    /// Now, for the core.
    pub(crate) fn now(&self) -> Instant {
        self.0.now()
    }

    /// The tokio instant of a core instant.
    pub(crate) fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        self.0.to_std(at).into()
    }
}
