//! Delivery through the outbox against direct `Mailer` sends, to Postfix's `smtp-sink` on
//! loopback, in one run so that the ratio holds whatever the machine.
//!
//! Each round, in alternating order:
//! * **direct**: N messages (~2 KB, two recipients) sent with `Mailer::send_message` from
//!   CONCURRENCY tasks sharing one Mailer (pool `max_connections` = CONCURRENCY), timed from the
//!   first send to the last reply (the pool's sessions closed);
//! * **outbox**: the same N messages `enqueue_many`'d into a fresh SQLite outbox in a temporary
//!   directory (timed on its own), then a `Worker` with the same concurrency and
//!   `until_empty: true` delivering them all, timed from the worker's start to its end.
//!
//! It prints msgs/s for both and the ratio outbox / direct per round, then the medians.
//!
//! `cargo bench --bench outbox_delivery`. Under `cargo test` (no `--bench` argument) it runs
//! one small round as a smoke test, and skips if smtp-sink is missing. Knobs (environment):
//! COUNT (10000), ROUNDS (5), CONCURRENCY (4), BATCH (enqueue_many batch, 1000), SINK
//! (/usr/sbin/smtp-sink), DIR (where the temporary outboxes go).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smtpkit::client::Envelope;
use smtpkit::outbox::{NewMessage, Outbox, OutboxSettings, Worker, WorkerOptions};
use smtpkit::proto::{Address, ReversePath};
use smtpkit::provider::{Config, Mailer};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// smtp-sink on a free loopback port; killed and reaped on drop.
struct Sink {
    port: u16,
    child: Child,
}

impl Sink {
    fn start(binary: &str) -> Option<Sink> {
        if !std::path::Path::new(binary).exists() {
            return None;
        }
        for _ in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut cmd = Command::new(binary);
            // smtp-sink refuses to run as root without a user to drop to.
            if std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
            }) {
                cmd.args(["-u", "nobody"]);
            }
            let mut child = cmd
                .arg(format!("127.0.0.1:{port}"))
                .arg("256")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start smtp-sink");
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(Sink { port, child });
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("smtp-sink did not start");
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Message `n`: about 2 KB, two recipients, its own Message-ID.
fn message(n: usize) -> NewMessage {
    let mut bytes = format!(
        "From: noreply@example.com\r\nTo: a{n}@example.com, b{n}@example.com\r\n\
         Subject: Access request {n} needs your approval\r\nMessage-ID: <{n}@bench.example>\r\n\r\n"
    )
    .into_bytes();
    while bytes.len() < 2048 {
        bytes.extend_from_slice(b"A new access request requires your approval. Review it.\r\n");
    }
    NewMessage {
        provider: "email".into(),
        mail_from: "noreply@example.com".into(),
        recipients: vec![format!("a{n}@example.com"), format!("b{n}@example.com")],
        message_id: format!("<{n}@bench.example>"),
        bytes,
        idempotency_key: None,
    }
}

