//! `smtpkit worker`: deliver the outbox's messages until stopped (or until nothing is due).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::json;
use smtpkit::outbox::{Recorded, Worker, WorkerOptions};
use smtpkit::provider::Config;

use super::output::{self, Failure};
use super::{exit, metrics, outbox_access};

/// Deliver queued messages through the configured providers.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  smtpkit worker --config smtpkit.yaml
  smtpkit worker --config smtpkit.yaml --until-empty --json
  smtpkit worker --config smtpkit.yaml --metrics 127.0.0.1:9108

SIGINT or SIGTERM: no new messages are taken; the deliveries in flight finish and are recorded,
then the worker exits 0.")]
pub struct WorkerArgs {
    /// Configuration file(s): the providers, and `outbox:` if not the default.
    #[arg(long, required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// The outbox database, overriding `outbox.url` (e.g. sqlite://smtpkit-outbox.db).
    #[arg(long, value_name = "URL")]
    pub outbox: Option<String>,
    /// Messages delivered at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Exit once nothing is due and nothing is in flight (deferred messages wait for a later run).
    #[arg(long)]
    pub until_empty: bool,
    /// Exit after this many deliveries.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Serve Prometheus metrics on http://ADDR/metrics (queue depth per provider and state,
    /// oldest message's age, this worker's deliveries, latency, rate-limit waits). Only this
    /// address: 127.0.0.1:9108 is reachable from this machine only, 0.0.0.0:9108 from others.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Print one JSON object with the totals when the worker stops.
    #[arg(long)]
    pub json: bool,
}

fn shown(r: &Recorded) -> String {
    let reply = r.last_reply.as_deref().unwrap_or("-");
    format!(
        "{} {} <{}> via {}: {reply}",
        r.state.as_str(),
        r.id,
        r.message_id,
        r.provider
    )
}

pub async fn run(args: WorkerArgs) -> u8 {
    let config = match Config::from_files(&args.config) {
        Ok(c) => c,
        Err(e) => return Failure::config_error(&e).report(args.json),
    };
    let outbox = match outbox_access::open(&config, args.outbox.as_deref()).await {
        Ok(o) => o,
        Err(f) => return f.report(args.json),
    };
    let metrics = match args.metrics {
        None => None,
        Some(addr) => match metrics::bind(addr).await {
            Ok(listener) => {
                let shown = listener.local_addr().map_or(addr, |a| a);
                eprintln!("metrics on http://{shown}/metrics");
                let m = Arc::new(metrics::Metrics::new(outbox.clone()));
                let server = tokio::spawn(metrics::serve(listener, Arc::clone(&m)));
                Some((m, server))
            }
            Err(e) => {
                return Failure::new(
                    "config",
                    "metrics",
                    format!("cannot serve metrics on {addr}: {e}"),
                    exit::CONFIG,
                )
                .with_hint("Choose another address with --metrics, or free this one.")
                .report(args.json)
            }
        },
    };
    let counted = metrics.as_ref().map(|(m, _)| Arc::clone(m));
    // Each delivery: a line on stdout (its result), unless the one JSON object is wanted.
    let json = args.json;
    let options = WorkerOptions {
        concurrency: usize::from(args.concurrency),
        until_empty: args.until_empty,
        max_messages: args.max_messages,
        on_record: Some(Arc::new(move |r: &Recorded| {
            if let Some(m) = &counted {
                m.record(r);
            }
            if json {
                eprintln!("{}", shown(r));
            } else {
                out!("{}", shown(r));
            }
        })),
        ..WorkerOptions::default()
    };
    let worker = Arc::new(Worker::new(outbox.clone(), &config, options));
    eprintln!(
        "worker {} delivering from {} ({} at once){}",
        worker.id(),
        smtpkit::provider::redact_url(&outbox.settings().url),
        args.concurrency,
        if args.until_empty {
            ", until nothing is due"
        } else {
            "; Ctrl-C to stop"
        }
    );
    let result = worker.run(super::shutdown_signal()).await;
    if let Some((_, server)) = metrics {
        server.abort();
    }
    match result {
        Ok(summary) => {
            let line = format!(
                "{} delivered: {} sent, {} deferred, {} failed, expired or unknown",
                summary.delivered, summary.sent, summary.deferred, summary.ended_otherwise
            );
            if args.json {
                eprintln!("{line}");
                output::print_json(&json!({
                    "ok": true,
                    "exit_code": exit::OK,
                    "delivered": summary.delivered,
                    "sent": summary.sent,
                    "deferred": summary.deferred,
                    "ended_otherwise": summary.ended_otherwise,
                }));
            } else {
                eprintln!("{line}");
            }
            exit::OK
        }
        Err(e) => outbox_access::failure(&e).report(args.json),
    }
}
