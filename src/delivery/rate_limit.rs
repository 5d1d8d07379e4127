//! Rate limits per provider as window maxima: never more than N in any window of the
//! configured length, for every window at once (a sliding-window log of what was granted).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::rate_ledger::{LedgerWindow, RateLedger};
use super::shared_limit::SharedLimit;

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateCount {
    /// Each message counts one, whatever its recipients (the default).
    #[default]
    Messages,
    /// Each recipient of a message counts one (how Gmail and most providers count).
    Recipients,
}

/// Limits (the `rate_limit:` extension of a provider); 0 means no limit for that window.
///
/// Each is a window maximum: with `per_day: 500`, at most 500 in any 24 hours, whenever they
/// start — not 500 per calendar day, and never a burst of a full window on top of a window
/// already used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimits {
    /// At most this many in any second.
    pub per_second: u32,
    /// At most this many in any minute.
    pub per_minute: u32,
    /// At most this many in any hour.
    pub per_hour: u32,
    /// At most this many in any 24 hours (e.g. Gmail's 500 recipients for free accounts).
    pub per_day: u32,
    /// Whether messages or recipients are counted.
    pub count: RateCount,
}

impl RateLimits {
    /// True when no window is limited.
    pub fn is_unlimited(&self) -> bool {
        [
            self.per_second,
            self.per_minute,
            self.per_hour,
            self.per_day,
        ]
        .iter()
        .all(|&n| n == 0)
    }

    /// How many units a message to `recipients` recipients takes.
    pub fn units(&self, recipients: usize) -> u32 {
        match self.count {
            RateCount::Messages => 1,
            RateCount::Recipients => u32::try_from(recipients.max(1)).unwrap_or(u32::MAX),
        }
    }
}

/// A request for more units than a window ever allows: waiting would never end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// Units asked for.
    pub units: u32,
    /// The window's name (`second`, `minute`, `hour`, `day`).
    pub window: &'static str,
    /// Its limit.
    pub limit: u32,
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at once can never pass a limit of {} per {}",
            self.units, self.limit, self.window
        )
    }
}

impl std::error::Error for OverLimit {}

/// One limited window: what was granted in the last `length`, oldest first.
#[derive(Debug)]
struct Window {
    limit: u32,
    length: Duration,
    name: &'static str,
    grants: VecDeque<(Instant, u32)>,
    used: u64,
}

impl Window {
    fn new(limit: u32, length: Duration, name: &'static str) -> Option<Window> {
        (limit > 0).then(|| Window {
            limit,
            length,
            name,
            grants: VecDeque::new(),
            used: 0,
        })
    }

    /// Forgets grants that are a whole window old: a grant at `t` counts in `[t, t + length)`.
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, units)) = self.grants.front() {
            if now.duration_since(at) < self.length {
                break;
            }
            self.grants.pop_front();
            self.used -= u64::from(units);
        }
    }

    /// How long until `units` more fit in every window ending from now on.
    fn wait(&self, now: Instant, units: u32) -> Duration {
        let mut excess = (self.used + u64::from(units)).saturating_sub(u64::from(self.limit));
        if excess == 0 {
            return Duration::ZERO;
        }
        for &(at, granted) in &self.grants {
            excess = excess.saturating_sub(u64::from(granted));
            if excess == 0 {
                return (at + self.length).saturating_duration_since(now);
            }
        }
        // Only when `units` alone exceeds the limit, which `acquire_units` refuses first.
        self.length
    }

    fn take(&mut self, now: Instant, units: u32) {
        match self.grants.back_mut() {
            Some((at, n)) if *at == now => *n += units,
            _ => self.grants.push_back((now, units)),
        }
        self.used += u64::from(units);
    }
}

