//! The DATA encoder: line-end normalisation, dot-stuffing and the end-of-data marker.

/// Encodes a message body for the DATA command, streaming, chunk by chunk.
///
/// - Every bare CR, bare LF and CRLF becomes CRLF (RFC 5321 §2.3.8: lines end in CRLF only).
/// - A `.` at the start of a line is doubled (RFC 5321 §4.5.2, transparency).
/// - [`DotStuffer::finish`] ends the last line if it is open and writes `.` CRLF, so the body
///   ends with exactly one CRLF before the final `.` (RFC 5321 §4.1.1.4).
///
/// ```
/// use smtpkit::proto::DotStuffer;
/// assert_eq!(DotStuffer::encode_all(b".hidden\nlast"), b"..hidden\r\nlast\r\n.\r\n");
/// assert_eq!(DotStuffer::encode_all(b"."), b"..\r\n.\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct DotStuffer {
    at_line_start: bool,
    after_cr: bool,
    stuffed: usize,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer::new()
    }
}

impl DotStuffer {
    /// A fresh encoder, at the start of the first line.
    pub fn new() -> DotStuffer {
        DotStuffer {
            at_line_start: true,
            after_cr: false,
            stuffed: 0,
        }
    }

    /// Encodes `chunk`, appending to `out`. A CR at the end of one chunk and an LF at the start
    /// of the next are one line end.
    pub fn encode(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 32 + 8);
        let mut i = 0;
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                i = 1;
            }
        }
        while i < chunk.len() {
            if self.at_line_start && chunk[i] == b'.' {
                out.push(b'.');
                self.stuffed += 1;
            }
            self.at_line_start = false;
            let end = memchr::memchr2(b'\r', b'\n', &chunk[i..]).map_or(chunk.len(), |p| i + p);
            out.extend_from_slice(&chunk[i..end]);
            if end == chunk.len() {
                return;
            }
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
            i = end + 1;
            if chunk[end] == b'\r' {
                match chunk.get(i) {
                    Some(b'\n') => i += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
    }

    /// How many dots were added so far for transparency.
    pub fn stuffed_dots(&self) -> usize {
        self.stuffed
    }

    /// Closes the body: CRLF if the last line is open, then `.` CRLF.
    pub fn finish(self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }

    /// Encodes a whole body, terminator included.
    pub fn encode_all(body: &[u8]) -> Vec<u8> {
        DotStuffer::encode_sized(body).0
    }

    /// Encodes a whole body, terminator included, and gives the message size as RFC 1870 §4
    /// counts it for `SIZE=`: CRLF line ends included, added dots and the final `.` CRLF not.
    ///
    /// ```
    /// use smtpkit::proto::DotStuffer;
    /// let (wire, size) = DotStuffer::encode_sized(b".a\nb");
    /// assert_eq!(wire, b"..a\r\nb\r\n.\r\n");
    /// assert_eq!(size, 7);
    /// ```
    pub fn encode_sized(body: &[u8]) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(body.len() + body.len() / 32 + 8);
        let mut stuffer = DotStuffer::new();
        stuffer.encode(body, &mut out);
        let stuffed = stuffer.stuffed_dots();
        stuffer.finish(&mut out);
        let size = out.len() - stuffed - 3;
        (out, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b".", b"..\r\n.\r\n"),
            (b"..", b"...\r\n.\r\n"),
            (b"a", b"a\r\n.\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b"a\n", b"a\r\n.\r\n"),
            (b"a\r", b"a\r\n.\r\n"),
            (b"a\rb\nc\r\nd", b"a\r\nb\r\nc\r\nd\r\n.\r\n"),
            (b"\n\n", b"\r\n\r\n.\r\n"),
            (b"\r\r\n", b"\r\n\r\n.\r\n"),
            (b"x\r\n.\r\ny", b"x\r\n..\r\ny\r\n.\r\n"),
            (b".a\n.b\r.c", b"..a\r\n..b\r\n..c\r\n.\r\n"),
            (b"mid.dot\r\n", b"mid.dot\r\n.\r\n"),
            (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
        ];
        for (input, wire) in cases {
            assert_eq!(
                DotStuffer::encode_all(input),
                *wire,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_line_end() {
        let mut out = Vec::new();
        let mut s = DotStuffer::new();
        s.encode(b"line\r", &mut out);
        s.encode(b"\n.next", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"line\r\n..next\r\n.\r\n");
    }

    #[test]
    fn dot_at_chunk_boundary_line_start_is_stuffed() {
        let mut out = Vec::new();
        let mut s = DotStuffer::new();
        s.encode(b"a\n", &mut out);
        s.encode(b".", &mut out);
        s.encode(b"", &mut out);
        s.encode(b".", &mut out);
        s.finish(&mut out);
        assert_eq!(out, b"a\r\n...\r\n.\r\n");
    }
}
