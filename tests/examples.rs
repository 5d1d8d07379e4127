//! The programs in `examples/`, run against the capture server (`smtpkit::server`) started in
//! this process, and checked against what the server stored.
//!
//! Cargo builds the examples for `cargo test` and `cargo test --all-targets` (into
//! `target/<profile>/examples/`), but gives tests no path to them as it does for binaries, so
//! the path is found next to this test's own executable. Run alone (`cargo test --test
//! examples`), cargo does not build them: build them first with `cargo build --examples`. A
//! missing or out-of-date example binary fails the test with that advice rather than running
//! old code.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use smtpkit::proto::Secret;
use smtpkit::server::{LocalCa, Server, ServerConfig, StoredMessage};
use tokio::sync::{mpsc, oneshot};

/// A capture server on 127.0.0.1, port chosen by the system, storing into a temporary
/// directory, reporting each stored message on a channel.
struct Running {
    port: u16,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    stored: mpsc::UnboundedReceiver<StoredMessage>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `tls`: STARTTLS offered with a certificate from a throw-away CA (written to
    /// `ca_file`). `auth`: AUTH required with this user and password.
    async fn start(tls: bool, auth: Option<(&str, &str)>) -> Running {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = LocalCa::generate(&["localhost".into(), "127.0.0.1".into()]).expect("ca");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.ca_pem).expect("write ca");
        let mut config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("addr"),
            dir.path().join("mail"),
        );
        if tls {
            config.tls = Some(ca.server_config);
        }
        config.auth = auth.map(|(user, pass)| (user.to_owned(), Secret::new(pass)));
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

    /// Stops the server and returns every message it stored (the files stay until `self` is
    /// dropped).
    async fn stop(&mut self) -> Vec<StoredMessage> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran without error");
        let mut all = Vec::new();
        while let Ok(m) = self.stored.try_recv() {
            all.push(m);
        }
        all
    }
}

/// The newest modification time of `path`, or of any file under it but `skip`.
fn newest(path: &Path, skip: &[&Path]) -> SystemTime {
    if skip.contains(&path) {
        return SystemTime::UNIX_EPOCH;
    }
    let meta = std::fs::metadata(path).expect("metadata");
    if !meta.is_dir() {
        return meta.modified().expect("mtime");
    }
    std::fs::read_dir(path)
        .expect("read dir")
        .map(|e| newest(&e.expect("entry").path(), skip))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `target/<profile>/examples/NAME`, checked to exist and to be newer than its sources.
fn example_binary(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/examples-HASH -> target/<profile>/examples/NAME
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let advice = "build the examples first: `cargo build --examples` \
                  (`cargo test` and `cargo test --all-targets` do it)";
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {advice}", binary.display()));
    // The example and the library it links (the binary's own files do not rebuild it).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let binary_only = [root.join("src/main.rs"), root.join("src/cli")];
    let skip: Vec<&Path> = binary_only.iter().map(PathBuf::as_path).collect();
    for source in [
        root.join("examples").join(format!("{name}.rs")),
        root.join("src"),
    ] {
        assert!(
            newest(&source, &skip) <= built,
            "{} is older than {}: {advice}",
            binary.display(),
            source.display()
        );
    }
    binary
}

/// Runs an example with `env` (and nothing inherited that names an example setting).
async fn run_example(name: &str, env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(example_binary(name));
    for var in [
        "SMTPKIT_EXAMPLE_HOST",
        "SMTPKIT_EXAMPLE_PORT",
        "SMTPKIT_EXAMPLE_CA_FILE",
        "SMTPKIT_EXAMPLE_CONFIG",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("example {name} did not finish in 60 s"))
        .expect("run example")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `examples/provider.rs`: the spec's YAML (STARTTLS checked against the server's CA, AUTH),
/// one notification; the printed Message-ID and queue id are the stored message's.
#[tokio::test]
async fn provider_example_delivers_the_notification() {
    let mut server = Running::start(true, Some(("demo", "secret"))).await;
    let config = server.dir.path().join("smtpkit.yaml");
    std::fs::write(
        &config,
        format!(
            "version: \"1.0\"\n\
             providers:\n  \
               email:\n    \
                 provider: email.smtp\n    \
                 config:\n      \
                   host: 127.0.0.1\n      \
                   port: {port}\n      \
                   user: demo\n      \
                   pass: secret\n      \
                   from: noreply@example.com\n      \
                   ca_file: {ca}\n",
            port = server.port,
            ca = server.ca_file.display()
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path").to_owned();
    let out = run_example("provider", &[("SMTPKIT_EXAMPLE_CONFIG", &config)]).await;
    let stored = server.stop().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stored.len(), 1, "{}", show(&out));
    let m = &stored[0];
    assert_eq!(m.mail_from, "noreply@example.com");
    assert_eq!(m.rcpt_to, ["approver@example.com"]);
    assert!(m.tls, "sent over STARTTLS");
    assert_eq!(m.authenticated_as.as_deref(), Some("demo"));

    // "<message id> queued as Some(\"<queue id>\") in <duration>"
    let text = stdout(&out);
    let line = text.lines().next().expect("a line");
    let (message_id, rest) = line.split_once(" queued as ").expect("report line");
    assert_eq!(
        rest.split(" in ").next(),
        Some(format!("Some({:?})", m.id).as_str()),
        "{line}"
    );
    let eml = std::fs::read_to_string(&m.path).expect("read .eml");
    assert!(
        eml.contains(&format!("Message-ID: <{message_id}>")),
        "{message_id} in {eml}"
    );
    assert!(eml.contains("Subject: Access Request Approval Required"));
    assert!(eml.contains("A new access request requires your approval."));
}

/// `examples/client.rs`: STARTTLS (required by the default options), one transaction to two
/// recipients; the printed queue id is the stored message's and the transcript shows the
/// conversation.
#[tokio::test]
async fn client_example_sends_one_transaction_and_prints_the_transcript() {
    let mut server = Running::start(true, None).await;
    let port = server.port.to_string();
    let ca = server.ca_file.to_str().expect("utf-8 path").to_owned();
    let out = run_example(
        "client",
        &[
            ("SMTPKIT_EXAMPLE_HOST", "127.0.0.1"),
            ("SMTPKIT_EXAMPLE_PORT", &port),
            ("SMTPKIT_EXAMPLE_CA_FILE", &ca),
        ],
    )
    .await;
    let stored = server.stop().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stored.len(), 1, "{}", show(&out));
    let m = &stored[0];
    assert_eq!(m.mail_from, "noreply@example.com");
    assert_eq!(m.rcpt_to, ["approver@example.com", "audit@example.com"]);
    assert!(m.tls);

    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("accepted: 250 ")
            && lines[0].ends_with(&format!("(queue id Some({:?}))", m.id)),
        "{}",
        show(&out)
    );
    assert!(!text.contains("refused"), "{}", show(&out));
    for expected in [
        "C: STARTTLS",
        "C: MAIL FROM:<noreply@example.com>",
        "C: RCPT TO:<approver@example.com>",
        "C: RCPT TO:<audit@example.com>",
        "C: QUIT",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected} in\n{text}"
        );
    }
    let starttls = lines.iter().position(|l| *l == "C: STARTTLS");
    let mail = lines.iter().position(|l| l.starts_with("C: MAIL FROM"));
    assert!(starttls < mail, "STARTTLS before MAIL:\n{text}");
}

