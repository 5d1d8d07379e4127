//! Interoperability with Postfix's smtp-sink, an independently written server.

mod support;

use std::time::{Duration, Instant};

use smtpkit::client::{ClientOptions, Connection, Envelope, Security};
use smtpkit::proto::{Address, ClientName};
use support::real_servers::SmtpSink;

const MESSAGES: usize = 1000;

/// smtp-sink speaks plain text only.
fn plain() -> ClientOptions {
    ClientOptions {
        security: Security::None,
        ..ClientOptions::default()
    }
}

/// The last `mesg=N` counter smtp-sink printed with `-c`, polled until it reaches `want` (bounded).
fn sink_message_count(sink: &SmtpSink, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = sink.log();
        let count = log
            .rsplit("mesg=")
            .next()
            .and_then(|tail| tail.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if count >= want || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn thousand_messages_over_one_connection(
    test: &str,
    flags: &[&str],
    expect_pipelining: bool,
) {
    let Some(sink) = SmtpSink::start(test, flags) else {
        return;
    };
    let options = ClientOptions {
        client_name: Some(ClientName::new("client.test").expect("valid")),
        ..plain()
    };
    let mut conn = Connection::connect("127.0.0.1", sink.port, options)
        .await
        .expect("connects to smtp-sink");
    assert_eq!(conn.capabilities().pipelining(), expect_pipelining);
    let envelope = Envelope::new(
        Address::new("sender@example.com").expect("valid"),
        vec![
            Address::new("one@example.org").expect("valid"),
            Address::new("two@example.org").expect("valid"),
        ],
    )
    .expect("envelope");
    for i in 0..MESSAGES {
        let message = format!(
            "From: sender@example.com\r\nTo: one@example.org\r\nSubject: message {i}\r\n\r\nline one\r\n.dot line\r\nmessage {i}\r\n"
        );
        let report = conn
            .send_mail(&envelope, message.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
        assert_eq!(report.mail_reply().code().value(), 250, "message {i}");
        assert!(
            report
                .recipients()
                .iter()
                .all(|r| r.reply.code().value() == 250),
            "message {i}"
        );
        assert_eq!(report.data_reply().code().value(), 250, "message {i}");
        assert_eq!(
            report
                .data_reply()
                .enhanced_code()
                .map(|e| e.to_string())
                .as_deref(),
            Some("2.0.0")
        );
    }
    let bye = conn.quit().await.expect("quit");
    assert_eq!(bye.code().value(), 221);
    assert_eq!(
        sink_message_count(&sink, MESSAGES),
        MESSAGES,
        "smtp-sink counted every message"
    );
}

#[tokio::test]
async fn smtp_sink_with_pipelining_takes_1000_messages_over_one_connection() {
    thousand_messages_over_one_connection("smtp_sink_pipelining", &["-c"], true).await;
}

#[tokio::test]
async fn smtp_sink_without_pipelining_takes_1000_messages_over_one_connection() {
    thousand_messages_over_one_connection("smtp_sink_lockstep", &["-c", "-p"], false).await;
}

#[tokio::test]
async fn smtp_sink_rejections_are_reported_per_recipient() {
    // -r rcpt: every RCPT gets a soft 4xx; -f rcpt: a hard 5xx. The client reports the
    // refusal per recipient, classifies it, resets and stays usable.
    for (flag, permanent) in [("-r", false), ("-f", true)] {
        let Some(sink) = SmtpSink::start("smtp_sink_rcpt_reject", &[flag, "rcpt"]) else {
            return;
        };
        let mut conn = Connection::connect("127.0.0.1", sink.port, plain())
            .await
            .expect("connects");
        let envelope = Envelope::new(
            Address::new("a@example.com").expect("valid"),
            vec![Address::new("b@example.org").expect("valid")],
        )
        .expect("envelope");
        for _ in 0..3 {
            let err = conn
                .send_mail(&envelope, b"Subject: x\r\n\r\nx\r\n")
                .await
                .expect_err("rejected");
            assert_eq!(err.stage(), smtpkit::Stage::RcptTo);
            assert_eq!(err.is_permanent(), permanent, "{flag}: {err}");
            assert_eq!(err.is_transient(), !permanent, "{flag}: {err}");
            assert_eq!(err.recipients().len(), 1);
            assert!(conn.is_usable());
        }
        conn.quit().await.expect("quit");
    }
}

/// smtp-sink's fault flags through the Mailer: what is retried, what is not, and that the
/// sink counted no message for a delivery reported as failed.
#[tokio::test]
async fn smtp_sink_faults_are_retried_only_when_transient() {
    use smtpkit::message::Notification;
    use smtpkit::provider::{Config, Mailer};
    // (flags, expected attempts, expect transient, stage)
    let cases: [(&[&str], usize, bool, smtpkit::Stage); 6] = [
        (&["-Q", "mail"], 3, true, smtpkit::Stage::MailFrom),
        (&["-q", "rcpt"], 3, true, smtpkit::Stage::RcptTo),
        (&["-r", "rcpt"], 3, true, smtpkit::Stage::RcptTo),
        (&["-f", "data"], 1, false, smtpkit::Stage::Data),
        (&["-A", "0"], 1, false, smtpkit::Stage::DataEnd),
        (&["-p", "-W", "rcpt:1"], 2, true, smtpkit::Stage::RcptTo),
    ];
    for (flags, attempts, transient, stage) in cases {
        let mut all = vec!["-c"];
        all.extend_from_slice(flags);
        let Some(sink) = SmtpSink::start("smtp_sink_faults", &all) else {
            return;
        };
        let retry_attempts = attempts.max(if transient { attempts } else { 3 });
        let yaml = format!(
            "providers:\n  sink:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {}\n      from: a@example.com\n      security: none\n      auth: none\n      timeouts: {{command: 400ms, data_start: 400ms, data_end: 2s}}\n      retry: {{attempts: {retry_attempts}, initial_backoff: 1ms, max_backoff: 5ms}}\n",
            sink.port
        );
        let mailer =
            Mailer::new(&Config::from_yaml_str(&yaml).expect("config"), None).expect("mailer");
        let failure = mailer
            .send(
                &Notification::new("fault")
                    .to("b@example.org".parse().expect("valid"))
                    .text("x"),
            )
            .await
            .expect_err("the sink refuses");
        mailer.close().await;
        assert_eq!(
            failure.error.is_transient(),
            transient,
            "{flags:?}: {}",
            failure.error
        );
        assert_eq!(failure.error.stage(), stage, "{flags:?}: {}", failure.error);
        assert_eq!(
            failure.attempts.len(),
            attempts,
            "{flags:?}: {:?}",
            failure.attempts
        );
        assert_eq!(
            sink_message_count(&sink, 0),
            0,
            "{flags:?}: nothing reached the sink"
        );
    }
}

#[tokio::test]
async fn smtp_sink_takes_1000_messages_pipelined_across_messages() {
    let Some(sink) = SmtpSink::start("smtp_sink_send_many", &["-c"]) else {
        return;
    };
    let mut conn = Connection::connect("127.0.0.1", sink.port, plain())
        .await
        .expect("connects");
    let envelope = Envelope::new(
        Address::new("sender@example.com").expect("valid"),
        vec![Address::new("one@example.org").expect("valid")],
    )
    .expect("envelope");
    let bodies: Vec<String> = (0..MESSAGES)
        .map(|i| format!("Subject: batch {i}\r\n\r\n.dot\r\nmessage {i}\r\n"))
        .collect();
    for chunk in bodies.chunks(50) {
        let jobs: Vec<(&Envelope, &[u8])> =
            chunk.iter().map(|b| (&envelope, b.as_bytes())).collect();
        for (i, result) in conn.send_many(&jobs).await.into_iter().enumerate() {
            let report = result.unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert_eq!(report.data_reply().code().value(), 250);
            assert_eq!(report.recipients()[0].reply.code().value(), 250);
        }
    }
    conn.quit().await.expect("quit");
    assert_eq!(sink_message_count(&sink, MESSAGES), MESSAGES);
}
