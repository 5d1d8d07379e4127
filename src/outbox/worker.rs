//! [`Worker`]: takes due messages from an [`Outbox`], delivers them through each provider's
//! [`Mailer`] (pools, rate limits, fallback; one try per provider, the outbox's schedule does
//! the retrying) and records what happened to every recipient.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::error::OutboxError;
use super::record::{Claimed, OutboxId, Outcome, RecipientOutcome, RecipientState};
use super::Outbox;
use crate::client::{with_final_dot_gate, Envelope, FinalDotGate, GateFuture};
use crate::delivery::{DeliveryError, DeliveryReport, RateLimiter, RateLimits, RecipientStatus};
use crate::error::{Error, ErrorKind, Stage};
use crate::proto::{Address, ReversePath};
use crate::provider::{Config, Mailer, RouteTable};

/// Messages claimed ahead, per delivery slot: a claim then serves several deliveries, and a
/// slot that frees up starts the next message without waiting for the database. Their leases
/// run from the claim, so the buffer stays small (and a message that waited more than half its
/// lease in it is given back instead of being started).
const PREFETCH: usize = 2;

/// What a worker recorded for one message, handed to [`WorkerOptions::on_record`].
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The message's outbox id.
    pub id: OutboxId,
    /// Its Message-ID.
    pub message_id: String,
    /// The provider(s) it was sent through.
    pub provider: String,
    /// The state it is in now.
    pub state: super::record::State,
    /// The last reply or error, in one line.
    pub last_reply: Option<String>,
    /// From the start of the attempt (after the claim) to the outcome recorded: the
    /// delivery's latency as this worker saw it (zero-length sends included: a message
    /// recorded `unknown` after an interruption is not sent at all).
    pub elapsed: Duration,
    /// Time the attempt waited for the provider's rate limit (every try added up).
    pub rate_limit_wait: Duration,
}

/// Called once per recorded delivery (from the delivering task: keep it quick).
pub type RecordHook = Arc<dyn Fn(&Recorded) + Send + Sync>;

/// How a [`Worker`] runs.
#[derive(Clone)]
pub struct WorkerOptions {
    /// Messages delivered at once (each holds one session while it is sent). Default 4.
    pub concurrency: usize,
    /// Stop when nothing is due and nothing is in flight (deferred messages stay for a later
    /// run) instead of waiting for more.
    pub until_empty: bool,
    /// Stop after this many deliveries were recorded.
    pub max_messages: Option<u64>,
    /// Longest sleep between looks at the outbox when nothing is due (another process may
    /// enqueue at any time). Default 1 s. On PostgreSQL a message queued by any process wakes
    /// the worker at once (`LISTEN`/`NOTIFY`), so this is only the fallback.
    pub poll: Duration,
    /// Told about each delivery once it is recorded (a log line, a metric).
    pub on_record: Option<RecordHook>,
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("concurrency", &self.concurrency)
            .field("until_empty", &self.until_empty)
            .field("max_messages", &self.max_messages)
            .field("poll", &self.poll)
            .field("on_record", &self.on_record.as_ref().map(|_| "…"))
            .finish()
    }
}

impl Default for WorkerOptions {
    fn default() -> WorkerOptions {
        WorkerOptions {
            concurrency: 4,
            until_empty: false,
            max_messages: None,
            poll: Duration::from_secs(1),
            on_record: None,
        }
    }
}

/// What a [`Worker::run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Deliveries recorded (one per claimed message, whatever the outcome).
    pub delivered: u64,
    /// Messages that ended `sent`.
    pub sent: u64,
    /// Messages that ended `failed`, `expired` or `unknown`.
    pub ended_otherwise: u64,
    /// Messages deferred to a later attempt.
    pub deferred: u64,
}

