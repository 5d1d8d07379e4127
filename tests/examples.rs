//! The programs in `examples/`, built by this test (see `build_examples`) and run against the
//! capture server (`smtpkit::server`) started in this process; each is checked by its output
//! and by what the server stored.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

/// The example programs, built once per run of this file: name -> executable.
static EXAMPLES: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();

/// The features this test was built with, so that the examples link the same library build.
fn enabled_features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if cfg!(feature = "default") {
        features.push("default");
    }
    if cfg!(feature = "cli") {
        features.push("cli");
    }
    if cfg!(feature = "server") {
        features.push("server");
    }
    if cfg!(feature = "serde") {
        features.push("serde");
    }
    if cfg!(feature = "certificate-summary") {
        features.push("certificate-summary");
    }
    features
}

/// Builds the examples with the cargo running this test (`cargo build --examples`, same
/// target directory, profile and features) and returns their executables. Cargo gives tests
/// the path of the crate's binaries but not of its examples, and under `cargo test
/// --all-targets` it compiles examples as (empty) test harnesses, not as programs. Cargo does
/// not hold the build directory's lock while tests run, so this nested build does not wait
/// for the outer one.
fn build_examples() -> HashMap<String, PathBuf> {
    let me = std::env::current_exe().expect("current exe");
    // target/<profile dir>/deps/examples-HASH
    let profile_dir = me
        .parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--examples",
            "--message-format=json-render-diagnostics",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .args([
            "--no-default-features",
            "--features",
            &enabled_features().join(","),
        ]);
    // What cargo set for this test, not for the nested build: left in, the build scripts that
    // watch these (ring's watches CARGO_MANIFEST_DIR) would run again and rebuild the TLS stack.
    for (key, _) in std::env::vars_os() {
        let key_str = key.to_string_lossy();
        if key_str.starts_with("CARGO_PKG_")
            || matches!(
                &*key_str,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            )
        {
            command.env_remove(&key);
        }
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(other) => {
            command.args(["--profile", other]);
        }
        None => panic!("no profile directory in {}", me.display()),
    }
    let out = command.output().expect("run cargo build --examples");
    assert!(
        out.status.success(),
        "cargo build --examples failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut built = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_example = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "example"));
        if let (true, Some(name), Some(exe)) = (
            is_example,
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            built.insert(name.to_owned(), PathBuf::from(exe));
        }
    }
    built
}

/// The executable of example `name`, built by this test run.
fn example_binary(name: &str) -> PathBuf {
    let built = EXAMPLES.get_or_init(build_examples);
    built
        .get(name)
        .unwrap_or_else(|| panic!("cargo built no example {name}: {built:?}"))
        .clone()
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
    // As the README runs it: `smtpkit serve --tls self-signed --auth demo:secret`.
    let mut server = Running::start(true, Some(("demo", "secret"))).await;
    let port = server.port.to_string();
    let ca = server.ca_file.to_str().expect("utf-8 path").to_owned();
    let out = run_example(
        "client",
        &[
            ("SMTPKIT_EXAMPLE_HOST", "127.0.0.1"),
            ("SMTPKIT_EXAMPLE_PORT", &port),
            ("SMTPKIT_EXAMPLE_CA_FILE", &ca),
            ("SMTPKIT_EXAMPLE_USER", "demo"),
            ("SMTPKIT_EXAMPLE_PASS", "secret"),
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
    assert_eq!(m.authenticated_as.as_deref(), Some("demo"));
    assert!(!stdout(&out).contains("secret"), "{}", show(&out));

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
