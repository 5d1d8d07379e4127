//! The rule a store applies to a [`PermitRequest`] (see `delivery::rate_ledger` for why it
//! keeps window maxima): a grant counts in a window of length `L` at `now` while its
//! `until > now - L`. Both backends load the live grants of the provider and ask [`decide`].

use std::time::{Duration, SystemTime};

use super::Outbox;
use crate::delivery::{
    LedgerFuture, LedgerWindow, PermitAnswer, PermitRequest, RateLedger, Settlement,
};

/// The outbox's database as the ledger of its workers' rate limits
/// ([`RateLimiter::shared`](crate::delivery::RateLimiter::shared)).
impl RateLedger for Outbox {
    fn take(&self, request: PermitRequest) -> LedgerFuture<'_, PermitAnswer> {
        Box::pin(async move {
            let answer = self
                .store()
                .take_permits(request, SystemTime::now())
                .await?;
            Ok(answer)
        })
    }

    fn settle(&self, provider: String, settlement: Settlement) -> LedgerFuture<'_, ()> {
        Box::pin(async move {
            self.store()
                .settle_permits(provider, settlement, SystemTime::now())
                .await?;
            Ok(())
        })
    }
}

/// A stored unit count (never negative, by the schema's check).
pub(crate) fn units_of(stored: i64) -> u32 {
    u32::try_from(stored.max(0)).unwrap_or(u32::MAX)
}

/// Units counted now in each window, given the live grants: `(until, units)` rows ending after
/// `now - L` for the longest window.
fn used_per_window(windows: &[LedgerWindow], grants: &[(i64, u32)], now_ms: i64) -> Vec<u64> {
    windows
        .iter()
        .map(|w| {
            let since = now_ms.saturating_sub(millis(w.length));
            grants
                .iter()
                .filter(|(until, _)| *until > since)
                .map(|(_, units)| u64::from(*units))
                .sum()
        })
        .collect()
}

/// The answer to `request` when `grants` (`(until, units)`, any order) are the live grants of
/// its provider at `now_ms`: the units to grant, or how long until `min` fit.
pub(crate) fn decide(
    request: &PermitRequest,
    grants: &[(i64, u32)],
    now_ms: i64,
) -> Result<u32, (Duration, usize)> {
    let used = used_per_window(&request.windows, grants, now_ms);
    let free = request
        .windows
        .iter()
        .zip(&used)
        .map(|(w, used)| u64::from(w.limit).saturating_sub(*used))
        .min()
        .unwrap_or(u64::from(request.want));
    if free >= u64::from(request.min) {
        return Ok(u32::try_from(free.min(u64::from(request.want))).unwrap_or(request.want));
    }
    // The window that needs longest: its oldest grants must end first.
    let mut sorted: Vec<(i64, u32)> = grants.to_vec();
    sorted.sort_unstable();
    let mut worst = (Duration::ZERO, 0);
    for (index, (w, used)) in request.windows.iter().zip(&used).enumerate() {
        let mut excess = (used + u64::from(request.min)).saturating_sub(u64::from(w.limit));
        if excess == 0 {
            continue;
        }
        let since = now_ms.saturating_sub(millis(w.length));
        let mut wait = w.length;
        for (until, units) in sorted.iter().filter(|(until, _)| *until > since) {
            excess = excess.saturating_sub(u64::from(*units));
            if excess == 0 {
                // Counted while `until > now - L`: free from `until + L` on.
                let free_at = until.saturating_add(millis(w.length)).saturating_add(1);
                wait = Duration::from_millis(u64::try_from(free_at - now_ms).unwrap_or(0));
                break;
            }
        }
        if wait > worst.0 {
            worst = (wait, index);
        }
    }
    Err(worst)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(min: u32, want: u32, windows: &[(u64, u32)]) -> PermitRequest {
        PermitRequest {
            provider: "p".into(),
            windows: windows
                .iter()
                .map(|&(ms, limit)| LedgerWindow {
                    length: Duration::from_millis(ms),
                    limit,
                })
                .collect(),
            min,
            want,
            hold: Duration::from_millis(100),
            settle: None,
        }
    }

    #[test]
    fn grants_what_fits_up_to_the_batch() {
        let r = request(1, 5, &[(1000, 50)]);
        assert_eq!(decide(&r, &[], 10_000), Ok(5));
        // 47 counted in the last second: 3 fit.
        assert_eq!(decide(&r, &[(9_500, 40), (9_990, 7)], 10_000), Ok(3));
        // A grant that ended a whole window ago no longer counts.
        assert_eq!(decide(&r, &[(9_000, 50)], 10_000), Ok(5));
        assert_eq!(
            decide(&r, &[(9_001, 50)], 10_000),
            Err((Duration::from_millis(2), 0))
        );
    }

    #[test]
    fn waits_until_the_oldest_grants_leave_the_window_that_needs_longest() {
        // per_second 10, per_minute 12: 12 used in the minute, the oldest 4 ended at 1_000.
        let r = request(2, 2, &[(1000, 10), (60_000, 12)]);
        let grants = [(1_000, 4), (30_000, 4), (59_950, 4)];
        // The second allows 6 more; the minute needs 2 to leave: the first grant, at 61_001.
        assert_eq!(
            decide(&r, &grants, 60_000),
            Err((Duration::from_millis(1_001), 1))
        );
    }

    #[test]
    fn the_minimum_is_all_or_nothing() {
        let r = request(4, 10, &[(1000, 10)]);
        assert_eq!(
            decide(&r, &[(999, 7)], 1_000),
            Err((Duration::from_millis(1_000), 0))
        );
        assert_eq!(decide(&r, &[(999, 6)], 1_000), Ok(4));
    }
}
