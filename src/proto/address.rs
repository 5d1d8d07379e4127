//! Mailbox addresses and EHLO names, validated so that nothing unsafe can reach a command line.

use std::fmt;

use super::limits::{MAX_DOMAIN_LEN, MAX_LOCAL_PART_LEN, MAX_PATH_LEN};

/// Why a string cannot be used in an SMTP command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// CR, LF, NUL or another control character (command injection, RFC 5321 §2.3.8).
    #[error("{what} {value:?} contains a control character (CR, LF, NUL or similar)")]
    ControlCharacter {
        /// What was being validated.
        what: &'static str,
        /// The offending value, escaped by `Debug`.
        value: String,
    },
    /// Anything else wrong with the value.
    #[error("{what} {value:?} is not valid: {reason}")]
    Invalid {
        /// What was being validated.
        what: &'static str,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The encoded command would exceed [`super::limits::MAX_COMMAND_LINE_LEN`].
    #[error("command line of {len} bytes exceeds the limit of {max} (RFC 5321 §4.5.3.1.4)")]
    CommandTooLong {
        /// Encoded length, CRLF included.
        len: usize,
        /// The limit.
        max: usize,
    },
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> InvalidInput {
    InvalidInput::Invalid {
        what,
        value: value.to_owned(),
        reason,
    }
}

/// Rejects control characters (C0, DEL, C1): they must never be written to the wire.
pub(crate) fn reject_control(what: &'static str, value: &str) -> Result<(), InvalidInput> {
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::ControlCharacter {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// A mailbox `local@domain` as used in `MAIL FROM:<…>` and `RCPT TO:<…>`.
///
/// Checked at construction: no control characters, no angle brackets, no unquoted spaces,
/// a non-empty local part and domain, and the RFC 5321 §4.5.3.1 length limits. Non-ASCII
/// characters are allowed and make [`Address::needs_smtputf8`] true (RFC 6531).
///
/// ```
/// use smtpkit::proto::Address;
/// assert!(Address::new("alice@example.com").is_ok());
/// assert!(Address::new("alice@example.com>\r\nRCPT TO:<evil@x").is_err());
/// assert!(Address::new("no-at-sign").is_err());
/// assert!(Address::new("jörg@bücher.example").unwrap().needs_smtputf8());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address(String);

impl Address {
    /// Validates `value` as a mailbox.
    pub fn new(value: impl Into<String>) -> Result<Address, InvalidInput> {
        let value = value.into();
        const WHAT: &str = "address";
        reject_control(WHAT, &value)?;
        let Some(at) = value.rfind('@') else {
            return Err(invalid(WHAT, &value, "it has no '@'"));
        };
        let (local, domain) = (&value[..at], &value[at + 1..]);
        if local.is_empty() {
            return Err(invalid(WHAT, &value, "the part before '@' is empty"));
        }
        if domain.is_empty() {
            return Err(invalid(WHAT, &value, "the domain after '@' is empty"));
        }
        if local.len() > MAX_LOCAL_PART_LEN {
            return Err(invalid(
                WHAT,
                &value,
                "the local part is longer than 64 bytes",
            ));
        }
        if domain.len() > MAX_DOMAIN_LEN {
            return Err(invalid(WHAT, &value, "the domain is longer than 255 bytes"));
        }
        if value.len() + 2 > MAX_PATH_LEN {
            return Err(invalid(WHAT, &value, "it is longer than 254 bytes"));
        }
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        if !quoted
            && local.contains([
                '"', ' ', '<', '>', '(', ')', ',', ';', ':', '\\', '[', ']', '@',
            ])
        {
            return Err(invalid(
                WHAT,
                &value,
                "the local part has characters that need quoting",
            ));
        }
        if domain.contains([' ', '<', '>', '"', '@', '(', ')', ',', ';', '\\']) {
            return Err(invalid(
                WHAT,
                &value,
                "the domain has characters a domain cannot have",
            ));
        }
        if value.contains(['<', '>']) {
            return Err(invalid(
                WHAT,
                &value,
                "angle brackets are added by smtpkit, leave them out",
            ));
        }
        Ok(Address(value))
    }

    /// The address as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after the last `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// True when the address has non-ASCII characters, which needs SMTPUTF8 (RFC 6531 §3.2).
    pub fn needs_smtputf8(&self) -> bool {
        !self.0.is_ascii()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Address {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Address, InvalidInput> {
        Address::new(s)
    }
}

/// The reverse-path of `MAIL FROM`: a mailbox, or the null path `<>` used by bounces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `MAIL FROM:<>` (RFC 5321 §4.5.5).
    Null,
    /// `MAIL FROM:<address>`.
    Mailbox(Address),
}

impl ReversePath {
    pub(crate) fn needs_smtputf8(&self) -> bool {
        matches!(self, ReversePath::Mailbox(a) if a.needs_smtputf8())
    }
}

impl From<Address> for ReversePath {
    fn from(address: Address) -> ReversePath {
        ReversePath::Mailbox(address)
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Mailbox(a) => write!(f, "<{a}>"),
        }
    }
}

/// The name a client gives in EHLO/HELO: a domain or an address literal such as `[127.0.0.1]`.
///
/// ```
/// use smtpkit::proto::ClientName;
/// assert!(ClientName::new("client.example.org").is_ok());
/// assert!(ClientName::new("[192.0.2.1]").is_ok());
/// assert!(ClientName::new("bad name\r\nMAIL FROM:<x@y>").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientName(String);

impl ClientName {
    /// Validates a domain or address literal (RFC 5321 §4.1.1.1).
    pub fn new(value: impl Into<String>) -> Result<ClientName, InvalidInput> {
        let value = value.into();
        const WHAT: &str = "EHLO name";
        reject_control(WHAT, &value)?;
        if value.is_empty() {
            return Err(invalid(WHAT, &value, "it is empty"));
        }
        if value.len() > MAX_DOMAIN_LEN {
            return Err(invalid(WHAT, &value, "it is longer than 255 bytes"));
        }
        if value.starts_with('[') {
            let inner = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
            let literal_ok = inner.is_some_and(|inner| {
                !inner.is_empty()
                    && inner
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
            });
            if !literal_ok {
                return Err(invalid(
                    WHAT,
                    &value,
                    "an address literal looks like [192.0.2.1] or [IPv6:2001:db8::1]",
                ));
            }
        } else if !value
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(invalid(
                WHAT,
                &value,
                "a domain has only letters, digits, '.', '-' and '_'",
            ));
        }
        Ok(ClientName(value))
    }

    /// An address literal for an IP address: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
    pub fn from_ip(ip: std::net::IpAddr) -> ClientName {
        match ip {
            std::net::IpAddr::V4(v4) => ClientName(format!("[{v4}]")),
            std::net::IpAddr::V6(v6) => ClientName(format!("[IPv6:{v6}]")),
        }
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_control_characters_are_refused() {
        for bad in [
            "a@b\r",
            "a\n@b",
            "a@b\0",
            "a@b\x1b",
            "a\t@b",
            "a@b\u{7f}",
            "a@b\u{85}",
        ] {
            assert!(
                matches!(
                    Address::new(bad),
                    Err(InvalidInput::ControlCharacter { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn address_shapes() {
        for good in [
            "a@b",
            "first.last+tag@sub.example.com",
            "\"john doe\"@example.com",
            "user@[192.0.2.1]",
        ] {
            assert!(Address::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "@b", "a@", "ab", "a b@c", "<a@b>", "a@b>", "a@b c", "a,b@c",
        ] {
            assert!(Address::new(bad).is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "x".repeat(65));
        assert!(Address::new(long_local).is_err());
        let long_total = format!("x@{}.com", "d".repeat(250));
        assert!(Address::new(long_total).is_err());
    }

    #[test]
    fn client_names() {
        assert!(ClientName::new("mail.example.com").is_ok());
        assert!(ClientName::new("[IPv6:2001:db8::1]").is_ok());
        for bad in ["", "a b", "x\r\ny", "[unclosed", "[]", "semi;colon"] {
            assert!(ClientName::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ClientName::from_ip("127.0.0.1".parse().unwrap()).as_str(),
            "[127.0.0.1]"
        );
    }
}
