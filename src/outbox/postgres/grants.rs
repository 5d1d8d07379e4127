//! Rate-limit grants in PostgreSQL (table `rate_grants`): every worker on every machine counts
//! against the same windows. One transaction at a time per provider (an advisory lock on its
//! name), timed by the database's clock so the machines' clocks need not agree.

use std::time::SystemTime;

use sqlx::{PgConnection, Row};

use super::errors::db_error;
use super::{begin, ms, PostgresStore};
use crate::delivery::{PermitAnswer, PermitRequest, Settlement};
use crate::outbox::error::OutboxError;
use crate::outbox::rate_grants::{decide, units_of};

/// The first key of the advisory locks on providers' grants ("rate" in ASCII); the second is
/// the provider's name hashed.
const GRANT_LOCK: i32 = 0x7261_7465;

impl PostgresStore {
    /// See [`Store::take_permits`](crate::outbox::store::Store::take_permits).
    pub(super) async fn take_permits_inner(
        &self,
        request: PermitRequest,
        _now: SystemTime,
    ) -> Result<PermitAnswer, OutboxError> {
        let mut tx = begin(&self.pool).await?;
        let now = lock_provider(&mut tx, &request.provider).await?;
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
        sqlx::query("DELETE FROM rate_grants WHERE provider = $1 AND (until <= $2 OR units = 0)")
            .bind(&request.provider)
            .bind(since)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let rows = sqlx::query("SELECT until, units FROM rate_grants WHERE provider = $1")
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
                     VALUES ($1, $2, $3, $4) RETURNING id",
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
        _now: SystemTime,
    ) -> Result<(), OutboxError> {
        let mut tx = begin(&self.pool).await?;
        let now = lock_provider(&mut tx, &provider).await?;
        settle(&mut tx, &provider, settlement, now).await?;
        tx.commit().await.map_err(db_error)
    }
}

/// Takes the provider's grant lock for the transaction and reads the database's clock after
/// it (milliseconds since the Unix epoch).
async fn lock_provider(conn: &mut PgConnection, provider: &str) -> Result<i64, OutboxError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(GRANT_LOCK)
        .bind(provider)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let now: i64 =
        sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
    Ok(now)
}

/// Lowers a grant to the units used and ends it at `now` (never later than it would have).
async fn settle(
    conn: &mut PgConnection,
    provider: &str,
    s: Settlement,
    now: i64,
) -> Result<(), OutboxError> {
    sqlx::query(
        "UPDATE rate_grants SET units = LEAST(units, $1), until = LEAST(until, $2) \
         WHERE id = $3 AND provider = $4",
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
