//! One message through a list of providers: retries within each after transient failures,
//! the next provider when this one cannot send (see `verdict`), and an exact account of every
//! recipient and every try.

use std::time::Duration;

use tokio::time::Instant;

use super::pool::Pool;
use super::rate_limit::RateLimiter;
use super::report::{Attempt, DeliveryError, DeliveryReport, RecipientStatus, ReplySummary};
use super::retry::RetryPolicy;
use super::verdict::{summary_verdict, verdict, Verdict};
use crate::client::{Envelope, TransactionReport, Transcript};
use crate::error::{Error, ErrorKind, Stage};
use crate::message::{BuiltMessage, Mailbox, Notification};
use crate::proto::Address;

/// A provider as the delivery loop sees it: where to send, as whom, how often to try, how fast.
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
    /// The sender it sends as (envelope and `From:`) when the notification names none: a
    /// fallback provider sends as itself, since providers refuse each other's senders.
    pub from: Mailbox,
}

impl Route {
    fn note(&self, line: &str) {
        tracing::info!(provider = %self.provider, "{line}");
        if let Some(t) = &self.transcript {
            crate::client::record_note(t, line);
        }
    }
}

/// A recipient and what happened to it so far.
struct Entry {
    address: Address,
    status: Option<RecipientStatus>,
    /// What its last refusal means, when it was refused.
    verdict: Option<Verdict>,
    /// The route whose provider refused it for reasons of its own (policy, quota): the others
    /// may still try.
    refused_by: Option<usize>,
}

/// The recipients and what happened to each so far.
struct Ledger {
    entries: Vec<Entry>,
}

impl Ledger {
    fn new(to: &[Address]) -> Ledger {
        Ledger {
            entries: to
                .iter()
                .map(|a| Entry {
                    address: a.clone(),
                    status: None,
                    verdict: None,
                    refused_by: None,
                })
                .collect(),
        }
    }

    /// Records what route `route` said about a recipient: its RCPT reply, judged on its own.
    fn record(&mut self, status: RecipientStatus, route: usize) {
        let verdict = status
            .reply
            .as_ref()
            .filter(|_| !status.accepted)
            .map(|r| summary_verdict(r.code, r.enhanced_code.as_deref()));
        self.record_judged(status, route, verdict);
    }

    /// Records a recipient with the verdict of the failure that ended its transaction.
    fn record_judged(&mut self, status: RecipientStatus, route: usize, verdict: Option<Verdict>) {
        let Some(entry) = self
            .entries
            .iter_mut()
            .find(|e| e.address.as_str() == status.address)
        else {
            return;
        };
        entry.refused_by = (verdict == Some(Verdict::Provider)).then_some(route);
        entry.verdict = verdict;
        entry.status = Some(status);
    }

    /// Marks `addresses` as possibly delivered.
    fn mark_unknown(&mut self, addresses: &[Address], provider: &str) {
        for e in &mut self.entries {
            if addresses.contains(&e.address) {
                let status = e
                    .status
                    .get_or_insert_with(|| RecipientStatus::untried(&e.address));
                status.accepted = false;
                status.outcome_unknown = true;
                status.provider = Some(provider.to_owned());
            }
        }
    }

    /// Recipients still worth trying through route `route`: not accepted, not possibly
    /// delivered, not refused for good, not refused by this very provider.
    fn pending_for(&self, route: usize) -> Vec<Address> {
        self.entries
            .iter()
            .filter(|e| match &e.status {
                None => true,
                Some(s) => {
                    !s.accepted
                        && !s.outcome_unknown
                        && e.refused_by != Some(route)
                        && e.verdict != Some(Verdict::Permanent)
                }
            })
            .map(|e| e.address.clone())
            .collect()
    }

    fn finish(self) -> Vec<RecipientStatus> {
        self.entries
            .into_iter()
            .map(|e| {
                e.status
                    .unwrap_or_else(|| RecipientStatus::untried(&e.address))
            })
            .collect()
    }
}

fn summary(err: &Error) -> (String, String) {
    (err.kind().as_str().to_owned(), err.to_string())
}

fn deadline_error(total: Duration, what: &str) -> Error {
    Error::new(
        ErrorKind::Timeout,
        Stage::Delivery,
        format!("the send's total deadline ({total:?}, `timeouts.total`) passed {what}"),
    )
}

/// What is delivered: a notification, built for each provider, or a message built already.
enum Source<'a> {
    Notification(&'a Notification),
    Built(&'a BuiltMessage),
}

/// The message as route `route` sends it: as the notification's sender, else as the route's;
/// the Message-ID stays the first one built. A message built already goes as it is.
struct Messages<'a> {
    source: Source<'a>,
    built: Vec<(Mailbox, BuiltMessage)>,
}

