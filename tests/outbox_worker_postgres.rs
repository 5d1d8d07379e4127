//! `smtpkit worker` on a PostgreSQL outbox, in a private cluster (tests/support/postgres.rs;
//! ignored when PostgreSQL is not installed, unless `SMTPKIT_REAL_SERVERS=1`):
//!
//! * two worker processes share 1,000 messages to the truth server and one is SIGKILLed half-way:
//!   every message ends `sent` or `unknown`, the server holds each at least once, and more than
//!   once only where the outbox says `unknown`;
//! * a worker waiting with a 30 s poll interval takes a message queued by another process
//!   (`smtpkit send --queue`) at once, woken by `NOTIFY`: asserted only against the poll
//!   interval (well within 10 s), never a tight time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use smtpkit::outbox::{ListFilter, RecipientState, State, Worker, WorkerOptions};
use smtpkit::provider::Config;
use support::outbox_harness::{copies, drain, messages, open, worker, write_config};
use support::postgres::PgCluster;
use support::real_servers::{run_tests, tokio_trial, Flavor, TestResult};
use support::truth_server::{Behaviour, TruthServer};
use tokio::process::Command;

async fn two_workers_one_killed_nothing_is_lost_and_duplicates_only_where_unknown() -> TestResult {
    let cluster = PgCluster::start("two_workers_one_killed (PostgreSQL)")?;
    let url = cluster.fresh_database().await;
    let server = TruthServer::start(Behaviour {
        max_reply_delay_ms: 2,
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port, &url);
    let outbox = open(&cfg).await;
    let total = 1000;
    let queued = outbox
        .enqueue_many(messages(total, 5))
        .await
        .expect("enqueue");
    assert_eq!(queued.len(), total);

    let mut doomed = worker(&cfg, &["--concurrency", "4"]);
    let survivor = worker(&cfg, &["--concurrency", "4"]);
    // Kill one once about a quarter of the messages are settled (bounded wait).
    let end = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = outbox.stats().await.expect("stats");
        if stats.by_state[&State::Sent] + stats.by_state[&State::Deferred] >= 250 {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "no progress: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.start_kill().expect("SIGKILL");
    assert!(!doomed.wait().await.expect("reaped").success());
    // The survivor takes the dead worker's leases over once they end (1 s).
    let end = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let stats = outbox.stats().await.expect("stats");
        let open: u64 = [State::Queued, State::Deferred, State::Sending]
            .iter()
            .map(|s| stats.by_state[s])
            .sum();
        if open == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "not drained: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = survivor.id().expect("running").to_string();
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    let out = survivor.wait_with_output().await.expect("survivor");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drain(&cfg, &outbox).await;

    let all = outbox
        .list(ListFilter {
            state: None,
            limit: None,
        })
        .await
        .expect("list");
    assert_eq!(all.len(), total);
    let copies = copies(&server);
    let mut unknown = 0;
    for m in &all {
        assert!(
            matches!(m.state, State::Sent | State::Unknown),
            "{} ended {:?}: {:?}",
            m.id,
            m.state,
            m.last_reply
        );
        if m.state == State::Unknown {
            unknown += 1;
        }
        for r in &m.recipients {
            let n = copies
                .get(&(m.message_id.clone(), r.address.clone()))
                .copied()
                .unwrap_or(0);
            if r.state == RecipientState::Sent {
                assert!(
                    n >= 1,
                    "{} to {} recorded sent, never stored",
                    m.id,
                    r.address
                );
            }
            if n > 1 {
                assert_eq!(
                    m.state,
                    State::Unknown,
                    "{} to {} stored {n} times but not recorded unknown",
                    m.id,
                    r.address
                );
            }
        }
    }
    assert!(unknown < 50, "{unknown} unknown");
    eprintln!("{unknown} of {total} messages ended unknown after one of two workers was killed");
    Ok(())
}

async fn a_waiting_worker_is_woken_by_a_message_queued_elsewhere() -> TestResult {
    let cluster = PgCluster::start("a_waiting_worker_is_woken (PostgreSQL)")?;
    let url = cluster.fresh_database().await;
    let server = TruthServer::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port, &url);
    let config = Config::from_file(&cfg).expect("config");
    let outbox = open(&cfg).await;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let poll = Duration::from_secs(30);
    let worker = Arc::new(Worker::new(
        outbox.clone(),
        &config,
        WorkerOptions {
            concurrency: 1,
            poll,
            on_record: Some(Arc::new(move |r| {
                let _ = done_tx.send(r.state);
            })),
            ..WorkerOptions::default()
        },
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stop_rx.await;
    }));
    // Let it find nothing and settle into its wait (its first poll is 30 s away).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = tokio::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["send", "--config"])
        .arg(&cfg)
        .args([
            "--to",
            "woken@example.com",
            "--subject",
            "wake up",
            "--text",
            "hello",
            "--queue",
        ])
        .output()
        .await
        .expect("smtpkit send --queue");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let state = tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
        .await
        .expect("the worker took the message well before its 30 s poll")
        .expect("a record");
    let took = started.elapsed();
    assert_eq!(state, State::Sent);
    assert_eq!(server.truth().stored.len(), 1);
    eprintln!("queued by another process, sent after {took:?} (poll interval {poll:?})");
    let _ = stop_tx.send(());
    running
        .await
        .expect("the worker task")
        .expect("the worker ran");
    Ok(())
}

/// `smtpkit outbox migrate` on PostgreSQL: the first run creates the schema and applies
/// versions 1 and 2, the second applies nothing; both print version 2, and a worker started
/// afterwards uses the migrated database.
async fn outbox_migrate_on_postgres_applies_once() -> TestResult {
    let cluster = PgCluster::start("outbox_migrate_on_postgres_applies_once (PostgreSQL)")?;
    let url = cluster.fresh_database().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), 25, &url);
    let migrate = || async {
        let out = Command::new(env!("CARGO_BIN_EXE_smtpkit"))
            .args(["outbox", "migrate", "--json", "--config"])
            .arg(&cfg)
            .output()
            .await
            .expect("smtpkit outbox migrate");
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert!(
            !v.to_string().contains(support::postgres::PASSWORD),
            "no password in {v}"
        );
        v
    };
    let first = migrate().await;
    assert_eq!(first["applied"], serde_json::json!([1, 2]), "{first}");
    assert_eq!(first["version"], 2);
    let again = migrate().await;
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");
    assert_eq!(again["version"], 2);
    let outbox = open(&cfg).await;
    assert!(outbox.migrated().applied.is_empty());
    assert_eq!(outbox.stats().await.expect("stats").total, 0);
    Ok(())
}

fn main() -> std::process::ExitCode {
    let flavor = Flavor::MultiThread { workers: 2 };
    run_tests(vec![
        tokio_trial(
            "two_workers_one_killed_nothing_is_lost_and_duplicates_only_where_unknown",
            flavor,
            two_workers_one_killed_nothing_is_lost_and_duplicates_only_where_unknown,
        ),
        tokio_trial(
            "a_waiting_worker_is_woken_by_a_message_queued_elsewhere",
            flavor,
            a_waiting_worker_is_woken_by_a_message_queued_elsewhere,
        ),
        tokio_trial(
            "outbox_migrate_on_postgres_applies_once",
            flavor,
            outbox_migrate_on_postgres_applies_once,
        ),
    ])
}
