//! Typed commands and their encoding. Nothing with a control character or an over-long line
//! can be encoded, so nothing of the kind is ever written.

use std::fmt::Write as _;

use super::address::{reject_control, Address, ClientName, InvalidInput, ReversePath};
use super::limits::{MAX_AUTH_LINE_LEN, MAX_COMMAND_LINE_LEN};
use super::secret::Secret;

/// An ESMTP parameter of MAIL or RCPT, `KEYWORD` or `KEYWORD=value` (RFC 5321 §4.1.2).
///
/// ```
/// use smtpkit::proto::Parameter;
/// assert_eq!(Parameter::size(1234).to_string(), "SIZE=1234");
/// assert!(Parameter::new("RET", Some("HDRS")).is_ok());
/// assert!(Parameter::new("X", Some("a b")).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    keyword: String,
    value: Option<String>,
}

impl Parameter {
    /// Validates keyword (`ALPHA / DIGIT` then also `-`) and value (printable ASCII but `=`
    /// and space; RFC 5321 §4.1.2 esmtp-value).
    pub fn new(keyword: &str, value: Option<&str>) -> Result<Parameter, InvalidInput> {
        const WHAT: &str = "ESMTP parameter";
        let keyword_ok = keyword
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
            && keyword
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !keyword_ok {
            reject_control(WHAT, keyword)?;
            return Err(InvalidInput::Invalid {
                what: WHAT,
                value: keyword.to_owned(),
                reason: "a keyword has only letters, digits and '-'",
            });
        }
        if let Some(value) = value {
            reject_control(WHAT, value)?;
            if value.is_empty() || !value.bytes().all(|b| (33..=126).contains(&b) && b != b'=') {
                return Err(InvalidInput::Invalid {
                    what: WHAT,
                    value: value.to_owned(),
                    reason: "a value is printable ASCII without spaces or '='",
                });
            }
        }
        Ok(Parameter {
            keyword: keyword.to_ascii_uppercase(),
            value: value.map(str::to_owned),
        })
    }

    /// `SIZE=n` (RFC 1870).
    pub fn size(bytes: usize) -> Parameter {
        Parameter {
            keyword: "SIZE".into(),
            value: Some(bytes.to_string()),
        }
    }

    /// `BODY=8BITMIME` (RFC 6152).
    pub fn body_8bitmime() -> Parameter {
        Parameter {
            keyword: "BODY".into(),
            value: Some("8BITMIME".into()),
        }
    }

    /// `SMTPUTF8` (RFC 6531).
    pub fn smtputf8() -> Parameter {
        Parameter {
            keyword: "SMTPUTF8".into(),
            value: None,
        }
    }

    /// The keyword, upper case.
    pub fn keyword(&self) -> &str {
        &self.keyword
    }

    /// The value, if any.
    pub fn value(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

impl std::fmt::Display for Parameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.keyword),
            None => f.write_str(&self.keyword),
        }
    }
}

/// A SASL mechanism name such as `PLAIN` (RFC 4422 §3.1: upper-case letters, digits, `-`, `_`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MechanismName(String);

impl MechanismName {
    /// Validates and upper-cases a mechanism name.
    pub fn new(name: &str) -> Result<MechanismName, InvalidInput> {
        let ok = !name.is_empty()
            && name.len() <= 20
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            reject_control("SASL mechanism", name)?;
            return Err(InvalidInput::Invalid {
                what: "SASL mechanism",
                value: name.to_owned(),
                reason: "1 to 20 letters, digits, '-' or '_'",
            });
        }
        Ok(MechanismName(name.to_ascii_uppercase()))
    }

    /// The name, upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name known to be valid (the mechanisms smtpkit implements).
    pub(crate) fn from_static(name: &'static str) -> MechanismName {
        debug_assert!(MechanismName::new(name).is_ok());
        MechanismName(name.to_owned())
    }
}

/// A command the client can send. Every value inside is validated, and [`Command::encode`]
/// checks the line length, so an encoded command is always one safe line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `EHLO name` (RFC 5321 §4.1.1.1).
    Ehlo(ClientName),
    /// `HELO name`, for servers that answer EHLO with 500 or 502.
    Helo(ClientName),
    /// `MAIL FROM:<path> params` (RFC 5321 §4.1.1.2).
    MailFrom {
        /// The reverse-path.
        from: ReversePath,
        /// ESMTP parameters (SIZE, BODY, SMTPUTF8…).
        params: Vec<Parameter>,
    },
    /// `RCPT TO:<address> params` (RFC 5321 §4.1.1.3).
    RcptTo {
        /// The forward-path.
        to: Address,
        /// ESMTP parameters (DSN's NOTIFY…).
        params: Vec<Parameter>,
    },
    /// `DATA` (RFC 5321 §4.1.1.4).
    Data,
    /// `RSET` (RFC 5321 §4.1.1.5).
    Rset,
    /// `NOOP` (RFC 5321 §4.1.1.9).
    Noop,
    /// `QUIT` (RFC 5321 §4.1.1.10).
    Quit,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4); the response is already base64.
    Auth {
        /// The mechanism.
        mechanism: MechanismName,
        /// The base64 initial response (`=` for an empty one), never shown in transcripts.
        initial_response: Option<Secret>,
    },
    /// A base64 line answering a `334` challenge, or `*` to cancel (RFC 4954 §4).
    AuthResponse(Secret),
    /// `VRFY string` (RFC 5321 §4.1.1.6).
    Vrfy(String),
    /// `BDAT size [LAST]` (CHUNKING, RFC 3030 §2): announces the next `size` octets of the
    /// message, which follow the command line as they are (no dot-stuffing); `last` ends the
    /// message. A chunk of 0 octets is only valid as the last one (`BDAT 0 LAST`).
    ///
    /// Only the transaction calls of [`crate::client::Connection`] send it, together with its
    /// octets: [`crate::client::Connection::command`] refuses it.
    Bdat {
        /// How many octets follow the command line.
        size: u64,
        /// Whether this chunk ends the message (`LAST`).
        last: bool,
    },
}

