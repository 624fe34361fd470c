//! Detectors: the factory's own data raises alerts. Each is one `insert … select … on conflict
//! (dedup_key) do nothing`. A condition raises no new alert while an alert about the same thing
//! (same module, type and machine, item and warehouse, …; from a detector or anyone else) is
//! still open, and at most one a day (the key names the thing and the day in `app.timezone`),
//! however often the detectors run and on however many instances: a lasting condition is
//! raised again the day after someone acknowledged it, not every night. The dispatcher then
//! routes what they raised like any other alert. Their messages are Indonesian, the factory's
//! working language, with the figures in the payload; a recipient reads them as written, inside
//! the frame of their own language.
//!
//! - `WO`/`ANOMALY`, High: a machine's reject rate over the last 7 days above
//!   [`REJECT_THRESHOLD_PCT`] (with at least [`MIN_OUTPUT`] units made, so one bad shift of a
//!   few pieces is not an anomaly).
//! - `INV`/`STOCK`: an item oversold in a warehouse (reserved above on hand; Medium) or available
//!   below its minimum stock (Low).
//! - `FIN`/`OVERDUE`, Medium: customers with receivables more than 30 days past due (one alert
//!   naming how many, the list in its payload).
//! - `FIN`/`CASHFLOW`, Critical: the 7-day cash outlook (bank balance plus receivables due minus
//!   payables due, from the metrics catalogue: [`crate::executive::cash`]) below zero, on
//!   balances at most [`crate::executive::cash::FRESH_DAYS`] days old.

use std::time::Duration;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::production::REJECT_THRESHOLD_PCT;
use crate::queue::Doorbell;

/// Output over the window below which a machine's reject rate says nothing yet.
pub const MIN_OUTPUT: i64 = 100;

/// How long the cash outlook's reads may take.
const CASH_TIMEOUT: Duration = Duration::from_secs(10);

/// `(name, statement)`; `$1` is today's date, `$2` the reject threshold, `$3` the minimum output.
const DETECTORS: [(&str, &str); 3] = [
    (
        "reject_rate",
        "insert into ai_alert (module, alert_type, severity, message, payload, dedup_key)
         select 'WO', 'ANOMALY', 'High',
                'Reject rate ' || x.code || ' = ' || replace(round(x.rate, 1)::text, '.', ',')
                    || '% (ambang ' || replace(trim_scale($2::numeric)::text, '.', ',')
                    || '%) dalam 7 hari terakhir',
                jsonb_build_object('machine', x.code, 'reject_rate_pct', round(x.rate, 1),
                                   'threshold_pct', $2::numeric, 'window_days', 7,
                                   'output', x.output, 'reject', x.reject),
                'detect:reject:' || x.code || ':' || $1::date
         from (
             select m.code, sum(s.output_qty) as output, sum(s.reject_qty) as reject,
                    sum(s.reject_qty) * 100 / nullif(sum(s.output_qty), 0) as rate
             from m_machine m join t_shift_log s on s.machine_id = m.id
             where m.deleted_at is null and s.deleted_at is null
               and s.log_dt > $1::date - 7 and s.log_dt <= $1::date
             group by m.code
             having sum(s.output_qty) >= $3) x
         where x.rate > $2::numeric
           and not exists (
               select 1 from ai_alert o
               where o.acked_at is null and o.is_sent and o.module = 'WO' and o.alert_type = 'ANOMALY'
                 and o.payload ->> 'machine' = x.code)
         on conflict (dedup_key) do nothing",
    ),
    (
        "stock",
        "insert into ai_alert (module, alert_type, severity, message, payload, dedup_key)
         select 'INV', 'STOCK',
                case when x.available < 0 then 'Medium' else 'Low' end,
                case when x.available < 0
                     then x.item || ' oversold (' || replace(trim_scale(x.available)::text, '.', ',')
                          || ' ' || x.uom || ') di ' || x.wh
                     else x.item || ' di bawah stok minimum di ' || x.wh || ': tersedia '
                          || replace(trim_scale(x.available)::text, '.', ',') || ' ' || x.uom
                          || ', minimum ' || replace(trim_scale(x.min_stock)::text, '.', ',') end,
                jsonb_build_object('item', x.item, 'wh', x.wh, 'available', x.available,
                                   'min_stock', x.min_stock),
                'detect:stock:' || case when x.available < 0 then 'oversold' else 'low' end
                    || ':' || x.item || ':' || x.wh || ':' || $1::date
         from (
             select i.code as item, i.uom, i.min_stock, w.code as wh,
                    v.qty_on_hand - v.qty_reserved as available
             from t_inv v join m_item i on i.id = v.item_id join m_wh w on w.id = v.wh_id
             where v.deleted_at is null and i.deleted_at is null and w.deleted_at is null) x
         where (x.available < 0 or x.available < x.min_stock)
           and not exists (
               select 1 from ai_alert o
               where o.acked_at is null and o.is_sent and o.module = 'INV' and o.alert_type = 'STOCK'
                 and o.payload ->> 'item' = x.item and o.payload ->> 'wh' = x.wh
                 -- an open below-minimum (Low) alert does not hide that it is now oversold
                 and (o.severity <> 'Low' or x.available >= 0))
         on conflict (dedup_key) do nothing",
    ),
    (
        "overdue_receivables",
        "insert into ai_alert (module, alert_type, severity, message, payload, dedup_key)
         select 'FIN', 'OVERDUE', 'Medium',
                count(*) || ' customer piutang > 30 hari',
                jsonb_build_object('customers', jsonb_agg(x.code order by x.code),
                                   'overdue_amt', sum(x.amt), 'min_days_overdue', 30),
                'detect:overdue:' || $1::date
         from (
             select c.code, sum(ar.amt) as amt
             from t_ar ar join m_cust c on c.id = ar.cust_id
             where ar.deleted_at is null and c.deleted_at is null and ar.paid_dt is null
               and ar.status <> 'Paid' and ar.due_dt < $1::date - 30
             group by c.code) x
         having count(*) > 0
            and not exists (
                select 1 from ai_alert o
                where o.acked_at is null and o.is_sent and o.module = 'FIN' and o.alert_type = 'OVERDUE')
         on conflict (dedup_key) do nothing",
    ),
];

