//! Property tests of the DATA encoder and the reply parser.

use proptest::prelude::*;
use smtpkit::proto::limits::{MAX_REPLY_BYTES, MAX_REPLY_LINES, MAX_REPLY_LINE_LEN};
use smtpkit::proto::{DotStuffer, DotUnstuffer, Reply, ReplyError, ReplyParser};

/// What the receiver must get back: every line end as CRLF, and a final CRLF when the
/// message does not end with one (RFC 5321 §4.1.1.4).
fn normalise(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 2);
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Bytes rich in the characters that matter: CR, LF and dots.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b'\r'),
            Just(b'\n'),
            Just(b'.'),
            Just(b'a'),
            any::<u8>()
        ],
        0..300,
    )
}

fn encode_in_chunks(input: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stuffer = DotStuffer::new();
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    for cut in cuts {
        stuffer.encode(&input[start..cut], &mut out);
        start = cut;
    }
    stuffer.encode(&input[start..], &mut out);
    stuffer.finish(&mut out);
    out
}

/// The text of a reply line: `len` printable ASCII characters starting from `seed`.
fn line_text(len: usize, seed: u8) -> String {
    (0..len)
        .map(|i| char::from(b' ' + ((usize::from(seed - b' ') + i) % 95) as u8))
        .collect()
}

/// `code-text` lines then `code text` on the last, CRLF after each.
fn multi_line_reply(code: u16, lines: &[String]) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        wire.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
    }
    wire
}

/// What the parser must say about `lines` as one reply: the error of the first limit the
/// reply crosses, line by line, or `None` when it stays within all of them.
fn limit_crossed(lines: &[String]) -> Option<ReplyError> {
    let mut bytes = 0;
    for (i, line) in lines.iter().enumerate() {
        let len = 4 + line.len() + 2;
        assert!(len <= MAX_REPLY_LINE_LEN, "the generator keeps lines short");
        bytes += len;
        if i + 1 > MAX_REPLY_LINES {
            return Some(ReplyError::TooManyLines);
        }
        if bytes > MAX_REPLY_BYTES {
            return Some(ReplyError::TooLarge);
        }
    }
    None
}

/// Feeds `wire` in `chunk`-byte reads; returns every reply and the error, if any, that ended
/// parsing. Checks after each read that the parser holds no more than one reply's worth.
fn parse_in_reads(wire: &[u8], chunk: usize) -> (Vec<Reply>, Option<ReplyError>) {
    let mut parser = ReplyParser::new();
    let mut replies = Vec::new();
    for piece in wire.chunks(chunk) {
        parser.feed(piece);
        loop {
            match parser.next_reply() {
                Ok(Some(reply)) => replies.push(reply),
                Ok(None) => break,
                Err(e) => return (replies, Some(e)),
            }
        }
        // What is left is at most a reply within the byte limit plus one unfinished line.
        assert!(
            parser.buffered_len() <= MAX_REPLY_BYTES + MAX_REPLY_LINE_LEN,
            "parser holds {} bytes",
            parser.buffered_len()
        );
    }
    assert_eq!(parser.buffered_len(), 0, "nothing left over");
    (replies, None)
}

