//! SQLite's errors as [`OutboxError`]s.

use sqlx::migrate::MigrateError;

use crate::outbox::error::OutboxError;

/// SQLite's primary result codes that matter here (the low byte of an extended code).
const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_CORRUPT: i32 = 11;
const SQLITE_NOTADB: i32 = 26;

/// The primary SQLite result code of a database error, when it is one.
pub(super) fn primary_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

/// An error of an operation on an open outbox.
pub(super) fn db_error(e: sqlx::Error) -> OutboxError {
    match primary_code(&e) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => return OutboxError::Busy,
        Some(SQLITE_CORRUPT | SQLITE_NOTADB) => {
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

/// An error while opening: a file that is not a database is an [`OutboxError::Open`], busy
/// stays busy, the rest says why it cannot be opened.
pub(super) fn open_error(url: &str, e: sqlx::Error) -> OutboxError {
    match primary_code(&e) {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => OutboxError::Busy,
        Some(SQLITE_NOTADB) => OutboxError::Open {
            url: url.to_owned(),
            reason: "the file is not an SQLite database (not an outbox)".into(),
        },
        Some(SQLITE_CORRUPT) => OutboxError::Corrupt {
            reason: message(&e),
        },
        _ => OutboxError::Open {
            url: url.to_owned(),
            reason: message(&e),
        },
    }
}

/// An error of the schema migrations.
pub(super) fn migrate_error(url: &str, e: MigrateError) -> OutboxError {
    let open = |reason: String| OutboxError::Open {
        url: url.to_owned(),
        reason,
    };
    match e {
        MigrateError::Execute(e) => open_error(url, e),
        MigrateError::ExecuteMigration(e, version) => match open_error(url, e) {
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
