//! The `smtpkit` binary end to end against the scripted mock: output, JSON and exit codes.

mod support;

use std::process::Output;

use support::mock::{ehlo_ok, quit_ok, MockServer, Step};

fn r(line: &str) -> Step {
    Step::reply(line)
}

fn e(prefix: &str) -> Step {
    Step::expect(prefix)
}

fn config(dir: &tempfile::TempDir, port: u16, extra: &str) -> String {
    let path = dir.path().join("smtpkit.yaml");
    let yaml = format!(
        r#"version: "1.0"
providers:
  email:
    name: Email Notifications
    provider: email
    enabled: true
    config:
      platform: smtp
      host: 127.0.0.1
      port: {port}
      from: Notifier <noreply@example.com>
      security: none
      timeouts: {{connect: 5s, greeting: 5s, command: 5s, data_start: 5s, data_block: 5s, data_end: 5s}}
      retry: {{attempts: 1}}
{extra}
workflows:
  - name: access-approval
    steps:
      - task: notify
        type: email
        config:
          provider: email
          subject: "Access Request Approval Required"
          to:
            - approver@example.com
          bcc: audit@example.com
          body:
            text: "A new access request requires your approval."
            html: "<h2>Access Request</h2><p>A new access request requires your approval.</p>"
      - task: approve
        type: manual
"#
    );
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

const NO_AUTH: &str = "      auth: none";
const PASSWORD: &str = "pa55-w0rd-xyz";

async fn smtpkit(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run smtpkit")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn delivery() -> Vec<Step> {
    vec![
        e("MAIL"),
        e("RCPT"),
        e("RCPT"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("250 ok"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 2.0.0 Ok: queued as Q42"),
    ]
}

#[tokio::test]
async fn send_delivers_headers_bodies_and_hides_bcc() {
    let mut script = ehlo_ok(&["PIPELINING", "8BITMIME"]);
    script.extend(delivery());
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "Approver <approver@example.com>",
        "--cc",
        "cc@example.com",
        "--bcc",
        "hidden@example.com",
        "--subject",
        "Access Request Approval Required",
        "--text",
        "plain body",
        "--html",
        "<p>html body</p>",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["ok"], true);
    assert_eq!(json["provider"], "email");
    assert_eq!(json["queue_id"], "Q42");
    assert_eq!(json["recipients"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["recipients"][2]["address"], "hidden@example.com");
    assert_eq!(json["recipients"][0]["reply"]["code"], 250);
    let log = server.finish().await;
    log.assert_ok();
    let sent = log.received_str(0);
    for rcpt in [
        "RCPT TO:<approver@example.com>",
        "RCPT TO:<cc@example.com>",
        "RCPT TO:<hidden@example.com>",
    ] {
        assert!(sent.contains(rcpt), "{rcpt} in envelope");
    }
    let message = String::from_utf8_lossy(&log.messages[0]).into_owned();
    let headers = message
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        headers.contains("subject: access request approval required"),
        "{message}"
    );
    assert!(
        headers.contains("to: \"approver\" <approver@example.com>")
            || headers.contains("to: approver <approver@example.com>"),
        "{headers}"
    );
    assert!(
        headers.contains("cc: <cc@example.com>") || headers.contains("cc: cc@example.com"),
        "{headers}"
    );
    assert!(
        // A header line, not the letters: random MIME boundaries can contain "bcc".
        !headers.lines().any(|l| l.starts_with("bcc:")) && !message.contains("hidden@example.com"),
        "no Bcc anywhere in the message"
    );
    let id = json["message_id"].as_str().expect("message id");
    assert!(
        message.contains(&format!("Message-ID: <{id}>")),
        "{message}"
    );
    assert!(message.contains("plain body") && message.contains("<p>html body</p>"));
    assert!(message.contains("multipart/alternative"));
}

#[tokio::test]
async fn notify_runs_the_spec_workflow_and_lists_skipped_steps() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL FROM:<noreply@example.com>"),
        e("RCPT TO:<approver@example.com>"),
        e("RCPT TO:<audit@example.com>"),
        e("DATA"),
    ]);
    script.extend([
        r("250 ok"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 queued as W1"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&["notify", "--config", &cfg, "--workflow", "access-approval"]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("✓ sent via email"), "{shown}");
    assert!(shown.contains("skipped (task \"approve\""), "{shown}");
    let log = server.finish().await;
    log.assert_ok();
    let message = String::from_utf8_lossy(&log.messages[0]).into_owned();
    assert!(message.contains("Subject: Access Request Approval Required"));
    assert!(message.contains("A new access request requires your approval."));
    assert!(message.contains("<h2>Access Request</h2>"));
    assert!(
        !message.to_ascii_lowercase().contains("bcc:") && !message.contains("audit@example.com")
    );

    let out = smtpkit(&["notify", "--config", &cfg, "--workflow", "nope"]).await;
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("no workflow named \"nope\"; configured: access-approval"));
}

#[tokio::test]
async fn auth_failure_exits_77_and_never_shows_the_password() {
    let mut script = ehlo_ok(&["AUTH PLAIN LOGIN"]);
    script.extend([
        e("AUTH PLAIN"),
        r("535 5.7.8 Authentication credentials invalid"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &dir,
        server.port(),
        &format!("      user: alice\n      pass: {PASSWORD}\n      allow_insecure_auth: true"),
    );
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
        "--transcript",
    ])
    .await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(shown.contains("535 5.7.8"), "{shown}");
    assert!(shown.contains("App Password"), "the spec's advice: {shown}");
    assert!(shown.contains("AUTH PLAIN <redacted>"), "{shown}");
    assert!(!shown.contains(PASSWORD), "password leaked: {shown}");
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn rejected_recipient_exits_69_with_the_reply() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("550 5.1.1 <nobody@example.com>: Recipient address rejected"),
        r("554 5.5.1 no valid recipients"),
    ]);
    script.extend([e("RSET"), r("250 ok")]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "nobody@example.com",
        "--subject",
        "s",
        "--text",
        "t",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"]["stage"], "rcpt_to");
    assert_eq!(json["error"]["reply"]["code"], 550);
    assert_eq!(json["error"]["reply"]["enhanced_code"], "5.1.1");
    assert_eq!(json["recipients"][0]["address"], "nobody@example.com");
    // The refused transaction is reset and the session closed politely: RSET, then QUIT.
    let log = server.finish().await;
    log.assert_ok();
    assert!(log.messages.is_empty(), "no message was sent");
}

