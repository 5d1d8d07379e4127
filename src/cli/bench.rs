//! `smtpkit bench`: end-to-end throughput against a server, over connections reused for
//! many messages (like Postfix's `smtp-source -d`), optionally through an added round-trip time.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::json;
use smtpkit::client::{
    ClientOptions, Connection, Credentials, Envelope, Security, TlsConnector, TlsSettings,
};
use smtpkit::proto::{Address, ClientName, Secret};

use super::bench_mailer;
use super::delay_proxy;
use super::exit;
use super::output::{self, Failure};

/// Whether to pipeline when the server offers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pipelining {
    /// Pipeline when offered (RFC 2920).
    Auto,
    /// Lock-step even when offered.
    Off,
}

/// Whether to send with BDAT when the server offers CHUNKING (and PIPELINING).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChunkingMode {
    /// BDAT when offered (RFC 3030), with several messages in flight.
    Auto,
    /// DATA even when CHUNKING is offered.
    Off,
}

/// Measure throughput: send N generated messages over C reused connections.
#[derive(Args, Debug)]
#[command(after_help = "Example (Postfix's smtp-sink as the server):
  smtp-sink -u nobody 127.0.0.1:2525 256 &
  smtpkit bench --host 127.0.0.1 --port 2525 --count 20000 --concurrency 4 --size 2048
  smtpkit bench --host 127.0.0.1 --port 2525 --count 500 --rtt 20 --json
  smtpkit bench --host localhost --port 4650 --security tls --ca-file ca.pem --concurrency 16")]
pub struct BenchArgs {
    /// Server host.
    #[arg(long)]
    pub host: String,
    /// Server port.
    #[arg(long)]
    pub port: u16,
    /// Messages to send.
    #[arg(long, default_value_t = 1000)]
    pub count: usize,
    /// Connections used in parallel, each reused for many messages.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Message size in bytes, headers included.
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Pipeline when offered, or not.
    #[arg(long, value_enum, default_value = "auto")]
    pub pipelining: Pipelining,
    /// Send with BDAT when CHUNKING is offered, or always with DATA.
    #[arg(long, value_enum, default_value = "auto")]
    pub chunking: ChunkingMode,
    /// Add this round-trip time (ms) with a built-in loopback delay proxy.
    #[arg(long, value_name = "MS")]
    pub rtt: Option<u64>,
    /// Messages handed to a connection at a time: with PIPELINING, each body leaves with the
    /// next message's commands, so one message costs one round trip (1 = no overlap).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Send through the library's `Mailer` (a provider with a pool of `--concurrency`
    /// sessions, one try per message) from `--tasks` tasks at once, as a program would,
    /// instead of driving the sessions directly.
    #[arg(long)]
    pub mailer: bool,
    /// With `--mailer`: tasks calling `Mailer::send_message` at once.
    #[arg(long, default_value_t = 64)]
    pub tasks: usize,
    /// How sessions are protected: `none` (plain text), `tls` (implicit TLS) or `starttls`.
    #[arg(long, value_enum, default_value = "none")]
    pub security: BenchSecurity,
    /// Trust the CA certificates in this PEM file (besides the system's).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Do not check the server's certificate (still encrypted).
    #[arg(long)]
    pub tls_skip_verify: bool,
    /// Authenticate each session as USER:PASS (over TLS, or plain text with --security none).
    #[arg(long, value_name = "USER:PASS")]
    pub auth: Option<String>,
    /// Print exactly one JSON object on stdout, on success and on failure.
    #[arg(long)]
    pub json: bool,
}

/// `smtpkit bench --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchSecurity {
    /// Plain text.
    None,
    /// Implicit TLS (RFC 8314).
    Tls,
    /// STARTTLS (RFC 3207).
    Starttls,
}

/// A message of about `size` bytes: a few headers and 76-character lines.
pub fn generate_message(size: usize) -> Vec<u8> {
    let mut m =
        b"From: <bench@smtpkit.test>\r\nTo: <sink@smtpkit.test>\r\nSubject: smtpkit bench\r\n\
Message-ID: <bench@smtpkit.test>\r\n\r\n"
            .to_vec();
    let line = [b'x'; 76];
    while m.len() + 78 <= size {
        m.extend_from_slice(&line);
        m.extend_from_slice(b"\r\n");
    }
    while m.len() + 2 < size {
        m.push(b'y');
    }
    m.extend_from_slice(b"\r\n");
    m
}

