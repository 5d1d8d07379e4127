//! Messages: notifications turned into MIME with mail-builder, and their envelope.

mod mailbox;
mod notification;
mod store;

pub use mailbox::Mailbox;
pub use notification::{Attachment, BuiltMessage, Notification};
pub use store::MessageStore;
