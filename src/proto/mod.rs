//! The sans-I/O protocol core: bytes in, typed values out, and typed values to bytes.
//!
//! Nothing here touches a socket or a clock, so every rule can be tested on byte slices and
//! fuzzed. The rules of the RFCs live in one place each:
//!
//! | rule | where |
//! |---|---|
//! | reply syntax, limits (RFC 5321 §4.2, §4.5.3.1) | [`ReplyParser`], [`limits`] |
//! | enhanced status codes (RFC 3463) | [`EnhancedCode`] |
//! | command syntax, no control characters (RFC 5321 §4.1) | [`Command`], [`Address`], [`ClientName`], [`Parameter`] |
//! | EHLO extensions | [`Capabilities`] |
//! | DSN, REQUIRETLS, MT-PRIORITY parameters, xtext (RFC 3461, 8689, 6710) | [`MailParams`], [`RcptParams`], [`xtext`] |
//! | SASL PLAIN, LOGIN, XOAUTH2 (RFC 4954, RFC 4616) | [`SaslExchange`] |
//! | DATA transparency and line ends (RFC 5321 §4.5.2, §2.3.8) | [`DotStuffer`], [`DotUnstuffer`] |
//! | BDAT commands and chunks, no dot-stuffing (RFC 3030 §2) | [`Command::Bdat`], [`bdat_body`], [`bdat_chunks`] |

mod address;
mod bdat;
mod capabilities;
mod command;
mod dot_stuffer;
mod dot_unstuffer;
mod envelope_params;
pub mod limits;
mod reply;
mod reply_parser;
mod sasl;
mod secret;

pub(crate) use address::reject_control;
pub use address::{Address, ClientName, InvalidInput, ReversePath};
pub use bdat::{bdat_body, bdat_chunks};
pub use capabilities::Capabilities;
pub use command::{Command, MechanismName, Parameter};
pub use dot_stuffer::DotStuffer;
pub use dot_unstuffer::DotUnstuffer;
pub use envelope_params::{xtext, MailParams, Notify, Offered, RcptParams, Ret};
pub use reply::{EnhancedCode, Reply, ReplyCode};
pub use reply_parser::{ReplyError, ReplyParser};
pub use sasl::{Mechanism, SaslExchange, SaslStep};
pub use secret::Secret;