#[test]
fn multi_line_reply_limits_are_exact() {
    let code = 250;
    // Exactly MAX_REPLY_LINES lines is fine, one more is not.
    let lines: Vec<String> = (0..MAX_REPLY_LINES).map(|i| format!("l{i}")).collect();
    let (replies, err) = parse_in_reads(&multi_line_reply(code, &lines), 1000);
    assert_eq!(err, None);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].lines(), &lines[..]);
    let mut more = lines.clone();
    more.push("one too many".into());
    let (replies, err) = parse_in_reads(&multi_line_reply(code, &more), 1000);
    assert_eq!((replies.len(), err), (0, Some(ReplyError::TooManyLines)));

    // Exactly MAX_REPLY_BYTES bytes (CRLFs included) is fine, one byte more is not.
    let per_line = MAX_REPLY_BYTES / 64;
    let mut lines: Vec<String> = (0..64).map(|_| "b".repeat(per_line - 6)).collect();
    let (replies, err) = parse_in_reads(&multi_line_reply(code, &lines), 1000);
    assert_eq!(multi_line_reply(code, &lines).len(), MAX_REPLY_BYTES);
    assert_eq!(err, None);
    assert_eq!(replies[0].lines(), &lines[..]);
    lines[63].push('b');
    let (replies, err) = parse_in_reads(&multi_line_reply(code, &lines), 1000);
    assert_eq!((replies.len(), err), (0, Some(ReplyError::TooLarge)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn unstuffing_the_encoding_gives_the_normalised_input(input in body()) {
        let wire = DotStuffer::encode_all(&input);
        let mut decoded = Vec::new();
        let end = DotUnstuffer::new().decode(&wire, &mut decoded);
        prop_assert_eq!(end, Some(wire.len()), "the terminator is the last thing, and there is one");
        prop_assert_eq!(decoded, normalise(&input));
    }

    #[test]
    fn no_end_of_data_before_the_end(input in body()) {
        let wire = DotStuffer::encode_all(&input);
        prop_assert!(wire.ends_with(b".\r\n"));
        let body = &wire[..wire.len() - 3];
        // The terminator is CRLF "." CRLF, or "." CRLF on the very first line.
        let early = body.windows(5).any(|w| w == b"\r\n.\r\n") || body.starts_with(b".\r\n");
        prop_assert!(!early, "early terminator in {:?}", String::from_utf8_lossy(&wire));
        prop_assert!(body.is_empty() || body.ends_with(b"\r\n"), "exactly one CRLF before the final dot");
        // Only CRLF line ends on the wire.
        for (i, &b) in wire.iter().enumerate() {
            if b == b'\n' { prop_assert!(i > 0 && wire[i - 1] == b'\r'); }
            if b == b'\r' { prop_assert_eq!(wire.get(i + 1), Some(&b'\n')); }
        }
    }

    #[test]
    fn chunked_encoding_equals_whole_encoding(input in body(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        prop_assert_eq!(encode_in_chunks(&input, &cuts), DotStuffer::encode_all(&input));
    }

    #[test]
    fn encode_sized_counts_what_rfc_1870_counts(input in body()) {
        let (wire, size) = DotStuffer::encode_sized(&input);
        prop_assert_eq!(size, normalise(&input).len());
        prop_assert_eq!(wire, DotStuffer::encode_all(&input));
    }

    #[test]
    fn the_reply_parser_never_panics_on_arbitrary_bytes(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..40)) {
        let mut parser = ReplyParser::new();
        for chunk in &chunks {
            parser.feed(chunk);
            loop {
                match parser.next_reply() {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
        }
    }

    #[test]
    fn multi_line_replies_parse_exactly_within_the_limits_and_fail_beyond(
        code in (2u16..=5).prop_map(|c| c * 100 + 50),
        // Line counts around MAX_REPLY_LINES and lengths that cross MAX_REPLY_BYTES or not.
        lines in prop_oneof![Just(60usize), Just(400), Just(1000)].prop_flat_map(|max_len| {
            prop_oneof![1usize..=300, (MAX_REPLY_LINES - 3)..=(MAX_REPLY_LINES + 3)]
                .prop_flat_map(move |n| prop::collection::vec((0..=max_len, b' '..=b'~'), n))
        }),
        chunk in prop_oneof![1usize..=16, 17usize..=5000, Just(usize::MAX)],
    ) {
        let lines: Vec<String> = lines.into_iter().map(|(len, seed)| line_text(len, seed)).collect();
        let mut wire = multi_line_reply(code, &lines);
        // A second reply behind it: a valid first reply must end exactly where it should.
        wire.extend_from_slice(b"221 2.0.0 bye\r\n");
        let (replies, err) = parse_in_reads(&wire, chunk.min(wire.len()));
        match limit_crossed(&lines) {
            None => {
                prop_assert_eq!(err, None);
                prop_assert_eq!(replies.len(), 2);
                prop_assert_eq!(replies[0].code().value(), code);
                prop_assert_eq!(replies[0].lines(), &lines[..]);
                prop_assert_eq!(replies[1].code().value(), 221);
                prop_assert_eq!(replies[1].lines(), ["2.0.0 bye"]);
            }
            Some(expected) => {
                prop_assert_eq!(err, Some(expected));
                prop_assert!(replies.is_empty(), "no reply comes out of an oversized one");
            }
        }
    }

    #[test]
    fn replies_parse_the_same_however_they_are_split(
        code in 2u16..=5, lines in prop::collection::vec("[ -~]{0,40}", 1..6), cut in any::<usize>()
    ) {
        let code = code * 100 + 50;
        let mut wire = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            wire.extend_from_slice(format!("{code}{sep}{line}\r\n").as_bytes());
        }
        let cut = cut % (wire.len() + 1);
        let mut whole = ReplyParser::new();
        whole.feed(&wire);
        let expected = whole.next_reply().expect("valid").expect("complete");
        prop_assert_eq!(expected.lines(), &lines[..]);
        let mut split = ReplyParser::new();
        split.feed(&wire[..cut]);
        let first = split.next_reply().expect("valid");
        prop_assert!(first.is_none() || cut == wire.len());
        split.feed(&wire[cut..]);
        let got = first.or_else(|| split.next_reply().expect("valid")).expect("complete");
        prop_assert_eq!(got, expected);
    }
}
