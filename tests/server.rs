//! The local capture server, driven by smtpkit's client, by raw pipelined input, and by an
//! independent client (Python's smtplib); and `smtpkit serve` / `smtpkit demo` end to end.
//!
//! Runs on the libtest-mimic harness (`harness = false` in `Cargo.toml`), since one test needs
//! Debian's python3 and is reported as ignored without it (see `support::real_servers`). Every
//! test is listed in `main`; an async test that is not listed there is dead code, which clippy
//! refuses.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use smtpkit::client::{
    Chunking, ClientOptions, Connection, Credentials, Envelope, Security, TlsConnector,
    TlsSettings, Transcript,
};
use smtpkit::proto::{Address, Command, Mechanism, MechanismName, Parameter, Secret};
use smtpkit::server::{LocalCa, Server, ServerConfig, ServerLimits, StoredMessage};
use smtpkit::ErrorKind;
use support::real_servers::{run_tests, tokio_trials, Flavor, TestResult};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

fn main() -> std::process::ExitCode {
    run_tests(tokio_trials![Flavor::CurrentThread;
        starttls_auth_and_dot_unstuffing_with_the_smtpkit_client,
        implicit_tls_with_auth,
        auth_failure_auth_required_and_no_auth_before_tls,
        size_and_recipient_limits,
        pipelined_input_is_answered_in_order_and_long_lines_refused,
        idle_sessions_are_closed_with_421,
        an_independent_client_delivers_over_starttls_and_implicit_tls_with_auth,
        demo_delivers_the_spec_workflow_and_shows_everything,
        serve_captures_messages_and_stops_cleanly_on_ctrl_c,
        an_unknown_ca_and_authentication_required_name_their_fix_and_exit_77,
        stopping_says_421_to_idle_sessions_and_lets_a_message_in_progress_finish,
        serve_logs_failed_sessions_not_sni_noise_and_says_421_on_ctrl_c,
        demo_keep_leaves_a_config_that_works_against_serve_on_the_kept_dir,
        the_readme_client_example_reaches_serve_started_as_the_readme_says,
        xoauth2_accepts_the_token_and_answers_a_wrong_one_as_gmail_does,
        xoauth2_on_the_wire_json_challenge_empty_line_and_cancel,
        serve_xoauth2_with_python_smtplib_and_no_token_in_its_output,
        bench_over_implicit_tls_and_starttls_with_auth_counts_handshakes,
        bdat_stores_the_octets_as_sent_like_data_does,
        bdat_ordering_rules_and_size_limit_on_the_wire,
    ])
}

struct Running {
    port: u16,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    stored: mpsc::UnboundedReceiver<StoredMessage>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }

    async fn next_message(&mut self) -> StoredMessage {
        tokio::time::timeout(Duration::from_secs(10), self.stored.recv())
            .await
            .expect("stored in time")
            .expect("a message")
    }
}

async fn start(tls: bool, implicit: bool, auth: bool, limits: ServerLimits) -> Running {
    start_with(tls, implicit, limits, |config| {
        if auth {
            config.auth = Some(("user".into(), Secret::new("right-password")));
        }
    })
    .await
}

/// Like [`start`], with the AUTH accounts (and anything else) set by `configure`.
async fn start_with(
    tls: bool,
    implicit: bool,
    limits: ServerLimits,
    configure: impl FnOnce(&mut ServerConfig),
) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = LocalCa::generate(&["localhost".into(), "127.0.0.1".into()]).expect("ca");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).expect("write ca");
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        dir.path().join("mail"),
    );
    config.limits = limits;
    if tls {
        config.tls = Some(ca.server_config);
        config.implicit_tls = implicit;
    }
    configure(&mut config);
    let (tx, stored) = mpsc::unbounded_channel();
    let hook = Arc::new(move |m: &StoredMessage| {
        let _ = tx.send(m.clone());
    });
    let server = Server::bind_with(config, Some(hook)).await.expect("bind");
    let port = server.local_addr().port();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stop_rx.await;
    }));
    Running {
        port,
        dir,
        ca_file,
        stored,
        stop: Some(stop),
        task,
    }
}

fn client_options(ca_file: &Path, security: Security, password: Option<&str>) -> ClientOptions {
    ClientOptions {
        security,
        tls: Some(
            TlsConnector::new(&TlsSettings {
                skip_verify: false,
                ca_file: Some(ca_file.to_path_buf()),
            })
            .expect("tls"),
        ),
        tls_server_name: Some("localhost".into()),
        credentials: password.map(|p| Credentials::new("user", Secret::new(p)).expect("valid")),
        ..ClientOptions::default()
    }
}

fn envelope(to: &[&str]) -> Envelope {
    Envelope::new(
        Address::new("from@example.com").expect("valid"),
        to.iter()
            .map(|a| Address::new(*a).expect("valid"))
            .collect(),
    )
    .expect("envelope")
}

const MESSAGE: &[u8] = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nlast line\r\n";

async fn starttls_auth_and_dot_unstuffing_with_the_smtpkit_client() -> TestResult {
    let mut server = start(true, false, true, ServerLimits::default()).await;
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port,
        client_options(&server.ca_file, Security::StartTls, Some("right-password")),
    )
    .await
    .expect("STARTTLS + AUTH");
    assert!(conn.tls_info().is_some());
    let report = conn
        .send_mail(&envelope(&["a@example.org", "b@example.org"]), MESSAGE)
        .await
        .expect("sent");
    let stored = server.next_message().await;
    assert_eq!(report.queue_id().as_deref(), Some(stored.id.as_str()));
    conn.quit().await.expect("quit");
    assert_eq!(stored.mail_from, "from@example.com");
    assert_eq!(stored.rcpt_to, ["a@example.org", "b@example.org"]);
    assert!(stored.tls);
    assert_eq!(stored.authenticated_as.as_deref(), Some("user"));
    let file = std::fs::read_to_string(&stored.path).expect("stored file");
    assert!(file.starts_with("Received: from "), "{file}");
    assert!(file.contains("with ESMTPSA id"), "{file}");
    assert!(file.contains("X-Envelope-From: <from@example.com>\r\nX-Envelope-To: <a@example.org>, <b@example.org>\r\n"));
    assert!(
        file.ends_with("Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\nlast line\r\n"),
        "unstuffed: {file:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(server.dir.path().join("mail"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the .eml, no temporary file: {leftovers:?}"
    );
    server.stop().await;
    Ok(())
}

async fn implicit_tls_with_auth() -> TestResult {
    let mut server = start(true, true, true, ServerLimits::default()).await;
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port,
        client_options(&server.ca_file, Security::Tls, Some("right-password")),
    )
    .await
    .expect("implicit TLS");
    conn.send_mail(&envelope(&["a@example.org"]), MESSAGE)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    assert!(server.next_message().await.tls);
    server.stop().await;
    Ok(())
}

