//! Rate limits shared by several processes: the interface to a store of grants (the outbox's
//! database implements it) and the rule that keeps window maxima when permits are taken in
//! batches.
//!
//! A batch of `n` units granted at `t` may be used until `t + hold`. The store records it
//! with an end `until = t + hold`; when the holder is done it settles the grant, which lowers
//! the units to those used and `until` to the time it settled (never below the last use). A
//! grant counts in the window of length `L` checked at `now` while `until > now - L`. That
//! keeps every window a maximum: for any window, the grant taken last among those with a use
//! in it was checked at a time `t* < start + L`, and every earlier grant with a use in the
//! window had `until ≥ start > t* - L` then, so all of them were counted against the limit.
//! A holder that dies leaves its grant at `t + hold`, counted whole: never more, only less.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// An error of a [`RateLedger`] (its database unreachable, say).
pub type LedgerError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed, sendable future of a ledger operation.
pub type LedgerFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, LedgerError>> + Send + 'a>>;

/// One limited window of a [`PermitRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerWindow {
    /// Its length (a second, a minute, an hour, a day).
    pub length: Duration,
    /// At most this many units in any window of that length.
    pub limit: u32,
}

/// A grant given back: how many of its units were used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// The grant, as the ledger named it.
    pub grant: i64,
    /// Units used (at most those granted).
    pub used: u32,
}

/// What a [`RateLimiter`](super::RateLimiter) asks of a [`RateLedger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermitRequest {
    /// The provider whose limits these are: the ledger keeps one account per provider.
    pub provider: String,
    /// Every limited window.
    pub windows: Vec<LedgerWindow>,
    /// Grant nothing unless at least this many units fit (the message at hand).
    pub min: u32,
    /// Grant up to this many (the batch), as far as they fit.
    pub want: u32,
    /// How long the units may be used after the grant.
    pub hold: Duration,
    /// The holder's previous grant, settled in the same transaction.
    pub settle: Option<Settlement>,
}

/// A [`RateLedger`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitAnswer {
    /// `units` (between `min` and `want`) granted, usable for `hold` from when the request was
    /// sent.
    Granted {
        /// The grant's name, for [`RateLedger::settle`].
        grant: i64,
        /// Units granted.
        units: u32,
    },
    /// Nothing granted: at least `min` units fit again only after `wait` (unless other holders
    /// settle early).
    Wait {
        /// How long until they fit.
        wait: Duration,
        /// The index in `windows` of the window that is full longest.
        window: usize,
    },
}

/// A store of rate-limit grants shared by every process sending through the same providers
/// (implemented by the outbox's `Outbox`, in its database). Each operation is one
/// transaction, serialised per provider by the store.
pub trait RateLedger: Send + Sync + fmt::Debug {
    /// Settles `request.settle`, then grants what fits of `request.want` (at least
    /// `request.min`) at the store's clock, or says how long to wait.
    fn take(&self, request: PermitRequest) -> LedgerFuture<'_, PermitAnswer>;

    /// Gives back the unused units of a grant, and ends it now.
    fn settle(&self, provider: String, settlement: Settlement) -> LedgerFuture<'_, ()>;
}
