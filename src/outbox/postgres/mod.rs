//! The PostgreSQL backend (feature `outbox-postgres`): one database shared by workers on many
//! machines.
//!
//! The same tables, states and rules as the SQLite backend, with PostgreSQL doing the
//! arbitration between processes: a claim takes due rows with `SELECT … FOR UPDATE SKIP LOCKED`
//! in one transaction with the lease it writes, so two workers never get the same message and
//! neither waits for the other; a record locks the message's row (`FOR UPDATE`) before it
//! checks the lease, so it cannot overwrite a lease another worker took meanwhile. Every
//! commit is PostgreSQL's default, synchronous one (`synchronous_commit` as the server says,
//! `on` by default); unlike SQLite no claim skips it (see [`PostgresStore::claim_inner`]).
//! Enqueue, retry and release `NOTIFY` the channel [`CHANNEL`], which wakes waiting workers
//! at once (see [`Store::wait_for_work`]).

mod errors;
mod grants;
mod rows;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};
use tokio::sync::Notify;

use self::errors::{db_error, migrate_error, open_error, password_of};
use self::rows::{attach_recipients, corrupt, message, recipient, recipients, MESSAGE_COLUMNS};
use super::error::OutboxError;
use super::migrations::{self, POSTGRES};
use super::record::{
    from_unix_ms, unix_ms, Claimed, Enqueued, ListFilter, Migrated, NewMessage, OutboxId,
    QueuedMessage, RecipientRecord, RecipientState, State, Stats,
};
use super::rules::{self, ProviderCap};
use super::store::{ClaimRequest, CommitCounters, HotDone, HotOp, Store, StoreFuture};
use crate::delivery::{PermitAnswer, PermitRequest, Settlement};
use crate::provider::OutboxSettings;

/// The schema holding the outbox's tables (and its `_sqlx_migrations`), set as the search path
/// of every connection.
const SCHEMA: &str = "smtpkit";

/// The channel notified when a message becomes due now (enqueue, retry, release).
pub(crate) const CHANNEL: &str = "smtpkit_outbox";

/// Connections per open outbox (the listener's not counted). A worker uses about three at once
/// (a claim, the group commit, a read); the rest is headroom for the queue commands.
const POOL_SIZE: u32 = 8;

/// The advisory lock key under which the schema is created and migrated, so that processes
/// opening a new database at once do it once ("smtpkit" in ASCII).
const SCHEMA_LOCK: i64 = 0x0073_6d74_706b_6974;

/// The advisory lock key under which claims run one at a time when
/// `max_connections_per_provider` is set ("claim" in ASCII).
const CLAIM_LOCK: i64 = 0x0063_6c61_696d;

/// An outbox in a PostgreSQL database.
pub(crate) struct PostgresStore {
    pool: PgPool,
    settings: OutboxSettings,
    commits: AtomicU64,
    ops: AtomicU64,
    /// Told by the listener task when a `NOTIFY` arrives.
    work: Arc<Notify>,
    /// The listener task, started by the first [`Store::wait_for_work`]; aborted on drop.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, OutboxError> {
    pool.begin().await.map_err(db_error)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn notify(conn: &mut PgConnection) -> Result<(), OutboxError> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

impl PostgresStore {
    /// Connects to `url`, creates the schema and migrates it. `shown` is the redacted URL, for
    /// errors; `busy_timeout` bounds the wait for a pooled connection.
    pub(crate) async fn open(
        url: &str,
        shown: &str,
        settings: OutboxSettings,
        busy_timeout: Duration,
    ) -> Result<(PostgresStore, Migrated), OutboxError> {
        let password = password_of(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| open_error(shown, password, e))?
            .options([("search_path", SCHEMA)])
            .application_name("smtpkit-outbox");
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|e| open_error(shown, password, e))?;
        let prepared = prepare(&mut conn, shown, password).await;
        let _ = conn.close().await;
        let migrated = prepared?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .min_connections(0)
            .acquire_timeout(busy_timeout.max(Duration::from_secs(30)))
            .connect_lazy_with(options);
        let store = PostgresStore {
            pool,
            settings,
            commits: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            work: Arc::new(Notify::new()),
            listener: Mutex::new(None),
        };
        Ok((store, migrated))
    }

