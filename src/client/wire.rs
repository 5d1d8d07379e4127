//! The framed byte stream of a session: command lines out, replies in, under deadlines,
//! recorded in the transcript. Any failure here poisons the session for good.
//!
//! Cancel safety lives here too. Every public operation of a session is an *exchange*:
//! [`Wire::begin`] marks it in flight before the first byte is written, [`Wire::end`] clears
//! the mark once its last reply was read. A future dropped in between (a caller's `timeout`,
//! a lost `select!` branch) never reaches `end`, so the mark stays, and the session is refused
//! from then on: its replies would otherwise be read by the next exchange as its own.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

use super::stream::Stream;
use super::transcript::{record, Direction, Transcript};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::proto::{Command, Reply, ReplyCode, ReplyParser};

const READ_CHUNK: usize = 8 * 1024;

/// The framed stream. Knows nothing of SMTP's sequence, only of lines and replies.
pub(crate) struct Wire {
    stream: Box<dyn Stream>,
    parser: ReplyParser,
    read_buf: Box<[u8]>,
    out: Vec<u8>,
    transcript: Option<Transcript>,
    poisoned: Option<String>,
    /// The exchange begun and not yet ended (see the module docs).
    in_flight: Option<Stage>,
    /// The server answered a raw DATA with 354 and waits for the message body.
    awaiting_body: bool,
    /// An end no exchange may pass, whatever its stage's own limit (a send's total deadline).
    deadline: Option<Instant>,
}

impl Wire {
    pub(crate) fn new(stream: Box<dyn Stream>, transcript: Option<Transcript>) -> Wire {
        Wire {
            stream,
            parser: ReplyParser::new(),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::with_capacity(1024),
            transcript,
            poisoned: None,
            in_flight: None,
            awaiting_body: false,
            deadline: None,
        }
    }

    /// Sets (or clears) the end no exchange may pass.
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// When a step that may take `limit` must end: `limit` from now, or the overall deadline
    /// when that comes first (then `true`).
    fn end_of(&self, limit: Duration) -> (Instant, bool) {
        let own = Instant::now() + limit;
        match self.deadline {
            Some(d) if d < own => (d, true),
            _ => (own, false),
        }
    }

    /// Starts an exchange: fails when the session is poisoned, and poisons it when an earlier
    /// exchange never ended (its future was dropped between its first byte and its last reply).
    pub(crate) fn begin(&mut self, stage: Stage) -> Result<()> {
        self.check_usable(stage)?;
        if let Some(earlier) = self.in_flight {
            let err = Error::new(
                ErrorKind::Poisoned,
                stage,
                format!(
                    "connection not usable: an earlier exchange ({earlier}) was cancelled before its last reply was read"
                ),
            );
            return Err(self.poison(err));
        }
        self.in_flight = Some(stage);
        Ok(())
    }

    /// Ends the exchange begun by [`Wire::begin`]: every reply it asked for was read (or the
    /// session is poisoned anyway).
    pub(crate) fn end(&mut self) {
        self.in_flight = None;
    }

    /// Whether the server waits for a message body after answering a raw DATA with 354.
    pub(crate) fn awaiting_body(&self) -> bool {
        self.awaiting_body
    }

    pub(crate) fn set_awaiting_body(&mut self, awaiting: bool) {
        self.awaiting_body = awaiting;
    }

    /// True when the session can take a new exchange: not poisoned, no exchange left
    /// unfinished by a dropped future, no body owed to the server.
    pub(crate) fn is_ready(&self) -> bool {
        self.poisoned.is_none() && self.in_flight.is_none() && !self.awaiting_body
    }

    pub(crate) fn note(&self, line: &str) {
        record(self.transcript.as_ref(), Direction::Info, line);
    }

