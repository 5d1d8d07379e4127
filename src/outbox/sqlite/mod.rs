//! The SQLite backend: one database file, WAL, `synchronous=FULL`.
//!
//! Writes go through one connection (SQLite has one writer at a time anyway) and begin with
//! `BEGIN IMMEDIATE`, so that a transaction takes the write lock first and waits for it under
//! the busy timeout instead of failing half-way; reads use a small pool of their own, which WAL
//! lets run beside the writer.

mod errors;
mod grants;
mod open;
mod rows;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, Transaction};

use self::errors::db_error;
use self::rows::{attach_recipients, message, recipient, recipients, MESSAGE_COLUMNS};
use super::error::OutboxError;
use super::record::{
    from_unix_ms, unix_ms, Claimed, Enqueued, ListFilter, Migrated, NewMessage, OutboxId, Outcome,
    QueuedMessage, RecipientRecord, RecipientState, State, Stats,
};
use super::rules::{self, ProviderCap};
use super::store::{ClaimRequest, CommitCounters, HotDone, HotOp, Store, StoreFuture};
use crate::delivery::{PermitAnswer, PermitRequest, Settlement};
use crate::provider::OutboxSettings;

/// An outbox in an SQLite file.
pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    settings: OutboxSettings,
    /// The `synchronous` mode last set on the writer connection (a [`Sync`]), or
    /// [`SYNC_UNKNOWN`]; see [`SqliteStore::writer`].
    writer_sync: AtomicU8,
    commits: AtomicU64,
    ops: AtomicU64,
}

/// Whether a write transaction's commit waits for the disk (`PRAGMA synchronous`, WAL mode).
///
/// * `Full`: the WAL is synced at the commit; once it returns the transaction survives power
///   loss. Enqueue, the final-dot marks and the records, and the queue commands.
/// * `Normal`: no sync at the commit. The transaction survives the process dying (SIGKILL:
///   the WAL is in the operating system's cache), but power loss or an OS crash may undo it.
///   It never undoes it alone, though: the WAL is a log read back in order, each frame's
///   checksum chained to the one before, so what power loss leaves is always a prefix of the
///   commits, and any later `Full` commit (by this process or another sharing the file) makes
///   every earlier one durable with it. Used only where losing the transaction is harmless:
///   see [`SqliteStore::claim_inner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Sync {
    Full = 1,
    Normal = 2,
}

/// [`SqliteStore::writer_sync`] when the writer connection's mode is not known.
const SYNC_UNKNOWN: u8 = 0;