/// The detecting stage.
pub struct Detector {
    db: PgPool,
    /// `alerts.detect_every_mins`; 0 = off.
    every_mins: u64,
    /// `app.timezone`: whose "today" a day's alert belongs to.
    timezone: chrono_tz::Tz,
    /// The dispatcher's, rung when alerts were raised.
    dispatcher: Doorbell,
}

impl Detector {
    pub fn new(db: PgPool, every_mins: u64, timezone: chrono_tz::Tz, dispatcher: Doorbell) -> Self {
        Self {
            db,
            every_mins,
            timezone,
            dispatcher,
        }
    }

    /// Runs the detectors now and every `alerts.detect_every_mins` until `shutdown` (never
    /// when 0).
    pub async fn run(self, shutdown: CancellationToken) {
        if self.every_mins == 0 {
            tracing::info!("alert detectors are off (alerts.detect_every_mins = 0)");
            return;
        }
        loop {
            let today = Utc::now().with_timezone(&self.timezone).date_naive();
            match detect(&self.db, today).await {
                Ok(0) => {}
                Ok(raised) => {
                    tracing::info!(raised, "detectors raised alerts");
                    self.dispatcher.ring();
                }
                Err(e) => {
                    metrics::counter!("alert_detector_errors_total").increment(1);
                    tracing::warn!(error = %format!("{e:#}"), "alert detectors failed; next run as planned");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(self.every_mins * 60)) => {}
            }
        }
    }
}

/// Runs every detector once for `today`; returns how many alerts they raised. A detector that
/// fails stops the round (the next one tries them all again).
pub async fn detect(db: &PgPool, today: NaiveDate) -> anyhow::Result<u64> {
    let mut raised = 0;
    for (name, statement) in DETECTORS {
        let found = sqlx::query(statement)
            .bind(today)
            .bind(REJECT_THRESHOLD_PCT)
            .bind(MIN_OUTPUT)
            .execute(db)
            .await
            .with_context(|| format!("detector {name}"))?
            .rows_affected();
        metrics::counter!("alerts_detected_total", "detector" => name).increment(found);
        raised += found;
    }
    let found = crate::executive::cash::detect(db, today, CASH_TIMEOUT)
        .await
        .context("detector cash_outlook")?;
    metrics::counter!("alerts_detected_total", "detector" => "cash_outlook").increment(found);
    Ok(raised + found)
}