impl Messages<'_> {
    fn for_route(&mut self, route: &Route) -> Result<&BuiltMessage, Error> {
        let notification = match self.source {
            Source::Built(message) => return Ok(message),
            Source::Notification(n) => n,
        };
        let from = notification.from.as_ref().unwrap_or(&route.from);
        if let Some(i) = self.built.iter().position(|(f, _)| f == from) {
            return Ok(&self.built[i].1);
        }
        let id = self.built.first().map(|(_, b)| b.message_id.as_str());
        let message = notification.build_with_id(from, id)?;
        self.built.push((from.clone(), message));
        Ok(&self.built[self.built.len() - 1].1)
    }
}

/// Sends `notification` through `routes` in order, within `total` when given. See the crate
/// README for the rules.
///
/// Cancel safety: a dropped future may leave the message sent, partly sent or not sent; a
/// session it was using is closed, never lent to another delivery.
pub async fn deliver(
    routes: &[Route],
    notification: &Notification,
    total: Option<Duration>,
) -> Result<DeliveryReport, DeliveryError> {
    deliver_source(routes, Source::Notification(notification), total).await
}

/// Like [`deliver`], for a message built already: every provider sends it as it is, with its
/// envelope (a fallback provider does not change its sender).
///
/// Cancel safety: as [`deliver`].
pub async fn deliver_message(
    routes: &[Route],
    message: &BuiltMessage,
    total: Option<Duration>,
) -> Result<DeliveryReport, DeliveryError> {
    deliver_source(routes, Source::Built(message), total).await
}

async fn deliver_source(
    routes: &[Route],
    source: Source<'_>,
    total: Option<Duration>,
) -> Result<DeliveryReport, DeliveryError> {
    let started = Instant::now();
    let deadline = total.map(|t| started + t);
    let mut messages = Messages {
        source,
        built: Vec::new(),
    };
    let first = match routes.first().map(|r| messages.for_route(r)) {
        Some(Ok(m)) => m.clone(),
        Some(Err(error)) => return Err(DeliveryError::before_sending(error)),
        None => {
            let error = Error::new(
                ErrorKind::InvalidInput,
                Stage::Delivery,
                "no provider to send through",
            );
            return Err(DeliveryError::before_sending(error));
        }
    };
    let mut ledger = Ledger::new(first.envelope.to());
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut last_success: Option<(String, TransactionReport)> = None;
    let mut last_error: Option<Error> = None;
    let remaining = |what: &str| -> Result<Option<Duration>, Error> {
        match (deadline, total) {
            (Some(d), Some(t)) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(deadline_error(t, what))
                } else {
                    Ok(Some(left))
                }
            }
            _ => Ok(None),
        }
    };

    'routes: for (index, route) in routes.iter().enumerate() {
        let message = match messages.for_route(route) {
            Ok(m) => m.clone(),
            Err(e) => {
                last_error = Some(e);
                break 'routes;
            }
        };
        for number in 1..=route.retry.attempts.max(1) {
            let pending = ledger.pending_for(index);
            if pending.is_empty() {
                break;
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
                match remaining("before the next retry") {
                    Ok(Some(left)) if left <= wait => {
                        last_error = Some(deadline_error(
                            total.unwrap_or_default(),
                            "before the next retry was due",
                        ));
                        break 'routes;
                    }
                    Err(e) => {
                        last_error = Some(e);
                        break 'routes;
                    }
                    Ok(_) => {}
                }
                route.note(&format!(
                    "retry {number}/{} in {wait:?}",
                    route.retry.attempts
                ));
                tokio::time::sleep(wait).await;
            }
            let waited = match &route.limiter {
                Some(limiter) => {
                    let units = limiter.limits().units(pending.len());
                    let left = match remaining("while waiting for the rate limit") {
                        Ok(left) => left,
                        Err(e) => {
                            last_error = Some(e);
                            break 'routes;
                        }
                    };
                    let acquired = match left {
                        Some(left) => tokio::time::timeout(left, limiter.acquire_units(units))
                            .await
                            .map_err(|_| {
                                deadline_error(
                                    total.unwrap_or_default(),
                                    "while waiting for the rate limit",
                                )
                            }),
                        None => Ok(limiter.acquire_units(units).await),
                    };
                    match acquired {
                        Ok(Ok((waited, window))) => {
                            if let Some(window) = window {
                                route.note(&format!(
                                    "waited {waited:?} for the per-{window} rate limit"
                                ));
                            }
                            waited
                        }
                        Ok(Err(over)) => {
                            // Another provider may allow more: this one never will.
                            last_error = Some(Error::new(
                                ErrorKind::InvalidInput,
                                Stage::Delivery,
                                format!("rate limit of provider {}: {over}", route.provider),
                            ));
                            break;
                        }
                        Err(e) => {
                            last_error = Some(e);
                            break 'routes;
                        }
                    }
                }
                None => Duration::ZERO,
            };
            let envelope = match message.envelope.subset(&pending) {
                Ok(e) => e,
                Err(e) => {
                    last_error = Some(Error::from(e));
                    break 'routes;
                }
            };
            let left = match remaining("before the try") {
                Ok(left) => left,
                Err(e) => {
                    last_error = Some(e);
                    break 'routes;
                }
            };
            let result = send_once(route, &envelope, &message.bytes, deadline, left, total).await;
            match result {
                Ok(tx) => {
                    for r in tx.recipients() {
                        ledger.record(RecipientStatus::from_result(r, &route.provider), index);
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
                    let unknown = err.is_outcome_unknown();
                    record_failure(&mut ledger, &err, &pending, route, index);
                    let (result, detail) = summary(&err);
                    attempts.push(Attempt {
                        provider: route.provider.clone(),
                        number,
                        recipients: pending.len(),
                        result,
                        detail,
                        rate_limit_wait: waited,
                    });
                    let verdict = verdict(&err);
                    last_error = Some(err);
                    if unknown {
                        // Those that may have it are set aside; the others (refused for now
                        // at RCPT) go on being tried.
                        continue;
                    }
                    match verdict {
                        Verdict::Transient => {}
                        Verdict::Provider => {
                            route.note("this provider cannot send the message now");
                            break;
                        }
                        Verdict::Permanent => {
                            if ledger.pending_for(index).iter().eq(pending.iter()) {
                                // A permanent failure of the whole transaction: no retry,
                                // no fallback.
                                break 'routes;
                            }
                        }
                    }
                }
            }
        }
        if (0..routes.len()).all(|i| ledger.pending_for(i).is_empty()) {
            break;
        }
        if let Some(next) = routes.get(index + 1) {
            route.note(&format!("falling back to provider {}", next.provider));
        }
    }

    let duration = started.elapsed();
    let recipients = ledger.finish();
    let message_id = first.message_id.clone();
    match (last_success, recipients.iter().any(|r| r.accepted)) {
        (Some((provider, tx)), true) => Ok(DeliveryReport {
            provider,
            message_id,
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
                    Stage::Delivery,
                    "no provider to send through",
                )
            }),
            message_id,
            recipients,
            attempts,
            duration,
        }),
    }
}