/// The limits of a provider, shared by every task sending through it (clones share them).
/// Waiting is first come, first served, and is reported through `tracing` so it is never
/// mysterious. Made with [`RateLimiter::new`], the limits hold within one process; made with
/// [`RateLimiter::shared`], across every process using the same [`RateLedger`] (the outbox's
/// workers).
///
/// ```
/// use smtpkit::delivery::{RateCount, RateLimiter, RateLimits};
/// // Gmail: 500 recipients a day, and no more than 10 messages' worth in any second.
/// let limiter = RateLimiter::new(RateLimits {
///     per_second: 10,
///     per_day: 500,
///     count: RateCount::Recipients,
///     ..Default::default()
/// });
/// # let _ = limiter;
/// ```
#[derive(Debug, Clone)]
pub struct RateLimiter {
    windows: Arc<Mutex<Vec<Window>>>,
    queue: Arc<tokio::sync::Mutex<()>>,
    limits: RateLimits,
    shared: Option<Arc<SharedLimit>>,
}

impl RateLimiter {
    /// A limiter for `limits`, counting in this process.
    pub fn new(limits: RateLimits) -> RateLimiter {
        let windows = windows_of(limits);
        RateLimiter {
            windows: Arc::new(Mutex::new(windows)),
            queue: Arc::new(tokio::sync::Mutex::new(())),
            limits,
            shared: None,
        }
    }

    /// A limiter for `limits` of `provider` whose counts live in `ledger`, shared with every
    /// other process using it: permits are taken there in small batches (a tenth of the
    /// smallest limit, at most 20), each usable for a tenth of the shortest window (50 ms to
    /// 1 s) and then settled, so the windows stay maxima across all the processes.
    pub fn shared(
        limits: RateLimits,
        provider: impl Into<String>,
        ledger: Arc<dyn RateLedger>,
    ) -> RateLimiter {
        let windows = windows_of(limits);
        let ledger_windows = windows
            .iter()
            .map(|w| {
                (
                    LedgerWindow {
                        length: w.length,
                        limit: w.limit,
                    },
                    w.name,
                )
            })
            .collect();
        let shared = (!windows.is_empty())
            .then(|| Arc::new(SharedLimit::new(ledger, provider.into(), ledger_windows)));
        RateLimiter {
            windows: Arc::new(Mutex::new(windows)),
            queue: Arc::new(tokio::sync::Mutex::new(())),
            limits,
            shared,
        }
    }

    /// The limits.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Waits until every window allows one more, then takes it. Returns how long it waited
    /// and, if it waited, which window held it back last.
    ///
    /// Cancel safety: a dropped future takes nothing and gives its turn to the next waiter.
    pub async fn acquire(&self) -> (Duration, Option<&'static str>) {
        // One unit never exceeds a limit, which is at least 1.
        self.acquire_units(1)
            .await
            .unwrap_or((Duration::ZERO, None))
    }