fn config(port: u16, concurrency: usize) -> Config {
    let yaml = format!(
        "providers:
  email:
    provider: email.smtp
    config:
      host: 127.0.0.1
      port: {port}
      from: noreply@example.com
      security: none
      auth: none
      retry: {{attempts: 1}}
      pool: {{max_connections: {concurrency}}}
"
    );
    Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Sends every message with `send_message` from `concurrency` tasks sharing one Mailer;
/// returns msgs/s.
async fn direct(config: &Config, messages: &Arc<Vec<NewMessage>>, concurrency: usize) -> f64 {
    let mailer = Mailer::new(config, Some("email")).expect("mailer");
    let envelopes: Arc<Vec<Envelope>> = Arc::new(
        messages
            .iter()
            .map(|m| {
                let from = ReversePath::Mailbox(Address::new(&m.mail_from).expect("from"));
                let to = m
                    .recipients
                    .iter()
                    .map(|r| Address::new(r).expect("recipient"))
                    .collect();
                Envelope::new(from, to).expect("envelope")
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (mailer, messages, envelopes, next) = (
            mailer.clone(),
            messages.clone(),
            envelopes.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = messages.get(i) else { break };
                let report = mailer
                    .send_message(&envelopes[i], &m.bytes)
                    .await
                    .expect("direct send");
                assert!(report.recipients.iter().all(|r| r.accepted));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("sending task");
    }
    mailer.close().await;
    messages.len() as f64 / started.elapsed().as_secs_f64()
}

/// What one outbox round measured.
struct OutboxRound {
    enqueue_rate: f64,
    delivery_rate: f64,
    commits: u64,
    ops: u64,
}

/// Enqueues every message into a fresh outbox under `dir`, then delivers them with a Worker.
async fn outbox(
    config: &Config,
    messages: &[NewMessage],
    concurrency: usize,
    batch: usize,
    dir: &std::path::Path,
) -> OutboxRound {
    let outbox = Outbox::open(&OutboxSettings {
        url: format!("sqlite://{}", dir.join("outbox.db").display()),
        ..OutboxSettings::default()
    })
    .await
    .expect("open the outbox");
    let started = Instant::now();
    for chunk in messages.chunks(batch) {
        outbox
            .enqueue_many(chunk.to_vec())
            .await
            .expect("enqueue_many");
    }
    let enqueue_rate = messages.len() as f64 / started.elapsed().as_secs_f64();
    let before = outbox.commit_counters();
    let worker = Arc::new(Worker::new(
        outbox.clone(),
        config,
        WorkerOptions {
            concurrency,
            until_empty: true,
            ..WorkerOptions::default()
        },
    ));
    let started = Instant::now();
    let summary = worker
        .run(std::future::pending())
        .await
        .expect("worker run");
    let delivery_rate = messages.len() as f64 / started.elapsed().as_secs_f64();
    assert_eq!(
        summary.sent,
        messages.len() as u64,
        "every message sent: {summary:?}"
    );
    let after = outbox.commit_counters();
    OutboxRound {
        enqueue_rate,
        delivery_rate,
        commits: after.commits - before.commits,
        ops: after.ops - before.ops,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (count, rounds) = if bench {
        (env_or("COUNT", 10_000), env_or("ROUNDS", 5).max(1))
    } else {
        (200, 1)
    };
    let concurrency = env_or("CONCURRENCY", 4).max(1);
    let batch = env_or("BATCH", 1000).max(1);
    let binary = std::env::var("SINK").unwrap_or_else(|_| "/usr/sbin/smtp-sink".into());
    let Some(sink) = Sink::start(&binary) else {
        println!("outbox_delivery: {binary} is missing (Debian package postfix): skipped");
        return;
    };
    let config = config(sink.port, concurrency);
    let messages: Arc<Vec<NewMessage>> = Arc::new((0..count).map(message).collect());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "outbox delivery vs direct Mailer sends, smtp-sink on 127.0.0.1:{}, {count} msgs of ~2 KB \
         with 2 recipients, concurrency {concurrency}, {rounds} rounds, {} CPUs",
        sink.port,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>5}  {:>12}  {:>12}  {:>7}  {:>14}  {:>22}",
        "round", "direct msg/s", "outbox msg/s", "ratio", "enqueue msg/s", "commits (ops/commit)"
    );
    let (mut directs, mut outboxes, mut ratios, mut enqueues) = (vec![], vec![], vec![], vec![]);
    runtime.block_on(async {
        for round in 1..=rounds {
            let dir = match std::env::var("DIR") {
                Ok(d) => tempfile::tempdir_in(d),
                Err(_) => tempfile::tempdir(),
            }
            .expect("temporary directory");
            // Alternate which goes first, so neither always runs on a warmer machine.
            let (d, o) = if round % 2 == 1 {
                let d = direct(&config, &messages, concurrency).await;
                let o = outbox(&config, &messages, concurrency, batch, dir.path()).await;
                (d, o)
            } else {
                let o = outbox(&config, &messages, concurrency, batch, dir.path()).await;
                let d = direct(&config, &messages, concurrency).await;
                (d, o)
            };
            let ratio = o.delivery_rate / d;
            println!(
                "{round:>5}  {d:>12.0}  {:>12.0}  {ratio:>7.2}  {:>14.0}  {:>12} ({:.1})",
                o.delivery_rate,
                o.enqueue_rate,
                o.commits,
                o.ops as f64 / o.commits.max(1) as f64
            );
            directs.push(d);
            outboxes.push(o.delivery_rate);
            ratios.push(ratio);
            enqueues.push(o.enqueue_rate);
        }
    });
    println!(
        "median  {:>10.0}  {:>12.0}  {:>7.2}  {:>14.0}",
        median(directs),
        median(outboxes),
        median(ratios),
        median(enqueues)
    );
    drop(sink);
}