/// `BEGIN IMMEDIATE` on `conn`: the write lock is taken first (waited for under the busy
/// timeout) instead of failing half-way.
async fn begin(conn: &mut SqliteConnection) -> Result<Transaction<'_, Sqlite>, OutboxError> {
    conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)
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
    ) -> Result<(SqliteStore, Migrated), OutboxError> {
        let pools = open::open(path, url, busy_timeout).await?;
        let store = SqliteStore {
            writer: pools.writer,
            reader: pools.reader,
            settings,
            writer_sync: AtomicU8::new(SYNC_UNKNOWN),
            commits: AtomicU64::new(0),
            ops: AtomicU64::new(0),
        };
        Ok((store, pools.migrated))
    }

    /// The writer connection, set to sync (or not) at the commits of its next transaction.
    ///
    /// Every write transaction asks for the mode it needs before it begins, so a mode never
    /// outlives the transaction it was chosen for. The mode last set is remembered to spare a
    /// statement when it does not change: it reads "unknown" while the `PRAGMA` runs (a future
    /// dropped then leaves it unknown, so it is set again next time), and a connection the pool
    /// opens afresh starts at `FULL`, the connect options' mode, so a stale memory can only make
    /// a transaction meant to skip the sync sync after all, never the other way round.
    async fn writer(&self, sync: Sync) -> Result<PoolConnection<Sqlite>, OutboxError> {
        let mut conn = self.writer.acquire().await.map_err(db_error)?;
        let wanted = sync as u8;
        if self.writer_sync.load(Ordering::Acquire) != wanted {
            self.writer_sync.store(SYNC_UNKNOWN, Ordering::Release);
            sqlx::query(match sync {
                Sync::Full => "PRAGMA synchronous = FULL",
                Sync::Normal => "PRAGMA synchronous = NORMAL",
            })
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
            self.writer_sync.store(wanted, Ordering::Release);
        }
        Ok(conn)
    }

    async fn enqueue_inner(
        &self,
        messages: Vec<NewMessage>,
        now: SystemTime,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        let now = unix_ms(now);
        let mut conn = self.writer(Sync::Full).await?;
        let mut tx = begin(&mut conn).await?;
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
        let mut conn = self.writer(Sync::Full).await?;
        let mut tx = begin(&mut conn).await?;
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
        let mut conn = self.writer(Sync::Full).await?;
        let mut tx = begin(&mut conn).await?;
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
        let mut conn = self.writer(Sync::Full).await?;
        let mut tx = begin(&mut conn).await?;
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
        let rows = sqlx::query(
            "SELECT provider, state, COUNT(*) AS n FROM messages GROUP BY provider, state",
        )
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
            stats.add(row.get("provider"), state, n);
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

    /// Leases due messages in one transaction committed without a sync of its own
    /// ([`Sync::Normal`]). Why losing it to power loss is harmless:
    ///
    /// * Nothing of the message can have reached a server under this lease unless its final-dot
    ///   mark is durable: the worker writes the final `.` only after `mark_final_dot` returned,
    ///   and that commit is [`Sync::Full`]. Being later in the WAL, it makes this claim durable
    ///   too. So if the claim is lost, no `.` was written under it.
    /// * Undone, the message is as it was before: `queued` or `deferred` (taken and sent again,
    ///   which is right: nothing reached the server), or `sending` under the dead worker's
    ///   expired lease with its `final_dot` as it was (taken again, and `unknown` again if it
    ///   was marked). The mark survives the claim itself: only a record (or an operator's
    ///   retry) clears it, so a worker that dies before recording `unknown` leaves it for the
    ///   next one. An expiry decided here is decided again at the next claim. At most the
    ///   attempt counter misses one.
    /// * A worker dying without power loss (SIGKILL) loses nothing: the commit is in the WAL
    ///   before this returns.
    ///
    /// This takes one sync per claimed batch off the hot path; the worker claims a few messages
    /// ahead of its free slots, so it claims far less often than once per message.
    async fn claim_inner(&self, request: ClaimRequest) -> Result<Vec<Claimed>, OutboxError> {
        let now_time = request.now;
        let now = unix_ms(now_time);
        let lease_until = now.saturating_add(ms(self.settings.lease));
        let mut conn = self.writer(Sync::Normal).await?;
        let mut tx = begin(&mut conn).await?;
        // The write lock makes claims take turns, so the cap holds.
        let mut cap = match self.settings.max_connections_per_provider {
            Some(limit) => {
                let busy = sqlx::query(
                    "SELECT provider, COUNT(*) AS n FROM messages \
                     WHERE state = 'sending' AND due_at > ? GROUP BY provider",
                )
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?
                .iter()
                .map(|r| (r.get("provider"), r.get::<i64, _>("n").unsigned_abs()))
                .collect();
                Some(ProviderCap::new(limit, busy))
            }
            None => None,
        };
        // (id, interrupted after the final dot), in the order taken.
        let mut taken: Vec<(i64, bool)> = Vec::new();
        while taken.len() < request.max {
            let want = i64::try_from(request.max - taken.len()).unwrap_or(i64::MAX);
            let full = cap.as_ref().map(ProviderCap::full).unwrap_or_default();
            let sql = format!(
                "SELECT id, state, created_at, final_dot, provider FROM messages \
                 WHERE due_at IS NOT NULL AND due_at <= ? AND provider NOT IN ({}) \
                 ORDER BY due_at, id LIMIT ?",
                vec!["?"; full.len()].join(", ")
            );
            let mut query = sqlx::query(&sql).bind(now);
            for provider in &full {
                query = query.bind(provider);
            }
            let due = query
                .bind(want)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
            if due.is_empty() {
                break;
            }
            let mut expired: Vec<i64> = Vec::new();
            let mut leased: Vec<i64> = Vec::new();
            // A provider reached its cap in this batch: look again without it.
            let mut at_cap = false;
            for row in &due {
                let id: i64 = row.get("id");
                let state: String = row.get("state");
                let created_at = from_unix_ms(row.get("created_at"));
                // A deferred message whose max_age passed while it waited expires when it
                // comes due, instead of being sent.
                if state == State::Deferred.as_str()
                    && rules::past_max_age(created_at, now_time, self.settings.max_age)
                {
                    expired.push(id);
                    continue;
                }
                if let Some(cap) = &mut cap {
                    if !cap.take(row.get("provider")) {
                        at_cap = true;
                        continue;
                    }
                }
                // Set only by a mark and cleared only by a record or an operator's retry: a
                // lease that ended (or was given back) after a final `.` may have left.
                let interrupted = row.get::<i64, _>("final_dot") != 0;
                leased.push(id);
                taken.push((id, interrupted));
            }
            // Ids are integers: written into the statements (at most `max` of them).
            if !expired.is_empty() {
                sqlx::query(&format!(
                    "UPDATE messages SET state = 'expired', next_attempt_at = NULL, \
                     due_at = NULL, updated_at = ? WHERE id IN ({})",
                    id_list(&expired)
                ))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            if !leased.is_empty() {
                sqlx::query(&format!(
                    "UPDATE messages SET state = 'sending', lease_owner = ?1, lease_until = ?2, \
                     due_at = ?2, next_attempt_at = NULL, attempts = attempts + 1, \
                     updated_at = ?3 WHERE id IN ({})",
                    id_list(&leased)
                ))
                .bind(&request.worker)
                .bind(lease_until)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            if expired.is_empty() && !at_cap {
                break;
            }
        }
        let mut claimed = Vec::with_capacity(taken.len());
        if !taken.is_empty() {
            let ids: Vec<i64> = taken.iter().map(|(id, _)| *id).collect();
            let rows = sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS}, body FROM messages WHERE id IN ({})",
                id_list(&ids)
            ))
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            let mut bodies: HashMap<i64, Vec<u8>> = HashMap::with_capacity(rows.len());
            let mut messages = Vec::with_capacity(rows.len());
            for row in &rows {
                let m = message(row)?;
                bodies.insert(m.id.0, row.get("body"));
                messages.push(m);
            }
            attach_recipients(&mut tx, &mut messages).await?;
            let mut by_id: HashMap<i64, QueuedMessage> =
                messages.into_iter().map(|m| (m.id.0, m)).collect();
            for (id, interrupted) in taken {
                let vanished = || OutboxError::Corrupt {
                    reason: format!("message {id} vanished while it was being claimed"),
                };
                let message = by_id.remove(&id).ok_or_else(vanished)?;
                let bytes = bodies.remove(&id).ok_or_else(vanished)?;
                claimed.push(Claimed {
                    message,
                    bytes,
                    interrupted_after_final_dot: interrupted,
                });
            }
        }
        tx.commit().await.map_err(db_error)?;
        Ok(claimed)
    }

    async fn commit_hot_inner(
        &self,
        ops: Vec<HotOp>,
        now: SystemTime,
    ) -> Result<Vec<Result<HotDone, OutboxError>>, OutboxError> {
        let mut conn = self.writer(Sync::Full).await?;
        let mut tx = begin(&mut conn).await?;
        let mut seen = HashSet::with_capacity(ops.len());
        let distinct = ops.iter().all(|op| {
            seen.insert(match op {
                HotOp::FinalDot { id, .. } | HotOp::Record { id, .. } => *id,
            })
        });
        let results = if distinct {
            self.apply_together(&mut tx, &ops, now).await?
        } else {
            self.apply_in_order(&mut tx, &ops, now).await?
        };
        tx.commit().await.map_err(db_error)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops
            .fetch_add(u64::try_from(ops.len()).unwrap_or(0), Ordering::Relaxed);
        Ok(results)
    }

    /// The operations one after the other (two of them touch the same message).
    async fn apply_in_order(
        &self,
        conn: &mut SqliteConnection,
        ops: &[HotOp],
        now: SystemTime,
    ) -> Result<Vec<Result<HotDone, OutboxError>>, OutboxError> {
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            let result = match op {
                HotOp::FinalDot { id, worker } => {
                    mark_final_dot(&mut *conn, *id, worker, now).await
                }
                HotOp::Record {
                    id,
                    worker,
                    outcome,
                } => self.record(&mut *conn, *id, worker, outcome, now).await,
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
        Ok(results)
    }

    /// The operations on distinct messages, with the same effect as one after the other but in
    /// a handful of statements whatever their number: one UPDATE for the marks; for the
    /// records one read of the messages and one of their recipients, then one UPDATE of the
    /// recipients that changed and one of the messages. (Each statement is a round trip to
    /// the database thread; per operation they were most of a commit's time beside the sync.)
    async fn apply_together(
        &self,
        conn: &mut SqliteConnection,
        ops: &[HotOp],
        now_time: SystemTime,
    ) -> Result<Vec<Result<HotDone, OutboxError>>, OutboxError> {
        let now = unix_ms(now_time);
        let mut results: Vec<Option<Result<HotDone, OutboxError>>> = vec![None; ops.len()];
        let marks: Vec<(i64, &str)> = ops
            .iter()
            .filter_map(|op| match op {
                HotOp::FinalDot { id, worker } => Some((id.0, worker.as_str())),
                HotOp::Record { .. } => None,
            })
            .collect();
        if !marks.is_empty() {
            // Only under the marking worker's own lease (row values: SQLite 3.15).
            let sql = format!(
                "UPDATE messages SET final_dot = 1, updated_at = ? \
                 WHERE state = 'sending' AND (id, lease_owner) IN (VALUES {}) RETURNING id",
                vec!["(?, ?)"; marks.len()].join(", ")
            );
            let mut query = sqlx::query_scalar(&sql).bind(now);
            for (id, worker) in &marks {
                query = query.bind(*id).bind(*worker);
            }
            let marked: HashSet<i64> = query
                .fetch_all(&mut *conn)
                .await
                .map_err(db_error)?
                .into_iter()
                .collect();
            for (op, result) in ops.iter().zip(results.iter_mut()) {
                if let HotOp::FinalDot { id, .. } = op {
                    *result = Some(if marked.contains(&id.0) {
                        Ok(HotDone::Marked)
                    } else {
                        match state_of(&mut *conn, *id).await? {
                            None => Err(OutboxError::NotFound(*id)),
                            Some(_) => Err(OutboxError::LeaseLost(*id)),
                        }
                    });
                }
            }
        }
        let ids: Vec<i64> = ops
            .iter()
            .filter_map(|op| match op {
                HotOp::Record { id, .. } => Some(id.0),
                HotOp::FinalDot { .. } => None,
            })
            .collect();
        if !ids.is_empty() {
            let mut heads: HashMap<i64, SqliteRow> = sqlx::query(&format!(
                "SELECT id, state, lease_owner, attempts, created_at FROM messages \
                 WHERE id IN ({})",
                id_list(&ids)
            ))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| (row.get::<i64, _>("id"), row))
            .collect();
            // Per message: (position, recipient), in order.
            let mut rcpts: HashMap<i64, Vec<(i64, RecipientRecord)>> = HashMap::new();
            for row in sqlx::query(&format!(
                "SELECT message, position, address, state, reply FROM recipients \
                 WHERE message IN ({}) ORDER BY message, position",
                id_list(&ids)
            ))
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
            .iter()
            {
                rcpts
                    .entry(row.get("message"))
                    .or_default()
                    .push((row.get("position"), recipient(row)?));
            }
            // (message, position, state, reply) and (message, state, next attempt, last reply).
            let mut recipient_rows: Vec<(i64, i64, &'static str, Option<String>)> = Vec::new();
            let mut message_rows: Vec<(i64, &'static str, Option<i64>, Option<String>)> =
                Vec::new();
            for (op, result) in ops.iter().zip(results.iter_mut()) {
                let HotOp::Record {
                    id,
                    worker,
                    outcome,
                } = op
                else {
                    continue;
                };
                let Some(head) = heads.remove(&id.0) else {
                    *result = Some(Err(OutboxError::NotFound(*id)));
                    continue;
                };
                let state: String = head.get("state");
                let owner: Option<String> = head.get("lease_owner");
                if state != State::Sending.as_str() || owner.as_deref() != Some(worker.as_str()) {
                    *result = Some(Err(OutboxError::LeaseLost(*id)));
                    continue;
                }
                let attempts = u32::try_from(head.get::<i64, _>("attempts")).unwrap_or(u32::MAX);
                let created_at = from_unix_ms(head.get("created_at"));
                let (positions, mut list): (Vec<i64>, Vec<RecipientRecord>) =
                    rcpts.remove(&id.0).unwrap_or_default().into_iter().unzip();
                let changed = rules::apply_outcome(&mut list, outcome);
                let (state, next) =
                    rules::settle(&list, attempts, created_at, now_time, &self.settings);
                for i in changed {
                    let r = &list[i];
                    recipient_rows.push((id.0, positions[i], r.state.as_str(), r.reply.clone()));
                }
                message_rows.push((
                    id.0,
                    state.as_str(),
                    next.map(unix_ms),
                    outcome.last_reply.clone(),
                ));
                *result = Some(Ok(HotDone::Recorded(state)));
            }
            // Four parameters a row: far below SQLite's limit per statement.
            for chunk in recipient_rows.chunks(ROWS_PER_UPDATE) {
                let mut update: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
                    "UPDATE recipients SET state = v.column3, reply = v.column4 FROM (",
                );
                update.push_values(chunk, |mut row, (message, position, state, reply)| {
                    row.push_bind(*message)
                        .push_bind(*position)
                        .push_bind(*state)
                        .push_bind(reply.as_deref());
                });
                update.push(
                    ") AS v WHERE recipients.message = v.column1 \
                     AND recipients.position = v.column2",
                );
                update.build().execute(&mut *conn).await.map_err(db_error)?;
            }
            for chunk in message_rows.chunks(ROWS_PER_UPDATE) {
                let mut update: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
                    "UPDATE messages SET state = v.column2, next_attempt_at = v.column3, \
                     due_at = v.column3, lease_owner = NULL, lease_until = NULL, final_dot = 0, \
                     last_reply = COALESCE(v.column4, messages.last_reply), updated_at = ",
                );
                update.push_bind(now).push(" FROM (");
                update.push_values(chunk, |mut row, (id, state, next, last_reply)| {
                    row.push_bind(*id)
                        .push_bind(*state)
                        .push_bind(*next)
                        .push_bind(last_reply.as_deref());
                });
                update.push(") AS v WHERE messages.id = v.column1");
                update.build().execute(&mut *conn).await.map_err(db_error)?;
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| OutboxError::Io {
                    reason: "an outbox operation was left without a result".into(),
                })
            })
            .collect()
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
        let mut conn = self.writer(Sync::Full).await?;
        let mut tx = begin(&mut conn).await?;
        let done = sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = ?1, due_at = ?1, \
             lease_owner = NULL, lease_until = NULL, \
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

