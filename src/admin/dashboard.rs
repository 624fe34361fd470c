//! `GET /api/v1/dashboard/summary`: the blueprint's "Dashboard Summary (API Response)", computed
//! by the same catalogue specs as the chat's executive summary ([`crate::executive::summary`]).
//! Any signed-in admin may call it; a field the caller's role may not see is left out of the
//! response (not null: null means "no data" for a figure the caller may see).

use axum::extract::{FromRef, State};
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::routes;

use super::auth::Caller;
use super::{AdminState, ApiRouter};
use crate::error::Result;
use crate::executive::summary::{self, Summary};
use crate::metrics::spec::Window;

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new().routes(routes!(dashboard_summary))
}

/// Dates, both inclusive.
#[derive(Debug, Serialize, ToSchema)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl From<&Window> for DateRange {
    fn from(w: &Window) -> Self {
        DateRange {
            from: w.from,
            to: w.to - Duration::days(1),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryPeriods {
    /// Today in the configured zone.
    pub today: NaiveDate,
    /// `revenue_mtd`: the first of the month up to today.
    pub month_to_date: DateRange,
    /// `revenue_last_month`: the same days of last month.
    pub compared_with: DateRange,
    /// `production_*`: Monday up to today.
    pub week_to_date: DateRange,
    /// `ap_due_7_days` and the cash outlook: today up to 7 days ahead.
    pub next_7_days: DateRange,
}

/// Open alerts by severity.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsBySeverity {
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
}

/// Each figure is present only when the caller's role may see it; `null` means no data (a rate
/// over nothing, no bank balance loaded yet).
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardSummary {
    /// When the figures were read.
    pub as_of: DateTime<Utc>,
    pub periods: SummaryPeriods,
    /// Revenue (sales orders not Draft or Cancel) month to date, rupiah. `SO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub revenue_mtd: Option<Option<f64>>,
    /// Revenue over the same days of last month. `SO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub revenue_last_month: Option<Option<f64>>,
    /// `revenue_mtd` against `revenue_last_month`, percent (one decimal). `SO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub revenue_growth_pct: Option<Option<f64>>,
    /// Sales orders waiting for approval ("Pending"), any order date. `SO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_orders: Option<i64>,
    /// Sales orders Pending, Approved or Open (not yet closed). `SO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_orders: Option<i64>,
    /// Documents waiting for the caller's approval: POs in "Pending Director" (with
    /// `PO.APPROVE`) plus SOs in "Pending" (with `SO.APPROVE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_approvals: Option<i64>,
    /// OEE week to date, percent. `WO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub production_oee: Option<Option<f64>>,
    /// Output week to date. `WO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub production_output: Option<Option<f64>>,
    /// Reject rate week to date, percent. `WO.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub production_reject_rate_pct: Option<Option<f64>>,
    /// Alerts not acknowledged, of the modules the caller may read. `ALERT.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_alerts: Option<i64>,
    /// Of which Critical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts_critical: Option<i64>,
    /// Of which High or Medium.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts_warning: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts_by_severity: Option<AlertsBySeverity>,
    /// The latest balance of every bank account on or before today. `FIN.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub cash_balance: Option<Option<f64>>,
    /// The day of the newest bank balance (null: none loaded). `FIN.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub cash_balance_date: Option<Option<NaiveDate>>,
    /// Cash balance plus receivables due in the next 7 days minus payables due by then
    /// (overdue ones included). `FIN.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable)]
    pub cash_outlook_7_days: Option<Option<f64>>,
    /// Unpaid receivables past their due date. `FIN.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ar_overdue: Option<f64>,
    /// Unpaid payables due from today up to 7 days ahead. `FIN.READ`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ap_due_7_days: Option<f64>,
}

fn f(v: Option<Decimal>) -> Option<f64> {
    v.and_then(|v| v.to_f64())
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

impl From<Summary> for DashboardSummary {
    fn from(s: Summary) -> Self {
        let p = &s.periods;
        let periods = SummaryPeriods {
            today: p.today,
            month_to_date: (&p.month_to_date).into(),
            compared_with: (&p.compared_with).into(),
            week_to_date: (&p.week_to_date).into(),
            next_7_days: DateRange {
                from: p.today,
                to: p.today + Duration::days(7),
            },
        };
        let week = s.production_week.as_ref();
        let balance_known = |c: &crate::executive::cash::Position| c.balance_dt.is_some();
        DashboardSummary {
            as_of: s.as_of,
            periods,
            revenue_mtd: s.revenue.as_ref().map(|r| f(r.month_to_date)),
            revenue_last_month: s.revenue.as_ref().map(|r| f(r.compared_with)),
            revenue_growth_pct: s.revenue.as_ref().map(|r| r.growth_pct().map(round1)),
            pending_orders: s.orders.as_ref().map(|o| o.pending),
            open_orders: s.orders.as_ref().map(|o| o.open),
            pending_approvals: s.approvals.as_ref().map(|a| a.total()),
            production_oee: week.map(|w| f(w.oee).map(round1)),
            production_output: week.map(|w| f(w.output)),
            production_reject_rate_pct: week.map(|w| f(w.reject_rate).map(round1)),
            active_alerts: s.alerts.as_ref().map(|a| a.total()),
            alerts_critical: s.alerts.as_ref().map(|a| a.critical),
            alerts_warning: s.alerts.as_ref().map(|a| a.high + a.medium),
            alerts_by_severity: s.alerts.as_ref().map(|a| AlertsBySeverity {
                critical: a.critical,
                high: a.high,
                medium: a.medium,
                low: a.low,
            }),
            cash_balance: s
                .cash
                .as_ref()
                .map(|c| balance_known(c).then(|| f(Some(c.balance))).flatten()),
            cash_balance_date: s.cash.as_ref().map(|c| c.balance_dt),
            cash_outlook_7_days: s
                .cash
                .as_ref()
                .map(|c| balance_known(c).then(|| f(Some(c.outlook_7d))).flatten()),
            ar_overdue: s.receivables_overdue.and_then(|v| v.to_f64()),
            ap_due_7_days: s.payables_due_7d.and_then(|v| v.to_f64()),
        }
    }
}

/// The executive summary as JSON, for the caller's permissions.
#[utoipa::path(
    get, path = "/api/v1/dashboard/summary", tag = "insight",
    responses((status = 200, body = DashboardSummary)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn dashboard_summary(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Json<DashboardSummary>> {
    let today = Utc::now().with_timezone(&state.timezone).date_naive();
    let s = summary::compute(
        &state.db,
        today,
        summary::Basis::Now,
        &caller.permissions,
        state.metrics_timeout,
    )
    .await?;
    Ok(Json(s.into()))
}
