//! Rate limits on a paused clock, through the public API and through the YAML configuration.
//!
//! The assertions hold for any limiter that lets at most N messages through per window in
//! the usual sense, whether it is a token bucket that starts full (capacity N, refilled at
//! N per window) or a sliding window (at most N grants in any window): under constant demand
//! the k-th grant (from 0) comes
//! - no earlier than the bucket allows: at once for k < N, then at (k - N + 1) × window / N;
//! - no later than the sliding window allows: at floor(k / N) × window (plus a little).
//!
//! For the (N+1)-th that is: not before window / N, and by one window.

use std::time::Duration;

use smtpkit::delivery::{RateLimiter, RateLimits};
use smtpkit::provider::{Config, Mailer};
use tokio::time::Instant;

/// Slack on "granted by": timer resolution and rounding.
const EPSILON: Duration = Duration::from_millis(50);

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// One acquisition: when it was granted (since `start`), what it reported waiting, and which
/// window held it. Bounded, so a limiter that never grants fails instead of hanging.
async fn acquire(
    limiter: &RateLimiter,
    start: Instant,
    limit: Duration,
) -> (Duration, Duration, Option<&'static str>) {
    let asked = Instant::now();
    let (waited, held_by) = tokio::time::timeout(limit, limiter.acquire())
        .await
        .unwrap_or_else(|_| panic!("not granted within {limit:?}"));
    let took = asked.elapsed();
    match held_by {
        None => assert!(waited.is_zero(), "not held, yet reported {waited:?}"),
        Some(window) => assert!(
            !waited.is_zero() && waited <= took,
            "held by the per-{window} limit: reported {waited:?}, the call took {took:?}"
        ),
    }
    (start.elapsed(), waited, held_by)
}

/// Earliest and latest grant of the k-th acquisition under one limit of `n` per `window`.
fn bounds(k: u32, n: u32, window: Duration) -> (Duration, Duration) {
    let earliest = if k < n {
        Duration::ZERO
    } else {
        window * (k - n + 1) / n
    };
    let latest = window * (k / n) + EPSILON;
    (earliest, latest)
}

fn assert_granted_within(k: u32, at: Duration, (earliest, latest): (Duration, Duration)) {
    assert!(
        at >= earliest,
        "acquisition {k} granted at {at:?}, before {earliest:?}"
    );
    assert!(
        at <= latest,
        "acquisition {k} granted at {at:?}, after {latest:?}"
    );
}

