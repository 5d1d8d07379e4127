//! Reading messages and recipients out of PostgreSQL rows (the columns of the SQLite schema,
//! with the types of `migrations/postgres`).

use std::collections::HashMap;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::Row;

use super::errors::db_error;
use crate::outbox::error::OutboxError;
use crate::outbox::record::{
    from_unix_ms, OutboxId, QueuedMessage, RecipientRecord, RecipientState, State,
};

/// The columns [`message`] reads, for `SELECT {MESSAGE_COLUMNS} FROM messages`.
pub(super) const MESSAGE_COLUMNS: &str = "id, provider, message_id, mail_from, idempotency_key, \
     size, state, attempts, created_at, next_attempt_at, lease_owner, lease_until, last_reply";

/// A message row (without recipients, which [`attach_recipients`] adds).
pub(super) fn message(row: &PgRow) -> Result<QueuedMessage, OutboxError> {
    let state: String = row.try_get("state").map_err(db_error)?;
    let state = state.parse::<State>().map_err(corrupt)?;
    let time = |col: &str| -> Result<Option<std::time::SystemTime>, OutboxError> {
        Ok(row
            .try_get::<Option<i64>, _>(col)
            .map_err(db_error)?
            .map(from_unix_ms))
    };
    Ok(QueuedMessage {
        id: OutboxId(row.try_get("id").map_err(db_error)?),
        provider: row.try_get("provider").map_err(db_error)?,
        message_id: row.try_get("message_id").map_err(db_error)?,
        mail_from: row.try_get("mail_from").map_err(db_error)?,
        recipients: Vec::new(),
        state,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(db_error)?)
            .unwrap_or(u32::MAX),
        created_at: from_unix_ms(row.try_get("created_at").map_err(db_error)?),
        next_attempt_at: time("next_attempt_at")?,
        last_reply: row.try_get("last_reply").map_err(db_error)?,
        lease_owner: row.try_get("lease_owner").map_err(db_error)?,
        lease_until: time("lease_until")?,
        size: u64::try_from(row.try_get::<i64, _>("size").map_err(db_error)?).unwrap_or(0),
        idempotency_key: row.try_get("idempotency_key").map_err(db_error)?,
    })
}

/// Fills in the recipients of `messages`, in their order (one query).
pub(super) async fn attach_recipients(
    conn: &mut PgConnection,
    messages: &mut [QueuedMessage],
) -> Result<(), OutboxError> {
    if messages.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = messages.iter().map(|m| m.id.0).collect();
    let rows = sqlx::query(
        "SELECT message, address, state, reply FROM recipients WHERE message = ANY($1) \
         ORDER BY message, position",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut by_id: HashMap<i64, Vec<RecipientRecord>> = HashMap::new();
    for row in &rows {
        let message: i64 = row.try_get("message").map_err(db_error)?;
        by_id.entry(message).or_default().push(recipient(row)?);
    }
    for m in messages.iter_mut() {
        m.recipients = by_id.remove(&m.id.0).unwrap_or_default();
    }
    Ok(())
}

/// The recipients of one message, in order.
pub(super) async fn recipients(
    conn: &mut PgConnection,
    id: OutboxId,
) -> Result<Vec<RecipientRecord>, OutboxError> {
    sqlx::query("SELECT address, state, reply FROM recipients WHERE message = $1 ORDER BY position")
        .bind(id.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?
        .iter()
        .map(recipient)
        .collect()
}

pub(super) fn recipient(row: &PgRow) -> Result<RecipientRecord, OutboxError> {
    let state: String = row.try_get("state").map_err(db_error)?;
    Ok(RecipientRecord {
        address: row.try_get("address").map_err(db_error)?,
        state: state.parse::<RecipientState>().map_err(corrupt)?,
        reply: row.try_get("reply").map_err(db_error)?,
    })
}

pub(super) fn corrupt(reason: String) -> OutboxError {
    OutboxError::Corrupt { reason }
}
