//! The server's clock: a wall-clock anchor plus monotonic elapsed time,
//! handed to the core as [`switchboard_core::Instant`].

use std::time::{SystemTime, UNIX_EPOCH};

use switchboard_core::Instant;

/// Converts between the monotonic clock and the core's [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    mono: std::time::Instant,
    unix_us: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// Anchored at this moment.
    pub fn new() -> Self {
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Clock {
            mono: std::time::Instant::now(),
            unix_us,
        }
    }

    /// Now, for the core.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.unix_us + self.mono.elapsed().as_micros() as u64)
    }

    /// The monotonic instant of a core instant.
    pub fn to_std(self, at: Instant) -> std::time::Instant {
        let us = at.as_micros().saturating_sub(self.unix_us);
        self.mono + std::time::Duration::from_micros(us.min(365 * 24 * 3600 * 1_000_000))
    }
}
