//! Server replies: the three-digit code, the optional enhanced status code and the text.

use std::fmt;

/// A reply code, `200` to `559`: first digit 2–5, second digit 0–5 (RFC 5321 §4.2).
///
/// `1yz` replies are not used by SMTP (RFC 5321 §4.2.1) and are rejected by the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(u16);

impl ReplyCode {
    /// `220 Service ready`.
    pub const SERVICE_READY: ReplyCode = ReplyCode(220);
    /// `221 Service closing transmission channel`.
    pub const CLOSING: ReplyCode = ReplyCode(221);
    /// `250 Requested mail action okay, completed`.
    pub const OK: ReplyCode = ReplyCode(250);
    /// `354 Start mail input`.
    pub const START_MAIL_INPUT: ReplyCode = ReplyCode(354);
    /// `421 Service not available, closing transmission channel`.
    pub const SERVICE_NOT_AVAILABLE: ReplyCode = ReplyCode(421);

    /// Validates a code; `None` when it is not a valid SMTP reply code.
    ///
    /// ```
    /// use smtpkit::proto::ReplyCode;
    /// assert!(ReplyCode::new(250).is_some());
    /// assert!(ReplyCode::new(199).is_none());
    /// assert!(ReplyCode::new(260).is_none()); // second digit must be 0-5
    /// ```
    pub fn new(code: u16) -> Option<ReplyCode> {
        let first = code / 100;
        let second = (code / 10) % 10;
        ((2..=5).contains(&first) && second <= 5).then_some(ReplyCode(code))
    }

    /// The numeric value.
    pub fn value(self) -> u16 {
        self.0
    }

    /// The first digit: 2 success, 3 intermediate, 4 transient failure, 5 permanent failure.
    pub fn class(self) -> u8 {
        (self.0 / 100) as u8
    }

    /// `2yz`: the command was accepted.
    pub fn is_positive_completion(self) -> bool {
        self.class() == 2
    }

    /// `3yz`: the server waits for more (after DATA or during AUTH).
    pub fn is_intermediate(self) -> bool {
        self.class() == 3
    }

    /// `4yz`: failed now, may succeed if tried again later.
    pub fn is_transient(self) -> bool {
        self.class() == 4
    }

