//! A notification (who, subject, text and/or HTML, attachments) and its MIME form.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::headers::address::Address as MimeAddress;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;

use super::mailbox::Mailbox;
use crate::client::Envelope;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::Address;

/// A file attached to a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name shown to the recipient.
    pub filename: String,
    /// The MIME type, e.g. `application/pdf` or `text/plain; charset=utf-8`; checked against
    /// RFC 2045 when the message is built.
    pub content_type: String,
    /// The content.
    pub data: Vec<u8>,
}

impl Attachment {
    /// Reads a file; the content type is guessed from its extension.
    pub fn from_file(path: impl AsRef<Path>) -> std::io::Result<Attachment> {
        let path = path.as_ref();
        let data = std::fs::read(path)?;
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        Ok(Attachment {
            content_type: guess_content_type(&filename).to_owned(),
            filename,
            data,
        })
    }
}

fn guess_content_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        _ => "application/octet-stream",
    }
}

/// RFC 2045 §5.1 `tspecials`, which end a token.
const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

/// A byte of an RFC 2045 `token`: US-ASCII, no space, no control character, no tspecial.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !TSPECIALS.contains(&b)
}

/// The length of the token at the start of `s`.
fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_token_byte(b)).count()
}

/// The length of the RFC 822 `quoted-string` at the start of `s` (which starts with `"`),
/// refusing control characters, CR and LF included; `None` when it is not one.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *s.get(i + 1)?;
                if !(escaped == b' ' || escaped == b'\t' || escaped.is_ascii_graphic()) {
                    return None;
                }
                i += 2;
            }
            b if b == b' ' || b == b'\t' || b.is_ascii_graphic() => i += 1,
            _ => return None,
        }
    }
}

/// Checks `type "/" subtype *(";" attribute "=" value)` (RFC 2045 §5.1), with a value a token
/// or a quoted string and spaces allowed only around `;`. What is wrong, otherwise.
fn check_content_type(value: &str) -> std::result::Result<(), &'static str> {
    let s = value.as_bytes();
    let skip_space = |mut i: usize| {
        while matches!(s.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    let mut i = skip_space(0);
    let kind = token_len(&s[i..]);
    i += kind;
    if kind == 0 || s.get(i) != Some(&b'/') {
        return Err("expected type/subtype made of RFC 2045 tokens");
    }
    i += 1;
    let subtype = token_len(&s[i..]);
    if subtype == 0 {
        return Err("expected type/subtype made of RFC 2045 tokens");
    }
    i = skip_space(i + subtype);
    while i < s.len() {
        if s[i] != b';' {
            return Err("type, subtype and parameter names are RFC 2045 tokens (ASCII, no spaces, control characters or specials), separated by ;");
        }
        i = skip_space(i + 1);
        let attribute = token_len(&s[i..]);
        i += attribute;
        if attribute == 0 || s.get(i) != Some(&b'=') {
            return Err("a parameter must be attribute=value");
        }
        i += 1;
        let value = match s.get(i) {
            Some(b'"') => quoted_string_len(&s[i..])
                .ok_or("a quoted parameter value must be closed and hold no control characters")?,
            _ => token_len(&s[i..]),
        };
        if value == 0 {
            return Err("a parameter value must be a token or a quoted string");
        }
        i = skip_space(i + value);
    }
    Ok(())
}

/// What to send: recipients, subject, text and/or HTML, attachments.
///
/// Bcc recipients go into the envelope only, never into a header; a message with Bcc
/// recipients only says `To: undisclosed-recipients:;`.
///
/// ```
/// use smtpkit::message::Notification;
/// let n = Notification::new("Access Request Approval Required")
///     .to("approver@example.com".parse()?)
///     .text("A new access request requires your approval.")
///     .html("<h2>Access Request</h2><p>A new access request requires your approval.</p>");
/// let built = n.build(&"noreply@example.com".parse()?)?;
/// assert_eq!(built.envelope.to().len(), 1);
/// assert!(String::from_utf8_lossy(&built.bytes).contains("multipart/alternative"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    /// The sender; the provider's `from` when `None`.
    pub from: Option<Mailbox>,
    /// `To` recipients.
    pub to: Vec<Mailbox>,
    /// `Cc` recipients.
    pub cc: Vec<Mailbox>,
    /// Hidden recipients: envelope only.
    pub bcc: Vec<Mailbox>,
    /// `Reply-To`.
    pub reply_to: Option<Mailbox>,
    /// `Subject`.
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
}

