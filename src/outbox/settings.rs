//! The outbox's settings. The type lives with the configuration that reads it
//! ([`crate::provider`], a layer below the outbox) and is re-exported here.

pub use crate::provider::OutboxSettings;
