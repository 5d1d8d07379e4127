//! Deadlines for each stage of a session.

use std::time::Duration;

/// How long each stage may take. Defaults follow RFC 5321 §4.5.3.2.
///
/// Each deadline covers a whole reply, not a single read: a server that trickles one byte
/// at a time still times out.
///
/// ```
/// use std::time::Duration;
/// use smtpkit::client::Timeouts;
/// let t = Timeouts { command: Duration::from_secs(30), ..Timeouts::default() };
/// assert_eq!(t.data_end, Duration::from_secs(600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection (and the TLS handshake). Not set by the RFC; 30 s.
    pub connect: Duration,
    /// The `220` greeting: 5 minutes (§4.5.3.2.1).
    pub greeting: Duration,
    /// Replies to EHLO, MAIL, RCPT, RSET, NOOP, QUIT, AUTH…: 5 minutes (§4.5.3.2.2, §4.5.3.2.3).
    pub command: Duration,
    /// The `354` reply to DATA: 2 minutes (§4.5.3.2.4).
    pub data_start: Duration,
    /// Each write of the message body making progress: 3 minutes (§4.5.3.2.5).
    pub data_block: Duration,
    /// The reply to the final `.`: 10 minutes (§4.5.3.2.6).
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            greeting: Duration::from_secs(5 * 60),
            command: Duration::from_secs(5 * 60),
            data_start: Duration::from_secs(2 * 60),
            data_block: Duration::from_secs(3 * 60),
            data_end: Duration::from_secs(10 * 60),
        }
    }
}