impl Command {
    /// Appends the command line, CRLF included, to `out`; on error `out` is left unchanged.
    ///
    /// ```
    /// use smtpkit::proto::{Address, Command};
    /// let mut out = Vec::new();
    /// let rcpt = Command::RcptTo { to: Address::new("bob@example.org").unwrap(), params: vec![] };
    /// rcpt.encode(&mut out).unwrap();
    /// assert_eq!(out, b"RCPT TO:<bob@example.org>\r\n");
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), InvalidInput> {
        let start = out.len();
        let mut line = String::with_capacity(64);
        self.write_line(&mut line, false);
        let max = match self {
            Command::Auth { .. } | Command::AuthResponse(_) => MAX_AUTH_LINE_LEN,
            _ => MAX_COMMAND_LINE_LEN,
        };
        if let Command::Vrfy(s) = self {
            reject_control("VRFY argument", s)?;
        }
        // RFC 3030 §2: only the last chunk may be empty (`BDAT 0 LAST` ends a message).
        if let Command::Bdat {
            size: 0,
            last: false,
        } = self
        {
            return Err(InvalidInput::Invalid {
                what: "BDAT chunk",
                value: "BDAT 0".into(),
                reason: "an empty chunk is only valid as the last one (BDAT 0 LAST)",
            });
        }
        if let Command::AuthResponse(s)
        | Command::Auth {
            initial_response: Some(s),
            ..
        } = self
        {
            if !s.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(InvalidInput::Invalid {
                    what: "SASL response",
                    value: "<redacted>".into(),
                    reason: "it must be base64, '=' or '*'",
                });
            }
        }
        let len = line.len() + 2;
        if len > max {
            return Err(InvalidInput::CommandTooLong { len, max });
        }
        out.truncate(start);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The command line without CRLF, with AUTH payloads replaced by `<redacted>`: what a
    /// transcript shows.
    pub fn redacted(&self) -> String {
        let mut line = String::new();
        self.write_line(&mut line, true);
        line
    }

    /// The verb, for error messages: `MAIL`, `RCPT`, `AUTH`…
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::MailFrom { .. } => "MAIL",
            Command::RcptTo { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } | Command::AuthResponse(_) => "AUTH",
            Command::Vrfy(_) => "VRFY",
            Command::Bdat { .. } => "BDAT",
        }
    }

    fn write_line(&self, line: &mut String, redact: bool) {
        let secret = |s: &Secret| {
            if redact {
                "<redacted>".to_owned()
            } else {
                s.expose().to_owned()
            }
        };
        // Writing to a String cannot fail.
        let _ = match self {
            Command::Ehlo(name) => write!(line, "EHLO {name}"),
            Command::Helo(name) => write!(line, "HELO {name}"),
            Command::MailFrom { from, params } => {
                let _ = write!(line, "MAIL FROM:{from}");
                write_params(line, params)
            }
            Command::RcptTo { to, params } => {
                let _ = write!(line, "RCPT TO:<{to}>");
                write_params(line, params)
            }
            Command::Data => write!(line, "DATA"),
            Command::Rset => write!(line, "RSET"),
            Command::Noop => write!(line, "NOOP"),
            Command::Quit => write!(line, "QUIT"),
            Command::StartTls => write!(line, "STARTTLS"),
            Command::Auth {
                mechanism,
                initial_response,
            } => {
                let _ = write!(line, "AUTH {}", mechanism.as_str());
                match initial_response {
                    Some(r) => write!(line, " {}", secret(r)),
                    None => Ok(()),
                }
            }
            Command::AuthResponse(r) => write!(line, "{}", secret(r)),
            Command::Vrfy(s) => write!(line, "VRFY {s}"),
            Command::Bdat { size, last: true } => write!(line, "BDAT {size} LAST"),
            Command::Bdat { size, last: false } => write!(line, "BDAT {size}"),
        };
    }
}

