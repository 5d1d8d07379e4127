//! Hot paths of the protocol core: reply parsing, EHLO parsing, DATA encoding.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smtpkit::proto::{Capabilities, DotStuffer, ReplyParser};

const EHLO: &[u8] = b"250-smtp.example.com at your service, [203.0.113.9]\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n\
250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250-AUTH LOGIN PLAIN XOAUTH2\r\n250 SMTPUTF8\r\n";

/// What a pipelined transaction gets back: MAIL, two RCPTs, DATA, and the final reply.
const TRANSACTION: &[u8] =
    b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as 4Xk2Lz0bJHz\r\n";

fn reply_parser(c: &mut Criterion) {
    let mut group = c.benchmark_group("reply_parser");
    for (name, input) in [("transaction", TRANSACTION), ("ehlo", EHLO)] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), input, |b, input| {
            let mut parser = ReplyParser::new();
            b.iter(|| {
                parser.feed(input);
                let mut n = 0;
                while let Ok(Some(_)) = parser.next_reply() {
                    n += 1;
                }
                n
            });
        });
    }
    group.finish();
}

fn ehlo_capabilities(c: &mut Criterion) {
    let mut parser = ReplyParser::new();
    parser.feed(EHLO);
    let reply = parser
        .next_reply()
        .ok()
        .flatten()
        .expect("valid EHLO reply");
    c.bench_function("capabilities_from_ehlo", |b| {
        b.iter(|| Capabilities::from_ehlo(&reply))
    });
}

fn dot_stuffer(c: &mut Criterion) {
    let mut group = c.benchmark_group("dot_stuffer");
    let plain: Vec<u8> = "A line of an ordinary notification message, with words.\r\n"
        .repeat(20_000)
        .into_bytes();
    let lf_only: Vec<u8> = ".leading dot and a bare LF line\n"
        .repeat(30_000)
        .into_bytes();
    for (name, body) in [("crlf_text_1MB", &plain), ("lf_and_dots_1MB", &lf_only)] {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| DotStuffer::encode_all(body))
        });
    }
    group.finish();
}

criterion_group!(benches, reply_parser, ehlo_capabilities, dot_stuffer);
criterion_main!(benches);
