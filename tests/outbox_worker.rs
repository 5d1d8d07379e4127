//! The outbox and `smtpkit worker` under real faults: the worker process killed with SIGKILL
//! at random moments and restarted, killed on purpose between the final `.` and its reply,
//! stopped with SIGTERM with a transaction in flight, and a server that is down for a while.
//! Accounting per message and recipient against what the truth server stored: nothing lost,
//! a copy more than once only where the outbox says `unknown`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use smtpkit::outbox::{ListFilter, RecipientState, State};
use support::outbox_harness::{copies, drain, messages, open, signal, worker};
use support::truth_server::{Behaviour, Point, Stall, TruthServer};
use tokio::process::Command;

/// The shared config with the outbox in `outbox.db` next to it.
fn write_config(dir: &Path, port: u16) -> PathBuf {
    support::outbox_harness::write_config(dir, port, "sqlite://outbox.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ten_times_nothing_is_lost_and_duplicates_only_where_unknown() {
    let server = TruthServer::start(Behaviour {
        max_reply_delay_ms: 2,
        ..Behaviour::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port);
    let outbox = open(&cfg).await;
    let total = 5000;
    let queued = outbox
        .enqueue_many(messages(total, 7))
        .await
        .expect("enqueue");
    assert_eq!(queued.len(), total);

    let mut rng = fastrand::Rng::with_seed(11);
    for round in 0..10 {
        let mut child = worker(&cfg, &["--concurrency", "4"]);
        tokio::time::sleep(Duration::from_millis(rng.u64(150..900))).await;
        child.start_kill().expect("SIGKILL");
        let status = child.wait().await.expect("reaped");
        assert!(!status.success(), "round {round}: the worker was killed");
    }
    drain(&cfg, &outbox).await;

    let all = outbox
        .list(ListFilter {
            state: None,
            limit: None,
        })
        .await
        .expect("list");
    assert_eq!(all.len(), total, "every message is still accounted for");
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
    // Messages that never reached the server cannot be `sent`; the rest are unknown only
    // when a kill fell between a final `.` and its record: a few of 5,000.
    assert!(unknown < 200, "{unknown} unknown");
    eprintln!("{unknown} of {total} messages ended unknown after 10 kills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_final_dot_and_its_reply_the_message_is_unknown_not_resent() {
    let mut server = TruthServer::start(Behaviour::default()).await;
    server.stall(Stall {
        point: Point::FinalReply,
        release_after: None,
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port);
    let outbox = open(&cfg).await;
    let id = outbox.enqueue_many(messages(1, 1)).await.expect("enqueue")[0].id;
    let mut child = worker(&cfg, &["--concurrency", "1"]);
    // The server has the whole message and holds its reply: kill the worker now.
    server.reached(Point::FinalReply).await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    server.release();
    drain(&cfg, &outbox).await;
    let m = outbox.get(id).await.expect("get").expect("present");
    assert_eq!(m.state, State::Unknown, "{m:?}");
    assert!(m
        .recipients
        .iter()
        .all(|r| r.state == RecipientState::Unknown));
    assert_eq!(server.truth().stored.len(), 1, "not sent again");

    // The operator decides: `queue retry` sends it again (same Message-ID).
    let out = Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["queue", "retry", &id.to_string(), "--config"])
        .arg(&cfg)
        .output()
        .await
        .expect("queue retry");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    drain(&cfg, &outbox).await;
    assert_eq!(
        outbox.get(id).await.expect("get").expect("present").state,
        State::Sent
    );
    let stored = server.truth().stored;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        copies(&server).values().copied().max(),
        Some(2),
        "the same Message-ID twice, for the receiver to deduplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_transaction_in_flight_finish_and_records_it() {
    let mut server = TruthServer::start(Behaviour::default()).await;
    server.stall(Stall {
        point: Point::FinalReply,
        release_after: Some(Duration::from_millis(500)),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port);
    let outbox = open(&cfg).await;
    let ids: Vec<_> = outbox
        .enqueue_many(messages(3, 2))
        .await
        .expect("enqueue")
        .iter()
        .map(|q| q.id)
        .collect();
    let child = worker(&cfg, &["--concurrency", "1"]);
    server.reached(Point::FinalReply).await;
    signal(&child, "TERM");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the worker stops")
        .expect("output");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The message in flight was finished and recorded; the others were not started.
    let states: Vec<State> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(outbox.get(*id).await.expect("get").expect("present").state);
        }
        v
    };
    assert_eq!(
        states.iter().filter(|s| **s == State::Sent).count(),
        server.truth().stored.len(),
        "{states:?}"
    );
    assert!(states.contains(&State::Sent), "{states:?}");
    assert!(
        !states.contains(&State::Sending),
        "nothing left leased: {states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_deferred_messages_go_out_on_schedule() {
    // A port where nothing listens yet.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), port);
    let outbox = open(&cfg).await;
    let ids: Vec<_> = outbox
        .enqueue_many(messages(5, 3))
        .await
        .expect("enqueue")
        .iter()
        .map(|q| q.id)
        .collect();
    let child = worker(&cfg, &["--concurrency", "2"]);
    // Each message is tried and deferred at least twice while the server is down.
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut tried_twice = true;
        for id in &ids {
            let m = outbox.get(*id).await.expect("get").expect("present");
            assert_ne!(m.state, State::Sent);
            tried_twice &= m.attempts >= 2 && m.state == State::Deferred;
        }
        if tried_twice {
            break;
        }
        assert!(tokio::time::Instant::now() < end, "never deferred twice");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = outbox.get(ids[0]).await.expect("get").expect("present");
    assert!(
        m.last_reply
            .as_deref()
            .is_some_and(|r| r.contains("connect")),
        "{m:?}"
    );
    // The server comes back on the same port.
    let server = TruthServer::start_on(port, Behaviour::default()).await;
    loop {
        let mut sent = 0;
        for id in &ids {
            if outbox.get(*id).await.expect("get").expect("present").state == State::Sent {
                sent += 1;
            }
        }
        if sent == ids.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end + Duration::from_secs(60),
            "not sent after the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&child, "TERM");
    let out = child.wait_with_output().await.expect("output");
    assert_eq!(out.status.code(), Some(0));
    // Each recipient once: nothing was sent during the outage.
    let copies = copies(&server);
    assert_eq!(copies.len(), ids.len() * 2);
    assert!(copies.values().all(|n| *n == 1), "{copies:?}");
}

/// Another process holds the outbox locked for longer than the busy timeout (5 s) while the
/// worker wants to claim: the worker waits and tries again instead of giving up, and delivers
/// what is queued once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_rides_out_a_database_locked_past_the_busy_timeout() {
    use sqlx::Connection as _;
    use tokio::io::AsyncBufReadExt as _;
    let server = TruthServer::start(Behaviour::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), server.port);
    let outbox = open(&cfg).await;
    let mut child = worker(&cfg, &["--concurrency", "1"]);
    // Its stderr, line by line; the first line says it opened the outbox and is waiting.
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the worker starts")
        .expect("a line");
    assert!(first.contains("delivering from"), "{first}");
    let url = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let mut lock = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .expect("lock");
    // Held past the 5 s busy timeout: a claim fails as busy.
    let mut said = Vec::new();
    let busy = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = rx.recv().await {
            let found = line.contains("claiming failed for now");
            said.push(line);
            if found {
                return;
            }
        }
    })
    .await;
    assert!(busy.is_ok(), "no busy claim: {said:?}");
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlock");
    drop(lock);
    let ids: Vec<_> = outbox
        .enqueue_many(messages(3, 5))
        .await
        .expect("enqueue")
        .iter()
        .map(|q| q.id)
        .collect();
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut sent = 0;
        for id in &ids {
            if outbox.get(*id).await.expect("get").expect("present").state == State::Sent {
                sent += 1;
            }
        }
        if sent == ids.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "not delivered after the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&child, "TERM");
    let status = child.wait().await.expect("status");
    assert_eq!(status.code(), Some(0));
}