/// One try: a session from the pool (within what is left of the total deadline) and one
/// transaction, every step of which ends by that deadline too.
async fn send_once(
    route: &Route,
    envelope: &Envelope,
    bytes: &[u8],
    deadline: Option<Instant>,
    left: Option<Duration>,
    total: Option<Duration>,
) -> Result<TransactionReport, Error> {
    // A session of its own when one is free at once (or with a final-dot gate, a hook of this
    // task). Else, while every session is busy, the message waits to share one with the
    // other tasks sending now (see `shared_sessions`): it rides a batch, still with its own
    // result, and its deadline still bounds it (a batch works to its earliest deadline).
    let sharing = crate::client::current_gate().is_none();
    let checkout = async {
        if !sharing {
            Some(route.pool.get().await)
        } else if route.pool.sessions().is_idle() {
            route.pool.try_get().await
        } else {
            None
        }
    };
    let checked_out = match left {
        // Dropping a checkout half-way is safe: nothing was sent yet.
        Some(left) => tokio::time::timeout(left, checkout)
            .await
            .map_err(|_| deadline_error(total.unwrap_or_default(), "while connecting"))?,
        None => checkout.await,
    };
    let Some(session) = checked_out else {
        return super::shared_sessions::send(&route.pool, envelope, bytes, deadline).await;
    };
    let mut session = session?;
    session.set_deadline(deadline);
    let result = session.send_mail(envelope, bytes).await;
    session.set_deadline(None);
    result
}

/// Records a failed try in the ledger: what RCPT said stays (only accepted recipients can be
/// "outcome unknown"); accepted recipients of a failed transaction carry its error reply and
/// its verdict; a failure before RCPT carries them to every pending recipient.
fn record_failure(
    ledger: &mut Ledger,
    err: &Error,
    pending: &[Address],
    route: &Route,
    index: usize,
) {
    let unknown = err.is_outcome_unknown() && !route.retry.retry_unknown_outcome;
    // With `retry_unknown_outcome`, a possibly delivered message is tried again like any
    // transient failure.
    let judged = Some(if err.is_outcome_unknown() {
        Verdict::Transient
    } else {
        verdict(err)
    });
    if err.recipients().is_empty() {
        if unknown {
            ledger.mark_unknown(pending, &route.provider);
        } else if let Some(reply) = err.reply() {
            for a in pending {
                let mut status = RecipientStatus::untried(a);
                status.reply = Some(ReplySummary::from(reply));
                status.provider = Some(route.provider.clone());
                ledger.record_judged(status, index, judged);
            }
        }
        return;
    }
    let mut may_have_it = Vec::new();
    for r in err.recipients() {
        let mut status = RecipientStatus::from_result(r, &route.provider);
        if !status.accepted {
            ledger.record(status, index);
            continue;
        }
        status.accepted = false;
        if unknown {
            may_have_it.push(r.address.clone());
            ledger.record_judged(status, index, None);
        } else {
            if let Some(reply) = err.reply() {
                status.reply = Some(ReplySummary::from(reply));
            }
            ledger.record_judged(status, index, judged);
        }
    }
    ledger.mark_unknown(&may_have_it, &route.provider);
}
