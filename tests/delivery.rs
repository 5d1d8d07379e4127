//! Delivery under faults: pool bounds, retries, fallbacks, rate limits — and the accounting
//! that nothing is lost and nothing is silently delivered twice.

mod support;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use smtpkit::client::Transcript;
use smtpkit::message::Notification;
use smtpkit::provider::{Config, Mailer};
use smtpkit::ErrorKind;
use support::fault_server::{FaultServer, Faults};
use support::mock::{ehlo_ok, quit_ok, MockServer, Step};

fn r(line: &str) -> Step {
    Step::reply(line)
}

fn e(prefix: &str) -> Step {
    Step::expect(prefix)
}

/// A provider `email` at 127.0.0.1:port with `extra` config lines (indented 6).
fn config(port: u16, extra: &str) -> Config {
    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {port}\n      from: sender@example.com\n      security: none\n      auth: none\n      timeouts: {{connect: 5s, greeting: 5s, command: 5s, data_start: 5s, data_block: 5s, data_end: 5s}}\n{extra}"
    );
    Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn note(subject: &str, to: &[&str]) -> Notification {
    let mut n = Notification::new(subject).text("body");
    for a in to {
        n = n.to(a.parse().expect("valid"));
    }
    n
}

const FAST_RETRY: &str = "      retry: {attempts: 3, initial_backoff: 1ms, max_backoff: 5ms}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_messages_through_random_faults_are_each_accounted_for_exactly() {
    let faults = Faults {
        greeting_421: 20,
        mail_451: 20,
        rcpt_450: 20,
        rcpt_550: 10,
        data_451: 20,
        drop_at_command: 5,
        final_451: 20,
        accept_then_drop: 10,
        drop_after_dot: 10,
        noop_421: 100,
        close_after_message: 20,
    };
    let server = FaultServer::start(faults, 20261126).await;
    let pool = "      pool: {max_connections: 8, health_check_after: 1ms}\n";
    let mailer =
        Mailer::new(&config(server.port, &format!("{FAST_RETRY}{pool}")), None).expect("mailer");

    const N: usize = 2000;
    const TASKS: usize = 32;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let mailer = mailer.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for i in (t..N).step_by(TASKS) {
                let subject = format!("msg-{i}");
                let to = [format!("a{i}@example.org"), format!("b{i}@example.org")];
                let n = note(&subject, &[&to[0], &to[1]]);
                results.push((subject, mailer.send(&n).await));
            }
            results
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.expect("task"));
    }
    assert_eq!(outcomes.len(), N, "every message has an outcome");

    let stored = server.stats.recipients.lock().expect("lock").clone();
    let (mut delivered, mut refused, mut unknown, mut unknown_stored) = (0, 0, 0, 0);
    let mut fully_failed = 0;
    for (subject, outcome) in &outcomes {
        // Per recipient: how many copies did the server store?
        let mut copies: HashMap<String, usize> = HashMap::new();
        for rcpts in stored.get(subject).into_iter().flatten() {
            for r in rcpts {
                *copies.entry(r.clone()).or_default() += 1;
            }
        }
        let statuses = match outcome {
            Ok(report) => report.recipients.clone(),
            Err(failure) => {
                fully_failed += 1;
                failure.recipients.clone()
            }
        };
        assert_eq!(
            statuses.len(),
            2,
            "{subject}: both recipients accounted for"
        );
        for s in &statuses {
            let n = copies.get(&s.address).copied().unwrap_or(0);
            assert!(n <= 1, "{subject} to {}: stored {n} times", s.address);
            if s.accepted {
                assert_eq!(
                    n, 1,
                    "{subject} to {}: reported delivered, so stored exactly once",
                    s.address
                );
                delivered += 1;
            } else if s.outcome_unknown {
                unknown += 1;
                unknown_stored += n;
            } else {
                assert_eq!(
                    n, 0,
                    "{subject} to {}: reported failed, so never stored: {s:?}",
                    s.address
                );
                refused += 1;
            }
        }
    }
    let total_copies: usize = stored.values().flatten().map(Vec::len).sum();
    assert_eq!(
        total_copies,
        delivered + unknown_stored,
        "every stored copy is one the client knows of"
    );
    assert_eq!(delivered + refused + unknown, 2 * N);
    eprintln!(
        "{N} messages: {delivered} deliveries, {refused} refusals, {unknown} unknown ({unknown_stored} stored), \
         {fully_failed} messages failed outright, {} sessions, at most {} open and {} in a transaction at once",
        server.stats.sessions.load(Ordering::SeqCst),
        server.stats.max_active.load(Ordering::SeqCst),
        server.stats.max_in_transaction.load(Ordering::SeqCst),
    );
    assert!(delivered > N, "most recipients got their message");
    assert!(unknown > 0 && refused > 0, "the faults happened");
    // What the pool bounds is the sessions it lends: at most 8 tasks hold a session at once,
    // and only a task holding a session sends MAIL over it. Counting open sockets instead
    // (`max_active`) would also count sessions being retired: one that reached
    // max_messages_per_connection gets its QUIT in the background after its permit is back,
    // and one the client dropped after a failure is open at the server until it reads the
    // EOF; meanwhile the permit lets the next task open a new session. That overlap is real
    // (seen as 9 on a loaded machine) and not what this test is about.
    let in_transaction = server.stats.max_in_transaction.load(Ordering::SeqCst);
    assert!(
        in_transaction <= 8,
        "at most 8 sessions lent at once, saw {in_transaction} in a transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_share_eight_connections() {
    let server =
        FaultServer::start_with_delay(Faults::default(), 1, Duration::from_millis(2)).await;
    // No session is ever retired here (no faults, more messages allowed per session than
    // sent, idle and lifetime limits far away), so nothing is closed in the background and
    // the server's count of open sockets is exactly the pool's count of sessions.
    let mailer = Mailer::new(
        &config(
            server.port,
            "      pool: {max_connections: 8, max_messages_per_connection: 1000, idle_timeout: 10m, max_lifetime: 1h}\n",
        ),
        None,
    )
    .expect("mailer");
    let mut tasks = Vec::new();
    for t in 0..64 {
        let mailer = mailer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let report = mailer
                    .send(&note(&format!("t{t}-{i}"), &["x@example.org"]))
                    .await
                    .expect("sent");
                assert_eq!(report.attempts.len(), 1);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let stats = &server.stats;
    assert_eq!(
        stats.accepted.lock().expect("lock").values().sum::<usize>(),
        640
    );
    assert!(stats
        .accepted
        .lock()
        .expect("lock")
        .values()
        .all(|&n| n == 1));
    let max_active = stats.max_active.load(Ordering::SeqCst);
    let in_transaction = stats.max_in_transaction.load(Ordering::SeqCst);
    let sessions = stats.sessions.load(Ordering::SeqCst);
    assert!(
        max_active <= 8,
        "at most 8 sessions at once, saw {max_active}"
    );
    assert!(
        in_transaction >= 2,
        "the tasks did send in parallel: {in_transaction}"
    );
    assert!(
        sessions <= 8,
        "connections were reused: {sessions} sessions for 640 messages"
    );
    mailer.close().await;
}

#[tokio::test]
async fn only_the_recipients_that_failed_transiently_are_retried() {
    let server = MockServer::start(
        [
            ehlo_ok(&["PIPELINING"]),
            vec![
                e("MAIL"),
                e("RCPT TO:<a@"),
                e("RCPT TO:<b@"),
                e("RCPT TO:<c@"),
                e("DATA"),
            ],
            vec![
                r("250 ok"),
                r("250 ok"),
                r("450 4.2.1 busy"),
                r("550 5.1.1 unknown"),
                r("354 go"),
                Step::ExpectData,
                r("250 first"),
            ],
            vec![
                e("MAIL"),
                e("RCPT TO:<b@"),
                e("DATA"),
                r("250 ok"),
                r("250 ok"),
                r("354 go"),
                Step::ExpectData,
                r("250 second"),
            ],
            quit_ok(),
        ]
        .concat(),
    )
    .await;
    let mailer = Mailer::new(&config(server.port(), FAST_RETRY), None).expect("mailer");
    let report = mailer
        .send(&note("s", &["a@x.test", "b@x.test", "c@x.test"]))
        .await
        .expect("delivered");
    mailer.close().await;
    let log = server.finish().await;
    log.assert_ok();
    let accepted: Vec<(&str, bool)> = report
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.accepted))
        .collect();
    assert_eq!(
        accepted,
        [("a@x.test", true), ("b@x.test", true), ("c@x.test", false)]
    );
    assert_eq!(report.attempts.len(), 2);
    assert_eq!(report.attempts[0].result, "partial");
    assert_eq!(report.attempts[1].recipients, 1);
    assert_eq!(log.messages.len(), 2);
}

