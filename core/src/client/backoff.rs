//! Reconnect delays: exponential backoff with full jitter, reset after a
//! stable connection. Randomness comes from a seed (sans-I/O).

use crate::time::Duration;

/// The backoff of one client session.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
            rng: seed,
        }
    }

    /// The delay before the next attempt: uniform in `[0, min(max, min·2ⁿ)]`
    /// ("full jitter"), never below `floor`.
    pub(crate) fn next(&mut self, floor: Duration) -> Duration {
        let shift = self.attempt.min(20);
        self.attempt = self.attempt.saturating_add(1);
        let cap = self
            .min
            .as_micros()
            .saturating_mul(1u64 << shift)
            .min(self.max.as_micros());
        let jitter = if cap == 0 {
            0
        } else {
            self.random() % (cap + 1)
        };
        Duration::from_micros(jitter.max(floor.as_micros()))
    }

    /// The connection has been stable: start from the minimum again.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// 64 random bits (splitmix64).
    pub(crate) fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
