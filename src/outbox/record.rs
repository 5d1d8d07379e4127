//! The outbox's records: what goes in, what is stored, what a worker gets and gives back.
//!
//! With the `serde` feature these serialize for JSON output; times are milliseconds since the
//! Unix epoch and durations milliseconds.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// A message's number in the outbox (the database row id). Displays as the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize), serde(transparent))]
pub struct OutboxId(pub i64);

impl fmt::Display for OutboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for OutboxId {
    type Err = String;

    /// A positive whole number, as shown by `Display`.
    fn from_str(s: &str) -> Result<OutboxId, String> {
        match s.trim().parse::<i64>() {
            Ok(n) if n > 0 => Ok(OutboxId(n)),
            _ => Err(format!("{s:?} is not an outbox id (a positive number)")),
        }
    }
}

/// Where a message is in its life. See the [module documentation](super) for each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum State {
    /// Waiting for an attempt, due now.
    Queued,
    /// Leased by a worker that is sending it.
    Sending,
    /// Refused temporarily for some recipients; due again at `next_attempt_at`.
    Deferred,
    /// Every recipient settled, at least one accepted it.
    Sent,
    /// Every recipient refused permanently.
    Failed,
    /// Still deferred after `max_age`: given up.
    Expired,
    /// The final `.` may have reached the server but no reply came: the outcome is unknown.
    Unknown,
}

impl State {
    /// Every state, in the order above.
    pub const ALL: [State; 7] = [
        State::Queued,
        State::Sending,
        State::Deferred,
        State::Sent,
        State::Failed,
        State::Expired,
        State::Unknown,
    ];

    /// The name stored and shown: `queued`, `sending`, `deferred`, `sent`, `failed`,
    /// `expired`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sending => "sending",
            State::Deferred => "deferred",
            State::Sent => "sent",
            State::Failed => "failed",
            State::Expired => "expired",
            State::Unknown => "unknown",
        }
    }

    /// True for the states a message leaves only by `retry`: sent, failed, expired, unknown.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Sent | State::Failed | State::Expired | State::Unknown
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    /// One of the names of [`State::as_str`] (case-insensitive).
    fn from_str(s: &str) -> Result<State, String> {
        let lower = s.trim().to_ascii_lowercase();
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == lower)
            .ok_or_else(|| {
                format!(
                    "unknown state {s:?}: expected one of queued, sending, deferred, sent, \
                     failed, expired, unknown"
                )
            })
    }
}

/// Where one recipient of a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum RecipientState {
    /// Not delivered yet: the next attempt sends to it. In an `expired` message, the
    /// recipients that expired.
    Pending,
    /// A server accepted the message for it.
    Sent,
    /// Refused permanently.
    Failed,
    /// The final `.` may have reached the server, no reply came.
    Unknown,
}

impl RecipientState {
    /// `pending`, `sent`, `failed` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Pending => "pending",
            RecipientState::Sent => "sent",
            RecipientState::Failed => "failed",
            RecipientState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for RecipientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecipientState {
    type Err = String;

    /// One of the names of [`RecipientState::as_str`].
    fn from_str(s: &str) -> Result<RecipientState, String> {
        match s {
            "pending" => Ok(RecipientState::Pending),
            "sent" => Ok(RecipientState::Sent),
            "failed" => Ok(RecipientState::Failed),
            "unknown" => Ok(RecipientState::Unknown),
            other => Err(format!("unknown recipient state {other:?}")),
        }
    }
}

/// One recipient of a stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RecipientRecord {
    /// The address (the RCPT TO path).
    pub address: String,
    /// Its state.
    pub state: RecipientState,
    /// The server's last reply for it (`550 5.1.1 no such user`), when there was one.
    pub reply: Option<String>,
}

