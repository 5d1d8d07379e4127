//! A hook that sees every line sent and received, escaped and with secrets redacted.

use std::fmt;
use std::sync::{Arc, Mutex};

/// Who a transcript line is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the client (`C:`).
    Client,
    /// Received from the server (`S:`).
    Server,
    /// A note from smtpkit itself (`*`): TLS started, body sizes, warnings.
    Info,
}

impl Direction {
    /// `C:`, `S:` or `*`.
    pub fn prefix(self) -> &'static str {
        match self {
            Direction::Client => "C:",
            Direction::Server => "S:",
            Direction::Info => "*",
        }
    }
}

type Hook = dyn Fn(Direction, &str) + Send + Sync;

/// Receives each line of a session. Lines are already escaped (control characters as `\xNN`)
/// and never contain AUTH payloads or passwords. Each line is also emitted as a `tracing`
/// event at debug level with target `smtpkit::wire`.
///
/// ```
/// use smtpkit::client::Transcript;
/// let (transcript, lines) = Transcript::buffer();
/// // pass `transcript` in ClientOptions; afterwards:
/// assert!(lines.lines().is_empty());
/// ```
#[derive(Clone)]
pub struct Transcript(Arc<Hook>);

impl Transcript {
    /// A transcript that calls `hook` for each line.
    pub fn new(hook: impl Fn(Direction, &str) + Send + Sync + 'static) -> Transcript {
        Transcript(Arc::new(hook))
    }

    /// A transcript that collects lines as `C: …`/`S: …`/`* …` into a shared buffer.
    pub fn buffer() -> (Transcript, TranscriptBuffer) {
        let buffer = TranscriptBuffer::default();
        let sink = buffer.clone();
        let transcript = Transcript::new(move |direction, line| {
            sink.push(format!("{} {line}", direction.prefix()))
        });
        (transcript, buffer)
    }

    pub(crate) fn emit(&self, direction: Direction, line: &str) {
        (self.0)(direction, line);
    }
}

impl fmt::Debug for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transcript(..)")
    }
}

/// Lines collected by [`Transcript::buffer`].
#[derive(Debug, Clone, Default)]
pub struct TranscriptBuffer(Arc<Mutex<Vec<String>>>);

impl TranscriptBuffer {
    fn push(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }

    /// A copy of the lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Escapes control characters so a line prints as one safe line.
pub(crate) fn escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            if (c as u32) < 0x100 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A note from a layer above the session (retries, rate limits).
pub(crate) fn record_note(transcript: &Transcript, line: &str) {
    record(Some(transcript), Direction::Info, line);
}

/// Sends a line to the hook (if any) and to `tracing`.
pub(crate) fn record(transcript: Option<&Transcript>, direction: Direction, line: &str) {
    let line = escape(line);
    tracing::debug!(target: "smtpkit::wire", "{} {}", direction.prefix(), line);
    if let Some(t) = transcript {
        t.emit(direction, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape("250 ok\r\x1b[31m\u{85}"),
            "250 ok\\x0d\\x1b[31m\\x85"
        );
        assert_eq!(escape("café ✓"), "café ✓");
    }
}