    /// `5yz`: failed, and will fail again.
    pub fn is_permanent(self) -> bool {
        self.class() == 5
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An enhanced mail system status code such as `5.1.1` (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2, 4 or 5; always equal to the first digit of the reply code it came with.
    pub class: u8,
    /// The subject (1 to 3 digits).
    pub subject: u16,
    /// The detail (1 to 3 digits).
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// A complete reply: one code and one or more lines of text.
///
/// The text is kept as the server sent it after the `ddd-`/`ddd ` prefix (lossily decoded
/// if it is not UTF-8); [`Reply::enhanced_code`] is parsed from the first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    code: ReplyCode,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

impl Reply {
    /// Builds a reply, for servers and tests. An enhanced code at the start of the first line
    /// is recognised as the parser would.
    ///
    /// ```
    /// use smtpkit::proto::{Reply, ReplyCode};
    /// let reply = Reply::new(ReplyCode::OK, vec!["2.1.0 Sender ok".into()]);
    /// assert_eq!(reply.enhanced_code().map(|e| e.to_string()).as_deref(), Some("2.1.0"));
    /// assert_eq!(reply.message(), "Sender ok");
    /// ```
    pub fn new(code: ReplyCode, lines: Vec<String>) -> Reply {
        let lines = if lines.is_empty() {
            vec![String::new()]
        } else {
            lines
        };
        let enhanced = parse_enhanced_code(code, lines[0].as_bytes());
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The reply code.
    pub fn code(&self) -> ReplyCode {
        self.code
    }

    /// The enhanced status code of the first line, when the server sent one whose class
    /// matches the reply code.
    pub fn enhanced_code(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// Every line's text, without the code and separator.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The text of all lines joined by a space, without the enhanced code.
    pub fn message(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let text = strip_enhanced_code(self.code, line);
            if text.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(text);
        }
        out
    }

    /// `2yz`.
    pub fn is_positive(&self) -> bool {
        self.code.is_positive_completion()
    }

    /// `4yz`.
    pub fn is_transient(&self) -> bool {
        self.code.is_transient()
    }

    /// `5yz`.
    pub fn is_permanent(&self) -> bool {
        self.code.is_permanent()
    }
}

impl fmt::Display for Reply {
    /// One line: `550 5.1.1 No such user` (lines of a multi-line reply joined by a space).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(enhanced) = self.enhanced {
            write!(f, " {enhanced}")?;
        }
        let message = self.message();
        if !message.is_empty() {
            write!(f, " {message}")?;
        }
        Ok(())
    }
}

/// Reads `class.subject.detail` at the start of `text`, followed by a space or the end.
/// RFC 3463 §2: the class must be 2, 4 or 5, and here it must match the reply code's class.
pub(crate) fn parse_enhanced_code(code: ReplyCode, text: &[u8]) -> Option<EnhancedCode> {
    let (enhanced, len) = enhanced_prefix(text)?;
    (enhanced.class == code.class() && (text.len() == len || text[len] == b' ')).then_some(enhanced)
}

fn enhanced_prefix(text: &[u8]) -> Option<(EnhancedCode, usize)> {
    let mut parts = [0u16; 3];
    let mut pos = 0;
    for (index, part) in parts.iter_mut().enumerate() {
        let max_digits = if index == 0 { 1 } else { 3 };
        let digits = text[pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > max_digits {
            return None;
        }
        *part = text[pos..pos + digits]
            .iter()
            .fold(0, |acc, d| acc * 10 + u16::from(d - b'0'));
        pos += digits;
        if index < 2 {
            if text.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
    }
    let class = parts[0] as u8;
    matches!(class, 2 | 4 | 5).then_some((
        EnhancedCode {
            class,
            subject: parts[1],
            detail: parts[2],
        },
        pos,
    ))
}

fn strip_enhanced_code(code: ReplyCode, line: &str) -> &str {
    match parse_enhanced_code(code, line.as_bytes()) {
        Some(_) => {
            let len = enhanced_prefix(line.as_bytes()).map_or(0, |(_, len)| len);
            line[len..].trim_start()
        }
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(c: u16) -> ReplyCode {
        ReplyCode::new(c).expect("valid code")
    }

    #[test]
    fn codes_outside_2xx_to_5xx_or_with_second_digit_over_5_are_invalid() {
        for bad in [0, 99, 100, 199, 260, 299, 600, 999] {
            assert!(ReplyCode::new(bad).is_none(), "{bad}");
        }
        for good in [200, 220, 250, 354, 421, 454, 550, 554, 559] {
            assert!(ReplyCode::new(good).is_some(), "{good}");
        }
    }

    #[test]
    fn enhanced_code_class_must_match_reply_class() {
        assert_eq!(
            parse_enhanced_code(code(550), b"5.1.1 No such user"),
            Some(EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert_eq!(parse_enhanced_code(code(250), b"5.1.1 mismatch"), None);
        assert_eq!(parse_enhanced_code(code(250), b"3.0.0 bad class"), None);
        assert_eq!(
            parse_enhanced_code(code(250), b"2.0.0"),
            Some(EnhancedCode {
                class: 2,
                subject: 0,
                detail: 0
            })
        );
        assert_eq!(parse_enhanced_code(code(250), b"2.0.0x"), None);
        assert_eq!(parse_enhanced_code(code(250), b"2.1000.0 too long"), None);
        assert_eq!(parse_enhanced_code(code(250), b"2.0"), None);
        assert_eq!(parse_enhanced_code(code(250), b"22.0.0"), None);
    }

    #[test]
    fn display_and_message_leave_out_the_enhanced_code_once() {
        let reply = Reply::new(
            code(550),
            vec!["5.1.1 No such".into(), "5.1.1 user here".into()],
        );
        assert_eq!(reply.message(), "No such user here");
        assert_eq!(reply.to_string(), "550 5.1.1 No such user here");
        let bare = Reply::new(code(250), vec![]);
        assert_eq!(bare.to_string(), "250");
    }
}