    async fn enqueue_inner(
        &self,
        messages: Vec<NewMessage>,
        now: SystemTime,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        let now = unix_ms(now);
        let mut tx = begin(&self.pool).await?;
        let mut out = Vec::with_capacity(messages.len());
        // The recipients of the new messages, inserted in one statement at the end.
        let (mut r_message, mut r_position, mut r_address) = (Vec::new(), Vec::new(), Vec::new());
        for m in messages {
            // A concurrent insert of the same key waits for the other transaction and then
            // does nothing; the SELECT below (a new snapshot) sees the other's row.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO messages (provider, message_id, mail_from, idempotency_key, body, \
                 size, state, attempts, created_at, updated_at, next_attempt_at, due_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7, $7, $7) \
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
                let row = sqlx::query(
                    "SELECT id, message_id, provider FROM messages WHERE idempotency_key = $1",
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
                r_message.push(id);
                r_position.push(i64::try_from(position).unwrap_or(i64::MAX));
                r_address.push(address);
            }
            out.push(Enqueued {
                id: OutboxId(id),
                message_id: m.message_id,
                provider: m.provider,
                existing: false,
            });
        }
        if !r_message.is_empty() {
            sqlx::query(
                "INSERT INTO recipients (message, position, address, state) \
                 SELECT m, p, a, 'pending' FROM UNNEST($1::bigint[], $2::bigint[], $3::text[]) \
                 AS v(m, p, a)",
            )
            .bind(&r_message)
            .bind(&r_position)
            .bind(&r_address)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            notify(&mut tx).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(out)
    }

