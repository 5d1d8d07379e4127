//! A [`Sender`] that keeps what it is given instead of sending it: for testing code that
//! sends mail, without a server (lettre's `StubTransport` plays the same part).

use std::sync::{Arc, Mutex};

use crate::client::{Envelope, Sender, Sent};
use crate::error::{Error, Result, Stage};
use crate::proto::{Reply, ReplyCode};

/// A message a [`StubSender`] took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its envelope.
    pub envelope: Envelope,
    /// Its bytes, as given.
    pub message: Vec<u8>,
}

/// Records every message (clones share the record), accepting each — or refusing each with
/// one reply, to test the failure paths.
///
/// ```
/// use smtpkit::client::{Envelope, Sender};
/// use smtpkit::delivery::StubSender;
/// use smtpkit::proto::Address;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> smtpkit::Result<()> {
/// let envelope = Envelope::new(Address::new("a@example.com")?, vec![Address::new("b@example.org")?])?;
/// let mut full = StubSender::refusing(452, "4.2.2 mailbox full");
/// let err = full.send(&envelope, b"Subject: hi\r\n\r\nhi\r\n").await.unwrap_err();
/// assert!(err.is_transient());
/// assert_eq!(full.messages().len(), 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct StubSender {
    taken: Arc<Mutex<Vec<Recorded>>>,
    refusal: Option<Reply>,
}

impl StubSender {
    /// A stub that accepts every message.
    pub fn new() -> StubSender {
        StubSender::default()
    }

    /// A stub that refuses every message with `code text` (e.g. `550`, `"5.1.1 no such user"`)
    /// as a server would at the end of data. A code outside 400..=599 is taken as 554.
    pub fn refusing(code: u16, text: &str) -> StubSender {
        let code = ReplyCode::new(code)
            .filter(|c| (4..=5).contains(&c.class()))
            .or_else(|| ReplyCode::new(554));
        StubSender {
            taken: Arc::default(),
            refusal: code.map(|c| Reply::new(c, vec![text.to_owned()])),
        }
    }

    /// The messages taken so far, in order.
    pub fn messages(&self) -> Vec<Recorded> {
        self.taken.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Sender for StubSender {
    async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Sent> {
        if let Some(reply) = &self.refusal {
            return Err(Error::rejected(Stage::DataEnd, reply.clone()));
        }
        if let Ok(mut taken) = self.taken.lock() {
            taken.push(Recorded {
                envelope: envelope.clone(),
                message: message.to_vec(),
            });
        }
        Ok(Sent::all(envelope, None))
    }
}
