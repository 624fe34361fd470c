//! Demo data: the blueprint's samples (section 1.8) plus a deterministic generated history of
//! at least twelve months ending today. Loading is idempotent: every row has a natural key and
//! is inserted with `on conflict do nothing`, so a second run adds nothing (a run on a later day
//! adds only the days since).

use anyhow::Context;
use sqlx::PgPool;

/// The SQL script, written against the schema in `migrations/`.
const DEMO_SQL: &str = include_str!("demo.sql");
/// More of the same, for benchmarks: `scale` times the generated volume.
const SCALE_SQL: &str = include_str!("demo_scale.sql");

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

/// Loads the demo data and then `scale - 1` more times its generated volume (customers, items,
/// machines, orders, lines, shift logs), deterministically, in one transaction.
#[tracing::instrument(skip_all, fields(scale))]
pub async fn load_scaled(pool: &PgPool, scale: u32) -> anyhow::Result<()> {
    load(pool).await?;
    if scale <= 1 {
        return Ok(());
    }
    let mut tx = pool.begin().await.context("starting the scale-up")?;
    sqlx::query("select set_config('demo.scale', $1, true)")
        .bind(scale.to_string())
        .execute(&mut *tx)
        .await
        .context("setting the scale")?;
    sqlx::raw_sql(SCALE_SQL)
        .execute(&mut *tx)
        .await
        .context("scaling the demo data up")?;
    tx.commit().await.context("committing the scale-up")?;
    sqlx::raw_sql("analyze")
        .execute(pool)
        .await
        .context("analysing the scaled tables")?;
    tracing::info!(scale, "demo data scaled up");
    Ok(())
}
