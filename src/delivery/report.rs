//! What happened to a message: per recipient, the server's final word, how long it took.

use std::time::Duration;

use serde::Serialize;

use crate::client::{RecipientResult, TransactionReport};
use crate::proto::Reply;

/// A server reply in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplySummary {
    /// The reply code, e.g. 250.
    pub code: u16,
    /// The enhanced status code, e.g. `2.0.0`, when sent.
    pub enhanced_code: Option<String>,
    /// The text.
    pub text: String,
}

impl From<&Reply> for ReplySummary {
    fn from(reply: &Reply) -> ReplySummary {
        ReplySummary {
            code: reply.code().value(),
            enhanced_code: reply.enhanced_code().map(|e| e.to_string()),
            text: reply.message(),
        }
    }
}

/// What the server said to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientStatus {
    /// The address.
    pub address: String,
    /// True when the server accepted it.
    pub accepted: bool,
    /// The RCPT TO reply.
    pub reply: ReplySummary,
}

impl From<&RecipientResult> for RecipientStatus {
    fn from(r: &RecipientResult) -> RecipientStatus {
        RecipientStatus {
            address: r.address.to_string(),
            accepted: r.accepted(),
            reply: (&r.reply).into(),
        }
    }
}

/// The outcome of one delivery: the message was accepted for at least one recipient.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryReport {
    /// The provider that delivered it.
    pub provider: String,
    /// The Message-ID, without angle brackets.
    pub message_id: String,
    /// Each recipient with its reply; rejected ones did not get the message.
    pub recipients: Vec<RecipientStatus>,
    /// The reply to the final `.`.
    pub final_reply: ReplySummary,
    /// The queue id from the final reply, when recognisable.
    pub queue_id: Option<String>,
    /// Time from connecting to the final reply.
    #[serde(serialize_with = "as_millis", rename = "duration_ms")]
    pub duration: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

impl DeliveryReport {
    pub(crate) fn new(
        provider: &str,
        message_id: &str,
        tx: &TransactionReport,
        duration: Duration,
    ) -> DeliveryReport {
        DeliveryReport {
            provider: provider.to_owned(),
            message_id: message_id.to_owned(),
            recipients: tx.recipients().iter().map(RecipientStatus::from).collect(),
            final_reply: tx.data_reply().into(),
            queue_id: tx.queue_id(),
            duration,
        }
    }

    /// Recipients that did not get the message.
    pub fn rejected(&self) -> impl Iterator<Item = &RecipientStatus> {
        self.recipients.iter().filter(|r| !r.accepted)
    }
}