/// `1,2,3`: integer ids for an `IN (…)` list.
fn id_list(ids: &[i64]) -> String {
    let mut out = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out
}

/// Rows per `UPDATE … FROM (VALUES …)` of the hot path (four parameters each).
const ROWS_PER_UPDATE: usize = 500;

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
    worker: &str,
    now: SystemTime,
) -> Result<HotDone, OutboxError> {
    let done = sqlx::query(
        "UPDATE messages SET final_dot = 1, updated_at = ? \
         WHERE id = ? AND state = 'sending' AND lease_owner = ?",
    )
    .bind(unix_ms(now))
    .bind(id.0)
    .bind(worker)
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

    fn take_permits(
        &self,
        request: PermitRequest,
        now: SystemTime,
    ) -> StoreFuture<'_, PermitAnswer> {
        Box::pin(self.take_permits_inner(request, now))
    }

    fn settle_permits(
        &self,
        provider: String,
        settlement: Settlement,
        now: SystemTime,
    ) -> StoreFuture<'_, ()> {
        Box::pin(self.settle_permits_inner(provider, settlement, now))
    }

    fn counters(&self) -> CommitCounters {
        CommitCounters {
            commits: self.commits.load(Ordering::Relaxed),
            ops: self.ops.load(Ordering::Relaxed),
        }
    }
}
