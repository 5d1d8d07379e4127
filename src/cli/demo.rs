//! `smtpkit demo`: the whole job on one machine, with no mail account.
//!
//! Starts the local server on loopback (STARTTLS with a CA made for this run, AUTH), writes the
//! spec's basic configuration pointed at it (trusting the run's CA with `ca_file`, not
//! `tls_skip_verify`), runs the spec's `access-approval` workflow, and shows the transcript,
//! the delivery report and the stored message.

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

/// Show the whole job: a local server, the spec's configuration and workflow, a delivered message.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the stored message and configuration in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<std::path::PathBuf>,
}

const PASSWORD_VAR: &str = "SMTPKIT_DEMO_PASSWORD";

fn config_yaml(port: u16, ca_file: &str) -> String {
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
      user: demo
      pass: ${{{PASSWORD_VAR}}}
      from: noreply@example.com
      ca_file: {ca_file}
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
    let ca_path = dir.join("demo-ca.pem");
    std::fs::write(&ca_path, &ca.ca_pem)
        .map_err(|e| format!("cannot write {}: {e}", ca_path.display()))?;
    let password: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(20)
        .collect();

    let mut server_config = ServerConfig::new(
        "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?,
        dir.join("mail"),
    );
    server_config.tls = Some(ca.server_config);
    server_config.auth = Some(("demo".into(), Secret::new(password.as_str())));
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel::<StoredMessage>();
    let hook = Arc::new(move |m: &StoredMessage| {
        let _ = stored_tx.send(m.clone());
    });
    let server = Server::bind_with(server_config, Some(hook))
        .await
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let port = server.local_addr().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server.run_until(async {
        let _ = stop_rx.await;
    }));
    out!("smtpkit demo: a local SMTP server on 127.0.0.1:{port} (STARTTLS, AUTH), a CA made for this run,");
    out!("and the spec's basic configuration and access-approval workflow pointed at it.");

    let yaml = config_yaml(port, &ca_path.display().to_string());
    let config_path = dir.join("smtpkit.yaml");
    std::fs::write(&config_path, &yaml)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    section(&format!("configuration ({})", config_path.display()));
    out_raw!("{yaml}");
    out!("# {PASSWORD_VAR} holds this run's password; it is never printed.");

    let env = move |name: &str| (name == PASSWORD_VAR).then(|| password.clone());
    let config = Config::from_yaml_str_with_env(&yaml, &env).map_err(|e| e.to_string())?;
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
        section(&format!("stored message {}", stored.path.display()));
        out!("{}", super::serve::message_line(&stored));
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
    if code == exit::OK {
        out!("\n✓ demo: the access-approval notification was delivered over STARTTLS with AUTH and stored.");
        if args.keep.is_none() {
            out!("  (run `smtpkit demo --keep DIR` to keep the files; `smtpkit serve` runs the server alone)");
        }
    }
    Ok(code)
}
