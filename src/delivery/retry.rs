//! When to try again: transient failures only, with exponential backoff and jitter, bounded.

use std::time::Duration;

use crate::Error;

/// The retry policy (the `retry:` extension of a provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per provider, the first included. Default 3; 1 means no retry.
    pub attempts: u32,
    /// Longest wait before the second try (the wait is between half of it and all of it, see
    /// [`RetryPolicy::backoff`]); doubles each time. Default 1 s.
    pub initial_backoff: Duration,
    /// Cap on the backoff ceiling: no wait between tries is longer. Default 60 s.
    pub max_backoff: Duration,
    /// No new try starts once this much time has passed since the first. Default 10 min.
    pub max_elapsed: Duration,
    /// Try again after "outcome unknown" (connection lost after the final `.`), accepting
    /// that the message may arrive twice. Default false: reported, never retried silently.
    pub retry_unknown_outcome: bool,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(10 * 60),
            retry_unknown_outcome: false,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// True when `err` is worth another try under this policy: 4yz replies, lost or refused
    /// connections, timeouts before the final `.`; "outcome unknown" only when opted in.
    /// 5yz replies and bad input never are.
    pub fn should_retry(&self, err: &Error) -> bool {
        if err.is_outcome_unknown() {
            return self.retry_unknown_outcome;
        }
        err.is_transient()
    }

    /// The wait before try number `next` (2 for the first retry), with "equal jitter": the
    /// ceiling is `initial_backoff × 2^(next-2)`, capped at `max_backoff`, and the wait is a
    /// random duration between half the ceiling and the ceiling. The fixed half keeps the
    /// waits growing; the random half keeps many clients failing together from retrying
    /// together.
    pub fn backoff(&self, next: u32) -> Duration {
        let exponent = next.saturating_sub(2).min(30);
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // At least half the ceiling, so the waits still grow.
        Duration::from_nanos(nanos / 2 + fastrand::u64(0..=nanos / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            let b2 = p.backoff(2);
            assert!(
                b2 >= Duration::from_millis(50) && b2 <= Duration::from_millis(100),
                "{b2:?}"
            );
            let b4 = p.backoff(4);
            assert!(
                b4 >= Duration::from_millis(200) && b4 <= Duration::from_millis(400),
                "{b4:?}"
            );
            assert!(p.backoff(40) <= Duration::from_secs(1));
        }
        let distinct: std::collections::HashSet<Duration> = (0..50).map(|_| p.backoff(3)).collect();
        assert!(distinct.len() > 10, "jittered");
    }
}
