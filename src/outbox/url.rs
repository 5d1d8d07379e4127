//! Outbox URLs: which backend, and where.

use std::path::PathBuf;

use super::error::OutboxError;
use crate::provider::redact_url;

/// A parsed outbox URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `sqlite://path` or `sqlite:path`: a database file.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`: the URL as given (with its password), for the driver.
    #[cfg(feature = "outbox-postgres")]
    Postgres(String),
}

/// Reads `url`: `sqlite://relative/or/absolute.db`, `sqlite:///absolute.db`, `sqlite:path`;
/// `postgres://…` and `postgresql://…` with the feature `outbox-postgres` (refused, saying so,
/// without it).
pub(crate) fn parse(url: &str) -> Result<Location, OutboxError> {
    let open_error = |reason: &str| OutboxError::Open {
        url: redact_url(url),
        reason: reason.to_owned(),
    };
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        #[cfg(feature = "outbox-postgres")]
        return Ok(Location::Postgres(url.to_owned()));
        #[cfg(not(feature = "outbox-postgres"))]
        return Err(open_error(
            "PostgreSQL outboxes need PostgreSQL support, which this build does not have \
             (the feature outbox-postgres); use sqlite://PATH",
        ));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            let scheme = url.split_once(':').map_or(url, |(s, _)| s);
            open_error(&format!(
                "unsupported scheme {scheme:?}: the outbox URL is sqlite://PATH or \
                 postgres://USER:PASSWORD@HOST/DATABASE"
            ))
        })?;
    if path.is_empty() {
        return Err(open_error("no database file after sqlite://"));
    }
    if path.starts_with(":memory:") || path.contains('?') {
        return Err(open_error(
            "only a database file is supported (no :memory:, no ?options)",
        ));
    }
    Ok(Location::Sqlite(PathBuf::from(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse("sqlite://q.db").unwrap(),
            Location::Sqlite("q.db".into())
        );
        assert_eq!(
            parse("sqlite:///var/q.db").unwrap(),
            Location::Sqlite("/var/q.db".into())
        );
        assert_eq!(
            parse("sqlite:q/x.db").unwrap(),
            Location::Sqlite("q/x.db".into())
        );
        #[cfg(not(feature = "outbox-postgres"))]
        {
            let pg = parse("postgres://u:pw@h/d").unwrap_err().to_string();
            assert!(
                pg.contains("PostgreSQL support") && !pg.contains("pw@"),
                "{pg}"
            );
        }
        #[cfg(feature = "outbox-postgres")]
        for url in [
            "postgres://u:pw@h/d",
            "postgresql://u:pw@h:5433/d?sslmode=require",
        ] {
            assert_eq!(parse(url).unwrap(), Location::Postgres(url.into()));
        }
        assert!(parse("mysql://h/d")
            .unwrap_err()
            .to_string()
            .contains("mysql"));
        assert!(matches!(parse("sqlite://"), Err(OutboxError::Open { .. })));
    }
}
