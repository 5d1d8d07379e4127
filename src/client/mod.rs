//! The async driver: a [`Connection`] runs the protocol of [`crate::proto`] over tokio.
//!
//! ```no_run
//! use smtpkit::client::{ClientOptions, Connection, Envelope};
//! use smtpkit::proto::Address;
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut conn = Connection::connect("127.0.0.1", 2525, ClientOptions::default()).await?;
//! println!("server offers: {:?}", conn.capabilities());
//! let envelope = Envelope::new(Address::new("me@example.com")?, vec![Address::new("you@example.com")?])?;
//! conn.send_mail(&envelope, b"Subject: one\r\n\r\nfirst\r\n").await?;
//! conn.send_mail(&envelope, b"Subject: two\r\n\r\nsecond\r\n").await?;
//! conn.quit().await?;
//! # Ok(()) }
//! ```

mod auth;
mod chunking;
mod connection;
mod connector;
mod envelope;
mod final_dot_gate;
mod happy_eyeballs;
mod options;
mod proxy;
mod sender;
mod stream;
mod tcp;
mod timeouts;
mod tls;
mod tls_probe;
mod transaction;
mod transcript;
mod wire;

pub use auth::{Credentials, SecretFuture, SecretSource};
pub use connection::{Connection, Greeted};
pub use connector::{ConnectFuture, Connector, SharedConnector};
pub use envelope::Envelope;
pub(crate) use final_dot_gate::current_gate;
pub use final_dot_gate::{with_final_dot_gate, FinalDotGate, GateFuture};
pub use happy_eyeballs::{AttemptOutcome, ConnectAttempt, RecentFailures, DEFAULT_ATTEMPT_DELAY};
pub use options::{Chunking, ClientOptions};
pub(crate) use proxy::UNREACHABLE_PREFIX as PROXY_UNREACHABLE;
pub use proxy::{Proxy, ProxyKind, ProxyUrlError};
pub use sender::{Sender, Sent};
pub use stream::Stream;
pub use tcp::bare_host;
pub use timeouts::Timeouts;
pub(crate) use tls::check_ca_file;
#[cfg(feature = "certificate-summary")]
pub use tls::CertificateSummary;
pub use tls::{Security, TlsConnector, TlsInfo, TlsSettings};
pub use transaction::{RecipientResult, TransactionReport};
pub(crate) use transcript::record_note;
pub use transcript::{Direction, Transcript, TranscriptBuffer};
