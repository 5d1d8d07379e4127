//! The outbox's storage, every test run against each backend: SQLite files in temporary
//! directories (`sqlite::…`) and databases in a private PostgreSQL cluster (`postgres::…`,
//! reported as ignored when PostgreSQL is not installed, unless `SMTPKIT_REAL_SERVERS=1`):
//! what is stored is what comes back, idempotency holds under concurrency, leases and their
//! expiry, every state a recorded outcome leads to, the queue commands, durability across
//! reopening, and group commits on the hot path. Some tests are about one backend: SQLite's
//! files that are not outboxes, its busy timeout and several processes on one file;
//! PostgreSQL's errors for a wrong password or a missing database, migrations from several
//! openers at once and a database shared with an application's tables.
//!
//! No assertion is about wall-clock speed; waits for a lease or an age to pass are bounded
//! polls.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smtpkit::delivery::{RateLimiter, RateLimits};
use smtpkit::outbox::{
    ListFilter, NewMessage, Outbox, OutboxError, OutboxId, OutboxSettings, Outcome,
    RecipientOutcome, RecipientState, State,
};
use smtpkit::provider::Config;
use sqlx::Connection;
use support::real_servers::{run_tests, tokio_trial, Flavor, Skip, TestResult};

/// The database a test runs against.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Sqlite,
    #[cfg(feature = "outbox-postgres")]
    Postgres,
}

/// A fresh, empty outbox database for one test.
struct Db {
    url: String,
    /// The SQLite file's directory, removed at the end.
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    async fn database(self) -> Result<Db, Skip> {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                Ok(Db {
                    url: settings(dir.path()).url,
                    _dir: Some(dir),
                })
            }
            #[cfg(feature = "outbox-postgres")]
            Backend::Postgres => Ok(Db {
                url: pg::cluster()?.fresh_database().await,
                _dir: None,
            }),
        }
    }
}

impl Db {
    fn settings(&self) -> OutboxSettings {
        OutboxSettings {
            url: self.url.clone(),
            ..OutboxSettings::default()
        }
    }

    /// Messages whose final-dot mark is set, read over a connection of its own.
    async fn marked(&self) -> i64 {
        #[cfg(feature = "outbox-postgres")]
        if self.url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            return sqlx::query_scalar("SELECT COUNT(*) FROM smtpkit.messages WHERE final_dot")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        }
        let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE final_dot = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

/// The PostgreSQL cluster of this test binary: started by the first test that needs it,
/// stopped when `main` ends.
#[cfg(feature = "outbox-postgres")]
mod pg {
    use std::sync::{Arc, Mutex};

    use super::support::postgres::PgCluster;
    use super::Skip;

    static CLUSTER: Mutex<Option<Result<Arc<PgCluster>, Skip>>> = Mutex::new(None);

    pub(super) fn cluster() -> Result<Arc<PgCluster>, Skip> {
        let mut slot = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| PgCluster::start("outbox_store (PostgreSQL)").map(Arc::new))
            .clone()
    }

    pub(super) fn stop() {
        let taken = CLUSTER.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(taken);
    }
}

fn settings(dir: &Path) -> OutboxSettings {
    OutboxSettings {
        url: format!("sqlite://{}", dir.join("outbox.db").display()),
        ..OutboxSettings::default()
    }
}

fn message(n: usize) -> NewMessage {
    NewMessage {
        provider: "email".into(),
        mail_from: "noreply@example.com".into(),
        recipients: vec![format!("a{n}@example.com"), format!("b{n}@example.com")],
        message_id: format!("<{n}@example.com>"),
        bytes: format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes(),
        idempotency_key: None,
    }
}

fn ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// Waits (at most 10 s, in small steps) until `check` holds.
async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting for {what}");
}

fn outcome(results: &[(&str, RecipientOutcome)]) -> Outcome {
    Outcome {
        recipients: results
            .iter()
            .map(|(a, o)| (a.to_string(), o.clone()))
            .collect(),
        last_reply: Some("250 2.0.0 done".into()),
    }
}

fn sent(reply: &str) -> RecipientOutcome {
    RecipientOutcome::Sent {
        reply: reply.into(),
    }
}

fn failed(reply: &str) -> RecipientOutcome {
    RecipientOutcome::Failed {
        reply: reply.into(),
    }
}

fn deferred(reply: &str) -> RecipientOutcome {
    RecipientOutcome::Deferred {
        reply: Some(reply.into()),
    }
}

async fn enqueue_get_list_round_trip_keeps_every_field(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    let before = SystemTime::now();
    let mut m = message(1);
    m.idempotency_key = Some("run-1/wf/0".into());
    m.bytes = vec![0, 1, 2, 255, b'\r', b'\n'];
    let queued = outbox.enqueue(m.clone()).await.unwrap();
    assert!(!queued.existing);
    assert_eq!(queued.message_id, m.message_id);
    assert_eq!(queued.provider, "email");
    let second = outbox.enqueue(message(2)).await.unwrap();
    assert!(second.id > queued.id);

    let got = outbox.get(queued.id).await.unwrap().expect("stored");
    assert_eq!(got.id, queued.id);
    assert_eq!(got.provider, m.provider);
    assert_eq!(got.message_id, m.message_id);
    assert_eq!(got.mail_from, m.mail_from);
    assert_eq!(
        got.recipients
            .iter()
            .map(|r| (r.address.as_str(), r.state, r.reply.clone()))
            .collect::<Vec<_>>(),
        [
            ("a1@example.com", RecipientState::Pending, None),
            ("b1@example.com", RecipientState::Pending, None)
        ]
    );
    assert_eq!(got.state, State::Queued);
    assert_eq!(got.attempts, 0);
    assert!(ms(got.created_at) >= ms(before) && got.created_at <= SystemTime::now());
    assert_eq!(got.next_attempt_at, Some(got.created_at));
    assert_eq!(got.last_reply, None);
    assert_eq!(got.lease_owner, None);
    assert_eq!(got.lease_until, None);
    assert_eq!(got.size, 6);
    assert_eq!(got.idempotency_key.as_deref(), Some("run-1/wf/0"));
    assert_eq!(outbox.body(queued.id).await.unwrap(), m.bytes);

    let all = outbox.list(ListFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|q| q.id).collect::<Vec<_>>(),
        [queued.id, second.id]
    );
    assert_eq!(all[0], got);
    let one = outbox
        .list(ListFilter {
            state: Some(State::Queued),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, queued.id);
    assert!(outbox
        .list(ListFilter {
            state: Some(State::Sent),
            limit: None,
        })
        .await
        .unwrap()
        .is_empty());
    assert_eq!(outbox.get(OutboxId(999)).await.unwrap(), None);
    assert_eq!(
        outbox.body(OutboxId(999)).await,
        Err(OutboxError::NotFound(OutboxId(999)))
    );
    Ok(())
}

