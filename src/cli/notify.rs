//! `smtpkit notify`: run the `task: notify`, `type: email` steps of the workflows.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};
use smtpkit::provider::{Config, EmailStep, RouteTable, WorkflowStep};

use super::output::{self, Failure};
use super::progress::{self, Progress};
use super::{exit, outbox_access};

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
    /// Store every email step's message in the outbox (durably, all or none) for
    /// `smtpkit worker` instead of sending now; prints their ids.
    #[arg(long)]
    pub queue: bool,
    /// With --queue: this run's id. Run id, workflow and step number make each message's
    /// idempotency key: the same run queued again stores nothing new.
    #[arg(long, value_name = "ID", requires = "queue")]
    pub run_id: Option<String>,
    /// With --queue: the outbox database, overriding `outbox.url`.
    #[arg(long, value_name = "URL", requires = "queue")]
    pub outbox: Option<String>,
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
    if args.queue {
        return queue(&config, &workflows, &args).await;
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

/// `--queue`: every email step's message, built as its first provider would send it, stored
/// in one transaction.
async fn queue(
    config: &Config,
    workflows: &[&smtpkit::provider::Workflow],
    args: &NotifyArgs,
) -> u8 {
    let mut entries = Vec::new();
    let mut steps = Vec::new();
    for workflow in workflows {
        for (i, step) in workflow.steps.iter().enumerate() {
            let WorkflowStep::Email(email) = step else {
                continue;
            };
            let ids: Vec<&str> = email.providers.iter().map(String::as_str).collect();
            let Some(first) = ids.first() else {
                let failure = Failure::config(format!("{}: no provider", email.path));
                return fail_early(&failure, args.json);
            };
            let from = match config
                .provider(Some(first))
                .and_then(|p| p.smtp.check_ready(&format!("providers.{}.config", p.id)))
            {
                Ok(from) => from,
                Err(e) => return fail_early(&Failure::config_error(&e), args.json),
            };
            let built = match email.notification().build(&from) {
                Ok(b) => b,
                Err(e) => {
                    let failure = Failure::new(
                        "invalid_input",
                        "message",
                        format!("{} step {}: {e}", workflow.name, i + 1),
                        exit::DATA_ERR,
                    );
                    return fail_early(&failure, args.json);
                }
            };
            let key = args
                .run_id
                .as_ref()
                .map(|run| format!("{run}/{}/{}", workflow.name, i + 1));
            entries.push(outbox_access::new_message(&ids, &built, key));
            steps.push((workflow.name.clone(), i + 1));
        }
    }
    if entries.is_empty() {
        return fail_early(
            &Failure::config("the workflows have no email steps to queue"),
            args.json,
        );
    }
    let outbox = match outbox_access::open(config, args.outbox.as_deref()).await {
        Ok(o) => o,
        Err(f) => return fail_early(&f, args.json),
    };
    match outbox.enqueue_many(entries).await {
        Ok(queued) => {
            if args.json {
                output::print_json(&json!({
                    "ok": true,
                    "exit_code": exit::OK,
                    "queued": queued.iter().map(outbox_access::queued_json).collect::<Vec<_>>(),
                }));
            } else {
                for ((workflow, step), q) in steps.iter().zip(&queued) {
                    out!("{workflow} step {step}: {}", outbox_access::queued_line(q));
                }
            }
            exit::OK
        }
        Err(e) => fail_early(&outbox_access::failure(&e), args.json),
    }
}