/// A message to store: the envelope, the whole message as it will be sent, and where to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The provider (its key under `providers:`) that is to send it.
    pub provider: String,
    /// The envelope sender (MAIL FROM); empty for the null sender `<>`.
    pub mail_from: String,
    /// The envelope recipients (RCPT TO), at least one.
    pub recipients: Vec<String>,
    /// The message's Message-ID, the same on every attempt so receivers can deduplicate.
    pub message_id: String,
    /// The message (headers and body), as it will be sent; not empty.
    pub bytes: Vec<u8>,
    /// A key that makes the enqueue idempotent: a second message with the same key is not
    /// stored; the first one's id is returned instead.
    pub idempotency_key: Option<String>,
}

impl NewMessage {
    /// A built message (a [`Notification`](crate::message::Notification) built for its
    /// provider's `from`) to be sent through `provider`: several providers, tried in order
    /// with their fallbacks, are joined with commas (`email,email-backup`).
    ///
    /// ```
    /// use smtpkit::message::Notification;
    /// use smtpkit::outbox::NewMessage;
    /// let built = Notification::new("Approve")
    ///     .to("approver@example.com".parse()?)
    ///     .text("A new access request requires your approval.")
    ///     .build(&"noreply@example.com".parse()?)?;
    /// let queued = NewMessage::from_built("email", &built, Some("request-4711".into()));
    /// assert_eq!(queued.recipients, ["approver@example.com"]);
    /// assert_eq!(queued.mail_from, "noreply@example.com");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_built(
        provider: impl Into<String>,
        built: &crate::message::BuiltMessage,
        idempotency_key: Option<String>,
    ) -> NewMessage {
        NewMessage {
            provider: provider.into(),
            mail_from: match built.envelope.from() {
                crate::proto::ReversePath::Mailbox(a) => a.to_string(),
                crate::proto::ReversePath::Null => String::new(),
            },
            recipients: built
                .envelope
                .to()
                .iter()
                .map(ToString::to_string)
                .collect(),
            message_id: built.message_id.clone(),
            bytes: built.bytes.clone(),
            idempotency_key,
        }
    }
}

/// What [`Outbox::enqueue`](super::Outbox::enqueue) stored (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Enqueued {
    /// The message's id.
    pub id: OutboxId,
    /// Its Message-ID (the stored one, when `existing`).
    pub message_id: String,
    /// Its provider (the stored one, when `existing`).
    pub provider: String,
    /// True when a message with the same idempotency key was already stored: nothing new was.
    pub existing: bool,
}

/// A stored message, without its bytes ([`Outbox::body`](super::Outbox::body) has them).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct QueuedMessage {
    /// Its id.
    pub id: OutboxId,
    /// The provider that is to send it.
    pub provider: String,
    /// Its Message-ID.
    pub message_id: String,
    /// The envelope sender.
    pub mail_from: String,
    /// Every recipient, in the order given, with its state.
    pub recipients: Vec<RecipientRecord>,
    /// The message's state.
    pub state: State,
    /// How many deliveries were tried (each claim counts one).
    pub attempts: u32,
    /// When it was queued.
    #[cfg_attr(feature = "serde", serde(serialize_with = "serde_time::time"))]
    pub created_at: SystemTime,
    /// When it is due: for `queued` and `deferred` messages; `None` otherwise.
    #[cfg_attr(feature = "serde", serde(serialize_with = "serde_time::opt_time"))]
    pub next_attempt_at: Option<SystemTime>,
    /// The last reply of the last attempt, when there was one.
    pub last_reply: Option<String>,
    /// The worker that holds the lease (state `sending`).
    pub lease_owner: Option<String>,
    /// The end of the lease (state `sending`).
    #[cfg_attr(feature = "serde", serde(serialize_with = "serde_time::opt_time"))]
    pub lease_until: Option<SystemTime>,
    /// The size of the message in bytes.
    pub size: u64,
    /// Its idempotency key, when it was given one.
    pub idempotency_key: Option<String>,
}

