//! lettre-peer: the lettre side of smtpkit's throughput comparison (bench/compare.sh).
//!
//! Sends `--count` generated messages of `--size` bytes over `--concurrency` tasks and prints
//! one JSON line: sent, failed, seconds, msgs_per_sec, cpu_us_per_msg, mode, ...
//!
//! Modes:
//! * default ("pool"): one `AsyncSmtpTransport<Tokio1Executor>` built with `builder_dangerous`,
//!   (no TLS: builder_dangerous defaults to plain TCP and no TLS feature is enabled), no auth, its connection pool with `max_size = concurrency`, shared by all tasks.
//!   This is lettre as shipped: lettre 0.11 exposes no TCP_NODELAY switch for the transport.
//! * `--no-pool` ("conn"): lettre's own `AsyncSmtpConnection` (its public low-level API,
//!   `connect_with_transport`) over a tokio `TcpStream` we connect, one connection per task,
//!   reused for many messages. No pool, so no pool health check (NOOP) before each message.
//! * `--nodelay` ("conn-nodelay"): as `--no-pool`, with TCP_NODELAY set on our stream. This is
//!   the only way to get TCP_NODELAY under lettre 0.11's protocol code: the pooled transport
//!   opens its own sockets and has no such setting.
//! * `--tls --ca-file PEM` (pool mode only): the same pooled transport with implicit TLS
//!   (`Tls::Wrapper`, lettre's rustls backend, feature `tokio1-rustls-tls`), trusting the PEM
//!   CA. One `TlsParameters` (so one rustls `ClientConfig` and its session cache) is shared by
//!   the pool's connections.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::PoolConfig;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

struct Opts {
    host: String,
    port: u16,
    count: usize,
    concurrency: usize,
    size: usize,
    nodelay: bool,
    no_pool: bool,
    tls: bool,
    ca_file: Option<String>,
}

const USAGE: &str = "usage: lettre-peer --host H --port P [--count N] [--concurrency C] [--size BYTES] [--no-pool] [--nodelay] [--tls --ca-file PEM]";

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        host: String::new(),
        port: 0,
        count: 1000,
        concurrency: 1,
        size: 2048,
        nodelay: false,
        no_pool: false,
        tls: false,
        ca_file: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--host" => o.host = value("--host")?,
            "--port" => o.port = value("--port")?.parse().map_err(|e| format!("--port: {e}"))?,
            "--count" => o.count = value("--count")?.parse().map_err(|e| format!("--count: {e}"))?,
            "--concurrency" => {
                o.concurrency = value("--concurrency")?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--size" => o.size = value("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--nodelay" => {
                o.nodelay = true;
                o.no_pool = true;
            }
            "--no-pool" => o.no_pool = true,
            "--tls" => o.tls = true,
            "--ca-file" => o.ca_file = Some(value("--ca-file")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.host.is_empty() || o.port == 0 {
        return Err(format!("--host and --port are required\n{USAGE}"));
    }
    if o.tls && o.no_pool {
        return Err("--tls works in pool mode only (not with --no-pool or --nodelay)".to_owned());
    }
    if o.count == 0 || o.concurrency == 0 || o.size < 200 {
        return Err("--count and --concurrency must be >= 1, --size >= 200".to_owned());
    }
    Ok(o)
}

/// A plain ASCII message of exactly `size` bytes (headers included), CRLF lines of 78 bytes.
fn make_message(size: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(size);
    m.extend_from_slice(
        b"From: <peer@lettre-peer.test>\r\nTo: <sink@lettre-peer.test>\r\n\
          Subject: lettre-peer bench\r\nMessage-ID: <1@lettre-peer.test>\r\n\r\n",
    );
    let mut fill = b'a';
    while m.len() + 78 <= size {
        m.extend(std::iter::repeat_n(fill, 76));
        m.extend_from_slice(b"\r\n");
        fill = if fill == b'z' { b'a' } else { fill + 1 };
    }
    let rest = size - m.len();
    if rest >= 2 {
        m.extend(std::iter::repeat_n(b'q', rest - 2));
        m.extend_from_slice(b"\r\n");
    }
    debug_assert_eq!(m.len(), size);
    m
}

/// utime + stime of this process, from /proc/self/stat, in 100 Hz ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the ")" that closes comm: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace().skip(11);
    let utime: u64 = it.next()?.parse().ok()?;
    let stime: u64 = it.next()?.parse().ok()?;
    Some(utime + stime)
}

struct Outcome {
    sent: usize,
    failed: usize,
    first_error: Option<String>,
}

