//! `smtpkit demo`: the whole job on one machine, with no mail account.
//!
//! Starts the local server on loopback (STARTTLS with a CA made for this run, AUTH), writes the
//! spec's basic configuration pointed at it (trusting the run's CA with `ca_file`, not
//! `tls_skip_verify`), runs the spec's `access-approval` workflow, and shows the transcript,
//! the delivery report and the stored message.
//!
//! The directory it works in is laid out as `smtpkit serve --dir DIR` serves one: the CA in
//! `smtpkit-local-ca.pem`, the messages beside it, and `smtpkit-serve.json` with the port,
//! certificate and password of the run. With `--keep DIR` it stays: `smtpkit serve --dir DIR`
//! answers again where `DIR/smtpkit.yaml` points, and the configuration (which holds the
//! password, so only its owner may read it) works as it is.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use smtpkit::client::Transcript;
use smtpkit::proto::Secret;
use smtpkit::provider::{Config, RouteTable, WorkflowStep};
use smtpkit::server::{LocalCa, Server, ServerConfig, StoredMessage};
use tokio::sync::mpsc;

use super::exit;
use super::output;
use super::serve::{self, KeptSettings, CA_FILE, CERT_FILE, KEPT_SETTINGS, KEY_FILE};

/// Show the whole job: a local server, the spec's configuration and workflow, a delivered message.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the configuration, the server's CA, certificate and settings, and the stored
    /// message in this directory instead of a temporary one; `smtpkit serve --dir DIR` then
    /// serves it again as the demo did, and `DIR/smtpkit.yaml` works as it is.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

/// The user the demo's server wants.
const USER: &str = "demo";
/// What is printed instead of the password.
const PASSWORD_SHOWN: &str = "••••••••  # this run's password: in the file only (mode 0600)";

fn config_yaml(port: u16, pass: &str) -> String {
    format!(
        r#"version: "1.0"
providers:
  email:
    name: Email Notifications
    description: SMTP email provider
    provider: email  # can use 'email' with platform: smtp, or use 'email.smtp' directly
    enabled: true
    config:
      platform: smtp
      host: 127.0.0.1
      port: {port}
      user: {USER}
      pass: {pass}
      from: noreply@example.com
      ca_file: {CA_FILE}  # the demo server's CA, next to this file
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
          body:
            text: "A new access request requires your approval."
            html: "<h2>Access Request</h2><p>A new access request requires your approval.</p>"
"#
    )
}

fn section(title: &str) {
    out!("\n== {title} ==");
}

pub async fn run(args: DemoArgs) -> u8 {
    match demo(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("✗ demo: {e}");
            exit::TEMP_FAIL
        }
    }
}

fn write(path: &std::path::Path, contents: &[u8], private: bool) -> Result<(), String> {
    let written = if private {
        serve::write_private(path, contents)
    } else {
        std::fs::write(path, contents)
    };
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Whether this process runs from a cargo build directory (`cargo run`), not an installed
/// `smtpkit`.
fn run_from_build_dir() -> bool {
    // `cargo run` sets CARGO_MANIFEST_DIR; a binary run from target/ directly is one too.
    std::env::var_os("CARGO_MANIFEST_DIR").is_some()
        || std::env::current_exe().is_ok_and(|exe| {
            exe.components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with("target"))
        })
}

