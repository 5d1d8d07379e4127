//! What happened to a message: per recipient, each attempt, the server's final word.

use std::time::Duration;

use crate::client::RecipientResult;
use crate::proto::Reply;
use crate::Error;

/// A server reply in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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

/// What happened to one recipient in the end.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RecipientStatus {
    /// The address.
    pub address: String,
    /// True when a server accepted the message for it.
    pub accepted: bool,
    /// True when the connection was lost after the whole message was sent, before the reply:
    /// the server may or may not have it. Never retried unless `retry_unknown_outcome`.
    pub outcome_unknown: bool,
    /// The last RCPT TO reply, when the server got that far.
    pub reply: Option<ReplySummary>,
    /// The provider whose server gave that reply.
    pub provider: Option<String>,
}

impl RecipientStatus {
    /// A recipient no server has answered for yet.
    pub(crate) fn untried(address: &crate::proto::Address) -> RecipientStatus {
        RecipientStatus {
            address: address.to_string(),
            accepted: false,
            outcome_unknown: false,
            reply: None,
            provider: None,
        }
    }

    pub(crate) fn from_result(r: &RecipientResult, provider: &str) -> RecipientStatus {
        RecipientStatus {
            address: r.address.to_string(),
            accepted: r.accepted(),
            outcome_unknown: false,
            reply: Some((&r.reply).into()),
            provider: Some(provider.to_owned()),
        }
    }
}

/// One try through one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Attempt {
    /// The provider tried.
    pub provider: String,
    /// 1 for the first try through this provider.
    pub number: u32,
    /// How many recipients this try was for.
    pub recipients: usize,
    /// `sent`, `partial` (some recipients refused) or the error kind (`rejected`, `timeout`…).
    pub result: String,
    /// The server's reply or the error, in one line.
    pub detail: String,
    /// Time spent waiting for the rate limit before this try.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "as_millis", rename = "rate_limit_wait_ms")
    )]
    pub rate_limit_wait: Duration,
}

/// The message was accepted for at least one recipient.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct DeliveryReport {
    /// The provider that delivered it (the last one, if recipients went through several).
    pub provider: String,
    /// The Message-ID, without angle brackets.
    pub message_id: String,
    /// Every recipient with its final status; refused ones did not get the message.
    pub recipients: Vec<RecipientStatus>,
    /// The reply to the final `.` of the last successful transaction.
    pub final_reply: ReplySummary,
    /// The queue id from that reply, when recognisable.
    pub queue_id: Option<String>,
    /// Every try, in order.
    pub attempts: Vec<Attempt>,
    /// Time from the first try to the end.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "as_millis", rename = "duration_ms")
    )]
    pub duration: Duration,
}

impl DeliveryReport {
    /// Recipients that did not get the message.
    pub fn rejected(&self) -> impl Iterator<Item = &RecipientStatus> {
        self.recipients.iter().filter(|r| !r.accepted)
    }
}

/// The message was accepted for no recipient (or, for outcome unknown, maybe for all).
#[derive(Debug)]
pub struct DeliveryError {
    /// The error that ended the delivery.
    pub error: Error,
    /// The Message-ID, without angle brackets.
    pub message_id: String,
    /// Every recipient with its final status.
    pub recipients: Vec<RecipientStatus>,
    /// Every try, in order.
    pub attempts: Vec<Attempt>,
    /// Time from the first try to the end.
    pub duration: Duration,
}

impl DeliveryError {
    /// A failure before any try (a message that cannot be built, no provider).
    pub(crate) fn before_sending(error: Error) -> DeliveryError {
        DeliveryError {
            error,
            message_id: String::new(),
            recipients: Vec::new(),
            attempts: Vec::new(),
            duration: Duration::ZERO,
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)?;
        if self.attempts.len() > 1 {
            write!(f, " (after {} attempts)", self.attempts.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for DeliveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

#[cfg(feature = "serde")]
pub(crate) fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
}
