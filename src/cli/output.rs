//! How results are shown: one line per fact for people, one JSON object for programs.

use serde_json::{json, Value};
use smtpkit::client::{Direction, Transcript};
use smtpkit::delivery::{DeliveryError, DeliveryReport, RecipientStatus, ReplySummary};

use super::exit;

/// A transcript that prints each line to stderr as it happens.
pub fn stderr_transcript() -> Transcript {
    Transcript::new(|direction: Direction, line: &str| eprintln!("{} {line}", direction.prefix()))
}

pub fn report_json(report: &DeliveryReport) -> Value {
    let mut value = serde_json::to_value(report).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("ok".into(), Value::Bool(true));
    }
    value
}

pub fn error_json(provider: &str, failure: &DeliveryError) -> Value {
    let err = &failure.error;
    json!({
        "ok": false,
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

pub fn print_report(report: &DeliveryReport) {
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
    if report.attempts.len() > 1 {
        print_attempts(&report.attempts);
    }
    for r in report.rejected() {
        out!("✗ {} refused: {}", r.address, status_line(r));
    }
}

fn print_attempts(attempts: &[smtpkit::delivery::Attempt]) {
    for a in attempts {
        out!(
            "  attempt {} via {}: {} ({})",
            a.number,
            a.provider,
            a.result,
            a.detail
        );
    }
}

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
