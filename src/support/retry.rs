//! The one retry policy of the program: how many times something that may
//! succeed later is tried again, and how long to wait before each try.
//! Four loops use it: a write to InfluxDB ([`RetryPolicy::WRITE`]:
//! jittered exponential backoff), an upstream's `Retry-After`
//! ([`RetryPolicy::RETRY_AFTER`]: the server says how long), Launchpad's
//! transient failures ([`RetryPolicy::LAUNCHPAD`]) and the daemon's
//! delivery of its spool ([`RetryPolicy::DELIVERY`]: without end, growing
//! to a minute, never jittered so that its pace is predictable).

use std::time::Duration;

/// Retries: `retries` more attempts after the first, waiting `base`,
/// `2 base`, `4 base`... (at most `max`) before each; with `jitter`, every
/// wait is drawn in its upper half so that many clients do not retry in
/// step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub base: Duration,
    pub max: Duration,
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::WRITE
    }
}

impl RetryPolicy {
    /// A write to InfluxDB: 3 retries, 0.5 s doubling to at most 8 s,
    /// jittered.
    pub const WRITE: RetryPolicy = RetryPolicy {
        retries: 3,
        base: Duration::from_millis(500),
        max: Duration::from_secs(8),
        jitter: true,
    };

    /// An upstream answering 429 or 503 with `Retry-After`: waited for as
    /// asked ([`RetryPolicy::wait`] with the server's wait), at most 3
    /// times per request.
    pub const RETRY_AFTER: RetryPolicy = RetryPolicy {
        retries: 3,
        base: Duration::ZERO,
        max: Duration::MAX,
        jitter: false,
    };

    /// A Launchpad request that failed in a way that may pass (a 5xx, a 429
    /// without `Retry-After`, a dropped connection): 3 retries, 0.2 s
    /// doubling, jittered.
    pub const LAUNCHPAD: RetryPolicy = RetryPolicy {
        retries: 3,
        base: Duration::from_millis(200),
        max: Duration::from_secs(8),
        jitter: true,
    };

    /// The daemon's delivery while an output cannot take points: 1 s
    /// doubling to at most 60 s, for as long as it takes.
    pub const DELIVERY: RetryPolicy = RetryPolicy {
        retries: u32::MAX,
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
        jitter: false,
    };

    /// Whether retry number `attempt` (0-based) is allowed.
    pub fn allows(&self, attempt: u32) -> bool {
        attempt < self.retries
    }

    /// The wait before retry number `attempt` (0-based), before jitter:
    /// `base * 2^attempt`, at most `max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
            .min(self.max)
    }

    /// The wait before retry number `attempt` (0-based): the backoff,
    /// jittered when the policy says so.
    pub fn delay(&self, attempt: u32) -> Duration {
        let full = self.backoff(attempt);
        if !self.jitter {
            return full;
        }
        // Full jitter over the upper half: [full/2, full].
        let half = full / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let r = if nanos == 0 {
            0
        } else {
            random_u64() % (nanos + 1)
        };
        half + Duration::from_nanos(r)
    }

    /// The wait before retry number `attempt` when the other side asked
    /// for one (`asked`, a `Retry-After`), else the policy's own; `None`
    /// when no retry is left.
    pub fn wait(&self, attempt: u32, asked: Option<Duration>) -> Option<Duration> {
        self.allows(attempt)
            .then(|| asked.unwrap_or_else(|| self.delay(attempt)))
    }
}

/// A running backoff: the attempts made so far under a policy, reset when
/// things work again (the daemon's delivery loop).
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// The wait before the next attempt (growing each call).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.policy.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        wait
    }

    /// Back to the first wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number from the operating system's generator. Should it fail
/// (no `getrandom(2)` nor `/dev/urandom`), only the jitter is lost.
fn random_u64() -> u64 {
    getrandom::u64().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_jittered_and_capped() {
        let p = RetryPolicy::WRITE;
        for attempt in 0..10 {
            let full = (p.base * 2u32.pow(attempt.min(6))).min(p.max);
            for _ in 0..20 {
                let d = p.delay(attempt);
                assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
            }
        }
        let d = p.delay(100);
        assert!(d >= p.max / 2 && d <= p.max, "{d:?}");
        let zero = RetryPolicy {
            retries: 1,
            base: Duration::ZERO,
            max: Duration::ZERO,
            jitter: true,
        };
        assert_eq!(zero.delay(3), Duration::ZERO);
    }

    #[test]
    fn the_daemons_backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff::new(RetryPolicy::DELIVERY);
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_waits_as_asked_three_times() {
        let p = RetryPolicy::RETRY_AFTER;
        let asked = Some(Duration::from_millis(1500));
        assert_eq!(p.wait(0, asked), asked);
        assert_eq!(p.wait(2, asked), asked);
        assert_eq!(p.wait(3, asked), None);
    }
}
