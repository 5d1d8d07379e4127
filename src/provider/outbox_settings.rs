//! The settings of the durable outbox (the top-level `outbox:` block): plain values, so that the
//! configuration can carry them without depending on the outbox itself (which sits above this
//! layer). Re-exported as `smtpkit::outbox::OutboxSettings`.

use std::fmt;
use std::time::Duration;

/// Where the outbox lives and how it schedules deliveries: the `outbox:` block of the
/// configuration.
///
/// ```
/// use std::time::Duration;
/// use smtpkit::provider::OutboxSettings;
///
/// let s = OutboxSettings::default();
/// assert_eq!(s.backoff(1), Duration::from_secs(60));
/// assert_eq!(s.backoff(3), Duration::from_secs(4 * 60));
/// assert_eq!(s.backoff(20), Duration::from_secs(60 * 60)); // capped at backoff.max
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxSettings {
    /// `url`: the database, `sqlite://path` (or `sqlite:path`). Default
    /// `sqlite://smtpkit-outbox.db`; read from a file, a relative path is relative to that
    /// file's directory.
    pub url: String,
    /// `max_age`: a message still deferred this long after it was queued is expired instead of
    /// tried again. Default 5 days.
    pub max_age: Duration,
    /// `lease`: how long a worker owns a message it took for sending; after that another worker
    /// (or the same one, restarted) may take it. Default 5 minutes.
    pub lease: Duration,
    /// `backoff.initial`: the wait after the first attempt that was deferred. Default 1 minute.
    pub backoff_initial: Duration,
    /// `backoff.max`: the longest wait between two attempts. Default 1 hour.
    pub backoff_max: Duration,
    /// `max_connections_per_provider`: at most this many messages of one provider leased at
    /// once over all the workers of the outbox (each being sent holds one session), whatever
    /// each worker's `pool.max_connections`. Default none: each worker is bounded by its own
    /// pool only.
    pub max_connections_per_provider: Option<u32>,
}

impl Default for OutboxSettings {
    fn default() -> OutboxSettings {
        OutboxSettings {
            url: "sqlite://smtpkit-outbox.db".into(),
            max_age: Duration::from_secs(5 * 24 * 60 * 60),
            lease: Duration::from_secs(5 * 60),
            backoff_initial: Duration::from_secs(60),
            backoff_max: Duration::from_secs(60 * 60),
            max_connections_per_provider: None,
        }
    }
}

impl OutboxSettings {
    /// The wait before the next attempt of a message after `attempts` deliveries were tried
    /// (1 after the first): `backoff_initial × 2^(attempts − 1)`, at most `backoff_max`.
    /// `attempts` 0 counts as 1.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(63);
        let factor = 1u64 << doublings;
        let millis = u64::try_from(self.backoff_initial.as_millis()).unwrap_or(u64::MAX);
        let wait = Duration::from_millis(millis.saturating_mul(factor));
        wait.min(self.backoff_max)
    }
}

impl fmt::Debug for OutboxSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxSettings")
            .field("url", &redact_url(&self.url))
            .field("max_age", &self.max_age)
            .field("lease", &self.lease)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field(
                "max_connections_per_provider",
                &self.max_connections_per_provider,
            )
            .finish()
    }
}

/// `url` with the password of its user part (`scheme://user:password@host`) replaced by `***`,
/// for messages and `Debug` output.
///
/// ```
/// use smtpkit::provider::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db/outbox"), "postgres://app:***@db/outbox");
/// assert_eq!(redact_url("sqlite:///var/lib/outbox.db"), "sqlite:///var/lib/outbox.db");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The authority ends at the first '/', '?' or '#'; its user part at the last '@' in it.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = OutboxSettings {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..OutboxSettings::default()
        };
        let waits: Vec<u128> = (0..7).map(|a| s.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(s.backoff(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn passwords_never_shown() {
        assert_eq!(
            redact_url("postgres://u:p@ss@h:5432/d?x=1"),
            "postgres://u:***@h:5432/d?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
        assert_eq!(redact_url("sqlite:outbox.db"), "sqlite:outbox.db");
        let s = OutboxSettings {
            url: "postgres://u:topsecret@h/d".into(),
            ..OutboxSettings::default()
        };
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
