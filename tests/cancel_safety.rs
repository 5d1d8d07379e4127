//! Cancel safety: a send whose future is dropped (a caller's `timeout`, a lost `select!`
//! branch) at any point must never leave a session whose replies the next send reads as its
//! own. Each test holds a server at one exact point (an event, not a timer), drops the send
//! there, lets the server answer late on the old connection, then sends again through the same
//! `Mailer`, `Pool` or `Connection` and compares what the client reports with what the server
//! really answered.

mod support;

use std::time::Duration;

use smtpkit::client::{ClientOptions, Connection, Envelope};
use smtpkit::delivery::{DeliveryReport, Pool, PoolSettings};
use smtpkit::message::Notification;
use smtpkit::proto::Address;
use smtpkit::provider::{Config, Mailer};
use smtpkit::{ErrorKind, Stage};
use support::truth_server::{rcpt_reply, Behaviour, Point, Stall, TruthServer};

/// A provider at the truth server. Sessions are reused without a health check (the case where
/// a confused session would do harm), one attempt per send, generous deadlines.
fn mailer(port: u16, auth: bool, pool: &str) -> Mailer {
    let auth_lines = if auth {
        "      user: someone\n      pass: secret-pass\n      auth: plain\n      allow_insecure_auth: true\n"
    } else {
        "      auth: none\n"
    };
    let yaml = format!(
        "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {port}\n      from: sender@example.com\n      security: none\n{auth_lines}      timeouts: {{connect: 30s, greeting: 30s, command: 30s, data_start: 30s, data_block: 30s, data_end: 30s}}\n      retry: {{attempts: 1}}\n      pool: {pool}\n"
    );
    let config = Config::from_yaml_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Mailer::new(&config, None).expect("mailer")
}

const REUSE_POOL: &str = "{max_connections: 1, health_check_after: 1h, idle_timeout: 1h}";

fn note(subject: &str, to: &[&str], text: &str) -> Notification {
    let mut n = Notification::new(subject).text(text);
    for a in to {
        n = n.to(a.parse().expect("valid address"));
    }
    n
}

/// A body of `lines` numbered lines.
fn long_text(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("line {i:07} of a long message body that takes a while to upload\n"))
        .collect()
}

/// Drops `send` as soon as the server is held at `point`. Panics if the send finished first
/// (it cannot: the server is holding it).
async fn cancel_at<F: std::future::Future>(server: &mut TruthServer, point: Point, send: F) {
    tokio::select! {
        biased;
        _ = server.reached(point) => {}
        _ = send => panic!("the send finished although the server held it at {point:?}"),
    }
}

/// The second send's report must be exactly what the server said about it: `ok2` accepted
/// with 250 under the queue id the server gave that message, `bad2` refused with 550 5.1.1,
/// and the message stored once, on a new connection, to `ok2` only.
fn assert_second_send_attributed(report: &DeliveryReport, server: &TruthServer) {
    let truth = server.truth();
    let stored = truth.stored_with("second-message-marker");
    assert_eq!(stored.len(), 1, "the second message is stored exactly once");
    let stored = stored[0];
    assert_eq!(stored.rcpts, vec!["ok2@example.org".to_owned()]);
    assert_eq!(
        report.queue_id.as_deref(),
        Some(stored.queue_id.as_str()),
        "the reported queue id is the one the server gave the second message"
    );
    assert_eq!(report.final_reply.code, 250);
    assert_eq!(report.recipients.len(), 2);
    for r in &report.recipients {
        let (code, text) = rcpt_reply(&r.address);
        let reply = r.reply.as_ref().expect("a RCPT reply");
        assert_eq!(reply.code, code, "{}: {reply:?}", r.address);
        assert!(
            text.contains(reply.enhanced_code.as_deref().unwrap_or("none")),
            "{}: {reply:?}",
            r.address
        );
        assert_eq!(r.accepted, code == 250, "{}", r.address);
        assert!(!r.outcome_unknown);
    }
    assert_eq!(
        truth.connections, 2,
        "the cancelled session was not reused: a new connection was opened"
    );
    assert_eq!(
        stored.conn, 1,
        "the second message went over the new connection"
    );
    // Nothing of the second send reached the first connection, and no stored message has
    // SMTP commands inside its body.
    let first_mail_count = truth.commands[0]
        .iter()
        .filter(|l| l.to_ascii_uppercase().starts_with("MAIL FROM:"))
        .count();
    assert!(first_mail_count <= 1, "{:?}", truth.commands[0]);
    for s in &truth.stored {
        assert!(
            !s.text().contains("MAIL FROM:") && !s.text().contains("RCPT TO:"),
            "a stored message swallowed commands: {}",
            s.queue_id
        );
    }
}

