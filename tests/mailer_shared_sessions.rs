//! Many tasks calling `Mailer::send` at once share the pool's sessions: while every session is
//! busy, their messages ride batches (each message's body leaves with the next one's MAIL,
//! RCPT and DATA, RFC 2920 §3.1), and each task still gets exactly its own report. Against the
//! truth server (PIPELINING, random reply delays, some recipients refused), with a pool of
//! one session.

mod support;

use std::collections::HashSet;

use smtpkit::client::Transcript;
use smtpkit::message::Notification;
use smtpkit::provider::{Config, Mailer};
use support::truth_server::{rcpt_reply, Behaviour, Point, Stall, TruthServer};

fn mailer(port: u16, transcript: Transcript) -> Mailer {
    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      \
         port: {port}\n      from: sender@example.com\n      security: none\n      auth: none\n      \
         retry: {{attempts: 1}}\n      pool: {{max_connections: 1}}\n"
    );
    let config = Config::from_yaml_str(&yaml).expect("config");
    Mailer::with_options(&config, None, Some(transcript)).expect("mailer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_ride_one_session_and_each_gets_its_own_report() {
    let mut server = TruthServer::start(Behaviour {
        max_reply_delay_ms: 5,
        ..Behaviour::default()
    })
    .await;
    let (transcript, lines) = Transcript::buffer();
    let mailer = mailer(server.port, transcript);
    // The first send holds the only session (the server waits before its final reply) until
    // the eleven others are queued: an event, not a timer.
    server.stall(Stall {
        point: Point::FinalReply,
        release_after: None,
    });
    let send = |i: usize| {
        let mailer = mailer.clone();
        tokio::spawn(async move {
            // Every third message has a recipient the server refuses.
            let mut n = Notification::new(format!("shared {i}"))
                .to(format!("ok{i}@example.org").parse().expect("address"))
                .text(format!("body of shared message {i}"));
            if i.is_multiple_of(3) {
                n = n.to(format!("bad{i}@example.org").parse().expect("address"));
            }
            (i, mailer.send(&n).await)
        })
    };
    let mut tasks = vec![send(0)];
    server.reached(Point::FinalReply).await;
    tasks.extend((1..12).map(send));
    let pool = &mailer.routes()[0].pool;
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while pool.waiting() < 11 {
        assert!(
            tokio::time::Instant::now() < end,
            "{} queued",
            pool.waiting()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.release();
    let mut queue_ids = HashSet::new();
    for task in tasks {
        let (i, sent) = task.await.expect("task");
        let report = sent.unwrap_or_else(|e| panic!("message {i}: {e:?}"));
        for r in &report.recipients {
            let (code, _) = rcpt_reply(&r.address);
            assert_eq!(r.accepted, code == 250, "message {i}, {}", r.address);
            assert!(
                r.address.ends_with(&format!("{i}@example.org")),
                "{i}: {r:?}"
            );
        }
        assert_eq!(
            report.recipients.len(),
            if i.is_multiple_of(3) { 2 } else { 1 }
        );
        // Its own queue id: the one the server gave the message with its subject.
        let truth = server.truth();
        let stored = truth.stored_with(&format!("body of shared message {i}\r"));
        assert_eq!(stored.len(), 1, "message {i} stored once");
        assert_eq!(
            report.queue_id.as_deref(),
            Some(stored[0].queue_id.as_str())
        );
        assert!(queue_ids.insert(stored[0].queue_id.clone()));
    }
    mailer.close().await;
    assert_eq!(server.truth().connections, 1, "one session for all");
    // Shared round trips: a message's MAIL left before the message before it had its final
    // reply (its body and terminator went out with this MAIL, RFC 2920 §3.1). Sent one by
    // one, every MAIL waits for the previous message's final reply.
    let lines = lines.lines();
    let mails = lines
        .iter()
        .filter(|l| l.starts_with("C: MAIL FROM"))
        .count();
    assert_eq!(mails, 12, "{lines:#?}");
    let mut awaiting_final_reply = false;
    let mut overlapped = 0;
    for line in &lines {
        if line.starts_with("* message body") {
            awaiting_final_reply = true;
        } else if line.starts_with("S: 250") && line.contains("queued") {
            awaiting_final_reply = false;
        } else if line.starts_with("C: MAIL FROM") && awaiting_final_reply {
            overlapped += 1;
        }
    }
    // The eleven that waited rode one batch: each after the first overlapped the one before.
    assert_eq!(
        overlapped, 10,
        "messages did not share round trips as one batch:\n{lines:#?}"
    );
}

/// A task that stops waiting for a busy pool (its send dropped) withdraws its message: no
/// session ever sends it, and the sends around it are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_dropped_while_it_waits_for_a_session_is_never_sent() {
    let mut server = TruthServer::start(Behaviour::default()).await;
    let (transcript, _lines) = Transcript::buffer();
    let mailer = mailer(server.port, transcript);
    let note = |i: u32| {
        Notification::new(format!("waiting {i}"))
            .to(format!("ok{i}@example.org").parse().expect("address"))
            .text(format!("body of waiting message {i}"))
    };
    // The first send holds the only session, held by the server before its final reply.
    server.stall(Stall {
        point: Point::FinalReply,
        release_after: None,
    });
    let first = tokio::spawn({
        let mailer = mailer.clone();
        async move { mailer.send(&note(1)).await }
    });
    server.reached(Point::FinalReply).await;
    // The second waits for the session, then gives up.
    let second = tokio::spawn({
        let mailer = mailer.clone();
        async move { mailer.send(&note(2)).await }
    });
    let pool = &mailer.routes()[0].pool;
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while pool.waiting() < 1 {
        assert!(tokio::time::Instant::now() < end, "never queued");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    second.abort();
    assert!(second.await.is_err(), "cancelled");
    server.release();
    first.await.expect("task").expect("the first is sent");
    mailer.send(&note(3)).await.expect("the third is sent");
    mailer.close().await;
    let truth = server.truth();
    assert_eq!(truth.stored_with("body of waiting message 1\r").len(), 1);
    assert!(
        truth.stored_with("body of waiting message 2\r").is_empty(),
        "the withdrawn message was sent"
    );
    assert_eq!(truth.stored_with("body of waiting message 3\r").len(), 1);
}
