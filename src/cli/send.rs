//! `smtpkit send`: one message through one provider.

use std::path::PathBuf;

use clap::Args;
use smtpkit::message::{Attachment, Mailbox, Notification};
use smtpkit::provider::{Config, Mailer};

use super::output::{self, Failure};
use super::progress::{self, Progress};
use super::{exit, outbox_access};

/// Send one message.
#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("recipients")
        .args(["to", "cc", "bcc"])
        .required(true)
        .multiple(true)
))]
#[command(group(
    clap::ArgGroup::new("body")
        .args(["text", "text_file", "html", "html_file", "attach"])
        .required(true)
        .multiple(true)
))]
#[command(after_help = "Examples:
  smtpkit send --config smtpkit.yaml --to approver@example.com \\
      --subject \"Access Request Approval Required\" \\
      --text \"A new access request requires your approval.\"
  smtpkit send --config smtpkit.yaml --provider email-gmail --to a@example.com --cc b@example.com \\
      --subject Report --html-file report.html --attach report.csv --json")]
pub struct SendArgs {
    /// Configuration file(s) in the provider YAML format.
    #[arg(long, required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Provider to use (default: the only enabled one).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Sender (default: the provider's `from`).
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// Recipient(s). At least one of --to, --cc and --bcc is required.
    #[arg(long, value_name = "ADDR", num_args = 1..)]
    pub to: Vec<String>,
    /// Copy recipient(s).
    #[arg(long, value_name = "ADDR", num_args = 1..)]
    pub cc: Vec<String>,
    /// Hidden recipient(s): in the envelope, never in the headers. With no --to or --cc the
    /// message says `To: undisclosed-recipients:;`.
    #[arg(long, value_name = "ADDR", num_args = 1..)]
    pub bcc: Vec<String>,
    /// Subject line.
    #[arg(long)]
    pub subject: String,
    /// Plain-text body.
    #[arg(long, conflicts_with = "text_file")]
    pub text: Option<String>,
    /// Plain-text body from a file.
    #[arg(long, value_name = "F")]
    pub text_file: Option<PathBuf>,
    /// HTML body.
    #[arg(long, conflicts_with = "html_file")]
    pub html: Option<String>,
    /// HTML body from a file.
    #[arg(long, value_name = "F")]
    pub html_file: Option<PathBuf>,
    /// File(s) to attach.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub attach: Vec<PathBuf>,
    /// Print exactly one JSON object on stdout, on success and on failure (progress and
    /// diagnostics still go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Print the SMTP conversation to stderr (secrets redacted).
    #[arg(long)]
    pub transcript: bool,
    /// Store the message in the outbox (durably) for `smtpkit worker` instead of sending now;
    /// prints its id.
    #[arg(long)]
    pub queue: bool,
    /// With --queue: a key that makes queueing the same message twice store it once (the
    /// second run prints the first one's id).
    #[arg(long, value_name = "KEY", requires = "queue")]
    pub idempotency_key: Option<String>,
    /// With --queue: the outbox database, overriding `outbox.url`.
    #[arg(long, value_name = "URL", requires = "queue")]
    pub outbox: Option<String>,
}

fn mailboxes(flag: &str, values: &[String]) -> Result<Vec<Mailbox>, String> {
    values
        .iter()
        .map(|v| v.parse::<Mailbox>().map_err(|e| format!("--{flag}: {e}")))
        .collect()
}

fn read_text(flag: &str, path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("--{flag} {}: {e}", path.display()))
}