/// One stage: hold the first send at `point`, drop it, let the server go on, send again.
async fn cancel_then_send_again(point: Point, auth: bool, first_text: &str) {
    let mut server = TruthServer::start(Behaviour {
        auth,
        ..Behaviour::default()
    })
    .await;
    let mailer = mailer(server.port, auth, REUSE_POOL);
    server.stall(Stall {
        point,
        release_after: None,
    });
    let first = note("first", &["ok1@example.org"], first_text);
    cancel_at(&mut server, point, mailer.send(&first)).await;
    // The server answers late, on the old connection.
    server.release();
    let second = note(
        "second",
        &["ok2@example.org", "bad2@example.org"],
        "second-message-marker",
    );
    let report = mailer.send(&second).await.expect("the second send is sent");
    assert_second_send_attributed(&report, &server);
    mailer.close().await;
}

#[tokio::test]
async fn cancelled_after_the_command_group_was_written() {
    cancel_then_send_again(Point::Group, false, "first-message").await;
}

#[tokio::test]
async fn cancelled_while_waiting_for_354() {
    cancel_then_send_again(Point::Before354, false, "first-message").await;
}

#[tokio::test]
async fn cancelled_with_the_body_half_written() {
    // Far more than the socket buffers hold, so the client is still writing when dropped.
    cancel_then_send_again(Point::BodyHalf, false, &long_text(200_000)).await;
}

#[tokio::test]
async fn cancelled_while_waiting_for_the_final_reply() {
    cancel_then_send_again(Point::FinalReply, false, "first-message").await;
}

#[tokio::test]
async fn cancelled_during_auth() {
    cancel_then_send_again(Point::Auth, true, "first-message").await;
}

#[tokio::test]
async fn cancelled_during_the_pools_noop_health_check() {
    let mut server = TruthServer::start(Behaviour::default()).await;
    let pool = "{max_connections: 1, health_check_after: 1ms, idle_timeout: 1h}";
    let mailer = mailer(server.port, false, pool);
    mailer
        .send(&note("warm-up", &["ok0@example.org"], "warm-up"))
        .await
        .expect("warm-up sent");
    // Idle for longer than health_check_after, so the next checkout sends NOOP.
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.stall(Stall {
        point: Point::Noop,
        release_after: None,
    });
    let first = note("first", &["ok1@example.org"], "first-message");
    cancel_at(&mut server, Point::Noop, mailer.send(&first)).await;
    server.release();
    let second = note(
        "second",
        &["ok2@example.org", "bad2@example.org"],
        "second-message-marker",
    );
    let report = mailer.send(&second).await.expect("sent");
    assert_second_send_attributed(&report, &server);
    assert!(
        server.truth().stored_with("first-message").is_empty(),
        "the cancelled message never left"
    );
}

/// The reproduction of the issue: a caller's timeout of 300 ms around a send whose final reply
/// comes after 1 s, then a send to a recipient refused at RCPT. It must fail at RCPT with the
/// server's 550 5.1.1, not one reply out of step.
#[tokio::test]
async fn a_timeout_around_send_does_not_shift_the_next_sends_replies() {
    let server = TruthServer::start(Behaviour::default()).await;
    let mailer = mailer(server.port, false, REUSE_POOL);
    server.stall(Stall {
        point: Point::FinalReply,
        release_after: Some(Duration::from_secs(1)),
    });
    let first = note("first", &["ok1@example.org"], "first-message");
    let cut = tokio::time::timeout(Duration::from_millis(300), mailer.send(&first)).await;
    assert!(cut.is_err(), "the caller's timeout fired first");
    let failure = mailer
        .send(&note("second", &["bad2@example.org"], "second"))
        .await
        .expect_err("the only recipient is refused");
    assert_eq!(failure.error.stage(), Stage::RcptTo, "{}", failure.error);
    let reply = failure.error.reply().expect("the server's reply");
    assert_eq!(reply.code().value(), 550);
    assert_eq!(
        reply.enhanced_code().map(|c| c.to_string()).as_deref(),
        Some("5.1.1")
    );
    assert_eq!(failure.recipients.len(), 1);
    assert_eq!(
        failure.recipients[0].reply.as_ref().map(|r| r.code),
        Some(550)
    );
    assert_eq!(server.truth().connections, 2);
}

