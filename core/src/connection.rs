//! One connection's life-cycle phase, timers and rate limiter: the per-connection part of the
//! state machine that needs no tables (auth deadline, token expiry,
//! heartbeats, rate limit).

use crate::config::Config;
use crate::protocol::CloseCode;
use crate::time::{Duration, Instant};

/// Where a connection is in its life cycle (PROTOCOL.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Upgraded, waiting for an `auth` frame until the deadline.
    AwaitingAuth {
        /// 4002 at this time.
        deadline: Instant,
    },
    /// `welcome` sent; commands accepted.
    Open,
    /// Being closed: inputs are ignored until the runtime reports the close.
    Ending,
}

/// What a timer decided for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerVerdict {
    /// Nothing due.
    Idle,
    /// Send a WebSocket Ping.
    Ping,
    /// Close with this code.
    Close(CloseCode, &'static str),
    /// Drop the socket without a close handshake (heartbeat deadline).
    Drop,
}

/// What the rate limiter decided for a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the limit.
    Pass,
    /// Over the limit: drop the frame with `error 4008`.
    Drop,
    /// Over the limit for too long: close 4008.
    Close,
}

/// Token bucket with a memory of how long the connection has been over it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimiter {
    /// Millionths of a frame.
    tokens: u64,
    last: Instant,
    over_since: Option<Instant>,
    last_over: Instant,
}

const UNIT: u64 = 1_000_000;

impl RateLimiter {
    pub(crate) fn new(now: Instant, config: &Config) -> Self {
        RateLimiter {
            tokens: u64::from(config.rate_burst) * UNIT,
            last: now,
            over_since: None,
            last_over: now,
        }
    }

    pub(crate) fn check(&mut self, now: Instant, config: &Config) -> RateVerdict {
        if config.rate_limit == 0 {
            return RateVerdict::Pass;
        }
        let elapsed = now.saturating_since(self.last).as_micros();
        self.last = now;
        let cap = u64::from(config.rate_burst.max(1)) * UNIT;
        self.tokens = self
            .tokens
            .saturating_add(elapsed.saturating_mul(u64::from(config.rate_limit)))
            .min(cap);
        if self.tokens >= UNIT {
            self.tokens -= UNIT;
            return RateVerdict::Pass;
        }
        // Over the limit. A streak of violations with no pause longer than a
        // second counts as "persistently".
        let streak_start = match self.over_since {
            Some(start) if now.saturating_since(self.last_over) <= Duration::from_secs(1) => start,
            _ => now,
        };
        self.over_since = Some(streak_start);
        self.last_over = now;
        if now.saturating_since(streak_start) >= config.rate_limit_close_after {
            RateVerdict::Close
        } else {
            RateVerdict::Drop
        }
    }
}

/// Timers of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timers {
    pub(crate) last_rx: Instant,
    pub(crate) next_ping: Instant,
    pub(crate) expires: Option<Instant>,
}

impl Timers {
    pub(crate) fn new(now: Instant, config: &Config) -> Self {
        Timers {
            last_rx: now,
            next_ping: now + config.ping_interval,
            expires: None,
        }
    }

    /// The earliest time this connection needs attention.
    pub(crate) fn deadline(&self, phase: Phase, config: &Config) -> Instant {
        let mut t = self.next_ping.min(self.last_rx + config.dead_after());
        if let Phase::AwaitingAuth { deadline } = phase {
            t = t.min(deadline);
        }
        if let Some(exp) = self.expires {
            t = t.min(exp);
        }
        t
    }

    /// What is due at `now`, the most severe first.
    pub(crate) fn check(&mut self, now: Instant, phase: Phase, config: &Config) -> TimerVerdict {
        if now >= self.last_rx + config.dead_after() {
            return TimerVerdict::Drop;
        }
        if let Phase::AwaitingAuth { deadline } = phase
            && now >= deadline
        {
            return TimerVerdict::Close(CloseCode::AuthTimeout, "authentication timeout");
        }
        if let Some(exp) = self.expires
            && now >= exp
        {
            return TimerVerdict::Close(CloseCode::TokenExpired, "token expired");
        }
        if now >= self.next_ping {
            self.next_ping = now + config.ping_interval;
            return TimerVerdict::Ping;
        }
        TimerVerdict::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_drops_then_closes_after_a_persistent_streak() {
        let config = Config {
            rate_limit: 10,
            rate_burst: 20,
            ..Config::default()
        };
        let t0 = Instant::from_secs(1000);
        let mut rl = RateLimiter::new(t0, &config);
        for _ in 0..20 {
            assert_eq!(rl.check(t0, &config), RateVerdict::Pass);
        }
        assert_eq!(rl.check(t0, &config), RateVerdict::Drop);
        // Refill: 100 ms = 1 frame.
        assert_eq!(
            rl.check(t0 + Duration::from_millis(100), &config),
            RateVerdict::Pass
        );
        // Flood at 100/s for 10 s: drops, then a close.
        let mut verdict = RateVerdict::Pass;
        for i in 1..=1000u64 {
            verdict = rl.check(t0 + Duration::from_millis(100 + 10 * i), &config);
            if verdict == RateVerdict::Close {
                assert!(i >= 990, "closed too early at {i}");
                break;
            }
        }
        assert_eq!(verdict, RateVerdict::Close);
    }

    #[test]
    fn rate_limit_streak_resets_after_a_pause() {
        let config = Config {
            rate_limit: 1,
            rate_burst: 1,
            ..Config::default()
        };
        let t0 = Instant::from_secs(1000);
        let mut rl = RateLimiter::new(t0, &config);
        assert_eq!(rl.check(t0, &config), RateVerdict::Pass);
        assert_eq!(rl.check(t0, &config), RateVerdict::Drop);
        // Violations 9 s later after a long pause start a new streak.
        let t1 = t0 + Duration::from_secs(9);
        assert_eq!(rl.check(t1, &config), RateVerdict::Pass);
        assert_eq!(rl.check(t1, &config), RateVerdict::Drop);
        assert_eq!(
            rl.check(t1 + Duration::from_millis(500), &config),
            RateVerdict::Drop
        );
    }

    #[test]
    fn rate_limit_off() {
        let config = Config {
            rate_limit: 0,
            ..Config::default()
        };
        let t0 = Instant::from_secs(1);
        let mut rl = RateLimiter::new(t0, &config);
        for _ in 0..100_000 {
            assert_eq!(rl.check(t0, &config), RateVerdict::Pass);
        }
    }
}
