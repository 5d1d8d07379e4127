//! The DATA decoder for the receiving side: finds the end-of-data line and removes stuffing.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    Middle,
    AfterCr,
    Dot,
    DotCr,
}

/// Decodes the bytes a client sends after `354`, streaming.
///
/// A line `.` CRLF ends the data; a leading `.` on any other line is removed (RFC 5321 §4.5.2).
/// The message keeps its line ends as sent; the CRLF before the final `.` belongs to the message.
///
/// ```
/// use smtpkit::proto::DotUnstuffer;
/// let mut message = Vec::new();
/// let mut decoder = DotUnstuffer::new();
/// let end = decoder.decode(b"..hi\r\n.\r\nQUIT\r\n", &mut message);
/// assert_eq!(end, Some(9)); // bytes up to and including the terminator
/// assert_eq!(message, b".hi\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct DotUnstuffer {
    state: State,
}

impl Default for DotUnstuffer {
    fn default() -> Self {
        DotUnstuffer::new()
    }
}

impl DotUnstuffer {
    /// A decoder at the start of the data.
    pub fn new() -> DotUnstuffer {
        DotUnstuffer {
            state: State::LineStart,
        }
    }

    /// Decodes `input` into `out`. Returns `Some(n)` when the terminator ended at `input[n - 1]`
    /// (what follows is the next command), or `None` when all of `input` was message data.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        for (i, &b) in input.iter().enumerate() {
            self.state = match (self.state, b) {
                (State::LineStart, b'.') => State::Dot,
                (State::Dot, b'\r') => State::DotCr,
                (State::DotCr, b'\n') => {
                    self.state = State::LineStart;
                    return Some(i + 1);
                }
                (State::DotCr, other) => {
                    out.push(b'\r');
                    self.after(other, out)
                }
                (State::LineStart | State::Dot | State::Middle, other) => self.after(other, out),
                (State::AfterCr, b'\n') => {
                    out.push(b'\n');
                    State::LineStart
                }
                (State::AfterCr, other) => self.after(other, out),
            };
        }
        None
    }

    fn after(&self, b: u8, out: &mut Vec<u8>) -> State {
        out.push(b);
        if b == b'\r' {
            State::AfterCr
        } else {
            State::Middle
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminator_on_first_line_means_empty_message() {
        let mut out = Vec::new();
        assert_eq!(DotUnstuffer::new().decode(b".\r\n", &mut out), Some(3));
        assert!(out.is_empty());
    }

    #[test]
    fn split_terminator_across_chunks() {
        let mut out = Vec::new();
        let mut d = DotUnstuffer::new();
        assert_eq!(d.decode(b"a\r\n.", &mut out), None);
        assert_eq!(d.decode(b"\r", &mut out), None);
        assert_eq!(d.decode(b"\nnext", &mut out), Some(1));
        assert_eq!(out, b"a\r\n");
    }

    #[test]
    fn dot_line_not_followed_by_lf_is_data() {
        let mut out = Vec::new();
        let mut d = DotUnstuffer::new();
        assert_eq!(d.decode(b".\rx\r\n.\r\n", &mut out), Some(8));
        assert_eq!(out, b"\rx\r\n");
    }
}