/// User and system CPU time of this process so far (Linux `/proc/self/stat`, 100 Hz ticks).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, usize>,
    /// The first error of each kind, in words (so a failed run says why).
    first_errors: BTreeMap<String, String>,
    connections: usize,
    /// TLS handshake times of full and of resumed handshakes.
    full_handshakes: Vec<Duration>,
    resumed_handshakes: Vec<Duration>,
}

/// Keeps the first error of its kind, in words.
fn note_error(tally: &Mutex<Tally>, e: &smtpkit::Error) {
    if let Ok(mut t) = tally.lock() {
        t.first_errors
            .entry(e.kind().as_str().to_owned())
            .or_insert_with(|| e.to_string());
    }
}

/// The client options of a bench run: security, trust and credentials as asked.
fn bench_options(args: &BenchArgs) -> Result<ClientOptions, Failure> {
    let security = match args.security {
        BenchSecurity::None => Security::None,
        BenchSecurity::Tls => Security::Tls,
        BenchSecurity::Starttls => Security::StartTls,
    };
    let tls = TlsConnector::new(&TlsSettings {
        skip_verify: args.tls_skip_verify,
        ca_file: args.ca_file.clone(),
    })
    .map_err(|e| Failure::new("tls", "connect", e.message(), exit::CONFIG))?;
    let credentials = match &args.auth {
        None => None,
        Some(pair) => {
            let (user, pass) = pair.split_once(':').ok_or_else(|| {
                Failure::new("usage", "arguments", "--auth takes USER:PASS", exit::USAGE)
            })?;
            Some(
                Credentials::new(user, Secret::new(pass))
                    .map_err(|e| Failure::new("usage", "arguments", e, exit::USAGE))?,
            )
        }
    };
    Ok(ClientOptions {
        security,
        // The certificate names the host asked for, not the delay proxy's address.
        tls_server_name: Some(args.host.clone()),
        tls: Some(tls),
        allow_insecure_auth: security == Security::None,
        credentials,
        client_name: ClientName::new("bench.smtpkit.test").ok(),
        disable_pipelining: args.pipelining == Pipelining::Off,
        chunking: smtpkit::client::Chunking {
            enabled: args.chunking == ChunkingMode::Auto,
            ..smtpkit::client::Chunking::default()
        },
        ..ClientOptions::default()
    })
}

