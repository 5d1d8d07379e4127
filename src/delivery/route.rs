//! One message through a list of providers: retries within each, fallback to the next only
//! after transient failures, and an exact account of every recipient and every try.

use std::time::Duration;

use tokio::time::Instant;

use super::pool::Pool;
use super::rate_limit::RateLimiter;
use super::report::{Attempt, DeliveryError, DeliveryReport, RecipientStatus, ReplySummary};
use super::retry::RetryPolicy;
use crate::client::{Envelope, TransactionReport, Transcript};
use crate::error::{Error, ErrorKind, Stage};
use crate::message::BuiltMessage;
use crate::proto::Address;

/// A provider as the delivery loop sees it: where to send, how often to try, how fast.
#[derive(Debug, Clone)]
pub struct Route {
    /// The provider's id.
    pub provider: String,
    /// Sessions to its server.
    pub pool: Pool,
    /// Its retry policy.
    pub retry: RetryPolicy,
    /// Its rate limiter, shared with every other user of the provider.
    pub limiter: Option<RateLimiter>,
    /// Where retry and rate-limit notes go, besides `tracing`.
    pub transcript: Option<Transcript>,
}

impl Route {
    fn note(&self, line: &str) {
        tracing::info!(provider = %self.provider, "{line}");
        if let Some(t) = &self.transcript {
            crate::client::record_note(t, line);
        }
    }
}

/// The recipients and what happened to each so far.
struct Ledger {
    entries: Vec<(Address, Option<RecipientStatus>)>,
}

impl Ledger {
    fn new(to: &[Address]) -> Ledger {
        Ledger {
            entries: to.iter().map(|a| (a.clone(), None)).collect(),
        }
    }

    fn record(&mut self, status: RecipientStatus) {
        if let Some(entry) = self
            .entries
            .iter_mut()
            .find(|(a, _)| a.as_str() == status.address)
        {
            entry.1 = Some(status);
        }
    }

    /// Marks `addresses` as possibly delivered.
    fn mark_unknown(&mut self, addresses: &[Address], provider: &str) {
        for (a, s) in &mut self.entries {
            if addresses.contains(a) {
                let status = s.get_or_insert_with(|| RecipientStatus::untried(a));
                status.outcome_unknown = true;
                status.provider = Some(provider.to_owned());
            }
        }
    }

    /// Recipients still worth trying: not accepted, not refused permanently, not possibly delivered.
    fn pending(&self) -> Vec<Address> {
        self.entries
            .iter()
            .filter(|(_, s)| match s {
                None => true,
                Some(s) => {
                    !s.accepted
                        && !s.outcome_unknown
                        && s.reply.as_ref().is_none_or(|r| r.code < 500)
                }
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    fn finish(self) -> Vec<RecipientStatus> {
        self.entries
            .into_iter()
            .map(|(a, s)| s.unwrap_or_else(|| RecipientStatus::untried(&a)))
            .collect()
    }
}

fn summary(err: &Error) -> (String, String) {
    (err.kind().as_str().to_owned(), err.to_string())
}

/// Sends `message` through `routes` in order. See the crate README for the rules.
///
/// Cancel safety: a dropped future may leave the message sent, partly sent or not sent; a
/// session it was using is closed, never lent to another delivery.
pub async fn deliver(
    routes: &[Route],
    message: &BuiltMessage,
) -> Result<DeliveryReport, DeliveryError> {
    let started = Instant::now();
    let mut ledger = Ledger::new(message.envelope.to());
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut last_success: Option<(String, TransactionReport)> = None;
    let mut last_error: Option<Error> = None;

    'routes: for (index, route) in routes.iter().enumerate() {
        for number in 1..=route.retry.attempts.max(1) {
            let pending = ledger.pending();
            if pending.is_empty() {
                break 'routes;
            }
            if number > 1 {
                if started.elapsed() >= route.retry.max_elapsed {
                    route.note(&format!(
                        "no more retries: {:?} have passed",
                        route.retry.max_elapsed
                    ));
                    break;
                }
                let wait = route.retry.backoff(number);
                route.note(&format!(
                    "retry {number}/{} in {wait:?}",
                    route.retry.attempts
                ));
                tokio::time::sleep(wait).await;
            }
            let waited = match &route.limiter {
                Some(limiter) => {
                    let (waited, window) = limiter.acquire().await;
                    if let Some(window) = window {
                        route.note(&format!(
                            "waited {waited:?} for the per-{window} rate limit"
                        ));
                    }
                    waited
                }
                None => Duration::ZERO,
            };
            let envelope = match Envelope::new(message.envelope.from().clone(), pending.clone()) {
                Ok(e) => e,
                Err(e) => {
                    last_error = Some(Error::from(e));
                    break 'routes;
                }
            };
            let result = async {
                let mut session = route.pool.get().await?;
                session.send_mail(&envelope, &message.bytes).await
            }
            .await;
            match result {
                Ok(tx) => {
                    for r in tx.recipients() {
                        ledger.record(RecipientStatus::from_result(r, &route.provider));
                    }
                    let refused = tx.rejected().count();
                    attempts.push(Attempt {
                        provider: route.provider.clone(),
                        number,
                        recipients: pending.len(),
                        result: if refused == 0 { "sent" } else { "partial" }.into(),
                        detail: tx.data_reply().to_string(),
                        rate_limit_wait: waited,
                    });
                    last_success = Some((route.provider.clone(), tx));
                }
                Err(err) => {
                    // A recipient the server took at RCPT did not get the message when the
                    // transaction failed later: it carries the transaction's error reply.
                    for r in err.recipients() {
                        let mut status = RecipientStatus::from_result(r, &route.provider);
                        if status.accepted {
                            status.accepted = false;
                            status.reply = err.reply().map(ReplySummary::from);
                        }
                        ledger.record(status);
                    }
                    let (result, detail) = summary(&err);
                    attempts.push(Attempt {
                        provider: route.provider.clone(),
                        number,
                        recipients: pending.len(),
                        result,
                        detail,
                        rate_limit_wait: waited,
                    });
                    if err.is_outcome_unknown() && !route.retry.retry_unknown_outcome {
                        // The server may have the message: trying again, here or elsewhere,
                        // could deliver it twice. Report it and stop.
                        ledger.mark_unknown(&pending, &route.provider);
                        last_error = Some(err);
                        break 'routes;
                    }
                    let retry = route.retry.should_retry(&err);
                    last_error = Some(err);
                    if !retry && ledger.pending().iter().eq(pending.iter()) {
                        // A permanent failure of the whole transaction: no retry, no fallback.
                        break 'routes;
                    }
                }
            }
        }
        if ledger.pending().is_empty() {
            break;
        }
        if let Some(next) = routes.get(index + 1) {
            route.note(&format!("falling back to provider {}", next.provider));
        }
    }

    let duration = started.elapsed();
    let recipients = ledger.finish();
    match (last_success, recipients.iter().any(|r| r.accepted)) {
        (Some((provider, tx)), true) => Ok(DeliveryReport {
            provider,
            message_id: message.message_id.clone(),
            recipients,
            final_reply: ReplySummary::from(tx.data_reply()),
            queue_id: tx.queue_id(),
            attempts,
            duration,
        }),
        _ => Err(DeliveryError {
            error: last_error.unwrap_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    Stage::Connect,
                    "no provider to send through",
                )
            }),
            message_id: message.message_id.clone(),
            recipients,
            attempts,
            duration,
        }),
    }
}
