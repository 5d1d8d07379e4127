//! A [`Sender`] that writes each message to a directory as an `.eml` file, with its envelope
//! in `X-Envelope-From`/`X-Envelope-To` headers above it: for development and tests, where
//! a person or a test wants to open what would have been sent.

use std::path::{Path, PathBuf};

use crate::client::{Envelope, Sender, Sent};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::message::MessageStore;

/// Writes messages into a directory, each whole or not at all (a hidden file, then a rename).
/// The queue id in [`Sent`] is the file's name without `.eml`.
///
/// ```
/// use smtpkit::client::{Envelope, Sender};
/// use smtpkit::delivery::FileSender;
/// use smtpkit::proto::Address;
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join("smtpkit-doc-file-sender");
/// let mut files = FileSender::new(&dir)?;
/// let envelope = Envelope::new(Address::new("a@example.com")?, vec![Address::new("b@example.org")?])?;
/// let sent = files.send(&envelope, b"Subject: hi\r\n\r\nhello\r\n").await?;
/// let path = files.path_of(sent.queue_id.as_deref().unwrap_or_default());
/// assert!(std::fs::read_to_string(path)?.contains("X-Envelope-To: <b@example.org>"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FileSender {
    store: std::sync::Arc<MessageStore>,
}

impl FileSender {
    /// Writes into `dir`, created if missing.
    pub fn new(dir: impl AsRef<Path>) -> std::io::Result<FileSender> {
        Ok(FileSender {
            store: std::sync::Arc::new(MessageStore::new(dir.as_ref())?),
        })
    }

    /// Where the message with queue id `id` was written.
    pub fn path_of(&self, id: &str) -> PathBuf {
        self.store.dir().join(format!("{id}.eml"))
    }
}

impl Sender for FileSender {
    /// Cancel safety: the file is written on a blocking thread; if the future is dropped it
    /// may still appear, whole.
    async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<Sent> {
        let to: Vec<String> = envelope.to().iter().map(|a| format!("<{a}>")).collect();
        let trace = format!(
            "X-Envelope-From: {}\r\nX-Envelope-To: {}\r\n",
            envelope.from(),
            to.join(", ")
        );
        let store = self.store.clone();
        let id = store.next_id();
        let message = message.to_vec();
        let written = {
            let id = id.clone();
            tokio::task::spawn_blocking(move || store.write(&id, &trace, &message)).await
        };
        match written {
            Ok(Ok(_)) => Ok(Sent::all(envelope, Some(id))),
            Ok(Err(e)) => Err(Error::io(Stage::DataEnd, e)),
            Err(e) => Err(Error::new(
                ErrorKind::Io,
                Stage::DataEnd,
                format!("writing the message failed: {e}"),
            )),
        }
    }
}
