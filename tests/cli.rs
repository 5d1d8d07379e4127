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
    config_with_retry(dir, port, extra, "{attempts: 1}")
}

fn config_with_retry(dir: &tempfile::TempDir, port: u16, extra: &str, retry: &str) -> String {
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
      retry: {retry}
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

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The whole of stdout as one JSON value, as `smtpkit … --json | jq .` reads it: a progress
/// line or a second object anywhere on stdout fails here.
fn one_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not exactly one JSON value ({e}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            stdout(out),
            stderr(out)
        )
    })
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
    let json = one_json(&out);
    assert_eq!(json["ok"], true);
    assert_eq!(json["exit_code"], 0);
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
    // Results on stdout, one line per step; progress on stderr.
    let results = stdout(&out);
    assert!(
        results.contains("✓ access-approval step 1: sent via email"),
        "{shown}"
    );
    assert!(
        results.contains("- access-approval step 2: skipped (task \"approve\""),
        "{shown}"
    );
    assert!(!results.contains("workflow access-approval\n"), "{shown}");
    let progress = stderr(&out);
    assert!(
        progress.contains("workflow access-approval")
            && progress.contains("step 1: email \"Access Request Approval Required\""),
        "{shown}"
    );
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
    assert!(stdout(&out).is_empty(), "{}", text(&out));
    assert!(stderr(&out).contains("no workflow named \"nope\"; configured: access-approval"));
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
    let json = one_json(&out);
    assert_eq!(json["ok"], false);
    assert_eq!(json["exit_code"], 69);
    assert_eq!(json["error"]["kind"], "rejected");
    assert!(json["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("Recipient address rejected")));
    assert!(json["error"]["hint"]
        .as_str()
        .is_some_and(|h| h.contains("recipient addresses are valid")));
    // The diagnosis also goes to stderr, as without --json.
    assert!(
        stderr(&out).contains("✗ email:") && stderr(&out).contains("hint:"),
        "{}",
        text(&out)
    );
    assert_eq!(json["error"]["stage"], "rcpt_to");
    assert_eq!(json["error"]["reply"]["code"], 550);
    assert_eq!(json["error"]["reply"]["enhanced_code"], "5.1.1");
    assert_eq!(json["recipients"][0]["address"], "nobody@example.com");
    // The refused transaction is reset and the session closed politely: RSET, then QUIT.
    let log = server.finish().await;
    log.assert_ok();
    assert!(log.messages.is_empty(), "no message was sent");
}

/// RFC 2920 §3.1: after a refused MAIL the pipelined RCPT gets `503 bad sequence`; that is
/// no verdict on the recipient, who is reported with MAIL's reply.
#[tokio::test]
async fn a_refused_mail_is_the_answer_for_every_recipient_not_the_503s() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL"),
        e("RCPT"),
        e("DATA"),
        r("530 5.7.0 Authentication required"),
        r("503 5.5.1 Error: need MAIL command"),
        r("503 5.5.1 Error: need RCPT command"),
    ]);
    script.extend([e("RSET"), r("250 ok")]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let send = [
        "send",
        "--config",
        &cfg,
        "--to",
        "someone@example.com",
        "--subject",
        "s",
        "--text",
        "t",
        "--json",
    ];
    let out = smtpkit(&send).await;
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    assert!(!text(&out).contains("503"), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["error"]["stage"], "mail_from", "{json}");
    assert_eq!(json["recipients"][0]["reply"]["code"], 530, "{json}");
    server.finish().await.assert_ok();
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
        stderr(&out).contains("451 4.3.0 try again later"),
        "{}",
        text(&out)
    );
    assert!(
        stdout(&out).is_empty(),
        "a failure is a diagnostic: {}",
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
    let at = format!("at 127.0.0.1:{} in", server.port());
    for step in [
        "✓ connect",
        at.as_str(),
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
        stderr(&out)
            .contains("providers.email.config.hots: unknown key `hots`; did you mean `host`?"),
        "{}",
        text(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", text(&out));
    let out = smtpkit(&["send", "--to", "a@example.com"]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(stdout(&out).is_empty(), "{}", text(&out));
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

// One convention for every command: results on stdout, progress and diagnostics on stderr;
// `--json` puts exactly one JSON object on stdout, on success and on failure.

/// The config of `bad_config_and_bad_usage_exit_78_and_64`: a typo in a provider key.
fn bad_config(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "providers:\n  email:\n    provider: email\n    config:\n      hots: x\n",
    )
    .expect("write");
    path.display().to_string()
}

const TYPO: &str = "providers.email.config.hots: unknown key `hots`; did you mean `host`?";

#[tokio::test]
async fn config_errors_go_to_stderr_for_every_command_or_one_object_with_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = bad_config(&dir);
    let send = [
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
    ];
    let check = ["check", "--config", &cfg];
    let notify = ["notify", "--config", &cfg];
    for args in [&send[..], &check[..], &notify[..]] {
        let out = smtpkit(args).await;
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        assert!(
            out.stdout.is_empty(),
            "{args:?}: stdout must be empty: {}",
            text(&out)
        );
        assert!(
            stderr(&out).contains(&format!("✗ configuration: {cfg}: {TYPO}")),
            "{args:?}: {}",
            text(&out)
        );
    }
    for args in [&send[..], &notify[..]] {
        let mut args = args.to_vec();
        args.push("--json");
        let out = smtpkit(&args).await;
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", text(&out));
        let json = one_json(&out);
        assert_eq!(json["ok"], false, "{json}");
        assert_eq!(json["exit_code"], 78, "{json}");
        assert_eq!(json["error"]["kind"], "config", "{json}");
        assert_eq!(json["error"]["stage"], "config", "{json}");
        assert_eq!(
            json["error"]["path"], "providers.email.config.hots",
            "{json}"
        );
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(TYPO)),
            "{json}"
        );
        assert!(json["error"].get("hint").is_some(), "hint present: {json}");
        assert!(
            stderr(&out).contains(TYPO),
            "still said on stderr: {}",
            text(&out)
        );
    }
    // notify's object always has its `workflows` array, empty when none ran.
    let out = smtpkit(&["notify", "--config", &cfg, "--json"]).await;
    assert_eq!(one_json(&out)["workflows"], serde_json::json!([]));
}

