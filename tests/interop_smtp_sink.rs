//! Interoperability with Postfix's smtp-sink, an independently written server.
//!
//! Runs on the libtest-mimic harness (`harness = false` in `Cargo.toml`): a test whose server
//! is missing is reported as ignored (see `support::real_servers`). Every test is listed in
//! `main`; an async test that is not listed there is dead code, which clippy refuses.

mod support;

use std::time::Duration;

use smtpkit::client::{ClientOptions, Connection, Envelope, Security};
use smtpkit::proto::{Address, ClientName};
use support::real_servers::{run_tests, tokio_trials, Flavor, SmtpSink, TestResult};

fn main() -> std::process::ExitCode {
    run_tests(tokio_trials![Flavor::CurrentThread;
        smtp_sink_with_pipelining_takes_1000_messages_over_one_connection,
        smtp_sink_without_pipelining_takes_1000_messages_over_one_connection,
        smtp_sink_rejections_are_reported_per_recipient,
        smtp_sink_faults_are_retried_only_when_transient,
        smtp_sink_stalled_rcpt_times_out_and_is_retried,
        smtp_sink_takes_1000_messages_pipelined_across_messages,
    ])
}

const MESSAGES: usize = 1000;

/// Bound for waiting on smtp-sink's log: generous, since the machine may be loaded; waits
/// end as soon as what they wait for shows.
const SINK_WAIT: Duration = Duration::from_secs(60);

/// smtp-sink speaks plain text only.
fn plain() -> ClientOptions {
    ClientOptions {
        security: Security::None,
        ..ClientOptions::default()
    }
}

/// The number of messages smtp-sink (started with `-c`) counted once it has executed the
/// client's QUIT: smtp-sink handles a session's commands in order, so every `.` the client sent
/// before its QUIT is counted by then. Panics if no QUIT shows within [`SINK_WAIT`].
fn messages_counted_at_quit(sink: &SmtpSink) -> usize {
    let counters = sink.wait_for_counters(SINK_WAIT, |c| c.quits >= 1);
    assert!(
        counters.quits >= 1,
        "smtp-sink executed no QUIT within {SINK_WAIT:?}: {counters:?}"
    );
    counters.messages
}

async fn thousand_messages_over_one_connection(
    test: &str,
    flags: &[&str],
    expect_pipelining: bool,
) -> TestResult {
    let sink = SmtpSink::start(test, flags)?;
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
        messages_counted_at_quit(&sink),
        MESSAGES,
        "smtp-sink counted every message"
    );
    Ok(())
}

async fn smtp_sink_with_pipelining_takes_1000_messages_over_one_connection() -> TestResult {
    thousand_messages_over_one_connection("smtp_sink_pipelining", &["-c"], true).await
}

async fn smtp_sink_without_pipelining_takes_1000_messages_over_one_connection() -> TestResult {
    thousand_messages_over_one_connection("smtp_sink_lockstep", &["-c", "-p"], false).await
}