fn notification(args: &SendArgs) -> Result<Notification, String> {
    let text = match (&args.text, &args.text_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(read_text("text-file", f)?),
        _ => None,
    };
    let html = match (&args.html, &args.html_file) {
        (Some(h), _) => Some(h.clone()),
        (None, Some(f)) => Some(read_text("html-file", f)?),
        _ => None,
    };
    let attachments = args
        .attach
        .iter()
        .map(|p| Attachment::from_file(p).map_err(|e| format!("--attach {}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Notification {
        from: args
            .from
            .as_ref()
            .map(|f| f.parse().map_err(|e| format!("--from: {e}")))
            .transpose()?,
        to: mailboxes("to", &args.to)?,
        cc: mailboxes("cc", &args.cc)?,
        bcc: mailboxes("bcc", &args.bcc)?,
        reply_to: None,
        subject: args.subject.clone(),
        text,
        html,
        attachments,
    })
}

pub async fn run(args: SendArgs) -> u8 {
    let config = match Config::from_files(&args.config) {
        Ok(c) => c,
        Err(e) => return Failure::config_error(&e).report(args.json),
    };
    let target = config
        .provider(args.provider.as_deref())
        .map(|p| format!("{}:{}", p.smtp.host, p.smtp.port))
        .unwrap_or_else(|_| "the server".into());
    let progress = Progress::new(&target);
    let transcript = Some(progress.transcript(args.transcript));
    let mailer = match Mailer::with_options(&config, args.provider.as_deref(), transcript) {
        Ok(m) => m,
        Err(e) => return Failure::config_error(&e).report(args.json),
    };
    if args.subject.trim().is_empty() {
        eprintln!("warning: the subject is empty: the message is sent without one");
    }
    let notification = match notification(&args) {
        Ok(n) => n,
        Err(e) => {
            return Failure::new("invalid_input", "input", e, exit::DATA_ERR).report(args.json)
        }
    };
    if args.queue {
        return queue(&config, &mailer, &notification, &args).await;
    }
    let ticker = tokio::spawn(progress.clone().tick());
    let sent = tokio::select! {
        sent = mailer.send(&notification) => sent,
        _ = tokio::signal::ctrl_c() => {
            ticker.abort();
            return progress::interrupted(&progress, args.json);
        }
    };
    ticker.abort();
    let code = match sent {
        Ok(report) => {
            if args.json {
                output::print_report_diagnostics(&report);
                output::print_json(&output::report_json(&report));
            } else {
                output::print_report(&report);
            }
            // Delivered to some, refused for others: the refusals decide the exit code.
            output::report_exit(&report)
        }
        Err(err) => {
            // The diagnosis goes to stderr either way; with --json stdout carries the object.
            output::print_error(mailer.provider(), &err);
            if args.json {
                output::print_json(&output::error_json(mailer.provider(), &err));
            }
            exit::for_error(&err.error)
        }
    };
    // QUIT the pooled session politely.
    mailer.close().await;
    code
}

/// `--queue`: the message built as the provider would send it, stored in the outbox.
async fn queue(
    config: &Config,
    mailer: &Mailer,
    notification: &Notification,
    args: &SendArgs,
) -> u8 {
    let path = format!("providers.{}.config", mailer.provider());
    let built = match mailer
        .settings()
        .check_ready(&path)
        .map_err(|e| Failure::config_error(&e))
        .and_then(|from| {
            notification
                .build(&from)
                .map_err(|e| Failure::new("invalid_input", "message", e, exit::DATA_ERR))
        }) {
        Ok(b) => b,
        Err(f) => return f.report(args.json),
    };
    let outbox = match outbox_access::open(config, args.outbox.as_deref()).await {
        Ok(o) => o,
        Err(f) => return f.report(args.json),
    };
    let entry =
        outbox_access::new_message(&[mailer.provider()], &built, args.idempotency_key.clone());
    match outbox.enqueue(entry).await {
        Ok(queued) => {
            if args.json {
                output::print_json(&serde_json::json!({
                    "ok": true,
                    "exit_code": exit::OK,
                    "queued": [outbox_access::queued_json(&queued)],
                }));
            } else {
                out!("{}", outbox_access::queued_line(&queued));
            }
            exit::OK
        }
        Err(e) => outbox_access::failure(&e).report(args.json),
    }
}
