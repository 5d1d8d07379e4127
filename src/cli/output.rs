//! How results are shown: one line per fact for people, one JSON object for programs.
//!
//! One convention for every command: results go to stdout; progress, attempt lines,
//! transcripts and diagnostics (errors and their hints) go to stderr. `--json` changes stdout
//! only: it then carries exactly one JSON object, on success and on failure alike (with
//! `ok`, `exit_code` and, on failure, an `error` with `kind`, `stage`, `message` and `hint`),
//! while stderr shows the same progress and diagnostics as without it.

use std::fmt::Display;

use serde_json::{json, Value};
use smtpkit::client::{Direction, Transcript};
use smtpkit::delivery::{DeliveryError, DeliveryReport, RecipientStatus, ReplySummary};

use super::exit;

/// A transcript that prints each line to stderr as it happens.
pub fn stderr_transcript() -> Transcript {
    Transcript::new(|direction: Direction, line: &str| eprintln!("{} {line}", direction.prefix()))
}

/// Prints one JSON value as one line on stdout.
pub fn print_json(value: &Value) {
    out!("{value}");
}

/// A failure that is not a delivery's: a configuration error, bad input, a usage error.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Machine-readable kind: `config`, `usage`, `invalid_input`, `connect`, `io`.
    pub kind: &'static str,
    /// Where it happened: `config`, `arguments`, `input`, `connect`…
    pub stage: &'static str,
    /// What went wrong, in one line.
    pub message: String,
    /// What to do about it, when there is advice.
    pub hint: Option<String>,
    /// The dotted path of the offending configuration key, for configuration errors.
    pub path: Option<String>,
    /// The process exit code this failure ends with.
    pub exit_code: u8,
}

impl Failure {
    pub fn new(
        kind: &'static str,
        stage: &'static str,
        message: impl Display,
        exit_code: u8,
    ) -> Failure {
        Failure {
            kind,
            stage,
            message: message.to_string(),
            hint: None,
            path: None,
            exit_code,
        }
    }

    /// A configuration error (exit 78), printed as `✗ configuration: …`.
    pub fn config(message: impl Display) -> Failure {
        Failure::new("config", "config", message, exit::CONFIG)
    }

    /// A configuration error from the provider's loader, keeping the key's path.
    pub fn config_error(e: &smtpkit::provider::ConfigError) -> Failure {
        let mut f = Failure::config(e);
        f.path = (!e.path().is_empty()).then(|| e.path().to_owned());
        f
    }

    pub fn with_hint(mut self, hint: impl Display) -> Failure {
        self.hint = Some(hint.to_string());
        self
    }

    /// The `error` member of a JSON object.
    pub fn error_value(&self) -> Value {
        let mut error = json!({
            "kind": self.kind,
            "stage": self.stage,
            "message": self.message,
            "hint": self.hint,
        });
        if let (Some(path), Value::Object(map)) = (&self.path, &mut error) {
            map.insert("path".into(), Value::String(path.clone()));
        }
        error
    }

    /// The whole JSON object: `{"ok": false, "exit_code": …, "error": {…}}`.
    pub fn json(&self) -> Value {
        json!({
            "ok": false,
            "exit_code": self.exit_code,
            "error": self.error_value(),
        })
    }

    /// The one-line description people see after `✗ `.
    pub fn line(&self) -> String {
        if self.stage == "config" {
            format!("configuration: {}", self.message)
        } else {
            self.message.clone()
        }
    }

    /// The human form, on stderr.
    pub fn print(&self) {
        eprintln!("✗ {}", self.line());
        if let Some(hint) = &self.hint {
            eprintln!("  hint: {hint}");
        }
    }

    /// Shows the failure (stderr always; with `json`, also one object on stdout) and returns
    /// its exit code.
    pub fn report(&self, json: bool) -> u8 {
        self.print();
        if json {
            print_json(&self.json());
        }
        self.exit_code
    }
}

pub fn report_json(report: &DeliveryReport) -> Value {
    let mut value = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("ok".into(), Value::Bool(true));
        map.insert("exit_code".into(), report_exit(report).into());
    }
    value
}

pub fn error_json(provider: &str, failure: &DeliveryError) -> Value {
    let err = &failure.error;
    json!({
        "ok": false,
        "exit_code": exit::for_error(err),
        "provider": provider,
        "message_id": failure.message_id,
        "error": {
            "kind": err.kind().as_str(),
            "stage": err.stage().as_str(),
            "message": err.to_string(),
            "reply": err.reply().map(ReplySummary::from),
            "transient": err.is_transient(),
            "outcome_unknown": err.is_outcome_unknown(),
            "hint": err.hint(),
        },
        "recipients": failure.recipients,
        "attempts": failure.attempts,
        "duration_ms": failure.duration.as_millis() as u64,
    })
}

fn status_line(r: &RecipientStatus) -> String {
    match &r.reply {
        Some(reply) => reply_line(reply),
        None => "not tried (an earlier step failed)".into(),
    }
}

/// The result of a delivery, on stdout (its attempts, if several, go to stderr first).
pub fn print_report(report: &DeliveryReport) {
    print_report_diagnostics(report);
    let accepted = report.recipients.iter().filter(|r| r.accepted).count();
    out!(
        "✓ sent via {} to {accepted} of {} recipient(s) in {} ms",
        report.provider,
        report.recipients.len(),
        report.duration.as_millis()
    );
    out!("  message id: <{}>", report.message_id);
    out!("  server:     {}", reply_line(&report.final_reply));
    if let Some(id) = &report.queue_id {
        out!("  queue id:   {id}");
    }
    for r in report.rejected() {
        out!("✗ {} refused: {}", r.address, status_line(r));
    }
}

/// What a successful delivery has to say on stderr: its attempts, when there were several.
pub fn print_report_diagnostics(report: &DeliveryReport) {
    if report.attempts.len() > 1 {
        print_attempts(&report.attempts);
    }
}

/// Attempt lines are diagnostics: stderr.
fn print_attempts(attempts: &[smtpkit::delivery::Attempt]) {
    for a in attempts {
        eprintln!(
            "  attempt {} via {}: {} ({})",
            a.number, a.provider, a.result, a.detail
        );
    }
}

/// A failed delivery, on stderr: the error, its attempts, the refused recipients, the hint.
pub fn print_error(provider: &str, failure: &DeliveryError) {
    let err = &failure.error;
    eprintln!("✗ {provider}: {failure}");
    if failure.attempts.len() > 1 {
        print_attempts(&failure.attempts);
    }
    for r in failure
        .recipients
        .iter()
        .filter(|r| !r.accepted && r.reply.is_some())
    {
        eprintln!("  {} refused: {}", r.address, status_line(r));
    }
    if let Some(hint) = err.hint() {
        eprintln!("  hint: {hint}");
    }
}

pub fn reply_line(r: &ReplySummary) -> String {
    match &r.enhanced_code {
        Some(e) => format!("{} {e} {}", r.code, r.text),
        None => format!("{} {}", r.code, r.text),
    }
}

/// Exit code of a delivery: 0 when every recipient got it, else the worst refusal's code.
pub fn report_exit(report: &DeliveryReport) -> u8 {
    report
        .rejected()
        .map(|r| match &r.reply {
            Some(reply) if reply.code >= 500 => exit::UNAVAILABLE,
            _ => exit::TEMP_FAIL,
        })
        .fold(exit::OK, exit::worst)
}