/// `smtpkit bench --security tls|starttls --ca-file --auth` against the capture server: every
/// message arrives over TLS, and the JSON counts one TLS handshake (full or resumed) per
/// connection.
async fn bench_over_implicit_tls_and_starttls_with_auth_counts_handshakes() -> TestResult {
    for (implicit, security) in [(true, "tls"), (false, "starttls")] {
        let mut server = start(true, implicit, true, ServerLimits::default()).await;
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
            .args(["bench", "--host", "127.0.0.1", "--port"])
            .arg(server.port.to_string())
            .args(["--security", security, "--ca-file"])
            .arg(&server.ca_file)
            .args(["--auth", "user:right-password", "--count", "12"])
            .args(["--concurrency", "2", "--size", "600", "--json"])
            .output()
            .await
            .expect("smtpkit bench");
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(0), "{security}: {shown}");
        let json: serde_json::Value = serde_json::from_str(&shown).expect("one JSON object");
        assert_eq!(json["sent"], 12, "{json}");
        let connections = json["connections"].as_u64().expect("connections");
        let full = json["tls_full_handshakes"].as_u64().expect("full");
        let resumed = json["tls_resumed_handshakes"].as_u64().expect("resumed");
        assert!(connections >= 1 && full >= 1, "{json}");
        assert_eq!(full + resumed, connections, "{json}");
        assert!(json["tls_full_handshake_ms"].as_f64().is_some(), "{json}");
        assert!(!shown.contains("right-password"), "{shown}");
        for _ in 0..12 {
            assert!(server.next_message().await.tls, "{security}");
        }
        // The library's path: 8 tasks through one Mailer with a pool of 2.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
            .args(["bench", "--host", "127.0.0.1", "--port"])
            .arg(server.port.to_string())
            .args(["--security", security, "--ca-file"])
            .arg(&server.ca_file)
            .args(["--auth", "user:right-password", "--count", "16", "--mailer"])
            .args(["--tasks", "8", "--concurrency", "2", "--json"])
            .output()
            .await
            .expect("smtpkit bench --mailer");
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(0), "{security} --mailer: {shown}");
        let json: serde_json::Value = serde_json::from_str(&shown).expect("one JSON object");
        assert_eq!(json["sent"], 16, "{json}");
        assert_eq!(json["mailer"], true, "{json}");
        let connections = json["connections"].as_u64().expect("connections");
        assert!((1..=2).contains(&connections), "a pool of 2: {json}");
        for _ in 0..16 {
            assert!(server.next_message().await.tls, "{security} --mailer");
        }
        server.stop().await;
    }
    Ok(())
}

async fn auth_failure_auth_required_and_no_auth_before_tls() -> TestResult {
    let mut server = start(true, false, true, ServerLimits::default()).await;
    let err = Connection::connect(
        "127.0.0.1",
        server.port,
        client_options(&server.ca_file, Security::StartTls, Some("wrong")),
    )
    .await
    .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert_eq!(err.reply().map(|r| r.code().value()), Some(535));

    // No AUTH: MAIL is refused with 530.
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port,
        client_options(&server.ca_file, Security::StartTls, None),
    )
    .await
    .expect("connects");
    let err = conn
        .send_mail(&envelope(&["a@example.org"]), MESSAGE)
        .await
        .expect_err("530");
    assert_eq!(err.reply().map(|r| r.code().value()), Some(530));
    conn.quit().await.expect("quit");

    // Before TLS, AUTH is neither offered nor accepted.
    let mut plain = Connection::connect(
        "127.0.0.1",
        server.port,
        client_options(&server.ca_file, Security::None, None),
    )
    .await
    .expect("plain");
    assert!(plain.capabilities().starttls());
    assert!(plain.capabilities().auth_mechanisms().is_empty());
    let reply = plain
        .command(&Command::Auth {
            mechanism: MechanismName::new("PLAIN").expect("valid"),
            initial_response: None,
        })
        .await
        .expect("reply");
    assert_eq!(reply.code().value(), 538);
    plain.quit().await.expect("quit");
    assert!(server.stored.try_recv().is_err(), "nothing stored");
    server.stop().await;
    Ok(())
}

async fn size_and_recipient_limits() -> TestResult {
    let limits = ServerLimits {
        max_message_size: 1000,
        max_recipients: 2,
        ..ServerLimits::default()
    };
    let mut server = start(false, false, false, limits).await;
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port,
        client_options(&server.ca_file, Security::None, None),
    )
    .await
    .expect("plain");
    assert_eq!(conn.capabilities().size_limit(), Some(1000));
    // Announced too big: refused at MAIL.
    let mail = Command::MailFrom {
        from: Address::new("a@example.com").expect("valid").into(),
        params: vec![Parameter::size(5000)],
    };
    assert_eq!(
        conn.command(&mail).await.expect("reply").code().value(),
        552
    );
    // Not announced, but too big: refused after the data.
    let mail = Command::MailFrom {
        from: Address::new("a@example.com").expect("valid").into(),
        params: vec![],
    };
    assert_eq!(
        conn.command(&mail).await.expect("reply").code().value(),
        250
    );
    let rcpt = Command::RcptTo {
        to: Address::new("b@example.org").expect("valid"),
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
    let big = vec![b'x'; 3000];
    assert_eq!(
        conn.send_body(&big).await.expect("reply").code().value(),
        552
    );
    // Three recipients, limit two: the third gets 452, the message goes to two.
    let report = conn
        .send_mail(
            &envelope(&["1@example.org", "2@example.org", "3@example.org"]),
            MESSAGE,
        )
        .await
        .expect("partial");
    assert_eq!(
        report
            .rejected()
            .map(|r| r.reply.code().value())
            .collect::<Vec<_>>(),
        [452]
    );
    conn.quit().await.expect("quit");
    assert_eq!(server.next_message().await.rcpt_to.len(), 2);
    server.stop().await;
    Ok(())
}

async fn pipelined_input_is_answered_in_order_and_long_lines_refused() -> TestResult {
    let mut server = start(false, false, false, ServerLimits::default()).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let long = "x".repeat(5000);
    let input = format!(
        "EHLO raw.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n..dot\r\nbody\r\n.\r\nNOOP {long}\r\nQUIT\r\n"
    );
    s.write_all(input.as_bytes())
        .await
        .expect("write all at once");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    let codes: Vec<&str> = text
        .lines()
        .filter(|l| l.len() >= 4 && &l[3..4] == " ")
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        ["220", "250", "250", "250", "354", "250", "500", "221"],
        "{text}"
    );
    let stored = server.next_message().await;
    let file = std::fs::read_to_string(&stored.path).expect("file");
    assert!(file.ends_with("\r\n.dot\r\nbody\r\n"), "{file:?}");
    server.stop().await;
    Ok(())
}

async fn idle_sessions_are_closed_with_421() -> TestResult {
    let limits = ServerLimits {
        idle_timeout: Duration::from_millis(200),
        ..ServerLimits::default()
    };
    let server = start(false, false, false, limits).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("220 ") && text.contains("421 4.4.2"),
        "{text}"
    );
    server.stop().await;
    Ok(())
}

