//! Demo data: the blueprint's samples (section 1.8) plus a deterministic generated history of
//! at least twelve months ending today. Loading is idempotent: every row has a natural key and
//! is inserted with `on conflict do nothing`, so a second run adds nothing (a run on a later day
//! adds only the days since).

use anyhow::Context;
use sqlx::PgPool;

/// The SQL script, written against the schema in `migrations/`.
const DEMO_SQL: &str = include_str!("demo.sql");

/// Loads the demo data in one transaction: all of it, or nothing.
#[tracing::instrument(skip_all)]
pub async fn load(pool: &PgPool) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("starting demo transaction")?;
    sqlx::raw_sql(DEMO_SQL)
        .execute(&mut *tx)
        .await
        .context("loading demo data")?;
    tx.commit().await.context("committing demo data")?;
    tracing::info!("demo data loaded");
    Ok(())
}
