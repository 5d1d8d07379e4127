//! TLS and AUTH against real, independently written servers started on loopback:
//! aiosmtpd (STARTTLS and implicit TLS, AUTH PLAIN and LOGIN) and a private Postfix smtpd
//! instance (STARTTLS, implicit TLS, AUTH through Cyrus SASL). Also `smtpkit send` and
//! `smtpkit notify` end to end against aiosmtpd.
//!
//! Runs on the libtest-mimic harness (`harness = false` in `Cargo.toml`): a test whose server
//! is missing is reported as ignored (see `support::real_servers`). Every test is listed in
//! `main`; an async test that is not listed there is dead code, which clippy refuses.

mod support;

use std::time::Duration;

use smtpkit::client::{
    Chunking, ClientOptions, Connection, Credentials, Envelope, Security, TlsConnector,
    TlsSettings, Transcript,
};
use smtpkit::proto::{Address, Mechanism, Secret};
use smtpkit::ErrorKind;
use support::certs::{Leaf, TestPki};
use support::postfix_smtpd::PostfixSmtpd;
use support::real_servers::{run_tests, tokio_trials, AioSmtpdTls, AioTlsMode, Flavor, TestResult};

fn main() -> std::process::ExitCode {
    run_tests(tokio_trials![Flavor::MultiThread { workers: 2 };
        aiosmtpd_starttls_with_auth_plain_and_login,
        aiosmtpd_implicit_tls_with_auth,
        postfix_smtpd_starttls_implicit_tls_and_cyrus_sasl,
        postfix_smtpd_bdat_pipelined_batch_and_refused_recipients,
        send_and_notify_end_to_end_against_aiosmtpd,
    ])
}

const USER: &str = "alice@example.com";
const PASSWORD: &str = "c0rrect-h0rse";

fn options(
    pki: &TestPki,
    security: Security,
    password: &str,
    mechanism: Option<Mechanism>,
) -> ClientOptions {
    let t = Duration::from_secs(10);
    ClientOptions {
        security,
        tls: Some(
            TlsConnector::new(&TlsSettings {
                skip_verify: false,
                ca_file: Some(pki.ca_file.clone()),
            })
            .expect("tls"),
        ),
        tls_server_name: Some("localhost".into()),
        credentials: Some(Credentials::new(USER, Secret::new(password)).expect("valid")),
        auth_mechanism: mechanism,
        timeouts: smtpkit::client::Timeouts {
            connect: t,
            greeting: t,
            command: t,
            data_start: t,
            data_block: t,
            data_end: t,
        },
        ..ClientOptions::default()
    }
}

fn envelope() -> Envelope {
    Envelope::new(
        Address::new("sender@example.com").expect("valid"),
        vec![
            Address::new("one@example.org").expect("valid"),
            Address::new("two@example.org").expect("valid"),
        ],
    )
    .expect("envelope")
}

async fn aiosmtpd_starttls_with_auth_plain_and_login() -> TestResult {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    let server = AioSmtpdTls::start(
        "aiosmtpd_starttls",
        AioTlsMode::StartTls,
        &cert,
        &key,
        USER,
        PASSWORD,
    )?;
    for (i, mechanism) in [Mechanism::Plain, Mechanism::Login].into_iter().enumerate() {
        let mut conn = Connection::connect(
            "127.0.0.1",
            server.port,
            options(&pki, Security::StartTls, PASSWORD, Some(mechanism)),
        )
        .await
        .unwrap_or_else(|e| panic!("{mechanism:?}: {e}"));
        assert!(conn.tls_info().expect("tls").verified);
        assert!(conn.capabilities().supports_auth(mechanism.name()));
        let message = format!("Subject: over {mechanism:?}\r\n\r\n.dot line\r\nbody\r\n");
        conn.send_mail(&envelope(), message.as_bytes())
            .await
            .expect("sent");
        conn.quit().await.expect("quit");
        let got = server.wait_for_messages(i + 1, Duration::from_secs(10));
        assert_eq!(got.len(), i + 1);
        assert!(
            got[i].contains("X-Rcpt-To: one@example.org, two@example.org"),
            "{}",
            got[i]
        );
        assert!(
            got[i].contains(&format!(
                "Subject: over {mechanism:?}\r\n\r\n.dot line\r\nbody\r\n"
            )),
            "{}",
            got[i]
        );
    }
    let err = Connection::connect(
        "127.0.0.1",
        server.port,
        options(&pki, Security::StartTls, "wrong", None),
    )
    .await
    .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.reply().map(|r| r.code().value()), Some(535));
    Ok(())
}

