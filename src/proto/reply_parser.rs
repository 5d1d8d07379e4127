//! Incremental reply parser: bytes in, [`Reply`] values out, memory bounded by named limits.

use nom::branch::alt;
use nom::bytes::complete::take_while_m_n;
use nom::character::complete::char;
use nom::combinator::{eof, map_opt, value};
use nom::{IResult, Parser};

use super::limits::{MAX_REPLY_BYTES, MAX_REPLY_LINES, MAX_REPLY_LINE_LEN};
use super::reply::{Reply, ReplyCode};

/// Why the bytes a server sent are not a valid reply. The connection cannot be trusted after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// A line grew past [`MAX_REPLY_LINE_LEN`] without a line end.
    #[error("reply line longer than {MAX_REPLY_LINE_LEN} bytes")]
    LineTooLong,
    /// A multi-line reply went on past [`MAX_REPLY_LINES`] lines.
    #[error("reply has more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
    /// A multi-line reply went on past [`MAX_REPLY_BYTES`] bytes.
    #[error("reply larger than {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    /// A line that does not start with a valid code followed by `-`, a space or the line end.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// A continuation line whose code differs from the first line's (RFC 5321 §4.2.1).
    #[error("reply lines disagree on the code: {first} then {then}")]
    InconsistentCode {
        /// The first line's code.
        first: u16,
        /// The code of the line that differs.
        then: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Separator {
    /// `ddd-text`: more lines follow.
    More,
    /// `ddd text` or a bare `ddd`: the last line.
    Last,
}

/// One reply line without its line end: code, separator, text (RFC 5321 §4.2).
fn reply_line(input: &[u8]) -> IResult<&[u8], (ReplyCode, Separator)> {
    let code = map_opt(
        take_while_m_n(3, 3, |b: u8| b.is_ascii_digit()),
        |digits: &[u8]| {
            let n = digits
                .iter()
                .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
            ReplyCode::new(n)
        },
    );
    let separator = alt((
        value(Separator::More, char('-')),
        value(Separator::Last, char(' ')),
        value(Separator::Last, eof),
    ));
    (code, separator).parse(input)
}

struct PartialReply {
    code: ReplyCode,
    lines: Vec<String>,
    bytes: usize,
}

/// Parses replies from a byte stream that may be split anywhere.
///
/// Feed what the socket gave with [`ReplyParser::feed`], then take complete replies with
/// [`ReplyParser::next_reply`] until it returns `Ok(None)`. Several pipelined replies in one
/// read come out one by one; a reply split across reads comes out once complete.
///
/// ```
/// use smtpkit::proto::ReplyParser;
/// let mut parser = ReplyParser::new();
/// parser.feed(b"250-mx.example\r\n250-PIPE");
/// assert!(parser.next_reply().unwrap().is_none());
/// parser.feed(b"LINING\r\n250 SIZE 1000\r\n");
/// let reply = parser.next_reply().unwrap().unwrap();
/// assert_eq!(reply.code().value(), 250);
/// assert_eq!(reply.lines(), ["mx.example", "PIPELINING", "SIZE 1000"]);
/// ```
#[derive(Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed; dropped in bulk, so each byte is moved O(1) times.
    start: usize,
    /// Bytes after `start` already searched for a line end without finding one.
    scanned: usize,
    partial: Option<PartialReply>,
    /// Test-only tally of the work done on the buffer, to prove it stays linear.
    #[cfg(test)]
    work: Work,
}

/// Bytes the parser searched for line ends and bytes it moved when compacting its buffer.
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
struct Work {
    scanned: usize,
    moved: usize,
}

impl ReplyParser {
    /// An empty parser.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Appends bytes received from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a returned reply (a partial line or later replies).
    pub fn buffered_len(&self) -> usize {
        self.buf.len() - self.start + self.partial.as_ref().map_or(0, |p| p.bytes)
    }

