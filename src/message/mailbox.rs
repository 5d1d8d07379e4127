//! A mailbox as people write it: `noreply@example.com` or `Ops Team <ops@example.com>`.

use std::fmt;

use crate::proto::{Address, InvalidInput};

/// An address with an optional display name.
///
/// ```
/// use smtpkit::message::Mailbox;
/// let m: Mailbox = "Ops Team <ops@example.com>".parse()?;
/// assert_eq!(m.name(), Some("Ops Team"));
/// assert_eq!(m.address().as_str(), "ops@example.com");
/// let bare: Mailbox = "noreply@example.com".parse()?;
/// assert_eq!(bare.name(), None);
/// # Ok::<(), smtpkit::proto::InvalidInput>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    name: Option<String>,
    address: Address,
}

impl Mailbox {
    /// A mailbox from its parts.
    pub fn new(name: Option<String>, address: Address) -> Mailbox {
        let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        Mailbox { name, address }
    }

    /// The display name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The address.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

impl std::str::FromStr for Mailbox {
    type Err = InvalidInput;

    fn from_str(text: &str) -> Result<Mailbox, InvalidInput> {
        let text = text.trim();
        if let Some(open) = text.rfind('<') {
            let Some(inner) = text[open + 1..].strip_suffix('>') else {
                return Err(InvalidInput::Invalid {
                    what: "mailbox",
                    value: text.to_owned(),
                    reason: "a '<' must be closed by '>' at the end",
                });
            };
            let name = text[..open].trim().trim_matches('"').to_owned();
            crate::proto::reject_control("display name", &name)?;
            return Ok(Mailbox::new(Some(name), Address::new(inner.trim())?));
        }
        Ok(Mailbox::new(None, Address::new(text)?))
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} <{}>", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

impl From<Address> for Mailbox {
    fn from(address: Address) -> Mailbox {
        Mailbox {
            name: None,
            address,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let quoted: Mailbox = "\"Doe, John\" <john@example.com>".parse().expect("valid");
        assert_eq!(quoted.name(), Some("Doe, John"));
        let bracketed: Mailbox = "<a@b.test>".parse().expect("valid");
        assert_eq!(bracketed.name(), None);
        assert!("Name <a@b.test".parse::<Mailbox>().is_err());
        assert!("Name\r\nBcc: x <a@b.test>".parse::<Mailbox>().is_err());
        assert!("not an address".parse::<Mailbox>().is_err());
    }
}