    /// Waits until every window allows `units` more (a message's recipients, with
    /// [`RateCount::Recipients`]), then takes them all at once. Fails at once when `units` is
    /// more than a window ever allows.
    ///
    /// Cancel safety: a dropped future takes nothing and gives its turn to the next waiter.
    pub async fn acquire_units(
        &self,
        units: u32,
    ) -> Result<(Duration, Option<&'static str>), OverLimit> {
        if let Ok(windows) = self.windows.lock() {
            if let Some(w) = windows.iter().find(|w| units > w.limit) {
                return Err(OverLimit {
                    units,
                    window: w.name,
                    limit: w.limit,
                });
            }
        }
        // One waiter at a time, in arrival order (tokio's Mutex is fair).
        let _turn = self.queue.lock().await;
        if let Some(shared) = &self.shared {
            return Ok(shared.acquire(units).await);
        }
        let started = Instant::now();
        let mut held_by = None;
        loop {
            let (wait, window) = {
                let Ok(mut windows) = self.windows.lock() else {
                    return Ok((Duration::ZERO, None));
                };
                let now = Instant::now();
                for w in windows.iter_mut() {
                    w.expire(now);
                }
                let longest = windows
                    .iter()
                    .map(|w| (w.wait(now, units), w.name))
                    .max_by_key(|(wait, _)| *wait);
                match longest {
                    Some((wait, name)) if !wait.is_zero() => (wait, name),
                    _ => {
                        for w in windows.iter_mut() {
                            w.take(now, units);
                        }
                        let waited = if held_by.is_some() {
                            started.elapsed()
                        } else {
                            Duration::ZERO
                        };
                        return Ok((waited, held_by));
                    }
                }
            };
            held_by = Some(window);
            tracing::info!("rate limit: waiting {wait:?} for the per-{window} limit");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The limited windows of `limits`, shortest first.
fn windows_of(limits: RateLimits) -> Vec<Window> {
    [
        Window::new(limits.per_second, Duration::from_secs(1), "second"),
        Window::new(limits.per_minute, Duration::from_secs(60), "minute"),
        Window::new(limits.per_hour, Duration::from_secs(3600), "hour"),
        Window::new(limits.per_day, Duration::from_secs(86_400), "day"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every window of `length` starting at a grant holds at most `limit` units.
    fn assert_window_maxima(grants: &[(Instant, u32)], length: Duration, limit: u32) {
        for (i, &(start, _)) in grants.iter().enumerate() {
            let in_window: u32 = grants[i..]
                .iter()
                .take_while(|(t, _)| t.duration_since(start) < length)
                .map(|(_, n)| n)
                .sum();
            assert!(
                in_window <= limit,
                "{in_window} in the window of {length:?} from grant {i}, limit {limit}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_sliding_window() {
        let limits = RateLimits {
            per_second: 5,
            per_minute: 40,
            ..Default::default()
        };
        let limiter = RateLimiter::new(limits);
        let mut grants = Vec::new();
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            // Arrivals in bursts and lulls, so windows start everywhere.
            if rng.u8(..5) == 0 {
                tokio::time::sleep(Duration::from_millis(rng.u64(0..3000))).await;
            }
            limiter.acquire().await;
            grants.push((Instant::now(), 1));
        }
        assert_window_maxima(&grants, Duration::from_secs(1), 5);
        assert_window_maxima(&grants, Duration::from_secs(60), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_window_after_an_idle_one_is_still_only_the_limit() {
        // A token bucket that starts full and refills at N per window lets ~2N through in the
        // first window after an idle one; a window maximum never does.
        let limiter = RateLimiter::new(RateLimits {
            per_second: 5,
            ..Default::default()
        });
        let start = Instant::now();
        let mut granted_in_first_second = 0;
        for _ in 0..20 {
            limiter.acquire().await;
            if start.elapsed() < Duration::from_secs(1) {
                granted_in_first_second += 1;
            }
        }
        assert_eq!(granted_in_first_second, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn recipients_are_counted_and_a_message_over_the_limit_is_refused() {
        let limiter = RateLimiter::new(RateLimits {
            per_minute: 10,
            count: RateCount::Recipients,
            ..Default::default()
        });
        let units = limiter.limits().units(4);
        assert_eq!(units, 4);
        let start = Instant::now();
        let mut grants = Vec::new();
        for _ in 0..5 {
            limiter.acquire_units(units).await.expect("fits");
            grants.push((Instant::now(), units));
        }
        assert_window_maxima(&grants, Duration::from_secs(60), 10);
        // 4 + 4 now, the third 4 only once the first 4 are a minute old.
        assert!(grants[2].0.duration_since(start) >= Duration::from_secs(60));
        let over = limiter.acquire_units(11).await.expect_err("never fits");
        assert_eq!(
            over,
            OverLimit {
                units: 11,
                window: "minute",
                limit: 10
            }
        );
    }

    #[test]
    fn messages_count_one_whatever_their_recipients() {
        let limits = RateLimits::default();
        assert_eq!(limits.units(7), 1);
        assert!(limits.is_unlimited());
        let recipients = RateLimits {
            count: RateCount::Recipients,
            ..RateLimits::default()
        };
        assert!(recipients.is_unlimited(), "counting alone limits nothing");
        assert_eq!(recipients.units(7), 7);
    }
}