async fn aiosmtpd_implicit_tls_with_auth() -> TestResult {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    let server = AioSmtpdTls::start(
        "aiosmtpd_implicit",
        AioTlsMode::Implicit,
        &cert,
        &key,
        USER,
        PASSWORD,
    )?;
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port,
        options(&pki, Security::Tls, PASSWORD, None),
    )
    .await
    .expect("implicit TLS + AUTH");
    conn.send_mail(&envelope(), b"Subject: implicit\r\n\r\nhello\r\n")
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    assert_eq!(
        server.wait_for_messages(1, Duration::from_secs(10)).len(),
        1
    );

    // A plain client on the implicit-TLS port: a clear error within the greeting deadline.
    let mut plain = options(&pki, Security::StartTls, PASSWORD, None);
    plain.timeouts.greeting = Duration::from_millis(800);
    let err = Connection::connect("127.0.0.1", server.port, plain)
        .await
        .expect_err("no greeting in plain text");
    assert!(
        err.is_timeout() || err.kind() == ErrorKind::Protocol,
        "{err}"
    );
    assert!(err.hint().expect("hint").contains("465"));
    Ok(())
}

async fn postfix_smtpd_starttls_implicit_tls_and_cyrus_sasl() -> TestResult {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    let postfix = PostfixSmtpd::start("postfix_smtpd_tls_auth", &cert, &key, USER, PASSWORD)?;
    let cases = [
        (
            postfix.smtp_port,
            Security::StartTls,
            Some(Mechanism::Plain),
        ),
        (
            postfix.smtp_port,
            Security::StartTls,
            Some(Mechanism::Login),
        ),
        (postfix.smtps_port, Security::Tls, None),
    ];
    for (i, (port, security, mechanism)) in cases.into_iter().enumerate() {
        let mut conn = Connection::connect(
            "127.0.0.1",
            port,
            options(&pki, security, PASSWORD, mechanism),
        )
        .await
        .unwrap_or_else(|e| panic!("{security:?} {mechanism:?}: {e}\n{}", postfix.maillog()));
        assert!(conn.capabilities().pipelining(), "Postfix pipelines");
        let report = conn
            .send_mail(
                &envelope(),
                format!("Subject: postfix {i}\r\n\r\nhello {i}\r\n").as_bytes(),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", postfix.maillog()));
        assert!(
            report.queue_id().is_some(),
            "Postfix names a queue id: {}",
            report.data_reply()
        );
        conn.quit().await.expect("quit");
        let got = postfix.wait_for_messages(i + 1, Duration::from_secs(20));
        assert_eq!(got.len(), i + 1, "{}", postfix.maillog());
        assert!(
            got.iter().any(|m| m.contains(&format!("hello {i}"))),
            "{got:?}"
        );
    }
    // Before TLS Postfix offers no AUTH (smtpd_tls_auth_only): with TLS required the client
    // never gets that far in plain text; with security none and credentials, it refuses itself.
    let mut insecure = options(&pki, Security::None, PASSWORD, None);
    insecure.allow_insecure_auth = true;
    let err = Connection::connect("127.0.0.1", postfix.smtp_port, insecure)
        .await
        .expect_err("no AUTH offered in plain");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(err.to_string().contains("does not offer AUTH"), "{err}");
    let err = Connection::connect(
        "127.0.0.1",
        postfix.smtp_port,
        options(&pki, Security::StartTls, "wrong", None),
    )
    .await
    .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.reply().map(|r| r.code().value()), Some(535));
    Ok(())
}