/// `count` acquisitions back to back under a single limit of `n` per `window` named `name`.
async fn check_single_window(limits: RateLimits, n: u32, window: Duration, name: &str) {
    let limiter = RateLimiter::new(limits);
    let start = Instant::now();
    for k in 0..3 * n + 1 {
        let (at, _, held_by) = acquire(&limiter, start, window * 2 + EPSILON).await;
        if k < n {
            assert_eq!(
                at,
                Duration::ZERO,
                "acquisition {k} of the first {n} waited"
            );
            assert_eq!(held_by, None, "acquisition {k}");
        } else {
            assert_granted_within(k, at, bounds(k, n, window));
            if k == n {
                assert_eq!(held_by, Some(name), "the first one over the limit is held");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn per_minute_three_pass_at_once_and_the_fourth_waits() {
    let limits = RateLimits {
        per_minute: 3,
        ..Default::default()
    };
    let limiter = RateLimiter::new(limits);
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(
            acquire(&limiter, start, EPSILON).await,
            (Duration::ZERO, Duration::ZERO, None)
        );
    }
    let (at, waited, held_by) = acquire(&limiter, start, 2 * MINUTE).await;
    assert_eq!(held_by, Some("minute"));
    assert!(at >= MINUTE / 3, "the 4th went at {at:?}");
    assert!(at <= MINUTE + EPSILON, "the 4th went only at {at:?}");
    assert_eq!(waited, at, "it asked at the start and waited until then");

    // And so on under constant demand.
    check_single_window(limits, 3, MINUTE, "minute").await;
}

#[tokio::test(start_paused = true)]
async fn per_hour_ten_pass_at_once_and_the_eleventh_waits() {
    let limits = RateLimits {
        per_hour: 10,
        ..Default::default()
    };
    let limiter = RateLimiter::new(limits);
    let start = Instant::now();
    for _ in 0..10 {
        assert_eq!(acquire(&limiter, start, EPSILON).await.0, Duration::ZERO);
    }
    let (at, _, held_by) = acquire(&limiter, start, 2 * HOUR).await;
    assert_eq!(held_by, Some("hour"));
    assert!(at >= HOUR / 10, "the 11th went at {at:?}");
    assert!(at <= HOUR + EPSILON, "the 11th went only at {at:?}");

    check_single_window(limits, 10, HOUR, "hour").await;
}

#[tokio::test(start_paused = true)]
async fn per_second_and_per_minute_both_hold() {
    let limiter = RateLimiter::new(RateLimits {
        per_second: 2,
        per_minute: 3,
        ..Default::default()
    });
    let start = Instant::now();
    for _ in 0..2 {
        assert_eq!(acquire(&limiter, start, EPSILON).await.0, Duration::ZERO);
    }
    // The third is within the minute's three but over the second's two.
    let (at, _, held_by) = acquire(&limiter, start, MINUTE).await;
    assert_eq!(held_by, Some("second"));
    assert_granted_within(2, at, (SECOND / 2, SECOND + EPSILON));
    // The fourth is over the minute's three: the per-second limit alone would let it go at
    // once or within a second; it waits for the minute's.
    let (at, _, held_by) = acquire(&limiter, start, 2 * MINUTE).await;
    assert_eq!(held_by, Some("minute"));
    assert_granted_within(3, at, (MINUTE / 3, MINUTE + EPSILON));
}

#[tokio::test(start_paused = true)]
async fn a_full_window_later_the_whole_allowance_is_back() {
    let limiter = RateLimiter::new(RateLimits {
        per_minute: 3,
        ..Default::default()
    });
    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(acquire(&limiter, start, EPSILON).await.0, Duration::ZERO);
    }
    tokio::time::sleep(MINUTE + SECOND).await;
    let refilled = Instant::now();
    for _ in 0..3 {
        let (at, waited, held_by) = acquire(&limiter, refilled, EPSILON).await;
        assert_eq!(
            (at, waited, held_by),
            (Duration::ZERO, Duration::ZERO, None),
            "three pass at once again"
        );
    }
    let (at, _, held_by) = acquire(&limiter, refilled, 2 * MINUTE).await;
    assert_eq!(held_by, Some("minute"));
    assert_granted_within(3, at, (MINUTE / 3, MINUTE + EPSILON));
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_allowance() {
    let a = RateLimiter::new(RateLimits {
        per_minute: 3,
        ..Default::default()
    });
    let b = a.clone();
    let start = Instant::now();
    acquire(&a, start, EPSILON).await;
    acquire(&b, start, EPSILON).await;
    acquire(&a, start, EPSILON).await;
    let (at, _, held_by) = acquire(&b, start, 2 * MINUTE).await;
    assert_eq!(held_by, Some("minute"));
    assert_granted_within(3, at, (MINUTE / 3, MINUTE + EPSILON));
}

fn provider_yaml(rate_limit: &str) -> String {
    format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: 2525\n      from: sender@example.com\n      security: none\n      auth: none\n{rate_limit}"
    )
}

#[tokio::test(start_paused = true)]
async fn per_minute_and_per_hour_are_read_from_yaml_and_enforced_by_the_mailer() {
    let config = Config::from_yaml_str(&provider_yaml(
        "      rate_limit: {per_minute: 3, per_hour: 10}\n",
    ))
    .expect("config");
    let expected = RateLimits {
        per_minute: 3,
        per_hour: 10,
        ..Default::default()
    };
    assert_eq!(
        config.provider(None).expect("provider").smtp.rate_limit,
        expected
    );

    // Building the mailer connects to nothing; its limiter is the one every send goes through.
    let mailer = Mailer::new(&config, None).expect("mailer");
    let limiter = mailer.routes()[0]
        .limiter
        .clone()
        .expect("a limiter for a limited provider");
    assert_eq!(limiter.limits(), expected);

    let start = Instant::now();
    for _ in 0..3 {
        assert_eq!(acquire(&limiter, start, EPSILON).await.0, Duration::ZERO);
    }
    let (at, _, held_by) = acquire(&limiter, start, 2 * MINUTE).await;
    assert_eq!(held_by, Some("minute"));
    assert_granted_within(3, at, (MINUTE / 3, MINUTE + EPSILON));
    // Ten within the hour (the per-minute limit spreads them out), then the hour holds:
    // a bucket refills one in 6 minutes, a sliding window frees one an hour after the first.
    for _ in 4..10 {
        acquire(&limiter, start, 2 * HOUR).await;
    }
    let (at, _, held_by) = acquire(&limiter, start, 2 * HOUR).await;
    assert_eq!(held_by, Some("hour"));
    assert_granted_within(10, at, (HOUR / 10, HOUR + EPSILON));
}

#[tokio::test]
async fn no_rate_limit_in_yaml_means_no_limiter() {
    for extra in ["", "      rate_limit: {per_minute: 0, per_hour: 0}\n"] {
        let config = Config::from_yaml_str(&provider_yaml(extra)).expect("config");
        assert!(config
            .provider(None)
            .expect("provider")
            .smtp
            .rate_limit
            .is_unlimited());
        let mailer = Mailer::new(&config, None).expect("mailer");
        assert!(mailer.routes()[0].limiter.is_none(), "{extra:?}");
    }
}