/// Python's smtplib, a client written by other people, against the server.
fn python_client(script: &str) -> Result<std::process::Output, support::real_servers::Skip> {
    let python = support::real_servers::require_binary(
        "server_python_client",
        &["/usr/bin/python3"],
        "python3",
    )?;
    Ok(std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python"))
}

async fn an_independent_client_delivers_over_starttls_and_implicit_tls_with_auth() -> TestResult {
    for implicit in [false, true] {
        let mut server = start(true, implicit, true, ServerLimits::default()).await;
        let port = server.port;
        // `open` makes an encrypted session in the server's TLS mode.
        let open = if implicit {
            format!("smtplib.SMTP_SSL('127.0.0.1', {port}, context=ctx, timeout=10)")
        } else {
            format!("starttls(smtplib.SMTP('127.0.0.1', {port}, timeout=10))")
        };
        let script = format!(
            r#"import smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
ctx.check_hostname = False
def starttls(s):
    s.starttls(context=ctx)
    return s
s = {open}
s.login('user', 'right-password')
s.sendmail('py@example.com', ['x@example.org'], 'Subject: from python\r\n\r\n.dot line\r\nhello\r\n')
s.quit()
s2 = {open}
try:
    s2.login('user', 'wrong')
except smtplib.SMTPAuthenticationError as e:
    print('AUTHFAIL', e.smtp_code)
s2.quit()
"#,
            ca = server.ca_file.display().to_string(),
        );
        let out = match tokio::task::spawn_blocking(move || python_client(&script))
            .await
            .expect("join")
        {
            Ok(out) => out,
            Err(skip) => {
                server.stop().await;
                return Err(skip);
            }
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "python failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("AUTHFAIL 535"), "{stdout}");
        let stored = server.next_message().await;
        assert_eq!(stored.rcpt_to, ["x@example.org"]);
        assert_eq!(stored.authenticated_as.as_deref(), Some("user"));
        let file = std::fs::read_to_string(&stored.path).expect("file");
        assert!(
            file.contains("Subject: from python\r\n\r\n.dot line\r\nhello\r\n"),
            "{file:?}"
        );
        server.stop().await;
    }
    Ok(())
}

async fn smtpkit(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run")
}

async fn demo_delivers_the_spec_workflow_and_shows_everything() -> TestResult {
    let out = tokio::time::timeout(Duration::from_secs(60), smtpkit(&["demo"]))
        .await
        .expect("demo in time");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "provider: email  # can use 'email' with platform: smtp",
        "pass: ••••••••  # this run's password: in the file only (mode 0600)",
        "ca_file: smtpkit-local-ca.pem",
        "C: STARTTLS",
        "* TLS established",
        "C: AUTH PLAIN <redacted>",
        "\"ok\": true",
        "\"queue_id\"",
        "Subject: Access Request Approval Required",
        "To: <approver@example.com>",
        "A new access request requires your approval.",
        "<h2>Access Request</h2><p>A new access request requires your approval.</p>",
        "✓ demo:",
        "smtpkit demo --keep DIR",
        "To send through your own provider:",
        "set host, port (587 STARTTLS, 465 implicit TLS), user, pass",
        "`smtpkit check --config smtpkit.yaml`",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("tls_skip_verify: true"));
    // The server's line and the stored message are told apart.
    let log_line = stdout
        .lines()
        .position(|l| l.contains(" from=<noreply@example.com> "))
        .expect("the server's line");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[log_line - 1].starts_with("== the server's log line"),
        "{stdout}"
    );
    assert!(
        lines[log_line + 1].is_empty() && lines[log_line + 2].starts_with("== stored message "),
        "{stdout}"
    );
    // The last lines take the user to their own provider.
    let tail: Vec<&str> = lines.iter().rev().take(3).rev().copied().collect();
    assert!(
        tail[0].contains("1. ") && tail[1].contains("2. `smtpkit check") && tail[2].contains("3. "),
        "{tail:?}"
    );
    Ok(())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

async fn demo_keep_leaves_a_config_that_works_against_serve_on_the_kept_dir() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = dir.path().join("kept");
    let kept_str = kept.to_str().expect("utf-8");
    let out = tokio::time::timeout(SERVE_WAIT, smtpkit(&["demo", "--keep", kept_str]))
        .await
        .expect("demo in time");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("`smtpkit serve --dir {kept_str}`")),
        "{stdout}"
    );
    let config = kept.join("smtpkit.yaml");
    let settings: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(kept.join("smtpkit-serve.json")).expect("kept settings"),
    )
    .expect("json");
    let password = settings["auth"]
        .as_str()
        .and_then(|a| a.strip_prefix("demo:"))
        .expect("demo:PASSWORD");
    assert!(!stdout.contains(password), "the password is never printed");
    assert!(
        std::fs::read_to_string(&config)
            .expect("config")
            .contains(password),
        "the kept config holds the password: no variable to set"
    );
    #[cfg(unix)]
    for secret in [
        "smtpkit.yaml",
        "smtpkit-serve.json",
        "smtpkit-local-key.pem",
    ] {
        assert_eq!(mode(&kept.join(secret)), 0o600, "{secret}");
    }
    let kept_port = settings["listen"]
        .as_str()
        .and_then(|l| l.parse::<std::net::SocketAddr>().ok())
        .expect("listen")
        .port();

    // `smtpkit serve --dir DIR` answers where the kept config points.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args(["serve", "--dir", kept_str])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let mut stdout_lines = forward_lines(child.stdout.take().expect("stdout"));
    let mut stderr_lines = forward_lines(child.stderr.take().expect("stderr"));
    let (mut out_seen, mut err_seen) = (Vec::new(), Vec::new());
    let listening = wait_for_line(
        &mut stderr_lines,
        &mut err_seen,
        "\"listening on\" line",
        |l| l.starts_with("smtpkit serve: listening on "),
    )
    .await;
    assert!(
        listening.contains(&format!("127.0.0.1:{kept_port} (STARTTLS, AUTH required)")),
        "{listening}"
    );
    let config_str = config.to_str().expect("utf-8");
    for command in ["check", "notify"] {
        let out = tokio::time::timeout(
            SERVE_WAIT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
                .args([command, "--config", config_str])
                .env_remove("SMTPKIT_DEMO_PASSWORD")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("in time")
        .expect("run");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for_line(
        &mut stdout_lines,
        &mut out_seen,
        "the stored message's line",
        |l| {
            l.contains("from=<noreply@example.com> to=<approver@example.com>")
                && l.contains("tls=yes auth=demo")
        },
    )
    .await;
    child.kill().await.expect("kill");
    Ok(())
}

/// Bound for every wait on `smtpkit serve`: generous, since the machine may be loaded; each
/// wait ends as soon as what it waits for shows.
const SERVE_WAIT: Duration = Duration::from_secs(60);

/// Forwards the lines of a child's output stream as they arrive (until EOF).
fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Receives lines into `seen` until one satisfies `wanted` (returned) or the stream ends;
/// panics after [`SERVE_WAIT`] or at the end of the stream, showing `seen`.
async fn wait_for_line(
    lines: &mut mpsc::UnboundedReceiver<String>,
    seen: &mut Vec<String>,
    what: &str,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let found = tokio::time::timeout(SERVE_WAIT, async {
        while let Some(line) = lines.recv().await {
            seen.push(line.clone());
            if wanted(&line) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("the output ended without {what}:\n{}", seen.join("\n")),
        Err(_) => panic!(
            "no {what} within {SERVE_WAIT:?}; so far:\n{}",
            seen.join("\n")
        ),
    }
}

/// Receives the rest of the lines into `seen`, until the stream ends (bounded).
async fn drain_lines(lines: &mut mpsc::UnboundedReceiver<String>, seen: &mut Vec<String>) {
    tokio::time::timeout(SERVE_WAIT, async {
        while let Some(line) = lines.recv().await {
            seen.push(line);
        }
    })
    .await
    .expect("the output ends once the process has exited");
}

async fn serve_captures_messages_and_stops_cleanly_on_ctrl_c() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let mail_dir = dir.path().join("mail");
    // Port 0: the server picks a free port and says which in its "listening on" line.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            mail_dir.to_str().expect("utf-8"),
            "--tls",
            "self-signed",
            "--auth",
            "u:p",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let mut stdout_lines = forward_lines(child.stdout.take().expect("stdout"));
    let mut stderr_lines = forward_lines(child.stderr.take().expect("stderr"));
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());

    // Ready: it printed where it listens, once bound.
    let listening = wait_for_line(
        &mut stderr_lines,
        &mut stderr,
        "\"listening on\" line",
        |l| l.starts_with("smtpkit serve: listening on "),
    )
    .await;
    assert!(
        listening.contains("(STARTTLS, AUTH required)"),
        "{listening}"
    );
    let addr: std::net::SocketAddr = listening
        .trim_start_matches("smtpkit serve: listening on ")
        .split(' ')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("an address in {listening:?}"));
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let ca_file = mail_dir.join("smtpkit-local-ca.pem");
    assert!(ca_file.is_file(), "the CA is written before listening");

    let mut options = client_options(&ca_file, Security::StartTls, None);
    options.credentials = Some(Credentials::new("u", Secret::new("p")).expect("valid"));
    let mut conn = Connection::connect("127.0.0.1", addr.port(), options)
        .await
        .expect("connects to serve");
    conn.send_mail(&envelope(&["a@example.org"]), MESSAGE)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    // The message's line on stdout: it was stored.
    let stored = wait_for_line(
        &mut stdout_lines,
        &mut stdout,
        "line for the stored message",
        |l| l.contains("from=<from@example.com>"),
    )
    .await;
    assert!(
        stored.contains("from=<from@example.com> to=<a@example.org>")
            && stored.contains("tls=yes auth=u"),
        "{stored}"
    );

    // SIGINT only now that a whole session was served: `serve` installs its Ctrl-C handler when
    // its accept loop first runs, just after printing the "listening" lines, so a SIGINT right
    // after those lines can still find the default action (terminate) in place.
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .expect("kill -INT");
    let status = tokio::time::timeout(SERVE_WAIT, child.wait())
        .await
        .expect("stops after SIGINT")
        .expect("wait");
    drain_lines(&mut stdout_lines, &mut stdout).await;
    drain_lines(&mut stderr_lines, &mut stderr).await;
    let (stdout, stderr) = (stdout.join("\n"), stderr.join("\n"));
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("smtpkit serve: stopped"), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "one line per message: {stdout}");
    let emls = std::fs::read_dir(&mail_dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
        .count();
    assert_eq!(emls, 1);

    let out = smtpkit(&["serve", "--listen", "0.0.0.0:2525"]).await;
    assert_eq!(out.status.code(), Some(64), "non-loopback needs --public");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public"));
    Ok(())
}

