//! The schema migrations of each backend, embedded in the binary (`migrations/sqlite/*.sql`,
//! `migrations/postgres/*.sql`) and applied on open. Versioned as sqlx's migrator does it
//! (table `_sqlx_migrations`, checksums), so `sqlx migrate info` reads an outbox too.

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationSource, MigrationType, Migrator};

use super::record::Migrated;

/// One migration: (version, description, SQL).
pub(crate) type Migrations = &'static [(i64, &'static str, &'static str)];

/// Every SQLite migration, in order.
pub(crate) const SQLITE: Migrations = &[
    (
        1,
        "outbox",
        include_str!("../../migrations/sqlite/0001_outbox.sql"),
    ),
    (
        2,
        "rate grants",
        include_str!("../../migrations/sqlite/0002_rate_grants.sql"),
    ),
];

/// Every PostgreSQL migration, in order.
#[cfg(feature = "outbox-postgres")]
pub(crate) const POSTGRES: Migrations = &[
    (
        1,
        "outbox",
        include_str!("../../migrations/postgres/0001_outbox.sql"),
    ),
    (
        2,
        "rate grants",
        include_str!("../../migrations/postgres/0002_rate_grants.sql"),
    ),
];

/// Embedded migrations as a sqlx migration source.
#[derive(Debug)]
struct Embedded(Migrations);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures_core_boxed::BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let list = self.0;
        Box::pin(async move {
            Ok(list
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A migrator over `list`.
pub(crate) async fn migrator(list: Migrations) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded(list)).await
}

/// Applies `list` on `conn` (which holds the backend's migration lock) and tells which versions
/// this call applied and which version the schema is at now.
pub(crate) async fn apply<C: Migrate + Send>(
    conn: &mut C,
    list: Migrations,
) -> Result<Migrated, MigrateError> {
    conn.ensure_migrations_table().await?;
    let before: Vec<i64> = conn
        .list_applied_migrations()
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    migrator(list).await?.run_direct(conn).await?;
    let after: Vec<i64> = conn
        .list_applied_migrations()
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    Ok(Migrated {
        applied: after
            .iter()
            .copied()
            .filter(|v| !before.contains(v))
            .collect(),
        version: after.iter().copied().max().unwrap_or(0),
        latest: list.iter().map(|m| m.0).max().unwrap_or(0),
    })
}

/// `futures_core::future::BoxFuture`, spelled out to avoid a dependency for one alias.
mod futures_core_boxed {
    use std::future::Future;
    use std::pin::Pin;

    pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
}