    async fn get_inner(&self, id: OutboxId) -> Result<Option<QueuedMessage>, OutboxError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let Some(row) = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_error)?
        else {
            return Ok(None);
        };
        let mut m = message(&row)?;
        m.recipients = recipients(&mut conn, id).await?;
        Ok(Some(m))
    }

    async fn list_inner(&self, filter: ListFilter) -> Result<Vec<QueuedMessage>, OutboxError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        let limit = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE ($1::text IS NULL OR state = $1) \
             ORDER BY created_at, id LIMIT $2"
        ))
        .bind(filter.state.map(State::as_str))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
        let mut messages = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
        attach_recipients(&mut conn, &mut messages).await?;
        Ok(messages)
    }

    async fn body_inner(&self, id: OutboxId) -> Result<Vec<u8>, OutboxError> {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT body FROM messages WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .ok_or(OutboxError::NotFound(id))
    }

    async fn retry_inner(&self, id: OutboxId, now: SystemTime) -> Result<(), OutboxError> {
        let now = unix_ms(now);
        let mut tx = begin(&self.pool).await?;
        let state = locked_state(&mut tx, id)
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
             WHERE message = $1 AND state IN ('failed', 'unknown')",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = $1, due_at = $1, \
             lease_owner = NULL, lease_until = NULL, final_dot = FALSE, updated_at = $1 \
             WHERE id = $2",
        )
        .bind(now)
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        notify(&mut tx).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn retry_all_inner(&self, now: SystemTime) -> Result<u64, OutboxError> {
        let now = unix_ms(now);
        let mut tx = begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = $1, due_at = $1, \
             updated_at = $1 WHERE state = 'deferred'",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() > 0 {
            notify(&mut tx).await?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn delete_inner(&self, id: OutboxId, now: SystemTime) -> Result<(), OutboxError> {
        let mut tx = begin(&self.pool).await?;
        let row = sqlx::query("SELECT state, lease_until FROM messages WHERE id = $1 FOR UPDATE")
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
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn stats_inner(&self, now: SystemTime) -> Result<Stats, OutboxError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
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
            let state = state.parse::<State>().map_err(corrupt)?;
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

    /// Leases due messages in one transaction: the due rows are locked with `FOR UPDATE SKIP
    /// LOCKED`, so a concurrent claim (another worker, another machine) takes other rows
    /// instead of waiting or taking the same ones, and a row a record or an operator holds is
    /// skipped for now. The semantics are the SQLite backend's: a deferred message past
    /// `max_age` expires instead of being taken; the final-dot mark is read, never cleared, so
    /// a lease that ended (or was given back) after a `.` may have left tells the next worker.
    ///
    /// The commit is synchronous, unlike SQLite's claim: with several workers, a claim lost to
    /// a crash of the database server could let a worker that still believes it holds a lease
    /// mark and send a message that another worker then takes too.
    async fn claim_inner(&self, request: ClaimRequest) -> Result<Vec<Claimed>, OutboxError> {
        let now_time = request.now;
        let now = unix_ms(now_time);
        let lease_until = now.saturating_add(ms(self.settings.lease));
        let mut tx = begin(&self.pool).await?;
        let mut cap = match self.settings.max_connections_per_provider {
            Some(limit) => {
                // Claims count the leases and take more one at a time, so the cap holds.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CLAIM_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                let busy = sqlx::query(
                    "SELECT provider, COUNT(*) AS n FROM messages \
                     WHERE state = 'sending' AND due_at > $1 GROUP BY provider",
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
            let due = sqlx::query(
                "SELECT id, state, created_at, final_dot, provider FROM messages \
                 WHERE due_at IS NOT NULL AND due_at <= $1 AND NOT (provider = ANY($3)) \
                 ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED",
            )
            .bind(now)
            .bind(want)
            .bind(&full)
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
                // Set only by a mark and cleared only by a record or an operator's retry.
                let interrupted: bool = row.get("final_dot");
                leased.push(id);
                taken.push((id, interrupted));
            }
            if !expired.is_empty() {
                sqlx::query(
                    "UPDATE messages SET state = 'expired', next_attempt_at = NULL, \
                     due_at = NULL, updated_at = $1 WHERE id = ANY($2)",
                )
                .bind(now)
                .bind(&expired)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            if !leased.is_empty() {
                sqlx::query(
                    "UPDATE messages SET state = 'sending', lease_owner = $1, lease_until = $2, \
                     due_at = $2, next_attempt_at = NULL, attempts = attempts + 1, \
                     updated_at = $3 WHERE id = ANY($4)",
                )
                .bind(&request.worker)
                .bind(lease_until)
                .bind(now)
                .bind(&leased)
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
                "SELECT {MESSAGE_COLUMNS}, body FROM messages WHERE id = ANY($1)"
            ))
            .bind(&ids)
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
        let mut tx = begin(&self.pool).await?;
        let mut seen = HashSet::with_capacity(ops.len());
        let distinct = ops.iter().all(|op| {
            seen.insert(match op {
                HotOp::FinalDot { id, .. } | HotOp::Record { id, .. } => *id,
            })
        });
        let results = if distinct {
            self.apply_together(&mut tx, &ops, now).await?
        } else {
            // Two operations on one message: one after the other, each seeing the last.
            let mut results = Vec::with_capacity(ops.len());
            for op in &ops {
                results.extend(
                    self.apply_together(&mut tx, std::slice::from_ref(op), now)
                        .await?,
                );
            }
            results
        };
        tx.commit().await.map_err(db_error)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.ops
            .fetch_add(u64::try_from(ops.len()).unwrap_or(0), Ordering::Relaxed);
        Ok(results)
    }

    /// The operations on distinct messages in a handful of statements whatever their number:
    /// one UPDATE for the marks; for the records one locking read of the messages and one of
    /// their recipients, then one UPDATE of the recipients that changed and one of the
    /// messages. The effect is that of one after the other.
    async fn apply_together(
        &self,
        conn: &mut PgConnection,
        ops: &[HotOp],
        now_time: SystemTime,
    ) -> Result<Vec<Result<HotDone, OutboxError>>, OutboxError> {
        let now = unix_ms(now_time);
        let mut results: Vec<Option<Result<HotDone, OutboxError>>> = vec![None; ops.len()];
        let (marks, owners): (Vec<i64>, Vec<&str>) = ops
            .iter()
            .filter_map(|op| match op {
                HotOp::FinalDot { id, worker } => Some((id.0, worker.as_str())),
                HotOp::Record { .. } => None,
            })
            .unzip();
        if !marks.is_empty() {
            // Only under the marking worker's own lease.
            let marked: HashSet<i64> = sqlx::query_scalar(
                "UPDATE messages AS m SET final_dot = TRUE, updated_at = $1 \
                 FROM unnest($2::BIGINT[], $3::TEXT[]) AS mark(id, owner) \
                 WHERE m.id = mark.id AND m.lease_owner = mark.owner AND m.state = 'sending' \
                 RETURNING m.id",
            )
            .bind(now)
            .bind(&marks)
            .bind(&owners)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
            .into_iter()
            .collect();
            let missing: Vec<i64> = marks
                .iter()
                .copied()
                .filter(|id| !marked.contains(id))
                .collect();
            let present: HashSet<i64> = if missing.is_empty() {
                HashSet::new()
            } else {
                sqlx::query_scalar("SELECT id FROM messages WHERE id = ANY($1)")
                    .bind(&missing)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(db_error)?
                    .into_iter()
                    .collect()
            };
            for (op, result) in ops.iter().zip(results.iter_mut()) {
                if let HotOp::FinalDot { id, .. } = op {
                    *result = Some(if marked.contains(&id.0) {
                        Ok(HotDone::Marked)
                    } else if present.contains(&id.0) {
                        Err(OutboxError::LeaseLost(*id))
                    } else {
                        Err(OutboxError::NotFound(*id))
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
            // Locked, in id order (no deadlock between two committers): a claim skips them
            // until this commits, and the lease checked here is the lease overwritten.
            let mut heads: HashMap<i64, PgRow> = sqlx::query(
                "SELECT id, state, lease_owner, attempts, created_at FROM messages \
                 WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            )
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| (row.get::<i64, _>("id"), row))
            .collect();
            let mut rcpts: HashMap<i64, Vec<(i64, RecipientRecord)>> = HashMap::new();
            for row in sqlx::query(
                "SELECT message, position, address, state, reply FROM recipients \
                 WHERE message = ANY($1) ORDER BY message, position",
            )
            .bind(&ids)
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
            // Column arrays for the two UPDATEs.
            let (mut r_message, mut r_position, mut r_state, mut r_reply) = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::<Option<String>>::new(),
            );
            let (mut m_id, mut m_state, mut m_next, mut m_reply) = (
                Vec::new(),
                Vec::new(),
                Vec::<Option<i64>>::new(),
                Vec::<Option<String>>::new(),
            );
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
                    r_message.push(id.0);
                    r_position.push(positions[i]);
                    r_state.push(r.state.as_str().to_owned());
                    r_reply.push(r.reply.clone());
                }
                m_id.push(id.0);
                m_state.push(state.as_str().to_owned());
                m_next.push(next.map(unix_ms));
                m_reply.push(outcome.last_reply.clone());
                *result = Some(Ok(HotDone::Recorded(state)));
            }
            if !r_message.is_empty() {
                sqlx::query(
                    "UPDATE recipients AS r SET state = v.s, reply = v.reply \
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[]) \
                     AS v(m, p, s, reply) WHERE r.message = v.m AND r.position = v.p",
                )
                .bind(&r_message)
                .bind(&r_position)
                .bind(&r_state)
                .bind(&r_reply)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
            }
            if !m_id.is_empty() {
                sqlx::query(
                    "UPDATE messages AS m SET state = v.s, next_attempt_at = v.next, \
                     due_at = v.next, lease_owner = NULL, lease_until = NULL, \
                     final_dot = FALSE, last_reply = COALESCE(v.reply, m.last_reply), \
                     updated_at = $5 \
                     FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[]) \
                     AS v(id, s, next, reply) WHERE m.id = v.id",
                )
                .bind(&m_id)
                .bind(&m_state)
                .bind(&m_next)
                .bind(&m_reply)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db_error)?;
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

    async fn release_inner(
        &self,
        id: OutboxId,
        worker: String,
        now: SystemTime,
    ) -> Result<(), OutboxError> {
        let now = unix_ms(now);
        let mut tx = begin(&self.pool).await?;
        // The final-dot mark stays: only a record or an operator's retry clears it.
        let done = sqlx::query(
            "UPDATE messages SET state = 'queued', next_attempt_at = $1, due_at = $1, \
             lease_owner = NULL, lease_until = NULL, \
             attempts = GREATEST(attempts - 1, 0), updated_at = $1 \
             WHERE id = $2 AND state = 'sending' AND lease_owner = $3",
        )
        .bind(now)
        .bind(id.0)
        .bind(&worker)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(match locked_state(&mut tx, id).await? {
                None => OutboxError::NotFound(id),
                Some(_) => OutboxError::LeaseLost(id),
            });
        }
        notify(&mut tx).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn next_due_inner(&self) -> Result<Option<SystemTime>, OutboxError> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT MIN(due_at) FROM messages WHERE due_at IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(due.map(from_unix_ms))
    }

    /// Starts the task that `LISTEN`s on [`CHANNEL`] and wakes [`Self::work`], once.
    fn ensure_listener(&self) {
        let mut task = self
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if task.is_none() {
            *task = Some(tokio::spawn(listen(self.pool.clone(), self.work.clone())));
        }
    }
}

/// Creates the schema and applies the migrations, under an advisory lock so that processes
/// opening a new database at once do it once (sqlx's migrator takes a lock of its own too).
async fn prepare(
    conn: &mut PgConnection,
    url: &str,
    password: Option<&str>,
) -> Result<Migrated, OutboxError> {
    let fail = |e| open_error(url, password, e);
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(fail)?;
    let result = async {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .execute(&mut *conn)
            .await
            .map_err(fail)?;
        migrations::apply(&mut *conn, POSTGRES)
            .await
            .map_err(|e| migrate_error(url, password, e))
    }
    .await;
    // The lock is the session's: closing the connection releases it anyway.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *conn)
        .await;
    result
}

/// Listens on [`CHANNEL`] for as long as the store lives, waking `work` on every notification
/// and once whenever it (re)connects (notifications sent while it was away are lost; the
/// worker claims once to see). Connection trouble is retried every second, quietly: the
/// worker's poll still runs.
async fn listen(pool: PgPool, work: Arc<Notify>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("outbox: cannot listen for new messages: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::debug!("outbox: cannot listen for new messages: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        work.notify_one();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => work.notify_one(),
                // The connection was lost: reconnected by the next try_recv; tell the worker
                // to look, as notifications may have been missed.
                Ok(None) => work.notify_one(),
                Err(e) => {
                    tracing::debug!("outbox: listening for new messages failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// The state of a message, its row locked for the rest of the transaction.
async fn locked_state(conn: &mut PgConnection, id: OutboxId) -> Result<Option<State>, OutboxError> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM messages WHERE id = $1 FOR UPDATE")
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
    state
        .map(|s| s.parse::<State>().map_err(corrupt))
        .transpose()
}

impl Store for PostgresStore {
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

    /// Waits for a `NOTIFY` on [`CHANNEL`] (the listener starts on the first call) or
    /// `timeout`. A notification that came while nobody waited is kept (one), so none is
    /// missed between two waits.
    fn wait_for_work(
        &self,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        self.ensure_listener();
        Box::pin(async move {
            let _ = tokio::time::timeout(timeout, self.work.notified()).await;
        })
    }
}
