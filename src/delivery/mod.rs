//! Delivery you can trust on top of the client: a connection [`Pool`], a [`RetryPolicy`],
//! a [`RateLimiter`], fallback [`Route`]s, and reports that account for every recipient.

mod pool;
mod rate_limit;
mod report;
mod retry;
mod route;
mod verdict;

pub use pool::{Pool, PoolSettings, PooledConnection};
pub use rate_limit::{OverLimit, RateCount, RateLimiter, RateLimits};
pub use report::{Attempt, DeliveryError, DeliveryReport, RecipientStatus, ReplySummary};
pub use retry::RetryPolicy;
pub use route::{deliver, Route};
