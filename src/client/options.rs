//! What a client needs to know to open a session.

use super::timeouts::Timeouts;
use super::transcript::Transcript;
use crate::proto::ClientName;

/// Options for opening a session.
///
/// ```
/// use smtpkit::client::{ClientOptions, Transcript};
/// use smtpkit::proto::ClientName;
/// let (transcript, _lines) = Transcript::buffer();
/// let options = ClientOptions {
///     client_name: Some(ClientName::new("app.example.com")?),
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
    pub timeouts: super::Timeouts,
    /// Receives every line sent and received.
    pub transcript: Option<Transcript>,
}

impl ClientOptions {
    pub(crate) fn timeouts(&self) -> &Timeouts {
        &self.timeouts
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