/// The client example's default options require TLS checked against trusted roots: without
/// the server's CA, nothing is sent and the program fails.
#[tokio::test]
async fn client_example_without_the_ca_refuses_the_unknown_certificate() {
    let mut server = Running::start(true, None).await;
    let port = server.port.to_string();
    let out = run_example(
        "client",
        &[
            ("SMTPKIT_EXAMPLE_HOST", "127.0.0.1"),
            ("SMTPKIT_EXAMPLE_PORT", &port),
        ],
    )
    .await;
    let stored = server.stop().await;
    assert!(!out.status.success(), "{}", show(&out));
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        show(&out)
    );
}

/// `examples/protocol.rs`: greeting, EHLO, STARTTLS, then typed commands one at a time; each
/// command line and reply is printed in order, and the server stored what was sent.
#[tokio::test]
async fn protocol_example_drives_each_command_over_starttls() {
    let mut server = Running::start(true, None).await;
    let port = server.port.to_string();
    let ca = server.ca_file.to_str().expect("utf-8 path").to_owned();
    let out = run_example(
        "protocol",
        &[
            ("SMTPKIT_EXAMPLE_PORT", &port),
            ("SMTPKIT_EXAMPLE_CA_FILE", &ca),
        ],
    )
    .await;
    let stored = server.stop().await;
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stored.len(), 1, "{}", show(&out));
    let m = &stored[0];
    assert_eq!(m.rcpt_to, ["approver@example.com", "audit@example.com"]);
    assert!(m.tls);

    let text = stdout(&out);
    assert!(text.starts_with("S: 220 "), "greeting first:\n{text}");
    assert!(
        text.contains("\n  STARTTLS\n"),
        "capabilities listed:\n{text}"
    );
    assert!(text.contains("\nTLS: TLSv1_3 "), "{text}");
    // The exchanges after STARTTLS, in order: each command line, then its reply.
    let after_tls: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("TLS: "))
        .skip(1)
        .collect();
    let size = format!("C: MAIL FROM:<noreply@example.com> SIZE={}", m.size);
    let expected: [(&str, &str); 7] = [
        (&size, "S: 250 [2.1.0] "),
        ("C: RCPT TO:<approver@example.com>", "S: 250 [2.1.5] "),
        ("C: RCPT TO:<audit@example.com>", "S: 250 [2.1.5] "),
        ("C: DATA", "S: 354 "),
        ("C: <", "S: 250 [2.0.0] "),
        ("C: NOOP", "S: 250 "),
        ("C: QUIT", "S: 221 [2.0.0] "),
    ];
    assert_eq!(after_tls.len(), 14, "{text}");
    for (i, (command, reply)) in expected.iter().enumerate() {
        assert!(after_tls[2 * i].starts_with(command), "{command}:\n{text}");
        assert!(after_tls[2 * i + 1].starts_with(reply), "{reply}:\n{text}");
    }
    // The reply to the body names the stored message.
    assert!(
        after_tls[9] == format!("S: 250 [2.0.0] Ok: queued as {}", m.id),
        "{}",
        after_tls[9]
    );
    let eml = std::fs::read_to_string(&m.path).expect("read .eml");
    assert!(eml.contains("Subject: Fine control"));
}

/// `examples/protocol.rs` without a CA file stays in plain text, which the capture server
/// (offering no TLS) accepts.
#[tokio::test]
async fn protocol_example_in_plain_text_against_a_plain_server() {
    let mut server = Running::start(false, None).await;
    let port = server.port.to_string();
    let out = run_example("protocol", &[("SMTPKIT_EXAMPLE_PORT", &port)]).await;
    let stored = server.stop().await;
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("no CA file given: staying in plain text"));
    assert_eq!(stored.len(), 1, "{}", show(&out));
    assert!(!stored[0].tls);
}