/// A notification ready for the wire.
#[derive(Debug, Clone)]
pub struct BuiltMessage {
    /// MAIL FROM and RCPT TO.
    pub envelope: Envelope,
    /// The RFC 5322 message, CRLF line ends.
    pub bytes: Vec<u8>,
    /// The Message-ID, without angle brackets.
    pub message_id: String,
}

impl Notification {
    /// A notification with a subject; add recipients and a body with the builder methods.
    pub fn new(subject: impl Into<String>) -> Notification {
        Notification {
            subject: subject.into(),
            ..Notification::default()
        }
    }

    /// Adds a `To` recipient.
    pub fn to(mut self, mailbox: Mailbox) -> Notification {
        self.to.push(mailbox);
        self
    }

    /// Adds a `Cc` recipient.
    pub fn cc(mut self, mailbox: Mailbox) -> Notification {
        self.cc.push(mailbox);
        self
    }

    /// Adds a hidden recipient.
    pub fn bcc(mut self, mailbox: Mailbox) -> Notification {
        self.bcc.push(mailbox);
        self
    }

    /// Sets the plain-text body.
    pub fn text(mut self, text: impl Into<String>) -> Notification {
        self.text = Some(text.into());
        self
    }

    /// Sets the HTML body.
    pub fn html(mut self, html: impl Into<String>) -> Notification {
        self.html = Some(html.into());
        self
    }

    /// Adds an attachment.
    pub fn attach(mut self, attachment: Attachment) -> Notification {
        self.attachments.push(attachment);
        self
    }

    /// Builds the MIME message and its envelope: text and HTML together become
    /// multipart/alternative; attachments make it multipart/mixed; non-ASCII subjects and
    /// names are encoded (RFC 2047). `default_from` is used when `from` is not set.
    pub fn build(&self, default_from: &Mailbox) -> Result<BuiltMessage> {
        self.build_with_id(default_from, None)
    }

    /// Like [`Notification::build`], with `message_id` (without angle brackets) instead of a
    /// new one: the same message sent again, e.g. through a fallback provider.
    pub fn build_with_id(
        &self,
        default_from: &Mailbox,
        message_id: Option<&str>,
    ) -> Result<BuiltMessage> {
        let invalid =
            |message: String| Error::new(ErrorKind::InvalidInput, Stage::Message, message);
        if self.subject.chars().any(char::is_control) {
            return Err(invalid(format!(
                "subject {:?} contains a control character",
                self.subject
            )));
        }
        if self.text.is_none() && self.html.is_none() && self.attachments.is_empty() {
            return Err(invalid(
                "the notification has no body: set text, html or both".into(),
            ));
        }
        for a in &self.attachments {
            // Written into the MIME header as it is: anything but a media type could add
            // header lines.
            check_content_type(&a.content_type).map_err(|reason| {
                invalid(format!(
                    "attachment {:?}: content type {:?} is not a MIME type/subtype with \
                     optional ;attribute=value parameters (RFC 2045 §5.1): {reason}",
                    a.filename, a.content_type
                ))
            })?;
        }
        let from = self.from.as_ref().unwrap_or(default_from);
        let recipients: Vec<Address> = self
            .to
            .iter()
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|m| m.address().clone())
            .collect();
        if recipients.is_empty() {
            return Err(invalid("the notification has no recipients".into()));
        }
        let envelope = Envelope::new(from.address().clone(), recipients)
            .map_err(|e| Error::invalid(Stage::Message, e))?;
        let message_id =
            message_id.map_or_else(|| new_message_id(from.address().domain()), str::to_owned);

