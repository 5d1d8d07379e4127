//! [`Outbox`]: the library's handle on a durable outbox.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::committer::{self, Request};
use super::error::OutboxError;
#[cfg(feature = "outbox-postgres")]
use super::postgres::PostgresStore;
use super::record::{
    Claimed, Enqueued, ListFilter, Migrated, NewMessage, OutboxId, Outcome, QueuedMessage, State,
    Stats,
};
use super::sqlite::SqliteStore;
use super::store::{ClaimRequest, CommitCounters, HotDone, HotOp, Store};
use super::url::{self, Location};
use crate::provider::{redact_url, OutboxSettings};

/// How long a write waits for another writer (another process) to let go of the database
/// before failing with [`OutboxError::Busy`]. (PostgreSQL: how long an operation waits for a
/// connection of the outbox's pool.)
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A durable outbox: messages stored in a database until they are delivered or reach a final
/// state. Cheap to clone; clones share the database connections and the group committer.
///
/// ```no_run
/// use smtpkit::outbox::{NewMessage, Outbox, OutboxSettings};
///
/// # async fn run() -> Result<(), smtpkit::outbox::OutboxError> {
/// let outbox = Outbox::open(&OutboxSettings {
///     url: "sqlite:///var/lib/smtpkit/outbox.db".into(),
///     ..OutboxSettings::default()
/// })
/// .await?;
/// let queued = outbox
///     .enqueue(NewMessage {
///         provider: "email".into(),
///         mail_from: "noreply@example.com".into(),
///         recipients: vec!["approver@example.com".into()],
///         message_id: "<1@example.com>".into(),
///         bytes: b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
///         idempotency_key: Some("run-42/approval/0".into()),
///     })
///     .await?;
/// println!("queued as {}", queued.id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    settings: OutboxSettings,
    hot: mpsc::UnboundedSender<Request>,
    migrated: Migrated,
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Opens the outbox at `settings.url`, creating the database file if it is missing (its
    /// directory must exist) and applying the schema migrations: `sqlite://path` or
    /// `sqlite:path` (a relative path is relative to the current directory), or, with the
    /// feature `outbox-postgres`, `postgres://user:password@host:port/database` (also
    /// `postgresql://`; `?sslmode=require` or `verify-full` for TLS), whose tables are created
    /// in the schema `smtpkit` of that database.
    ///
    /// Must be called within a tokio runtime: it starts the outbox's group-commit task, which
    /// ends when the last clone of the `Outbox` is dropped.
    ///
    /// Cancel safety: dropping the future leaves at most a created, migrated database file.
    pub async fn open(settings: &OutboxSettings) -> Result<Outbox, OutboxError> {
        Outbox::open_with_busy_timeout(settings, DEFAULT_BUSY_TIMEOUT).await
    }

    /// [`Outbox::open`] with another busy timeout than [`DEFAULT_BUSY_TIMEOUT`].
    ///
    /// Cancel safety: as [`Outbox::open`].
    pub async fn open_with_busy_timeout(
        settings: &OutboxSettings,
        busy_timeout: Duration,
    ) -> Result<Outbox, OutboxError> {
        let shown = redact_url(&settings.url);
        let (store, migrated): (Arc<dyn Store>, Migrated) = match url::parse(&settings.url)? {
            Location::Sqlite(path) => {
                let (store, migrated) =
                    SqliteStore::open(&path, &shown, settings.clone(), busy_timeout).await?;
                (Arc::new(store), migrated)
            }
            #[cfg(feature = "outbox-postgres")]
            Location::Postgres(url) => {
                let (store, migrated) =
                    PostgresStore::open(&url, &shown, settings.clone(), busy_timeout).await?;
                (Arc::new(store), migrated)
            }
        };
        let hot = committer::spawn(Arc::clone(&store));
        Ok(Outbox {
            inner: Arc::new(Inner {
                store,
                settings: settings.clone(),
                hot,
                migrated,
            }),
        })
    }

    /// Applies the schema migrations of the outbox at `settings.url` (creating it as
    /// [`Outbox::open`] does) and tells which versions were applied and the version now.
    /// Idempotent, and safe while workers use the database: every open migrates under the
    /// backend's lock (SQLite's write lock, a PostgreSQL advisory lock), so of several
    /// processes only the first applies a version and the others see it applied.
    ///
    /// Cancel safety: as [`Outbox::open`]; a migration is applied whole or not at all.
    pub async fn migrate(settings: &OutboxSettings) -> Result<Migrated, OutboxError> {
        let outbox = Outbox::open(settings).await?;
        Ok(outbox.migrated().clone())
    }

    /// The schema migrations this open applied (none when the schema was current).
    pub fn migrated(&self) -> &Migrated {
        &self.inner.migrated
    }

    /// The settings it was opened with.
    pub fn settings(&self) -> &OutboxSettings {
        &self.inner.settings
    }

    /// Stores one message, due now, and returns its id once it is committed and synced to
    /// disk. When its idempotency key is already taken nothing is stored and the existing
    /// message is returned with `existing: true` (also when two enqueue at once).
    ///
    /// Refused with [`OutboxError::Invalid`] (nothing stored): an empty provider, no
    /// recipients, an empty or line-broken address, an empty message or Message-ID.
    ///
    /// Cancel safety: dropping the future before it resolves may or may not have stored the
    /// message; enqueue again with the same idempotency key to be sure of one copy.
    pub async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, OutboxError> {
        validate(&message).map_err(OutboxError::invalid)?;
        let mut done = self
            .inner
            .store
            .enqueue(vec![message], SystemTime::now())
            .await?;
        done.pop().ok_or_else(|| OutboxError::Io {
            reason: "the store returned nothing for a stored message".into(),
        })
    }

    /// Stores all the messages in one transaction (all or none), in order; the result has one
    /// entry per message. One invalid message refuses the whole batch, naming it.
    ///
    /// Cancel safety: as [`Outbox::enqueue`]: all or none of them may be stored.
    pub async fn enqueue_many(
        &self,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Enqueued>, OutboxError> {
        let count = messages.len();
        for (i, m) in messages.iter().enumerate() {
            validate(m).map_err(|reason| {
                OutboxError::invalid(format!("message {} of {count}: {reason}", i + 1))
            })?;
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.inner.store.enqueue(messages, SystemTime::now()).await
    }

    /// One message, without its bytes; `None` when there is no such id.
    ///
    /// Cancel safety: a read; dropping it changes nothing.
    pub async fn get(&self, id: OutboxId) -> Result<Option<QueuedMessage>, OutboxError> {
        self.inner.store.get(id).await
    }

    /// Messages, oldest first, filtered by state and limited in number.
    ///
    /// Cancel safety: a read; dropping it changes nothing.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<QueuedMessage>, OutboxError> {
        self.inner.store.list(filter).await
    }

    /// A message's bytes, as stored.
    ///
    /// Cancel safety: a read; dropping it changes nothing.
    pub async fn body(&self, id: OutboxId) -> Result<Vec<u8>, OutboxError> {
        self.inner.store.body(id).await
    }

    /// Makes a message due now: a `deferred`, `failed`, `expired`, `unknown` or `queued` one
    /// becomes `queued`, its attempts kept. Recipients that `failed` or whose outcome was
    /// `unknown` become `pending` again (so they are sent to again: for `unknown`, possibly a
    /// second copy, with the same Message-ID); `sent` ones stay sent. A `sent` message can be
    /// retried only when some recipient failed ([`OutboxError::Invalid`] otherwise); one being
    /// sent is refused with [`OutboxError::Leased`].
    ///
    /// Cancel safety: dropping the future may or may not have made the change.
    pub async fn retry(&self, id: OutboxId) -> Result<(), OutboxError> {
        self.inner.store.retry(id, SystemTime::now()).await
    }

    /// Makes every `deferred` message `queued` and due now; returns how many.
    ///
    /// Cancel safety: dropping the future may or may not have made the change (for all or none).
    pub async fn retry_all(&self) -> Result<u64, OutboxError> {
        self.inner.store.retry_all(SystemTime::now()).await
    }

    /// Removes a message and its recipients. [`OutboxError::NotFound`] when there is none;
    /// [`OutboxError::Leased`] while a worker's lease on it is live.
    ///
    /// Cancel safety: dropping the future may or may not have removed it.
    pub async fn delete(&self, id: OutboxId) -> Result<(), OutboxError> {
        self.inner.store.delete(id, SystemTime::now()).await
    }

    /// Counts per state and per provider and state, the age of the oldest message not yet final, the total.
    ///
    /// Cancel safety: a read; dropping it changes nothing.
    pub async fn stats(&self) -> Result<Stats, OutboxError> {
        self.inner.store.stats(SystemTime::now()).await
    }

    /// Leases up to `max` messages to `worker` (a name unique to this worker process), in one
    /// transaction: messages due (`queued` or `deferred` with `next_attempt_at` now or past,
    /// the earliest first) and messages whose lease ended (`sending` with `lease_until` now or
    /// past: their worker died). Each becomes `sending`, owned by `worker` until now +
    /// `lease`, with `attempts` one more. A `deferred` message past `max_age` is not returned:
    /// it becomes `expired`.
    ///
    /// Send only to the recipients in state `pending`. When
    /// [`Claimed::interrupted_after_final_dot`] is true the previous worker may have delivered
    /// the message; deciding (record `unknown`, or send again) is the worker's.
    ///
    /// Cancel safety: dropping the future may or may not have leased the messages; leased
    /// ones come back when their lease ends.
    pub async fn claim(&self, worker: &str, max: usize) -> Result<Vec<Claimed>, OutboxError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        self.inner
            .store
            .claim(ClaimRequest {
                worker: worker.to_owned(),
                max,
                now: SystemTime::now(),
            })
            .await
    }

    /// Records durably that the final `.` of the message is about to be written, so that if
    /// this worker dies before [`Outbox::record`], the next one to take the message knows the
    /// server may have it. Group-committed: calls from many tasks at once share one
    /// transaction and one sync; this returns once the mark is durable.
    ///
    /// [`OutboxError::LeaseLost`] when `worker` no longer holds the message's lease (released,
    /// recorded, or taken over by another worker after it ended: then the final `.` must not
    /// be written, as the other worker may be sending the message too),
    /// [`OutboxError::NotFound`] when it is gone.
    ///
    /// Cancel safety: a dropped call may or may not be recorded (the request may already be in
    /// a commit); the lease's outcome is decided by `record` either way.
    pub async fn mark_final_dot(&self, id: OutboxId, worker: &str) -> Result<(), OutboxError> {
        self.hot(HotOp::FinalDot {
            id,
            worker: worker.to_owned(),
        })
        .await
        .map(|_| ())
    }

    /// Applies the outcome of an attempt and ends `worker`'s lease; returns the message's new
    /// state. Only recipients still `pending` change: `Sent`, `Failed` and `Unknown` outcomes
    /// settle them, `Deferred` leaves them `pending`. Then the message is:
    /// - `deferred`, due after [`OutboxSettings::backoff`]`(attempts)`, while a recipient is
    ///   pending, or `expired` once `max_age` has passed since it was queued (its pending
    ///   recipients stay `pending`: those are the ones that expired);
    /// - else `unknown` if any recipient's outcome is unknown;
    /// - else `failed` if every recipient failed;
    /// - else `sent`.
    ///
    /// `last_reply` is stored when given. Refused with [`OutboxError::LeaseLost`], changing
    /// nothing, when `worker` no longer holds the lease. Group-committed with
    /// [`Outbox::mark_final_dot`].
    ///
    /// Cancel safety: a dropped call may or may not be recorded; if not, the lease ends and
    /// the message is taken again.
    pub async fn record(
        &self,
        id: OutboxId,
        worker: &str,
        outcome: Outcome,
    ) -> Result<State, OutboxError> {
        match self
            .hot(HotOp::Record {
                id,
                worker: worker.to_owned(),
                outcome,
            })
            .await?
        {
            HotDone::Recorded(state) => Ok(state),
            HotDone::Marked => Err(OutboxError::Io {
                reason: "the store answered a record with a mark".into(),
            }),
        }
    }

    /// Gives a message leased to `worker` back untouched: `queued`, due now, the attempt not
    /// counted. For a worker stopping before it began to send the message.
    /// [`OutboxError::LeaseLost`] when `worker` does not hold it.
    ///
    /// Cancel safety: dropping the future may or may not have released it; if not, the lease
    /// ends by itself.
    pub async fn release(&self, id: OutboxId, worker: &str) -> Result<(), OutboxError> {
        self.inner
            .store
            .release(id, worker.to_owned(), SystemTime::now())
            .await
    }

    /// When the next message becomes claimable: the earliest `next_attempt_at` of the queued
    /// and deferred messages, or `lease_until` of those being sent; `None` when no message is
    /// waiting. The time may be in the past (due now).
    ///
    /// Cancel safety: a read; dropping it changes nothing.
    pub async fn next_due(&self) -> Result<Option<SystemTime>, OutboxError> {
        self.inner.store.next_due().await
    }

    /// Resolves when another process may have queued work (PostgreSQL: `NOTIFY` on enqueue and
    /// retry) or after `timeout`; for SQLite it simply waits `timeout`.
    pub(crate) async fn wait_for_work(&self, timeout: Duration) {
        self.inner.store.wait_for_work(timeout).await;
    }

    /// The group committer's counters so far: transactions and operations
    /// (`mark_final_dot`, `record`). For tests and benchmarks.
    #[doc(hidden)]
    pub fn commit_counters(&self) -> CommitCounters {
        self.inner.store.counters()
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    async fn hot(&self, op: HotOp) -> Result<HotDone, OutboxError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || OutboxError::Io {
            reason: "the outbox's commit task has stopped (is the runtime shutting down?)".into(),
        };
        self.inner
            .hot
            .send(Request { op, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Why `m` cannot be stored, if it cannot.
fn validate(m: &NewMessage) -> Result<(), String> {
    let bad_text = |s: &str| s.chars().any(|c| c.is_control());
    if m.provider.trim().is_empty() {
        return Err("the provider is empty".into());
    }
    if m.recipients.is_empty() {
        return Err("no recipients".into());
    }
    if let Some(r) = m
        .recipients
        .iter()
        .find(|r| r.trim().is_empty() || bad_text(r))
    {
        return Err(format!(
            "recipient {r:?} is empty or contains a control character"
        ));
    }
    if bad_text(&m.mail_from) {
        return Err("the sender contains a control character".into());
    }
    if m.message_id.trim().is_empty() {
        return Err("the Message-ID is empty".into());
    }
    if m.bytes.is_empty() {
        return Err("the message is empty".into());
    }
    if m.idempotency_key.as_deref().is_some_and(|k| k.is_empty()) {
        return Err("the idempotency key is empty (leave it out instead)".into());
    }
    Ok(())
}
