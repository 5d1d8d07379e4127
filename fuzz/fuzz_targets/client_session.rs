//! The client state machine against a fuzzed server byte stream, over an in-memory duplex.
//!
//! A spawned server task writes the fuzzed bytes into its end of a `tokio::io::duplex` and
//! reads and discards what the client sends. The client connects (greeting, EHLO), optionally
//! authenticates, sends one small message to two recipients (or, in batch mode, three messages
//! with `send_many`), then NOOP and QUIT. Errors are expected and ignored, but nothing may
//! panic or hang, and a message reported sent must have had its recipients and final reply
//! accepted. Time is tokio's paused clock, so the 50 ms timeouts and the 5 s QUIT grace pass
//! instantly, and the whole session is bounded by [`SESSION_LIMIT`].
//!
//! Input layout:
//! - byte 0, flags: bits 0-2 = how many chunk-size bytes follow; bit 3 = the server closes its
//!   side after sending everything (else it stays silent); bit 4 = disable pipelining;
//!   bit 5 = record a transcript; bit 6 = an 8-bit message; bit 7 = AUTH first;
//! - byte 1: bits 0-1 = AUTH mechanism (auto, PLAIN, LOGIN, XOAUTH2); bit 2 = batch mode;
//!   bits 3-7 = pause in milliseconds between server chunks (0 = just yield), so some chunks
//!   land after a timeout;
//! - the chunk-size bytes (see `smtpkit_fuzz::chunk_size`), used in a cycle;
//! - the bytes the server sends.
//!
//! To see what an input does: `SMTPKIT_FUZZ_DEBUG=1` prints each step's result with its tokio
//! time, and the transcript.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smtpkit::client::{
    ClientOptions, Connection, Credentials, Envelope, Security, Timeouts, TransactionReport,
    Transcript,
};
use smtpkit::proto::{Address, ClientName, Mechanism, Secret};
use smtpkit_fuzz::{chunks, take_sizes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on one whole session, in (paused) tokio time. A session that honours its timeouts
/// needs at most about 20 round trips of 2 x 50 ms, plus 2 x 5 s of QUIT grace after a `554`
/// greeting (flush and read); 30 s leaves room, and costs nothing on the paused clock.
const SESSION_LIMIT: Duration = Duration::from_secs(30);
/// Each of the client's timeouts.
const STEP: Duration = Duration::from_millis(50);
/// The most the fake server reads from the client before it stops reading.
const MAX_CLIENT_BYTES: usize = 256 * 1024;

const MESSAGE: &[u8] =
    b"From: a@example.org\r\nSubject: fuzz\r\n\r\nhello\n.dot line\r\n..two\rlast line";
const MESSAGE_8BIT: &[u8] = b"Subject: caf\xc3\xa9\r\n\r\n\xc3\xa9t\xc3\xa9\r\n.\r\n";

struct Plan<'a> {
    close_after: bool,
    disable_pipelining: bool,
    transcript: bool,
    eight_bit: bool,
    batch: bool,
    auth: Option<Option<Mechanism>>,
    pause: Duration,
    sizes: Vec<usize>,
    server_bytes: &'a [u8],
}

fn plan(input: &[u8]) -> Option<Plan<'_>> {
    let (&flags, rest) = input.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let (sizes, server_bytes) = take_sizes(rest, usize::from(flags & 0x07));
    let mechanism = match second & 0x03 {
        0 => None,
        1 => Some(Mechanism::Plain),
        2 => Some(Mechanism::Login),
        _ => Some(Mechanism::XOAuth2),
    };
    Some(Plan {
        close_after: flags & 0x08 != 0,
        disable_pipelining: flags & 0x10 != 0,
        transcript: flags & 0x20 != 0,
        eight_bit: flags & 0x40 != 0,
        batch: second & 0x04 != 0,
        auth: (flags & 0x80 != 0).then_some(mechanism),
        pause: Duration::from_millis(u64::from(second >> 3)),
        sizes,
        server_bytes,
    })
}

/// `SMTPKIT_FUZZ_DEBUG=1` prints each step's result and the transcript, to triage an input.
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("SMTPKIT_FUZZ_DEBUG").is_some())
}

/// Tokio time since the session started, for the debug output.
fn at(start: tokio::time::Instant) -> String {
    format!("[{:?}]", start.elapsed())
}

