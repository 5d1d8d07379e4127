//! `smtpkit notify`: run the `task: notify`, `type: email` steps of the workflows.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use smtpkit::message::Notification;
use smtpkit::provider::{Config, EmailStep, Mailer, WorkflowStep};

use super::exit;
use super::output;

/// Run the email notification steps of the workflows.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  smtpkit notify --config smtpkit.yaml
  smtpkit notify --config providers.yaml --config workflows.yaml --workflow access-approval --json")]
pub struct NotifyArgs {
    /// Configuration file(s): providers and workflows, in one file or several.
    #[arg(long, required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Only this workflow (default: all).
    #[arg(long, value_name = "NAME")]
    pub workflow: Option<String>,
    /// Print one JSON object with every step's result.
    #[arg(long)]
    pub json: bool,
    /// Print the SMTP conversation to stderr (secrets redacted).
    #[arg(long)]
    pub transcript: bool,
}

fn notification(step: &EmailStep) -> Notification {
    Notification {
        from: step.from.clone(),
        to: step.to.clone(),
        cc: step.cc.clone(),
        bcc: step.bcc.clone(),
        reply_to: None,
        subject: step.subject.clone(),
        text: step.text.clone(),
        html: step.html.clone(),
        attachments: Vec::new(),
    }
}

/// Sends one step through its providers in order; the next is tried only after a transient failure.
async fn run_step(config: &Config, step: &EmailStep, transcript: bool) -> (u8, Value) {
    let message = notification(step);
    let mut attempts = Vec::new();
    let mut code = exit::OK;
    for provider in &step.providers {
        let mailer = match Mailer::new(config, Some(provider)) {
            Ok(m) => m,
            Err(e) => {
                let msg = format!("{}.config.provider: {e}", step.path);
                eprintln!("    ✗ {msg}");
                attempts.push(json!({"provider": provider, "ok": false, "error": {"kind": "config", "message": msg}}));
                code = exit::CONFIG;
                break;
            }
        };
        let mailer = if transcript {
            mailer.with_transcript(output::stderr_transcript())
        } else {
            mailer
        };
        match mailer.send(&message).await {
            Ok(report) => {
                println!(
                    "    ✓ sent via {provider}: {} ({} ms)",
                    output::reply_line(&report.final_reply),
                    report.duration.as_millis()
                );
                for r in report.rejected() {
                    println!(
                        "    ✗ {} refused: {}",
                        r.address,
                        output::reply_line(&r.reply)
                    );
                }
                code = report
                    .rejected()
                    .map(|r| {
                        if r.reply.code >= 500 {
                            exit::UNAVAILABLE
                        } else {
                            exit::TEMP_FAIL
                        }
                    })
                    .fold(exit::OK, exit::worst);
                attempts.push(output::report_json(&report));
                return (
                    code,
                    json!({"status": "sent", "path": step.path, "attempts": attempts}),
                );
            }
            Err(err) => {
                output::print_error(provider, &err);
                attempts.push(output::error_json(provider, &err));
                code = exit::for_error(&err);
                if !err.is_transient() {
                    break;
                }
            }
        }
    }
    (
        code,
        json!({"status": "failed", "path": step.path, "attempts": attempts}),
    )
}

pub async fn run(args: NotifyArgs) -> u8 {
    let config = match Config::from_files(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("✗ configuration: {e}");
            return exit::CONFIG;
        }
    };
    let workflows: Vec<_> = config
        .workflows
        .iter()
        .filter(|w| args.workflow.as_ref().is_none_or(|n| &w.name == n))
        .collect();
    if workflows.is_empty() {
        let names: Vec<&str> = config.workflows.iter().map(|w| w.name.as_str()).collect();
        match &args.workflow {
            Some(n) => eprintln!(
                "✗ no workflow named {n:?}; configured: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
            None => eprintln!("✗ the configuration has no workflows"),
        }
        return exit::CONFIG;
    }
    let mut code = exit::OK;
    let mut results = Vec::new();
    for workflow in workflows {
        println!("workflow {}", workflow.name);
        let mut steps = Vec::new();
        for (i, step) in workflow.steps.iter().enumerate() {
            match step {
                WorkflowStep::Email(email) => {
                    let to: Vec<String> = email.to.iter().map(ToString::to_string).collect();
                    println!(
                        "  step {}: email {:?} to {}",
                        i + 1,
                        email.subject,
                        to.join(", ")
                    );
                    let (step_code, value) = run_step(&config, email, args.transcript).await;
                    code = exit::worst(code, step_code);
                    steps.push(value);
                }
                WorkflowStep::Skipped { task, kind } => {
                    println!("  step {}: skipped (task {task:?}, type {kind:?} is not an email notification)", i + 1);
                    steps.push(json!({"status": "skipped", "task": task, "type": kind}));
                }
            }
        }
        results.push(json!({"name": workflow.name, "steps": steps}));
    }
    if args.json {
        println!("{}", json!({"ok": code == exit::OK, "workflows": results}));
    }
    code
}
