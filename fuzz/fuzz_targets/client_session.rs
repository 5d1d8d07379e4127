//! The client state machine against a fuzzed server byte stream, over an in-memory duplex.
//!
//! The client connects (greeting, EHLO), optionally authenticates, sends one small message to
//! two recipients, then NOOP and QUIT; every result is ignored (errors are expected), but
//! nothing may panic or hang. Time is tokio's paused clock, so the 50 ms timeouts and the 5 s
//! QUIT grace pass instantly, and the whole session is bounded by [`SESSION_LIMIT`].
//!
//! Input layout:
//! - byte 0, flags: bits 0-2 = how many chunk-size bytes follow; bit 3 = the server closes its
//!   side after sending everything (else it stays silent); bit 4 = disable pipelining;
//!   bit 5 = record a transcript; bit 6 = an 8-bit message; bit 7 = AUTH first;
//! - byte 1: bits 0-1 = AUTH mechanism (auto, PLAIN, LOGIN, XOAUTH2); bits 2-7 = pause in
//!   milliseconds between server chunks (0 = just yield), so some chunks land after a timeout;
//! - the chunk-size bytes (see `smtpkit_fuzz::chunk_size`), used in a cycle;
//! - the bytes the server sends.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use smtpkit::client::{
    ClientOptions, Connection, Credentials, Envelope, Security, Timeouts, Transcript,
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
        auth: (flags & 0x80 != 0).then_some(mechanism),
        pause: Duration::from_millis(u64::from(second >> 2)),
        sizes,
        server_bytes,
    })
}

/// `SMTPKIT_FUZZ_DEBUG=1` prints each step's result and the transcript, to triage an input.
fn debug() -> bool {
    static DEBUG: OnceLock<bool> = OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("SMTPKIT_FUZZ_DEBUG").is_some())
}

async fn client(stream: tokio::io::DuplexStream, plan: &Plan<'_>) {
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
                eprintln!("connect: {e}");
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
            eprintln!("authenticate: {result:?}");
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
    let envelope = Envelope::new(from, to).expect("valid envelope");
    let message = if plan.eight_bit {
        MESSAGE_8BIT
    } else {
        MESSAGE
    };
    let sent = conn.send_mail(&envelope, message).await;
    if debug() {
        eprintln!("send_mail: {sent:?}");
    }
    match sent {
        Ok(report) => {
            let _ = (report.mail_reply(), report.data_reply(), report.queue_id());
            assert!(report.recipients().len() <= 2);
            assert!(report.recipients().iter().any(|r| r.accepted()));
            let _ = report.rejected().count();
        }
        Err(e) => {
            let _ = (e.to_string(), e.recipients().len(), e.is_outcome_unknown());
            let _ = (e.is_timeout(), e.is_tls());
        }
    }
    let noop = conn.noop().await;
    let quit = conn.quit().await;
    let lines = buffer.lines();
    if debug() {
        eprintln!("noop: {noop:?}\nquit: {quit:?}");
        eprintln!("{}", lines.join("\n"));
    }
}

async fn server(stream: tokio::io::DuplexStream, plan: &Plan<'_>) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        for chunk in chunks(plan.server_bytes, &plan.sizes) {
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
        let session = async {
            tokio::select! {
                () = client(client_side, &plan) => {}
                () = server(server_side, &plan) => {}
            }
        };
        let start = tokio::time::Instant::now();
        let finished = tokio::time::timeout(SESSION_LIMIT, session).await;
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