async fn demo(args: DemoArgs) -> Result<u8, String> {
    let temp =
        tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let dir = match &args.keep {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            d.clone()
        }
        None => temp.path().to_path_buf(),
    };
    let ca = LocalCa::generate(&["127.0.0.1".into(), "localhost".into()])?;
    write(&dir.join(CA_FILE), ca.ca_pem.as_bytes(), false)?;
    write(&dir.join(CERT_FILE), ca.cert_pem.as_bytes(), false)?;
    write(&dir.join(KEY_FILE), ca.key_pem.expose().as_bytes(), true)?;
    // Letters and digits only: the password goes into YAML as a plain scalar.
    let password: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(20)
        .collect();

    let mut server_config = ServerConfig::new(
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        dir.clone(),
    );
    server_config.tls = Some(ca.server_config);
    server_config.auth = Some((USER.into(), Secret::new(password.as_str())));
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel::<StoredMessage>();
    let hook = Arc::new(move |m: &StoredMessage| {
        let _ = stored_tx.send(m.clone());
    });
    let server = Server::bind_with(server_config, Some(hook))
        .await
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let listen = server.local_addr();
    let port = listen.port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run_until(async {
        let _ = stop_rx.await;
    }));
    // What `smtpkit serve --dir DIR` needs to answer as this server does.
    let kept = KeptSettings {
        listen,
        tls: Some(format!("{CERT_FILE},{KEY_FILE}")),
        implicit_tls: false,
        auth: Some(format!("{USER}:{password}")),
    };
    let kept = serde_json::to_string_pretty(&kept).map_err(|e| e.to_string())?;
    write(&dir.join(KEPT_SETTINGS), kept.as_bytes(), true)?;
    out!("smtpkit demo: a local SMTP server on 127.0.0.1:{port} (STARTTLS, AUTH), a CA made for this run,");
    out!("and the spec's basic configuration and access-approval workflow pointed at it.");

    let config_path = dir.join("smtpkit.yaml");
    write(&config_path, config_yaml(port, &password).as_bytes(), true)?;
    section(&format!("configuration ({})", config_path.display()));
    out_raw!("{}", config_yaml(port, PASSWORD_SHOWN));

    // Read back as any command reads it: `ca_file` relative to the file, no environment.
    let config = Config::from_file(&config_path).map_err(|e| e.to_string())?;
    let (transcript, lines) = Transcript::buffer();
    let table =
        RouteTable::build(&config, &["email"], Some(transcript)).map_err(|e| e.to_string())?;
    let mut code = exit::OK;
    let mut delivered = 0;
    for workflow in &config.workflows {
        for step in &workflow.steps {
            let WorkflowStep::Email(email) = step else {
                continue;
            };
            let ids: Vec<&str> = email.providers.iter().map(String::as_str).collect();
            let mailer = table.mailer(&ids).map_err(|e| e.to_string())?;
            let result = mailer.send(&email.notification()).await;
            mailer.close().await;
            section(&format!(
                "transcript of workflow {} (secrets redacted)",
                workflow.name
            ));
            for line in lines.lines() {
                out!("{line}");
            }
            section("delivery report");
            match result {
                Ok(report) => {
                    delivered += 1;
                    let pretty = serde_json::to_string_pretty(&output::report_json(&report))
                        .unwrap_or_default();
                    out!("{pretty}");
                    code = exit::worst(code, output::report_exit(&report));
                }
                Err(err) => {
                    output::print_error(mailer.provider(), &err);
                    code = exit::worst(code, exit::for_error(&err.error));
                }
            }
        }
    }
    for _ in 0..delivered {
        let stored = tokio::time::timeout(Duration::from_secs(10), stored_rx.recv())
            .await
            .map_err(|_| "the server did not store the message within 10 s".to_owned())?
            .ok_or("the server stopped")?;
        section("the server's log line (what `smtpkit serve` prints per message)");
        out!("{}", super::serve::message_line(&stored));
        section(&format!("stored message {}", stored.path.display()));
        let content = std::fs::read(&stored.path)
            .map_err(|e| format!("cannot read {}: {e}", stored.path.display()))?;
        out!(
            "{}",
            String::from_utf8_lossy(&content)
                .replace("\r\n", "\n")
                .trim_end()
        );
    }
    let _ = stop_tx.send(());
    let _ = server_task.await;
    if code != exit::OK {
        return Ok(code);
    }
    out!("\n✓ demo: the access-approval notification was delivered over STARTTLS with AUTH and stored.");
    if run_from_build_dir() {
        out!("  (`cargo install --path .` in the clone puts `smtpkit` on your PATH for what follows)");
    }
    let first_step = match &args.keep {
        Some(d) => {
            let d = d.display();
            out!("  kept in {d}: smtpkit.yaml (with this run's password, mode 0600), the CA, the server's");
            out!("  certificate and settings, the message. `smtpkit serve --dir {d}` answers again on port {port},");
            out!("  then `smtpkit notify --config {d}/smtpkit.yaml` sends the workflow to it.");
            format!("copy {d}/smtpkit.yaml to smtpkit.yaml")
        }
        None => {
            out!("  (`smtpkit demo --keep DIR` keeps the files, and `smtpkit serve --dir DIR` serves them again)");
            "save the configuration above as smtpkit.yaml".to_owned()
        }
    };
    out!("\nTo send through your own provider:");
    out!("  1. {first_step}; in it set host, port (587 STARTTLS, 465 implicit TLS), user, pass (better: ${{SMTP_PASSWORD}}) and from to your provider's; delete ca_file");
    out!("  2. `smtpkit check --config smtpkit.yaml` walks connect, TLS, EHLO and AUTH, with a hint for each failure");
    out!("  3. `smtpkit notify --config smtpkit.yaml` runs the workflow; `smtpkit send` sends one message");
    Ok(code)
}
