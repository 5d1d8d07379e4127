//! What can go wrong with the outbox. Messages never hold a password: URLs are shown with
//! [`redact_url`](crate::provider::redact_url).

use super::record::OutboxId;

/// An outbox operation that failed. Each kind maps to a sysexits code
/// ([`OutboxError::exit_code`]): the CLI exits with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// The URL cannot be opened: a bad scheme, a directory that does not exist, a file that is
    /// not an outbox database, a schema made by a newer smtpkit. Exit 78 (configuration).
    #[error("cannot open the outbox {url}: {reason}")]
    Open {
        /// The URL, password removed.
        url: String,
        /// Why.
        reason: String,
    },
    /// The database could not take the write now: SQLite stayed locked by another writer
    /// beyond the busy timeout (5 s); PostgreSQL reported a deadlock, a serialization failure
    /// or too many connections. Exit 75 (temporary: try again).
    #[error("the outbox database is busy (locked by another writer); try again")]
    Busy,
    /// The database file is damaged (SQLite reports corruption). Exit 78: it will not heal by
    /// trying again; restore it or point `outbox.url` elsewhere.
    #[error("the outbox database is corrupt: {reason}")]
    Corrupt {
        /// What the database said.
        reason: String,
    },
    /// No message with this id. Exit 65 (bad input).
    #[error("no message {0} in the outbox")]
    NotFound(OutboxId),
    /// A message that cannot be stored (no recipients, empty provider, empty message…), or
    /// an operation that does not apply to the message's state. Nothing was stored. Exit 65.
    #[error("{reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// The message is being sent: a worker holds its lease. Exit 75 (try again later).
    #[error("message {0} is being sent by a worker (leased); try again when its lease ends")]
    Leased(OutboxId),
    /// The worker no longer holds the message's lease (it expired and another worker took the
    /// message, or it was released or deleted): nothing was changed. Exit 75.
    #[error("message {0}: this worker's lease on it was lost; nothing was recorded")]
    LeaseLost(OutboxId),
    /// Another database error (I/O, a closed connection…). Exit 75.
    #[error("outbox database error: {reason}")]
    Io {
        /// What the database said.
        reason: String,
    },
}

impl OutboxError {
    /// The sysexits code for this error: 78 for [`Open`](OutboxError::Open) and
    /// [`Corrupt`](OutboxError::Corrupt), 66 (EX_NOINPUT) for
    /// [`NotFound`](OutboxError::NotFound), 65 for [`Invalid`](OutboxError::Invalid), 75 for
    /// the rest (temporary).
    pub fn exit_code(&self) -> u8 {
        match self {
            OutboxError::Open { .. } | OutboxError::Corrupt { .. } => 78,
            OutboxError::NotFound(_) => 66,
            OutboxError::Invalid { .. } => 65,
            OutboxError::Busy
            | OutboxError::Leased(_)
            | OutboxError::LeaseLost(_)
            | OutboxError::Io { .. } => 75,
        }
    }

    /// True when trying the same operation again later may succeed (busy, leased, I/O); not
    /// for a lost lease, which stays lost.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OutboxError::Busy | OutboxError::Leased(_) | OutboxError::Io { .. }
        )
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> OutboxError {
        OutboxError::Invalid {
            reason: reason.into(),
        }
    }
}
