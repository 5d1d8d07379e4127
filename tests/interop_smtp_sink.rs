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
