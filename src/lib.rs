//! # smtpkit
//!
//! An async SMTP client written from the wire up: a sans-I/O protocol core ([`proto`]) and a
//! tokio driver ([`client`]). Every command and reply is typed and visible; every limit is named.
#![warn(missing_docs)]

pub mod client;
pub mod delivery;
mod error;
pub mod message;
pub mod proto;
pub mod provider;
#[cfg(feature = "server")]
pub mod server;

pub use error::{Error, ErrorKind, Result, Stage};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
