//! `smtpkit notify`: run the `task: notify`, `type: email` steps of the workflows.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use smtpkit::provider::{Config, EmailStep, RouteTable, WorkflowStep};

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

/// Sends one step through its providers (in order, with their fallbacks).
async fn run_step(table: &RouteTable, step: &EmailStep) -> (u8, Value) {
    let ids: Vec<&str> = step.providers.iter().map(String::as_str).collect();
    let mailer = match table.mailer(&ids) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("    ✗ {}.config.provider: {e}", step.path);
            return (
                exit::CONFIG,
                json!({"status": "failed", "path": step.path, "error": e.to_string()}),
            );
        }
    };
    match mailer.send(&step.notification()).await {
        Ok(report) => {
            out!(
                "    ✓ sent via {}: {} ({} ms)",
                report.provider,
                output::reply_line(&report.final_reply),
                report.duration.as_millis()
            );
            for r in report.rejected() {
                let why = r
                    .reply
                    .as_ref()
                    .map_or_else(|| "not tried".to_owned(), output::reply_line);
                out!("    ✗ {} refused: {why}", r.address);
            }
            (
                output::report_exit(&report),
                json!({"status": "sent", "path": step.path, "report": output::report_json(&report)}),
            )
        }
        Err(err) => {
            output::print_error(mailer.provider(), &err);
            (
                exit::for_error(&err.error),
                json!({"status": "failed", "path": step.path, "result": output::error_json(mailer.provider(), &err)}),
            )
        }
    }
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
    // One route per provider for the whole run: every step shares its pool and rate limit.
    let mut ids: Vec<&str> = Vec::new();
    for w in &workflows {
        for step in &w.steps {
            if let WorkflowStep::Email(e) = step {
                for p in &e.providers {
                    if !ids.contains(&p.as_str()) {
                        ids.push(p);
                    }
                }
            }
        }
    }
    let transcript = args.transcript.then(output::stderr_transcript);
    let table = match RouteTable::build(&config, &ids, transcript) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("✗ configuration: {e}");
            return exit::CONFIG;
        }
    };
    let mut code = exit::OK;
    let mut results = Vec::new();
    for workflow in workflows {
        out!("workflow {}", workflow.name);
        let mut steps = Vec::new();
        for (i, step) in workflow.steps.iter().enumerate() {
            match step {
                WorkflowStep::Email(email) => {
                    let to: Vec<String> = email.to.iter().map(ToString::to_string).collect();
                    out!(
                        "  step {}: email {:?} to {}",
                        i + 1,
                        email.subject,
                        to.join(", ")
                    );
                    let (step_code, value) = run_step(&table, email).await;
                    code = exit::worst(code, step_code);
                    steps.push(value);
                }
                WorkflowStep::Skipped { task, kind } => {
                    out!("  step {}: skipped (task {task:?}, type {kind:?} is not an email notification)", i + 1);
                    steps.push(json!({"status": "skipped", "task": task, "type": kind}));
                }
            }
        }
        results.push(json!({"name": workflow.name, "steps": steps}));
    }
    table.close().await;
    if args.json {
        out!("{}", json!({"ok": code == exit::OK, "workflows": results}));
    }
    code
}