#[tokio::test]
async fn temporary_rejection_exits_75() {
    let mut script = ehlo_ok(&[]);
    script.extend([
        e("MAIL"),
        r("451 4.3.0 try again later"),
        e("QUIT"),
        r("221 bye"),
    ]);
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(
        text(&out).contains("451 4.3.0 try again later"),
        "{}",
        text(&out)
    );
    // One attempt (retry attempts: 1): MAIL refused, then QUIT, nothing else.
    let log = server.finish().await;
    log.assert_ok();
    assert_eq!(log.connections, 1);
    assert_eq!(
        log.received_str(0).matches("MAIL FROM").count(),
        1,
        "not retried: {}",
        log.received_str(0)
    );
}

#[tokio::test]
async fn connection_refused_exits_75_and_check_explains_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, port, NO_AUTH);
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains("telnet"), "{}", text(&out));
    let out = smtpkit(&["check", "--config", &cfg]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(75), "{shown}");
    assert!(shown.contains("✗ connect"), "{shown}");
    assert!(
        shown.contains("Verify host and port are correct"),
        "{shown}"
    );
}

#[tokio::test]
async fn check_walks_every_step() {
    let mut script = ehlo_ok(&["PIPELINING", "SIZE 1000000"]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&["check", "--config", &cfg]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    for step in [
        "✓ connect",
        "✓ greeting",
        "✓ EHLO         mock.test: PIPELINING, SIZE 1000000",
        "✓ AUTH",
        "✓ QUIT",
        "is ready to send",
    ] {
        assert!(shown.contains(step), "{step} in:\n{shown}");
    }
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn bad_config_and_bad_usage_exit_78_and_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "providers:\n  email:\n    provider: email\n    config:\n      hots: x\n",
    )
    .expect("write");
    let cfg = path.display().to_string();
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out)
            .contains("providers.email.config.hots: unknown key `hots`; did you mean `host`?"),
        "{}",
        text(&out)
    );
    let out = smtpkit(&["send", "--to", "a@example.com"]).await;
    assert_eq!(out.status.code(), Some(64));
    let out = smtpkit(&["--help"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("Exit codes"));
    let out = smtpkit(&["--version"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("smtpkit {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "not-an-address",
        "--subject",
        "s",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(78), "config is read first");
}

#[tokio::test]
async fn bad_address_exits_65() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, 25, NO_AUTH);
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "not-an-address",
        "--subject",
        "s",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    assert!(text(&out).contains("--to: address \"not-an-address\" is not valid"));
}

#[tokio::test]
async fn tls_skip_verify_is_announced_with_a_warning() {
    let mut script = ehlo_ok(&[]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &dir,
        server.port(),
        &format!("{NO_AUTH}\n      tls_skip_verify: true"),
    );
    let out = smtpkit(&["check", "--config", &cfg]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(
        shown.contains("WARN") && shown.contains("tls_skip_verify is set"),
        "{shown}"
    );
    assert!(
        !shown.contains("\x1b["),
        "no colour codes when not on a terminal"
    );
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn send_bcc_only_keeps_every_recipient_hidden() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend(vec![
        e("MAIL"),
        e("RCPT TO:<hidden@example.com>"),
        e("DATA"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 2.0.0 Ok: queued as Q7"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--bcc",
        "hidden@example.com",
        "--subject",
        "s",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let log = server.finish().await;
    log.assert_ok();
    let message = String::from_utf8_lossy(&log.messages[0]).into_owned();
    let headers = message.split("\r\n\r\n").next().unwrap_or_default();
    assert!(
        !headers.to_ascii_lowercase().contains("bcc") && !message.contains("hidden@example.com"),
        "no Bcc anywhere in the message: {message}"
    );
    assert!(
        headers.contains("\r\nTo: undisclosed-recipients:;\r\n"),
        "an empty group stands for the hidden recipients: {headers}"
    );
}

#[tokio::test]
async fn send_without_any_recipient_is_a_usage_error_naming_the_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, 25, NO_AUTH);
    let out = smtpkit(&["send", "--config", &cfg, "--subject", "s", "--text", "t"]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let shown = text(&out);
    for flag in ["--to", "--cc", "--bcc"] {
        assert!(shown.contains(flag), "{flag} named: {shown}");
    }
}
