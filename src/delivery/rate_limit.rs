//! Rate limits per provider: token buckets shared by every task sending through it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Limits (the `rate_limit:` extension of a provider); 0 means no limit for that window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// Messages per second.
    pub per_second: u32,
    /// Messages per minute.
    pub per_minute: u32,
    /// Messages per hour.
    pub per_hour: u32,
    /// Messages per day (e.g. Gmail's 500 for free accounts).
    pub per_day: u32,
}

impl RateLimits {
    /// True when no window is limited.
    pub fn is_unlimited(&self) -> bool {
        *self == RateLimits::default()
    }
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    tokens: f64,
    per_sec: f64,
    window: &'static str,
}

impl Bucket {
    fn new(limit: u32, window: Duration, name: &'static str) -> Option<Bucket> {
        (limit > 0).then(|| Bucket {
            capacity: f64::from(limit),
            tokens: f64::from(limit),
            per_sec: f64::from(limit) / window.as_secs_f64(),
            window: name,
        })
    }

    fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.per_sec).min(self.capacity);
    }

    /// Time until one token is there.
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }
}

#[derive(Debug)]
struct State {
    buckets: Vec<Bucket>,
    last: Instant,
}

/// A token bucket per limited window; a message takes one token from each. Waiting is
/// first come, first served, and is reported through `tracing` so it is never mysterious.
///
/// ```
/// use smtpkit::delivery::{RateLimiter, RateLimits};
/// let limiter = RateLimiter::new(RateLimits { per_second: 10, per_day: 500, ..Default::default() });
/// # let _ = limiter;
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    state: Arc<Mutex<State>>,
    queue: Arc<tokio::sync::Mutex<()>>,
    limits: RateLimits,
}

impl RateLimiter {
    /// A limiter for `limits`.
    pub fn new(limits: RateLimits) -> RateLimiter {
        let buckets = [
            Bucket::new(limits.per_second, Duration::from_secs(1), "second"),
            Bucket::new(limits.per_minute, Duration::from_secs(60), "minute"),
            Bucket::new(limits.per_hour, Duration::from_secs(3600), "hour"),
            Bucket::new(limits.per_day, Duration::from_secs(86_400), "day"),
        ]
        .into_iter()
        .flatten()
        .collect();
        RateLimiter {
            state: Arc::new(Mutex::new(State {
                buckets,
                last: Instant::now(),
            })),
            queue: Arc::new(tokio::sync::Mutex::new(())),
            limits,
        }
    }

    /// The limits.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Waits until every window allows one more message, then takes it. Returns how long it
    /// waited and, if it waited, which window held it back.
    ///
    /// Cancel safety: a dropped future takes nothing and gives its turn to the next waiter.
    pub async fn acquire(&self) -> (Duration, Option<&'static str>) {
        // One waiter at a time, in arrival order (tokio's Mutex is fair).
        let _turn = self.queue.lock().await;
        let started = Instant::now();
        let mut held_by = None;
        loop {
            let wait = {
                let Ok(mut state) = self.state.lock() else {
                    return (Duration::ZERO, None);
                };
                let now = Instant::now();
                let elapsed = now.duration_since(state.last);
                state.last = now;
                for b in &mut state.buckets {
                    b.refill(elapsed);
                }
                let (wait, window) = state
                    .buckets
                    .iter()
                    .map(|b| (b.wait(), b.window))
                    .max_by_key(|(w, _)| *w)
                    .unwrap_or((Duration::ZERO, ""));
                if wait.is_zero() {
                    for b in &mut state.buckets {
                        b.tokens -= 1.0;
                    }
                    let waited = if held_by.is_some() {
                        started.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    return (waited, held_by);
                }
                held_by = Some(window);
                wait
            };
            tracing::info!(
                "rate limit: waiting {wait:?} for the per-{} limit",
                held_by.unwrap_or("?")
            );
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn per_second_limit_spaces_messages() {
        let limiter = RateLimiter::new(RateLimits {
            per_second: 5,
            ..Default::default()
        });
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            assert_eq!(
                limiter.acquire().await.1,
                None,
                "the first five pass at once"
            );
        }
        let (_, held) = limiter.acquire().await;
        assert_eq!(held, Some("second"));
        assert!(
            start.elapsed() >= Duration::from_millis(190),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn per_day_limit_holds_after_the_burst() {
        let limiter = RateLimiter::new(RateLimits {
            per_day: 3,
            per_second: 100,
            ..Default::default()
        });
        for _ in 0..3 {
            limiter.acquire().await;
        }
        let acquired = tokio::time::timeout(Duration::from_secs(3600), limiter.acquire()).await;
        assert!(
            acquired.is_err(),
            "a fourth message within the hour would break 3/day"
        );
    }
}