async fn smtp_sink_rejections_are_reported_per_recipient() -> TestResult {
    // -r rcpt: every RCPT gets a soft 4xx; -f rcpt: a hard 5xx. The client reports the
    // refusal per recipient, classifies it, resets and stays usable.
    for (flag, permanent) in [("-r", false), ("-f", true)] {
        let sink = SmtpSink::start("smtp_sink_rcpt_reject", &[flag, "rcpt"])?;
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
    Ok(())
}

/// A Mailer for one smtp-sink: `retry_attempts` tries with tiny backoffs, every timeout
/// `timeout` except `command`.
fn sink_mailer(
    sink: &SmtpSink,
    retry_attempts: usize,
    command: &str,
    timeout: &str,
) -> smtpkit::provider::Mailer {
    use smtpkit::provider::{Config, Mailer};
    let yaml = format!(
        "providers:\n  sink:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {}\n      from: a@example.com\n      security: none\n      auth: none\n      timeouts: {{connect: {timeout}, greeting: {timeout}, command: {command}, data_start: {timeout}, data_block: {timeout}, data_end: {timeout}}}\n      retry: {{attempts: {retry_attempts}, initial_backoff: 1ms, max_backoff: 5ms}}\n",
        sink.port
    );
    Mailer::new(&Config::from_yaml_str(&yaml).expect("config"), None).expect("mailer")
}

/// Sends one notification through `mailer`, expecting it to fail; closes the mailer.
async fn send_expecting_failure(
    mailer: smtpkit::provider::Mailer,
) -> smtpkit::delivery::DeliveryError {
    use smtpkit::message::Notification;
    let failure = mailer
        .send(
            &Notification::new("fault")
                .to("b@example.org".parse().expect("valid"))
                .text("x"),
        )
        .await
        .expect_err("the sink refuses");
    mailer.close().await;
    failure
}

/// smtp-sink's fault flags through the Mailer: what is retried, what is not, and that the
/// sink counted no message for a delivery reported as failed. No timeout is involved: every
/// timeout is generous, so a loaded machine cannot turn a refusal into a timeout.
async fn smtp_sink_faults_are_retried_only_when_transient() -> TestResult {
    // (flags, expected attempts, expect transient, stage)
    let cases: [(&[&str], usize, bool, smtpkit::Stage); 5] = [
        (&["-Q", "mail"], 3, true, smtpkit::Stage::MailFrom),
        (&["-q", "rcpt"], 3, true, smtpkit::Stage::RcptTo),
        (&["-r", "rcpt"], 3, true, smtpkit::Stage::RcptTo),
        (&["-f", "data"], 1, false, smtpkit::Stage::Data),
        (&["-A", "0"], 1, false, smtpkit::Stage::DataEnd),
    ];
    for (flags, attempts, transient, stage) in cases {
        // -v logs each connection, -c counts sessions and messages: see wait_until_idle.
        let mut all = vec!["-v", "-c"];
        all.extend_from_slice(flags);
        let sink = SmtpSink::start("smtp_sink_faults", &all)?;
        // A permanent failure gets 3 tries configured, to show it is not retried.
        let retry_attempts = if transient { attempts } else { 3 };
        let failure =
            send_expecting_failure(sink_mailer(&sink, retry_attempts, "30s", "30s")).await;
        assert_eq!(
            failure.error.is_transient(),
            transient,
            "{flags:?}: {}",
            failure.error
        );
        assert!(!failure.error.is_timeout(), "{flags:?}: {}", failure.error);
        assert_eq!(failure.error.stage(), stage, "{flags:?}: {}", failure.error);
        assert_eq!(
            failure.attempts.len(),
            attempts,
            "{flags:?}: {:?}",
            failure.attempts
        );
        // Every session the client opened has ended at the sink, so its count is final.
        let counters = sink.wait_until_idle(SmtpSink::PROBE_SESSIONS + 1, SINK_WAIT);
        assert_eq!(
            counters.messages, 0,
            "{flags:?}: nothing reached the sink: {counters:?}"
        );
    }
    Ok(())
}

/// The command timeout as the subject: smtp-sink stalls on RCPT (`-W rcpt:10`: it answers
/// only after 10 s) while the client allows 3 s per command, so each try times out at RCPT,
/// the timeout counts as transient and is retried once; the other timeouts are generous.
async fn smtp_sink_stalled_rcpt_times_out_and_is_retried() -> TestResult {
    let sink = SmtpSink::start("smtp_sink_stall", &["-v", "-c", "-p", "-W", "rcpt:10"])?;
    let failure = send_expecting_failure(sink_mailer(&sink, 2, "3s", "30s")).await;
    assert!(failure.error.is_timeout(), "{}", failure.error);
    assert!(failure.error.is_transient(), "{}", failure.error);
    assert_eq!(
        failure.error.stage(),
        smtpkit::Stage::RcptTo,
        "{}",
        failure.error
    );
    assert_eq!(failure.attempts.len(), 2, "{:?}", failure.attempts);
    assert!(
        failure.attempts.iter().all(|a| a.result == "timeout"),
        "{:?}",
        failure.attempts
    );
    // The sink ends a stalled session when its stall is over (about 13 s after the start).
    let counters = sink.wait_until_idle(SmtpSink::PROBE_SESSIONS + 2, SINK_WAIT);
    assert_eq!(
        counters.messages, 0,
        "nothing reached the sink: {counters:?}"
    );
    Ok(())
}

async fn smtp_sink_takes_1000_messages_pipelined_across_messages() -> TestResult {
    let sink = SmtpSink::start("smtp_sink_send_many", &["-c"])?;
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
    assert_eq!(messages_counted_at_quit(&sink), MESSAGES);
    Ok(())
}
