//! `smtpkit worker` on a PostgreSQL outbox, in a private cluster (tests/support/postgres.rs;
//! ignored when PostgreSQL is not installed, unless `SMTPKIT_REAL_SERVERS=1`):
//!
//! * four worker processes share 10,000 messages to the truth server (the recording server);
//!   one is SIGKILLed once a quarter are settled, another stopped with SIGTERM once half are
//!   (it exits 0 leasing nothing: its deliveries in flight recorded, what it claimed given
//!   back), the other two finish: every message ends `sent` or `unknown`, every recipient
//!   recorded sent is stored at the server at least once, and more than once only where the
//!   outbox says `unknown`;
//! * a worker waiting with a 30 s poll interval takes a message queued by another process
//!   (`smtpkit send --queue`) at once, woken by `NOTIFY`: asserted only against the poll
//!   interval (well within 10 s), never a tight time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use smtpkit::outbox::{
    ListFilter, Outbox, OutboxId, RecipientState, State, Stats, Worker, WorkerOptions,
};
use smtpkit::provider::Config;
use support::outbox_harness::{
    copies, drain, messages, open, read_stderr, signal, unsettled, worker, write_config,
};
use support::postgres::PgCluster;
use support::real_servers::{run_tests, tokio_trial, Flavor, TestResult};
use support::truth_server::{Behaviour, TruthServer};
use tokio::process::Command;
use tokio::time::Instant;

/// Waits until `done` holds for the outbox's counts, polling; panics after `limit`.
async fn wait_for(
    outbox: &Outbox,
    limit: Duration,
    what: &str,
    done: impl Fn(&Stats) -> bool,
) -> Stats {
    let end = Instant::now() + limit;
    loop {
        let stats = outbox.stats().await.expect("stats");
        if done(&stats) {
            return stats;
        }
        assert!(
            Instant::now() < end,
            "{what}: not within {limit:?}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lease owner name a worker printed first (`worker NAME delivering from …`).
fn worker_name(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("worker "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no worker name in {stderr:?}"))
        .to_owned()
}

/// Messages leased to `name` now.
async fn leased_by(outbox: &Outbox, name: &str) -> Vec<OutboxId> {
    outbox
        .list(ListFilter {
            state: Some(State::Sending),
            limit: None,
        })
        .await
        .expect("list")
        .into_iter()
        .filter(|m| m.lease_owner.as_deref() == Some(name))
        .map(|m| m.id)
        .collect()
}

async fn four_workers_one_killed_one_stopped_nothing_is_lost_and_duplicates_only_where_unknown(
) -> TestResult {
    let began = Instant::now();
    let cluster = PgCluster::start("four_workers_one_killed_one_stopped (PostgreSQL)")?;
    let url = cluster.fresh_database().await;
    let server = TruthServer::start(Behaviour {
        max_reply_delay_ms: 2,
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port, &url);
    let outbox = open(&cfg).await;
    let total: u64 = 10_000;
    let queued = outbox
        .enqueue_many(messages(total as usize, 5))
        .await
        .expect("enqueue");
    assert_eq!(queued.len() as u64, total);
    let delivering = Instant::now();
    let set_up = delivering - began;

    let mut workers: Vec<_> = (0..4)
        .map(|_| {
            let mut child = worker(&cfg, &["--concurrency", "4"]);
            let stderr = read_stderr(&mut child);
            (child, stderr)
        })
        .collect();
    let settled = |s: &Stats| s.total - unsettled(s);

    // A quarter settled: SIGKILL one, whatever it has leased or in flight.
    let limit = Duration::from_secs(120);
    wait_for(&outbox, limit, "a quarter settled", |s| {
        settled(s) >= total / 4
    })
    .await;
    let (mut killed, killed_stderr) = workers.remove(0);
    killed.start_kill().expect("SIGKILL");
    assert!(!killed.wait().await.expect("reaped").success());
    let killed_name = worker_name(&killed_stderr.await.expect("stderr"));
    // Left leased, for the others to take over once the leases end (1 s); some may already
    // have been taken over by now, so this is only reported.
    let orphaned = leased_by(&outbox, &killed_name).await.len();

    // Half settled: SIGTERM another, which finishes and records its deliveries in flight,
    // gives back what it claimed but had not started, and exits 0: then it leases nothing
    // (checked at once, well within the 1 s a lease it left behind would last).
    wait_for(&outbox, limit, "half settled", |s| settled(s) >= total / 2).await;
    let (mut stopped, stopped_stderr) = workers.remove(0);
    signal(&stopped, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(60), stopped.wait())
        .await
        .expect("the SIGTERMed worker exits")
        .expect("status");
    let text = stopped_stderr.await.expect("stderr");
    assert_eq!(status.code(), Some(0), "{text}");
    let stopped_name = worker_name(&text);
    let still = leased_by(&outbox, &stopped_name).await;
    assert!(
        still.is_empty(),
        "the SIGTERMed worker left {} leased: {still:?}\n{text}",
        still.len()
    );
    assert!(
        text.lines()
            .any(|l| l.contains(" delivered: ") && !l.starts_with("0 delivered")),
        "the SIGTERMed worker delivered nothing:\n{text}"
    );

    // The other two finish everything, the killed worker's leases included.
    wait_for(&outbox, Duration::from_secs(240), "all settled", |s| {
        unsettled(s) == 0
    })
    .await;
    let delivered_in = delivering.elapsed();
    for (mut child, stderr) in workers {
        signal(&child, "TERM");
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("a remaining worker exits on SIGTERM")
            .expect("status");
        let text = stderr.await.expect("stderr");
        assert_eq!(status.code(), Some(0), "{text}");
    }
    drain(&cfg, &outbox).await;

    let all = outbox
        .list(ListFilter {
            state: None,
            limit: None,
        })
        .await
        .expect("list");
    assert_eq!(all.len() as u64, total);
    let copies = copies(&server);
    let (mut unknown, mut duplicated) = (0, 0);
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
                duplicated += 1;
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
    // Unknown: what the killed worker had past its final `.` (at most its 4 deliveries in
    // flight), and a lease that ran out under load after the final `.` was marked.
    assert!(unknown < 50, "{unknown} unknown");
    eprintln!(
        "4 workers, {total} messages: {} sent, {unknown} unknown ({duplicated} recipients \
         stored twice), {orphaned} left leased by the SIGKILLed worker, the SIGTERMed one \
         exited 0 leasing nothing; cluster and queue {set_up:.1?}, all settled after \
         {delivered_in:.1?}, {:.1?} in all",
        total - unknown,
        began.elapsed()
    );
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
            "four_workers_one_killed_one_stopped_nothing_is_lost_and_duplicates_only_where_unknown",
            flavor,
            four_workers_one_killed_one_stopped_nothing_is_lost_and_duplicates_only_where_unknown,
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
