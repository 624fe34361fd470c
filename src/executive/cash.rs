//! The cash position and its 7-day outlook, from the catalogue's `cash_balance`,
//! `cash_outlook_7d`, `cash_in_7d` and `cash_out_7d` (bank balances in `t_bank_bal`, loaded by
//! the ETL; receivables and payables by due date) — and the detector that raises
//! "Saldo kas negatif dalam 7 hari" when the outlook is below zero.

use std::time::Duration;

use anyhow::Context;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::PgPool;

use super::{figure, spec, value};
use crate::metrics::format::rupiah;

/// Balances older than this many days raise no cash alert: a stale balance says nothing of the
/// week ahead, and an empty table is not a bank account at zero.
pub const FRESH_DAYS: i64 = 3;

/// What the asker sees of the cash position.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// The day of the oldest of the accounts' latest balances (an account whose feed stopped
    /// shows here); `None` when no balance was ever loaded.
    pub balance_dt: Option<NaiveDate>,
    pub balance: Decimal,
    /// Balance plus receivables due in 7 days minus payables due by then.
    pub outlook_7d: Decimal,
}

impl Position {
    /// Every account's balance is at most [`FRESH_DAYS`] days old.
    pub fn is_fresh(&self, today: NaiveDate) -> bool {
        self.balance_dt
            .is_some_and(|d| (today - d).num_days() <= FRESH_DAYS)
    }
}

/// The outlook with its parts, as the detector and the finance answers show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlook {
    pub position: Position,
    pub inflow: Decimal,
    pub outflow: Decimal,
}

/// Value `i` of the one row of a snapshot figure; zero when there is none.
fn first(rows: &crate::metrics::run::Rows, i: usize) -> Decimal {
    value(rows, None, true, i).unwrap_or_default()
}

/// The cash position on `today` for an asker holding `permissions`; `None` when they may not
/// see it.
pub async fn position(
    db: &PgPool,
    today: NaiveDate,
    permissions: &[String],
    timeout: Duration,
) -> anyhow::Result<Option<Position>> {
    let Some(rows) = figure(
        db,
        &spec(&["cash_balance", "cash_outlook_7d"], None),
        today,
        permissions,
        timeout,
    )
    .await?
    else {
        return Ok(None);
    };
    let balance_dt: Option<NaiveDate> = sqlx::query_scalar(
        "select min(latest) from (
             select max(bal_dt) as latest from t_bank_bal
             where deleted_at is null and bal_dt <= $1 group by bank_acc) a",
    )
    .bind(today)
    .fetch_one(db)
    .await
    .context("reading the date of the latest bank balance")?;
    Ok(Some(Position {
        balance_dt,
        balance: first(&rows, 0),
        outlook_7d: first(&rows, 1),
    }))
}

/// The outlook with its inflow and outflow, for an asker holding `permissions`.
pub async fn outlook(
    db: &PgPool,
    today: NaiveDate,
    permissions: &[String],
    timeout: Duration,
) -> anyhow::Result<Option<Outlook>> {
    let Some(position) = position(db, today, permissions, timeout).await? else {
        return Ok(None);
    };
    let Some(flows) = figure(
        db,
        &spec(&["cash_in_7d", "cash_out_7d"], None),
        today,
        permissions,
        timeout,
    )
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(Outlook {
        position,
        inflow: first(&flows, 0),
        outflow: first(&flows, 1),
    }))
}

/// The cash detector: a Critical `FIN`/`CASHFLOW` alert when the 7-day outlook is below zero
/// on fresh balances, at most one a day and none while one is open (as the other detectors).
/// Returns how many it raised (0 or 1).
pub async fn detect(db: &PgPool, today: NaiveDate, timeout: Duration) -> anyhow::Result<u64> {
    let system = ["FIN.READ".to_owned()];
    let Some(o) = outlook(db, today, &system, timeout).await? else {
        return Ok(0);
    };
    if !o.position.is_fresh(today) || o.position.outlook_7d >= Decimal::ZERO {
        return Ok(0);
    }
    let p = &o.position;
    let message = format!(
        "Saldo kas negatif dalam 7 hari: proyeksi {} (saldo {} + piutang jatuh tempo {} − hutang jatuh tempo {})",
        rupiah(p.outlook_7d),
        rupiah(p.balance),
        rupiah(o.inflow),
        rupiah(o.outflow)
    );
    let raised = sqlx::query(
        "insert into ai_alert (module, alert_type, severity, message, payload, dedup_key)
         select 'FIN', 'CASHFLOW', 'Critical', $2,
                jsonb_build_object('horizon_days', 7, 'balance', $3::numeric,
                                   'balance_dt', $4::date, 'inflow', $5::numeric,
                                   'outflow', $6::numeric, 'projected', $7::numeric),
                'detect:cash:' || $1::date
         where not exists (
             select 1 from ai_alert o
             where o.acked_at is null and o.is_sent and o.module = 'FIN' and o.alert_type = 'CASHFLOW')
         on conflict (dedup_key) do nothing",
    )
    .bind(today)
    .bind(message)
    .bind(p.balance)
    .bind(p.balance_dt)
    .bind(o.inflow)
    .bind(o.outflow)
    .bind(p.outlook_7d)
    .execute(db)
    .await
    .context("raising the cash alert")?
    .rows_affected();
    Ok(raised)
}
