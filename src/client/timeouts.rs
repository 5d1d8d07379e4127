//! Deadlines for each stage of a session.

use std::time::Duration;

/// How long each stage may take.
///
/// The defaults suit a submission client talking to a mail provider (Gmail, Microsoft 365,
/// SendGrid, SES, a company relay), which answers in well under a second: connect 15 s,
/// greeting 30 s, commands 30 s, 354 30 s, each body write 60 s, final reply 2 minutes. The
/// final reply gets the longest wait because a timeout there leaves the outcome unknown.
/// RFC 5321 §4.5.3.2's values (5 and 10 minutes) are for a relay talking to other relays,
/// where they make a stuck notification wait up to an hour over its retries; they are
/// [`Timeouts::rfc5321`].
///
/// Each deadline covers a whole reply, not a single read: a server that trickles one byte
/// at a time still times out.
///
/// ```
/// use std::time::Duration;
/// use smtpkit::client::Timeouts;
/// let t = Timeouts { command: Duration::from_secs(10), ..Timeouts::default() };
/// assert_eq!(t.data_end, Duration::from_secs(120));
/// assert_eq!(Timeouts::rfc5321().data_end, Duration::from_secs(600));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection (and the TLS handshake). Default 15 s.
    pub connect: Duration,
    /// The `220` greeting. Default 30 s (RFC 5321 §4.5.3.2.1: 5 minutes).
    pub greeting: Duration,
    /// Replies to EHLO, MAIL, RCPT, RSET, NOOP, QUIT, AUTH…. Default 30 s (§4.5.3.2.2,
    /// §4.5.3.2.3: 5 minutes).
    pub command: Duration,
    /// The `354` reply to DATA. Default 30 s (§4.5.3.2.4: 2 minutes).
    pub data_start: Duration,
    /// Each write of the message body making progress. Default 60 s (§4.5.3.2.5: 3 minutes).
    pub data_block: Duration,
    /// The reply to the final `.`. Default 2 minutes (§4.5.3.2.6: 10 minutes).
    pub data_end: Duration,
}

impl Timeouts {
    /// RFC 5321 §4.5.3.2's values, for relaying between mail servers: greeting and commands
    /// 5 minutes, 354 2 minutes, body writes 3 minutes, final reply 10 minutes; connect 30 s.
    pub fn rfc5321() -> Timeouts {
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

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(15),
            greeting: Duration::from_secs(30),
            command: Duration::from_secs(30),
            data_start: Duration::from_secs(30),
            data_block: Duration::from_secs(60),
            data_end: Duration::from_secs(120),
        }
    }
}
