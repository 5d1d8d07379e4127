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
        if !self.after_cr && is_canonical(chunk) {
            self.encode_canonical(chunk, out);
            return;
        }
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

    /// [`DotStuffer::encode`] for a chunk whose line ends are all CRLF already (what the
    /// message builder writes): only the dots at line starts change, so the lines between
    /// them are copied in long runs instead of one by one.
    fn encode_canonical(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(&last) = chunk.last() else { return };
        let mut from = 0;
        if self.at_line_start && chunk[0] == b'.' {
            out.push(b'.');
            self.stuffed += 1;
        }
        // Each "\r\n." gets its dot doubled: copy up to and including the dot, then one more.
        for at in memchr::memmem::find_iter(chunk, b"\r\n.") {
            out.extend_from_slice(&chunk[from..at + 3]);
            out.push(b'.');
            self.stuffed += 1;
            from = at + 3;
        }
        out.extend_from_slice(&chunk[from..]);
        self.at_line_start = last == b'\n';
    }

    /// How many dots were added so far for transparency.
    pub fn stuffed_dots(&self) -> usize {
        self.stuffed
    }

    /// Closes the body: CRLF if the last line is open, then `.` CRLF.
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.end_last_line(out);
        out.extend_from_slice(b".\r\n");
    }

    /// Ends the last line with CRLF if it is open: what [`DotStuffer::finish`] writes before
    /// the `.` CRLF, for a writer that sends the terminator apart.
    pub fn end_last_line(&mut self, out: &mut Vec<u8>) {
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
        self.after_cr = false;
    }

    /// The message size as RFC 1870 §4 counts it for `SIZE=` (line ends made CRLF, the last
    /// line closed; added dots and the final `.` CRLF not counted), without encoding: what
    /// [`DotStuffer::encode_sized`] reports, for a body then encoded as it is written.
    ///
    /// ```
    /// use smtpkit::proto::DotStuffer;
    /// assert_eq!(DotStuffer::message_size(b".a\nb"), 7);
    /// ```
    pub fn message_size(body: &[u8]) -> usize {
        // Counted, not walked line by line: every CR and every LF not part of a CRLF is a
        // bare one, which becomes CRLF (one more octet).
        let crs = memchr::memchr_iter(b'\r', body).count();
        let lfs = memchr::memchr_iter(b'\n', body).count();
        let crlfs = if crs == 0 || lfs == 0 {
            0
        } else {
            memchr::memmem::find_iter(body, b"\r\n").count()
        };
        let mut size = body.len() + (crs - crlfs) + (lfs - crlfs);
        // The last line, when open, is ended.
        if !body.is_empty() && !matches!(body.last(), Some(b'\r' | b'\n')) {
            size += 2;
        }
        size
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

/// Whether every CR in `bytes` starts a CRLF and every LF ends one (so nothing needs
/// normalising): counted, not scanned line by line.
fn is_canonical(bytes: &[u8]) -> bool {
    let crs = memchr::memchr_iter(b'\r', bytes).count();
    let lfs = memchr::memchr_iter(b'\n', bytes).count();
    crs == lfs && (crs == 0 || memchr::memmem::find_iter(bytes, b"\r\n").count() == crs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_without_encoding_is_the_size_of_the_encoding() {
        let mut rng = fastrand::Rng::with_seed(5);
        let alphabet = [b'a', b'.', b'\r', b'\n', b' '];
        for _ in 0..5000 {
            let body: Vec<u8> = (0..rng.usize(0..40))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let (_, size) = DotStuffer::encode_sized(&body);
            assert_eq!(DotStuffer::message_size(&body), size, "{body:?}");
        }
    }

    #[test]
    fn canonical_chunks_encode_as_the_general_path_does() {
        // Random CRLF text split at random places: the fast path (canonical chunks) and the
        // general one (the rest) together give what one byte at a time gives.
        let mut rng = fastrand::Rng::with_seed(9);
        let pieces: [&[u8]; 5] = [b"a", b".", b"\r\n", b"..", b"x.y"];
        for _ in 0..3000 {
            let body: Vec<u8> = (0..rng.usize(0..30))
                .flat_map(|_| pieces[rng.usize(..pieces.len())].iter().copied())
                .collect();
            let mut expected = Vec::new();
            let mut one_by_one = DotStuffer::new();
            for b in &body {
                one_by_one.encode(std::slice::from_ref(b), &mut expected);
            }
            one_by_one.finish(&mut expected);
            let mut got = Vec::new();
            let mut stuffer = DotStuffer::new();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let (head, tail) = rest.split_at(rng.usize(1..=rest.len()));
                stuffer.encode(head, &mut got);
                rest = tail;
            }
            stuffer.finish(&mut got);
            assert_eq!(got, expected, "{body:?}");
            assert_eq!(DotStuffer::encode_all(&body), expected, "{body:?}");
        }
    }

    #[test]
    fn ending_the_last_line_apart_gives_the_same_bytes() {
        for body in [&b"a\r\n.b"[..], b"", b"x\r", b"y\n", b".\r\n"] {
            let mut stuffer = DotStuffer::new();
            let mut out = Vec::new();
            stuffer.encode(body, &mut out);
            stuffer.end_last_line(&mut out);
            out.extend_from_slice(b".\r\n");
            assert_eq!(out, DotStuffer::encode_all(body), "{body:?}");
        }
    }

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