    /// Forgets everything buffered, for a fresh start on a new transport.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        self.partial = None;
    }

    /// The next complete reply, `Ok(None)` when more bytes are needed, or an error when the
    /// stream is not SMTP or breaks a limit. After an error the parser should be discarded.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        let result = self.parse_lines();
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            #[cfg(test)]
            {
                self.work.moved += self.buf.len() - self.start;
            }
            self.buf.drain(..self.start);
            self.start = 0;
        }
        result
    }

    fn parse_lines(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let rest = &self.buf[self.start..];
            let from = self.scanned.min(rest.len());
            let found = memchr::memchr(b'\n', &rest[from..]);
            #[cfg(test)]
            {
                self.work.scanned += found.map_or(rest.len() - from, |p| p + 1);
            }
            let Some(newline) = found.map(|p| from + p) else {
                self.scanned = rest.len();
                if rest.len() >= MAX_REPLY_LINE_LEN {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            self.scanned = 0;
            if newline + 1 > MAX_REPLY_LINE_LEN {
                return Err(ReplyError::LineTooLong);
            }
            // Lines end in CRLF (RFC 5321 §2.3.8); a bare LF is tolerated on input.
            let line = rest[..newline]
                .strip_suffix(b"\r")
                .unwrap_or(&rest[..newline]);
            let Ok((text, (code, separator))) = reply_line(line) else {
                return Err(ReplyError::Malformed(
                    String::from_utf8_lossy(line).into_owned(),
                ));
            };
            let text = String::from_utf8_lossy(text).into_owned();
            self.start += newline + 1;

            let partial = self.partial.get_or_insert_with(|| PartialReply {
                code,
                lines: Vec::new(),
                bytes: 0,
            });
            if partial.code != code {
                return Err(ReplyError::InconsistentCode {
                    first: partial.code.value(),
                    then: code.value(),
                });
            }
            partial.lines.push(text);
            partial.bytes += newline + 1;
            if partial.lines.len() > MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            if partial.bytes > MAX_REPLY_BYTES {
                return Err(ReplyError::TooLarge);
            }
            if separator == Separator::Last {
                return Ok(self.partial.take().map(|p| Reply::new(p.code, p.lines)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut parser = ReplyParser::new();
        parser.feed(bytes);
        let mut out = Vec::new();
        while let Some(reply) = parser.next_reply()? {
            out.push(reply);
        }
        Ok(out)
    }

    fn one(bytes: &[u8]) -> Reply {
        let mut replies = parse_all(bytes).expect("parses");
        assert_eq!(replies.len(), 1, "exactly one reply in {bytes:?}");
        replies.remove(0)
    }

    #[test]
    fn real_world_replies() {
        // (wire bytes, code, enhanced, message)
        let table: &[(&[u8], u16, Option<&str>, &str)] = &[
            (b"220 smtp.gmail.com ESMTP x1-20020a.1 - gsmtp\r\n", 220, None, "smtp.gmail.com ESMTP x1-20020a.1 - gsmtp"),
            (b"250 2.1.0 OK x1-20020a.1 - gsmtp\r\n", 250, Some("2.1.0"), "OK x1-20020a.1 - gsmtp"),
            (b"550-5.1.1 The email account that you tried to reach does not exist.\r\n550 5.1.1  https://support.google.com/mail/?p=NoSuchUser\r\n", 550, Some("5.1.1"), "The email account that you tried to reach does not exist. https://support.google.com/mail/?p=NoSuchUser"),
            (b"535 5.7.8 Username and Password not accepted.\r\n", 535, Some("5.7.8"), "Username and Password not accepted."),
            (b"354 End data with <CR><LF>.<CR><LF>\r\n", 354, None, "End data with <CR><LF>.<CR><LF>"),
            (b"421 4.7.0 Try again later, closing connection.\r\n", 421, Some("4.7.0"), "Try again later, closing connection."),
            (b"250 2.0.0 Ok: queued as 4Xk2Lz0bJHz\r\n", 250, Some("2.0.0"), "Ok: queued as 4Xk2Lz0bJHz"),
            (b"250\r\n", 250, None, ""),
            (b"221 Bye\n", 221, None, "Bye"),
            (b"554 5.7.1 <x@y>: Relay access denied\r\n", 554, Some("5.7.1"), "<x@y>: Relay access denied"),
        ];
        for (wire, code, enhanced, message) in table {
            let reply = one(wire);
            assert_eq!(reply.code().value(), *code, "{wire:?}");
            assert_eq!(
                reply.enhanced_code().map(|e| e.to_string()).as_deref(),
                *enhanced,
                "{wire:?}"
            );
            assert_eq!(reply.message(), *message, "{wire:?}");
        }
    }

    #[test]
    fn multi_line_reply_with_bare_final_code() {
        let reply = one(b"250-mx.example.org\r\n250-PIPELINING\r\n250\r\n");
        assert_eq!(reply.lines(), ["mx.example.org", "PIPELINING", ""]);
    }

    #[test]
    fn split_anywhere_parses_the_same() {
        let wire: &[u8] =
            b"250-mx.example\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n250 2.0.0 ok\r\n354 go\r\n";
        let whole = parse_all(wire).expect("whole");
        for split in 0..=wire.len() {
            let mut parser = ReplyParser::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                parser.feed(part);
                while let Some(r) = parser.next_reply().expect("split parses") {
                    got.push(r);
                }
            }
            assert_eq!(got, whole, "split at {split}");
        }
        // And byte by byte.
        let mut parser = ReplyParser::new();
        let mut got = Vec::new();
        for b in wire {
            parser.feed(std::slice::from_ref(b));
            while let Some(r) = parser.next_reply().expect("bytewise parses") {
                got.push(r);
            }
        }
        assert_eq!(got, whole);
        assert_eq!(parser.buffered_len(), 0);
    }

    /// Feeds `wire` in pieces of `chunk` bytes, taking every reply after each piece.
    fn parse_in_chunks(parser: &mut ReplyParser, wire: &[u8], chunk: usize) -> Vec<Reply> {
        let mut out = Vec::new();
        for piece in wire.chunks(chunk) {
            parser.feed(piece);
            while let Some(reply) = parser.next_reply().expect("valid") {
                out.push(reply);
            }
        }
        out
    }

    #[test]
    fn many_replies_in_one_feed_cost_linear_work() {
        // One read holding many pipelined replies: dropping consumed bytes after each reply
        // (or searching from the buffer's start) would cost O(n²) bytes here.
        let n = 20_000;
        let wire = b"250 2.1.5 ok\r\n".repeat(n);
        let mut parser = ReplyParser::new();
        let replies = parse_in_chunks(&mut parser, &wire, wire.len());
        assert_eq!(replies.len(), n);
        assert!(replies.iter().all(|r| r.lines() == ["2.1.5 ok"]));
        assert_eq!(parser.buffered_len(), 0);
        let work = parser.work;
        assert!(
            work.scanned <= wire.len(),
            "searched {} bytes for line ends in {} bytes of input",
            work.scanned,
            wire.len()
        );
        assert!(
            work.moved <= wire.len(),
            "moved {} bytes compacting {} bytes of input",
            work.moved,
            wire.len()
        );
    }

    #[test]
    fn a_reply_trickling_in_is_not_searched_again_on_every_read() {
        // A line just under the limit and a long multi-line reply, one byte per read, then the
        // same in 7-byte reads with pipelined replies behind: every byte searched at most once.
        let long_line = format!("250 {}\r\n", "t".repeat(MAX_REPLY_LINE_LEN - 6));
        let mut multi = String::new();
        for i in 0..200 {
            multi.push_str(&format!("250-line {i} {}\r\n", "m".repeat(100)));
        }
        multi.push_str("250 end\r\n");
        let wire = format!("{long_line}{multi}{}", "354 go\r\n".repeat(1000));
        for chunk in [1, 7] {
            let mut parser = ReplyParser::new();
            let replies = parse_in_chunks(&mut parser, wire.as_bytes(), chunk);
            assert_eq!(replies.len(), 1002, "chunk {chunk}");
            assert_eq!(replies[1].lines().len(), 201, "chunk {chunk}");
            assert_eq!(parser.buffered_len(), 0);
            let work = parser.work;
            assert!(
                work.scanned <= wire.len(),
                "chunk {chunk}: searched {} bytes for line ends in {} bytes of input",
                work.scanned,
                wire.len()
            );
            assert!(
                work.moved <= wire.len(),
                "chunk {chunk}: moved {} bytes compacting {} bytes of input",
                work.moved,
                wire.len()
            );
        }
    }

    #[test]
    fn pipelined_replies_come_out_in_order() {
        let replies = parse_all(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n550 5.1.1 no\r\n354 go\r\n")
            .expect("parses");
        let codes: Vec<u16> = replies.iter().map(|r| r.code().value()).collect();
        assert_eq!(codes, [250, 250, 550, 354]);
    }

    #[test]
    fn inconsistent_codes_are_rejected() {
        assert_eq!(
            parse_all(b"250-first\r\n251 second\r\n"),
            Err(ReplyError::InconsistentCode {
                first: 250,
                then: 251
            })
        );
    }

    #[test]
    fn malformed_lines_are_rejected() {
        for bad in [
            &b"25 short\r\n"[..],
            b"2500 long\r\n",
            b"abc text\r\n",
            b"250text\r\n",
            b"\r\n",
            b"199 informational\r\n",
            b"600 out of range\r\n",
            b"HTTP/1.1 400 Bad Request\r\n",
            b"250_under\r\n",
        ] {
            assert!(
                matches!(parse_all(bad), Err(ReplyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_utf8_text_is_decoded_lossily_without_panic() {
        let reply = one(b"250 caf\xe9 \xff\xfe ok\r\n");
        assert_eq!(reply.code().value(), 250);
        assert!(reply.message().contains("caf"));
        assert!(parse_all(b"\xff\xfe\xfd\r\n").is_err());
    }

    #[test]
    fn an_endless_line_is_an_error_not_growth() {
        let mut parser = ReplyParser::new();
        parser.feed(b"250 ");
        let chunk = [b'a'; 1000];
        let mut result = Ok(None);
        for _ in 0..10 {
            parser.feed(&chunk);
            result = parser.next_reply();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ReplyError::LineTooLong));
        assert!(parser.buffered_len() <= MAX_REPLY_LINE_LEN + chunk.len());
    }

    #[test]
    fn an_endless_multiline_reply_is_an_error_not_growth() {
        let mut parser = ReplyParser::new();
        let mut result = Ok(None);
        for _ in 0..10_000 {
            parser.feed(b"250-x\r\n");
            result = parser.next_reply();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ReplyError::TooManyLines));

        let mut parser = ReplyParser::new();
        let line = format!("250-{}\r\n", "y".repeat(1000));
        let mut result = Ok(None);
        for _ in 0..10_000 {
            parser.feed(line.as_bytes());
            result = parser.next_reply();
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ReplyError::TooLarge));
        assert!(parser.buffered_len() <= MAX_REPLY_BYTES + line.len());
    }

    #[test]
    fn a_line_just_under_the_limit_is_accepted() {
        let text = "z".repeat(MAX_REPLY_LINE_LEN - 6);
        let reply = one(format!("250 {text}\r\n").as_bytes());
        assert_eq!(reply.message().len(), MAX_REPLY_LINE_LEN - 6);
        let too_long = format!("250 {text}z\r\n");
        assert_eq!(parse_all(too_long.as_bytes()), Err(ReplyError::LineTooLong));
    }
}
