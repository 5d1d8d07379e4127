//! Delivery keeps what the README promises: a malformed final reply is "outcome unknown",
//! what RCPT said survives a lost connection, providers that cannot send hand over to the
//! fallback (which sends as itself), and a send ends by its total deadline.

mod support;

use smtpkit::delivery::RateCount;
use smtpkit::message::Notification;
use smtpkit::provider::{Config, Mailer};
use smtpkit::{ErrorKind, Stage};
use support::truth_server::{Behaviour, Point, Stall, TruthServer};

/// A provider block `id` at `port`, sending as `from`, with `extra` lines (indented 6).
fn provider(id: &str, port: u16, from: &str, extra: &str) -> String {
    format!(
        "  {id}:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {port}\n      from: {from}\n      security: none\n      timeouts: {{connect: 30s, greeting: 30s, command: 30s, data_start: 30s, data_block: 30s, data_end: 30s}}\n      retry: {{attempts: 3, initial_backoff: 1ms, max_backoff: 2ms}}\n{extra}"
    )
}

const NO_AUTH: &str = "      auth: none\n";

fn mailer(providers: &[String], first: &str) -> Mailer {
    let yaml = format!("providers:\n{}", providers.concat());
    let config = Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Mailer::new(&config, Some(first)).expect("mailer")
}

fn note(to: &[&str], marker: &str) -> Notification {
    let mut n = Notification::new("promises").text(marker);
    for a in to {
        n = n.to(a.parse().expect("valid"));
    }
    n
}

#[tokio::test]
async fn a_malformed_reply_to_the_final_dot_is_outcome_unknown_and_not_retried() {
    let server = TruthServer::start(Behaviour {
        malformed_final: true,
        ..Behaviour::default()
    })
    .await;
    let mailer = mailer(
        &[provider(
            "email",
            server.port,
            "sender@example.com",
            NO_AUTH,
        )],
        "email",
    );
    let failure = mailer
        .send(&note(&["ok@example.org"], "malformed-final"))
        .await
        .expect_err("no clean acceptance");
    assert!(failure.error.is_outcome_unknown(), "{}", failure.error);
    assert_eq!(failure.error.stage(), Stage::DataEnd);
    assert_eq!(failure.error.kind(), ErrorKind::Protocol);
    assert_eq!(failure.attempts.len(), 1, "never retried: it may be stored");
    assert_eq!(failure.recipients.len(), 1);
    assert!(failure.recipients[0].outcome_unknown);
    assert!(!failure.recipients[0].accepted);
    assert_eq!(
        server.truth().stored_with("malformed-final").len(),
        1,
        "the server did store it: exactly the case 'unknown' is for"
    );
}

#[tokio::test]
async fn a_lost_connection_after_the_dot_leaves_only_accepted_recipients_unknown() {
    let server = TruthServer::start(Behaviour {
        drop_after_first_dot: true,
        ..Behaviour::default()
    })
    .await;
    let mailer = mailer(
        &[provider(
            "email",
            server.port,
            "sender@example.com",
            NO_AUTH,
        )],
        "email",
    );
    let report = mailer
        .send(&note(
            &["a@example.org", "later-b@example.org", "bad-c@example.org"],
            "abc-marker",
        ))
        .await
        .expect("b gets it on the retry");
    let by = |addr: &str| {
        report
            .recipients
            .iter()
            .find(|r| r.address == addr)
            .unwrap_or_else(|| panic!("{addr} in the report"))
            .clone()
    };
    let a = by("a@example.org");
    assert!(a.outcome_unknown && !a.accepted, "{a:?}");
    let b = by("later-b@example.org");
    assert!(
        b.accepted && !b.outcome_unknown,
        "450 at RCPT, so retried: {b:?}"
    );
    assert_eq!(b.reply.as_ref().map(|r| r.code), Some(250));
    let c = by("bad-c@example.org");
    assert!(!c.accepted && !c.outcome_unknown, "{c:?}");
    assert_eq!(c.reply.as_ref().map(|r| r.code), Some(550));
    assert_eq!(report.attempts.len(), 2);
    let truth = server.truth();
    let stored = truth.stored_with("abc-marker");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].rcpts, vec!["a@example.org".to_owned()]);
    assert_eq!(stored[1].rcpts, vec!["later-b@example.org".to_owned()]);
}

