//! Messages: notifications turned into MIME with mail-builder, and their envelope.

mod mailbox;
mod notification;

pub use mailbox::Mailbox;
pub use notification::{Attachment, BuiltMessage, Notification};