        let mut builder = MessageBuilder::new()
            .from(mime_address(from))
            .subject(self.subject.as_str())
            .message_id(message_id.as_str());
        if !self.to.is_empty() {
            builder = builder.to(mime_list(&self.to));
        } else if self.cc.is_empty() {
            // Bcc only: RFC 5322 allows a message without To, but an empty group says the
            // recipients were withheld on purpose (as Postfix adds), and filters that score a
            // missing To leave it alone. RFC 5322 §3.6.3, appendix A.1.3.
            builder = builder.header("To", Raw::new("undisclosed-recipients:;"));
        }
        if !self.cc.is_empty() {
            builder = builder.cc(mime_list(&self.cc));
        }
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(mime_address(reply_to));
        }
        if let Some(text) = &self.text {
            builder = builder.text_body(text.as_str());
        }
        if let Some(html) = &self.html {
            builder = builder.html_body(html.as_str());
        }
        for a in &self.attachments {
            builder = builder.attachment(
                a.content_type.as_str(),
                a.filename.as_str(),
                a.data.as_slice(),
            );
        }
        let bytes = builder
            .write_to_vec()
            .map_err(|e| invalid(format!("cannot build the message: {e}")))?;
        Ok(BuiltMessage {
            envelope,
            bytes,
            message_id,
        })
    }
}

fn mime_address(m: &Mailbox) -> MimeAddress<'_> {
    MimeAddress::new_address(m.name(), m.address().as_str())
}

fn mime_list(list: &[Mailbox]) -> MimeAddress<'_> {
    MimeAddress::new_list(list.iter().map(mime_address).collect())
}