#[tokio::test]
async fn notify_json_is_one_object_with_every_step_and_progress_on_stderr() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL FROM:<noreply@example.com>"),
        e("RCPT TO:<approver@example.com>"),
        e("RCPT TO:<audit@example.com>"),
        e("DATA"),
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
    let out = smtpkit(&["notify", "--config", &cfg, "--json", "--transcript"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["exit_code"], 0, "{json}");
    let workflows = json["workflows"].as_array().expect("workflows array");
    assert_eq!(workflows.len(), 1, "{json}");
    assert_eq!(workflows[0]["name"], "access-approval");
    let steps = workflows[0]["steps"].as_array().expect("steps array");
    assert_eq!(steps.len(), 2, "{json}");
    assert_eq!(steps[0]["status"], "sent", "{json}");
    assert_eq!(steps[0]["step"], 1, "{json}");
    assert_eq!(steps[0]["exit_code"], 0, "{json}");
    assert_eq!(steps[0]["report"]["queue_id"], "W1", "{json}");
    assert_eq!(steps[1]["status"], "skipped", "{json}");
    assert_eq!(steps[1]["task"], "approve", "{json}");
    // Progress and the transcript: stderr.
    let progress = stderr(&out);
    for line in [
        "workflow access-approval",
        "step 1: email \"Access Request Approval Required\" to approver@example.com",
        "MAIL FROM:<noreply@example.com>",
    ] {
        assert!(progress.contains(line), "{line} on stderr: {progress}");
    }
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn notify_json_failure_is_still_one_object() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL"),
        e("RCPT"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("550 5.1.1 <approver@example.com>: Recipient address rejected"),
        r("550 5.1.1 <audit@example.com>: Recipient address rejected"),
        r("554 5.5.1 no valid recipients"),
        e("RSET"),
        r("250 ok"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&["notify", "--config", &cfg, "--json"]).await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["exit_code"], 69, "{json}");
    let step = &json["workflows"][0]["steps"][0];
    assert_eq!(step["status"], "failed", "{json}");
    assert_eq!(step["exit_code"], 69, "{json}");
    let error = &step["result"]["error"];
    assert_eq!(error["kind"], "rejected", "{json}");
    assert_eq!(error["stage"], "rcpt_to", "{json}");
    assert!(error["hint"].is_string(), "{json}");
    assert_eq!(json["workflows"][0]["steps"][1]["status"], "skipped");
    let diagnostics = stderr(&out);
    assert!(
        diagnostics.contains("✗ email:") && diagnostics.contains("hint:"),
        "{diagnostics}"
    );
    server.finish().await.assert_ok();

    // Without --json: the failed step's line on stdout, its diagnosis on stderr.
    let mut script = ehlo_ok(&[]);
    script.extend([e("MAIL"), r("554 5.7.1 go away"), e("QUIT"), r("221 bye")]);
    let server = MockServer::start(script).await;
    let cfg = config(&dir, server.port(), NO_AUTH);
    let out = smtpkit(&["notify", "--config", &cfg]).await;
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert!(
        stdout(&out).contains("✗ access-approval step 1: not sent via email:"),
        "{}",
        text(&out)
    );
    assert!(stderr(&out).contains("hint:"), "{}", text(&out));
    assert!(!stdout(&out).contains("hint:"), "{}", text(&out));
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn notify_json_pipes_into_a_json_reader() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        assert!(
            std::env::var_os("SMTPKIT_REAL_SERVERS").is_none(),
            "python3 is needed for this test (SMTPKIT_REAL_SERVERS is set)"
        );
        eprintln!("skipped: python3 not found");
        return;
    }
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL"),
        e("RCPT"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 queued as P1"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, server.port(), NO_AUTH);
    // Exactly what a user types: `smtpkit notify --json … | python3 -m json.tool`.
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(r#""$0" notify --config "$1" --json | python3 -m json.tool"#)
        .arg(env!("CARGO_BIN_EXE_smtpkit"))
        .arg(&cfg)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the pipeline");
    assert!(
        out.status.success(),
        "json.tool accepted stdout: {}",
        text(&out)
    );
    let pretty = stdout(&out);
    assert!(pretty.contains("\"queue_id\": \"P1\""), "{pretty}");
    assert!(
        stderr(&out).contains("workflow access-approval"),
        "{}",
        text(&out)
    );
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn send_attempt_lines_go_to_stderr_and_the_result_to_stdout() {
    // The first connection is refused service for now (421), the retry delivers.
    let busy = vec![r("421 4.3.2 busy, try again")];
    let mut ok = ehlo_ok(&["PIPELINING"]);
    ok.extend([
        e("MAIL"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 2.0.0 Ok: queued as R2"),
    ]);
    ok.extend(quit_ok());
    let retry = "{attempts: 2, initial_backoff: 10ms, max_backoff: 10ms}";
    for json in [false, true] {
        let server = MockServer::start_many(vec![busy.clone(), ok.clone()]).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = config_with_retry(&dir, server.port(), NO_AUTH, retry);
        let mut args = vec![
            "send",
            "--config",
            &cfg,
            "--to",
            "a@example.com",
            "--subject",
            "s",
            "--text",
            "t",
        ];
        if json {
            args.push("--json");
        }
        let out = smtpkit(&args).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let diagnostics = stderr(&out);
        assert!(
            diagnostics.contains("attempt 1 via email")
                && diagnostics.contains("attempt 2 via email"),
            "attempt lines on stderr (json: {json}): {}",
            text(&out)
        );
        assert!(!stdout(&out).contains("attempt "), "{}", text(&out));
        if json {
            let value = one_json(&out);
            assert_eq!(value["ok"], true, "{value}");
            assert_eq!(
                value["attempts"].as_array().map(Vec::len),
                Some(2),
                "{value}"
            );
        } else {
            assert!(stdout(&out).contains("✓ sent via email"), "{}", text(&out));
            assert!(stdout(&out).contains("queue id:   R2"), "{}", text(&out));
            assert!(!diagnostics.contains("✓ sent"), "{}", text(&out));
        }
        let log = server.finish().await;
        log.assert_ok();
        assert_eq!(log.messages.len(), 1);
    }
}

#[tokio::test]
async fn send_json_auth_failure_is_one_object_without_the_password() {
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
        "--json",
        "--transcript",
    ])
    .await;
    assert_eq!(out.status.code(), Some(77), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["exit_code"], 77, "{json}");
    assert_eq!(json["error"]["kind"], "auth", "{json}");
    assert_eq!(json["error"]["stage"], "auth", "{json}");
    assert!(json["error"]["hint"].is_string(), "{json}");
    assert!(
        stderr(&out).contains("AUTH PLAIN <redacted>"),
        "the transcript is on stderr: {}",
        text(&out)
    );
    assert!(
        !text(&out).contains(PASSWORD),
        "password leaked: {}",
        text(&out)
    );
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn send_json_bad_input_and_usage_errors_are_one_object() {
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
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["exit_code"], 65, "{json}");
    assert_eq!(json["error"]["kind"], "invalid_input", "{json}");
    assert!(
        stderr(&out).contains("--to: address \"not-an-address\" is not valid"),
        "{}",
        text(&out)
    );

    // A usage error: clap's message on stderr as always, and the object on stdout.
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--subject",
        "s",
        "--text",
        "t",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["exit_code"], 64, "{json}");
    assert_eq!(json["error"]["kind"], "usage", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--to")),
        "{json}"
    );
    assert!(stderr(&out).contains("error:"), "{}", text(&out));
    // Without --json, a usage error leaves stdout empty.
    let out = smtpkit(&["send", "--config", &cfg, "--subject", "s", "--text", "t"]).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty(), "{}", text(&out));
}

