//! Rate-limit grants in SQLite (table `rate_grants`): every worker sharing the file counts
//! against the same windows. The write lock (`BEGIN IMMEDIATE`) serialises the grants.

use std::time::SystemTime;

use sqlx::{Row, SqliteConnection};

use super::errors::db_error;
use super::{begin, ms, SqliteStore, Sync};
use crate::delivery::{PermitAnswer, PermitRequest, Settlement};
use crate::outbox::error::OutboxError;
use crate::outbox::rate_grants::{decide, units_of};
use crate::outbox::record::unix_ms;

impl SqliteStore {
    /// See [`Store::take_permits`](crate::outbox::store::Store::take_permits). Committed
    /// without a sync: a grant lost with power is a batch the crashed machine never used.
    pub(super) async fn take_permits_inner(
        &self,
        request: PermitRequest,
        now: SystemTime,
    ) -> Result<PermitAnswer, OutboxError> {
        let now = unix_ms(now);
        let mut conn = self.writer(Sync::Normal).await?;
        let mut tx = begin(&mut conn).await?;
        if let Some(s) = request.settle {
            settle(&mut tx, &request.provider, s, now).await?;
        }
        let longest = request
            .windows
            .iter()
            .map(|w| ms(w.length))
            .max()
            .unwrap_or(0);
        let since = now.saturating_sub(longest);
        sqlx::query("DELETE FROM rate_grants WHERE provider = ? AND (until <= ? OR units = 0)")
            .bind(&request.provider)
            .bind(since)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let rows = sqlx::query("SELECT until, units FROM rate_grants WHERE provider = ?")
            .bind(&request.provider)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        let grants: Vec<(i64, u32)> = rows
            .iter()
            .map(|r| (r.get::<i64, _>("until"), units_of(r.get::<i64, _>("units"))))
            .collect();
        let answer = match decide(&request, &grants, now) {
            Ok(units) => {
                let grant: i64 = sqlx::query(
                    "INSERT INTO rate_grants (provider, granted_at, until, units) \
                     VALUES (?, ?, ?, ?) RETURNING id",
                )
                .bind(&request.provider)
                .bind(now)
                .bind(now.saturating_add(ms(request.hold)))
                .bind(i64::from(units))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?
                .get("id");
                PermitAnswer::Granted { grant, units }
            }
            Err((wait, window)) => PermitAnswer::Wait { wait, window },
        };
        tx.commit().await.map_err(db_error)?;
        Ok(answer)
    }

    /// See [`Store::settle_permits`](crate::outbox::store::Store::settle_permits).
    pub(super) async fn settle_permits_inner(
        &self,
        provider: String,
        settlement: Settlement,
        now: SystemTime,
    ) -> Result<(), OutboxError> {
        let mut conn = self.writer(Sync::Normal).await?;
        let mut tx = begin(&mut conn).await?;
        settle(&mut tx, &provider, settlement, unix_ms(now)).await?;
        tx.commit().await.map_err(db_error)
    }
}

/// Lowers a grant to the units used and ends it at `now` (never later than it would have).
async fn settle(
    conn: &mut SqliteConnection,
    provider: &str,
    s: Settlement,
    now: i64,
) -> Result<(), OutboxError> {
    sqlx::query(
        "UPDATE rate_grants SET units = MIN(units, ?), until = MIN(until, ?) \
         WHERE id = ? AND provider = ?",
    )
    .bind(i64::from(s.used))
    .bind(now)
    .bind(s.grant)
    .bind(provider)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}