#[tokio::test]
async fn permanent_failures_are_never_retried() {
    let server = MockServer::start(
        [
            ehlo_ok(&[]),
            vec![e("MAIL"), r("550 5.7.1 sender refused")],
            quit_ok(),
        ]
        .concat(),
    )
    .await;
    let mailer = Mailer::new(&config(server.port(), FAST_RETRY), None).expect("mailer");
    let failure = mailer
        .send(&note("s", &["a@x.test"]))
        .await
        .expect_err("refused");
    mailer.close().await;
    assert!(failure.error.is_permanent());
    assert_eq!(failure.attempts.len(), 1);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.received_str(0).matches("MAIL FROM").count(), 1);
}

#[tokio::test]
async fn outcome_unknown_is_reported_not_retried_unless_asked() {
    let lost = || {
        [
            ehlo_ok(&["PIPELINING"]),
            vec![
                e("MAIL"),
                e("RCPT"),
                e("DATA"),
                r("250 ok"),
                r("250 ok"),
                r("354 go"),
                Step::ExpectData,
                Step::Close,
            ],
        ]
        .concat()
    };
    let server = MockServer::start(lost()).await;
    let mailer = Mailer::new(&config(server.port(), FAST_RETRY), None).expect("mailer");
    let failure = mailer
        .send(&note("s", &["a@x.test"]))
        .await
        .expect_err("unknown");
    assert!(failure.error.is_outcome_unknown());
    assert_eq!(failure.attempts.len(), 1, "not retried");
    assert!(failure.recipients[0].outcome_unknown);
    server.finish().await.assert_ok();

    let mut second = ehlo_ok(&["PIPELINING"]);
    second.extend([
        e("MAIL"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 ok"),
    ]);
    second.extend(quit_ok());
    let server = MockServer::start_many(vec![lost(), second]).await;
    let opt_in = format!("{}      retry: {{attempts: 3, initial_backoff: 1ms, max_backoff: 5ms, retry_unknown_outcome: true}}\n", "");
    let mailer = Mailer::new(&config(server.port(), &opt_in), None).expect("mailer");
    let report = mailer
        .send(&note("s", &["a@x.test"]))
        .await
        .expect("retried and sent");
    mailer.close().await;
    assert_eq!(report.attempts.len(), 2);
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(
        log.messages.len(),
        2,
        "the user accepted a possible duplicate"
    );
}

#[tokio::test]
async fn fallback_provider_takes_over_after_transient_failures() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let backup = MockServer::start(
        [
            ehlo_ok(&[]),
            vec![
                e("MAIL"),
                r("250 ok"),
                e("RCPT"),
                r("250 ok"),
                e("DATA"),
                r("354 go"),
                Step::ExpectData,
                r("250 via backup"),
            ],
            quit_ok(),
        ]
        .concat(),
    )
    .await;
    let yaml = format!(
        "providers:\n  primary:\n    provider: email\n    config: {{host: 127.0.0.1, port: {closed}, from: a@x.test, security: none, auth: none, fallback: [backup], retry: {{attempts: 2, initial_backoff: 1ms}}}}\n  backup:\n    provider: email\n    config: {{host: 127.0.0.1, port: {}, from: a@x.test, security: none, auth: none}}\n",
        backup.port()
    );
    let config = Config::from_yaml_str(&yaml).expect("config");
    let (transcript, lines) = Transcript::buffer();
    let mailer = Mailer::with_options(&config, Some("primary"), Some(transcript)).expect("mailer");
    let report = mailer
        .send(&note("s", &["b@x.test"]))
        .await
        .expect("delivered by backup");
    mailer.close().await;
    assert_eq!(report.provider, "backup");
    let tries: Vec<(&str, &str)> = report
        .attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.result.as_str()))
        .collect();
    assert_eq!(
        tries,
        [
            ("primary", "connect"),
            ("primary", "connect"),
            ("backup", "sent")
        ]
    );
    assert!(
        lines
            .lines()
            .iter()
            .any(|l| l.contains("falling back to provider backup")),
        "{:?}",
        lines.lines()
    );
    backup.finish().await.assert_ok();
}

