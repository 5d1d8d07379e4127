//! The top-level `outbox:` block of the configuration read into [`OutboxSettings`].

use std::path::Path;

use super::error::ConfigError;
use super::outbox_settings::OutboxSettings;
use super::yaml_node::Node;

const OUTBOX_KEYS: &[&str] = &[
    "url",
    "max_age",
    "lease",
    "backoff",
    "max_connections_per_provider",
];
const BACKOFF_KEYS: &[&str] = &["initial", "max"];

/// The name of the outbox database file when the configuration names none.
pub(crate) const DEFAULT_OUTBOX_FILE: &str = "smtpkit-outbox.db";

/// Reads `node` (the `outbox` mapping); missing keys keep their defaults. Errors name the key
/// and never quote the URL (it may hold a password).
pub(crate) fn parse_outbox(node: Node<'_, '_>) -> Result<OutboxSettings, ConfigError> {
    let env = node.env();
    node.check_keys(OUTBOX_KEYS)?;
    let mut s = OutboxSettings::default();
    if let Some(url) = node.get("url") {
        let url_node = url.node(env);
        let text = url_node.non_empty("url")?.trim().to_owned();
        if !(text.starts_with("sqlite:")
            || text.starts_with("postgres:")
            || text.starts_with("postgresql:"))
        {
            let scheme = text.split_once(':').map_or("", |(scheme, _)| scheme);
            return Err(url_node.error(format!(
                "unsupported outbox URL scheme {scheme:?}: use sqlite://PATH or \
                 postgres://USER:PASSWORD@HOST/DATABASE"
            )));
        }
        s.url = text;
    }
    for (key, slot) in [("max_age", &mut s.max_age), ("lease", &mut s.lease)] {
        if let Some(v) = node.get(key) {
            *slot = positive(v.node(env))?;
        }
    }
    if let Some(v) = node.get("max_connections_per_provider") {
        let n = v.node(env).number(1..=100_000)?;
        s.max_connections_per_provider = Some(u32::try_from(n).unwrap_or(u32::MAX));
    }
    if let Some(backoff) = node.get("backoff") {
        let b = backoff.node(env);
        b.check_keys(BACKOFF_KEYS)?;
        if let Some(v) = b.get("initial") {
            s.backoff_initial = positive(v.node(env))?;
        }
        if let Some(v) = b.get("max") {
            let max = v.node(env);
            s.backoff_max = positive(max)?;
            if s.backoff_max < s.backoff_initial {
                return Err(max.error("must be at least backoff.initial"));
            }
        } else if s.backoff_initial > s.backoff_max {
            s.backoff_max = s.backoff_initial;
        }
    }
    Ok(s)
}

fn positive(node: Node<'_, '_>) -> Result<std::time::Duration, ConfigError> {
    let d = node.duration()?;
    if d.is_zero() {
        return Err(node.error("must be more than 0"));
    }
    Ok(d)
}

/// `url` with a relative SQLite path made relative to `base` (the configuration file's
/// directory); other URLs unchanged.
pub(crate) fn resolve_sqlite_url(url: &str, base: &Path) -> String {
    let (prefix, path) = if let Some(p) = url.strip_prefix("sqlite://") {
        ("sqlite://", p)
    } else if let Some(p) = url.strip_prefix("sqlite:") {
        ("sqlite:", p)
    } else {
        return url.to_owned();
    };
    if path.is_empty() || Path::new(path).is_absolute() || path.starts_with(':') {
        return url.to_owned();
    }
    format!("{prefix}{}", base.join(path).display())
}

/// The URL of the default outbox database, next to the configuration file in `base`.
pub(crate) fn default_url(base: &Path) -> String {
    format!("sqlite://{}", base.join(DEFAULT_OUTBOX_FILE).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_file() {
        let base = Path::new("/etc/smtpkit");
        assert_eq!(
            resolve_sqlite_url("sqlite://q.db", base),
            "sqlite:///etc/smtpkit/q.db"
        );
        assert_eq!(
            resolve_sqlite_url("sqlite:q.db", base),
            "sqlite:/etc/smtpkit/q.db"
        );
        assert_eq!(
            resolve_sqlite_url("sqlite:///var/q.db", base),
            "sqlite:///var/q.db"
        );
        assert_eq!(resolve_sqlite_url("postgres://h/d", base), "postgres://h/d");
        assert_eq!(default_url(base), "sqlite:///etc/smtpkit/smtpkit-outbox.db");
    }
}
