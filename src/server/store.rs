//! What the server reports of each message it stored (in a [`crate::message::MessageStore`]).

use std::path::PathBuf;

/// A message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The queue id given in the `250` reply.
    pub id: String,
    /// The `.eml` file.
    pub path: PathBuf,
    /// MAIL FROM, without brackets (empty for `<>`).
    pub mail_from: String,
    /// RCPT TO addresses.
    pub rcpt_to: Vec<String>,
    /// Size of the message as received (after dot-unstuffing), trace headers not counted.
    pub size: usize,
    /// The AUTH identity, when the client authenticated.
    pub authenticated_as: Option<String>,
    /// True when the session was encrypted.
    pub tls: bool,
}
