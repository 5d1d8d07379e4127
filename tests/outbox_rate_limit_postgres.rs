//! A provider's `rate_limit` shared by every worker of a PostgreSQL outbox (a private cluster,
//! tests/support/postgres.rs; ignored when PostgreSQL is not installed, unless
//! `SMTPKIT_REAL_SERVERS=1`): three `smtpkit worker` processes with `per_second: 50` send at
//! most 50 a second together, not 150. The rate is measured at the server over 10 s and
//! reported; only the upper bound is asserted (with a margin), never a lower one.

mod support;

use std::time::Duration;

use support::outbox_harness::{messages, open, signal, worker, write_config_with_rate_limit};
use support::postgres::PgCluster;
use support::real_servers::{run_tests, tokio_trial, Flavor, TestResult};
use support::truth_server::{Behaviour, TruthServer};

async fn three_workers_share_one_per_second_limit() -> TestResult {
    let cluster = PgCluster::start("three_workers_share_one_per_second_limit (PostgreSQL)")?;
    let url = cluster.fresh_database().await;
    let server = TruthServer::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config_with_rate_limit(dir.path(), server.port, &url, "{per_second: 50}");
    let outbox = open(&cfg).await;
    // More than 14 s of work at 50 a second.
    outbox
        .enqueue_many(messages(900, 7))
        .await
        .expect("enqueue");
    let workers: Vec<_> = (0..3)
        .map(|_| worker(&cfg, &["--concurrency", "4"]))
        .collect();
    // Warm-up: every worker has its sessions open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = server.truth().stored.len();
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let after = server.truth().stored.len();
    let seconds = started.elapsed().as_secs_f64();
    let rate = (after - before) as f64 / seconds;
    eprintln!(
        "3 workers, per_second: 50: {} messages in {seconds:.1} s = {rate:.1}/s ({:+.1}% of 50/s)",
        after - before,
        (rate / 50.0 - 1.0) * 100.0
    );
    for w in &workers {
        signal(w, "TERM");
    }
    for w in workers {
        let out = w.wait_with_output().await.expect("worker");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each counting alone, three workers would send up to 150 a second.
    assert!(rate <= 60.0, "{rate:.1} messages a second, limit 50");
    assert!(after > before, "nothing was sent");
    Ok(())
}

fn main() -> std::process::ExitCode {
    run_tests(vec![tokio_trial(
        "three_workers_share_one_per_second_limit",
        Flavor::MultiThread { workers: 2 },
        three_workers_share_one_per_second_limit,
    )])
}
