//! Opening an SQLite outbox: the file, WAL, the schema.

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row};

use super::errors::{migrate_error, open_error, primary_code};
use crate::outbox::error::OutboxError;
use crate::outbox::migrations::{self, SQLITE};
use crate::outbox::record::Migrated;

/// Connections that read (list, get, stats, next_due) beside the one that writes.
const READERS: u32 = 2;

/// The tables of an outbox database; a file with other tables and no migration table is not
/// an outbox.
const OWN_TABLES: &[&str] = &["_sqlx_migrations", "messages", "recipients", "rate_grants"];

/// The two pools of an open outbox file.
pub(super) struct Pools {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
    /// What the open migrated.
    pub(super) migrated: Migrated,
}

/// Opens (creating it if missing) the database at `path`: WAL, `synchronous=FULL`, foreign keys,
/// the busy timeout, the schema migrated. `url` is the redacted URL, for errors.
pub(super) async fn open(
    path: &Path,
    url: &str,
    busy_timeout: Duration,
) -> Result<Pools, OutboxError> {
    let refuse = |reason: String| OutboxError::Open {
        url: url.to_owned(),
        reason,
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(refuse(format!(
            "the directory {} does not exist",
            parent.display()
        )));
    }
    if path.is_dir() {
        return Err(refuse(format!(
            "{} is a directory, not a database file",
            path.display()
        )));
    }
    // No journal_mode here: WAL is a property of the file, set once below (switching needs a
    // lock that the busy timeout does not wait for, so it is retried by hand).
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(busy_timeout);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| open_error(url, e))?;
    let result = prepare(&mut conn, url, busy_timeout).await;
    let _ = conn.close().await;
    let migrated = result?;
    // No ping before each use (sqlx's default): the database is a file in this process, and
    // the ping is one more round trip to the connection's thread on every transaction.
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .test_before_acquire(false)
        .acquire_timeout(busy_timeout.max(Duration::from_secs(30)))
        .connect_with(options.clone())
        .await
        .map_err(|e| open_error(url, e))?;
    let reader = SqlitePoolOptions::new()
        .max_connections(READERS)
        .test_before_acquire(false)
        .min_connections(0)
        .acquire_timeout(busy_timeout.max(Duration::from_secs(30)))
        .connect_lazy_with(options);
    Ok(Pools {
        writer,
        reader,
        migrated,
    })
}

/// WAL mode, then the schema check and migrations under the write lock, so that processes
/// opening a new file at once migrate it once.
async fn prepare(
    conn: &mut SqliteConnection,
    url: &str,
    busy_timeout: Duration,
) -> Result<Migrated, OutboxError> {
    set_wal(conn, url, busy_timeout).await?;
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| open_error(url, e))?;
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| open_error(url, e))?
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect();
    if !tables.is_empty() && !tables.iter().any(|t| t == "_sqlx_migrations") {
        return Err(OutboxError::Open {
            url: url.to_owned(),
            reason: format!(
                "the database is not an smtpkit outbox (it has other tables: {})",
                tables.join(", ")
            ),
        });
    }
    if let Some(other) = tables.iter().find(|t| !OWN_TABLES.contains(&t.as_str())) {
        return Err(OutboxError::Open {
            url: url.to_owned(),
            reason: format!("the database is not an smtpkit outbox (it has a table {other})"),
        });
    }
    let migrated = migrations::apply(&mut *tx, SQLITE)
        .await
        .map_err(|e| migrate_error(url, e))?;
    tx.commit().await.map_err(|e| open_error(url, e))?;
    Ok(migrated)
}

/// Switches the file to WAL (once; it stays), retrying while another process holds it.
async fn set_wal(
    conn: &mut SqliteConnection,
    url: &str,
    busy_timeout: Duration,
) -> Result<(), OutboxError> {
    let deadline = Instant::now() + busy_timeout;
    loop {
        let mode = sqlx::query_scalar::<_, String>("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| open_error(url, e))?;
        if mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(OutboxError::Open {
                    url: url.to_owned(),
                    reason: format!("cannot use WAL journaling (the file stays in {mode} mode)"),
                })
            }
            Err(e) if primary_code(&e) == Some(5) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(open_error(url, e)),
        }
    }
}