/// Gmail's `550 5.4.5` daily limit at MAIL, and `535 5.7.8` at AUTH: this provider cannot send
/// now, so the fallback does, as its own sender (envelope and header), with the same
/// Message-ID, after one try of the first provider.
async fn falls_back_when(primary: Behaviour, primary_extra: &str) {
    let first = TruthServer::start(primary).await;
    let backup = TruthServer::start(Behaviour::default()).await;
    let mailer = mailer(
        &[
            provider(
                "gmail",
                first.port,
                "me@gmail.example",
                &format!("{primary_extra}      fallback: [sendgrid]\n"),
            ),
            provider(
                "sendgrid",
                backup.port,
                "Alerts <alerts@sendgrid.example>",
                NO_AUTH,
            ),
        ],
        "gmail",
    );
    let report = mailer
        .send(&note(&["ok@example.org"], "fallback-marker"))
        .await
        .expect("the fallback sends it");
    assert_eq!(report.provider, "sendgrid");
    assert_eq!(report.attempts.len(), 2, "{:?}", report.attempts);
    assert_eq!(report.attempts[0].provider, "gmail");
    assert_eq!(report.attempts[1].provider, "sendgrid");
    assert!(first.truth().stored.is_empty());
    let truth = backup.truth();
    let stored = truth.stored_with("fallback-marker");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].from, "alerts@sendgrid.example", "envelope sender");
    let text = stored[0].text();
    assert!(
        text.contains("From: \"Alerts\" <alerts@sendgrid.example>")
            || text.contains("From: Alerts <alerts@sendgrid.example>"),
        "header sender: {text}"
    );
    // The first provider's sender is nowhere but in the Message-ID, which is kept.
    assert!(
        text.lines()
            .filter(|l| l.contains("gmail.example"))
            .all(|l| l.starts_with("Message-ID:")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Message-ID: <{}>", report.message_id)),
        "same Message-ID"
    );
}

#[tokio::test]
async fn a_daily_limit_refusal_falls_back_to_the_next_provider() {
    falls_back_when(
        Behaviour {
            mail_reply: Some("550 5.4.5 Daily user sending limit exceeded"),
            ..Behaviour::default()
        },
        NO_AUTH,
    )
    .await;
}

#[tokio::test]
async fn an_auth_refusal_falls_back_to_the_next_provider() {
    falls_back_when(
        Behaviour {
            auth: true,
            auth_reply: Some("535 5.7.8 Username and Password not accepted"),
            ..Behaviour::default()
        },
        "      user: me@gmail.example\n      pass: wrong-password\n      auth: plain\n      allow_insecure_auth: true\n",
    )
    .await;
}

#[tokio::test]
async fn a_bad_address_does_not_fall_back() {
    let first = TruthServer::start(Behaviour::default()).await;
    let backup = TruthServer::start(Behaviour::default()).await;
    let mailer = mailer(
        &[
            provider(
                "main",
                first.port,
                "me@example.com",
                "      auth: none\n      fallback: [backup]\n",
            ),
            provider("backup", backup.port, "me@backup.example", NO_AUTH),
        ],
        "main",
    );
    let failure = mailer
        .send(&note(&["bad-x@example.org"], "bad-address"))
        .await
        .expect_err("refused");
    assert_eq!(failure.attempts.len(), 1, "{:?}", failure.attempts);
    assert_eq!(backup.truth().connections, 0, "5.1.1 is about the address");
}

#[tokio::test]
async fn a_send_ends_by_its_total_deadline() {
    let server = TruthServer::start(Behaviour::default()).await;
    let extra = "      auth: none\n      timeouts: {command: 30s, total: 500ms}\n";
    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {}\n      from: s@example.com\n      security: none\n{extra}",
        server.port
    );
    let config = Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let mailer = Mailer::new(&config, None).expect("mailer");
    server.stall(Stall {
        point: Point::Group,
        release_after: None,
    });
    // The server never answers MAIL (within 30 s); the per-stage limit is 30 s too.
    let failure = mailer
        .send(&note(&["ok@example.org"], "deadline"))
        .await
        .expect_err("cut by the total deadline");
    assert!(failure.error.is_timeout(), "{}", failure.error);
    assert!(
        failure.error.to_string().contains("total deadline"),
        "{}",
        failure.error
    );
    assert!(!failure.error.is_outcome_unknown());
    server.release();
}