impl QueuedMessage {
    /// The recipients still to be sent to (state `pending`).
    pub fn pending_recipients(&self) -> impl Iterator<Item = &RecipientRecord> {
        self.recipients
            .iter()
            .filter(|r| r.state == RecipientState::Pending)
    }
}

/// A message a worker took with [`Outbox::claim`](super::Outbox::claim), under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The message as stored (state `sending`, this worker's lease, `attempts` counting this one).
    /// Only its `pending` recipients are to be sent to.
    pub message: QueuedMessage,
    /// The message to send.
    pub bytes: Vec<u8>,
    /// True when the previous lease ended (its worker died) after it had marked the final `.`
    /// with [`Outbox::mark_final_dot`](super::Outbox::mark_final_dot): the server may have the
    /// message. The mark is cleared in this new lease.
    pub interrupted_after_final_dot: bool,
}

/// What happened to one recipient in a delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(tag = "outcome", rename_all = "lowercase")
)]
pub enum RecipientOutcome {
    /// Accepted.
    Sent {
        /// The server's reply.
        reply: String,
    },
    /// Refused permanently.
    Failed {
        /// The server's reply.
        reply: String,
    },
    /// Refused temporarily (or not reached): try again later.
    Deferred {
        /// The server's reply, when there was one.
        reply: Option<String>,
    },
    /// The outcome is not known (the connection was lost after the final `.`).
    Unknown {
        /// The last reply, when there was one.
        reply: Option<String>,
    },
}

/// The result of one delivery attempt, given to [`Outbox::record`](super::Outbox::record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Outcome {
    /// Per recipient address: what happened. Pending recipients not listed stay pending.
    pub recipients: Vec<(String, RecipientOutcome)>,
    /// The last reply of the attempt (the final reply, or why it stopped).
    pub last_reply: Option<String>,
}

/// Counts of the outbox, from [`Outbox::stats`](super::Outbox::stats).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Stats {
    /// Messages per state; every state is present, 0 when none.
    pub by_state: BTreeMap<State, u64>,
    /// The age of the oldest message not yet final (queued, sending or deferred).
    #[cfg_attr(feature = "serde", serde(serialize_with = "serde_time::opt_duration"))]
    pub oldest_queued_age: Option<Duration>,
    /// Messages in all.
    pub total: u64,
    /// Messages per provider (as queued: a list with fallbacks is one name, `a,b`) and state;
    /// only the states that provider has messages in.
    pub by_provider: BTreeMap<String, BTreeMap<State, u64>>,
}

impl Stats {
    /// Counts `n` messages of `provider` in `state`.
    pub(crate) fn add(&mut self, provider: String, state: State, n: u64) {
        *self.by_state.entry(state).or_insert(0) += n;
        *self
            .by_provider
            .entry(provider)
            .or_default()
            .entry(state)
            .or_insert(0) += n;
        self.total += n;
    }
}

/// The schema migrations done when an outbox was opened, from
/// [`Outbox::migrated`](super::Outbox::migrated) and [`Outbox::migrate`](super::Outbox::migrate).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Migrated {
    /// The versions this open applied, in order; empty when the schema was already current
    /// (or another process migrated it first).
    pub applied: Vec<i64>,
    /// The schema's version now: the highest version applied to the database.
    pub version: i64,
    /// The highest version this build knows.
    pub latest: i64,
}

/// Which messages [`Outbox::list`](super::Outbox::list) returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListFilter {
    /// Only messages in this state; all when `None`.
    pub state: Option<State>,
    /// At most this many (the oldest); all when `None`.
    pub limit: Option<u64>,
}

/// Unix milliseconds for a time (0 before the epoch, saturated far after it).
pub(crate) fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time of Unix milliseconds.
pub(crate) fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(feature = "serde")]
mod serde_time {
    use std::time::{Duration, SystemTime};

    use serde::Serializer;

    pub(super) fn time<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(super::unix_ms(*t))
    }

    pub(super) fn opt_time<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::unix_ms(*t)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn opt_duration<S: Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }
}
