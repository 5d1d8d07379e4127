//! What a client needs to know to open a session.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::auth::Credentials;
use super::connector::SharedConnector;
use super::happy_eyeballs::RecentFailures;
use super::timeouts::Timeouts;
use super::tls::{Security, TlsConnector};
use super::transcript::Transcript;
use crate::proto::{ClientName, Mechanism};

/// Options for opening a session.
///
/// The defaults are the safe ones: TLS required (implicit on port 465, STARTTLS elsewhere),
/// system CA roots, no AUTH over plain text.
///
/// ```
/// use smtpkit::client::{ClientOptions, Credentials, Transcript};
/// use smtpkit::proto::{ClientName, Secret};
/// let (transcript, _lines) = Transcript::buffer();
/// let options = ClientOptions {
///     client_name: Some(ClientName::new("app.example.com")?),
///     credentials: Some(Credentials::new("apikey", Secret::new("SG.xxxx"))?),
///     transcript: Some(transcript),
///     ..ClientOptions::default()
/// };
/// # Ok::<(), smtpkit::proto::InvalidInput>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The name sent in EHLO/HELO. Default: this machine's host name when it is a
    /// fully-qualified domain name, else the local address as a literal (`[127.0.0.1]`).
    pub client_name: Option<ClientName>,
    /// Deadlines per stage.
    pub timeouts: Timeouts,
    /// Receives every line sent and received.
    pub transcript: Option<Transcript>,
    /// How the session is protected. Default [`Security::Auto`].
    pub security: Security,
    /// The TLS configuration; `None` means the system's CA roots with full checks.
    pub tls: Option<TlsConnector>,
    /// The name checked against the server's certificate and sent as SNI; default the host
    /// connected to (`localhost` for [`super::Connection::from_stream`]).
    pub tls_server_name: Option<String>,
    /// Credentials for AUTH; `None` means no AUTH.
    pub credentials: Option<Credentials>,
    /// The AUTH mechanism; `None` picks the best that both sides support.
    pub auth_mechanism: Option<Mechanism>,
    /// Allow AUTH over an unencrypted session. Only honoured with [`Security::None`].
    pub allow_insecure_auth: bool,
    /// Send each command in lock-step even when the server offers PIPELINING (for
    /// measurements and for servers that announce it but get it wrong).
    pub disable_pipelining: bool,
    /// Whether and how BDAT (CHUNKING, RFC 3030) is used instead of DATA; see [`Chunking`].
    pub chunking: Chunking,
    /// How the byte stream to the server is opened; `None` is plain TCP with TCP_NODELAY,
    /// to every address of the host in turn (Happy Eyeballs, RFC 8305).
    pub connector: Option<SharedConnector>,
    /// The wait before the next address is tried while the previous attempt has neither
    /// connected nor failed (RFC 8305's Connection Attempt Delay). `None`: 250 ms.
    pub attempt_delay: Option<Duration>,
    /// The local address connections are made from (bound before connecting): for a machine
    /// with several addresses whose SPF records or firewall rules name one. Only the server's
    /// addresses of the same family are tried.
    pub source_address: Option<IpAddr>,
    /// The server's addresses, tried in this order (families interleaved) instead of
    /// resolving the host; the host still names the server for TLS. Empty: resolve.
    pub addresses: Vec<SocketAddr>,
    /// Addresses that failed lately, tried after the others for five minutes; shared by the
    /// clones of these options (a provider's pool).
    pub recent_failures: RecentFailures,
    /// A SOCKS5 or HTTP CONNECT proxy to reach the server through; `None` connects directly.
    /// TLS runs end to end through the tunnel, checked against the server's name as on a
    /// direct connection. Not used when `connector` is set (a connector opens the stream
    /// its own way).
    pub proxy: Option<super::proxy::Proxy>,
}

/// How messages are sent with BDAT (CHUNKING, RFC 3030) instead of DATA.
///
/// When the server offers both CHUNKING and PIPELINING (and pipelining is not disabled),
/// each message goes as MAIL, RCPT… and `BDAT <size> LAST` with its octets in one write,
/// with no wait for a `354`, and [`Connection::send_many`](super::Connection::send_many)
/// keeps several messages in flight, bounded by `max_messages_in_flight` and
/// `max_bytes_in_flight`. Otherwise messages go with DATA.
///
/// ```
/// use smtpkit::client::{Chunking, ClientOptions};
/// let force_data = ClientOptions {
///     chunking: Chunking { enabled: false, ..Chunking::default() },
///     ..ClientOptions::default()
/// };
/// # let _ = force_data;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Use BDAT when the server offers CHUNKING and PIPELINING. Default `true`; `false`
    /// always sends DATA.
    pub enabled: bool,
    /// At most this many messages written and not yet answered in full, per session.
    /// Default 32; 0 counts as 1.
    pub max_messages_in_flight: usize,
    /// At most this many message octets written and not yet answered in full, per session;
    /// a larger message still goes, alone. Default 4 MiB.
    pub max_bytes_in_flight: usize,
    /// The largest BDAT chunk: a longer message goes in several (the last with `LAST`).
    /// Default 1 MiB; 0 counts as 1. Raised for a message that would need more than 256
    /// chunks (their replies are read only after the message is written).
    pub max_chunk_size: usize,
}

impl Default for Chunking {
    fn default() -> Chunking {
        Chunking {
            enabled: true,
            max_messages_in_flight: 32,
            max_bytes_in_flight: 4 * 1024 * 1024,
            max_chunk_size: 1024 * 1024,
        }
    }
}

impl ClientOptions {
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The configured connector, or the system one; an error is labelled with `stage`.
    pub(crate) fn tls_connector(&self, stage: crate::Stage) -> crate::Result<TlsConnector> {
        match &self.tls {
            Some(connector) => Ok(connector.clone()),
            None => TlsConnector::system_at(stage),
        }
    }
}

/// This machine's host name, when it is a fully-qualified domain name (has a dot).
pub(crate) fn host_client_name() -> Option<ClientName> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = name.trim();
    if !name.contains('.') {
        return None;
    }
    ClientName::new(name).ok()
}
