//! The envelope: who the message is from and to, as the server sees it (not the headers).

use crate::proto::{Address, InvalidInput, ReversePath};

/// The SMTP envelope: the reverse-path for MAIL FROM and the recipients for RCPT TO.
///
/// Bcc recipients belong here and never in the message headers.
///
/// ```
/// use smtpkit::client::Envelope;
/// use smtpkit::proto::Address;
/// let envelope = Envelope::new(
///     Address::new("noreply@example.com")?,
///     vec![Address::new("approver@example.com")?, Address::new("approver@example.com")?],
/// )?;
/// assert_eq!(envelope.to().len(), 1); // duplicates removed
/// # Ok::<(), smtpkit::proto::InvalidInput>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    from: ReversePath,
    to: Vec<Address>,
}

impl Envelope {
    /// An envelope with at least one recipient; repeated recipients are sent once.
    pub fn new(from: impl Into<ReversePath>, to: Vec<Address>) -> Result<Envelope, InvalidInput> {
        let mut unique: Vec<Address> = Vec::with_capacity(to.len());
        for address in to {
            if !unique
                .iter()
                .any(|a| a.as_str().eq_ignore_ascii_case(address.as_str()))
            {
                unique.push(address);
            }
        }
        if unique.is_empty() {
            return Err(InvalidInput::Invalid {
                what: "envelope",
                value: String::new(),
                reason: "it has no recipients",
            });
        }
        Ok(Envelope {
            from: from.into(),
            to: unique,
        })
    }

    /// The reverse-path.
    pub fn from(&self) -> &ReversePath {
        &self.from
    }

    /// The recipients, without duplicates, in the order given.
    pub fn to(&self) -> &[Address] {
        &self.to
    }

    /// True when an address needs SMTPUTF8.
    pub fn needs_smtputf8(&self) -> bool {
        self.from.needs_smtputf8() || self.to.iter().any(Address::needs_smtputf8)
    }
}