async fn the_same_idempotency_key_stores_one_message(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    let mut m = message(1);
    m.idempotency_key = Some("key".into());
    let first = outbox.enqueue(m.clone()).await.unwrap();
    let mut again = message(2);
    again.idempotency_key = Some("key".into());
    let second = outbox.enqueue(again).await.unwrap();
    assert!(second.existing);
    assert_eq!(second.id, first.id);
    assert_eq!(second.message_id, m.message_id, "the stored message's id");
    // Twice in one batch: one row.
    let mut a = message(3);
    a.idempotency_key = Some("batch".into());
    let b = NewMessage {
        message_id: "<other@example.com>".into(),
        ..a.clone()
    };
    let done = outbox.enqueue_many(vec![a, b]).await.unwrap();
    assert!(!done[0].existing && done[1].existing);
    assert_eq!(done[0].id, done[1].id);
    assert_eq!(outbox.stats().await.unwrap().total, 2);
    Ok(())
}

async fn concurrent_enqueues_with_one_key_from_two_outboxes_store_one(
    backend: Backend,
) -> TestResult {
    let db = backend.database().await?;
    let s = db.settings();
    let one = Outbox::open(&s).await.unwrap();
    let two = Outbox::open(&s).await.unwrap();
    for round in 0..20 {
        let mut m = message(round);
        m.idempotency_key = Some(format!("key-{round}"));
        let (a, b) = tokio::join!(
            tokio::spawn({
                let (o, m) = (one.clone(), m.clone());
                async move { o.enqueue(m).await }
            }),
            tokio::spawn({
                let (o, m) = (two.clone(), m.clone());
                async move { o.enqueue(m).await }
            }),
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        assert_eq!(a.id, b.id, "round {round}");
        assert!(
            a.existing != b.existing,
            "exactly one stored it: {a:?} {b:?}"
        );
    }
    assert_eq!(one.stats().await.unwrap().total, 20);
    Ok(())
}

async fn enqueue_many_is_all_or_nothing(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    let mut batch: Vec<NewMessage> = (0..5).map(message).collect();
    batch[3].recipients.clear();
    let err = outbox.enqueue_many(batch).await.unwrap_err();
    assert!(matches!(err, OutboxError::Invalid { .. }), "{err:?}");
    assert_eq!(err.to_string(), "message 4 of 5: no recipients");
    assert_eq!(err.exit_code(), 65);
    assert_eq!(outbox.stats().await.unwrap().total, 0);

    for (broken, expected) in [
        (
            NewMessage {
                provider: " ".into(),
                ..message(0)
            },
            "the provider is empty",
        ),
        (
            NewMessage {
                bytes: vec![],
                ..message(0)
            },
            "the message is empty",
        ),
        (
            NewMessage {
                message_id: String::new(),
                ..message(0)
            },
            "the Message-ID is empty",
        ),
        (
            NewMessage {
                recipients: vec!["a@x\r\nRCPT TO:<b@y>".into()],
                ..message(0)
            },
            "control character",
        ),
    ] {
        let err = outbox.enqueue(broken).await.unwrap_err();
        assert!(err.to_string().contains(expected), "{err}");
    }
    assert_eq!(outbox.stats().await.unwrap().total, 0);
    let done = outbox
        .enqueue_many((0..5).map(message).collect())
        .await
        .unwrap();
    assert_eq!(done.len(), 5);
    assert_eq!(outbox.stats().await.unwrap().by_state[&State::Queued], 5);
    Ok(())
}

async fn two_claimers_never_get_the_same_message(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let s = db.settings();
    let one = Outbox::open(&s).await.unwrap();
    let two = Outbox::open(&s).await.unwrap();
    one.enqueue_many((0..200).map(message).collect())
        .await
        .unwrap();
    let take = |o: Outbox, name: &'static str| {
        tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let got = o.claim(name, 7).await.unwrap();
                if got.is_empty() {
                    return ids;
                }
                for c in got {
                    assert_eq!(c.message.state, State::Sending);
                    assert_eq!(c.message.lease_owner.as_deref(), Some(name));
                    assert_eq!(c.message.attempts, 1);
                    assert!(!c.interrupted_after_final_dot);
                    assert!(c.bytes.starts_with(b"Subject: "));
                    ids.push(c.message.id);
                }
            }
        })
    };
    let (a, b) = tokio::join!(take(one.clone(), "w1"), take(two.clone(), "w2"));
    let (a, b) = (a.unwrap(), b.unwrap());
    let all: HashSet<OutboxId> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 200);
    assert_eq!(all.len(), 200, "no message taken twice");
    assert_eq!(one.stats().await.unwrap().by_state[&State::Sending], 200);
    Ok(())
}

/// A worker that takes over an interrupted message and gives it back unsent (shutting down
/// with it still in its buffer) does not erase the mark.
async fn releasing_an_interrupted_message_keeps_its_final_dot_mark(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&OutboxSettings {
        lease: Duration::from_millis(50),
        ..db.settings()
    })
    .await
    .unwrap();
    let id = outbox.enqueue(message(1)).await.unwrap().id;
    assert_eq!(outbox.claim("dead-worker", 1).await.unwrap().len(), 1);
    outbox.mark_final_dot(id, "dead-worker").await.unwrap();
    let mut taken = Vec::new();
    wait_until("the lease to end", async || {
        taken.extend(outbox.claim("second", 1).await.unwrap());
        !taken.is_empty()
    })
    .await;
    assert!(taken[0].interrupted_after_final_dot);
    outbox.release(id, "second").await.unwrap();
    let again = outbox.claim("third", 1).await.unwrap();
    assert_eq!(again.len(), 1, "released: due at once");
    assert!(
        again[0].interrupted_after_final_dot,
        "the mark survives a release"
    );
    Ok(())
}