/// A unique Message-ID: time, process and a counter, at the sender's domain (RFC 5322 §3.6.4).
fn new_message_id(domain: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let domain = if domain.starts_with('[') || domain.is_empty() {
        "smtpkit.localhost"
    } else {
        domain
    };
    format!("{nanos:x}.{:x}.{n}.smtpkit@{domain}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(s: &str) -> Mailbox {
        s.parse().expect("valid mailbox")
    }

    fn built(n: &Notification) -> (BuiltMessage, String) {
        let b = n
            .build(&mb("Notifier <noreply@example.com>"))
            .expect("builds");
        let text = String::from_utf8(b.bytes.clone()).expect("7-bit output");
        (b, text)
    }

    #[test]
    fn bcc_is_in_the_envelope_and_never_in_the_headers() {
        let n = Notification::new("s")
            .to(mb("a@x.test"))
            .cc(mb("c@x.test"))
            .bcc(mb("secret@x.test"))
            .text("hi");
        let (b, text) = built(&n);
        let rcpts: Vec<&str> = b.envelope.to().iter().map(Address::as_str).collect();
        assert_eq!(rcpts, ["a@x.test", "c@x.test", "secret@x.test"]);
        // A header line, not the letters: random MIME boundaries can contain "bcc".
        assert!(
            !text
                .lines()
                .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{text}"
        );
        assert!(!text.contains("secret@x.test"));
    }

    #[test]
    fn bcc_only_says_undisclosed_recipients() {
        let (b, text) = built(&Notification::new("s").bcc(mb("secret@x.test")).text("hi"));
        let rcpts: Vec<&str> = b.envelope.to().iter().map(Address::as_str).collect();
        assert_eq!(rcpts, ["secret@x.test"]);
        assert!(
            text.contains("\r\nTo: undisclosed-recipients:;\r\n"),
            "{text}"
        );
        assert!(!text.to_ascii_lowercase().contains("bcc"), "{text}");
        assert!(!text.contains("secret@x.test"), "{text}");
        // With a visible Cc there is no To at all (RFC 5322 does not require one).
        let (_, text) = built(&Notification::new("s").cc(mb("c@x.test")).text("hi"));
        assert!(!text.contains("\r\nTo:"), "{text}");
    }

    #[test]
    fn headers_and_both_bodies() {
        let n = Notification::new("Access Request Approval Required")
            .to(mb("approver@example.com"))
            .text("A new access request requires your approval.")
            .html("<h2>Access Request</h2>");
        let (b, text) = built(&n);
        assert!(text.contains("Subject: Access Request Approval Required\r\n"));
        assert!(
            text.contains("From: \"Notifier\" <noreply@example.com>")
                || text.contains("From: Notifier <noreply@example.com>"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Message-ID: <{}>", b.message_id)),
            "{text}"
        );
        assert!(text.contains("Date: "));
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("A new access request requires your approval."));
        assert!(text.contains("<h2>Access Request</h2>"));
        assert!(b.message_id.ends_with("@example.com"));
    }

    #[test]
    fn non_ascii_subject_and_names_are_encoded() {
        let n = Notification::new("Zugriff genehmigt ✓ für Jörg")
            .to(mb("Jörg Müller <j@example.com>"))
            .text("Grüße");
        let (_, text) = built(&n);
        assert!(text.is_ascii(), "the message is 7-bit: {text}");
        assert!(text.contains("Subject: =?utf-8?"), "{text}");
        assert!(text.contains("=?utf-8?") && text.contains("<j@example.com>"));
    }

    #[test]
    fn header_injection_in_the_subject_is_refused() {
        let n = Notification::new("hi\r\nBcc: victim@x.test")
            .to(mb("a@x.test"))
            .text("x");
        assert!(n.build(&mb("a@x.test")).is_err());
    }

    #[test]
    fn attachments_make_a_mixed_message() {
        let n = Notification::new("report")
            .to(mb("a@x.test"))
            .text("see attached")
            .attach(Attachment {
                filename: "report.csv".into(),
                content_type: "text/csv".into(),
                data: b"a,b\n1,2\n".to_vec(),
            });
        let (_, text) = built(&n);
        assert!(text.contains("multipart/mixed"));
        assert!(text.contains("report.csv"));
    }

    fn with_attachment(content_type: &str) -> Notification {
        Notification::new("report")
            .to(mb("a@x.test"))
            .text("see attached")
            .attach(Attachment {
                filename: "report.csv".into(),
                content_type: content_type.into(),
                data: b"a,b\n".to_vec(),
            })
    }

    #[test]
    fn header_injection_in_a_content_type_is_refused_naming_the_attachment() {
        let err = with_attachment("text/csv\r\nBcc: victim@x.test")
            .build(&mb("noreply@example.com"))
            .expect_err("CRLF in the content type");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let shown = err.to_string();
        assert!(
            shown.contains("attachment \"report.csv\"") && shown.contains("content type"),
            "{shown}"
        );
        assert!(
            shown.contains("\\r\\n"),
            "the value is shown escaped: {shown}"
        );
    }

    #[test]
    fn content_types_follow_rfc_2045() {
        for good in [
            "text/csv",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "image/svg+xml",
            "text/plain; charset=utf-8",
            "text/plain;charset=\"utf-8\"",
            "application/x-thing; a=b; c=\"d e; f\\\"g\"",
        ] {
            let (_, text) = built(&with_attachment(good));
            assert!(
                text.contains(&format!("Content-Type: {good}")),
                "{good}: {text}"
            );
        }
        for bad in [
            "",
            "text",
            "text/",
            "/plain",
            "text/pl ain",
            "text/plain\nX-Evil: 1",
            "text/plain\r",
            "text/plain; charset",
            "text/plain; charset=",
            "text/plain; =utf-8",
            "text/plain; charset=\"utf-8",
            "text/plain; charset=\"a\rb\"",
            "text/plain; charset=utf 8",
            "text/plain;",
            "téxt/plain",
            "text/plain\u{7f}",
            "text/plain(comment)",
        ] {
            let err = with_attachment(bad)
                .build(&mb("noreply@example.com"))
                .expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn message_ids_are_unique() {
        let a = new_message_id("example.com");
        let b = new_message_id("example.com");
        assert_ne!(a, b);
    }
}