    /// Fails when an earlier error made the session unusable.
    pub(crate) fn check_usable(&self, stage: Stage) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(Error::new(
                ErrorKind::Poisoned,
                stage,
                format!("connection not usable after an earlier failure ({why})"),
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Marks the session unusable and passes the error through.
    pub(crate) fn poison(&mut self, err: Error) -> Error {
        if self.poisoned.is_none() {
            self.poisoned = Some(err.to_string());
        }
        err
    }

    /// Encodes `commands` into one buffer; nothing is written if any of them is invalid.
    pub(crate) fn queue(&mut self, commands: &[&Command], stage: Stage) -> Result<()> {
        let start = self.out.len();
        for command in commands {
            if let Err(e) = command.encode(&mut self.out) {
                self.out.truncate(start);
                return Err(Error::invalid(stage, e));
            }
        }
        for command in commands {
            record(
                self.transcript.as_ref(),
                Direction::Client,
                &command.redacted(),
            );
        }
        Ok(())
    }

    /// Writes everything queued in one write, under one deadline.
    pub(crate) async fn flush(&mut self, stage: Stage, limit: Duration) -> Result<()> {
        self.check_usable(stage)?;
        let (deadline, _) = self.end_of(limit);
        let out = std::mem::take(&mut self.out);
        let result = self.write_until(&out, stage, deadline).await;
        self.out = out;
        self.out.clear();
        result
    }

    /// Appends bytes already encoded (a command group made in advance), recording their lines.
    pub(crate) fn queue_encoded(&mut self, bytes: &[u8], lines: &[String]) {
        self.out.extend_from_slice(bytes);
        for line in lines {
            record(self.transcript.as_ref(), Direction::Client, line);
        }
    }

    /// Appends raw bytes (a dot-stuffed message body) to what will be written next.
    pub(crate) fn queue_raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Appends `piece` of a message body, dot-stuffed by `stuffer` as it goes.
    pub(crate) fn queue_stuffed(&mut self, stuffer: &mut crate::proto::DotStuffer, piece: &[u8]) {
        stuffer.encode(piece, &mut self.out);
    }

    /// Appends the end of the body's last line, if it is open (before the final `.`).
    pub(crate) fn queue_last_line_end(&mut self, stuffer: &mut crate::proto::DotStuffer) {
        stuffer.end_last_line(&mut self.out);
    }

    /// How many bytes wait to be written.
    pub(crate) fn queued_len(&self) -> usize {
        self.out.len()
    }

    /// Writes everything queued, a message body first. Each write that makes progress gets a
    /// fresh `block` deadline (RFC 5321 §4.5.3.2.5), so a slow but moving upload is not cut
    /// off. A failure once the first `body_end` bytes (the body and its final `.`) were taken
    /// by the network counts as [`Stage::DataEnd`]: the server may have the message.
    pub(crate) async fn flush_body(&mut self, block: Duration, body_end: usize) -> Result<()> {
        let stage_at = |written: usize| {
            if written >= body_end {
                Stage::DataEnd
            } else {
                Stage::Body
            }
        };
        self.flush_counted(block, stage_at).await.1
    }

    /// Writes everything queued like [`Wire::flush_body`] (a fresh `block` deadline for each
    /// write that makes progress) and tells how many bytes the network took, also on failure;
    /// `stage_at(written)` labels a failure after `written` bytes.
    pub(crate) async fn flush_counted(
        &mut self,
        block: Duration,
        stage_at: impl Fn(usize) -> Stage,
    ) -> (usize, Result<()>) {
        if let Err(e) = self.check_usable(stage_at(0)) {
            return (0, Err(e));
        }
        let out = std::mem::take(&mut self.out);
        let mut written = 0;
        let mut failure = None;
        while written < out.len() {
            let stage = stage_at(written);
            let (end, overall) = self.end_of(block);
            match timeout_at(end, self.stream.write(&out[written..])).await {
                Ok(Ok(0)) => {
                    failure = Some(Error::new(
                        ErrorKind::Closed,
                        stage,
                        "connection closed while writing",
                    ))
                }
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => failure = Some(Error::io(stage, e)),
                Err(_) => {
                    failure = Some(Error::new(
                        ErrorKind::Timeout,
                        stage,
                        if overall {
                            "the send's total deadline passed while writing the message".to_owned()
                        } else {
                            format!("no write progress in {block:?}")
                        },
                    ))
                }
            }
            if failure.is_some() {
                break;
            }
        }
        self.out = out;
        self.out.clear();
        if let Some(e) = failure {
            return (written, Err(self.poison(e)));
        }
        let (end, _) = self.end_of(block);
        (written, self.flush_stream(stage_at(written), end).await)
    }

    async fn write_until(&mut self, bytes: &[u8], stage: Stage, deadline: Instant) -> Result<()> {
        let result = match timeout_at(deadline, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => return self.flush_stream(stage, deadline).await,
            Ok(Err(e)) => Error::io(stage, e),
            Err(_) => Error::new(ErrorKind::Timeout, stage, "timed out writing"),
        };
        Err(self.poison(result))
    }

    async fn flush_stream(&mut self, stage: Stage, deadline: Instant) -> Result<()> {
        let err = match timeout_at(deadline, self.stream.flush()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => Error::io(stage, e),
            Err(_) => Error::new(ErrorKind::Timeout, stage, "timed out writing"),
        };
        Err(self.poison(err))
    }

    /// Reads one whole reply; the deadline covers all of it. A 421 reply poisons the session
    /// (the server is closing, RFC 5321 §3.8) but is still returned.
    pub(crate) async fn read_reply(&mut self, stage: Stage, limit: Duration) -> Result<Reply> {
        self.check_usable(stage)?;
        let (deadline, overall) = self.end_of(limit);
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    self.record_reply(&reply);
                    if reply.code() == ReplyCode::SERVICE_NOT_AVAILABLE {
                        self.poisoned = Some(format!("server sent {reply}"));
                    }
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(self.poison(Error::protocol(stage, e))),
            }
            let read = timeout_at(deadline, self.stream.read(&mut self.read_buf)).await;
            let n = match read {
                Ok(Ok(0)) => {
                    let err = Error::new(ErrorKind::Closed, stage, "server closed the connection");
                    return Err(self.poison(err));
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(self.poison(Error::io(stage, e))),
                Err(_) => {
                    let err = Error::new(
                        ErrorKind::Timeout,
                        stage,
                        if overall {
                            "the send's total deadline passed while waiting for a reply".to_owned()
                        } else {
                            format!("no complete reply within {limit:?}")
                        },
                    );
                    return Err(self.poison(err));
                }
            };
            self.parser.feed(&self.read_buf[..n]);
        }
    }

    /// Whether a session that sat idle is still quiet and open: reads what is there without
    /// waiting. A server may close an idle session, or say `421` first (RFC 5321 §3.8); any
    /// byte it sent unasked, or its close, makes the session unusable.
    pub(crate) async fn still_quiet(&mut self) -> bool {
        if !self.is_ready() {
            return false;
        }
        // Polls the read once: ready data or EOF come back at once, silence is a timeout.
        let read = timeout_at(Instant::now(), self.stream.read(&mut self.read_buf)).await;
        let why = match read {
            Err(_) if self.parser.buffered_len() == 0 => return true,
            Err(_) => "the server sent bytes while the session was idle".to_owned(),
            Ok(Ok(0)) => "the server closed the idle session".to_owned(),
            Ok(Ok(n)) => {
                self.parser.feed(&self.read_buf[..n]);
                match self.parser.next_reply() {
                    Ok(Some(reply)) => {
                        self.record_reply(&reply);
                        format!("the server said `{reply}` while the session was idle")
                    }
                    _ => "the server sent bytes while the session was idle".to_owned(),
                }
            }
            Ok(Err(e)) => format!("the idle session failed: {e}"),
        };
        self.note(&why);
        self.poisoned = Some(why);
        false
    }

    /// Gives up the stream for a TLS handshake. RFC 3207 §4.2: any byte the server sent after
    /// its 220 to STARTTLS and before the handshake is an attack (response injection,
    /// CVE-2011-0411 class), so buffered bytes are an error.
    pub(crate) fn into_stream(self, stage: Stage) -> Result<(Box<dyn Stream>, Option<Transcript>)> {
        let pending = self.parser.buffered_len();
        if pending > 0 {
            return Err(Error::new(
                ErrorKind::Protocol,
                stage,
                format!("server sent {pending} byte(s) after its STARTTLS reply, before TLS (response injection)"),
            ));
        }
        Ok((self.stream, self.transcript))
    }

    fn record_reply(&self, reply: &Reply) {
        let last = reply.lines().len() - 1;
        for (i, line) in reply.lines().iter().enumerate() {
            let sep = if i == last {
                if line.is_empty() {
                    ""
                } else {
                    " "
                }
            } else {
                "-"
            };
            record(
                self.transcript.as_ref(),
                Direction::Server,
                &format!("{}{sep}{line}", reply.code()),
            );
        }
    }

    /// Shuts the write side down, bounded by `limit`; errors are ignored (the peer may be gone).
    pub(crate) async fn shutdown(&mut self, limit: Duration) {
        let _ = timeout_at(Instant::now() + limit, self.stream.shutdown()).await;
    }
}
