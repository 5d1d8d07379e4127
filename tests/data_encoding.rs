//! Property tests of the DATA encoder and the reply parser.

use proptest::prelude::*;
use smtpkit::proto::{DotStuffer, DotUnstuffer, ReplyParser};

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
    fn the_reply_parser_never_panics_and_stays_bounded(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..40)) {
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
            prop_assert!(parser.buffered_len() <= smtpkit::proto::limits::MAX_REPLY_BYTES + 600 + smtpkit::proto::limits::MAX_REPLY_LINE_LEN);
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
