//! `smtpkit bench --mailer`: the library path most programs use — many tasks calling
//! [`Mailer::send_message`] at once through one provider's pool of `--concurrency` sessions,
//! with its retry policy reduced to one try — instead of sessions driven by the bench itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smtpkit::client::Envelope;
use smtpkit::provider::{Config, Mailer};

use super::exit;
use super::output::Failure;

/// What the tasks measured: per-message latency of the successes, error kinds of the rest.
#[derive(Default)]
pub(super) struct MailerTally {
    pub(super) latencies: Vec<Duration>,
    pub(super) errors: std::collections::BTreeMap<String, usize>,
    pub(super) first_errors: std::collections::BTreeMap<String, String>,
    pub(super) connections: usize,
}

/// What a `--mailer` run is asked to do.
pub(super) struct MailerBench<'a> {
    /// `none`, `tls` or `starttls`.
    pub(super) security: &'static str,
    /// `USER:PASS`.
    pub(super) auth: Option<&'a str>,
    pub(super) ca_file: Option<&'a std::path::Path>,
    pub(super) tls_skip_verify: bool,
    pub(super) chunking: bool,
    /// The pool's sessions.
    pub(super) connections: usize,
    pub(super) tasks: usize,
    pub(super) count: usize,
}

/// The configuration of the one provider the run sends through, at `host:port` (the delay
/// proxy's address when `--rtt` is given; then the certificate must name that address, or
/// `--tls-skip-verify`).
fn config(args: &MailerBench<'_>, host: &str, port: u16) -> Result<Config, Failure> {
    let security = args.security;
    let (user, pass, auth) = match args.auth {
        Some(pair) => {
            let (u, p) = pair.split_once(':').ok_or_else(|| {
                Failure::new("usage", "arguments", "--auth takes USER:PASS", exit::USAGE)
            })?;
            (u.to_owned(), p.to_owned(), "auto")
        }
        None => (String::new(), String::new(), "none"),
    };
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut yaml = format!(
        "providers:\n  bench:\n    provider: email.smtp\n    config:\n      host: {}\n      \
         port: {port}\n      from: bench@smtpkit.test\n      security: {security}\n      \
         auth: {auth}\n      helo_name: bench.smtpkit.test\n      \
         pool: {{max_connections: {}}}\n      retry: {{attempts: 1}}\n",
        quoted(host),
        args.connections
    );
    if args.auth.is_some() {
        yaml.push_str(&format!(
            "      user: {}\n      pass: {}\n",
            quoted(&user),
            quoted(&pass)
        ));
        if args.security == "none" {
            yaml.push_str("      allow_insecure_auth: true\n");
        }
    }
    if !args.chunking {
        yaml.push_str("      chunking: false\n");
    }
    if args.tls_skip_verify {
        yaml.push_str("      tls_skip_verify: true\n");
    }
    if let Some(ca) = args.ca_file {
        yaml.push_str(&format!(
            "      ca_file: {}\n",
            quoted(&ca.display().to_string())
        ));
    }
    Config::from_yaml_str(&yaml)
        .map_err(|e| Failure::new("config", "arguments", e.to_string(), exit::CONFIG))
}

/// Sends `args.count` messages from `args.tasks` tasks through one [`Mailer`].
pub(super) async fn run(
    args: &MailerBench<'_>,
    host: &str,
    port: u16,
    envelope: Arc<Envelope>,
    message: Arc<Vec<u8>>,
    progress: Option<indicatif::ProgressBar>,
) -> Result<MailerTally, Failure> {
    let config = config(args, host, port)?;
    let mailer = Mailer::new(&config, Some("bench"))
        .map_err(|e| Failure::new("config", "arguments", e.to_string(), exit::CONFIG))?;
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(MailerTally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.tasks.max(1) {
        let (mailer, envelope, message, next, tally, progress, count) = (
            mailer.clone(),
            envelope.clone(),
            message.clone(),
            next.clone(),
            tally.clone(),
            progress.clone(),
            args.count,
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: std::collections::BTreeMap<String, usize> = Default::default();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t0 = Instant::now();
                match mailer.send_message(&envelope, &message).await {
                    Ok(_) => latencies.push(t0.elapsed()),
                    Err(e) => {
                        let kind = e.error.kind().as_str().to_owned();
                        *errors.entry(kind.clone()).or_default() += 1;
                        if let Ok(mut t) = tally.lock() {
                            t.first_errors
                                .entry(kind)
                                .or_insert_with(|| e.error.to_string());
                        }
                    }
                }
                if let Some(p) = &progress {
                    p.inc(1);
                }
            }
            if let Ok(mut t) = tally.lock() {
                t.latencies.extend(latencies);
                for (k, v) in errors {
                    *t.errors.entry(k).or_default() += v;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let connections = mailer
        .routes()
        .first()
        .map_or(0, |route| route.pool.opened());
    mailer.close().await;
    let mut tally = tally
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .map_err(|_| Failure::new("io", "delivery", "a task panicked", exit::TEMP_FAIL))?;
    tally.connections = connections;
    Ok(tally)
}