/// A provider configuration for the server at `port`, with `extra` lines in its `config`.
fn provider_config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let path = dir.join("smtpkit.yaml");
    std::fs::write(
        &path,
        format!(
            "providers:\n  email:\n    provider: email.smtp\n    config:\n      host: 127.0.0.1\n      port: {port}\n      from: noreply@example.com\n      retry: {{attempts: 1}}\n{extra}"
        ),
    )
    .expect("write config");
    path
}

async fn send_through(config: &Path) -> (Option<i32>, String) {
    let config = config.to_str().expect("utf-8");
    let out = tokio::time::timeout(
        SERVE_WAIT,
        smtpkit(&[
            "send",
            "--config",
            config,
            "--to",
            "a@example.org",
            "--subject",
            "s",
            "--text",
            "t",
        ]),
    )
    .await
    .expect("send ends in time");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), shown)
}

async fn an_unknown_ca_and_authentication_required_name_their_fix_and_exit_77() -> TestResult {
    let server = start(true, false, true, ServerLimits::default()).await;
    let dir = server.dir.path();

    // The server's CA is not trusted: the hint names `ca_file` before `tls_skip_verify`.
    let config = provider_config(
        dir,
        server.port,
        "      user: user\n      pass: right-password\n",
    );
    let (code, shown) = send_through(&config).await;
    assert_eq!(code, Some(77), "{shown}");
    let hint = shown
        .lines()
        .find(|l| l.trim_start().starts_with("hint:"))
        .unwrap_or_else(|| panic!("a hint in {shown}"));
    let (ca_file, skip) = (hint.find("`ca_file`"), hint.find("`tls_skip_verify"));
    assert!(
        matches!((ca_file, skip), (Some(c), Some(s)) if c < s),
        "ca_file first: {hint}"
    );

    // Trusted, but no credentials: MAIL gets `530 5.7.0 authentication required`.
    let config = provider_config(
        dir,
        server.port,
        &format!(
            "      auth: none\n      ca_file: {}\n",
            server.ca_file.display()
        ),
    );
    let (code, shown) = send_through(&config).await;
    assert_eq!(code, Some(77), "{shown}");
    assert!(shown.contains("530 5.7.0"), "{shown}");
    assert!(
        shown.contains("hint: The server requires authentication: configure `user` and `pass`"),
        "{shown}"
    );
    assert!(
        !shown.contains("SPF"),
        "not the sender-domain hint: {shown}"
    );
    server.stop().await;
    Ok(())
}