async fn client(stream: tokio::io::DuplexStream, plan: &Plan<'_>) {
    let start = tokio::time::Instant::now();
    let (transcript, buffer) = Transcript::buffer();
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
        transcript: (plan.transcript || debug()).then_some(transcript),
        allow_insecure_auth: true,
        disable_pipelining: plan.disable_pipelining,
        ..ClientOptions::default()
    };

    let mut conn = match Connection::from_stream(stream, options).await {
        Ok(conn) => conn,
        Err(e) => {
            let _ = (e.to_string(), e.kind(), e.stage(), e.reply(), e.hint());
            if debug() {
                eprintln!("{} connect: {e}", at(start));
                eprintln!("{}", buffer.lines().join("\n"));
            }
            return;
        }
    };
    let caps = conn.capabilities();
    let _ = (
        caps.size_limit(),
        caps.auth_mechanisms().len(),
        conn.is_usable(),
    );
    let _ = format!("{conn:?}");

    if let Some(mechanism) = plan.auth {
        let credentials = Credentials::new("user@fuzz.example", Secret::new("p4ss word"))
            .expect("valid credentials");
        let result = conn.authenticate(&credentials, mechanism).await;
        if debug() {
            eprintln!("{} authenticate: {result:?}", at(start));
        }
        if let Err(e) = result {
            let _ = (e.to_string(), e.is_transient(), e.is_permanent());
        }
    }

    let from = Address::new("sender@fuzz.example").expect("valid address");
    let to = vec![
        Address::new("one@fuzz.example").expect("valid address"),
        Address::new("two@other.example").expect("valid address"),
    ];
    let envelope = Envelope::new(from.clone(), to.clone()).expect("valid envelope");
    let message = if plan.eight_bit {
        MESSAGE_8BIT
    } else {
        MESSAGE
    };
    if plan.batch {
        let single = Envelope::new(from, to[1..].to_vec()).expect("valid envelope");
        let batch: [(&Envelope, &[u8]); 3] = [
            (&envelope, message),
            (&single, MESSAGE_8BIT),
            (&envelope, b""),
        ];
        let results = conn.send_many(&batch).await;
        if debug() {
            eprintln!("{} send_many: {results:?}", at(start));
        }
        assert_eq!(results.len(), batch.len(), "one result per message");
        for (result, (envelope, _)) in results.into_iter().zip(batch) {
            check_sent(result, envelope);
        }
    } else {
        let sent = conn.send_mail(&envelope, message).await;
        if debug() {
            eprintln!("{} send_mail: {sent:?}", at(start));
        }
        check_sent(sent, &envelope);
    }
    let noop = conn.noop().await;
    if debug() {
        eprintln!("{} noop: {noop:?}", at(start));
    }
    let quit = conn.quit().await;
    let lines = buffer.lines();
    if debug() {
        eprintln!("{} quit: {quit:?}", at(start));
        eprintln!("{}", lines.join("\n"));
    }
}

/// A message reported sent had its MAIL, at least one RCPT and its final reply accepted, and
/// has one recipient result per envelope recipient. Errors just have to display.
fn check_sent(sent: smtpkit::Result<TransactionReport>, envelope: &Envelope) {
    match sent {
        Ok(report) => {
            assert!(report.mail_reply().is_positive(), "sent after MAIL refused");
            assert!(
                report.data_reply().is_positive(),
                "sent without a 2yz after the body"
            );
            assert_eq!(report.recipients().len(), envelope.to().len());
            assert!(report.recipients().iter().any(|r| r.accepted()));
            let rejected = report.rejected().count();
            assert!(rejected < envelope.to().len());
            let _ = report.queue_id();
        }
        Err(e) => {
            let _ = (e.to_string(), e.kind(), e.stage(), e.reply(), e.hint());
            let _ = (e.recipients().len(), e.is_outcome_unknown());
            let _ = (
                e.is_timeout(),
                e.is_tls(),
                e.is_transient(),
                e.is_permanent(),
            );
        }
    }
}

/// What the fake server does, owned, so that it can run as its own task.
struct Server {
    chunks: Vec<Vec<u8>>,
    pause: Duration,
    close_after: bool,
}

impl Server {
    fn new(plan: &Plan<'_>) -> Server {
        Server {
            chunks: chunks(plan.server_bytes, &plan.sizes)
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect(),
            pause: plan.pause,
            close_after: plan.close_after,
        }
    }
}

/// Writes the fuzzed bytes chunk by chunk while reading and discarding what the client sends
/// (up to [`MAX_CLIENT_BYTES`]); never returns, so the stream stays open until the session ends.
async fn server(stream: tokio::io::DuplexStream, plan: Server) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        for chunk in &plan.chunks {
            if writer.write_all(chunk).await.is_err() {
                return;
            }
            if plan.pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(plan.pause).await;
            }
        }
        if plan.close_after {
            let _ = writer.shutdown().await;
        } else {
            // Stay open and silent: the client must give up on its own timeouts.
            std::future::pending::<()>().await;
        }
    };
    let read = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < MAX_CLIENT_BYTES {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
        // Stop reading, but keep the stream alive: a client that keeps writing now blocks.
        std::future::pending::<()>().await;
    };
    tokio::join!(write, read);
}

fuzz_target!(|input: &[u8]| {
    let Some(plan) = plan(input) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client_side, server_side) = tokio::io::duplex(64 * 1024);
        let server_task = tokio::spawn(server(server_side, Server::new(&plan)));
        let start = tokio::time::Instant::now();
        let finished = tokio::time::timeout(SESSION_LIMIT, client(client_side, &plan)).await;
        server_task.abort();
        if debug() {
            eprintln!("session took {:?} of tokio time", start.elapsed());
        }
        // Every wait of the client is bounded, so a session that needs more than
        // SESSION_LIMIT of tokio time means a missing or broken timeout.
        assert!(
            finished.is_ok(),
            "client session did not finish within {SESSION_LIMIT:?} of tokio time"
        );
    });
});
