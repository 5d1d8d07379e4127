//! Transactions of many tasks riding the same sessions: when several tasks send through one
//! [`Pool`](super::Pool) at once, their messages wait in a queue and each session takes a
//! batch of them to [`Connection::send_many`](crate::client::Connection::send_many), so that
//! with PIPELINING (and CHUNKING) they share round trips, while each task still gets its own
//! result, exactly as if it had sent alone.
//!
//! A task that finds a session free at once sends alone, in its own task, as before (so a
//! dropped send closes its session, never reused). Only while every session is busy do
//! messages wait here, and a driver task per session (at most `max_connections`) takes
//! batches until the queue is empty. A waiting task that stops waiting (its future dropped)
//! withdraws its message if no session took it yet; once taken, the message is sent in the
//! driver's task and the result dropped: a cancelled waiter never breaks a session others
//! share.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::client::{Envelope, TransactionReport};
use crate::error::{Error, ErrorKind, Result, Stage};

/// Messages a session takes at once: with CHUNKING they are all in flight together, so a
/// batch is also what a lost connection may leave "outcome unknown".
const BATCH: usize = 16;

/// One task's message, waiting for a session.
struct Job {
    envelope: Envelope,
    bytes: Arc<[u8]>,
    deadline: Option<Instant>,
    withdrawn: Arc<AtomicBool>,
    reply: oneshot::Sender<Result<TransactionReport>>,
}

/// The queue of a pool and the count of its drivers.
#[derive(Default)]
pub(super) struct SharedSessions {
    jobs: Mutex<VecDeque<Job>>,
    drivers: AtomicUsize,
}

/// Withdraws the job when the waiting task goes away.
struct Withdraw(Arc<AtomicBool>);

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl SharedSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No message is waiting for a session.
    pub(super) fn is_idle(&self) -> bool {
        self.lock().is_empty()
    }

    /// Messages waiting for a session (withdrawn ones not yet skipped included).
    pub(super) fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Up to `max` jobs still wanted, oldest first.
    fn take_batch(&self, max: usize) -> Vec<Job> {
        let mut jobs = self.lock();
        let mut batch = Vec::new();
        let now = Instant::now();
        while batch.len() < max {
            let Some(job) = jobs.pop_front() else { break };
            if job.withdrawn.load(Ordering::Relaxed) {
                continue;
            }
            // Out of time while it waited: it fails alone, before anything is written, instead
            // of cutting its batch short.
            if job.deadline.is_some_and(|d| d <= now) {
                let _ = job.reply.send(Err(Error::new(
                    ErrorKind::Timeout,
                    Stage::Delivery,
                    "the send's total deadline (`timeouts.total`) passed while it waited for a \
                     session",
                )));
                continue;
            }
            batch.push(job);
        }
        batch
    }
}

/// Sends one message through `pool`, sharing its sessions with the other tasks sending at
/// the same time; within `deadline` (the whole batch's session works to the earliest deadline
/// of its messages).
///
/// Cancel safety: a dropped future withdraws the message if no session took it yet; one
/// already taken may be sent.
pub(super) async fn send(
    pool: &super::Pool,
    envelope: &Envelope,
    bytes: &[u8],
    deadline: Option<Instant>,
) -> Result<TransactionReport> {
    let shared = pool.sessions();
    let (reply, answer) = oneshot::channel();
    let withdrawn = Arc::new(AtomicBool::new(false));
    let _withdraw = Withdraw(withdrawn.clone());
    shared.lock().push_back(Job {
        envelope: envelope.clone(),
        bytes: Arc::from(bytes),
        deadline,
        withdrawn,
        reply,
    });
    let max = pool.settings().max_connections;
    if shared.drivers.fetch_add(1, Ordering::AcqRel) < max {
        tokio::spawn(drive(pool.clone()));
    } else {
        shared.drivers.fetch_sub(1, Ordering::AcqRel);
    }
    // Only a driver that took the message drops it unanswered (it panicked, or the runtime
    // is shutting down) — perhaps after the final `.`: the outcome is unknown.
    answer.await.unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::Closed,
            Stage::DataEnd,
            "the shared session sending this message ended without a result: the server may have it",
        ))
    })
}

/// Takes a session and sends batches from the queue until it is empty.
async fn drive(pool: super::Pool) {
    let shared = pool.sessions();
    loop {
        if !shared.lock().is_empty() {
            serve_queue(&pool).await;
        }
        shared.drivers.fetch_sub(1, Ordering::AcqRel);
        // A message queued after the queue looked empty, by a task that found every driver
        // busy, must not be left behind.
        if shared.lock().is_empty() {
            return;
        }
        if shared.drivers.fetch_add(1, Ordering::AcqRel) >= pool.settings().max_connections {
            shared.drivers.fetch_sub(1, Ordering::AcqRel);
            return;
        }
    }
}

async fn serve_queue(pool: &super::Pool) {
    let shared = pool.sessions();
    let mut session = match pool.get().await {
        Ok(s) => s,
        Err(e) => {
            // No session: the messages waiting now fail as their own send would have.
            let batch = shared.take_batch(BATCH);
            for job in batch {
                let _ = job.reply.send(Err(e.duplicate()));
            }
            return;
        }
    };
    loop {
        let left = session.messages_left();
        if left == 0 || !session.is_usable() {
            return;
        }
        let batch = shared.take_batch(left.min(BATCH));
        if batch.is_empty() {
            return;
        }
        let deadline = batch.iter().filter_map(|j| j.deadline).min();
        session.set_deadline(deadline);
        let messages: Vec<(&Envelope, &[u8])> =
            batch.iter().map(|j| (&j.envelope, &*j.bytes)).collect();
        let results = session.send_many(&messages).await;
        session.set_deadline(None);
        drop(messages);
        let mut results = results.into_iter();
        for job in batch {
            let result = results.next().unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Poisoned,
                    Stage::MailFrom,
                    "the session gave no result for this message",
                ))
            });
            let _ = job.reply.send(result);
        }
    }
}