async fn an_expired_lease_is_claimed_again_and_tells_whether_the_final_dot_was_marked(
    backend: Backend,
) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&OutboxSettings {
        lease: Duration::from_millis(50),
        ..db.settings()
    })
    .await
    .unwrap();
    let marked = outbox.enqueue(message(1)).await.unwrap().id;
    let unmarked = outbox.enqueue(message(2)).await.unwrap().id;
    let first = outbox.claim("dead-worker", 10).await.unwrap();
    assert_eq!(first.len(), 2);
    assert!(first[0].message.lease_until.unwrap() > first[0].message.created_at);
    outbox.mark_final_dot(marked, "dead-worker").await.unwrap();
    let mut again = Vec::new();
    wait_until("the lease to end", async || {
        again.extend(outbox.claim("new-worker", 10).await.unwrap());
        again.len() == 2
    })
    .await;
    again.sort_by_key(|c| c.message.id);
    assert_eq!(again[0].message.id, marked);
    assert!(again[0].interrupted_after_final_dot);
    assert_eq!(again[1].message.id, unmarked);
    assert!(!again[1].interrupted_after_final_dot);
    for c in &again {
        assert_eq!(c.message.attempts, 2);
        assert_eq!(c.message.lease_owner.as_deref(), Some("new-worker"));
    }
    // The new worker dies too, before recording anything: the mark is still there for the
    // third (only a record or an operator's retry clears it), or the message would be sent
    // again although its `.` may have reached the server.
    let mut third = Vec::new();
    wait_until("the second lease to end", async || {
        third.extend(outbox.claim("third", 10).await.unwrap());
        third.len() == 2
    })
    .await;
    third.sort_by_key(|c| c.message.id);
    assert!(third[0].interrupted_after_final_dot);
    assert!(!third[1].interrupted_after_final_dot);
    assert!(third.iter().all(|c| c.message.attempts == 3));
    let unmarked_now = outbox.get(unmarked).await.unwrap().unwrap();
    assert_eq!(unmarked_now.lease_owner.as_deref(), Some("third"));
    // A worker whose lease was taken over may not mark its final `.` any more (it would
    // write it while the new holder sends the message too): refused, nothing changes.
    assert_eq!(
        outbox.mark_final_dot(unmarked, "new-worker").await,
        Err(OutboxError::LeaseLost(unmarked))
    );
    assert_eq!(
        outbox.mark_final_dot(OutboxId(999), "third").await,
        Err(OutboxError::NotFound(OutboxId(999)))
    );
    // The dead worker's late record is refused and changes nothing.
    let late = outbox
        .record(
            marked,
            "dead-worker",
            outcome(&[("a1@example.com", sent("250"))]),
        )
        .await;
    assert_eq!(late, Err(OutboxError::LeaseLost(marked)));
    let m = outbox.get(marked).await.unwrap().unwrap();
    assert_eq!(m.state, State::Sending);
    assert!(m
        .recipients
        .iter()
        .all(|r| r.state == RecipientState::Pending));
    Ok(())
}