#[tokio::test]
async fn an_idle_connection_that_died_is_replaced_not_reused() {
    // The first session answers the health-check NOOP with 421; the pool opens a second.
    let first = [
        ehlo_ok(&[]),
        vec![
            e("MAIL"),
            r("250 ok"),
            e("RCPT"),
            r("250 ok"),
            e("DATA"),
            r("354 go"),
            Step::ExpectData,
            r("250 one"),
        ],
        vec![e("NOOP"), r("421 4.4.2 idle too long"), Step::Close],
    ]
    .concat();
    let second = [
        ehlo_ok(&[]),
        vec![
            e("MAIL"),
            r("250 ok"),
            e("RCPT"),
            r("250 ok"),
            e("DATA"),
            r("354 go"),
            Step::ExpectData,
            r("250 two"),
        ],
        quit_ok(),
    ]
    .concat();
    let server = MockServer::start_many(vec![first, second]).await;
    let mailer = Mailer::new(
        &config(
            server.port(),
            "      pool: {health_check_after: 50ms}\n      retry: {attempts: 1}\n",
        ),
        None,
    )
    .expect("mailer");
    let one = mailer
        .send(&note("one", &["a@x.test"]))
        .await
        .expect("first");
    tokio::time::sleep(Duration::from_millis(120)).await;
    let two = mailer
        .send(&note("two", &["a@x.test"]))
        .await
        .expect("second, over a new session");
    mailer.close().await;
    assert_eq!(one.final_reply.text, "one");
    assert_eq!(two.final_reply.text, "two");
    assert_eq!(two.attempts.len(), 1, "the dead session cost no attempt");
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.connections, 2);
}

