//! How results are shown: one line per fact for people, one JSON object for programs.

use serde_json::{json, Value};
use smtpkit::client::{Direction, Transcript};
use smtpkit::delivery::{DeliveryReport, RecipientStatus, ReplySummary};
use smtpkit::Error;

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

pub fn error_json(provider: &str, err: &Error) -> Value {
    json!({
        "ok": false,
        "provider": provider,
        "error": {
            "kind": err.kind().as_str(),
            "stage": err.stage().as_str(),
            "message": err.to_string(),
            "reply": err.reply().map(ReplySummary::from),
            "transient": err.is_transient(),
            "outcome_unknown": err.is_outcome_unknown(),
            "hint": err.hint(),
        },
        "recipients": err.recipients().iter().map(RecipientStatus::from).collect::<Vec<_>>(),
    })
}

pub fn print_report(report: &DeliveryReport) {
    let accepted = report.recipients.iter().filter(|r| r.accepted).count();
    println!(
        "✓ sent via {} to {accepted} of {} recipient(s) in {} ms",
        report.provider,
        report.recipients.len(),
        report.duration.as_millis()
    );
    println!("  message id: <{}>", report.message_id);
    println!("  server:     {}", reply_line(&report.final_reply));
    if let Some(id) = &report.queue_id {
        println!("  queue id:   {id}");
    }
    for r in report.rejected() {
        println!("✗ {} refused: {}", r.address, reply_line(&r.reply));
    }
}

pub fn print_error(provider: &str, err: &Error) {
    eprintln!("✗ {provider}: {err}");
    for r in err.recipients().iter().filter(|r| !r.accepted()) {
        eprintln!("  {} refused: {}", r.address, r.reply);
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
