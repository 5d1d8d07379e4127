//! The SQLite backend: one database file, WAL, `synchronous=FULL`.
//!
//! Writes go through one connection (SQLite has one writer at a time anyway) and begin with
//! `BEGIN IMMEDIATE`, so that a transaction takes the write lock first and waits for it under
//! the busy timeout instead of failing half-way; reads use a small pool of their own, which WAL
//! lets run beside the writer.

mod errors;
mod migrations;
mod open;
mod rows;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};

use self::errors::db_error;
use self::rows::{attach_recipients, message, recipients, MESSAGE_COLUMNS};
use super::error::OutboxError;
use super::record::{
    from_unix_ms, unix_ms, Claimed, Enqueued, ListFilter, NewMessage, OutboxId, Outcome,
    QueuedMessage, RecipientState, State, Stats,
};
use super::rules;
use super::store::{ClaimRequest, CommitCounters, HotDone, HotOp, Store, StoreFuture};
use crate::provider::OutboxSettings;

/// An outbox in an SQLite file.
pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    settings: OutboxSettings,
    commits: AtomicU64,
    ops: AtomicU64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens or creates the outbox file at `path`. `url` is the redacted URL, for errors.
    pub(crate) async fn open(
        path: &Path,
        url: &str,
        settings: OutboxSettings,
        busy_timeout: Duration,
    ) -> Result<SqliteStore, OutboxError> {
        let pools = open::open(path, url, busy_timeout).await?;
        Ok(SqliteStore {
            writer: pools.writer,
            reader: pools.reader,
            settings,
            commits: AtomicU64::new(0),
            ops: AtomicU64::new(0),
        })
    }

    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, OutboxError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error)
    }

    async fn enqueue_inner(
        &self,
        messages: Vec<NewMessage>,
        now: SystemTime,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        let now = unix_ms(now);
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(messages.len());
        // (message, position, address), inserted many rows per statement.
        let mut recipients_due: Vec<(i64, i64, String)> = Vec::new();
        for m in messages {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO messages (provider, message_id, mail_from, idempotency_key, body, \
                 size, state, attempts, created_at, updated_at, next_attempt_at, due_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', 0, ?7, ?7, ?7, ?7) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            )
            .bind(&m.provider)
            .bind(&m.message_id)
            .bind(&m.mail_from)
            .bind(&m.idempotency_key)
            .bind(&m.bytes)
            .bind(i64::try_from(m.bytes.len()).unwrap_or(i64::MAX))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            let Some(id) = id else {
                // The key is taken (by another message, stored earlier or in this batch).
                let row = sqlx::query(
                    "SELECT id, message_id, provider FROM messages WHERE idempotency_key = ?",
                )
                .bind(&m.idempotency_key)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
                out.push(Enqueued {
                    id: OutboxId(row.get("id")),
                    message_id: row.get("message_id"),
                    provider: row.get("provider"),
                    existing: true,
                });
                continue;
            };
            for (position, address) in m.recipients.into_iter().enumerate() {
                recipients_due.push((id, i64::try_from(position).unwrap_or(i64::MAX), address));
            }
            if recipients_due.len() >= RECIPIENT_ROWS_PER_INSERT {
                insert_recipients(&mut tx, &mut recipients_due).await?;
            }
            out.push(Enqueued {
                id: OutboxId(id),
                message_id: m.message_id,
                provider: m.provider,
                existing: false,
            });
        }
        insert_recipients(&mut tx, &mut recipients_due).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(out)
    }

    async fn get_inner(&self, id: OutboxId) -> Result<Option<QueuedMessage>, OutboxError> {
        let mut conn = self.reader.acquire().await.map_err(db_error)?;
        load_one(&mut conn, id).await
    }

    async fn list_inner(&self, filter: ListFilter) -> Result<Vec<QueuedMessage>, OutboxError> {
        let mut conn = self.reader.acquire().await.map_err(db_error)?;
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = match filter.state {
            Some(state) => {
                sqlx::query(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE state = ? \
                     ORDER BY created_at, id LIMIT ?"
                ))
                .bind(state.as_str())
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY created_at, id LIMIT ?"
                ))
                .bind(limit)
                .fetch_all(&mut *conn)
                .await
            }
        }
        .map_err(db_error)?;
        let mut messages = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        attach_recipients(&mut conn, &mut messages).await?;
        Ok(messages)
    }

    async fn body_inner(&self, id: OutboxId) -> Result<Vec<u8>, OutboxError> {
        let mut conn = self.reader.acquire().await.map_err(db_error)?;
        sqlx::query_scalar::<_, Vec<u8>>("SELECT body FROM messages WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?
            .ok_or(OutboxError::NotFound(id))
    }

    async fn retry_inner(&self, id: OutboxId, now: SystemTime) -> Result<(), OutboxError> {
        let now = unix_ms(now);
        let mut tx = self.write_tx().await?;
        let state = state_of(&mut tx, id)
            .await?
            .ok_or(OutboxError::NotFound(id))?;
        match state {
            State::Sending => return Err(OutboxError::Leased(id)),
            State::Sent => {
                let all_sent = recipients(&mut tx, id)
                    .await?
                    .iter()
                    .all(|r| r.state == RecipientState::Sent);
                if all_sent {
                    return Err(OutboxError::invalid(format!(
                        "message {id} was sent to every recipient: nothing to retry"
                    )));
                }
            }
            _ => {}
        }
        sqlx::query(
            "UPDATE recipients SET state = 'pending' \
             WHERE message = ? AND state IN ('failed', 'unknown')",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = ?1, due_at = ?1, \
             lease_owner = NULL, lease_until = NULL, final_dot = 0, updated_at = ?1 \
             WHERE id = ?2",
        )
        .bind(now)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn retry_all_inner(&self, now: SystemTime) -> Result<u64, OutboxError> {
        let now = unix_ms(now);
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = ?1, due_at = ?1, \
             updated_at = ?1 WHERE state = 'deferred'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn delete_inner(&self, id: OutboxId, now: SystemTime) -> Result<(), OutboxError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT state, lease_until FROM messages WHERE id = ?")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or(OutboxError::NotFound(id))?;
        let state: String = row.get("state");
        let lease_until: Option<i64> = row.get("lease_until");
        if state == State::Sending.as_str() && lease_until.is_some_and(|t| t > unix_ms(now)) {
            return Err(OutboxError::Leased(id));
        }
        sqlx::query("DELETE FROM messages WHERE id = ?")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn stats_inner(&self, now: SystemTime) -> Result<Stats, OutboxError> {
        let mut conn = self.reader.acquire().await.map_err(db_error)?;
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM messages GROUP BY state")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
        let mut stats = Stats {
            by_state: State::ALL.into_iter().map(|s| (s, 0)).collect(),
            ..Stats::default()
        };
        for row in &rows {
            let state: String = row.get("state");
            let state = state
                .parse::<State>()
                .map_err(|reason| OutboxError::Corrupt { reason })?;
            let n = u64::try_from(row.get::<i64, _>("n")).unwrap_or(0);
            stats.by_state.insert(state, n);
            stats.total += n;
        }
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at) FROM messages \
             WHERE state IN ('queued', 'sending', 'deferred')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
        stats.oldest_queued_age = oldest.map(|t| {
            now.duration_since(from_unix_ms(t))
                .unwrap_or(Duration::ZERO)
        });
        Ok(stats)
    }

    async fn claim_inner(&self, request: ClaimRequest) -> Result<Vec<Claimed>, OutboxError> {
        let now_time = request.now;
        let now = unix_ms(now_time);
        let lease_until = now.saturating_add(ms(self.settings.lease));
        let mut tx = self.write_tx().await?;
        // (id, interrupted after the final dot), in the order taken.
        let mut taken: Vec<(i64, bool)> = Vec::new();
        while taken.len() < request.max {
            let want = i64::try_from(request.max - taken.len()).unwrap_or(i64::MAX);
            let due = sqlx::query(
                "SELECT id, state, created_at, final_dot FROM messages \
                 WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at, id LIMIT ?",
            )
            .bind(now)
            .bind(want)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            if due.is_empty() {
                break;
            }
            let mut expired_any = false;
            for row in &due {
                let id: i64 = row.get("id");
                let state: String = row.get("state");
                let created_at = from_unix_ms(row.get("created_at"));
                // A deferred message whose max_age passed while it waited expires when it
                // comes due, instead of being sent.
                if state == State::Deferred.as_str()
                    && rules::past_max_age(created_at, now_time, self.settings.max_age)
                {
                    sqlx::query(
                        "UPDATE messages SET state = 'expired', next_attempt_at = NULL, \
                         due_at = NULL, updated_at = ? WHERE id = ?",
                    )
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                    expired_any = true;
                    continue;
                }
                let interrupted =
                    state == State::Sending.as_str() && row.get::<i64, _>("final_dot") != 0;
                sqlx::query(
                    "UPDATE messages SET state = 'sending', lease_owner = ?1, lease_until = ?2, \
                     due_at = ?2, next_attempt_at = NULL, attempts = attempts + 1, \
                     final_dot = 0, updated_at = ?3 WHERE id = ?4",
                )
                .bind(&request.worker)
                .bind(lease_until)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
                taken.push((id, interrupted));
            }
            if !expired_any {
                break;
            }
        }
        let mut claimed = Vec::with_capacity(taken.len());
        for (id, interrupted) in taken {
            let row = sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS}, body FROM messages WHERE id = ?"
            ))
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
            let mut m = message(&row)?;
            m.recipients = recipients(&mut tx, m.id).await?;
            claimed.push(Claimed {
                message: m,
                bytes: row.get("body"),
                interrupted_after_final_dot: interrupted,
            });
        }
        tx.commit().await.map_err(db_error)?;
        Ok(claimed)
    }

    async fn commit_hot_inner(
        &self,
        ops: Vec<HotOp>,
        now: SystemTime,
    ) -> Result<Vec<Result<HotDone, OutboxError>>, OutboxError> {
        let mut tx = self.write_tx().await?;
        let mut results = Vec::with_capacity(ops.len());
        for op in &ops {
            let result = match op {
                HotOp::FinalDot(id) => mark_final_dot(&mut tx, *id, now).await,
                HotOp::Record {
                    id,
                    worker,
                    outcome,
                } => self.record(&mut tx, *id, worker, outcome, now).await,
            };
            match result {
                Ok(done) => results.push(Ok(done)),
                // Per operation, before it wrote anything: the others go on.
                Err(
                    e @ (OutboxError::NotFound(_)
                    | OutboxError::LeaseLost(_)
                    | OutboxError::Invalid { .. }),
                ) => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        tx.commit().await.map_err(db_error)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops
            .fetch_add(u64::try_from(ops.len()).unwrap_or(0), Ordering::Relaxed);
        Ok(results)
    }

    async fn record(
        &self,
        conn: &mut SqliteConnection,
        id: OutboxId,
        worker: &str,
        outcome: &Outcome,
        now_time: SystemTime,
    ) -> Result<HotDone, OutboxError> {
        let now = unix_ms(now_time);
        let row = sqlx::query(
            "SELECT state, lease_owner, attempts, created_at FROM messages WHERE id = ?",
        )
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        .ok_or(OutboxError::NotFound(id))?;
        let state: String = row.get("state");
        let owner: Option<String> = row.get("lease_owner");
        if state != State::Sending.as_str() || owner.as_deref() != Some(worker) {
            return Err(OutboxError::LeaseLost(id));
        }
        let attempts = u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(u32::MAX);
        let created_at = from_unix_ms(row.get("created_at"));
        let mut rcpts = recipients(&mut *conn, id).await?;
        let changed = rules::apply_outcome(&mut rcpts, outcome);
        let (state, next) = rules::settle(&rcpts, attempts, created_at, now_time, &self.settings);
        // Recipients are stored by position: the n-th of the message.
        for i in changed {
            let r = &rcpts[i];
            sqlx::query(
                "UPDATE recipients SET state = ?, reply = ? WHERE message = ? AND position = ?",
            )
            .bind(r.state.as_str())
            .bind(&r.reply)
            .bind(id.0)
            .bind(i64::try_from(i).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
        }
        let next = next.map(unix_ms);
        sqlx::query(
            "UPDATE messages SET state = ?1, next_attempt_at = ?2, due_at = ?2, \
             lease_owner = NULL, lease_until = NULL, final_dot = 0, \
             last_reply = COALESCE(?3, last_reply), updated_at = ?4 WHERE id = ?5",
        )
        .bind(state.as_str())
        .bind(next)
        .bind(&outcome.last_reply)
        .bind(now)
        .bind(id.0)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        Ok(HotDone::Recorded(state))
    }

    async fn release_inner(
        &self,
        id: OutboxId,
        worker: String,
        now: SystemTime,
    ) -> Result<(), OutboxError> {
        let now = unix_ms(now);
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = ?1, due_at = ?1, \
             lease_owner = NULL, lease_until = NULL, final_dot = 0, \
             attempts = MAX(attempts - 1, 0), updated_at = ?1 \
             WHERE id = ?2 AND state = 'sending' AND lease_owner = ?3",
        )
        .bind(now)
        .bind(id.0)
        .bind(&worker)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(match state_of(&mut tx, id).await? {
                None => OutboxError::NotFound(id),
                Some(_) => OutboxError::LeaseLost(id),
            });
        }
        tx.commit().await.map_err(db_error)
    }

    async fn next_due_inner(&self) -> Result<Option<SystemTime>, OutboxError> {
        let mut conn = self.reader.acquire().await.map_err(db_error)?;
        let due: Option<i64> =
            sqlx::query_scalar("SELECT MIN(due_at) FROM messages WHERE due_at IS NOT NULL")
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?;
        Ok(due.map(from_unix_ms))
    }
}

