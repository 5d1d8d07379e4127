//! `ReplyParser` must give the same replies (or the same error) however the bytes are split,
//! and must never hold more than the named limits allow.
//!
//! Input layout:
//! - byte 0: low nibble = how many chunk-size bytes follow (0 = feed everything at once);
//!   bit 7 set = repeat the data `1 << ((byte >> 4) & 7)` times (so the fuzzer can reach the
//!   64 KiB reply limit with a short input), capped at [`MAX_DATA`] bytes;
//! - then the chunk-size bytes (see `smtpkit_fuzz::chunk_size`), used in a cycle;
//! - then the bytes the "server" sends.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpkit::proto::limits::{MAX_REPLY_BYTES, MAX_REPLY_LINES, MAX_REPLY_LINE_LEN};
use smtpkit::proto::{Reply, ReplyError, ReplyParser};
use smtpkit_fuzz::{chunks, take_sizes};

/// Upper bound on the data after repetition: above `MAX_REPLY_BYTES`, so `TooLarge` and
/// `TooManyLines` are reachable, yet small enough to keep runs fast.
const MAX_DATA: usize = MAX_REPLY_BYTES + 32 * 1024;

/// What parsing a stream gave: the replies in order, then the error that stopped it, if any,
/// and how many bytes were left buffered at the end.
#[derive(Debug, PartialEq)]
struct Outcome {
    replies: Vec<Reply>,
    error: Option<ReplyError>,
    left: usize,
}

fn check_bound(parser: &ReplyParser, chunk_len: usize, when: &str) {
    let bound = MAX_REPLY_BYTES + MAX_REPLY_LINE_LEN + chunk_len;
    let held = parser.buffered_len();
    assert!(
        held < bound,
        "buffered_len {held} >= {bound} (MAX_REPLY_BYTES + MAX_REPLY_LINE_LEN + chunk of {chunk_len}) {when}"
    );
}

fn check_reply(reply: &Reply) {
    let code = reply.code();
    assert!((200..=559).contains(&code.value()), "code {code}");
    assert!(!reply.lines().is_empty(), "a reply has at least one line");
    assert!(reply.lines().len() <= MAX_REPLY_LINES);
    let total: usize = reply.lines().iter().map(String::len).sum();
    // Lossy decoding may grow a byte into U+FFFD (3 bytes), but never past that.
    assert!(total <= 3 * MAX_REPLY_BYTES);
    if let Some(enhanced) = reply.enhanced_code() {
        assert_eq!(
            enhanced.class,
            code.class(),
            "enhanced class matches the code"
        );
        assert!(enhanced.subject <= 999 && enhanced.detail <= 999);
        let _ = enhanced.to_string();
    }
    let shown = reply.to_string();
    assert!(shown.starts_with(&code.to_string()));
    let _ = reply.message();
    let _ = (
        reply.is_positive(),
        reply.is_transient(),
        reply.is_permanent(),
    );
}

/// Feeds `parts` one after another, draining replies after each, until an error.
fn run(parts: &[&[u8]]) -> Outcome {
    let mut parser = ReplyParser::new();
    let mut replies = Vec::new();
    for part in parts {
        parser.feed(part);
        check_bound(&parser, part.len(), "after feed");
        loop {
            let next = parser.next_reply();
            check_bound(&parser, part.len(), "after next_reply");
            match next {
                Ok(Some(reply)) => {
                    check_reply(&reply);
                    replies.push(reply);
                }
                Ok(None) => break,
                Err(error) => {
                    let _ = error.to_string();
                    return Outcome {
                        replies,
                        error: Some(error),
                        left: 0,
                    };
                }
            }
        }
    }
    Outcome {
        replies,
        error: None,
        left: parser.buffered_len(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&header, rest)) = input.split_first() else {
        return;
    };
    let (sizes, body) = take_sizes(rest, usize::from(header & 0x0f));
    let data: Vec<u8> = if header & 0x80 != 0 && !body.is_empty() {
        let times = 1usize << ((header >> 4) & 7);
        let mut data = body.repeat(times);
        data.truncate(MAX_DATA);
        data
    } else {
        body.to_vec()
    };

    let whole = run(&[&data]);
    let split = run(&chunks(&data, &sizes));
    assert_eq!(
        split, whole,
        "split feeding (sizes {sizes:?}) differs from feeding whole"
    );
});
