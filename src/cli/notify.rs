//! `smtpkit notify`: run the `task: notify`, `type: email` steps of the workflows.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use smtpkit::provider::{Config, EmailStep, RouteTable, WorkflowStep};

use super::exit;
use super::output::{self, Failure};
use super::progress::{self, Progress};

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
    /// Print exactly one JSON object on stdout with every step's result, on success and on
    /// failure (progress and diagnostics still go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Print the SMTP conversation to stderr (secrets redacted).
    #[arg(long)]
    pub transcript: bool,
}

/// Where a step sits, for the lines people read: `access-approval step 1`.
struct StepName<'a> {
    workflow: &'a str,
    number: usize,
}

impl std::fmt::Display for StepName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} step {}", self.workflow, self.number)
    }
}

/// Sends one step through its providers (in order, with their fallbacks).
///
/// Diagnostics (a failure, its hint, the attempts) go to stderr; the step's result line goes to
/// stdout unless `json`; the returned value is the step's entry in the JSON object.
async fn run_step(
    table: &RouteTable,
    name: &StepName<'_>,
    step: &EmailStep,
    json: bool,
) -> (u8, Value) {
    let ids: Vec<&str> = step.providers.iter().map(String::as_str).collect();
    let mailer = match table.mailer(&ids) {
        Ok(m) => m,
        Err(e) => {
            let failure = Failure::config_error(&e);
            failure.print();
            if !json {
                out!("✗ {name}: not sent: {}", failure.line());
            }
            return (
                failure.exit_code,
                json!({
                    "status": "failed",
                    "step": name.number,
                    "path": step.path,
                    "exit_code": failure.exit_code,
                    "result": failure.json(),
                }),
            );
        }
    };
    match mailer.send(&step.notification()).await {
        Ok(report) => {
            let code = output::report_exit(&report);
            output::print_report_diagnostics(&report);
            if !json {
                out!(
                    "✓ {name}: sent via {} in {} ms: {}",
                    report.provider,
                    report.duration.as_millis(),
                    output::reply_line(&report.final_reply),
                );
                for r in report.rejected() {
                    let why = r
                        .reply
                        .as_ref()
                        .map_or_else(|| "not tried".to_owned(), output::reply_line);
                    out!("  ✗ {} refused: {why}", r.address);
                }
            }
            (
                code,
                json!({
                    "status": "sent",
                    "step": name.number,
                    "path": step.path,
                    "exit_code": code,
                    "report": output::report_json(&report),
                }),
            )
        }
        Err(err) => {
            let code = exit::for_error(&err.error);
            output::print_error(mailer.provider(), &err);
            if !json {
                out!("✗ {name}: not sent via {}: {err}", mailer.provider());
            }
            (
                code,
                json!({
                    "status": "failed",
                    "step": name.number,
                    "path": step.path,
                    "exit_code": code,
                    "result": output::error_json(mailer.provider(), &err),
                }),
            )
        }
    }
}

/// A failure before any step ran: stderr always, and with `json` the one object on stdout.
fn fail_early(failure: &Failure, json: bool) -> u8 {
    failure.print();
    if json {
        let mut value = failure.json();
        if let Value::Object(map) = &mut value {
            map.insert("workflows".into(), Value::Array(Vec::new()));
        }
        output::print_json(&value);
    }
    failure.exit_code
}

pub async fn run(args: NotifyArgs) -> u8 {
    let config = match Config::from_files(&args.config) {
        Ok(c) => c,
        Err(e) => return fail_early(&Failure::config_error(&e), args.json),
    };
    let workflows: Vec<_> = config
        .workflows
        .iter()
        .filter(|w| args.workflow.as_ref().is_none_or(|n| &w.name == n))
        .collect();
    if workflows.is_empty() {
        let names: Vec<&str> = config.workflows.iter().map(|w| w.name.as_str()).collect();
        let message = match &args.workflow {
            Some(n) => format!(
                "no workflow named {n:?}; configured: {}",
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
            None => "the configuration has no workflows".to_owned(),
        };
        let mut failure = Failure::config(message);
        failure.path = Some("workflows".into());
        return fail_early(&failure, args.json);
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
    let progress = Progress::new("the server");
    let transcript = Some(progress.transcript(args.transcript));
    let table = match RouteTable::build(&config, &ids, transcript) {
        Ok(t) => t,
        Err(e) => return fail_early(&Failure::config_error(&e), args.json),
    };
    let ticker = tokio::spawn(progress.clone().tick());
    let work = run_workflows(&table, &workflows, args.json);
    let (code, results) = tokio::select! {
        done = work => done,
        _ = tokio::signal::ctrl_c() => {
            ticker.abort();
            return progress::interrupted(&progress, args.json);
        }
    };
    ticker.abort();
    table.close().await;
    if args.json {
        output::print_json(&json!({
            "ok": code == exit::OK,
            "exit_code": code,
            "workflows": results,
        }));
    }
    code
}

/// Runs every step of `workflows` in order; the worst exit code and each workflow's results.
async fn run_workflows(
    table: &RouteTable,
    workflows: &[&smtpkit::provider::Workflow],
    args_json: bool,
) -> (u8, Vec<Value>) {
    let mut code = exit::OK;
    let mut results = Vec::new();
    for workflow in workflows {
        // Progress: stderr. The steps' results: stdout (or the JSON object).
        eprintln!("workflow {}", workflow.name);
        let mut steps = Vec::new();
        for (i, step) in workflow.steps.iter().enumerate() {
            let name = StepName {
                workflow: &workflow.name,
                number: i + 1,
            };
            match step {
                WorkflowStep::Email(email) => {
                    let to: Vec<String> = email.to.iter().map(ToString::to_string).collect();
                    eprintln!(
                        "  step {}: email {:?} to {}",
                        name.number,
                        email.subject,
                        to.join(", ")
                    );
                    let (step_code, value) = run_step(table, &name, email, args_json).await;
                    code = exit::worst(code, step_code);
                    steps.push(value);
                }
                WorkflowStep::Skipped { task, kind } => {
                    if !args_json {
                        out!("- {name}: skipped (task {task:?}, type {kind:?} is not an email notification)");
                    }
                    steps.push(json!({
                        "status": "skipped",
                        "step": name.number,
                        "task": task,
                        "type": kind,
                        "exit_code": exit::OK,
                    }));
                }
            }
        }
        results.push(json!({"name": workflow.name, "steps": steps}));
    }
    (code, results)
}
