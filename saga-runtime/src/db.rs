//! The service's own PostgreSQL database: created if missing, migrated at start.
//!
//! Two migration sets live in each database: the runtime's (outbox and inbox, versions below
//! 100) and the service's own (100 and up). Each migrator ignores the other's versions.

use std::time::Duration;

use anyhow::Context;
use sqlx::{
    PgPool,
    migrate::{MigrateDatabase, Migrator},
    postgres::PgPoolOptions,
};

use crate::config::DatabaseConfig;

static RUNTIME_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

pub async fn connect(
    config: &DatabaseConfig,
    service_migrations: &Migrator,
) -> anyhow::Result<PgPool> {
    let url = config.url.as_str();
    let database = url.rsplit('/').next().unwrap_or(url);
    if !sqlx::Postgres::database_exists(url)
        .await
        .with_context(|| format!("cannot reach PostgreSQL for database {database}"))?
    {
        // Two instances starting at once may race here; the loser's "already exists" is fine.
        if let Err(e) = sqlx::Postgres::create_database(url).await
            && !sqlx::Postgres::database_exists(url).await.unwrap_or(false)
        {
            return Err(e).with_context(|| format!("cannot create database {database}"));
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to database {database}"))?;
    for migrations in [&RUNTIME_MIGRATIONS, service_migrations] {
        let mut migrator = Migrator::with_migrations(migrations.iter().cloned().collect());
        migrator
            .set_ignore_missing(true)
            .run(&pool)
            .await
            .with_context(|| format!("cannot migrate database {database}"))?;
    }
    Ok(pool)
}
