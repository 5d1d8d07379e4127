//! Delivery on top of the client: reports (and, to come, pool, retry and rate limits).

mod report;

pub use report::{DeliveryReport, RecipientStatus, ReplySummary};