/// Recipient rows per INSERT statement (three parameters each, far below SQLite's limit).
const RECIPIENT_ROWS_PER_INSERT: usize = 300;

/// Inserts the recipients in `rows` (new, pending) and empties it.
async fn insert_recipients(
    conn: &mut SqliteConnection,
    rows: &mut Vec<(i64, i64, String)>,
) -> Result<(), OutboxError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut insert: QueryBuilder<'_, Sqlite> =
        QueryBuilder::new("INSERT INTO recipients (message, position, address, state) ");
    insert.push_values(rows.iter(), |mut row, (message, position, address)| {
        row.push_bind(*message)
            .push_bind(*position)
            .push_bind(address.as_str())
            .push("'pending'");
    });
    insert.build().execute(&mut *conn).await.map_err(db_error)?;
    rows.clear();
    Ok(())
}

async fn load_one(
    conn: &mut SqliteConnection,
    id: OutboxId,
) -> Result<Option<QueuedMessage>, OutboxError> {
    let Some(row) = sqlx::query(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?
    else {
        return Ok(None);
    };
    let mut m = message(&row)?;
    m.recipients = recipients(conn, id).await?;
    Ok(Some(m))
}

async fn state_of(conn: &mut SqliteConnection, id: OutboxId) -> Result<Option<State>, OutboxError> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM messages WHERE id = ?")
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?;
    state
        .map(|s| {
            s.parse::<State>()
                .map_err(|reason| OutboxError::Corrupt { reason })
        })
        .transpose()
}

