//! Runs a compiled statement: in a read-only transaction, under a statement timeout, planned
//! for its own parameters, at most the row cap.

use std::time::Duration;

use anyhow::Context;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgPool, Row as _};

use super::compile::{Bind, Compiled};

/// One result row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The group's key (a code, a status, a bucket's first day); none for a single figure.
    pub key: Option<String>,
    /// The group's name as answers show it.
    pub label: Option<String>,
    /// In the asked period (`true`) or the comparison.
    pub current: bool,
    /// One per measure, in the spec's order; none when undefined (a rate over nothing).
    pub values: Vec<Option<Decimal>>,
}

/// The rows of one statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rows {
    pub rows: Vec<Row>,
    /// More rows matched than the row cap; the rest were cut.
    pub truncated: bool,
}

/// Runs `c` read-only, cancelled after `timeout`.
pub async fn run(db: &PgPool, c: &Compiled, timeout: Duration) -> anyhow::Result<Rows> {
    let mut tx = db.begin().await.context("starting a metrics read")?;
    sqlx::query("set transaction read only")
        .execute(&mut *tx)
        .await
        .context("making the read read-only")?;
    // Each statement is planned for its own dates: a cached generic plan, blind to how wide the
    // period is, once took 0.7 s instead of 0.2 s on a year of orders.
    sqlx::query(&format!(
        "set local statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .execute(&mut *tx)
    .await
    .context("setting the statement timeout")?;
    sqlx::query("set local plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await
        .context("planning for the parameters")?;
    let raw = bound(&c.sql, &c.binds)
        .fetch_all(&mut *tx)
        .await
        .context("running the metrics query")?;
    tx.commit().await.context("ending the metrics read")?;
    let width = raw.first().map_or(0, |r| r.len().saturating_sub(3));
    let mut rows = Vec::with_capacity(raw.len());
    for r in &raw {
        let mut values = Vec::with_capacity(width);
        for i in 0..width {
            values.push(r.try_get::<Option<Decimal>, _>(3 + i)?);
        }
        rows.push(Row {
            key: r.try_get(0)?,
            label: r.try_get(1)?,
            current: r.try_get(2)?,
            values,
        });
    }
    let truncated = rows.len() > c.row_cap;
    rows.truncate(c.row_cap);
    Ok(Rows { rows, truncated })
}

fn bound<'q>(
    sql: &'q str,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = match b {
            Bind::Date(d) => query.bind(*d),
            Bind::Texts(t) => query.bind(t.clone()),
            Bind::Number(n) => query.bind(*n),
        };
    }
    query
}

/// The plan PostgreSQL picks for `c` with its parameters (`EXPLAIN (FORMAT JSON)`), planned as
/// [`run`] plans it: which indexes a period-bounded read uses.
pub async fn explain(db: &PgPool, c: &Compiled) -> anyhow::Result<serde_json::Value> {
    let mut tx = db.begin().await.context("starting an explain")?;
    sqlx::query("set local plan_cache_mode = force_custom_plan")
        .execute(&mut *tx)
        .await?;
    let sql = format!("explain (format json) {}", c.sql);
    let plan: serde_json::Value = bound(&sql, &c.binds)
        .fetch_one(&mut *tx)
        .await
        .context("explaining the metrics query")?
        .try_get(0)?;
    tx.rollback().await?;
    Ok(plan)
}
