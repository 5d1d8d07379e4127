//! One interface for everything that sends a message by its envelope — a session, a pool, a
//! mailer, and the stand-ins that let a program test its mail code without a server.

use std::future::Future;

use super::envelope::Envelope;
use super::transaction::TransactionReport;
use crate::error::Result;
use crate::proto::Address;

/// What a [`Sender`] did with a message it took.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sent {
    /// The recipients the message went to.
    pub accepted: Vec<Address>,
    /// The recipients refused while the others got it.
    pub refused: Vec<Address>,
    /// The server's queue id for it, when it named one.
    pub queue_id: Option<String>,
}

impl Sent {
    /// A message taken for every recipient of `envelope`, with an optional queue id.
    pub fn all(envelope: &Envelope, queue_id: Option<String>) -> Sent {
        Sent {
            accepted: envelope.to().to_vec(),
            refused: Vec::new(),
            queue_id,
        }
    }
}

impl From<&TransactionReport> for Sent {
    fn from(report: &TransactionReport) -> Sent {
        let (accepted, refused) = report
            .recipients()
            .iter()
            .partition::<Vec<_>, _>(|r| r.accepted());
        Sent {
            accepted: accepted.into_iter().map(|r| r.address.clone()).collect(),
            refused: refused.into_iter().map(|r| r.address.clone()).collect(),
            queue_id: report.queue_id(),
        }
    }
}

/// Sends a message (RFC 5322 bytes) to the recipients of an envelope.
///
/// Implemented by [`super::Connection`] (one session), [`crate::delivery::Pool`] (a session
/// from the pool), [`crate::provider::Mailer`] (retries, rate limits, fallback), and for tests
/// by [`crate::delivery::StubSender`] (records, or refuses) and
/// [`crate::delivery::FileSender`] (writes `.eml` files). Write your mail code against
/// `impl Sender` and hand it a stub in tests:
///
/// ```
/// use smtpkit::client::{Envelope, Sender};
/// use smtpkit::delivery::StubSender;
/// use smtpkit::proto::Address;
///
/// async fn welcome(sender: &mut impl Sender, to: Address) -> smtpkit::Result<()> {
///     let envelope = Envelope::new(Address::new("noreply@example.com")?, vec![to])?;
///     sender.send(&envelope, b"Subject: Welcome\r\n\r\nHello!\r\n").await?;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> smtpkit::Result<()> {
/// let mut stub = StubSender::new();
/// welcome(&mut stub, Address::new("new.user@example.org")?).await?;
/// assert_eq!(stub.messages().len(), 1);
/// assert_eq!(stub.messages()[0].envelope.to()[0].as_str(), "new.user@example.org");
/// # Ok(()) }
/// ```
pub trait Sender {
    /// Sends `message` to `envelope`'s recipients.
    ///
    /// Cancel safety: as the implementation's own send says; for smtpkit's, a dropped future
    /// may leave the message sent or not, and never confuses a later send.
    fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> impl Future<Output = Result<Sent>> + Send;
}