fn envelope(to: &str) -> Envelope {
    Envelope::new(
        Address::new("sender@example.com").expect("valid"),
        vec![Address::new(to).expect("valid")],
    )
    .expect("envelope")
}

fn plain_options() -> ClientOptions {
    ClientOptions {
        security: smtpkit::client::Security::None,
        ..ClientOptions::default()
    }
}

#[tokio::test]
async fn a_pool_never_lends_a_session_whose_send_was_cancelled() {
    let mut server = TruthServer::start(Behaviour::default()).await;
    let pool = Pool::new(
        "127.0.0.1",
        server.port,
        plain_options(),
        PoolSettings {
            max_connections: 1,
            health_check_after: Duration::from_secs(3600),
            ..PoolSettings::default()
        },
    );
    server.stall(Stall {
        point: Point::Before354,
        release_after: None,
    });
    {
        let mut session = pool.get().await.expect("a session");
        let env = envelope("ok1@example.org");
        cancel_at(
            &mut server,
            Point::Before354,
            session.send_mail(&env, b"Subject: first\r\n\r\nfirst-message\r\n"),
        )
        .await;
        assert!(
            !session.is_usable(),
            "a cancelled exchange marks the session"
        );
    }
    server.release();
    let mut session = pool.get().await.expect("a session");
    let report = session
        .send_mail(
            &envelope("ok2@example.org"),
            b"Subject: second\r\n\r\nsecond-message-marker\r\n",
        )
        .await
        .expect("sent");
    let truth = server.truth();
    let stored = truth.stored_with("second-message-marker");
    assert_eq!(stored.len(), 1);
    assert_eq!(
        report.queue_id().as_deref(),
        Some(stored[0].queue_id.as_str())
    );
    assert_eq!(pool.opened(), 2, "a new session was opened");
    assert_eq!(pool.reused(), 0, "the cancelled one was never lent again");
    assert_eq!(truth.connections, 2);
}

#[tokio::test]
async fn a_connection_refuses_every_call_after_a_cancelled_exchange() {
    let mut server = TruthServer::start(Behaviour::default()).await;
    let mut conn = Connection::connect("127.0.0.1", server.port, plain_options())
        .await
        .expect("connected");
    server.stall(Stall {
        point: Point::Group,
        release_after: None,
    });
    let env = envelope("ok1@example.org");
    cancel_at(
        &mut server,
        Point::Group,
        conn.send_mail(&env, b"Subject: first\r\n\r\nfirst\r\n"),
    )
    .await;
    server.release();
    assert!(!conn.is_usable());
    let err = conn
        .send_mail(
            &envelope("ok2@example.org"),
            b"Subject: second\r\n\r\nsecond\r\n",
        )
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Poisoned, "{err}");
    assert!(err.to_string().contains("cancelled"), "{err}");
    let err = conn.noop().await.expect_err("refused too");
    assert_eq!(err.kind(), ErrorKind::Poisoned);
    // QUIT is not sent on a confused stream either: the connection is just closed.
    let err = conn.quit().await.expect_err("closed without QUIT");
    assert_eq!(err.kind(), ErrorKind::Poisoned);
    let truth = server.ended(0).await;
    // The server saw the first send's group, and nothing after it.
    let verbs: Vec<&str> = truth.commands[0]
        .iter()
        .map(|l| l.split([' ', ':']).next().unwrap_or_default())
        .collect();
    // (How much of it the server processed before it noticed the close varies.)
    let group = ["EHLO", "MAIL", "RCPT", "DATA"];
    assert!(
        verbs.len() >= 2 && group.starts_with(&verbs),
        "only the first send's commands: {verbs:?}"
    );
    assert!(truth.stored.is_empty());
}

