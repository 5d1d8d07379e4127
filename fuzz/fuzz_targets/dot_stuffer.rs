//! `DotStuffer` and `DotUnstuffer` round trip: chunked encoding equals `encode_all`, the
//! terminator appears exactly once at the very end, and decoding gives back the body with
//! its line ends normalised to CRLF.
//!
//! Input layout: byte 0 = how many chunk-size bytes follow (low nibble); then those bytes
//! (see `smtpkit_fuzz::chunk_size`, 0 = an empty chunk), used in a cycle to cut both the body
//! for the encoder and the wire bytes for the decoder; then the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpkit::proto::{DotStuffer, DotUnstuffer};
use smtpkit_fuzz::{chunks, take_sizes};

/// The model: every bare CR, bare LF and CRLF becomes CRLF, and a non-empty body that does
/// not end in a line end gets one.
fn normalise(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if body.get(i + 1) == Some(&b'\n') {
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

/// Lines of the normalised body that start with a dot: each needs one stuffed dot.
fn dots_to_stuff(normalised: &[u8]) -> usize {
    let mut count = 0;
    let mut at_start = true;
    for (i, &b) in normalised.iter().enumerate() {
        if at_start && b == b'.' {
            count += 1;
        }
        at_start = b == b'\n' && i > 0 && normalised[i - 1] == b'\r';
    }
    count
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fuzz_target!(|input: &[u8]| {
    let Some((&header, rest)) = input.split_first() else {
        return;
    };
    let (sizes, body) = take_sizes(rest, usize::from(header & 0x0f));

    // Encode in chunks; the result must not depend on where the body was cut.
    let whole = DotStuffer::encode_all(body);
    let mut stuffer = DotStuffer::new();
    let mut wire = Vec::new();
    for chunk in chunks(body, &sizes) {
        stuffer.encode(chunk, &mut wire);
    }
    let stuffed = stuffer.stuffed_dots();
    stuffer.finish(&mut wire);
    assert_eq!(
        wire, whole,
        "chunked encoding (sizes {sizes:?}) differs from encode_all"
    );

    let normalised = normalise(body);
    assert_eq!(stuffed, dots_to_stuff(&normalised), "stuffed dot count");
    let (sized_wire, size) = DotStuffer::encode_sized(body);
    assert_eq!(sized_wire, whole);
    assert_eq!(
        size,
        normalised.len(),
        "RFC 1870 size is the normalised body"
    );
    assert_eq!(wire.len(), normalised.len() + stuffed + 3);

    // The wire form: CRLF only, ends with the terminator, which appears nowhere earlier.
    assert!(wire.ends_with(b".\r\n"));
    if wire.len() > 3 {
        assert!(
            wire.ends_with(b"\r\n.\r\n"),
            "the body ends in CRLF before `.`"
        );
        let first = find(&wire, b"\r\n.\r\n");
        assert_eq!(first, Some(wire.len() - 5), "terminator before the end");
        assert!(!wire.starts_with(b".\r\n"), "terminator on the first line");
    } else {
        assert_eq!(wire, b".\r\n");
        assert!(body.is_empty());
    }
    for (i, &b) in wire.iter().enumerate() {
        if b == b'\r' {
            assert_eq!(wire.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
        if b == b'\n' {
            assert!(i > 0 && wire[i - 1] == b'\r', "bare LF at {i}");
        }
    }

    // Decode in chunks: the end is found exactly at the last byte, and the body comes back.
    let mut unstuffer = DotUnstuffer::new();
    let mut decoded = Vec::new();
    let mut offset = 0;
    let mut end = None;
    for chunk in chunks(&wire, &sizes) {
        assert!(end.is_none(), "decoder found the end before {offset}");
        if let Some(n) = unstuffer.decode(chunk, &mut decoded) {
            assert!(n >= 1 && n <= chunk.len());
            end = Some(offset + n);
        }
        offset += chunk.len();
    }
    assert_eq!(
        end,
        Some(wire.len()),
        "decoder must end exactly at the terminator"
    );
    assert_eq!(
        decoded, normalised,
        "decoded body differs from the normalised input"
    );
});