async fn mark_final_dot(
    conn: &mut SqliteConnection,
    id: OutboxId,
    now: SystemTime,
) -> Result<HotDone, OutboxError> {
    let done = sqlx::query(
        "UPDATE messages SET final_dot = 1, updated_at = ? WHERE id = ? AND state = 'sending'",
    )
    .bind(unix_ms(now))
    .bind(id.0)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    if done.rows_affected() == 1 {
        return Ok(HotDone::Marked);
    }
    match state_of(conn, id).await? {
        None => Err(OutboxError::NotFound(id)),
        Some(_) => Err(OutboxError::LeaseLost(id)),
    }
}

impl Store for SqliteStore {
    fn enqueue(
        &self,
        messages: Vec<NewMessage>,
        now: SystemTime,
    ) -> StoreFuture<'_, Vec<Enqueued>> {
        Box::pin(self.enqueue_inner(messages, now))
    }

    fn get(&self, id: OutboxId) -> StoreFuture<'_, Option<QueuedMessage>> {
        Box::pin(self.get_inner(id))
    }

    fn list(&self, filter: ListFilter) -> StoreFuture<'_, Vec<QueuedMessage>> {
        Box::pin(self.list_inner(filter))
    }

    fn body(&self, id: OutboxId) -> StoreFuture<'_, Vec<u8>> {
        Box::pin(self.body_inner(id))
    }

    fn retry(&self, id: OutboxId, now: SystemTime) -> StoreFuture<'_, ()> {
        Box::pin(self.retry_inner(id, now))
    }

    fn retry_all(&self, now: SystemTime) -> StoreFuture<'_, u64> {
        Box::pin(self.retry_all_inner(now))
    }

    fn delete(&self, id: OutboxId, now: SystemTime) -> StoreFuture<'_, ()> {
        Box::pin(self.delete_inner(id, now))
    }

    fn stats(&self, now: SystemTime) -> StoreFuture<'_, Stats> {
        Box::pin(self.stats_inner(now))
    }

    fn claim(&self, request: ClaimRequest) -> StoreFuture<'_, Vec<Claimed>> {
        Box::pin(self.claim_inner(request))
    }

    fn commit_hot(
        &self,
        ops: Vec<HotOp>,
        now: SystemTime,
    ) -> StoreFuture<'_, Vec<Result<HotDone, OutboxError>>> {
        Box::pin(self.commit_hot_inner(ops, now))
    }

    fn release(&self, id: OutboxId, worker: String, now: SystemTime) -> StoreFuture<'_, ()> {
        Box::pin(self.release_inner(id, worker, now))
    }

    fn next_due(&self) -> StoreFuture<'_, Option<SystemTime>> {
        Box::pin(self.next_due_inner())
    }

    fn counters(&self) -> CommitCounters {
        CommitCounters {
            commits: self.commits.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
        }
    }
}
