//! Delivery you can trust on top of the client: a connection [`Pool`], a [`RetryPolicy`],
//! a [`RateLimiter`], fallback [`Route`]s, and reports that account for every recipient.

mod file_sender;
mod pool;
mod rate_ledger;
mod rate_limit;
mod report;
mod retry;
mod route;
mod shared_limit;
mod shared_sessions;
mod stub_sender;
mod verdict;

pub use file_sender::FileSender;
pub use pool::{Pool, PoolSettings, PooledConnection};
pub use rate_ledger::{
    LedgerError, LedgerFuture, LedgerWindow, PermitAnswer, PermitRequest, RateLedger, Settlement,
};
pub use rate_limit::{OverLimit, RateCount, RateLimiter, RateLimits};
pub use report::{Attempt, DeliveryError, DeliveryReport, RecipientStatus, ReplySummary};
pub use retry::RetryPolicy;
pub use route::{deliver, deliver_message, Route};
pub use stub_sender::{Recorded, StubSender};