#[tokio::test]
async fn a_raw_data_exchange_must_finish_with_its_body() {
    let server = TruthServer::start(Behaviour::default()).await;
    let mut conn = Connection::connect("127.0.0.1", server.port, plain_options())
        .await
        .expect("connected");
    use smtpkit::proto::Command;
    let body_first = conn.send_body(b"too early").await.expect_err("no 354 yet");
    assert_eq!(body_first.kind(), ErrorKind::InvalidInput);
    let mail = Command::MailFrom {
        from: Address::new("sender@example.com").expect("valid").into(),
        params: vec![],
    };
    assert_eq!(
        conn.command(&mail).await.expect("reply").code().value(),
        250
    );
    let rcpt = Command::RcptTo {
        to: Address::new("ok@example.org").expect("valid"),
        params: vec![],
    };
    assert_eq!(
        conn.command(&rcpt).await.expect("reply").code().value(),
        250
    );
    assert_eq!(
        conn.command(&Command::Data)
            .await
            .expect("reply")
            .code()
            .value(),
        354
    );
    // While the server waits for the body, nothing else may be sent: it would be the body.
    assert!(!conn.is_usable());
    let err = conn.command(&Command::Noop).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = conn.noop().await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let reply = conn
        .send_body(b"Subject: raw\r\n\r\nraw-body\r\n")
        .await
        .expect("reply");
    assert_eq!(reply.code().value(), 250);
    assert!(conn.is_usable());
    let truth = server.truth();
    assert_eq!(truth.stored.len(), 1);
    assert!(truth.stored[0].text().contains("raw-body"));
    assert!(!truth.stored[0].text().contains("NOOP"));
    conn.quit().await.expect("quit");
}

/// Many sends, each cut by a random timeout, against a server that answers after random
/// delays: every report that completes must match what the server answered for that very
/// message, and no message is stored twice or with another's commands inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancellations_never_misattribute_a_reply() {
    const SENDS: usize = 400;
    let server = TruthServer::start(Behaviour {
        auth: false,
        max_reply_delay_ms: 4,
        seed: 20261129,
        ..Behaviour::default()
    })
    .await;
    let mailer = mailer(
        server.port,
        false,
        "{max_connections: 2, health_check_after: 1h, idle_timeout: 1h}",
    );
    let mut rng = fastrand::Rng::with_seed(7);
    let mut completed: Vec<(
        String,
        Result<DeliveryReport, smtpkit::delivery::DeliveryError>,
    )> = Vec::new();
    let mut cancelled = 0;
    for i in 0..SENDS {
        let marker = format!("marker-{i:04}-end");
        let mut to = vec![format!("ok{i}@example.org")];
        if rng.bool() {
            to.push(format!("bad{i}@example.org"));
        }
        if rng.u8(..4) == 0 {
            // Only refused recipients: the send fails at RCPT.
            to = vec![format!("bad{i}@example.org")];
        }
        let to_refs: Vec<&str> = to.iter().map(String::as_str).collect();
        let n = note(&format!("msg {i}"), &to_refs, &marker);
        // Most sends get a deadline about as long as a send takes; some get plenty.
        let limit = if rng.u8(..4) == 0 {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(rng.u64(1..=25))
        };
        match tokio::time::timeout(limit, mailer.send(&n)).await {
            Ok(result) => completed.push((marker, result)),
            Err(_) => cancelled += 1,
        }
    }
    let truth = server.truth();
    for s in &truth.stored {
        assert!(
            !s.text().contains("MAIL FROM:") && !s.text().contains("RCPT TO:"),
            "stored message {} swallowed commands",
            s.queue_id
        );
        assert_eq!(
            s.text().matches("marker-").count(),
            1,
            "stored message {} holds exactly one message",
            s.queue_id
        );
    }
    for (marker, result) in &completed {
        let stored = truth.stored_with(marker);
        assert!(stored.len() <= 1, "{marker} stored {} times", stored.len());
        match result {
            Ok(report) => {
                assert_eq!(stored.len(), 1, "{marker}: reported sent, so stored");
                assert_eq!(
                    report.queue_id.as_deref(),
                    Some(stored[0].queue_id.as_str()),
                    "{marker}: the queue id is the one the server gave this message"
                );
                let accepted: Vec<String> = report
                    .recipients
                    .iter()
                    .filter(|r| r.accepted)
                    .map(|r| r.address.clone())
                    .collect();
                assert_eq!(accepted, stored[0].rcpts, "{marker}");
                for r in &report.recipients {
                    let (code, _) = rcpt_reply(&r.address);
                    assert_eq!(
                        r.reply.as_ref().map(|x| x.code),
                        Some(code),
                        "{marker}: {r:?}"
                    );
                }
            }
            Err(failure) => {
                // Only refusals can fail a send here: each refusal is the server's for that
                // recipient, and nothing was stored.
                assert_eq!(stored.len(), 0, "{marker}: reported failed, never stored");
                assert_eq!(
                    failure.error.stage(),
                    Stage::RcptTo,
                    "{marker}: {}",
                    failure.error
                );
                for r in &failure.recipients {
                    let (code, _) = rcpt_reply(&r.address);
                    assert_eq!(
                        r.reply.as_ref().map(|x| x.code),
                        Some(code),
                        "{marker}: {r:?}"
                    );
                }
            }
        }
    }
    eprintln!(
        "{SENDS} sends: {} completed, {cancelled} cancelled, {} connections, {} stored",
        completed.len(),
        truth.connections,
        truth.stored.len()
    );
    assert!(
        cancelled > 0 && !completed.is_empty(),
        "both cases happened"
    );
}

