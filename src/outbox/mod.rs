//! The durable outbox: notifications stored before they are sent, so that they survive crashes,
//! restarts and long outages (feature `outbox`).
//!
//! An [`Outbox`] is a queue of messages in a database: SQLite in one file by default
//! (`sqlite://path`), or PostgreSQL (`postgres://…`, feature `outbox-postgres`) for many
//! workers on many machines, both behind one
//! internal storage interface. [`Outbox::enqueue`] returns once the message is committed and
//! synced to disk. A worker then [claims](Outbox::claim) due messages under a lease, marks the
//! moment it writes the final `.` of each ([`Outbox::mark_final_dot`], group-committed) and
//! [records](Outbox::record) the outcome per recipient; a message whose worker died is taken
//! again when the lease ends.
//!
//! Each message is in one [`State`]:
//!
//! | state | meaning |
//! |---|---|
//! | `queued` | waiting for its first attempt (or for another after `retry`), due now |
//! | `sending` | leased by a worker until `lease_until` |
//! | `deferred` | some recipients were refused temporarily; tried again at `next_attempt_at` |
//! | `sent` | every recipient settled and at least one accepted it |
//! | `failed` | every recipient refused permanently |
//! | `expired` | still deferred after `max_age`: given up (its `pending` recipients are the ones that expired) |
//! | `unknown` | the final `.` may have reached a server but no reply came: not sent again unless retried |
//!
//! [`OutboxSettings`] (always available) are the `outbox:` block of the configuration.

// Without the feature the module holds only the settings; the links above name the rest.
#![cfg_attr(not(feature = "outbox"), allow(rustdoc::broken_intra_doc_links))]

mod settings;

pub use settings::OutboxSettings;

#[cfg(feature = "outbox")]
mod committer;
#[cfg(feature = "outbox")]
mod error;
#[cfg(feature = "outbox")]
mod migrations;
#[cfg(feature = "outbox")]
#[allow(clippy::module_inception)]
mod outbox;
#[cfg(feature = "outbox-postgres")]
mod postgres;
#[cfg(feature = "outbox")]
mod rate_grants;
#[cfg(feature = "outbox")]
mod record;
#[cfg(feature = "outbox")]
mod rules;
#[cfg(feature = "outbox")]
mod sqlite;
#[cfg(feature = "outbox")]
mod store;
#[cfg(feature = "outbox")]
mod url;
#[cfg(feature = "outbox")]
mod worker;

#[cfg(feature = "outbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
pub use error::OutboxError;
#[cfg(feature = "outbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
pub use outbox::{Outbox, DEFAULT_BUSY_TIMEOUT};
#[cfg(feature = "outbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
pub use record::{
    Claimed, Enqueued, ListFilter, Migrated, NewMessage, OutboxId, Outcome, QueuedMessage,
    RecipientOutcome, RecipientRecord, RecipientState, State, Stats,
};
#[cfg(feature = "outbox")]
#[doc(hidden)]
pub use store::CommitCounters;
#[cfg(feature = "outbox")]
#[cfg_attr(docsrs, doc(cfg(feature = "outbox")))]
pub use worker::{RecordHook, Recorded, Worker, WorkerOptions, WorkerSummary};
