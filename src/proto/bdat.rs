//! The message as BDAT (CHUNKING, RFC 3030) carries it: raw octets in counted chunks.

use std::borrow::Cow;
use std::ops::Range;

/// The message as BDAT sends it: every bare CR, bare LF and CRLF made CRLF, and the last line
/// ended with CRLF, as RFC 5322 text must be — but no dot-stuffing and no terminator (RFC 3030
/// §2: BDAT data is counted, not scanned, so a line starting with `.` goes as it is). Borrows
/// `message` when it is already in that form (the message builder's output is).
///
/// Its length is the message size RFC 1870 counts for `SIZE=`, the same as
/// [`super::DotStuffer::encode_sized`] gives.
///
/// ```
/// use smtpkit::proto::bdat_body;
/// assert_eq!(&*bdat_body(b".hidden\nlast"), b".hidden\r\nlast\r\n");
/// assert!(matches!(bdat_body(b"a\r\n.b\r\n"), std::borrow::Cow::Borrowed(_)));
/// assert_eq!(&*bdat_body(b""), b"");
/// ```
pub fn bdat_body(message: &[u8]) -> Cow<'_, [u8]> {
    if is_crlf_text(message) {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 2);
    let mut rest = message;
    while let Some(end) = memchr::memchr2(b'\r', b'\n', rest) {
        out.extend_from_slice(&rest[..end]);
        out.extend_from_slice(b"\r\n");
        let skip = if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    if !rest.is_empty() {
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
    }
    Cow::Owned(out)
}

/// True when every line of `message` ends with CRLF, with no bare CR or LF anywhere.
fn is_crlf_text(message: &[u8]) -> bool {
    if message.is_empty() {
        return true;
    }
    if !message.ends_with(b"\r\n") {
        return false;
    }
    let mut at = 0;
    while let Some(p) = memchr::memchr2(b'\r', b'\n', &message[at..]) {
        let i = at + p;
        if message[i] == b'\n' || message.get(i + 1) != Some(&b'\n') {
            return false;
        }
        at = i + 2;
    }
    true
}

/// The chunks of a body of `len` octets, at most `max_chunk` octets each (at least 1): each
/// range with whether it is the last. An empty body is one empty last chunk (`BDAT 0 LAST`,
/// RFC 3030 §2).
///
/// ```
/// use smtpkit::proto::bdat_chunks;
/// let chunks: Vec<_> = bdat_chunks(10, 4).collect();
/// assert_eq!(chunks, [(0..4, false), (4..8, false), (8..10, true)]);
/// assert_eq!(bdat_chunks(0, 4).collect::<Vec<_>>(), [(0..0, true)]);
/// ```
pub fn bdat_chunks(len: usize, max_chunk: usize) -> impl Iterator<Item = (Range<usize>, bool)> {
    let max_chunk = max_chunk.max(1);
    let count = len.div_ceil(max_chunk).max(1);
    (0..count).map(move |i| {
        let start = i * max_chunk;
        let end = (start + max_chunk).min(len);
        (start..end, i + 1 == count)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DotStuffer;

    #[test]
    fn normalises_like_the_data_encoder_without_stuffing() {
        for m in [
            &b""[..],
            b"x",
            b"a\nb",
            b"a\r\nb\r\n",
            b"a\rb\r",
            b".\r\n..\n.x",
            b"\r\n\r\n",
            b"\n",
            b"\r",
            b"a\r\r\nb",
        ] {
            let body = bdat_body(m);
            let (_, size) = DotStuffer::encode_sized(m);
            assert_eq!(body.len(), size, "{m:?}");
            assert!(body.is_empty() || body.ends_with(b"\r\n"), "{m:?}");
            assert!(is_crlf_text(&body), "{m:?}");
            // Unstuffing the DATA encoding gives the same bytes: only the dots differ.
            let mut stuffed = DotStuffer::encode_all(m);
            stuffed.truncate(stuffed.len() - 3);
            let mut unstuffed = Vec::new();
            let mut decoder = crate::proto::DotUnstuffer::new();
            stuffed.extend_from_slice(b".\r\n");
            decoder.decode(&stuffed, &mut unstuffed);
            assert_eq!(&*body, &unstuffed[..], "{m:?}");
        }
        assert!(matches!(bdat_body(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert!(matches!(bdat_body(b"a\nb\r\n"), Cow::Owned(_)));
    }

    #[test]
    fn chunks_cover_the_body_once() {
        for (len, max) in [(0, 1), (1, 1), (5, 1), (9, 3), (10, 3), (10, 100), (3, 0)] {
            let chunks: Vec<_> = bdat_chunks(len, max).collect();
            assert!(chunks.last().is_some_and(|(_, last)| *last));
            assert_eq!(chunks.iter().filter(|(_, last)| *last).count(), 1);
            let mut at = 0;
            for (r, _) in &chunks {
                assert_eq!(r.start, at);
                assert!(r.len() <= max.max(1));
                at = r.end;
            }
            assert_eq!(at, len);
        }
    }
}