/// CHUNKING against Postfix's smtpd (which offers it since 3.4): a batch with several
/// messages in flight, one of them in several chunks, lines starting with `.` delivered as
/// written; then, without AUTH, every recipient refused: Postfix refuses the BDAT too (RFC
/// 3030 §3), the client reports the refusal and the session goes on.
async fn postfix_smtpd_bdat_pipelined_batch_and_refused_recipients() -> TestResult {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    let postfix = PostfixSmtpd::start("postfix_smtpd_bdat", &cert, &key, USER, PASSWORD)?;
    let (transcript, lines) = Transcript::buffer();
    let mut opts = options(&pki, Security::StartTls, PASSWORD, Some(Mechanism::Plain));
    opts.transcript = Some(transcript);
    opts.chunking = Chunking {
        max_chunk_size: 64,
        ..Chunking::default()
    };
    let mut conn = Connection::connect("127.0.0.1", postfix.smtp_port, opts)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", postfix.maillog()));
    assert!(
        conn.capabilities().chunking() && conn.capabilities().pipelining(),
        "Postfix offers CHUNKING and PIPELINING: {:?}",
        conn.capabilities()
    );
    let bodies: Vec<String> = (0..5)
        .map(|i| {
            let filler = if i == 2 {
                "x".repeat(300)
            } else {
                String::new()
            };
            format!(
                "Subject: bdat {i}\r\n\r\n.dot line {i}\r\n..two\r\n.\r\n{filler}\r\nend {i}\r\n"
            )
        })
        .collect();
    let env = envelope();
    let batch: Vec<(&Envelope, &[u8])> = bodies.iter().map(|b| (&env, b.as_bytes())).collect();
    for (i, result) in conn.send_many(&batch).await.into_iter().enumerate() {
        let report = result.unwrap_or_else(|e| panic!("message {i}: {e}\n{}", postfix.maillog()));
        assert!(report.queue_id().is_some(), "{}", report.data_reply());
    }
    conn.quit().await.expect("quit");
    let sent = lines.lines();
    assert!(
        sent.iter().any(|l| l.ends_with("BDAT 64")),
        "several chunks: {sent:?}"
    );
    assert!(!sent.iter().any(|l| l.ends_with("DATA")), "{sent:?}");
    let got = postfix.wait_for_messages(5, Duration::from_secs(20));
    assert_eq!(got.len(), 5, "{}", postfix.maillog());
    for i in 0..5 {
        assert!(
            got.iter()
                .any(|m| m.contains(&format!("\n.dot line {i}\n..two\n.\n"))
                    && m.contains(&format!("end {i}\n"))),
            "message {i} as written, dots untouched: {got:?}"
        );
    }
    // Plain text, no AUTH: Postfix refuses every recipient (relay access), then the BDAT.
    let mut plain = options(&pki, Security::None, PASSWORD, None);
    plain.credentials = None;
    let mut conn = Connection::connect("127.0.0.1", postfix.smtp_port, plain)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", postfix.maillog()));
    let results = conn
        .send_many(&[(&env, bodies[0].as_bytes()), (&env, bodies[1].as_bytes())])
        .await;
    for result in &results {
        let err = result.as_ref().expect_err("recipients refused");
        assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
        assert_eq!(err.stage(), smtpkit::Stage::RcptTo, "{err}");
        assert!(err.is_permanent() && !err.is_outcome_unknown(), "{err}");
        assert_eq!(err.recipients().len(), 2);
    }
    assert!(conn.is_usable(), "the session goes on");
    conn.noop().await.expect("NOOP after the refusals");
    conn.quit().await.expect("quit");
    Ok(())
}

