//! An async SMTP client written from the wire up, and the `email.smtp` notification provider
//! built on it.
//!
//! smtpkit is layered so that you can use as much or as little of it as you need:
//!
//! | layer | what it gives you |
//! |---|---|
//! | [`proto`] | the sans-I/O protocol core: typed [`Command`](proto::Command)s, an incremental [`ReplyParser`](proto::ReplyParser), EHLO [`Capabilities`](proto::Capabilities), DATA dot-stuffing, SASL, every limit named in [`proto::limits`]. No sockets, no clock. |
//! | [`client`] | a tokio [`Connection`](client::Connection) over TCP, STARTTLS or implicit TLS (rustls): AUTH, pipelined transactions, per-stage deadlines, a redacted [`Transcript`](client::Transcript). [`Greeted::open`](client::Greeted::open) and [`Connection::command`](client::Connection::command) give command-by-command control. |
//! | [`message`] | a [`Notification`](message::Notification) (subject, recipients, text and HTML, attachments) built into MIME. |
//! | [`delivery`] | a connection [`Pool`](delivery::Pool), [`RetryPolicy`](delivery::RetryPolicy), [`RateLimiter`](delivery::RateLimiter), fallback [`Route`](delivery::Route)s and a [`DeliveryReport`](delivery::DeliveryReport) per message. |
//! | [`oauth`] | OAuth 2.0 for XOAUTH2: the `oauth2:` settings with Microsoft's and Google's presets, and (feature `oauth2`) a `TokenSource` that fetches, refreshes and shares access tokens. |
//! | [`provider`] | the `email.smtp` provider: the YAML [`Config`](provider::Config), workflows, and the [`Mailer`](provider::Mailer) that ties it all together. |
//! | [`outbox`] | (feature `outbox`) the durable outbox: messages stored in SQLite before they are sent, leased to workers, retried on a schedule, each ending in a recorded state. |
//!
//! Every failure is one [`Error`]: its [`ErrorKind`], the [`Stage`] of the session it happened
//! in, the server's reply when there was one, and [`Error::is_transient`],
//! [`Error::is_permanent`], [`Error::is_outcome_unknown`] (the connection was lost after the
//! final `.`: the server may have the message) and a troubleshooting [`Error::hint`].
//!
//! # Sending with the provider
//!
//! ```no_run
//! use smtpkit::message::Notification;
//! use smtpkit::provider::{Config, Mailer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_file("smtpkit.yaml")?;
//! let mailer = Mailer::new(&config, None)?; // the only enabled provider
//! let report = mailer
//!     .send(&Notification::new("Access Request Approval Required")
//!         .to("approver@example.com".parse()?)
//!         .text("A new access request requires your approval."))
//!     .await?;
//! println!("{} queued as {:?}", report.message_id, report.queue_id);
//! # Ok(()) }
//! ```
//!
//! # Driving the protocol yourself
//!
//! ```no_run
//! use smtpkit::client::{ClientOptions, Greeted};
//! use smtpkit::proto::{Address, Command, ReversePath};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let greeted = Greeted::open("127.0.0.1", 2525, ClientOptions::default()).await?;
//! println!("{}", greeted.greeting());
//! let conn = greeted.ehlo().await?;
//! let mut conn = conn.starttls().await?; // handshake, then EHLO again
//! let from = ReversePath::Mailbox(Address::new("noreply@example.com")?);
//! let reply = conn.command(&Command::MailFrom { from, params: vec![] }).await?;
//! println!("{} {:?} {}", reply.code(), reply.enhanced_code(), reply.message());
//! conn.quit().await?;
//! # Ok(()) }
//! ```
//!
//! The crate's `examples/` directory has these as whole programs (`provider`, `client`,
//! `protocol`), each tested against the capture server.
//!
//! # Cancellation
//!
//! Every future smtpkit returns can be dropped at any point without confusing a later send: a
//! session whose exchange was cut off is never used again (its calls fail with
//! [`ErrorKind::Poisoned`], a pool closes it). Each `async fn` says what dropping it means
//! under "Cancel safety".
//!
//! # Cargo features
//!
//! With `default-features = false` smtpkit is the protocol core, the client, messages,
//! delivery and the provider: tokio (`net`, `io-util`, `time`, `sync`, `rt`, `macros`),
//! rustls with the *ring* provider and the system's CA roots, the YAML loader and
//! mail-builder.
//!
//! | feature | default | adds |
//! |---|---|---|
//! | `cli` | yes | the `smtpkit` binary (`send`, `check`, `notify`, `serve`, `demo`, `bench`, `auth`); turns on all the features below, and clap, indicatif, tracing-subscriber, serde_json, tempfile |
//! | `server` | yes | `smtpkit::server`, the local capture server (rcgen for its self-signed certificates) |
//! | `serde` | with `cli` | `serde::Serialize` for the reports in [`delivery`] |
//! | `oauth2` | with `cli` | `oauth::TokenSource`: OAuth 2.0 access tokens for XOAUTH2 (refresh-token and client-credentials grants, token cache), over HTTPS with reqwest on the same rustls |
//! | `outbox` | with `cli` | `outbox::Outbox`: the durable outbox on an SQLite file, with sqlx (its bundled SQLite) |
//! | `certificate-summary` | with `cli` | `TlsInfo::certificate_summary` (subject, issuer, names, validity), with x509-parser |
//! | `socks` | with `cli` | SOCKS5 proxies (`socks5://`, `socks5h://`) for [`ClientOptions::proxy`](client::ClientOptions::proxy), with tokio-socks; HTTP CONNECT proxies need no feature |
//!
//! A library that only sends mail wants
//! `smtpkit = { version = "0.1", default-features = false }`, adding `serde` or the others as
//! needed.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.89 (the `rust-version` in `Cargo.toml`), set by the newest declared by a dependency
//! (encodify, through mail-builder).
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod delivery;
mod error;
pub mod message;
pub mod oauth;
pub mod outbox;
pub mod proto;
pub mod provider;
#[cfg(feature = "server")]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub mod server;

pub use error::{Error, ErrorKind, Result, Stage};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
