//! PostgreSQL: the pool, migrations and demo data.

pub mod demo;

use anyhow::Context;
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use crate::config::DatabaseSettings;

/// The schema, embedded at compile time from `migrations/`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connects to PostgreSQL, creating the database first when configured to. Errors name the
/// target (`host:port/db`) but never the credentials.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let target = settings.display_target();
    if settings.create_if_missing {
        let url = secrecy::ExposeSecret::expose_secret(&settings.url);
        let exists =
            tokio::time::timeout(settings.acquire_timeout(), Postgres::database_exists(url))
                .await
                .map_err(|_| anyhow::anyhow!("timed out"))
                .and_then(|r| r.map_err(anyhow::Error::from))
                .with_context(|| format!("cannot reach PostgreSQL at {target}"))?;
        if !exists {
            Postgres::create_database(url)
                .await
                .with_context(|| format!("cannot create database {target}"))?;
            tracing::info!(%target, "created database");
        }
    }
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .connect_with(settings.connect_options())
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {target}"))
}

/// Applies pending migrations. Each migration runs in its own transaction, so one that fails
/// leaves the schema as it was before it.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}