pub async fn run(args: BenchArgs) -> u8 {
    if args.count == 0 || args.concurrency == 0 {
        return Failure::new(
            "usage",
            "arguments",
            "--count and --concurrency must be at least 1",
            exit::USAGE,
        )
        .report(args.json);
    }
    let target: SocketAddr = match tokio::net::lookup_host((args.host.as_str(), args.port))
        .await
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => a,
        _ => {
            return Failure::new(
                "connect",
                "connect",
                format!("cannot resolve {}:{}", args.host, args.port),
                exit::TEMP_FAIL,
            )
            .with_hint("Verify the host name (--host).")
            .report(args.json)
        }
    };
    let addr = match args.rtt {
        Some(ms) => match delay_proxy::start(target, Duration::from_millis(ms)).await {
            Ok(a) => a,
            Err(e) => {
                return Failure::new(
                    "io",
                    "connect",
                    format!("cannot start the delay proxy: {e}"),
                    exit::TEMP_FAIL,
                )
                .report(args.json)
            }
        },
        None => target,
    };
    let options = match bench_options(&args) {
        Ok(o) => o,
        Err(failure) => return failure.report(args.json),
    };
    let envelope = match Address::new("bench@smtpkit.test").and_then(|from| {
        Address::new("sink@smtpkit.test").and_then(|to| Envelope::new(from, vec![to]))
    }) {
        Ok(e) => e,
        Err(e) => {
            return Failure::new("invalid_input", "input", e, exit::DATA_ERR).report(args.json)
        }
    };
    let message = Arc::new(generate_message(args.size));
    let envelope = Arc::new(envelope);
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let bdat_used = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Progress is for people watching stderr; with --json too, stdout stays the one object.
    let progress = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(args.count as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let cpu_before = cpu_time();
    let started = Instant::now();
    if args.mailer {
        let host = addr.ip().to_string();
        let asked = bench_mailer::MailerBench {
            security: match args.security {
                BenchSecurity::None => "none",
                BenchSecurity::Tls => "tls",
                BenchSecurity::Starttls => "starttls",
            },
            auth: args.auth.as_deref(),
            ca_file: args.ca_file.as_deref(),
            tls_skip_verify: args.tls_skip_verify,
            chunking: args.chunking == ChunkingMode::Auto,
            connections: args.concurrency,
            tasks: args.tasks,
            count: args.count,
        };
        let run = bench_mailer::run(
            &asked,
            &host,
            addr.port(),
            envelope.clone(),
            message.clone(),
            progress.clone(),
        )
        .await;
        match run {
            Ok(t) => {
                if let Ok(mut tally) = tally.lock() {
                    tally.latencies = t.latencies;
                    tally.errors = t.errors;
                    tally.first_errors = t.first_errors;
                    tally.connections = t.connections;
                }
            }
            Err(failure) => return failure.report(args.json),
        }
    }
    let mut workers = Vec::new();
    let direct = if args.mailer { 0 } else { args.concurrency };
    // Over TLS the first session opens alone: the others then resume its TLS session (as a
    // pool's sessions do), and the output tells a full handshake from a resumed one.
    let first_open = Arc::new(tokio::sync::Semaphore::new(0));
    for worker in 0..direct {
        let bdat_used = bdat_used.clone();
        let first_open = first_open.clone();
        let wait_for_first = worker > 0 && args.security != BenchSecurity::None;
        let (options, message, envelope, next, tally, progress) = (
            options.clone(),
            message.clone(),
            envelope.clone(),
            next.clone(),
            tally.clone(),
            progress.clone(),
        );
        let host = addr.ip().to_string();
        let port = addr.port();
        workers.push(tokio::spawn(async move {
            let mut conn: Option<Connection> = None;
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, usize> = BTreeMap::new();
            let mut connections = 0;
            let mut handshakes: Vec<(bool, Duration)> = Vec::new();
            // Bounded: each turn takes up to `batch` of the `count` tickets. Batches only help
            // with PIPELINING, and must stay small enough to spread the work evenly.
            let even = (args.count / (args.concurrency * 8)).max(1);
            if wait_for_first {
                // Closed (never acquired) once the first worker tried: everyone goes on.
                let _ = first_open.acquire().await;
            }
            loop {
                if conn.as_ref().is_none_or(|c| !c.is_usable()) {
                    if next.load(Ordering::Relaxed) >= args.count {
                        break;
                    }
                    let connected = Connection::connect(&host, port, options.clone()).await;
                    if worker == 0 {
                        first_open.close();
                    }
                    match connected {
                        Ok(c) => {
                            connections += 1;
                            if let Some(info) = c.tls_info() {
                                handshakes.push((info.resumed, info.handshake));
                            }
                            conn = Some(c);
                        }
                        Err(e) => {
                            // A failed connect costs one ticket, so the loop stays bounded.
                            if next.fetch_add(1, Ordering::Relaxed) < args.count {
                                *errors.entry(e.kind().as_str().to_owned()).or_default() += 1;
                                note_error(&tally, &e);
                            }
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                // Batches only help when the session pipelines.
                let pipelined =
                    c.capabilities().pipelining() && args.pipelining == Pipelining::Auto;
                if pipelined && c.capabilities().chunking() && args.chunking == ChunkingMode::Auto {
                    bdat_used.store(true, Ordering::Relaxed);
                }
                let batch = if pipelined {
                    args.batch.clamp(1, even)
                } else {
                    1
                };
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= args.count {
                    break;
                }
                let n = batch.min(args.count - first);
                let jobs: Vec<(&Envelope, &[u8])> =
                    (0..n).map(|_| (&*envelope, message.as_slice())).collect();
                let t0 = Instant::now();
                let results = c.send_many(&jobs).await;
                // Per-message latency: the batch's time shared by its messages.
                let each = t0.elapsed() / n as u32;
                for r in results {
                    match r {
                        Ok(_) => latencies.push(each),
                        Err(e) => {
                            *errors.entry(e.kind().as_str().to_owned()).or_default() += 1;
                            note_error(&tally, &e);
                        }
                    }
                }
                if let Some(p) = &progress {
                    p.inc(n as u64);
                }
            }
            if let Some(c) = conn {
                let _ = c.quit().await;
            }
            if let Ok(mut t) = tally.lock() {
                t.latencies.extend(latencies);
                for (k, v) in errors {
                    *t.errors.entry(k).or_default() += v;
                }
                t.connections += connections;
                for (resumed, took) in handshakes {
                    if resumed {
                        t.resumed_handshakes.push(took);
                    } else {
                        t.full_handshakes.push(took);
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
    if let Some(p) = progress {
        p.finish_and_clear();
    }
    let Ok(mut tally) = tally.lock().map(|mut t| std::mem::take(&mut *t)) else {
        return Failure::new("io", "delivery", "a worker panicked", exit::TEMP_FAIL)
            .report(args.json);
    };
    tally.latencies.sort_unstable();
    let sent = tally.latencies.len();
    let secs = elapsed.as_secs_f64().max(1e-9);
    let msgs_per_sec = sent as f64 / secs;
    let mb_per_sec = (sent * message.len()) as f64 / secs / 1e6;
    let p50 = percentile(&tally.latencies, 50.0);
    let p99 = percentile(&tally.latencies, 99.0);
    // Per message sent: nothing to divide by when nothing was sent.
    let cpu_us_per_msg = cpu
        .filter(|_| sent > 0)
        .map(|c| c.as_secs_f64() * 1e6 / sent as f64);
    let failed: usize = tally.errors.values().sum();
    tally.full_handshakes.sort_unstable();
    tally.resumed_handshakes.sort_unstable();
    let median_ms =
        |d: &[Duration]| (!d.is_empty()).then(|| percentile(d, 50.0).as_secs_f64() * 1e3);
    let full_ms = median_ms(&tally.full_handshakes);
    let resumed_ms = median_ms(&tally.resumed_handshakes);
    let code = if failed > 0 {
        exit::TEMP_FAIL
    } else {
        exit::OK
    };
    if args.json {
        output::print_json(&json!({
            "ok": code == exit::OK,
            "exit_code": code,
            "sent": sent,
            "failed": failed,
            "seconds": secs,
            "msgs_per_sec": msgs_per_sec,
            "mb_per_sec": mb_per_sec,
            "p50_ms": p50.as_secs_f64() * 1e3,
            "p99_ms": p99.as_secs_f64() * 1e3,
            "connections": tally.connections,
            "errors": tally.errors,
            "first_errors": tally.first_errors,
            "cpu_us_per_msg": cpu_us_per_msg,
            "concurrency": args.concurrency,
            "size": message.len(),
            "rtt_ms": args.rtt,
            "pipelining": format!("{:?}", args.pipelining).to_lowercase(),
            "chunking": format!("{:?}", args.chunking).to_lowercase(),
            "bdat": bdat_used.load(Ordering::Relaxed),
            "batch": args.batch,
            "security": format!("{:?}", args.security).to_lowercase(),
            "mailer": args.mailer,
            "tasks": args.mailer.then_some(args.tasks),
            "tls_full_handshakes": tally.full_handshakes.len(),
            "tls_full_handshake_ms": full_ms,
            "tls_resumed_handshakes": tally.resumed_handshakes.len(),
            "tls_resumed_handshake_ms": resumed_ms,
        }));
    } else {
        out!(
            "{sent} sent, {failed} failed in {secs:.2} s: {msgs_per_sec:.0} msgs/s, {mb_per_sec:.2} MB/s; \
             latency per message p50 {:.2} ms, p99 {:.2} ms; {} connection(s)",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            tally.connections
        );
        if let Some(cpu) = cpu_us_per_msg {
            out!("client CPU: {cpu:.1} µs per message (user+sys)");
        }
        if args.security != BenchSecurity::None {
            let show = |n: usize, ms: Option<f64>| match ms {
                Some(ms) => format!("{n} (median {ms:.2} ms)"),
                None => n.to_string(),
            };
            out!(
                "TLS handshakes: full {}, resumed {}",
                show(tally.full_handshakes.len(), full_ms),
                show(tally.resumed_handshakes.len(), resumed_ms)
            );
        }
        for (kind, n) in &tally.errors {
            match tally.first_errors.get(kind) {
                Some(first) => out!("  {n} × {kind}, the first: {first}"),
                None => out!("  {n} × {kind}"),
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_messages_have_the_size_asked() {
        for size in [200, 2048, 10_000] {
            assert_eq!(generate_message(size).len(), size);
        }
    }
}