/// The capture server cancelled (its `run_until` future dropped) while a client is half-way
/// through a body: the message before it stays stored whole, the cut one leaves no file, not
/// even a temporary one, and the client sees the connection closed.
#[cfg(feature = "server")]
#[tokio::test]
async fn a_cancelled_capture_server_leaves_whole_messages_only() {
    use smtpkit::server::{Server, ServerConfig};
    use tokio::io::{AsyncWriteExt, BufReader};

    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::bind(ServerConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        dir.path().to_path_buf(),
    ))
    .await
    .expect("bind");
    let addr = server.local_addr();
    let task = tokio::spawn(server.run_until(std::future::pending()));

    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    assert!(raw_reply(&mut read)
        .await
        .expect("greeting")
        .starts_with("220"));
    write
        .write_all(b"EHLO client.test\r\n")
        .await
        .expect("write");
    assert!(raw_reply(&mut read)
        .await
        .expect("reply")
        .starts_with("250"));
    for subject in ["whole", "cut"] {
        for (command, code) in [
            ("MAIL FROM:<a@example.org>\r\n", "250"),
            ("RCPT TO:<b@example.org>\r\n", "250"),
            ("DATA\r\n", "354"),
        ] {
            write.write_all(command.as_bytes()).await.expect("write");
            let reply = raw_reply(&mut read).await.expect("reply");
            assert!(reply.starts_with(code), "{command}: {reply}");
        }
        let half = format!("Subject: {subject}\r\n\r\nfirst half\r\n");
        write.write_all(half.as_bytes()).await.expect("write");
        if subject == "whole" {
            write
                .write_all(b"second half\r\n.\r\n")
                .await
                .expect("write");
            let reply = raw_reply(&mut read).await.expect("reply");
            assert!(
                reply.starts_with("250"),
                "the first message is stored: {reply}"
            );
        }
    }
    // The server stops in the middle of the second body.
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    assert_eq!(
        raw_reply(&mut read).await,
        None,
        "the connection closed, with no reply"
    );

    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "one file, no temporary ones: {names:?}");
    assert!(names[0].ends_with(".eml"), "{names:?}");
    let stored = std::fs::read_to_string(dir.path().join(&names[0])).expect("read");
    assert!(stored.contains("Subject: whole") && stored.contains("second half"));
}

/// The last line of the next reply, or `None` when the connection closed (or was reset).
#[cfg(feature = "server")]
async fn raw_reply(
    read: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Option<String> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let mut line = String::new();
        match read.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Some(line.trim_end().to_owned());
        }
    }
}