/// Reads from `s` until the peer closes (bounded by [`SERVE_WAIT`]).
async fn read_until_closed(s: &mut (impl AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(SERVE_WAIT, s.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one reply line (bounded by [`SERVE_WAIT`]).
async fn read_reply_line(s: &mut BufReader<tokio::net::TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(SERVE_WAIT, s.read_line(&mut line))
        .await
        .expect("a reply in time")
        .expect("read");
    line
}

async fn stopping_says_421_to_idle_sessions_and_lets_a_message_in_progress_finish() -> TestResult {
    let mut server = start(false, false, false, ServerLimits::default()).await;
    // An idle client, greeted and silent.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    // A client half-way through a message body.
    let busy = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let mut busy = BufReader::new(busy);
    assert!(read_reply_line(&mut busy).await.starts_with("220 "));
    busy.get_mut()
        .write_all(b"HELO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        .await
        .expect("write");
    for expected in ["250 ", "250 ", "250 ", "354 "] {
        let line = read_reply_line(&mut busy).await;
        assert!(line.starts_with(expected), "{line}");
    }
    busy.get_mut()
        .write_all(b"Subject: in progress\r\n\r\nfirst half\r\n")
        .await
        .expect("write");

    if let Some(stop) = server.stop.take() {
        let _ = stop.send(());
    }
    // The idle session is told at once, not left to the grace period.
    let said = read_until_closed(&mut idle).await;
    assert!(
        said.starts_with("220 ") && said.contains("421 4.3.2 shutting down"),
        "{said}"
    );
    // The message in progress is finished, stored and answered; then the 421.
    busy.get_mut()
        .write_all(b"second half\r\n.\r\n")
        .await
        .expect("write");
    let rest = read_until_closed(&mut busy).await;
    assert!(
        rest.starts_with("250 2.0.0 Ok: queued as ") && rest.contains("421 4.3.2 shutting down"),
        "{rest}"
    );
    let stored = server.next_message().await;
    let file = std::fs::read_to_string(&stored.path).expect("stored");
    assert!(file.ends_with("first half\r\nsecond half\r\n"), "{file:?}");
    server.stop().await;
    Ok(())
}

/// A TLS ClientHello naming an IP address as SNI, as msmtp and other GnuTLS clients send
/// against 127.0.0.1 (RFC 6066 §3 allows only host names there). rustls logs a warning when
/// it reads one; the handshake then fails (the hello offers nothing the server accepts).
fn client_hello_with_ip_sni() -> Vec<u8> {
    let name = b"127.0.0.1";
    let mut sni = vec![0x00]; // host_name
    sni.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni.extend_from_slice(name);
    let mut ext = vec![0x00, 0x00]; // server_name
    ext.extend_from_slice(&((sni.len() + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    let mut body = vec![0x03, 0x03]; // TLS 1.2 in the legacy version field
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![0x01, 0x00]; // ClientHello, 24-bit length
    handshake.extend_from_slice(&(body.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// `smtpkit serve --tls self-signed --auth u:p` on a free port, with `RUST_LOG` as given.
async fn spawn_serve(
    mail_dir: &Path,
    rust_log: Option<&str>,
) -> (
    tokio::process::Child,
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedReceiver<String>,
    Vec<String>,
    u16,
) {
    spawn_serve_with(
        mail_dir,
        rust_log,
        &["--tls", "self-signed", "--auth", "u:p"],
    )
    .await
}

/// `smtpkit serve` with `args` on a free port, with `RUST_LOG` as given.
async fn spawn_serve_with(
    mail_dir: &Path,
    rust_log: Option<&str>,
    args: &[&str],
) -> (
    tokio::process::Child,
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedReceiver<String>,
    Vec<String>,
    u16,
) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .arg("--dir")
        .arg(mail_dir)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command.spawn().expect("spawn serve");
    let stdout_lines = forward_lines(child.stdout.take().expect("stdout"));
    let mut stderr_lines = forward_lines(child.stderr.take().expect("stderr"));
    let mut stderr = Vec::new();
    let listening = wait_for_line(
        &mut stderr_lines,
        &mut stderr,
        "\"listening on\" line",
        |l| l.starts_with("smtpkit serve: listening on "),
    )
    .await;
    let port = listening
        .trim_start_matches("smtpkit serve: listening on ")
        .split(' ')
        .next()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("an address in {listening:?}"));
    (child, stdout_lines, stderr_lines, stderr, port)
}

/// Sends STARTTLS, then a ClientHello with an IP address as SNI.
async fn hello_with_ip_sni(port: u16) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut s = BufReader::new(stream);
    assert!(read_reply_line(&mut s).await.starts_with("220 "));
    s.get_mut().write_all(b"EHLO c\r\n").await.expect("write");
    while !read_reply_line(&mut s).await.starts_with("250 ") {}
    s.get_mut().write_all(b"STARTTLS\r\n").await.expect("write");
    assert!(read_reply_line(&mut s).await.starts_with("220 "));
    s.get_mut()
        .write_all(&client_hello_with_ip_sni())
        .await
        .expect("write");
    // The server answers with an alert and closes.
    let _ = read_until_closed(&mut s).await;
}

async fn serve_logs_failed_sessions_not_sni_noise_and_says_421_on_ctrl_c() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");

    // The control: with RUST_LOG naming rustls, the hello does make rustls warn.
    let (mut child, _out, mut err_lines, mut stderr, port) =
        spawn_serve(&dir.path().join("control"), Some("warn,rustls=warn")).await;
    hello_with_ip_sni(port).await;
    wait_for_line(&mut err_lines, &mut stderr, "rustls' SNI warning", |l| {
        l.contains("Illegal SNI")
    })
    .await;
    child.kill().await.expect("kill");

    let mail_dir = dir.path().join("mail");
    let (mut child, mut stdout_lines, mut stderr_lines, mut stderr, port) =
        spawn_serve(&mail_dir, None).await;
    let ca_file = mail_dir.join("smtpkit-local-ca.pem");

    // A wrong password: the session's failure is logged with the peer.
    let mut options = client_options(&ca_file, Security::StartTls, None);
    options.credentials = Some(Credentials::new("u", Secret::new("wrong")).expect("valid"));
    let err = Connection::connect("127.0.0.1", port, options)
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    let line = wait_for_line(
        &mut stderr_lines,
        &mut stderr,
        "a log line for the bad AUTH",
        |l| l.contains("AUTH PLAIN failed for user \"u\""),
    )
    .await;
    assert!(
        line.contains("WARN") && line.contains("session 127.0.0.1:"),
        "{line}"
    );

    // A client that does not trust the CA: the failed handshake is logged.
    let untrusted = ClientOptions {
        security: Security::StartTls,
        tls_server_name: Some("localhost".into()),
        ..ClientOptions::default()
    };
    let err = Connection::connect("127.0.0.1", port, untrusted)
        .await
        .expect_err("unknown CA");
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    wait_for_line(
        &mut stderr_lines,
        &mut stderr,
        "a log line for the failed handshake",
        |l| l.contains("TLS handshake after STARTTLS failed"),
    )
    .await;

    // An IP address as SNI: the failed handshake is logged, rustls' warning is not.
    hello_with_ip_sni(port).await;

    // An idle client gets `421` at Ctrl-C, and the server stops without waiting it out.
    let mut idle = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut greeting = [0u8; 4];
    tokio::time::timeout(SERVE_WAIT, idle.read_exact(&mut greeting))
        .await
        .expect("greeted in time")
        .expect("read");
    assert_eq!(&greeting, b"220 ");
    let pid = child.id().expect("pid").to_string();
    std::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {pid}")])
        .status()
        .expect("kill -INT");
    let said = read_until_closed(&mut idle).await;
    assert!(said.contains("421 4.3.2 shutting down"), "{said}");
    let status = tokio::time::timeout(SERVE_WAIT, child.wait())
        .await
        .expect("stops after SIGINT")
        .expect("wait");
    let mut stdout = Vec::new();
    drain_lines(&mut stdout_lines, &mut stdout).await;
    drain_lines(&mut stderr_lines, &mut stderr).await;
    let stderr = stderr.join("\n");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("smtpkit serve: stopped"), "{stderr}");
    assert!(!stderr.contains("Illegal SNI"), "{stderr}");
    assert_eq!(
        stderr
            .matches("TLS handshake after STARTTLS failed")
            .count(),
        2,
        "the untrusted client and the IP-as-SNI hello: {stderr}"
    );
    assert!(stdout.is_empty(), "no message was stored: {stdout:?}");
    Ok(())
}

/// The fenced block of README.md that follows `heading`, opening with "```lang".
fn readme_block(heading: &str, lang: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = &readme[readme.find(heading).unwrap_or_else(|| panic!("{heading}"))..];
    let open = format!("```{lang}\n");
    let start = after
        .find(&open)
        .unwrap_or_else(|| panic!("{open} after {heading}"))
        + open.len();
    let len = after[start..].find("```").expect("closing fence");
    after[start..start + len].to_owned()
}

async fn the_readme_client_example_reaches_serve_started_as_the_readme_says() -> TestResult {
    // What a new project needs, as the README states it (the examples themselves are compiled
    // by the README doc tests).
    let toml = readme_block("## Using the library", "toml");
    assert!(
        toml.contains(r#"tokio = { version = "1", features = ["macros", "rt-multi-thread"] }"#),
        "{toml}"
    );
    let example = readme_block("## Library example: the client", "rust,no_run");
    for line in [
        "#[tokio::main]",
        r#"ca_file: Some("smtpkit-mail/smtpkit-local-ca.pem".into()),"#,
        r#"credentials: Some(Credentials::new("demo", Secret::new("secret"))?),"#,
        r#"Connection::connect("127.0.0.1", 2525, options)"#,
    ] {
        assert!(example.contains(line), "{line} in:\n{example}");
    }

    // `smtpkit serve --tls self-signed --auth demo:secret`, started in the project's directory
    // as the README says (on a free port here, instead of 2525).
    let project = tempfile::tempdir().expect("tempdir");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_smtpkit"))
        .args([
            "serve",
            "--tls",
            "self-signed",
            "--auth",
            "demo:secret",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(project.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn serve");
    let mut stdout_lines = forward_lines(child.stdout.take().expect("stdout"));
    let mut stderr_lines = forward_lines(child.stderr.take().expect("stderr"));
    let (mut out_seen, mut err_seen) = (Vec::new(), Vec::new());
    let listening = wait_for_line(
        &mut stderr_lines,
        &mut err_seen,
        "\"listening on\" line",
        |l| l.starts_with("smtpkit serve: listening on "),
    )
    .await;
    let port = listening
        .trim_start_matches("smtpkit serve: listening on ")
        .split(' ')
        .next()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .expect("an address")
        .port();

    // The example's settings, with the project's directory and the port.
    let tls = TlsConnector::new(&TlsSettings {
        ca_file: Some(project.path().join("smtpkit-mail/smtpkit-local-ca.pem")),
        ..TlsSettings::default()
    })
    .expect("the CA serve wrote");
    let options = ClientOptions {
        tls: Some(tls),
        credentials: Some(Credentials::new("demo", Secret::new("secret")).expect("valid")),
        ..ClientOptions::default()
    };
    let mut conn = Connection::connect("127.0.0.1", port, options)
        .await
        .expect("STARTTLS and AUTH as the example does them");
    let envelope = Envelope::new(
        Address::new("noreply@example.com").expect("valid"),
        vec![
            Address::new("approver@example.com").expect("valid"),
            Address::new("audit@example.com").expect("valid"),
        ],
    )
    .expect("envelope");
    let report = conn
        .send_mail(
            &envelope,
            b"From: noreply@example.com\r\nTo: approver@example.com\r\nSubject: Access Request Approval Required\r\n\r\nA new access request requires your approval.\r\n",
        )
        .await
        .expect("accepted");
    assert!(report.queue_id().is_some());
    conn.quit().await.expect("quit");
    wait_for_line(
        &mut stdout_lines,
        &mut out_seen,
        "the stored message's line",
        |l| {
            l.contains("to=<approver@example.com>,<audit@example.com>")
                && l.contains("tls=yes auth=demo")
        },
    )
    .await;
    child.kill().await.expect("kill");
    Ok(())
}

/// The XOAUTH2 account of the tests below.
const XOAUTH2_USER: &str = "u@example.com";
const XOAUTH2_TOKEN: &str = "ya29.test-token_0123456789";
/// What Gmail sends, base64-encoded in a `334`, for a wrong user or token.
const GMAIL_XOAUTH2_ERROR: &str =
    r#"{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}"#;

fn with_xoauth2(config: &mut ServerConfig) {
    config.xoauth2 = Some((XOAUTH2_USER.into(), Secret::new(XOAUTH2_TOKEN)));
}

/// The base64 XOAUTH2 initial response for `user` and `token`.
fn xoauth2_response(user: &str, token: &str) -> String {
    BASE64.encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

async fn xoauth2_accepts_the_token_and_answers_a_wrong_one_as_gmail_does() -> TestResult {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), "mail".into());
    with_xoauth2(&mut config);
    let shown = format!("{config:?}");
    assert!(
        shown.contains(XOAUTH2_USER) && !shown.contains(XOAUTH2_TOKEN),
        "{shown}"
    );

    let mut server = start_with(true, false, ServerLimits::default(), with_xoauth2).await;
    let (transcript, lines) = Transcript::buffer();
    let mut options = client_options(&server.ca_file, Security::StartTls, None);
    options.transcript = Some(transcript);
    let mut conn = Connection::connect("127.0.0.1", server.port, options)
        .await
        .expect("STARTTLS");
    // Only XOAUTH2 is configured: only XOAUTH2 is offered, and PLAIN is refused.
    assert_eq!(conn.capabilities().auth_mechanisms(), ["XOAUTH2"]);
    let reply = conn
        .command(&Command::Auth {
            mechanism: MechanismName::new("PLAIN").expect("valid"),
            initial_response: None,
        })
        .await
        .expect("reply");
    assert_eq!(reply.code().value(), 504);

    // No AUTH yet: MAIL is refused with 530.
    let err = conn
        .send_mail(&envelope(&["a@example.org"]), MESSAGE)
        .await
        .expect_err("530");
    assert_eq!(err.reply().map(|r| r.code().value()), Some(530), "{err}");

    // A wrong token: Gmail's JSON challenge, the client's empty line, then 535.
    let wrong = Credentials::new(XOAUTH2_USER, Secret::new("ya29.wrong-token")).expect("valid");
    let before = lines.lines().len();
    let err = conn
        .authenticate(&wrong, Some(Mechanism::XOAuth2))
        .await
        .expect_err("a wrong token");
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(
        err.reply().map(ToString::to_string).as_deref(),
        Some("535 5.7.8 Username and Password not accepted")
    );
    let challenge = format!("S: 334 {}", BASE64.encode(GMAIL_XOAUTH2_ERROR));
    assert_eq!(
        lines.lines()[before..],
        [
            "C: AUTH XOAUTH2 <redacted>",
            challenge.as_str(),
            // The client's empty line: every AUTH payload is redacted, an empty one too (its
            // bytes on the wire are checked by the raw-socket test).
            "C: <redacted>",
            "S: 535 5.7.8 Username and Password not accepted",
        ]
    );

    // The right token on the same session: 235, and the message names the user.
    let good = Credentials::new(XOAUTH2_USER, Secret::new(XOAUTH2_TOKEN)).expect("valid");
    let reply = conn
        .authenticate(&good, Some(Mechanism::XOAuth2))
        .await
        .expect("the right token");
    assert_eq!(reply.to_string(), "235 2.7.0 Accepted");
    conn.send_mail(&envelope(&["a@example.org"]), MESSAGE)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    let stored = server.next_message().await;
    assert_eq!(stored.authenticated_as.as_deref(), Some(XOAUTH2_USER));
    assert!(stored.tls);

    let shown = lines.lines().join("\n");
    for secret in [
        XOAUTH2_TOKEN.to_owned(),
        "ya29.wrong-token".to_owned(),
        xoauth2_response(XOAUTH2_USER, XOAUTH2_TOKEN),
        xoauth2_response(XOAUTH2_USER, "ya29.wrong-token"),
    ] {
        assert!(!shown.contains(&secret), "{secret} in:\n{shown}");
    }

    // With a password account too, EHLO offers both, and PLAIN still works.
    server.stop().await;
    let mut server = start_with(true, false, ServerLimits::default(), |config| {
        with_xoauth2(config);
        config.auth = Some(("user".into(), Secret::new("right-password")));
    })
    .await;
    let mut conn = Connection::connect(
        "127.0.0.1",
        server.port,
        client_options(&server.ca_file, Security::StartTls, Some("right-password")),
    )
    .await
    .expect("STARTTLS and AUTH PLAIN");
    assert_eq!(
        conn.capabilities().auth_mechanisms(),
        ["PLAIN", "LOGIN", "XOAUTH2"]
    );
    conn.send_mail(&envelope(&["a@example.org"]), MESSAGE)
        .await
        .expect("sent");
    conn.quit().await.expect("quit");
    assert_eq!(
        server.next_message().await.authenticated_as.as_deref(),
        Some("user")
    );
    server.stop().await;
    Ok(())
}

/// Writes `line` and CRLF, and reads one reply line.
async fn exchange(s: &mut BufReader<tokio::net::TcpStream>, line: &str) -> String {
    s.get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .expect("write");
    read_reply_line(s).await
}

async fn xoauth2_on_the_wire_json_challenge_empty_line_and_cancel() -> TestResult {
    let mut server = start_with(false, false, ServerLimits::default(), |config| {
        with_xoauth2(config);
        config.allow_insecure_auth = true;
    })
    .await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let mut s = BufReader::new(stream);
    assert!(read_reply_line(&mut s).await.starts_with("220 "));
    let mut ehlo = vec![exchange(&mut s, "EHLO raw.test").await];
    while !ehlo[ehlo.len() - 1].starts_with("250 ") {
        ehlo.push(read_reply_line(&mut s).await);
    }
    assert!(
        ehlo.iter()
            .any(|l| &l[3..] == " AUTH XOAUTH2\r\n" || &l[3..] == "-AUTH XOAUTH2\r\n"),
        "{ehlo:?}"
    );
    assert_eq!(
        exchange(&mut s, "MAIL FROM:<a@example.com>").await,
        "530 5.7.0 authentication required\r\n"
    );

    // A wrong token in the initial response: `334 ` and the JSON error, base64-encoded.
    let wrong = xoauth2_response(XOAUTH2_USER, "wrong-token");
    let line = exchange(&mut s, &format!("AUTH XOAUTH2 {wrong}")).await;
    let challenge = line
        .strip_prefix("334 ")
        .and_then(|c| c.strip_suffix("\r\n"))
        .unwrap_or_else(|| panic!("a 334 challenge: {line:?}"));
    let json = BASE64.decode(challenge).expect("base64");
    assert_eq!(
        String::from_utf8_lossy(&json),
        GMAIL_XOAUTH2_ERROR,
        "Gmail's bytes"
    );
    let json: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
    );
    // The client's empty line; then the failure.
    assert_eq!(
        exchange(&mut s, "").await,
        "535 5.7.8 Username and Password not accepted\r\n"
    );

    // No initial response: an empty `334 `, then the response on its own line; a `*` after
    // the error challenge cancels (RFC 4954 §4).
    assert_eq!(exchange(&mut s, "AUTH XOAUTH2").await, "334 \r\n");
    assert_eq!(
        exchange(&mut s, &wrong).await,
        format!("334 {challenge}\r\n")
    );
    assert_eq!(exchange(&mut s, "*").await, "501 5.7.0 AUTH cancelled\r\n");
    // A `*` in place of the initial response cancels too.
    assert_eq!(exchange(&mut s, "AUTH XOAUTH2").await, "334 \r\n");
    assert_eq!(exchange(&mut s, "*").await, "501 5.7.0 AUTH cancelled\r\n");

    // Anything but the exact format is refused with 501 5.5.2 and a reason.
    for malformed in [
        format!("user={XOAUTH2_USER}\x01auth=Basic {XOAUTH2_TOKEN}\x01\x01"),
        format!("user={XOAUTH2_USER}\x01auth=Bearer {XOAUTH2_TOKEN}\x01"),
        format!("auth=Bearer {XOAUTH2_TOKEN}\x01\x01"),
        format!("user=\x01auth=Bearer {XOAUTH2_TOKEN}\x01\x01"),
    ] {
        let line = exchange(
            &mut s,
            &format!("AUTH XOAUTH2 {}", BASE64.encode(&malformed)),
        )
        .await;
        assert!(
            line.starts_with("501 5.5.2 malformed XOAUTH2 response: "),
            "{malformed:?}: {line}"
        );
    }
    let line = exchange(&mut s, "AUTH XOAUTH2 not*base64").await;
    assert!(line.starts_with("501 5.5.2 "), "{line}");
    let line = exchange(&mut s, "AUTH PLAIN AHVzZXIAcGFzcw==").await;
    assert!(
        line.starts_with("504 "),
        "only XOAUTH2 is configured: {line}"
    );

    // The right user and token.
    let good = xoauth2_response(XOAUTH2_USER, XOAUTH2_TOKEN);
    assert_eq!(
        exchange(&mut s, &format!("AUTH XOAUTH2 {good}")).await,
        "235 2.7.0 Accepted\r\n"
    );
    for (line, code) in [
        ("MAIL FROM:<a@example.com>", "250 "),
        ("RCPT TO:<b@example.org>", "250 "),
        ("DATA", "354 "),
        ("Subject: raw\r\n\r\nhello\r\n.", "250 "),
        ("QUIT", "221 "),
    ] {
        let reply = exchange(&mut s, line).await;
        assert!(reply.starts_with(code), "{line}: {reply}");
    }
    let stored = server.next_message().await;
    assert_eq!(stored.authenticated_as.as_deref(), Some(XOAUTH2_USER));
    assert!(!stored.tls);
    server.stop().await;
    Ok(())
}

async fn serve_xoauth2_with_python_smtplib_and_no_token_in_its_output() -> TestResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_str = dir.path().to_str().expect("utf-8");

    // Usage errors: exit 64, with the reason, and the token not repeated.
    for (account, reason) in [
        ("no-colon-s3cret", "no colon"),
        (":s3cret", "the user is empty"),
        ("u@example.com:", "the token is empty"),
    ] {
        let out = smtpkit(&["serve", "--dir", dir_str, "--xoauth2", account]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{account}: {stderr}");
        assert!(
            stderr.contains("--xoauth2 wants USER:TOKEN") && stderr.contains(reason),
            "{account}: {stderr}"
        );
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }

    let account = format!("{XOAUTH2_USER}:{XOAUTH2_TOKEN}");
    let mail_dir = dir.path().join("mail");
    let (mut child, mut stdout_lines, mut stderr_lines, mut stderr, port) = spawn_serve_with(
        &mail_dir,
        None,
        &["--tls", "self-signed", "--xoauth2", &account],
    )
    .await;
    let listening = stderr
        .iter()
        .find(|l| l.starts_with("smtpkit serve: listening on "))
        .expect("the listening line")
        .clone();
    assert!(
        listening.contains(&format!(
            "(STARTTLS, AUTH required: XOAUTH2 as {XOAUTH2_USER})"
        )),
        "{listening}"
    );

    // Python's smtplib: a wrong token (its authobject sees the JSON challenge and answers
    // with an empty line), then the right one and a message.
    let script = format!(
        r#"import json, smtplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
ctx.check_hostname = False
s = smtplib.SMTP('127.0.0.1', {port}, timeout=10)
s.starttls(context=ctx)
s.ehlo()
print('MECHANISMS', s.esmtp_features.get('auth', '').split())
challenges = []
def xoauth2(token):
    def answer(challenge=None):
        if challenge is None:
            return 'user={user}\x01auth=Bearer ' + token + '\x01\x01'
        challenges.append(challenge.decode())
        return ''
    return answer
try:
    s.auth('XOAUTH2', xoauth2('wrong-token'), initial_response_ok=True)
    print('ACCEPTED WRONG TOKEN')
except smtplib.SMTPAuthenticationError as e:
    print('AUTHFAIL', e.smtp_code, e.smtp_error.decode())
print('CHALLENGE', json.dumps(json.loads(challenges[0]), sort_keys=True))
code, text = s.auth('XOAUTH2', xoauth2({token:?}), initial_response_ok=True)
print('AUTHOK', code, text.decode())
s.sendmail('py@example.com', ['x@example.org'], 'Subject: xoauth2 from python\r\n\r\nhello\r\n')
s.quit()
"#,
        ca = mail_dir.join("smtpkit-local-ca.pem").display().to_string(),
        user = XOAUTH2_USER,
        token = XOAUTH2_TOKEN,
    );
    let out = tokio::task::spawn_blocking(move || python_client(&script))
        .await
        .expect("join")?;
    let python = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {python}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "MECHANISMS ['XOAUTH2']",
        "AUTHFAIL 535 5.7.8 Username and Password not accepted",
        r#"CHALLENGE {"schemes": "Bearer", "scope": "https://mail.google.com/", "status": "401"}"#,
        "AUTHOK 235 2.7.0 Accepted",
    ] {
        assert!(python.contains(expected), "{expected} in:\n{python}");
    }

    // The message's line names the XOAUTH2 user; the failed attempt is logged with the peer.
    let mut stdout = Vec::new();
    let stored = wait_for_line(
        &mut stdout_lines,
        &mut stdout,
        "the stored message's line",
        |l| l.contains("from=<py@example.com>"),
    )
    .await;
    assert!(
        stored.contains(&format!("tls=yes auth={XOAUTH2_USER}")),
        "{stored}"
    );
    let logged = wait_for_line(
        &mut stderr_lines,
        &mut stderr,
        "a log line for the wrong token",
        |l| l.contains("AUTH XOAUTH2 failed for user \"u@example.com\""),
    )
    .await;
    assert!(
        logged.contains("WARN") && logged.contains("session 127.0.0.1:"),
        "{logged}"
    );
    child.kill().await.expect("kill");
    drain_lines(&mut stdout_lines, &mut stdout).await;
    drain_lines(&mut stderr_lines, &mut stderr).await;
    let everything = format!("{}\n{}", stdout.join("\n"), stderr.join("\n"));
    for secret in [XOAUTH2_TOKEN, "wrong-token"] {
        assert!(
            !everything.contains(secret),
            "{secret} in serve's output:\n{everything}"
        );
    }
    Ok(())
}

/// Messages whose lines start with dots, or hold a lone `.`, through BDAT (small chunks, so a
/// message spans several) and through DATA: the stored files are the same, byte for byte.
async fn bdat_stores_the_octets_as_sent_like_data_does() -> TestResult {
    let messages: [&[u8]; 4] = [
        MESSAGE,
        b"Subject: lone dot\r\n\r\nbefore\r\n.\r\nafter\r\n",
        b"Subject: bare LF\n\n.x\nno final line end",
        b"Subject: a longer one\r\n\r\n.................................................\r\n",
    ];
    let mut stored_by_mode = Vec::new();
    for enabled in [true, false] {
        let mut server = start(false, false, false, ServerLimits::default()).await;
        let (transcript, lines) = Transcript::buffer();
        let options = ClientOptions {
            transcript: Some(transcript),
            chunking: Chunking {
                enabled,
                max_chunk_size: 16,
                ..Chunking::default()
            },
            ..client_options(&server.ca_file, Security::None, None)
        };
        let mut conn = Connection::connect("127.0.0.1", server.port, options)
            .await
            .expect("plain");
        assert!(conn.capabilities().chunking());
        let env = envelope(&["a@example.org"]);
        let batch: Vec<(&Envelope, &[u8])> = messages.iter().map(|m| (&env, *m)).collect();
        for result in conn.send_many(&batch).await {
            result.expect("sent");
        }
        conn.quit().await.expect("quit");
        let mut bodies = Vec::new();
        for _ in &messages {
            let stored = server.next_message().await;
            let file = std::fs::read(&stored.path).expect("file");
            let at = file
                .windows(9)
                .position(|w| w == b"Subject: ")
                .expect("the message");
            bodies.push(file[at..].to_vec());
        }
        let sent_bdat = lines.lines().iter().any(|l| l.contains("BDAT 16"));
        assert_eq!(sent_bdat, enabled, "{:?}", lines.lines());
        stored_by_mode.push(bodies);
        server.stop().await;
    }
    assert_eq!(stored_by_mode[0], stored_by_mode[1]);
    assert_eq!(stored_by_mode[0][0], MESSAGE);
    assert_eq!(
        stored_by_mode[0][2],
        b"Subject: bare LF\r\n\r\n.x\r\nno final line end\r\n"
    );
    Ok(())
}

/// RFC 3030 on raw pipelined input: a BDAT without MAIL gets 503 and without a recipient 554,
/// its octets consumed either way; DATA in a BDAT transaction gets 503; `BDAT 0 LAST` ends a
/// message; a chunk over the size limit gets 552 and LAST ends the failed transaction.
async fn bdat_ordering_rules_and_size_limit_on_the_wire() -> TestResult {
    let limits = ServerLimits {
        max_message_size: 1000,
        ..ServerLimits::default()
    };
    let mut server = start(false, false, false, limits).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect");
    let big = "y".repeat(600);
    let input = format!(
        "EHLO raw.test\r\n\
         BDAT 11\r\nMAIL FROM\r\n\
         MAIL FROM:<a@example.com>\r\nBDAT 3 LAST\r\nabc\
         RSET\r\n\
         MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 4\r\n.x\r\nDATA\r\nBDAT 0 LAST\r\n\
         BDAT x\r\n\
         BDAT 0\r\n\
         MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 600\r\n{big}BDAT 600 LAST\r\n{big}\
         MAIL FROM:<a@example.com>\r\nRSET\r\nQUIT\r\n"
    );
    s.write_all(input.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("250-CHUNKING\r\n") || text.contains("250 CHUNKING\r\n"),
        "{text}"
    );
    let codes: Vec<&str> = text
        .lines()
        .filter(|l| l.len() >= 4 && &l[3..4] == " ")
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        [
            "220", "250", // greeting, EHLO
            "503", // BDAT without MAIL: its 11 octets ("MAIL FROM" CRLF) consumed
            "250", "554", // MAIL, BDAT without a recipient
            "250", // RSET
            "250", "250", "250", "503", "250", // MAIL RCPT BDAT, DATA refused, BDAT 0 LAST
            "501", "501", // BDAT x, BDAT 0 without LAST: syntax
            "250", "250", "250", "552", // MAIL RCPT BDAT 600, BDAT 600 LAST over the limit
            "250", "250", "221", // MAIL (the failed transaction ended), RSET, QUIT
        ],
        "{text}"
    );
    let stored = server.next_message().await;
    let file = std::fs::read_to_string(&stored.path).expect("file");
    assert!(
        file.ends_with("X-Envelope-To: <b@example.org>\r\n.x\r\n"),
        "{file:?}"
    );
    server.stop().await;
    Ok(())
}