/// Delivers an outbox's messages. Several workers (threads, processes) may share one outbox:
/// each message is leased to one of them at a time.
pub struct Worker {
    outbox: Outbox,
    config: Config,
    options: WorkerOptions,
    id: String,
    mailers: Mutex<HashMap<String, Result<Mailer, String>>>,
    /// One limiter per provider, whatever notify step names it, counting in the outbox's
    /// database with every other worker's.
    limiters: Mutex<HashMap<String, RateLimiter>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Records "the final `.` is about to leave" for one message before it does.
struct MarkFinalDot {
    outbox: Outbox,
    id: OutboxId,
    worker: String,
}

impl FinalDotGate for MarkFinalDot {
    fn before_final_dot(&self) -> GateFuture<'_> {
        Box::pin(async move {
            self.outbox
                .mark_final_dot(self.id, &self.worker)
                .await
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Io,
                        Stage::Body,
                        format!("cannot record the message's progress in the outbox: {e}"),
                    )
                })
        })
    }
}

impl Worker {
    /// A worker for `outbox` sending through `config`'s providers. Each provider's `retry`
    /// is reduced to one try per delivery: between deliveries the outbox's backoff schedule
    /// and `max_age` apply.
    pub fn new(outbox: Outbox, config: &Config, options: WorkerOptions) -> Worker {
        let mut config = config.clone();
        for p in &mut config.providers {
            p.smtp.retry.attempts = 1;
        }
        let id = format!(
            "{}-{}-{:04x}",
            host_name(),
            std::process::id(),
            fastrand::u16(..)
        );
        Worker {
            outbox,
            config,
            options,
            id,
            mailers: Mutex::new(HashMap::new()),
            limiters: Mutex::new(HashMap::new()),
        }
    }

