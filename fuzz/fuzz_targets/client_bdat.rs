//! The client's BDAT path (CHUNKING, RFC 3030) against a fuzzed server byte stream: a batch of
//! messages sent with `send_many` through a window of messages in flight, over an in-memory
//! duplex, with an optional final-dot gate that refuses one message.
//!
//! Checked, whatever the server says: one result per message; a message reported sent had
//! MAIL, a recipient and its last chunk accepted; an outcome-unknown message is at the end of
//! its data; a message the gate refused is never sent nor unknown; and what the client wrote
//! is well framed: command lines of known verbs, each `BDAT n` followed by exactly `n` octets
//! (checked when no DATA was sent, which a server without CHUNKING gets). Time is tokio's
//! paused clock, so timeouts cost nothing.
//!
//! Input layout:
//! - byte 0, flags: bits 0-2 = how many chunk-size bytes follow; bit 3 = the server closes its
//!   side after sending everything; bit 4 = a gate refuses one message; bits 5-6 = which one
//!   (0-3); bit 7 = the server's bytes start with a built-in greeting and EHLO offering
//!   PIPELINING and CHUNKING (so the fuzzer need not find them);
//! - byte 1: bits 0-1 = most messages in flight minus one (1-4); bits 2-5 = largest chunk
//!   (`1 + 4 * n` octets); bits 6-7 = messages in the batch minus one (1-4);
//! - the chunk-size bytes (see `smtpkit_fuzz::chunk_size`), used in a cycle;
//! - the bytes the server sends.

#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smtpkit::client::{
    with_final_dot_gate, Chunking, ClientOptions, Connection, Envelope, FinalDotGate,
    GateFuture, Security, Timeouts,
};
use smtpkit::proto::{Address, ClientName};
use smtpkit::{Error, ErrorKind, Stage};
use smtpkit_fuzz::{chunks, take_sizes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SESSION_LIMIT: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_millis(50);
const MAX_CLIENT_BYTES: usize = 256 * 1024;

const PREFIX: &[u8] = b"220 mx.fuzz.example ESMTP\r\n250-mx.fuzz.example\r\n250-PIPELINING\r\n\
250-CHUNKING\r\n250-8BITMIME\r\n250 SIZE 100000\r\n";

const MESSAGES: [&[u8]; 4] = [
    b"Subject: one\r\n\r\n.dot line\r\n..two\r\n.\r\nend\r\n",
    b"Subject: two\n\nbare LF\n.x",
    b"",
    b"Subject: four\r\n\r\nsome more text to need several chunks\r\n",
];

struct Plan<'a> {
    close_after: bool,
    refuse: Option<usize>,
    in_flight: usize,
    chunk: usize,
    messages: usize,
    sizes: Vec<usize>,
    server_bytes: Vec<u8>,
    _input: &'a [u8],
}

fn plan(input: &[u8]) -> Option<Plan<'_>> {
    let (&flags, rest) = input.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let (sizes, bytes) = take_sizes(rest, usize::from(flags & 0x07));
    let mut server_bytes = Vec::new();
    if flags & 0x80 != 0 {
        server_bytes.extend_from_slice(PREFIX);
    }
    server_bytes.extend_from_slice(bytes);
    Some(Plan {
        close_after: flags & 0x08 != 0,
        refuse: (flags & 0x10 != 0).then_some(usize::from((flags >> 5) & 0x03)),
        in_flight: usize::from(second & 0x03) + 1,
        chunk: 1 + 4 * usize::from((second >> 2) & 0x0F),
        messages: usize::from(second >> 6) + 1,
        sizes,
        server_bytes,
        _input: input,
    })
}

/// Refuses its `refuse`-th call.
struct Gate {
    calls: AtomicUsize,
    refuse: usize,
}

impl FinalDotGate for Gate {
    fn before_final_dot(&self) -> GateFuture<'_> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) == self.refuse {
                return Err(Error::new(ErrorKind::Io, Stage::Body, "gate refused"));
            }
            Ok(())
        })
    }
}

