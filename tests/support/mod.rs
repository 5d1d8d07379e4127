//! Test support shared by the integration tests: a scripted mock server and real servers.
#![allow(dead_code)]

pub mod certs;
pub mod fault_server;
pub mod mock;
pub mod oauth_world;
#[cfg(feature = "outbox")]
pub mod outbox_harness;
pub mod postfix_smtpd;
#[cfg(feature = "outbox-postgres")]
pub mod postgres;
pub mod proxies;
pub mod real_servers;
pub mod truth_server;