#[tokio::test]
async fn pool_limits_messages_per_connection() {
    let server = FaultServer::start(Faults::default(), 7).await;
    // Idleness is not the subject: nothing may expire between two sends however slow the
    // machine, so only max_messages_per_connection can end a session.
    let mailer = Mailer::new(
        &config(
            server.port,
            "      pool: {max_messages_per_connection: 2, idle_timeout: 10m, max_lifetime: 1h, health_check_after: 10m}\n",
        ),
        None,
    )
    .expect("mailer");
    for i in 0..5 {
        mailer
            .send(&note(&format!("m{i}"), &["a@x.test"]))
            .await
            .expect("sent");
    }
    assert_eq!(
        server.stats.sessions.load(Ordering::SeqCst),
        3,
        "2 + 2 + 1 messages"
    );
    mailer.close().await;
}

#[tokio::test]
async fn a_session_idle_past_idle_timeout_is_not_reused() {
    let server = FaultServer::start(Faults::default(), 8).await;
    let mailer = Mailer::new(
        &config(server.port, "      pool: {idle_timeout: 300ms}\n"),
        None,
    )
    .expect("mailer");
    mailer
        .send(&note("early", &["a@x.test"]))
        .await
        .expect("sent");
    assert_eq!(server.stats.sessions.load(Ordering::SeqCst), 1);
    // At least the idle timeout passes (a slow machine only makes it longer): whether the
    // reaper closed the session meanwhile or the checkout finds it expired, it is not reused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    mailer
        .send(&note("late", &["a@x.test"]))
        .await
        .expect("sent");
    assert_eq!(
        server.stats.sessions.load(Ordering::SeqCst),
        2,
        "the idle session expired"
    );
    mailer.close().await;
}

