//! The runtime's clock: wall-clock anchor plus monotonic elapsed time, handed
//! to the core as [`switchboard_core::Instant`].

use std::time::{SystemTime, UNIX_EPOCH};

use switchboard_core::Instant;

/// Converts between tokio's monotonic clock and the core's [`Instant`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    mono: tokio::time::Instant,
    unix_us: u64,
}

impl Clock {
    pub(crate) fn new() -> Self {
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Clock {
            mono: tokio::time::Instant::now(),
            unix_us,
        }
    }

    /// Now, for the core.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(self.unix_us + self.mono.elapsed().as_micros() as u64)
    }

    /// The tokio instant of a core instant.
    pub(crate) fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        let us = at.as_micros().saturating_sub(self.unix_us);
        self.mono + std::time::Duration::from_micros(us.min(365 * 24 * 3600 * 1_000_000))
    }
}
