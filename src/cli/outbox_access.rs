//! Opening the outbox for a command (`--outbox URL` over `outbox.url` over the default next
//! to the first config file), its errors as exit codes, and queueing a built message.

use serde_json::{json, Value};
use smtpkit::message::BuiltMessage;
use smtpkit::outbox::{Enqueued, NewMessage, Outbox, OutboxError};
use smtpkit::provider::Config;

use super::output::Failure;

/// An outbox error as a command failure, with [`OutboxError::exit_code`]: a URL that cannot
/// be opened or a damaged database is configuration (78), a message id that does not exist
/// 66, bad input 65, a busy database or another database error temporary (75).
pub fn failure(e: &OutboxError) -> Failure {
    let kind = match e {
        OutboxError::Open { .. } | OutboxError::Corrupt { .. } => "config",
        OutboxError::Busy => "busy",
        OutboxError::NotFound(_) => "not_found",
        OutboxError::Invalid { .. } => "invalid_input",
        OutboxError::Leased(_) | OutboxError::LeaseLost(_) => "leased",
        _ => "io",
    };
    let f = Failure::new(kind, "outbox", format!("outbox: {e}"), e.exit_code());
    match e {
        OutboxError::Busy => {
            f.with_hint("Another process holds the outbox database locked; try again in a moment.")
        }
        OutboxError::Leased(_) => {
            f.with_hint("A worker is sending it now; try again when it is done.")
        }
        _ => f,
    }
}

/// Opens the outbox `config` names, `url` (from `--outbox`) taking precedence.
pub async fn open(config: &Config, url: Option<&str>) -> Result<Outbox, Failure> {
    let mut settings = config.outbox_settings();
    if let Some(url) = url {
        settings.url = url.to_owned();
    }
    Outbox::open(&settings).await.map_err(|e| failure(&e))
}

/// A built message as an outbox entry for `providers` (the first, then the rest in order,
/// each with its fallbacks).
pub fn new_message(
    providers: &[&str],
    built: &BuiltMessage,
    idempotency_key: Option<String>,
) -> NewMessage {
    NewMessage::from_built(providers.join(","), built, idempotency_key)
}

/// One queued entry as a line and as JSON.
pub fn queued_line(e: &Enqueued) -> String {
    let again = if e.existing { " (already queued)" } else { "" };
    format!(
        "queued {} <{}> via {}{again}",
        e.id, e.message_id, e.provider
    )
}

pub fn queued_json(e: &Enqueued) -> Value {
    json!({
        "id": e.id.0,
        "message_id": e.message_id,
        "provider": e.provider,
        "existing": e.existing,
    })
}