    /// This worker's lease owner name (host, process id, a random suffix).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Delivers due messages until `shutdown` resolves (or, with
    /// [`WorkerOptions::until_empty`], until nothing is due). On shutdown it takes no more
    /// messages, lets the deliveries in flight finish (each bounded by its provider's
    /// timeouts) and records them.
    ///
    /// Cancel safety: dropping the future abandons the deliveries in flight; their leases
    /// expire and another run takes them over (a message whose final `.` may have left is
    /// then `unknown`).
    pub async fn run(
        self: Arc<Self>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<WorkerSummary, OutboxError> {
        tokio::pin!(shutdown);
        let concurrency = self.options.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        let finished = Arc::new(Notify::new());
        let mut tasks: JoinSet<Result<super::record::State, OutboxError>> = JoinSet::new();
        let mut summary = WorkerSummary::default();
        let mut claimed_total = 0u64;
        // Claimed ahead of the free slots, with when they were claimed (see PREFETCH).
        let mut ready: VecDeque<(Instant, Claimed)> = VecDeque::new();
        let mut stopping = false;
        // An error that ends the run once the deliveries in flight are recorded.
        let mut failure: Option<OutboxError> = None;
        // The claim under way, if any (one at a time).
        let mut claiming: Option<JoinHandle<Result<Vec<Claimed>, OutboxError>>> = None;
        // The last claim found nothing due: wait for a delivery to end or the next due time.
        let mut idle = false;
        loop {
            // Collect what finished.
            while let Some(done) = tasks.try_join_next() {
                tally(&mut summary, done);
            }
            if stopping {
                break;
            }
            // Start what was claimed, as far as the free slots allow.
            while !ready.is_empty() {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                let Some((claimed_at, c)) = ready.pop_front() else {
                    break;
                };
                // Waited too long in the buffer (slow deliveries): give it back rather than
                // start it late in its lease; it is claimed again with a fresh one.
                if claimed_at.elapsed() > self.outbox.settings().lease / 2 {
                    self.give_back(c.message.id).await;
                    continue;
                }
                let worker = self.clone();
                let finished = finished.clone();
                tasks.spawn(async move {
                    let started = Instant::now();
                    let (claimed, outcome, waited) = worker.attempt(c).await;
                    // The session is back in the pool: the slot is free for the next message
                    // while this one's outcome is recorded (group-committed).
                    drop(permit);
                    finished.notify_one();
                    let result = worker.record(claimed, outcome, started, waited).await;
                    finished.notify_one();
                    result
                });
            }
            let budget = self
                .options
                .max_messages
                .map_or(u64::MAX, |m| m.saturating_sub(claimed_total));
            // Claim when the buffer runs low (up to the free slots plus PREFETCH per slot), in a
            // task of its own: deliveries keep starting from the buffer meanwhile.
            let low = ready.len() < concurrency.div_ceil(2);
            if claiming.is_none() && low && budget > 0 && !idle {
                let want = (permits.available_permits() + concurrency * PREFETCH)
                    .saturating_sub(ready.len())
                    .min(usize::try_from(budget).unwrap_or(usize::MAX));
                let (outbox, id) = (self.outbox.clone(), self.id.clone());
                claiming = Some(tokio::spawn(async move { outbox.claim(&id, want).await }));
            }
            if claiming.is_none() {
                if budget == 0 && ready.is_empty() {
                    break; // the deliveries in flight are awaited below
                }
                if self.options.until_empty && idle && ready.is_empty() && tasks.is_empty() {
                    let due = self.outbox.next_due().await?;
                    if due.is_none_or(|t| t > SystemTime::now()) {
                        break;
                    }
                    idle = false;
                    continue;
                }
            }
            let wait = if idle && claiming.is_none() && ready.is_empty() && budget > 0 {
                // A failed look only costs a full poll interval.
                match self.outbox.next_due().await {
                    Ok(Some(t)) => match t.duration_since(SystemTime::now()) {
                        Ok(until_due) => until_due.min(self.options.poll),
                        // Due already, yet the claim found nothing: other workers hold it, or
                        // its provider is at `max_connections_per_provider`.
                        Err(_) => Duration::from_millis(50).min(self.options.poll),
                    },
                    Ok(None) | Err(_) => self.options.poll,
                }
            } else {
                // A finished delivery or claim (or shutdown) is what changes anything.
                self.options.poll
            };
            tokio::select! {
                () = &mut shutdown => stopping = true,
                done = claim_done(&mut claiming) => {
                    claiming = None;
                    let claimed = match done {
                        Ok(claimed) => claimed,
                        // A busy database or a lost connection: try again after a pause.
                        Err(e) if e.is_transient() => {
                            tracing::warn!("outbox: claiming failed for now: {e}");
                            idle = true;
                            continue;
                        }
                        // Anything else ends the run, after the deliveries in flight.
                        Err(e) => {
                            failure = Some(e);
                            stopping = true;
                            continue;
                        }
                    };
                    idle = claimed.is_empty();
                    claimed_total += claimed.len() as u64;
                    let now = Instant::now();
                    ready.extend(claimed.into_iter().map(|c| (now, c)));
                }
                () = finished.notified() => idle = false,
                // A sleep, cut short on PostgreSQL when another process queues a message.
                () = self.outbox.wait_for_work(wait.max(Duration::from_millis(5))) => idle = false,
            }
        }
        // A claim still under way: what it took goes back with the rest.
        if claiming.is_some() {
            if let Ok(claimed) = claim_done(&mut claiming).await {
                let now = Instant::now();
                ready.extend(claimed.into_iter().map(|c| (now, c)));
            }
        }
        // Claimed but not started: back to the queue, due now, the attempt not counted.
        for (_, c) in ready.drain(..) {
            self.give_back(c.message.id).await;
        }
        while let Some(done) = tasks.join_next().await {
            tally(&mut summary, done);
        }
        let mailers: Vec<Mailer> = self
            .mailers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter_map(|m| m.as_ref().ok().cloned())
            .collect();
        for m in mailers {
            m.close().await;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }

    /// Releases a claimed message that was not started; if that fails its lease ends by itself
    /// (and the message, never sent under it, is taken again then).
    async fn give_back(&self, id: OutboxId) {
        if let Err(e) = self.outbox.release(id, &self.id).await {
            tracing::warn!("outbox: could not give message {id} back to the queue: {e}");
        }
    }

    fn mailer(&self, provider: &str) -> Result<Mailer, String> {
        let mut mailers = self
            .mailers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        mailers
            .entry(provider.to_owned())
            .or_insert_with(|| {
                // A notify step names its providers in order, joined with commas.
                let ids: Vec<&str> = provider.split(',').map(str::trim).collect();
                RouteTable::build(&self.config, &ids, None)
                    .map(|table| table.with_rate_limiters(|id, limits| self.limiter(id, limits)))
                    .and_then(|table| table.mailer(&ids))
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    /// The provider's rate limiter, shared by every mailer of this worker and counted in the
    /// outbox's database, so the limits hold across every worker sharing the outbox.
    fn limiter(&self, provider: &str, limits: RateLimits) -> RateLimiter {
        self.limiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(provider.to_owned())
            .or_insert_with(|| RateLimiter::shared(limits, provider, Arc::new(self.outbox.clone())))
            .clone()
    }

    /// One claimed message sent to its pending recipients (or not, after an interruption):
    /// what happened, to be recorded, and the time it waited for rate limits.
    async fn attempt(&self, claimed: Claimed) -> (Claimed, Outcome, Duration) {
        let mut waited = Duration::ZERO;
        let message = &claimed.message;
        let pending: Vec<&str> = message
            .recipients
            .iter()
            .filter(|r| r.state == RecipientState::Pending)
            .map(|r| r.address.as_str())
            .collect();
        let outcome = if claimed.interrupted_after_final_dot {
            self.after_interruption(&message.provider, &pending)
        } else {
            match self.mailer(&message.provider) {
                Err(why) => deferred_all(&pending, format!("provider {}: {why}", message.provider)),
                Ok(mailer) => match envelope(&message.mail_from, &pending) {
                    Err(why) => failed_all(&pending, why),
                    Ok(envelope) => {
                        let gate = Arc::new(MarkFinalDot {
                            outbox: self.outbox.clone(),
                            id: message.id,
                            worker: self.id.clone(),
                        });
                        let sent = with_final_dot_gate(
                            gate,
                            mailer.send_message(&envelope, &claimed.bytes),
                        )
                        .await;
                        let attempts = match &sent {
                            Ok(report) => &report.attempts,
                            Err(e) => &e.attempts,
                        };
                        waited = attempts.iter().map(|a| a.rate_limit_wait).sum();
                        outcome_of(&pending, sent)
                    }
                },
            }
        };
        (claimed, outcome, waited)
    }

    /// Records the outcome of an attempt and tells the hook.
    async fn record(
        &self,
        claimed: Claimed,
        outcome: Outcome,
        started: Instant,
        rate_limit_wait: Duration,
    ) -> Result<super::record::State, OutboxError> {
        let message = &claimed.message;
        let last_reply = outcome.last_reply.clone();
        let state = self.outbox.record(message.id, &self.id, outcome).await?;
        if let Some(hook) = &self.options.on_record {
            hook(&Recorded {
                id: message.id,
                message_id: message.message_id.clone(),
                provider: message.provider.clone(),
                state,
                last_reply,
                elapsed: started.elapsed(),
                rate_limit_wait,
            });
        }
        Ok(state)
    }

    /// A lease that expired after the final `.` was recorded: the server may have the
    /// message. `unknown`, unless the provider says `retry_unknown_outcome: true`.
    fn after_interruption(&self, provider: &str, pending: &[&str]) -> Outcome {
        let first = provider.split(',').next().unwrap_or_default().trim();
        let retry = self
            .config
            .providers
            .iter()
            .find(|p| p.id == first)
            .is_some_and(|p| p.smtp.retry.retry_unknown_outcome);
        let reply =
            "the worker stopped after the final \".\" was sent: the server may have the message"
                .to_owned();
        Outcome {
            recipients: pending
                .iter()
                .map(|a| {
                    let outcome = if retry {
                        RecipientOutcome::Deferred {
                            reply: Some(reply.clone()),
                        }
                    } else {
                        RecipientOutcome::Unknown {
                            reply: Some(reply.clone()),
                        }
                    };
                    ((*a).to_owned(), outcome)
                })
                .collect(),
            last_reply: Some(reply),
        }
    }
}

/// The result of the claim under way (pending forever when there is none).
async fn claim_done(
    claiming: &mut Option<JoinHandle<Result<Vec<Claimed>, OutboxError>>>,
) -> Result<Vec<Claimed>, OutboxError> {
    match claiming.as_mut() {
        Some(handle) => handle.await.map_err(|e| OutboxError::Io {
            reason: format!("the worker's claim task failed: {e}"),
        })?,
        None => std::future::pending().await,
    }
}

fn tally(
    summary: &mut WorkerSummary,
    done: Result<Result<super::record::State, OutboxError>, tokio::task::JoinError>,
) {
    use super::record::State;
    summary.delivered += 1;
    match done {
        Ok(Ok(State::Sent)) => summary.sent += 1,
        Ok(Ok(State::Deferred | State::Queued)) => summary.deferred += 1,
        Ok(Ok(_)) => summary.ended_otherwise += 1,
        // The delivery could not be recorded (a lost lease, a database error): the lease
        // expires and the message is taken again.
        Ok(Err(e)) => tracing::warn!("outbox: a delivery could not be recorded: {e}"),
        Err(e) => tracing::warn!("outbox: a delivery task failed: {e}"),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

fn envelope(mail_from: &str, pending: &[&str]) -> Result<Envelope, String> {
    let from = if mail_from.is_empty() {
        ReversePath::Null
    } else {
        ReversePath::Mailbox(Address::new(mail_from).map_err(|e| e.to_string())?)
    };
    let to = pending
        .iter()
        .map(|a| Address::new(*a).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(from, to).map_err(|e| e.to_string())
}

fn deferred_all(pending: &[&str], why: String) -> Outcome {
    Outcome {
        recipients: pending
            .iter()
            .map(|a| {
                (
                    (*a).to_owned(),
                    RecipientOutcome::Deferred {
                        reply: Some(why.clone()),
                    },
                )
            })
            .collect(),
        last_reply: Some(why),
    }
}

fn failed_all(pending: &[&str], why: String) -> Outcome {
    Outcome {
        recipients: pending
            .iter()
            .map(|a| {
                (
                    (*a).to_owned(),
                    RecipientOutcome::Failed { reply: why.clone() },
                )
            })
            .collect(),
        last_reply: Some(why),
    }
}

/// A reply summary as one line: `550 5.1.1 no such user`.
fn reply_text(status: &RecipientStatus) -> Option<String> {
    status.reply.as_ref().map(|r| match &r.enhanced_code {
        Some(e) => format!("{} {e} {}", r.code, r.text),
        None => format!("{} {}", r.code, r.text),
    })
}

/// What the Mailer's report says about each pending recipient. A refusal with a 5yz reply is
/// final; a 4yz one, or no reply at all (the session failed before RCPT), is tried again
/// later — unless the error is about the message itself (it will never be sendable).
fn outcome_of(pending: &[&str], sent: Result<DeliveryReport, DeliveryError>) -> Outcome {
    let (statuses, error, last_reply) = match &sent {
        Ok(report) => (
            &report.recipients,
            None,
            Some(format!(
                "{} {}",
                report.final_reply.code, report.final_reply.text
            )),
        ),
        Err(e) => (&e.recipients, Some(&e.error), Some(e.error.to_string())),
    };
    let message_is_the_problem = error.is_some_and(|e| {
        matches!(
            e.kind(),
            ErrorKind::InvalidInput | ErrorKind::MessageTooLarge | ErrorKind::Unsupported
        ) || (e.kind() == ErrorKind::Rejected
            && e.reply().is_some_and(|r| r.is_permanent())
            && matches!(e.stage(), Stage::MailFrom | Stage::Data | Stage::DataEnd))
    });
    let recipients = pending
        .iter()
        .map(|address| {
            let status = statuses.iter().find(|s| s.address == *address);
            let outcome = match status {
                Some(s) if s.accepted => RecipientOutcome::Sent {
                    reply: reply_text(s).unwrap_or_default(),
                },
                Some(s) if s.outcome_unknown => RecipientOutcome::Unknown {
                    reply: last_reply.clone(),
                },
                Some(s) if s.reply.as_ref().is_some_and(|r| r.code >= 500) => {
                    RecipientOutcome::Failed {
                        reply: reply_text(s).unwrap_or_default(),
                    }
                }
                Some(s) if s.reply.is_some() && !message_is_the_problem => {
                    RecipientOutcome::Deferred {
                        reply: reply_text(s),
                    }
                }
                _ if message_is_the_problem => RecipientOutcome::Failed {
                    reply: last_reply.clone().unwrap_or_default(),
                },
                _ => RecipientOutcome::Deferred {
                    reply: last_reply.clone(),
                },
            };
            ((*address).to_owned(), outcome)
        })
        .collect();
    Outcome {
        recipients,
        last_reply,
    }
}
