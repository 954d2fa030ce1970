//! The service's own PostgreSQL database: created if missing, migrated at start.
//!
//! Two migration sets live in each database: the runtime's (outbox and inbox, versions below
//! 100) and the service's own (100 and up). Each migrator ignores the other's versions.

use std::{str::FromStr, time::Duration};

use anyhow::Context;
use sqlx::{
    Connection, PgConnection, PgPool, Postgres,
    migrate::{MigrateDatabase, Migrator},
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
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
    // Migrations may rewrite a large table: they run on a connection of their own, without
    // the time limits that every other statement has.
    let plain = PgConnectOptions::from_str(url)
        .with_context(|| format!("DATABASE_URL for {database} is not valid"))?;
    let mut migrating = PgConnection::connect_with(&plain)
        .await
        .with_context(|| format!("cannot connect to database {database}"))?;
    for migrations in [&RUNTIME_MIGRATIONS, service_migrations] {
        let mut migrator = Migrator::with_migrations(migrations.iter().cloned().collect());
        migrator
            .set_ignore_missing(true)
            .run(&mut migrating)
            .await
            .with_context(|| format!("cannot migrate database {database}"))?;
    }
    migrating.close().await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options(config)?)
        .await
        .with_context(|| format!("cannot connect to database {database}"))?;
    Ok(pool)
}

/// How the service's connections connect: with a time limit for every statement (its waits for
/// locks included), and for every transaction left idle. A transaction is idle while its
/// process waits for something else (the relay for Kafka's acknowledgements) or is stalled (a
/// paused process): PostgreSQL then ends it and frees its locks, which another instance may be
/// waiting for (the relay's lock, the inbox rows of the events it took over), instead of
/// holding them for as long as the stall lasts.
pub fn options(config: &DatabaseConfig) -> anyhow::Result<PgConnectOptions> {
    let statement = config.statement_timeout.as_millis().to_string();
    let idle = config.idle_in_transaction_timeout.as_millis().to_string();
    Ok(PgConnectOptions::from_str(&config.url)
        .context("DATABASE_URL is not valid")?
        .options([
            ("statement_timeout", statement.as_str()),
            ("idle_in_transaction_session_timeout", idle.as_str()),
        ]))
}

/// A connection that one task keeps from one transaction to the next: the consumer's batch
/// applier, the outbox relay, the order service's writer. sqlx pings a connection when it goes
/// back to the pool and again when it is taken (two round trips, each waking a backend), which
/// under load cost as much as the statements of a small transaction.
///
/// A connection is kept only after it served a transaction that succeeded. One that failed, or
/// whose task was cancelled while it was in use, goes back to the pool, which checks it, and the
/// next use takes another from the pool.
pub struct Held {
    pool: PgPool,
    kept: Option<PoolConnection<Postgres>>,
}

impl Held {
    pub fn new(pool: PgPool) -> Self {
        Held { pool, kept: None }
    }

    /// The connection kept after the last success, or one from the pool.
    pub async fn take(&mut self) -> sqlx::Result<PoolConnection<Postgres>> {
        match self.kept.take() {
            Some(conn) => Ok(conn),
            None => self.pool.acquire().await,
        }
    }

    /// Keeps `conn` for the next use: call once it has served a transaction that succeeded.
    pub fn keep(&mut self, conn: PoolConnection<Postgres>) {
        self.kept = Some(conn);
    }
}
