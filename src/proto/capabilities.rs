//! What a server offers, read from its EHLO reply (RFC 5321 §4.1.1.1 and the extension RFCs).

use std::collections::BTreeMap;

use super::reply::Reply;

/// The extensions a server announced in its EHLO reply.
///
/// Keywords are case-insensitive; unknown ones are kept with their parameters.
///
/// ```
/// use smtpkit::proto::{Capabilities, ReplyParser};
/// let mut parser = ReplyParser::new();
/// parser.feed(b"250-mx.test\r\n250-SIZE 1000000\r\n250-AUTH PLAIN LOGIN\r\n250 PIPELINING\r\n");
/// let caps = Capabilities::from_ehlo(&parser.next_reply().unwrap().unwrap());
/// assert!(caps.pipelining());
/// assert_eq!(caps.size_limit(), Some(1_000_000));
/// assert!(caps.supports_auth("login"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    server_name: String,
    extensions: BTreeMap<String, Vec<String>>,
    auth: Vec<String>,
}

impl Capabilities {
    /// Reads the lines after the first (which names the server) as `KEYWORD params…`.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        let mut lines = reply.lines().iter();
        caps.server_name = lines
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        for line in lines {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            let params: Vec<String> = words.map(str::to_owned).collect();
            // Old servers announce `AUTH=LOGIN PLAIN` as well as or instead of `AUTH LOGIN PLAIN`.
            let (keyword, params) = match keyword.strip_prefix("AUTH=") {
                Some(first) => {
                    let mut all = vec![first.to_owned()];
                    all.extend(params);
                    ("AUTH".to_owned(), all)
                }
                None => (keyword, params),
            };
            if keyword == "AUTH" {
                for mechanism in &params {
                    let mechanism = mechanism.to_ascii_uppercase();
                    if !mechanism.is_empty() && !caps.auth.contains(&mechanism) {
                        caps.auth.push(mechanism);
                    }
                }
            }
            caps.extensions.entry(keyword).or_default().extend(params);
        }
        caps
    }

    /// Capabilities of a server that only answered HELO: no extensions at all.
    pub fn helo_only(reply: &Reply) -> Capabilities {
        Capabilities {
            server_name: reply
                .lines()
                .first()
                .and_then(|l| l.split_whitespace().next())
                .unwrap_or_default()
                .to_owned(),
            ..Capabilities::default()
        }
    }

    /// The name the server gave on the first line of its reply.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// True when `keyword` was announced (case-insensitive).
    pub fn has(&self, keyword: &str) -> bool {
        self.extensions.contains_key(&keyword.to_ascii_uppercase())
    }

    /// The parameters announced with `keyword`, if it was announced.
    pub fn params(&self, keyword: &str) -> Option<&[String]> {
        self.extensions
            .get(&keyword.to_ascii_uppercase())
            .map(Vec::as_slice)
    }

    /// Every announced keyword with its parameters, sorted by keyword.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.extensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// PIPELINING (RFC 2920).
    pub fn pipelining(&self) -> bool {
        self.has("PIPELINING")
    }

    /// STARTTLS (RFC 3207).
    pub fn starttls(&self) -> bool {
        self.has("STARTTLS")
    }

    /// 8BITMIME (RFC 6152).
    pub fn eight_bit_mime(&self) -> bool {
        self.has("8BITMIME")
    }

    /// SMTPUTF8 (RFC 6531).
    pub fn smtputf8(&self) -> bool {
        self.has("SMTPUTF8")
    }

    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub fn enhanced_status_codes(&self) -> bool {
        self.has("ENHANCEDSTATUSCODES")
    }

    /// CHUNKING, the BDAT command (RFC 3030).
    pub fn chunking(&self) -> bool {
        self.has("CHUNKING")
    }

    /// BINARYMIME (RFC 3030 §3), `BODY=BINARYMIME` with BDAT. smtpkit never sends binary
    /// bodies (its messages are 7-bit or 8BITMIME text), so this is for information only.
    pub fn binarymime(&self) -> bool {
        self.has("BINARYMIME")
    }

    /// DSN (RFC 3461).
    pub fn dsn(&self) -> bool {
        self.has("DSN")
    }

    /// True when SIZE was announced at all (RFC 1870), with or without a limit.
    pub fn size(&self) -> bool {
        self.has("SIZE")
    }

    /// The SIZE limit in bytes; `None` when SIZE is absent, has no number, or is 0 (no limit).
    pub fn size_limit(&self) -> Option<u64> {
        self.params("SIZE")?
            .first()?
            .parse::<u64>()
            .ok()
            .filter(|&n| n > 0)
    }

    /// SASL mechanisms announced with AUTH (either form), upper case, in the server's order.
    pub fn auth_mechanisms(&self) -> &[String] {
        &self.auth
    }

    /// True when `mechanism` was announced (case-insensitive).
    pub fn supports_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mechanism))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ReplyParser;

    fn caps(wire: &[u8]) -> Capabilities {
        let mut parser = ReplyParser::new();
        parser.feed(wire);
        Capabilities::from_ehlo(&parser.next_reply().expect("parses").expect("complete"))
    }

    #[test]
    fn gmail_style_ehlo() {
        let c = caps(
            b"250-smtp.gmail.com at your service, [203.0.113.9]\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n\
              250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n",
        );
        assert_eq!(c.server_name(), "smtp.gmail.com");
        assert_eq!(c.size_limit(), Some(35_882_577));
        assert!(c.eight_bit_mime() && c.starttls() && c.enhanced_status_codes());
        assert!(c.pipelining() && c.chunking() && c.smtputf8());
        assert!(!c.dsn());
        assert!(c.auth_mechanisms().is_empty());
    }

    #[test]
    fn old_auth_equals_form_and_lowercase_keywords() {
        let c = caps(b"250-mail.test\r\n250-auth=LOGIN PLAIN\r\n250-AUTH login xoauth2\r\n250-dsn\r\n250 X-FOO bar baz\r\n");
        assert_eq!(c.auth_mechanisms(), ["LOGIN", "PLAIN", "XOAUTH2"]);
        assert!(c.supports_auth("xoauth2"));
        assert!(c.dsn());
        assert_eq!(
            c.params("x-foo"),
            Some(&["bar".to_owned(), "baz".to_owned()][..])
        );
    }

    #[test]
    fn size_without_limit_or_zero_means_no_limit() {
        assert_eq!(caps(b"250-m\r\n250 SIZE\r\n").size_limit(), None);
        assert!(caps(b"250-m\r\n250 SIZE\r\n").size());
        assert_eq!(caps(b"250-m\r\n250 SIZE 0\r\n").size_limit(), None);
        assert_eq!(caps(b"250-m\r\n250 SIZE lots\r\n").size_limit(), None);
        assert!(!caps(b"250 m\r\n").size());
    }
}