fn write_params(line: &mut String, params: &[Parameter]) -> std::fmt::Result {
    for p in params {
        write!(line, " {p}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(c: &Command) -> Result<String, InvalidInput> {
        let mut out = Vec::new();
        c.encode(&mut out)?;
        Ok(String::from_utf8(out).expect("ascii"))
    }

    fn addr(s: &str) -> Address {
        Address::new(s).expect("valid")
    }

    #[test]
    fn encodes_each_command() {
        let name = ClientName::new("client.test").expect("valid");
        let cases = [
            (Command::Ehlo(name.clone()), "EHLO client.test\r\n"),
            (Command::Helo(name), "HELO client.test\r\n"),
            (
                Command::MailFrom {
                    from: addr("a@b.test").into(),
                    params: vec![
                        Parameter::size(42),
                        Parameter::body_8bitmime(),
                        Parameter::smtputf8(),
                    ],
                },
                "MAIL FROM:<a@b.test> SIZE=42 BODY=8BITMIME SMTPUTF8\r\n",
            ),
            (
                Command::MailFrom {
                    from: ReversePath::Null,
                    params: vec![],
                },
                "MAIL FROM:<>\r\n",
            ),
            (
                Command::RcptTo {
                    to: addr("c@d.test"),
                    params: vec![],
                },
                "RCPT TO:<c@d.test>\r\n",
            ),
            (Command::Data, "DATA\r\n"),
            (Command::Rset, "RSET\r\n"),
            (Command::Noop, "NOOP\r\n"),
            (Command::Quit, "QUIT\r\n"),
            (Command::StartTls, "STARTTLS\r\n"),
            (
                Command::Auth {
                    mechanism: MechanismName::new("plain").expect("valid"),
                    initial_response: Some(Secret::new("AGFsaWNlAHB3")),
                },
                "AUTH PLAIN AGFsaWNlAHB3\r\n",
            ),
            (Command::AuthResponse(Secret::new("*")), "*\r\n"),
            (
                Command::Bdat {
                    size: 14400,
                    last: false,
                },
                "BDAT 14400\r\n",
            ),
            (
                Command::Bdat {
                    size: 7,
                    last: true,
                },
                "BDAT 7 LAST\r\n",
            ),
            (
                Command::Bdat {
                    size: 0,
                    last: true,
                },
                "BDAT 0 LAST\r\n",
            ),
        ];
        for (command, wire) in cases {
            assert_eq!(encode(&command).expect("encodes"), wire);
        }
    }

    #[test]
    fn an_empty_sasl_response_is_a_bare_crlf() {
        // XOAUTH2 answers an error challenge with an empty line (RFC 4954 §4 allows an empty
        // response); it must be exactly CRLF, not a space, `=` or anything else.
        let mut out = b"previous".to_vec();
        Command::AuthResponse(Secret::new(""))
            .encode(&mut out)
            .expect("an empty response encodes");
        assert_eq!(out, b"previous\r\n");
        assert_eq!(
            Command::AuthResponse(Secret::new("")).redacted(),
            "<redacted>"
        );
    }

    #[test]
    fn auth_payloads_are_redacted_in_transcripts() {
        let auth = Command::Auth {
            mechanism: MechanismName::new("PLAIN").expect("valid"),
            initial_response: Some(Secret::new("c2VjcmV0")),
        };
        assert_eq!(auth.redacted(), "AUTH PLAIN <redacted>");
        assert!(!format!("{auth:?}").contains("c2VjcmV0"));
        assert_eq!(
            Command::AuthResponse(Secret::new("c2VjcmV0")).redacted(),
            "<redacted>"
        );
    }

    #[test]
    fn over_long_lines_are_refused_before_writing() {
        let params: Vec<Parameter> = (0..60)
            .map(|i| Parameter::new(&format!("X-P{i}"), Some("vvvvvv")).expect("valid"))
            .collect();
        let mut out = b"previous".to_vec();
        let err = Command::MailFrom {
            from: addr("a@b.test").into(),
            params,
        }
        .encode(&mut out)
        .expect_err("too long");
        assert!(matches!(err, InvalidInput::CommandTooLong { max: 512, .. }));
        assert_eq!(out, b"previous", "nothing appended on error");
    }

    #[test]
    fn parameters_and_vrfy_refuse_injection() {
        assert!(Parameter::new("SIZE", Some("1\r\nRCPT TO:<x@y>")).is_err());
        assert!(Parameter::new("BAD KEY", None).is_err());
        assert!(Parameter::new("-X", None).is_err());
        assert!(encode(&Command::Vrfy("x\r\nDATA".into())).is_err());
        assert!(encode(&Command::AuthResponse(Secret::new("abc\r\nMAIL"))).is_err());
        assert!(MechanismName::new("PLAIN\r\n").is_err());
    }

    #[test]
    fn an_empty_bdat_chunk_must_be_the_last() {
        let mut out = b"previous".to_vec();
        let err = Command::Bdat {
            size: 0,
            last: false,
        }
        .encode(&mut out)
        .expect_err("BDAT 0 without LAST");
        assert!(err.to_string().contains("BDAT 0 LAST"), "{err}");
        assert_eq!(out, b"previous");
        assert_eq!(
            Command::Bdat {
                size: 3,
                last: true
            }
            .verb(),
            "BDAT"
        );
    }
}
