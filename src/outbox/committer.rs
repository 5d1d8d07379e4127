//! Group commit for the worker's hot path: `mark_final_dot` and `record` calls from many tasks
//! share one transaction (and so one fsync).
//!
//! One task per [`Outbox`](super::Outbox) takes requests from a channel. It waits for the first,
//! then takes every request already waiting (up to [`MAX_BATCH`]) and commits them together;
//! requests that arrive during that commit make up the next batch. So a lone call costs one
//! commit and no added delay, and under load a commit carries as many calls as arrived while the
//! previous one was syncing. Each caller is answered only after its batch is committed. A batch
//! of records alone waits up to [`RECORD_LINGER`] for a mark to commit with.
//!
//! The task ends when the last [`Outbox`](super::Outbox) clone is dropped (the channel closes),
//! after answering what it already took.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::error::OutboxError;
use super::store::{HotDone, HotOp, Store};

/// The most operations in one transaction.
pub(crate) const MAX_BATCH: usize = 128;

/// How long a batch of records alone waits for a final-dot mark before it is committed.
///
/// Every hot commit syncs, and a mark is on its delivery's critical path (the `.` waits for
/// it) while a record is not (the worker's slot is free again once the reply is read). A
/// record committed alone would hold the database through a sync that a mark arriving just
/// then has to wait out before its own; riding along with the next mark it costs no sync of
/// its own, and it is still answered only once it is durable. When no mark comes (the last
/// records of a run, deferrals during an outage) the records go alone after this long.
const RECORD_LINGER: Duration = Duration::from_millis(2);

/// One request: the operation and where to answer.
pub(crate) struct Request {
    pub(crate) op: HotOp,
    pub(crate) reply: oneshot::Sender<Result<HotDone, OutboxError>>,
}

/// Starts the committer for `store`; send requests into the returned channel.
pub(crate) fn spawn(store: Arc<dyn Store>) -> mpsc::UnboundedSender<Request> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(store, rx));
    tx
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Let the tasks woken with this one (a burst) hand theirs in before committing.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // Records only: wait a moment for a final-dot mark to share its commit (see
        // RECORD_LINGER). A mark never waits.
        if !batch.iter().any(|r| matches!(r.op, HotOp::FinalDot { .. })) {
            let deadline = tokio::time::Instant::now() + RECORD_LINGER;
            while batch.len() < MAX_BATCH {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(request)) => {
                        let mark = matches!(request.op, HotOp::FinalDot { .. });
                        batch.push(request);
                        if mark {
                            while batch.len() < MAX_BATCH {
                                match rx.try_recv() {
                                    Ok(request) => batch.push(request),
                                    Err(_) => break,
                                }
                            }
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let (ops, replies): (Vec<HotOp>, Vec<_>) = batch.drain(..).map(|r| (r.op, r.reply)).unzip();
        // A caller that gave up does not read its answer: sends may fail.
        match store.commit_hot(ops, SystemTime::now()).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
