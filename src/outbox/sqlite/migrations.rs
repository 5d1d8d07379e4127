//! The SQLite schema migrations, embedded in the binary (`migrations/sqlite/*.sql`) and
//! applied on open. Versioned as sqlx's migrator does it (table `_sqlx_migrations`, checksums),
//! so `sqlx migrate info` reads an outbox file too.

use std::borrow::Cow;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// Every migration, in order: (version, description, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "outbox",
    include_str!("../../../migrations/sqlite/0001_outbox.sql"),
)];

/// The embedded migrations as a sqlx migration source.
#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures_core_boxed::BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
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

/// A migrator over the embedded migrations.
pub(super) async fn migrator() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded).await
}

/// `futures_core::future::BoxFuture`, spelled out to avoid a dependency for one alias.
mod futures_core_boxed {
    use std::future::Future;
    use std::pin::Pin;

    pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
}
