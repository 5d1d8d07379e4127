//! The storage interface behind [`Outbox`](super::Outbox): one implementation per database
//! (SQLite, PostgreSQL). Object-safe, with boxed futures, so the outbox holds an
//! `Arc<dyn Store>` chosen by the URL.
//!
//! Every operation is one transaction. The outbox passes "now" in, so that all the times of one
//! operation agree and the rules ([`super::rules`]) stay outside the backends.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use super::error::OutboxError;
use super::record::{
    Claimed, Enqueued, ListFilter, NewMessage, OutboxId, Outcome, QueuedMessage, State, Stats,
};
use crate::delivery::{PermitAnswer, PermitRequest, Settlement};

/// A boxed, sendable future of a store operation.
pub(crate) type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, OutboxError>> + Send + 'a>>;

/// What a worker asks of [`Store::claim`].
#[derive(Debug, Clone)]
pub(crate) struct ClaimRequest {
    pub(crate) worker: String,
    pub(crate) max: usize,
    pub(crate) now: SystemTime,
}

/// One write of the hot path, group-committed with others (see `committer`).
#[derive(Debug, Clone)]
pub(crate) enum HotOp {
    /// The final `.` of the message is about to be written by `worker`, which must still hold
    /// its lease (a worker whose lease was taken over must not write it: the new holder may be
    /// sending the message too).
    FinalDot { id: OutboxId, worker: String },
    /// The outcome of an attempt.
    Record {
        id: OutboxId,
        worker: String,
        outcome: Outcome,
    },
}

/// What a [`HotOp`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HotDone {
    Marked,
    Recorded(State),
}

/// Counters of the group commits, for tests and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitCounters {
    /// Transactions committed by the hot path.
    pub commits: u64,
    /// Hot-path operations (`mark_final_dot`, `record`) in them.
    pub ops: u64,
}

/// A database holding an outbox. Implementations keep the schedule settings (lease, backoff,
/// max age) they were opened with.
pub(crate) trait Store: Send + Sync {
    /// Stores all the (validated) messages in one transaction, committed and synced before the
    /// future resolves; a message whose idempotency key is taken is not stored, its
    /// [`Enqueued`] names the existing one.
    fn enqueue(&self, messages: Vec<NewMessage>, now: SystemTime)
        -> StoreFuture<'_, Vec<Enqueued>>;

    /// One message, without its bytes.
    fn get(&self, id: OutboxId) -> StoreFuture<'_, Option<QueuedMessage>>;

    /// Messages, oldest first.
    fn list(&self, filter: ListFilter) -> StoreFuture<'_, Vec<QueuedMessage>>;

    /// A message's bytes.
    fn body(&self, id: OutboxId) -> StoreFuture<'_, Vec<u8>>;

    /// Makes a message due now again (see [`Outbox::retry`](super::Outbox::retry)).
    fn retry(&self, id: OutboxId, now: SystemTime) -> StoreFuture<'_, ()>;

    /// Makes every deferred message due now; returns how many.
    fn retry_all(&self, now: SystemTime) -> StoreFuture<'_, u64>;

    /// Removes a message (refused while a live lease holds it).
    fn delete(&self, id: OutboxId, now: SystemTime) -> StoreFuture<'_, ()>;

    /// Counts.
    fn stats(&self, now: SystemTime) -> StoreFuture<'_, Stats>;

    /// Leases up to `max` due messages (see [`Outbox::claim`](super::Outbox::claim)).
    fn claim(&self, request: ClaimRequest) -> StoreFuture<'_, Vec<Claimed>>;

    /// Applies the operations in order in one transaction. The outer error is a failure of the
    /// whole transaction (nothing applied); the inner ones are per operation (not found, lease
    /// lost), which changed nothing for that operation and do not stop the others.
    fn commit_hot(
        &self,
        ops: Vec<HotOp>,
        now: SystemTime,
    ) -> StoreFuture<'_, Vec<Result<HotDone, OutboxError>>>;

    /// Gives a leased message back untouched (see [`Outbox::release`](super::Outbox::release)).
    fn release(&self, id: OutboxId, worker: String, now: SystemTime) -> StoreFuture<'_, ()>;

    /// The earliest time a message becomes claimable, if any is waiting.
    fn next_due(&self) -> StoreFuture<'_, Option<SystemTime>>;

    /// Settles `request.settle` and grants rate-limit permits to a worker (see
    /// `delivery::rate_ledger` and `outbox::rate_grants`), in one transaction serialised per
    /// provider. SQLite uses `now`; PostgreSQL its own clock.
    fn take_permits(
        &self,
        request: PermitRequest,
        now: SystemTime,
    ) -> StoreFuture<'_, PermitAnswer>;

    /// Gives back the unused units of a grant and ends it at `now` (or the database's clock).
    fn settle_permits(
        &self,
        provider: String,
        settlement: Settlement,
        now: SystemTime,
    ) -> StoreFuture<'_, ()>;

    /// The group-commit counters so far.
    fn counters(&self) -> CommitCounters;

    /// Resolves when work may have arrived (a message queued or made due by another process)
    /// or after `timeout`, whichever comes first. A hint, never a promise: the caller claims to
    /// find out. By default (SQLite) it only sleeps, so the worker polls; PostgreSQL is woken
    /// by `NOTIFY`.
    fn wait_for_work(&self, timeout: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(timeout))
    }
}