async fn recorded_outcomes_lead_to_each_state(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let s = OutboxSettings {
        backoff_initial: Duration::from_secs(60),
        backoff_max: Duration::from_secs(3600),
        ..db.settings()
    };
    let outbox = Outbox::open(&s).await.unwrap();
    let ids: Vec<OutboxId> = outbox
        .enqueue_many((0..5).map(message).collect())
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(outbox.claim("w", 10).await.unwrap().len(), 5);

    // Both accepted: sent.
    let state = outbox
        .record(
            ids[0],
            "w",
            outcome(&[
                ("a0@example.com", sent("250 a")),
                ("b0@example.com", sent("250 b")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Sent);
    // Both refused permanently: failed.
    let state = outbox
        .record(
            ids[1],
            "w",
            outcome(&[
                ("a1@example.com", failed("550 a")),
                ("b1@example.com", failed("550 b")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Failed);
    // One accepted, one refused: sent (every recipient settled).
    let state = outbox
        .record(
            ids[2],
            "w",
            outcome(&[
                ("a2@example.com", sent("250")),
                ("b2@example.com", failed("550")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Sent);
    // One accepted, one refused temporarily: deferred after backoff(1).
    let before = SystemTime::now();
    let state = outbox
        .record(
            ids[3],
            "w",
            outcome(&[
                ("a3@example.com", sent("250")),
                ("b3@example.com", deferred("451 later")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Deferred);
    let m = outbox.get(ids[3]).await.unwrap().unwrap();
    let next = m.next_attempt_at.expect("deferred has a next attempt");
    assert!(ms(next) >= ms(before) + 60_000, "{next:?}");
    assert!(next <= SystemTime::now() + Duration::from_secs(60));
    assert_eq!(m.lease_owner, None);
    assert_eq!(m.lease_until, None);
    assert_eq!(m.last_reply.as_deref(), Some("250 2.0.0 done"));
    assert_eq!(
        m.recipients
            .iter()
            .map(|r| (r.state, r.reply.as_deref()))
            .collect::<Vec<_>>(),
        [
            (RecipientState::Sent, Some("250")),
            (RecipientState::Pending, Some("451 later"))
        ]
    );
    // Outcome unknown for one: unknown.
    let state = outbox
        .record(
            ids[4],
            "w",
            outcome(&[
                ("a4@example.com", sent("250")),
                ("b4@example.com", RecipientOutcome::Unknown { reply: None }),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Unknown);
    let m = outbox.get(ids[4]).await.unwrap().unwrap();
    assert_eq!(m.recipients[1].state, RecipientState::Unknown);
    assert_eq!(m.next_attempt_at, None);

    let got = outbox.get(ids[1]).await.unwrap().unwrap();
    assert_eq!(got.recipients[0].reply.as_deref(), Some("550 a"));
    assert!(got
        .recipients
        .iter()
        .all(|r| r.state == RecipientState::Failed));
    // A second record of a settled message is refused: its lease is gone.
    assert_eq!(
        outbox.record(ids[0], "w", Outcome::default()).await,
        Err(OutboxError::LeaseLost(ids[0]))
    );
    assert_eq!(
        outbox.record(OutboxId(77), "w", Outcome::default()).await,
        Err(OutboxError::NotFound(OutboxId(77)))
    );

    // The deferred one's second attempt: only the pending recipient counts; backoff doubles.
    outbox.retry_all().await.unwrap();
    let again = outbox.claim("w", 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message.attempts, 2);
    assert_eq!(
        again[0]
            .message
            .pending_recipients()
            .map(|r| r.address.as_str())
            .collect::<Vec<_>>(),
        ["b3@example.com"]
    );
    let before = SystemTime::now();
    let state = outbox
        .record(
            ids[3],
            "w",
            outcome(&[("b3@example.com", deferred("452 full"))]),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Deferred);
    let next = outbox
        .get(ids[3])
        .await
        .unwrap()
        .unwrap()
        .next_attempt_at
        .unwrap();
    assert!(ms(next) >= ms(before) + 120_000);
    Ok(())
}

async fn a_message_deferred_past_max_age_expires(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&OutboxSettings {
        max_age: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(1),
        ..db.settings()
    })
    .await
    .unwrap();
    let in_record = outbox.enqueue(message(1)).await.unwrap().id;
    let in_claim = outbox.enqueue(message(2)).await.unwrap().id;
    assert_eq!(outbox.claim("w", 10).await.unwrap().len(), 2);
    // Deferred while still young: waits for its next attempt.
    let state = outbox
        .record(
            in_claim,
            "w",
            outcome(&[("a2@example.com", deferred("421 busy"))]),
        )
        .await
        .unwrap();
    if state == State::Deferred {
        // It comes due past max_age: the claim expires it instead of returning it.
        let created = outbox.get(in_claim).await.unwrap().unwrap().created_at;
        wait_until("max_age to pass", async || {
            SystemTime::now() > created + Duration::from_millis(510)
        })
        .await;
        let got = outbox.claim("w", 10).await.unwrap();
        assert!(got.iter().all(|c| c.message.id != in_claim));
    }
    assert_eq!(
        outbox.get(in_claim).await.unwrap().unwrap().state,
        State::Expired
    );

    let created = outbox.get(in_record).await.unwrap().unwrap().created_at;
    wait_until("max_age to pass", async || {
        SystemTime::now() > created + Duration::from_millis(510)
    })
    .await;
    let state = outbox
        .record(
            in_record,
            "w",
            outcome(&[
                ("a1@example.com", sent("250")),
                ("b1@example.com", deferred("450 later")),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(state, State::Expired);
    let m = outbox.get(in_record).await.unwrap().unwrap();
    assert_eq!(m.next_attempt_at, None);
    // The recipient that expired is the one still pending.
    assert_eq!(
        m.recipients.iter().map(|r| r.state).collect::<Vec<_>>(),
        [RecipientState::Sent, RecipientState::Pending]
    );
    assert_eq!(outbox.next_due().await.unwrap(), None);
    Ok(())
}

async fn release_gives_a_message_back_untouched(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    let id = outbox.enqueue(message(1)).await.unwrap().id;
    assert_eq!(outbox.claim("w", 1).await.unwrap().len(), 1);
    assert_eq!(
        outbox.release(id, "not-me").await,
        Err(OutboxError::LeaseLost(id))
    );
    outbox.release(id, "w").await.unwrap();
    let m = outbox.get(id).await.unwrap().unwrap();
    assert_eq!(
        (m.state, m.attempts, m.lease_owner),
        (State::Queued, 0, None)
    );
    assert!(m.next_attempt_at.is_some());
    let again = outbox.claim("w2", 1).await.unwrap();
    assert_eq!(again[0].message.attempts, 1);
    assert_eq!(
        outbox.release(OutboxId(55), "w").await,
        Err(OutboxError::NotFound(OutboxId(55)))
    );
    Ok(())
}

/// `max_connections_per_provider: 2`: two workers' claims together lease at most two
/// messages of a provider at once, the other provider's messages are not held back by it, and
/// a recorded outcome or an ended lease frees a place.
async fn claims_keep_to_max_connections_per_provider(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let settings = OutboxSettings {
        max_connections_per_provider: Some(2),
        lease: Duration::from_millis(600),
        ..db.settings()
    };
    let a = Outbox::open(&settings).await.unwrap();
    let b = Outbox::open(&settings).await.unwrap();
    let mut messages: Vec<NewMessage> = (0..6).map(message).collect();
    for m in &mut messages[4..] {
        m.provider = "other".into();
    }
    a.enqueue_many(messages).await.unwrap();
    let first = a.claim("wa", 10).await.unwrap();
    let providers = |c: &[smtpkit::outbox::Claimed]| {
        let mut p: Vec<String> = c.iter().map(|c| c.message.provider.clone()).collect();
        p.sort();
        p
    };
    assert_eq!(providers(&first), ["email", "email", "other", "other"]);
    assert!(b.claim("wb", 10).await.unwrap().is_empty(), "over the cap");
    // One recorded: one more of "email" may go.
    let done = &first[0].message;
    let all_sent: Vec<(&str, RecipientOutcome)> = done
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), sent("250 ok")))
        .collect();
    a.record(done.id, "wa", outcome(&all_sent)).await.unwrap();
    let second = b.claim("wb", 10).await.unwrap();
    assert_eq!(providers(&second), ["email"]);
    assert!(a.claim("wa", 10).await.unwrap().is_empty(), "over the cap");
    // Leases that end free their places (those messages are taken again first).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let third = b.claim("wb", 10).await.unwrap();
    assert_eq!(providers(&third), ["email", "email", "other", "other"]);
    Ok(())
}

/// `Outbox::migrate` applies the schema to a new database and tells so; again, it applies
/// nothing and reports the same version; an outbox opened with workers' data in it is left
/// as it was.
async fn migrate_reports_what_it_applied_and_is_idempotent(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let first = Outbox::migrate(&db.settings()).await.unwrap();
    assert_eq!(first.applied, [1, 2]);
    assert_eq!((first.version, first.latest), (2, 2));
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    assert!(outbox.migrated().applied.is_empty());
    assert_eq!(outbox.migrated().version, 2);
    outbox.enqueue(message(1)).await.unwrap();
    let again = Outbox::migrate(&db.settings()).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.version, 2);
    assert_eq!(outbox.stats().await.unwrap().total, 1);
    Ok(())
}

/// A shared limiter per outbox handle (as each worker process has its own), three of them
/// sending as fast as their limiters let them for 2.5 s with `per_second: 20`: together they
/// never pass 20 in any window. Each counted locally, they would pass 60.
async fn shared_rate_limits_hold_across_outboxes(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let limits = RateLimits {
        per_second: 20,
        ..RateLimits::default()
    };
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let outbox = Outbox::open(&db.settings()).await.unwrap();
        let limiter = RateLimiter::shared(limits, "email", Arc::new(outbox));
        tasks.spawn(async move {
            let mut uses = Vec::new();
            while start.elapsed() < Duration::from_millis(2500) {
                limiter.acquire().await;
                uses.push(tokio::time::Instant::now());
            }
            uses
        });
    }
    let mut uses: Vec<tokio::time::Instant> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        uses.extend(done.unwrap());
    }
    uses.sort_unstable();
    // 900 ms windows: a use is timed just after its limiter let it go, maybe a little late.
    let most = (0..uses.len())
        .map(|i| {
            uses[i..]
                .iter()
                .take_while(|t| t.duration_since(uses[i]) < Duration::from_millis(900))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        most <= 20,
        "{most} in one window of 900 ms, limit 20 per second"
    );
    assert!(uses.len() >= 20, "only {} uses in 2.5 s", uses.len());
    eprintln!(
        "{} uses in 2.5 s by 3 limiters, at most {most} in 900 ms",
        uses.len()
    );
    Ok(())
}

/// A batch taken but not used is given back once its hold ends: with `per_minute: 30` one
/// limiter takes a batch (3) and uses 1, and a second one then gets the other 29 at once, not
/// after the minute the unused two would otherwise block.
async fn unused_permits_are_given_back(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let limits = RateLimits {
        per_minute: 30,
        ..RateLimits::default()
    };
    let first = Outbox::open(&db.settings()).await.unwrap();
    let second = Outbox::open(&db.settings()).await.unwrap();
    let a = RateLimiter::shared(limits, "email", Arc::new(first));
    let b = RateLimiter::shared(limits, "email", Arc::new(second));
    let (waited, _) = a.acquire().await;
    assert_eq!(waited, Duration::ZERO);
    // The batch's hold is a tenth of the window, at most 1 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let took = tokio::time::timeout(Duration::from_secs(20), async {
        for i in 0..29 {
            let (waited, window) = b.acquire().await;
            assert_eq!(
                waited,
                Duration::ZERO,
                "unit {i} waited for the {window:?} window"
            );
        }
    })
    .await;
    assert!(took.is_ok(), "the unused units were not given back");
    // And the 31st waits: the limit is still the limit.
    let over = tokio::time::timeout(Duration::from_millis(1500), a.acquire()).await;
    assert!(over.is_err(), "a 31st unit in the minute was granted");
    Ok(())
}

/// `Stats::by_provider`: counts per provider (as queued, fallbacks joined) and state, only the
/// states it has, adding up to `by_state`.
async fn stats_count_per_provider(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    let mut messages: Vec<NewMessage> = (0..5).map(message).collect();
    messages[3].provider = "gmail,backup".into();
    messages[4].provider = "gmail,backup".into();
    let ids: Vec<OutboxId> = outbox
        .enqueue_many(messages)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let claimed = outbox.claim("w", 1).await.unwrap();
    assert_eq!(claimed[0].message.id, ids[0]);
    outbox
        .record(
            ids[0],
            "w",
            outcome(&[
                ("a0@example.com", sent("250")),
                ("b0@example.com", sent("250")),
            ]),
        )
        .await
        .unwrap();
    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.by_provider.len(), 2, "{stats:?}");
    let email = &stats.by_provider["email"];
    assert_eq!(email.get(&State::Sent), Some(&1));
    assert_eq!(email.get(&State::Queued), Some(&2));
    assert_eq!(email.len(), 2, "{email:?}");
    assert_eq!(
        stats.by_provider["gmail,backup"].get(&State::Queued),
        Some(&2)
    );
    assert_eq!(stats.by_state[&State::Queued], 4);
    assert_eq!(stats.total, 5);
    Ok(())
}

async fn retry_delete_stats_and_next_due(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    assert_eq!(outbox.next_due().await.unwrap(), None);
    let stats = outbox.stats().await.unwrap();
    assert_eq!((stats.total, stats.oldest_queued_age), (0, None));
    assert_eq!(stats.by_state.len(), 7);

    let ids: Vec<OutboxId> = outbox
        .enqueue_many((0..4).map(message).collect())
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let due = outbox.next_due().await.unwrap().unwrap();
    assert!(due <= SystemTime::now());
    outbox.claim("w", 3).await.unwrap();
    // Leased: no retry, no delete.
    assert_eq!(outbox.retry(ids[0]).await, Err(OutboxError::Leased(ids[0])));
    assert_eq!(
        outbox.delete(ids[0]).await,
        Err(OutboxError::Leased(ids[0]))
    );
    outbox
        .record(
            ids[0],
            "w",
            outcome(&[
                ("a0@example.com", failed("550 no")),
                ("b0@example.com", sent("250")),
            ]),
        )
        .await
        .unwrap();
    outbox
        .record(ids[1], "w", outcome(&[("a1@example.com", deferred("451"))]))
        .await
        .unwrap();
    outbox
        .record(
            ids[2],
            "w",
            outcome(&[
                ("a2@example.com", sent("250")),
                ("b2@example.com", sent("250")),
            ]),
        )
        .await
        .unwrap();

    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.total, 4);
    assert_eq!(stats.by_state[&State::Sent], 2);
    assert_eq!(stats.by_state[&State::Deferred], 1);
    assert_eq!(stats.by_state[&State::Queued], 1);
    assert_eq!(stats.by_state[&State::Failed], 0);
    assert!(stats.oldest_queued_age.is_some());
    // The queued one is due now, before the deferred one.
    assert!(outbox.next_due().await.unwrap().unwrap() <= SystemTime::now());

    // Sent to everyone: nothing to retry.
    assert!(matches!(
        outbox.retry(ids[2]).await,
        Err(OutboxError::Invalid { .. })
    ));
    // Sent with a failed recipient: the failed one goes back to pending, the sent one stays.
    outbox.retry(ids[0]).await.unwrap();
    let m = outbox.get(ids[0]).await.unwrap().unwrap();
    assert_eq!(m.state, State::Queued);
    assert_eq!(m.attempts, 1);
    assert_eq!(
        m.recipients.iter().map(|r| r.state).collect::<Vec<_>>(),
        [RecipientState::Pending, RecipientState::Sent]
    );
    assert_eq!(outbox.retry_all().await.unwrap(), 1);
    assert_eq!(
        outbox.get(ids[1]).await.unwrap().unwrap().state,
        State::Queued
    );
    assert_eq!(outbox.retry_all().await.unwrap(), 0);
    assert_eq!(
        outbox.retry(OutboxId(404)).await,
        Err(OutboxError::NotFound(OutboxId(404)))
    );

    outbox.delete(ids[2]).await.unwrap();
    assert_eq!(outbox.get(ids[2]).await.unwrap(), None);
    assert_eq!(
        outbox.delete(ids[2]).await,
        Err(OutboxError::NotFound(ids[2]))
    );
    assert_eq!(outbox.stats().await.unwrap().total, 3);
    Ok(())
}

async fn reopening_keeps_everything(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let s = db.settings();
    let (ids, before) = {
        let outbox = Outbox::open(&s).await.unwrap();
        let ids: Vec<OutboxId> = outbox
            .enqueue_many((0..3).map(message).collect())
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        outbox.claim("w", 1).await.unwrap();
        outbox.mark_final_dot(ids[0], "w").await.unwrap();
        outbox
            .record(
                ids[0],
                "w",
                outcome(&[
                    ("a0@example.com", sent("250")),
                    ("b0@example.com", deferred("451")),
                ]),
            )
            .await
            .unwrap();
        (ids, outbox.list(ListFilter::default()).await.unwrap())
    };
    let outbox = Outbox::open(&s).await.unwrap();
    assert_eq!(outbox.list(ListFilter::default()).await.unwrap(), before);
    assert_eq!(outbox.body(ids[2]).await.unwrap(), message(2).bytes);
    let next = outbox.enqueue(message(9)).await.unwrap();
    assert!(next.id > ids[2]);
    Ok(())
}

async fn files_that_are_not_outboxes_and_missing_directories_are_clear_errors() -> TestResult {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).unwrap();
    let err = Outbox::open(&OutboxSettings {
        url: format!("sqlite://{}", garbage.display()),
        ..OutboxSettings::default()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, OutboxError::Open { .. } | OutboxError::Corrupt { .. }),
        "{err:?}"
    );
    assert_eq!(err.exit_code(), 78);
    assert!(err.to_string().contains("not an SQLite database"), "{err}");

    // Another program's SQLite database.
    let other = dir.path().join("other.db");
    {
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", other.display()))
                .await
                .unwrap();
        sqlx::query("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let err = Outbox::open(&OutboxSettings {
        url: format!("sqlite:{}", other.display()),
        ..OutboxSettings::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("not an smtpkit outbox"), "{err}");
    assert_eq!(err.exit_code(), 78);

    let missing = dir.path().join("no/such/dir");
    let err = Outbox::open(&OutboxSettings {
        url: format!("sqlite://{}/outbox.db", missing.display()),
        ..OutboxSettings::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, OutboxError::Open { .. }));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
    assert!(!missing.exists());

    // Without PostgreSQL support a postgres:// URL is refused, saying so (with it, see the
    // postgres:: tests).
    #[cfg(not(feature = "outbox-postgres"))]
    {
        let err = Outbox::open(&OutboxSettings {
            url: "postgres://app:hunter2@db.example/outbox".into(),
            ..OutboxSettings::default()
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("PostgreSQL"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    let err = Outbox::open(&OutboxSettings {
        url: "redis://h".into(),
        ..OutboxSettings::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 78);
    Ok(())
}

async fn a_write_lock_held_past_the_busy_timeout_is_busy() -> TestResult {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let outbox = Outbox::open_with_busy_timeout(&s, Duration::from_millis(100))
        .await
        .unwrap();
    let path = dir.path().join("outbox.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = outbox.enqueue(message(1)).await.unwrap_err();
    assert_eq!(err, OutboxError::Busy);
    assert_eq!(err.exit_code(), 75);
    // Reads go on beside a writer (WAL).
    assert_eq!(outbox.stats().await.unwrap().total, 0);
    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    outbox.enqueue(message(1)).await.unwrap();
    Ok(())
}

async fn several_outboxes_enqueueing_at_once_lose_nothing(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let s = db.settings();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let outbox = Outbox::open(&s).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..50 {
                let n = t * 1000 + i;
                if i % 5 == 0 {
                    let batch = outbox
                        .enqueue_many(vec![message(n), message(n + 500)])
                        .await
                        .unwrap();
                    ids.extend(batch.iter().map(|e| e.id));
                } else {
                    ids.push(outbox.enqueue(message(n)).await.unwrap().id);
                }
            }
            ids
        }));
    }
    let mut all = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(all.insert(id));
        }
    }
    assert_eq!(all.len(), 4 * 60);
    let outbox = Outbox::open(&s).await.unwrap();
    assert_eq!(outbox.stats().await.unwrap().total, 240);
    Ok(())
}

/// The child side of `several_processes_enqueue_into_one_file`: does nothing unless started
/// by it (with the variables set).
async fn child_process_enqueuer() -> TestResult {
    let (Ok(url), Ok(tag)) = (
        std::env::var("SMTPKIT_OUTBOX_CHILD_URL"),
        std::env::var("SMTPKIT_OUTBOX_CHILD_TAG"),
    ) else {
        return Ok(());
    };
    let outbox = Outbox::open(&OutboxSettings {
        url,
        ..OutboxSettings::default()
    })
    .await
    .unwrap();
    for i in 0..100 {
        let mut m = message(i);
        m.idempotency_key = Some(format!("{tag}-{i}"));
        // Every child also tries a key all of them share: one row in the end.
        outbox.enqueue(m).await.unwrap();
        let mut shared = message(i);
        shared.idempotency_key = Some(format!("shared-{i}"));
        if i % 10 == 0 {
            outbox.enqueue(shared).await.unwrap();
        }
    }
    Ok(())
}

fn several_processes_enqueue_into_one_file() -> TestResult {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("outbox.db").display());
    let exe = std::env::current_exe().unwrap();
    let children: Vec<std::process::Child> = (0..3)
        .map(|c| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "sqlite::child_process_enqueuer",
                    "--test-threads=1",
                ])
                .env("SMTPKIT_OUTBOX_CHILD_URL", &url)
                .env("SMTPKIT_OUTBOX_CHILD_TAG", format!("child{c}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(
            child.wait().unwrap().success(),
            "a child failed (see its stderr)"
        );
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let outbox = Outbox::open(&OutboxSettings {
            url,
            ..OutboxSettings::default()
        })
        .await
        .unwrap();
        let stats = outbox.stats().await.unwrap();
        assert_eq!(stats.total, 3 * 100 + 10, "{stats:?}");
    });
    Ok(())
}

async fn concurrent_final_dot_marks_share_commits(backend: Backend) -> TestResult {
    let db = backend.database().await?;
    let s = db.settings();
    let outbox = Outbox::open(&s).await.unwrap();
    outbox
        .enqueue_many((0..200).map(message).collect())
        .await
        .unwrap();
    let claimed = outbox.claim("w", 200).await.unwrap();
    assert_eq!(claimed.len(), 200);
    let before = outbox.commit_counters();
    let tasks: Vec<_> = claimed
        .iter()
        .map(|c| {
            let (o, id) = (outbox.clone(), c.message.id);
            tokio::spawn(async move { o.mark_final_dot(id, "w").await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let after = outbox.commit_counters();
    let (commits, ops) = (after.commits - before.commits, after.ops - before.ops);
    assert_eq!(ops, 200);
    eprintln!("{ops} marks in {commits} commits");
    assert!(
        commits * 2 <= ops,
        "{ops} marks in {commits} commits: no batching"
    );
    // Every mark is in the database, as another connection sees it.
    assert_eq!(db.marked().await, 200);

    // Records batch the same way, each with its own result.
    let tasks: Vec<_> = claimed
        .iter()
        .map(|c| {
            let (o, id) = (outbox.clone(), c.message.id);
            let who = if id.0 % 2 == 0 { "w" } else { "thief" };
            let to = c
                .message
                .recipients
                .iter()
                .map(|r| (r.address.clone(), sent("250")))
                .collect();
            tokio::spawn(async move {
                o.record(
                    id,
                    who,
                    Outcome {
                        recipients: to,
                        last_reply: None,
                    },
                )
                .await
            })
        })
        .collect();
    let mut lost = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(state) => assert_eq!(state, State::Sent),
            Err(OutboxError::LeaseLost(_)) => lost += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(lost, 100);
    let stats = outbox.stats().await.unwrap();
    assert_eq!(stats.by_state[&State::Sent], 100);
    assert_eq!(stats.by_state[&State::Sending], 100);
    Ok(())
}

fn the_outbox_block_of_the_configuration() {
    let config = Config::from_yaml_str(
        "outbox:\n  url: sqlite:///var/lib/smtpkit/q.db\n  max_age: 2d\n  lease: 30s\n  \
         backoff: {initial: 10s, max: 5m}\n  max_connections_per_provider: 12\n",
    )
    .unwrap();
    let s = config.outbox_settings();
    assert_eq!(s.max_connections_per_provider, Some(12));
    assert_eq!(
        OutboxSettings::default().max_connections_per_provider,
        None,
        "no cap unless asked"
    );
    assert_eq!(s.url, "sqlite:///var/lib/smtpkit/q.db");
    assert_eq!(s.max_age, Duration::from_secs(2 * 86400));
    assert_eq!(s.lease, Duration::from_secs(30));
    assert_eq!(s.backoff_initial, Duration::from_secs(10));
    assert_eq!(s.backoff_max, Duration::from_secs(300));
    assert_eq!(s.backoff(3), Duration::from_secs(40));

    for (yaml, path, words) in [
        ("outbox: {lease: 5}", "outbox.lease", "unit"),
        (
            "outbox: {max_ag: 5d}",
            "outbox.max_ag",
            "did you mean `max_age`",
        ),
        (
            "outbox: {backoff: {initial: 1h, max: 1m}}",
            "outbox.backoff.max",
            "at least",
        ),
        (
            "outbox: {backoff: {inital: 1m}}",
            "outbox.backoff.inital",
            "initial",
        ),
        (
            "outbox: {url: 'mysql://u:pw@h/d'}",
            "outbox.url",
            "sqlite://",
        ),
        ("outbox: {lease: 0s}", "outbox.lease", "more than 0"),
        (
            "outbox: {max_connections_per_provider: 0}",
            "outbox.max_connections_per_provider",
            "expected 1 to 100000",
        ),
    ] {
        let err = Config::from_yaml_str(yaml).unwrap_err();
        assert_eq!(err.path(), path, "{yaml}: {err}");
        assert!(err.message().contains(words), "{yaml}: {err}");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
    let env = |name: &str| (name == "OUTBOX_DB").then(|| "sqlite:///srv/q.db".to_owned());
    let config = Config::from_yaml_str_with_env("outbox: {url: '${OUTBOX_DB}'}", &env).unwrap();
    assert_eq!(config.outbox_settings().url, "sqlite:///srv/q.db");
}

fn outbox_paths_are_relative_to_the_configuration_file() {
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.yaml");
    std::fs::write(&with, "outbox: {url: 'sqlite://queue/q.db'}\n").unwrap();
    let config = Config::from_file(&with).unwrap();
    assert_eq!(
        config.outbox_settings().url,
        format!("sqlite://{}", dir.path().join("queue/q.db").display())
    );
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let without = sub.join("without.yaml");
    std::fs::write(&without, "version: \"1.0\"\n").unwrap();
    let config = Config::from_file(&without).unwrap();
    assert_eq!(config.outbox, None);
    assert_eq!(
        config.outbox_settings().url,
        format!("sqlite://{}", sub.join("smtpkit-outbox.db").display())
    );
    // Several files: the first file's directory and the first outbox block.
    let merged = Config::from_files(&[&without, &with]).unwrap();
    assert_eq!(
        merged.outbox_settings().url,
        format!("sqlite://{}", dir.path().join("queue/q.db").display())
    );
    let merged = Config::from_files(&[&without]).unwrap();
    assert_eq!(
        merged.outbox_settings().url,
        format!("sqlite://{}", sub.join("smtpkit-outbox.db").display())
    );
}

/// A wrong password: an error to fix in the configuration (78) that does not show it.
#[cfg(feature = "outbox-postgres")]
async fn wrong_password_is_an_open_error_without_the_password() -> TestResult {
    let cluster = pg::cluster()?;
    let url = cluster.fresh_database().await;
    let wrong = url.replace(support::postgres::PASSWORD, "not-the-Secret-9");
    let err = Outbox::open(&OutboxSettings {
        url: wrong,
        ..OutboxSettings::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, OutboxError::Open { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 78);
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(!shown.contains("not-the-Secret-9"), "{shown}");
    assert!(shown.contains(":***@"), "the URL, redacted: {shown}");
    Ok(())
}

#[cfg(feature = "outbox-postgres")]
async fn a_database_that_does_not_exist_is_an_open_error() -> TestResult {
    let cluster = pg::cluster()?;
    let err = Outbox::open(&OutboxSettings {
        url: cluster.url("no_such_database"),
        ..OutboxSettings::default()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, OutboxError::Open { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 78);
    assert!(err.to_string().contains("no_such_database"), "{err}");
    assert!(
        !err.to_string().contains(support::postgres::PASSWORD),
        "{err}"
    );
    Ok(())
}

/// Processes opening a new database at once (here: pools of their own) create the schema and
/// migrate it once, under the advisory locks, and all work on it.
#[cfg(feature = "outbox-postgres")]
async fn several_openers_of_a_new_database_migrate_it_once() -> TestResult {
    let db = Backend::Postgres.database().await?;
    // Concurrent in one task (Outbox::open's future is not Send): each has its own
    // connections, so they race for the locks as processes would.
    let s = db.settings();
    let (a, b, c, d) = tokio::join!(
        Outbox::open(&s),
        Outbox::open(&s),
        Outbox::open(&s),
        Outbox::open(&s)
    );
    let opened = [a.unwrap(), b.unwrap(), c.unwrap(), d.unwrap()];
    // Exactly one of them applied the migrations; every one sees version 2.
    let applied: Vec<&[i64]> = opened
        .iter()
        .map(|o| o.migrated().applied.as_slice())
        .collect();
    assert_eq!(
        applied.iter().filter(|a| **a == [1, 2]).count(),
        1,
        "{applied:?}"
    );
    assert_eq!(applied.iter().filter(|a| a.is_empty()).count(), 3);
    assert!(opened.iter().all(|o| o.migrated().version == 2));
    for (i, o) in opened.iter().enumerate() {
        o.enqueue(message(i)).await.unwrap();
    }
    assert_eq!(opened[0].stats().await.unwrap().total, 4);
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM smtpkit._sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(versions, [1, 2]);
    Ok(())
}

/// The outbox keeps to its schema: an application's own `messages` table in the same database
/// is neither refused nor touched.
#[cfg(feature = "outbox-postgres")]
async fn a_database_shared_with_an_application_keeps_to_its_schema() -> TestResult {
    let db = Backend::Postgres.database().await?;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("CREATE TABLE public.messages (id INT PRIMARY KEY, text TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO public.messages VALUES (1, 'the application''s')")
        .execute(&mut conn)
        .await
        .unwrap();
    let outbox = Outbox::open(&db.settings()).await.unwrap();
    outbox.enqueue(message(1)).await.unwrap();
    assert_eq!(outbox.stats().await.unwrap().total, 1);
    let theirs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM public.messages")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(theirs, 1);
    Ok(())
}

/// Each test of both backends, as `sqlite::name` and `postgres::name`.
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {{
        let mut trials: Vec<libtest_mimic::Trial> = Vec::with_capacity(64);
        $(
            trials.push(tokio_trial(
                concat!("sqlite::", stringify!($test)),
                Flavor::MultiThread { workers: 2 },
                || $test(Backend::Sqlite),
            ));
            #[cfg(feature = "outbox-postgres")]
            trials.push(tokio_trial(
                concat!("postgres::", stringify!($test)),
                Flavor::MultiThread { workers: 2 },
                || $test(Backend::Postgres),
            ));
        )+
        trials
    }};
}

/// Tests of one backend (`prefix::name`).
macro_rules! on {
    ($prefix:literal; $($test:ident),+ $(,)?) => {
        vec![$(tokio_trial(
            concat!($prefix, "::", stringify!($test)),
            Flavor::MultiThread { workers: 2 },
            $test,
        )),+]
    };
}

fn main() -> std::process::ExitCode {
    let mut trials = on_each_backend![
        enqueue_get_list_round_trip_keeps_every_field,
        the_same_idempotency_key_stores_one_message,
        concurrent_enqueues_with_one_key_from_two_outboxes_store_one,
        enqueue_many_is_all_or_nothing,
        two_claimers_never_get_the_same_message,
        releasing_an_interrupted_message_keeps_its_final_dot_mark,
        an_expired_lease_is_claimed_again_and_tells_whether_the_final_dot_was_marked,
        recorded_outcomes_lead_to_each_state,
        a_message_deferred_past_max_age_expires,
        release_gives_a_message_back_untouched,
        retry_delete_stats_and_next_due,
        reopening_keeps_everything,
        several_outboxes_enqueueing_at_once_lose_nothing,
        concurrent_final_dot_marks_share_commits,
        migrate_reports_what_it_applied_and_is_idempotent,
        stats_count_per_provider,
        shared_rate_limits_hold_across_outboxes,
        unused_permits_are_given_back,
        claims_keep_to_max_connections_per_provider,
    ];
    trials.extend(on!["sqlite";
        files_that_are_not_outboxes_and_missing_directories_are_clear_errors,
        a_write_lock_held_past_the_busy_timeout_is_busy,
        child_process_enqueuer,
    ]);
    #[cfg(feature = "outbox-postgres")]
    trials.extend(on!["postgres";
        wrong_password_is_an_open_error_without_the_password,
        a_database_that_does_not_exist_is_an_open_error,
        several_openers_of_a_new_database_migrate_it_once,
        a_database_shared_with_an_application_keeps_to_its_schema,
    ]);
    trials.push(libtest_mimic::Trial::test(
        "sqlite::several_processes_enqueue_into_one_file",
        || {
            several_processes_enqueue_into_one_file().ok();
            Ok(())
        },
    ));
    for (name, test) in [
        (
            "the_outbox_block_of_the_configuration",
            the_outbox_block_of_the_configuration as fn(),
        ),
        (
            "outbox_paths_are_relative_to_the_configuration_file",
            outbox_paths_are_relative_to_the_configuration_file,
        ),
    ] {
        trials.push(libtest_mimic::Trial::test(name, move || {
            test();
            Ok(())
        }));
    }
    let code = run_tests(trials);
    #[cfg(feature = "outbox-postgres")]
    pg::stop();
    code
}
