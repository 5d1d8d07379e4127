//! What the outbox worker tests share (SQLite in `tests/outbox_worker.rs`, PostgreSQL in
//! `tests/outbox_worker_postgres.rs`): a provider and an outbox in one config file, messages to
//! queue, `smtpkit worker` processes, and the truth server's copies per Message-ID and
//! recipient for the accounting.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use smtpkit::message::Notification;
use smtpkit::outbox::{NewMessage, Outbox, State, Stats};
use smtpkit::provider::Config;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::truth_server::TruthServer;

/// A provider at `port` (plain text, no AUTH) and the outbox at `url` (a relative SQLite path
/// is next to the file in `dir`) with a 1 s lease and a quick backoff, so that takeovers and
/// retries happen within a test.
pub fn write_config(dir: &Path, port: u16, url: &str) -> PathBuf {
    let yaml = format!(
        "providers:
  email:
    provider: email.smtp
    config:
      host: 127.0.0.1
      port: {port}
      from: sender@example.com
      security: none
      auth: none
      timeouts: {{connect: 5s, greeting: 10s, command: 10s, data_start: 10s, data_block: 10s, data_end: 10s}}
outbox:
  url: '{url}'
  lease: 1s
  max_age: 1h
  backoff: {{initial: 100ms, max: 400ms}}
"
    );
    let path = dir.join("smtpkit.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

pub async fn open(cfg: &Path) -> Outbox {
    let config = Config::from_file(cfg).expect("config");
    Outbox::open(&config.outbox_settings())
        .await
        .expect("open outbox")
}

/// `n` messages to two recipients each; about one in five has a recipient the server refuses
/// with 450 the first time (`later…`).
pub fn messages(n: usize, seed: u64) -> Vec<NewMessage> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let from: smtpkit::message::Mailbox = "sender@example.com".parse().expect("from");
    (0..n)
        .map(|i| {
            let second = if rng.u8(..5) == 0 {
                format!("later{i}@example.com")
            } else {
                format!("b{i}@example.com")
            };
            let built = Notification::new(format!("message {i}"))
                .to(format!("a{i}@example.com").parse().expect("a"))
                .to(second.parse().expect("b"))
                .text(format!("body of message {i}"))
                .build(&from)
                .expect("build");
            NewMessage::from_built("email", &built, None)
        })
        .collect()
}

pub fn worker(cfg: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["worker", "--config"])
        .arg(cfg)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker")
}

/// Reads a worker's stderr as it comes (a worker that logs a lot would otherwise block on a
/// full pipe); the whole text once the worker has closed it. Take it before `wait`.
pub fn read_stderr(child: &mut Child) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr piped");
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Messages not settled yet: queued, deferred or leased.
pub fn unsettled(stats: &Stats) -> u64 {
    [State::Queued, State::Deferred, State::Sending]
        .iter()
        .map(|s| stats.by_state.get(s).copied().unwrap_or(0))
        .sum()
}

pub fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("running");
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Runs `worker --until-empty` until nothing is queued, deferred or leased (bounded).
pub async fn drain(cfg: &Path, outbox: &Outbox) {
    let end = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let stats = outbox.stats().await.expect("stats");
        if unsettled(&stats) == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "not drained: {stats:?}");
        let out = worker(cfg, &["--until-empty", "--concurrency", "4"])
            .wait_with_output()
            .await
            .expect("worker");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Leases of killed workers expire after 1 s; deferred ones come due within 400 ms.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Copies the server stored, per (Message-ID, recipient).
pub fn copies(server: &TruthServer) -> HashMap<(String, String), usize> {
    let mut map = HashMap::new();
    for stored in server.truth().stored {
        let text = stored.text();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("Message-ID: "))
            .map(|v| {
                v.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .expect("a Message-ID");
        for r in &stored.rcpts {
            *map.entry((id.clone(), r.clone())).or_insert(0) += 1;
        }
    }
    map
}

/// [`write_config`] with `rate_limit` (a YAML flow mapping, e.g. `{per_second: 50}`) on the
/// provider.
pub fn write_config_with_rate_limit(dir: &Path, port: u16, url: &str, limit: &str) -> PathBuf {
    let path = write_config(dir, port, url);
    let yaml = std::fs::read_to_string(&path).expect("read config");
    let yaml = yaml.replacen(
        "      auth: none\n",
        &format!("      auth: none\n      rate_limit: {limit}\n"),
        1,
    );
    std::fs::write(&path, yaml).expect("write config");
    path
}