/// Runs `concurrency` tasks; each takes tickets until `count` are gone and calls `send_one`.
async fn run_pool(o: &Opts, envelope: Envelope, message: Arc<Vec<u8>>) -> Outcome {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(o.host.clone())
        .port(o.port)
        .timeout(Some(Duration::from_secs(30)))
        .hello_name(ClientId::Domain("lettre-peer.test".to_owned()))
        .pool_config(PoolConfig::new().max_size(o.concurrency as u32));
    if o.tls {
        let mut params = TlsParameters::builder(o.host.clone());
        if let Some(path) = &o.ca_file {
            let pem = match std::fs::read(path) {
                Ok(p) => p,
                Err(e) => return Outcome { sent: 0, failed: o.count, first_error: Some(format!("{path}: {e}")) },
            };
            match Certificate::from_pem(&pem) {
                Ok(cert) => params = params.add_root_certificate(cert),
                Err(e) => return Outcome { sent: 0, failed: o.count, first_error: Some(format!("{path}: {e}")) },
            }
        }
        match params.build_rustls() {
            Ok(p) => builder = builder.tls(Tls::Wrapper(p)),
            Err(e) => return Outcome { sent: 0, failed: o.count, first_error: Some(format!("tls: {e}")) },
        }
    }
    let transport: AsyncSmtpTransport<Tokio1Executor> = builder.build();
    let transport = Arc::new(transport);
    let tickets = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(o.concurrency);
    for _ in 0..o.concurrency {
        let (transport, tickets, envelope, message) =
            (transport.clone(), tickets.clone(), envelope.clone(), message.clone());
        let count = o.count;
        handles.push(tokio::spawn(async move {
            let mut out = Outcome { sent: 0, failed: 0, first_error: None };
            while tickets.fetch_add(1, Ordering::Relaxed) < count {
                match transport.send_raw(&envelope, &message).await {
                    Ok(_) => out.sent += 1,
                    Err(e) => {
                        out.failed += 1;
                        out.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            out
        }));
    }
    collect(handles).await
}

async fn run_connections(o: &Opts, envelope: Envelope, message: Arc<Vec<u8>>) -> Outcome {
    let addr: SocketAddr = match tokio::net::lookup_host((o.host.as_str(), o.port)).await {
        Ok(mut a) => match a.next() {
            Some(a) => a,
            None => return Outcome { sent: 0, failed: o.count, first_error: Some("no address".into()) },
        },
        Err(e) => return Outcome { sent: 0, failed: o.count, first_error: Some(e.to_string()) },
    };
    let tickets = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(o.concurrency);
    for _ in 0..o.concurrency {
        let (tickets, envelope, message) = (tickets.clone(), envelope.clone(), message.clone());
        let (count, nodelay) = (o.count, o.nodelay);
        handles.push(tokio::spawn(async move {
            let mut out = Outcome { sent: 0, failed: 0, first_error: None };
            let hello = ClientId::Domain("lettre-peer.test".to_owned());
            let mut conn: Option<AsyncSmtpConnection> = None;
            // Bounded: one ticket per turn, `count` tickets in all.
            while tickets.fetch_add(1, Ordering::Relaxed) < count {
                if conn.as_ref().is_none_or(|c| c.has_broken()) {
                    let stream = match tokio::net::TcpStream::connect(addr).await {
                        Ok(s) => s,
                        Err(e) => {
                            out.failed += 1;
                            out.first_error.get_or_insert_with(|| e.to_string());
                            continue;
                        }
                    };
                    if nodelay {
                        if let Err(e) = stream.set_nodelay(true) {
                            out.first_error.get_or_insert_with(|| format!("set_nodelay: {e}"));
                        }
                    }
                    match AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await {
                        Ok(c) => conn = Some(c),
                        Err(e) => {
                            out.failed += 1;
                            out.first_error.get_or_insert_with(|| e.to_string());
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                match c.send(&envelope, &message).await {
                    Ok(_) => out.sent += 1,
                    Err(e) => {
                        out.failed += 1;
                        out.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            if let Some(mut c) = conn {
                let _ = c.quit().await;
            }
            out
        }));
    }
    collect(handles).await
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Outcome>>) -> Outcome {
    let mut total = Outcome { sent: 0, failed: 0, first_error: None };
    for h in handles {
        match h.await {
            Ok(o) => {
                total.sent += o.sent;
                total.failed += o.failed;
                if total.first_error.is_none() {
                    total.first_error = o.first_error;
                }
            }
            Err(e) => {
                total.first_error.get_or_insert_with(|| format!("task: {e}"));
            }
        }
    }
    total
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[tokio::main]
async fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let from: Address = "peer@lettre-peer.test".parse().expect("valid address");
    let to: Address = "sink@lettre-peer.test".parse().expect("valid address");
    let envelope = Envelope::new(Some(from), vec![to]).expect("valid envelope");
    let message = Arc::new(make_message(o.size));

    let cpu0 = cpu_ticks();
    let t0 = Instant::now();
    let out = if o.no_pool {
        run_connections(&o, envelope, message.clone()).await
    } else {
        run_pool(&o, envelope, message.clone()).await
    };
    let secs = t0.elapsed().as_secs_f64().max(1e-9);
    let cpu1 = cpu_ticks();
    let cpu_us_per_msg = match (cpu0, cpu1) {
        (Some(a), Some(b)) if out.sent > 0 => format!("{:.2}", (b - a) as f64 * 1e4 / out.sent as f64),
        _ => "null".to_owned(),
    };
    println!(
        "{{\"sent\":{},\"failed\":{},\"seconds\":{:.6},\"msgs_per_sec\":{:.2},\"cpu_us_per_msg\":{},\
         \"mode\":\"{}\",\"concurrency\":{},\"size\":{},\"first_error\":{}}}",
        out.sent,
        out.failed,
        secs,
        out.sent as f64 / secs,
        cpu_us_per_msg,
        match (o.no_pool, o.nodelay) {
            (false, _) if o.tls => "pool-tls",
            (false, _) => "pool",
            (true, false) => "conn",
            (true, true) => "conn-nodelay",
        },
        o.concurrency,
        message.len(),
        out.first_error.as_deref().map(json_str).unwrap_or_else(|| "null".to_owned()),
    );
    if out.failed > 0 || out.sent == 0 {
        ExitCode::from(75)
    } else {
        ExitCode::SUCCESS
    }
}
