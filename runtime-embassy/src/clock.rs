//! Time for the core: embassy-time's monotonic clock, anchored to the wall
//! clock that the application gives.
//!
//! The core's [`Instant`] is microseconds on the Unix time scale, so that
//! token `exp` claims compare against it; it must still advance
//! monotonically. [`Clock`] takes the wall-clock time once (from an RTC,
//! SNTP, or the build) and adds embassy-time's elapsed time to it. Timers
//! (auth deadlines, Pings, reaping) only ever use differences, so a wrong
//! wall clock affects token expiry and nothing else.

use switchboard_core::Instant;

/// The core's clock on embassy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix microseconds at `start`.
    wall_at_start: u64,
    /// embassy-time's reading when the wall clock was given.
    start: embassy_time::Instant,
}

impl Clock {
    /// A clock whose wall time is `unix_micros` now. Pass 0 if the device
    /// does not know the time: tokens with `exp` then look valid until
    /// their `exp` passes on this scale (configure tokens without `exp`, or
    /// give the time).
    pub fn new(unix_micros: u64) -> Self {
        Clock {
            wall_at_start: unix_micros,
            start: embassy_time::Instant::now(),
        }
    }

    /// Now, as the core counts it.
    pub fn now(&self) -> Instant {
        let elapsed = embassy_time::Instant::now()
            .saturating_duration_since(self.start)
            .as_micros();
        Instant::from_micros(self.wall_at_start.saturating_add(elapsed))
    }

    /// The embassy-time instant of the core's `at` (for `Timer::at`).
    pub fn to_embassy(&self, at: Instant) -> embassy_time::Instant {
        let since = at.as_micros().saturating_sub(self.wall_at_start);
        self.start
            .checked_add(embassy_time::Duration::from_micros(since))
            .unwrap_or(embassy_time::Instant::MAX)
    }
}
