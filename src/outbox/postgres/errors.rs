//! PostgreSQL's errors as [`OutboxError`]s. Reasons never hold the URL's password: the server
//! does not echo it, and [`scrub`] takes it out of anything else that might.

use sqlx::migrate::MigrateError;

use crate::outbox::error::OutboxError;

/// The password in a `postgres://user:password@host/…` URL, if any (as written, which is also
/// how it would be echoed).
pub(super) fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = authority.rsplit_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

/// `text` with `password` replaced by `***`.
pub(super) fn scrub(text: String, password: Option<&str>) -> String {
    match password {
        Some(p) if text.contains(p) => text.replace(p, "***"),
        _ => text,
    }
}

/// The SQLSTATE of a database error, when it is one.
fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// Errors worth trying again: serialization failure, deadlock, lock not available, too many
/// connections, the server shutting down or starting up.
fn transient(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P02" | "57P03"
    )
}

/// An error of an operation on an open outbox.
pub(super) fn db_error(e: sqlx::Error) -> OutboxError {
    match code(&e).as_deref() {
        Some(c) if transient(c) => return OutboxError::Busy,
        // data_corrupted, index_corrupted
        Some("XX001" | "XX002") => {
            return OutboxError::Corrupt {
                reason: message(&e),
            }
        }
        _ => {}
    }
    match e {
        sqlx::Error::PoolTimedOut => OutboxError::Busy,
        e => OutboxError::Io {
            reason: message(&e),
        },
    }
}

/// An error while opening. What the server refused (authentication, a database that does not
/// exist, no right to create the schema) and TLS or URL problems are
/// [`OutboxError::Open`] (exit 78: fix the configuration); a server that cannot be reached is
/// [`OutboxError::Io`] (exit 75: it may be back soon).
pub(super) fn open_error(url: &str, password: Option<&str>, e: sqlx::Error) -> OutboxError {
    if code(&e).as_deref().is_some_and(transient) {
        return OutboxError::Busy;
    }
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => OutboxError::Io {
            reason: scrub(
                format!("cannot reach the outbox database {url}: {}", message(&e)),
                password,
            ),
        },
        e => OutboxError::Open {
            url: url.to_owned(),
            reason: scrub(message(&e), password),
        },
    }
}

/// An error of the schema migrations.
pub(super) fn migrate_error(url: &str, password: Option<&str>, e: MigrateError) -> OutboxError {
    let open = |reason: String| OutboxError::Open {
        url: url.to_owned(),
        reason: scrub(reason, password),
    };
    match e {
        MigrateError::Execute(e) => open_error(url, password, e),
        MigrateError::ExecuteMigration(e, version) => match open_error(url, password, e) {
            OutboxError::Open { reason, .. } => {
                open(format!("schema migration {version} failed: {reason}"))
            }
            other => other,
        },
        MigrateError::VersionMissing(version) => open(format!(
            "its schema (version {version}) was made by a newer smtpkit; use that version"
        )),
        MigrateError::VersionMismatch(version) => open(format!(
            "its schema migration {version} differs from this build's: not this smtpkit's outbox"
        )),
        MigrateError::Dirty(version) => {
            open(format!("schema migration {version} was left unfinished"))
        }
        other => open(format!("schema migration failed: {other}")),
    }
}

fn message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_and_scrubbed() {
        assert_eq!(password_of("postgres://u:s3cret@h:5432/d"), Some("s3cret"));
        assert_eq!(
            password_of("postgresql://u:p@ss@h/d?sslmode=require"),
            Some("p@ss")
        );
        assert_eq!(password_of("postgres://u@h/d"), None);
        assert_eq!(password_of("postgres://h/d"), None);
        assert_eq!(
            scrub("bad s3cret here".into(), Some("s3cret")),
            "bad *** here"
        );
        assert_eq!(scrub("nothing".into(), None), "nothing");
    }
}