#[tokio::test]
async fn waiting_for_a_connection_times_out() {
    let server = FaultServer::start(Faults::default(), 3).await;
    let mailer = Mailer::new(&config(server.port, "      pool: {max_connections: 1, checkout_timeout: 100ms}\n      retry: {attempts: 1}\n"), None)
        .expect("mailer");
    let pool = mailer.routes()[0].pool.clone();
    let held = pool.get().await.expect("the only connection");
    let failure = mailer
        .send(&note("s", &["a@x.test"]))
        .await
        .expect_err("no free connection");
    assert_eq!(failure.error.kind(), ErrorKind::Timeout);
    assert!(
        failure.error.to_string().contains("no free connection"),
        "{}",
        failure.error
    );
    drop(held);
    mailer
        .send(&note("s", &["a@x.test"]))
        .await
        .expect("free again");
    mailer.close().await;
}

/// Keeps tokio's paused clock from auto-advancing while it lives, so that it moves only by
/// `tokio::time::advance`: tokio does not auto-advance while a `spawn_blocking` task runs (see
/// "Preventing auto-advance" under `tokio::time::pause`). Real I/O can then take as long as it
/// takes without timeouts firing early, and a rate-limit window cannot lapse between two sends
/// on a slow machine. Needs a `current_thread` runtime with `start_paused`.
struct FrozenClock {
    _release: std::sync::mpsc::Sender<()>,
}

impl FrozenClock {
    fn new() -> FrozenClock {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            // Returns when the sender is dropped.
            let _ = wait.recv();
        });
        FrozenClock { _release: release }
    }
}

/// `fut`'s output, or a panic after `limit` of real time (a frozen clock cannot time it out).
async fn within_real_time<T>(limit: Duration, fut: impl std::future::Future<Output = T>) -> T {
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let timer = tokio::task::spawn_blocking(move || wait.recv_timeout(limit));
    tokio::select! {
        out = fut => {
            drop(done);
            out
        }
        _ = timer => panic!("not done within {limit:?} of real time"),
    }
}

/// Lets the runtime run other tasks (real I/O included) for `d` of real time.
async fn run_for_real_time(d: Duration) {
    tokio::task::spawn_blocking(move || std::thread::sleep(d))
        .await
        .expect("sleep");
}

#[tokio::test(start_paused = true)]
async fn rate_limit_waits_are_visible() {
    let _frozen = FrozenClock::new();
    let server = FaultServer::start(Faults::default(), 5).await;
    let (transcript, lines) = Transcript::buffer();
    let config = config(server.port, "      rate_limit: {per_second: 2}\n");
    let mailer = Mailer::with_options(&config, None, Some(transcript)).expect("mailer");
    let mut waits = Vec::new();
    within_real_time(Duration::from_secs(60), async {
        for i in 0..2 {
            let report = mailer
                .send(&note(&format!("r{i}"), &["a@x.test"]))
                .await
                .expect("sent");
            waits.push(report.attempts[0].rate_limit_wait);
        }
    })
    .await;
    assert!(waits[0].is_zero() && waits[1].is_zero(), "{waits:?}");

    // The clock has not moved since the first send: the third is held by the per-second
    // limit for as long as the clock stands still, however long that is in real time.
    let third = {
        let mailer = mailer.clone();
        tokio::spawn(async move { mailer.send(&note("r2", &["a@x.test"])).await })
    };
    run_for_real_time(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "the third message was not held");
    assert_eq!(server.stats.accepted_count("r2"), 0, "sent too early");

    // A second later (a token bucket refills one in half a second, a sliding window frees
    // one after a second) it goes.
    let advanced = Duration::from_millis(1100);
    tokio::time::advance(advanced).await;
    let report = within_real_time(Duration::from_secs(60), third)
        .await
        .expect("task")
        .expect("sent");
    waits.push(report.attempts[0].rate_limit_wait);
    mailer.close().await;
    assert_eq!(server.stats.accepted_count("r2"), 1);
    assert!(
        !waits[2].is_zero() && waits[2] <= advanced,
        "the third waited for the per-second limit, and no longer than the clock moved: {waits:?}"
    );
    assert!(
        lines
            .lines()
            .iter()
            .any(|l| l.contains("per-second rate limit")),
        "{:?}",
        lines.lines()
    );
}