/// The spec's basic example, pointed at the test server (trusting the test CA).
fn spec_config(dir: &std::path::Path, port: u16, ca_file: &std::path::Path) -> String {
    let path = dir.join("smtpkit.yaml");
    let yaml = format!(
        r#"version: "1.0"
providers:
  email:
    name: Email Notifications
    description: SMTP email provider
    provider: email  # can use 'email' with platform: smtp, or use 'email.smtp' directly
    enabled: true
    config:
      platform: smtp
      host: localhost
      port: {port}
      user: {USER}
      pass: ${{SMTP_PASSWORD}}
      from: noreply@example.com
      ca_file: {}
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
          cc: [auditor@example.com]
          bcc: [hidden@example.com]
          body:
            text: "A new access request requires your approval."
            html: "<h2>Access Request</h2><p>A new access request requires your approval.</p>"
"#,
        ca_file.display()
    );
    std::fs::write(&path, yaml).expect("write config");
    path.display().to_string()
}

async fn send_and_notify_end_to_end_against_aiosmtpd() -> TestResult {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    let server = AioSmtpdTls::start(
        "cli_against_aiosmtpd",
        AioTlsMode::StartTls,
        &cert,
        &key,
        USER,
        PASSWORD,
    )?;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = spec_config(dir.path(), server.port, &pki.ca_file);

    // SMTP_PASSWORD comes from the environment, as the spec recommends.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args([
            "send",
            "--config",
            &cfg,
            "--to",
            "Approver <approver@example.com>",
            "--bcc",
            "hidden@example.com",
        ])
        .args([
            "--subject",
            "Zugriff genehmigt ✓",
            "--text",
            "plain text body",
            "--html",
            "<p>html body</p>",
            "--json",
        ])
        .env("SMTP_PASSWORD", PASSWORD)
        .output()
        .await
        .expect("run send");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["ok"], true);
    let got = server.wait_for_messages(1, Duration::from_secs(10));
    let m = &got[0];
    assert!(
        m.contains("X-Rcpt-To: approver@example.com, hidden@example.com"),
        "{m}"
    );
    let headers = m
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        // A header line, not the letters: random MIME boundaries can contain "bcc".
        !headers.lines().any(|l| l.starts_with("bcc:")) && !m.contains("hidden@example.com>"),
        "no Bcc header: {m}"
    );
    assert!(
        m.contains("Subject: =?utf-8?"),
        "non-ASCII subject encoded: {m}"
    );
    assert!(
        m.contains("plain text body") && m.contains("<p>html body</p>"),
        "{m}"
    );
    assert!(m.contains(&format!(
        "Message-ID: <{}>",
        json["message_id"].as_str().expect("id")
    )));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["notify", "--config", &cfg, "--transcript"])
        .env("SMTP_PASSWORD", PASSWORD)
        .output()
        .await
        .expect("run notify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("C: STARTTLS") && stderr.contains("<redacted>"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "password leaked");
    let got = server.wait_for_messages(2, Duration::from_secs(10));
    let m = &got[1];
    assert!(
        m.contains("X-Rcpt-To: approver@example.com, auditor@example.com, hidden@example.com"),
        "{m}"
    );
    assert!(m.contains("Subject: Access Request Approval Required"));
    assert!(m.contains("A new access request requires your approval."));
    assert!(
        m.contains("<h2>Access Request</h2><p>A new access request requires your approval.</p>")
    );
    assert!(
        m.to_ascii_lowercase().contains("cc: <auditor@example.com>")
            || m.contains("Cc: auditor@example.com"),
        "{m}"
    );
    assert!(!m.to_ascii_lowercase().contains("\r\nbcc:"), "{m}");

    // check walks every step against the real server.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["check", "--config", &cfg])
        .env("SMTP_PASSWORD", PASSWORD)
        .output()
        .await
        .expect("run check");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    for step in [
        "✓ connect",
        "✓ greeting",
        "✓ STARTTLS",
        "✓ certificate",
        "✓ AUTH",
        "✓ QUIT",
    ] {
        assert!(shown.contains(step), "{step} in:\n{shown}");
    }

    // Wrong password: exit 77 with the spec's advice.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["check", "--config", &cfg])
        .env("SMTP_PASSWORD", "wrong")
        .output()
        .await
        .expect("run check");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(77), "{shown}");
    assert!(
        shown.contains("✗ AUTH") && shown.contains("App Password"),
        "{shown}"
    );
    Ok(())
}