#[tokio::test]
async fn bench_json_is_one_object_on_success_and_failure() {
    let mut script = ehlo_ok(&[]);
    script.extend([
        e("MAIL"),
        r("250 ok"),
        e("RCPT"),
        r("250 ok"),
        e("DATA"),
        r("354 go"),
        Step::ExpectData,
        r("250 ok"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let port = server.port().to_string();
    let out = smtpkit(&[
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--count",
        "1",
        "--size",
        "300",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["exit_code"], 0, "{json}");
    assert_eq!(json["sent"], 1, "{json}");
    server.finish().await.assert_ok();

    // Nothing listens: every message fails, still one object.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
        .to_string();
    let out = smtpkit(&[
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        &closed,
        "--count",
        "1",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["exit_code"], 75, "{json}");
    assert_eq!(json["failed"], 1, "{json}");
    assert_eq!(json["errors"]["connect"], 1, "{json}");
    // And why, in words.
    let first = json["first_errors"]["connect"].as_str().unwrap_or_default();
    assert!(first.contains("cannot connect"), "{json}");

    // A bad argument value: exit 64, one object.
    let out = smtpkit(&[
        "bench",
        "--host",
        "127.0.0.1",
        "--port",
        &closed,
        "--count",
        "0",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["error"]["kind"], "usage", "{json}");
    assert!(
        stderr(&out).contains("--count and --concurrency must be at least 1"),
        "{}",
        text(&out)
    );
}

/// A greeting that takes seconds is not a silent wait: stderr says what the send waits for.
#[tokio::test]
async fn a_slow_step_is_announced_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut script = vec![Step::Delay(std::time::Duration::from_secs(4))];
    script.extend(ehlo_ok(&[]));
    script.extend([
        e("MAIL"),
        r("250 ok"),
        e("RCPT"),
        r("250 ok"),
        e("DATA"),
        r("354 go"),
        Step::ExpectData,
        r("250 ok queued as S1"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let cfg = config(&dir, server.port(), NO_AUTH);
    // The greeting comes after 4 s: give it far more than that.
    let yaml = std::fs::read_to_string(&cfg).expect("read config");
    std::fs::write(&cfg, yaml.replace("greeting: 5s", "greeting: 60s")).expect("write config");
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.org",
        "--subject",
        "slow",
        "--text",
        "hi",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "waiting for the connection to 127.0.0.1:{} and its greeting",
            server.port()
        )),
        "{err}"
    );
    server.finish().await.assert_ok();
}

/// Ctrl-C after the whole message left: where it stopped, that the outcome is unknown, one
/// JSON object with --json, exit 130.
#[tokio::test]
async fn ctrl_c_after_the_final_dot_says_the_outcome_is_unknown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut script = ehlo_ok(&[]);
    script.extend([
        e("MAIL"),
        r("250 ok"),
        e("RCPT"),
        r("250 ok"),
        e("DATA"),
        r("354 go"),
        Step::ExpectData,
        // No reply to the final dot: the client waits until it is interrupted.
        Step::ExpectEof,
    ]);
    let server = MockServer::start(script).await;
    let cfg = config(&dir, server.port(), NO_AUTH);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args([
            "send",
            "--config",
            &cfg,
            "--to",
            "a@example.org",
            "--subject",
            "stop",
            "--text",
            "hi",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    // Event, not a sleep: the mock has the whole message.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.log_snapshot().messages.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the message never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kill = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .await
        .expect("kill");
    assert!(kill.success());
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("exits after Ctrl-C")
        .expect("output");
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["error"]["kind"], "interrupted", "{json}");
    assert_eq!(json["error"]["outcome_unknown"], true, "{json}");
    let err = stderr(&out);
    assert!(err.contains("interrupted (Ctrl-C)"), "{err}");
    assert!(err.contains("outcome unknown"), "{err}");
    server.finish().await.assert_ok();
}

/// A configuration whose provider `email` is at `host`, with three attempts allowed, and
/// (given `backup_port`) a fallback provider `backup` on the mock.
fn two_provider_config(dir: &tempfile::TempDir, host: &str, backup_port: Option<u16>) -> String {
    let path = dir.path().join("smtpkit.yaml");
    let mut yaml = format!(
        r#"providers:
  email:
    provider: email.smtp
    config:
      host: {host}
      port: 2525
      auth: none
      security: none
      from: noreply@example.com
      timeouts: {{connect: 30s}}
      retry: {{attempts: 3, initial_backoff: 10ms, max_backoff: 10ms}}
"#
    );
    if let Some(port) = backup_port {
        yaml.push_str(&format!(
            r#"      fallback: [backup]
  backup:
    provider: email.smtp
    config:
      host: 127.0.0.1
      port: {port}
      auth: none
      security: none
      from: noreply@example.com
      retry: {{attempts: 1}}
"#
        ));
    }
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

/// Bound for a run that has to resolve a name: generous, the resolver may be slow.
const DNS_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

async fn smtpkit_bounded(args: &[&str]) -> Output {
    tokio::time::timeout(DNS_WAIT, smtpkit(args))
        .await
        .expect("smtpkit ends in time")
}

#[tokio::test]
async fn a_host_that_does_not_resolve_exits_68_at_once_without_retries() {
    // RFC 2606: `.invalid` never resolves.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = two_provider_config(&dir, "nonexistent.invalid", None);
    let send = [
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
    ];
    let out = smtpkit_bounded(&send).await;
    let shown = text(&out);
    assert!(
        shown.contains("cannot resolve host nonexistent.invalid"),
        "{shown}"
    );
    if shown.contains("cannot resolve host nonexistent.invalid for now") {
        // This machine's resolver cannot answer at all (no DNS server): that is a temporary
        // failure, retried, not an answer about the name.
        eprintln!("note: the resolver here cannot answer; checked the transient path only");
        assert_eq!(out.status.code(), Some(75), "{shown}");
        return;
    }
    assert_eq!(out.status.code(), Some(68), "{shown}");
    assert!(!shown.contains("attempt 2"), "not retried: {shown}");
    assert!(
        !shown.contains("telnet") && !shown.contains("firewall"),
        "{shown}"
    );
    assert!(
        shown.contains("hint: The host name does not resolve"),
        "{shown}"
    );
    assert!(stdout(&out).is_empty(), "{shown}");

    let mut json_args = send.to_vec();
    json_args.push("--json");
    let out = smtpkit_bounded(&json_args).await;
    let value = one_json(&out);
    assert_eq!(value["exit_code"], 68, "{value}");
    assert_eq!(value["error"]["kind"], "host_not_found", "{value}");
    assert_eq!(value["error"]["transient"], false, "{value}");
    assert_eq!(
        value["attempts"].as_array().map(Vec::len),
        Some(1),
        "{value}"
    );

    let out = smtpkit_bounded(&["check", "--config", &cfg]).await;
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(68), "{shown}");
    assert!(
        shown.contains("✗ connect") && shown.contains("cannot resolve host nonexistent.invalid"),
        "{shown}"
    );
    assert!(!shown.contains("telnet"), "{shown}");
}

#[tokio::test]
async fn a_host_that_does_not_resolve_goes_to_the_fallback_at_once() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 2.0.0 Ok: queued as FB1"),
    ]);
    script.extend(quit_ok());
    let server = MockServer::start(script).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = two_provider_config(&dir, "nonexistent.invalid", Some(server.port()));
    let out = smtpkit_bounded(&[
        "send",
        "--config",
        &cfg,
        "--provider",
        "email",
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--text",
        "t",
        "--json",
    ])
    .await;
    let value = one_json(&out);
    assert_eq!(value["ok"], true, "{value}\n{}", stderr(&out));
    assert_eq!(value["provider"], "backup", "{value}");
    let attempts = value["attempts"].as_array().expect("attempts");
    let via_email = attempts.iter().filter(|a| a["provider"] == "email").count();
    // One try of the name that does not resolve (or, where the resolver cannot answer at
    // all, the configured three), then the fallback.
    let resolver_down = stderr(&out).contains("for now");
    assert!(
        via_email == 1 || (resolver_down && via_email == 3),
        "{value}"
    );
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn a_host_with_impossible_characters_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = two_provider_config(&dir, "\"smtp example.com\"", None);
    for command in ["send", "check"] {
        let mut args = vec![command, "--config", &cfg];
        if command == "send" {
            args.extend(["--to", "a@example.com", "--subject", "s", "--text", "t"]);
        }
        let out = smtpkit(&args).await;
        let shown = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{command}: {}", text(&out));
        assert!(
            shown.contains("smtpkit.yaml: providers.email.config.host: \"smtp example.com\" is not a host name or IP address: it contains a space"),
            "{command}: {shown}"
        );
    }
}

#[tokio::test]
async fn message_mistakes_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, 25, NO_AUTH);

    // No body at all is a usage error, before anything is read or sent.
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "s",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["error"]["kind"], "usage", "{json}");
    let message = json["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("--text") && message.contains("--html"),
        "{json}"
    );

    // A subject with CRLF is bad input in the message, found before any session.
    let out = smtpkit(&[
        "send",
        "--config",
        &cfg,
        "--to",
        "a@example.com",
        "--subject",
        "hi\r\nBcc: x@example.com",
        "--text",
        "t",
        "--json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let json = one_json(&out);
    assert_eq!(json["error"]["kind"], "invalid_input", "{json}");
    assert_eq!(json["error"]["stage"], "message", "{json}");
    assert!(
        stderr(&out).contains(
            "message: subject \"hi\\r\\nBcc: x@example.com\" contains a control character"
        ),
        "{}",
        text(&out)
    );
    assert!(!stderr(&out).contains("command:"), "{}", text(&out));
}

#[tokio::test]
async fn an_empty_subject_is_sent_with_a_warning() {
    let mut script = ehlo_ok(&["PIPELINING"]);
    script.extend([
        e("MAIL"),
        e("RCPT"),
        e("DATA"),
        r("250 ok"),
        r("250 ok"),
        r("354 go"),
        Step::ExpectData,
        r("250 2.0.0 Ok: queued as E1"),
    ]);
    script.extend(quit_ok());
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
        "",
        "--text",
        "t",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("warning: the subject is empty"),
        "{}",
        text(&out)
    );
    assert!(!stdout(&out).contains("warning"), "{}", text(&out));
    server.finish().await.assert_ok();
}

#[tokio::test]
async fn a_ca_file_that_is_not_pem_is_a_configuration_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.pem"), "not a certificate\n").expect("write");
    let cfg = config(&dir, 25, "      auth: none\n      ca_file: bad.pem");
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
    let shown = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        shown.contains("smtpkit.yaml: providers.email.config.ca_file: ")
            && shown.contains("bad.pem holds no PEM certificate"),
        "{shown}"
    );
    for label in ["STARTTLS:", "connect:"] {
        assert!(!shown.contains(label), "{label} in {shown}");
    }
}
