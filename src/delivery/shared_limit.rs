//! The part of a [`RateLimiter`](super::RateLimiter) whose counts live in a [`RateLedger`]:
//! permits are taken from the ledger in batches and handed out locally while their hold lasts,
//! so the database is asked once per batch, not once per message.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::rate_ledger::{LedgerWindow, PermitAnswer, PermitRequest, RateLedger, Settlement};

/// Longest sleep before asking the ledger again while a window is full: other holders may
/// settle unused units early.
const RECHECK: Duration = Duration::from_secs(1);

/// A batch granted by the ledger and not yet settled.
#[derive(Debug)]
struct Batch {
    grant: i64,
    left: u32,
    used: u32,
    usable_until: Instant,
}

/// The ledger, the provider's windows and the batch at hand.
#[derive(Debug)]
pub(super) struct SharedLimit {
    ledger: Arc<dyn RateLedger>,
    provider: String,
    windows: Vec<(LedgerWindow, &'static str)>,
    batch_size: u32,
    hold: Duration,
    batch: Mutex<Option<Batch>>,
}

impl SharedLimit {
    /// Limits `windows` (`(window, name)`, all with a limit) through `ledger` under `provider`.
    ///
    /// A batch is a tenth of the smallest limit (1 to 20 units) and is held a tenth of the
    /// shortest window (50 ms to 1 s): a batch held but not used counts against the limit
    /// until it is settled, so both stay small against the windows they share.
    pub(super) fn new(
        ledger: Arc<dyn RateLedger>,
        provider: String,
        windows: Vec<(LedgerWindow, &'static str)>,
    ) -> SharedLimit {
        let smallest = windows.iter().map(|(w, _)| w.limit).min().unwrap_or(1);
        let shortest = windows
            .iter()
            .map(|(w, _)| w.length)
            .min()
            .unwrap_or(Duration::from_secs(1));
        SharedLimit {
            ledger,
            provider,
            windows,
            batch_size: (smallest / 10).clamp(1, 20),
            hold: (shortest / 10).clamp(Duration::from_millis(50), Duration::from_secs(1)),
            batch: Mutex::new(None),
        }
    }

    /// Takes `units` from the batch at hand, or settles it and asks the ledger for the next,
    /// waiting while the windows are full. The caller holds the limiter's turn (one waiter at
    /// a time). Returns how long it waited and which window held it back last.
    ///
    /// Cancel safety: a future dropped while the ledger answers may leave a grant recorded
    /// there and unused: it counts against the limit until its hold ends, never more.
    pub(super) async fn acquire(self: &Arc<Self>, units: u32) -> (Duration, Option<&'static str>) {
        let started = Instant::now();
        let mut held_by = None;
        let waited = |held_by: Option<&'static str>| {
            (
                held_by.map_or(Duration::ZERO, |_| started.elapsed()),
                held_by,
            )
        };
        loop {
            let settle = {
                let mut batch = self.lock();
                match batch.as_mut() {
                    Some(b) if Instant::now() < b.usable_until && b.left >= units => {
                        b.left -= units;
                        b.used += units;
                        return waited(held_by);
                    }
                    _ => batch.take().map(|b| Settlement {
                        grant: b.grant,
                        used: b.used,
                    }),
                }
            };
            // The hold runs from before the ledger's clock read the grant's start.
            let asked_at = Instant::now();
            let request = PermitRequest {
                provider: self.provider.clone(),
                windows: self.windows.iter().map(|(w, _)| *w).collect(),
                min: units,
                want: units.max(self.batch_size),
                hold: self.hold,
                settle,
            };
            let pause = match self.ledger.take(request).await {
                Ok(PermitAnswer::Granted { grant, units: got }) => {
                    let usable_until = asked_at + self.hold;
                    *self.lock() = Some(Batch {
                        grant,
                        left: got.saturating_sub(units),
                        used: units,
                        usable_until,
                    });
                    if got > units {
                        self.settle_when_held_out(grant, usable_until);
                    }
                    return waited(held_by);
                }
                Ok(PermitAnswer::Wait { wait, window }) => {
                    let name = self.windows.get(window).map_or("day", |(_, name)| *name);
                    held_by = Some(name);
                    tracing::info!(
                        "rate limit of {} (shared): waiting {wait:?} for the per-{name} limit",
                        self.provider
                    );
                    wait.min(RECHECK)
                }
                Err(e) => {
                    held_by = Some(self.windows.first().map_or("day", |(_, name)| *name));
                    tracing::warn!(
                        "rate limit of {}: cannot reach the shared counts ({e}); trying again \
                         in {RECHECK:?}",
                        self.provider
                    );
                    RECHECK
                }
            };
            tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
        }
    }

    /// Gives the unused units of `grant` back once its hold is over, unless it was settled
    /// before (by the next request).
    fn settle_when_held_out(self: &Arc<Self>, grant: i64, usable_until: Instant) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(usable_until).await;
            let used = {
                let mut batch = this.lock();
                match batch.as_ref() {
                    Some(b) if b.grant == grant => batch.take().map(|b| b.used),
                    _ => None,
                }
            };
            if let Some(used) = used {
                let settlement = Settlement { grant, used };
                if let Err(e) = this.ledger.settle(this.provider.clone(), settlement).await {
                    // The grant stays counted until its hold ended: only fewer are sent.
                    tracing::debug!("rate limit of {}: settling failed: {e}", this.provider);
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Batch>> {
        self.batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
