//! Group commit for the worker's hot path: `mark_final_dot` and `record` calls from many tasks
//! share one transaction (and so one fsync).
//!
//! One task per [`Outbox`](super::Outbox) takes requests from a channel. It waits for the first,
//! then takes every request already waiting (up to [`MAX_BATCH`]) and commits them together;
//! requests that arrive during that commit make up the next batch. So a lone call costs one
//! commit and no added delay, and under load a commit carries as many calls as arrived while the
//! previous one was syncing. Each caller is answered only after its batch is committed.
//!
//! The task ends when the last [`Outbox`](super::Outbox) clone is dropped (the channel closes),
//! after answering what it already took.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::error::OutboxError;
use super::store::{HotDone, HotOp, Store};

/// The most operations in one transaction.
pub(crate) const MAX_BATCH: usize = 128;

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