#[test]
fn rate_limit_count_and_total_are_read_from_config() {
    let yaml = "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: h.example\n      port: 587\n      user: u\n      pass: p\n      from: a@example.com\n      rate_limit: {per_day: 500, count: recipients}\n      timeouts: {total: 45s}\n      pool: {health_check_timeout: 2s}\n";
    let config = Config::from_yaml_str(yaml).expect("valid");
    let smtp = &config.provider(None).expect("provider").smtp;
    assert_eq!(smtp.rate_limit.per_day, 500);
    assert_eq!(smtp.rate_limit.count, RateCount::Recipients);
    assert_eq!(smtp.total_timeout, Some(std::time::Duration::from_secs(45)));
    assert_eq!(
        smtp.pool.health_check_timeout,
        std::time::Duration::from_secs(2)
    );
    let bad = yaml.replace("count: recipients", "count: letters");
    let err = Config::from_yaml_str(&bad).expect_err("unknown count");
    assert!(err.to_string().contains("rate_limit.count"), "{err}");
}

/// RFC 5321 §3.8: a server may say `421` and close a session that sat idle. The pool sees
/// that on checkout and opens a new session: the send neither fails nor reads the `421` as
/// the reply to its MAIL.
#[tokio::test]
async fn a_session_closed_with_421_while_idle_is_not_reused() {
    let server = TruthServer::start(Behaviour {
        close_with_421_after_message: true,
        ..Behaviour::default()
    })
    .await;
    let mailer = mailer(
        &[provider(
            "email",
            server.port,
            "sender@example.com",
            "      auth: none\n      pool: {health_check_after: 1h, idle_timeout: 1h}\n",
        )],
        "email",
    );
    mailer
        .send(&note(&["ok@example.org"], "first"))
        .await
        .expect("sent");
    server.ended(0).await;
    let report = mailer
        .send(&note(&["ok@example.org"], "second"))
        .await
        .expect("sent");
    assert_eq!(report.attempts.len(), 1, "{:?}", report.attempts);
    let truth = server.truth();
    assert_eq!(truth.connections, 2);
    assert_eq!(truth.stored_with("second")[0].conn, 1);
}

/// The pool's NOOP health check has its own short deadline: a server that never answers it
/// costs `health_check_timeout`, not the 30 s command timeout, and the send goes on over a new
/// session.
#[tokio::test]
async fn a_stuck_health_check_gives_up_after_its_own_short_deadline() {
    let mut server = TruthServer::start(Behaviour::default()).await;
    let block = provider(
        "email",
        server.port,
        "sender@example.com",
        "      auth: none\n      pool: {health_check_after: 1ms, health_check_timeout: 300ms, idle_timeout: 1h}\n",
    )
    .replace("data_end: 30s}", "data_end: 30s, total: 10s}");
    let mailer = mailer(&[block], "email");
    mailer
        .send(&note(&["ok@example.org"], "first"))
        .await
        .expect("sent");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    server.stall(Stall {
        point: Point::Noop,
        release_after: None,
    });
    let second = note(&["ok@example.org"], "second");
    let send = mailer.send(&second);
    let (report, ()) = tokio::join!(send, server.reached(Point::Noop));
    // Within the 10 s total, so the NOOP was given up long before the 30 s command timeout.
    let report = report.expect("sent over a new session");
    assert_eq!(report.attempts.len(), 1);
    let truth = server.truth();
    assert_eq!(truth.connections, 2);
    assert_eq!(truth.stored_with("second")[0].conn, 1);
    server.release();
}

#[tokio::test]
async fn a_bare_535_without_an_enhanced_code_falls_back_too() {
    falls_back_when(
        Behaviour {
            auth: true,
            auth_reply: Some("535 Authentication failed"),
            ..Behaviour::default()
        },
        "      user: me@gmail.example\n      pass: wrong-password\n      auth: plain\n      allow_insecure_auth: true\n",
    )
    .await;
}