async fn client(stream: tokio::io::DuplexStream, plan: &Plan<'_>) {
    let options = ClientOptions {
        security: Security::None,
        timeouts: Timeouts {
            connect: STEP,
            greeting: STEP,
            command: STEP,
            data_start: STEP,
            data_block: STEP,
            data_end: STEP,
        },
        client_name: Some(ClientName::new("client.fuzz.example").expect("valid name")),
        chunking: Chunking {
            max_messages_in_flight: plan.in_flight,
            max_chunk_size: plan.chunk,
            ..Chunking::default()
        },
        ..ClientOptions::default()
    };
    let Ok(mut conn) = Connection::from_stream(stream, options).await else {
        return;
    };
    let env = Envelope::new(
        Address::new("sender@fuzz.example").expect("valid"),
        vec![
            Address::new("one@fuzz.example").expect("valid"),
            Address::new("two@other.example").expect("valid"),
        ],
    )
    .expect("envelope");
    let batch: Vec<(&Envelope, &[u8])> = MESSAGES[..plan.messages]
        .iter()
        .map(|m| (&env, *m))
        .collect();
    let gate = plan.refuse.map(|refuse| {
        Arc::new(Gate {
            calls: AtomicUsize::new(0),
            refuse,
        })
    });
    let results = match &gate {
        Some(g) => with_final_dot_gate(g.clone(), conn.send_many(&batch)).await,
        None => conn.send_many(&batch).await,
    };
    assert_eq!(results.len(), batch.len(), "one result per message");
    for result in &results {
        match result {
            Ok(report) => {
                assert!(report.mail_reply().is_positive(), "sent after MAIL refused");
                assert!(report.data_reply().is_positive(), "sent without a 2yz at the end");
                assert!(report.recipients().iter().any(|r| r.accepted()));
                assert_eq!(report.recipients().len(), env.to().len());
            }
            Err(e) => {
                if e.is_outcome_unknown() {
                    assert_eq!(e.stage(), Stage::DataEnd);
                }
                if e.message() == "gate refused" {
                    assert!(!e.is_outcome_unknown() && e.kind() == ErrorKind::Io);
                }
                let _ = (e.to_string(), e.hint(), e.is_transient(), e.is_permanent());
            }
        }
    }
    let _ = conn.noop().await;
    let _ = conn.quit().await;
}

/// Checks the framing of what the client wrote: command lines of known verbs, and after each
/// `BDAT n` exactly `n` octets (the last ones may be cut off where the server stopped
/// reading). Skipped once a DATA was sent: its body is not framed by counts.
fn check_framing(mut sent: &[u8]) {
    const VERBS: [&str; 7] = ["EHLO", "HELO", "MAIL", "RCPT", "RSET", "NOOP", "QUIT"];
    while !sent.is_empty() {
        let Some(end) = sent.windows(2).position(|w| w == b"\r\n") else {
            return;
        };
        let line = std::str::from_utf8(&sent[..end]).expect("command lines are ASCII");
        sent = &sent[end + 2..];
        if line == "DATA" {
            return;
        }
        if let Some(args) = line.strip_prefix("BDAT ") {
            let size = args.strip_suffix(" LAST").unwrap_or(args);
            let size: usize = size.parse().expect("BDAT <size> [LAST]");
            assert!(size > 0 || args.ends_with(" LAST"), "BDAT 0 without LAST");
            sent = &sent[size.min(sent.len())..];
            continue;
        }
        let verb = line.split(' ').next().unwrap_or_default();
        assert!(VERBS.contains(&verb), "unexpected command line {line:?}");
    }
}

struct Server {
    chunks: Vec<Vec<u8>>,
    close_after: bool,
    received: Arc<Mutex<Vec<u8>>>,
}

async fn server(stream: tokio::io::DuplexStream, plan: Server) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let received = plan.received.clone();
    let write = async {
        for chunk in &plan.chunks {
            if writer.write_all(chunk).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
        if plan.close_after {
            let _ = writer.shutdown().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut r = received.lock().expect("lock");
                    if r.len() + n > MAX_CLIENT_BYTES {
                        break;
                    }
                    r.extend_from_slice(&buf[..n]);
                }
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::join!(write, read);
}

fuzz_target!(|input: &[u8]| {
    let Some(plan) = plan(input) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let received = Arc::new(Mutex::new(Vec::new()));
    let server_plan = Server {
        chunks: chunks(&plan.server_bytes, &plan.sizes)
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect(),
        close_after: plan.close_after,
        received: received.clone(),
    };
    runtime.block_on(async {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let server_task = tokio::spawn(server(server_end, server_plan));
        let finished = tokio::time::timeout(SESSION_LIMIT, client(client_end, &plan)).await;
        assert!(finished.is_ok(), "the session outlived {SESSION_LIMIT:?}");
        server_task.abort();
    });
    let sent = received.lock().expect("lock").clone();
    check_framing(&sent);
});
