//! The executive summary: what a director looks at first (the blueprint's dashboard summary),
//! each figure a spec over the catalogue run for the asker's permissions. [`compute`] gathers
//! them (concurrently, read-only); [`text`] writes the chat message, bottom line first; the
//! admin API serves the same [`Summary`] as JSON.

use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Days, Months, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sqlx::PgPool;

use super::cash::{self, Position};
use super::{figure, spec, value};
use crate::metrics::catalogue::Label;
use crate::metrics::format::{number, percent, rupiah_short};
use crate::metrics::run::Rows;
use crate::metrics::spec::{Filter, Group, Spec, Window};
use crate::texts::{month_name, Lang};

/// Which days the summary's flows cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Up to now: month to date including today, production today and this week (the chat
    /// and the API).
    Now,
    /// Closed days only: month to yesterday, production yesterday and this week to yesterday
    /// (the morning digest, sent before today has figures).
    ClosedDays,
}

/// The periods the summary compares, in the configured zone's calendar.
#[derive(Debug, Clone)]
pub struct Periods {
    pub today: NaiveDate,
    /// The first of the month up to and including the last day counted.
    pub month_to_date: Window,
    /// The same number of days from the first of the month before.
    pub compared_with: Window,
    /// The day production is shown for: today, or yesterday.
    pub day: Window,
    /// Monday up to and including the last day counted (the week before, on a Monday's
    /// digest).
    pub week_to_date: Window,
}

impl Periods {
    pub fn of(today: NaiveDate, basis: Basis) -> Periods {
        // The last day counted: today, or yesterday for closed days.
        let last = match basis {
            Basis::Now => today,
            Basis::ClosedDays => today - Days::days(1),
        };
        let first = last.with_day(1).expect("the first of a month");
        let before_first = first - Months::new(1);
        // The same days of the month before, cut at its end (31 March against 1–28 February).
        let before_to = (before_first + Days::days(last.day() as i64)).min(first);
        let monday = last - Days::days(last.weekday().num_days_from_monday() as i64);
        let (day_label, week_label) = match basis {
            Basis::Now => (label("hari ini", "today"), label("minggu ini", "this week")),
            Basis::ClosedDays => (
                label("kemarin", "yesterday"),
                days(monday, last + Days::days(1)).label,
            ),
        };
        Periods {
            today,
            month_to_date: days(first, last + Days::days(1)),
            compared_with: days(before_first, before_to),
            day: Window {
                from: last,
                to: last + Days::days(1),
                label: day_label,
            },
            week_to_date: Window {
                from: monday,
                to: last + Days::days(1),
                label: week_label,
            },
        }
    }

    /// Every document, whatever its date (a future-dated one too): open orders and waiting
    /// approvals.
    fn ever(&self) -> Window {
        Window {
            from: NaiveDate::from_ymd_opt(1900, 1, 1).expect("a date"),
            to: NaiveDate::from_ymd_opt(2200, 1, 1).expect("a date"),
            label: label("semua", "all"),
        }
    }

    /// Due from today up to 7 days ahead.
    fn next_7_days(&self) -> Window {
        Window {
            from: self.today,
            to: self.today + Days::days(8),
            label: label("7 hari ke depan", "the next 7 days"),
        }
    }
}

/// `[from, to)` named by its days: "1–2 Des 2026", "1 Dec 2026".
fn days(from: NaiveDate, to: NaiveDate) -> Window {
    let last = to - Days::days(1);
    let name = |lang: Lang| {
        let month = month_name(lang, last.month0(), true);
        if from == last {
            format!("{} {month} {}", last.day(), last.year())
        } else {
            format!("{}–{} {month} {}", from.day(), last.day(), last.year())
        }
    };
    Window {
        from,
        to,
        label: Label {
            id: name(Lang::Id),
            en: name(Lang::En),
        },
    }
}

fn label(id: &str, en: &str) -> Label {
    Label {
        id: id.to_owned(),
        en: en.to_owned(),
    }
}

/// Revenue month to date against the same days of last month.
#[derive(Debug, Clone, PartialEq)]
pub struct Revenue {
    pub month_to_date: Option<Decimal>,
    pub compared_with: Option<Decimal>,
}

impl Revenue {
    /// Growth in percent; `None` without a base.
    pub fn growth_pct(&self) -> Option<f64> {
        let (now, before) = (self.month_to_date?, self.compared_with?);
        if before.is_zero() {
            return None;
        }
        ((now - before) / before.abs() * Decimal::ONE_HUNDRED).to_f64()
    }
}

/// Sales orders by where they stand (any order date).
#[derive(Debug, Clone, PartialEq)]
pub struct Orders {
    /// Pending, Approved or Open: accepted and not yet closed.
    pub open: i64,
    /// Waiting for approval.
    pub pending: i64,
}

/// Documents waiting for the asker's approval: each only for the approving permission.
#[derive(Debug, Clone, PartialEq)]
pub struct Approvals {
    /// Purchase orders in "Pending Director" (`PO.APPROVE`).
    pub purchase_orders: Option<i64>,
    /// Sales orders in "Pending" (`SO.APPROVE`).
    pub sales_orders: Option<i64>,
}

impl Approvals {
    pub fn total(&self) -> i64 {
        self.purchase_orders.unwrap_or(0) + self.sales_orders.unwrap_or(0)
    }
}

/// Output, reject rate and OEE over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Production {
    pub output: Option<Decimal>,
    pub reject_rate: Option<Decimal>,
    pub oee: Option<Decimal>,
}

/// Alerts not yet acknowledged, of the modules the asker may read, by severity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alerts {
    pub critical: i64,
    pub high: i64,
    pub medium: i64,
    pub low: i64,
}

impl Alerts {
    pub fn total(&self) -> i64 {
        self.critical + self.high + self.medium + self.low
    }
}

/// The summary for one asker: a figure is `None` when the asker may not see it.
#[derive(Debug, Clone)]
pub struct Summary {
    pub as_of: DateTime<Utc>,
    pub periods: Periods,
    pub revenue: Option<Revenue>,
    pub orders: Option<Orders>,
    pub approvals: Option<Approvals>,
    /// Production on `periods.day`.
    pub production_day: Option<Production>,
    pub production_week: Option<Production>,
    pub alerts: Option<Alerts>,
    pub receivables_overdue: Option<Decimal>,
    /// Unpaid payables due from today up to 7 days ahead.
    pub payables_due_7d: Option<Decimal>,
    pub cash: Option<Position>,
}

fn by(mut s: Spec, dim: &str) -> Spec {
    s.group_by = Some(Group::Dim(dim.to_owned()));
    s
}

fn count(rows: &Rows, keys: &[&str]) -> i64 {
    keys.iter()
        .filter_map(|k| value(rows, Some(k), true, 0))
        .map(|v| v.to_i64().unwrap_or(0))
        .sum()
}

/// Gathers the summary on `today` for an asker holding `permissions`. The reads run one after
/// another: a summary takes one pooled connection, however many are asked for at once.
pub async fn compute(
    db: &PgPool,
    today: NaiveDate,
    basis: Basis,
    permissions: &[String],
    timeout: Duration,
) -> anyhow::Result<Summary> {
    let may = |p: &str| permissions.iter().any(|h| h == p);
    let periods = Periods::of(today, basis);
    let mut revenue = spec(&["revenue"], Some(periods.month_to_date.clone()));
    revenue.compare = Some(periods.compared_with.clone());
    let orders = by(spec(&["order_count"], Some(periods.ever())), "status");
    let mut waiting_pos = spec(&["po_count"], Some(periods.ever()));
    waiting_pos.filters.push(Filter::Is {
        dim: "status".to_owned(),
        values: vec!["Pending Director".to_owned()],
    });
    let production = ["output", "reject_rate", "oee"];
    let day_production = spec(&production, Some(periods.day.clone()));
    let week_production = spec(&production, Some(periods.week_to_date.clone()));
    let alerts = by(spec(&["open_alerts"], None), "severity");
    let overdue = spec(&["receivables_overdue"], None);
    let payables = spec(&["payables_open"], Some(periods.next_7_days()));
    let run = |s: Spec| async move { figure(db, &s, today, permissions, timeout).await };
    let revenue = run(revenue).await?;
    let orders = run(orders).await?;
    let waiting_pos = run(waiting_pos).await?;
    let day_p = run(day_production).await?;
    let week_p = run(week_production).await?;
    let alerts = run(alerts).await?;
    let overdue = run(overdue).await?;
    let payables = run(payables).await?;
    let cash = cash::position(db, today, permissions, timeout).await?;
    let production = |rows: Option<Rows>| {
        rows.map(|r| Production {
            output: value(&r, None, true, 0),
            reject_rate: value(&r, None, true, 1),
            oee: value(&r, None, true, 2),
        })
    };
    let orders = orders.map(|r| Orders {
        open: count(&r, &["Pending", "Approved", "Open"]),
        pending: count(&r, &["Pending"]),
    });
    let approvals = Approvals {
        purchase_orders: waiting_pos.filter(|_| may("PO.APPROVE")).map(|r| {
            value(&r, None, true, 0)
                .and_then(|v| v.to_i64())
                .unwrap_or(0)
        }),
        sales_orders: orders
            .as_ref()
            .filter(|_| may("SO.APPROVE"))
            .map(|o| o.pending),
    };
    Ok(Summary {
        as_of: Utc::now(),
        revenue: revenue.map(|r| Revenue {
            month_to_date: value(&r, None, true, 0),
            compared_with: value(&r, None, false, 0),
        }),
        orders,
        approvals: (approvals.purchase_orders.is_some() || approvals.sales_orders.is_some())
            .then_some(approvals),
        production_day: production(day_p),
        production_week: production(week_p),
        alerts: alerts.map(|r| Alerts {
            critical: count(&r, &["Critical"]),
            high: count(&r, &["High"]),
            medium: count(&r, &["Medium"]),
            low: count(&r, &["Low"]),
        }),
        receivables_overdue: overdue.map(|r| value(&r, None, true, 0).unwrap_or_default()),
        payables_due_7d: payables.map(|r| value(&r, None, true, 0).unwrap_or_default()),
        cash,
        periods,
    })
}

fn pick<'a>(lang: Lang, id: &'a str, en: &'a str) -> &'a str {
    match lang {
        Lang::Id => id,
        Lang::En => en,
    }
}

fn money(v: Option<Decimal>, lang: Lang) -> String {
    v.map(rupiah_short)
        .unwrap_or_else(|| pick(lang, "tidak ada data", "no data").to_owned())
}

fn pct(v: Option<Decimal>) -> String {
    v.and_then(|v| v.to_f64())
        .map(percent)
        .unwrap_or_else(|| "—".to_owned())
}

fn qty(v: Option<Decimal>) -> String {
    v.map(|v| number(v.round_dp(0)))
        .unwrap_or_else(|| "0".to_owned())
}

fn signed_pct(v: f64) -> String {
    format!("{}{}", if v >= 0.0 { "+" } else { "" }, percent(v))
}

/// The bottom line: what needs the asker first, then how sales go.
fn bluf(s: &Summary, lang: Lang) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(a) = &s.alerts {
        if a.critical > 0 {
            parts.push(match lang {
                Lang::Id => format!("🔴 {} alert kritis", a.critical),
                Lang::En => format!("🔴 {} critical alert(s)", a.critical),
            });
        }
    }
    if let Some(c) = &s.cash {
        if c.is_fresh(s.periods.today) && c.outlook_7d < Decimal::ZERO {
            parts.push(
                pick(
                    lang,
                    "kas diproyeksikan negatif dalam 7 hari",
                    "cash projected negative within 7 days",
                )
                .to_owned(),
            );
        }
    }
    if let Some(a) = &s.approvals {
        if a.total() > 0 {
            parts.push(match lang {
                Lang::Id => format!("{} dokumen menunggu approval Anda", a.total()),
                Lang::En => format!("{} document(s) await your approval", a.total()),
            });
        }
    }
    if let Some(g) = s.revenue.as_ref().and_then(Revenue::growth_pct) {
        parts.push(match lang {
            Lang::Id => format!("omzet bulan berjalan {}", signed_pct(g)),
            Lang::En => format!("revenue month to date {}", signed_pct(g)),
        });
    }
    if parts.is_empty() {
        return pick(lang, "Tidak ada yang mendesak.", "Nothing urgent.").to_owned();
    }
    let mut line = parts.join(" · ");
    if let Some(first) = line.get(..1) {
        let upper = first.to_uppercase();
        line.replace_range(..1, &upper);
    }
    line
}

/// The chat message: the bottom line first, then each line the asker may see.
pub fn text(s: &Summary, lang: Lang, timezone: chrono_tz::Tz) -> String {
    let at = s.as_of.with_timezone(&timezone).format("%d-%m-%Y %H:%M %Z");
    let mut lines = vec![
        match lang {
            Lang::Id => format!("📊 Ringkasan eksekutif, {at}"),
            Lang::En => format!("📊 Executive summary, {at}"),
        },
        format!("*{}*", bluf(s, lang)),
    ];
    let p = &s.periods;
    if let Some(r) = &s.revenue {
        let growth = r
            .growth_pct()
            .map(|g| format!(", {}", signed_pct(g)))
            .unwrap_or_default();
        lines.push(format!(
            "💰 {} {}: {} ({} {}{growth})",
            pick(lang, "Omzet", "Revenue"),
            p.month_to_date.label.get(lang),
            money(r.month_to_date, lang),
            p.compared_with.label.get(lang),
            money(r.compared_with, lang),
        ));
    }
    if let Some(o) = &s.orders {
        lines.push(match lang {
            Lang::Id => format!("🧾 Sales order: {} terbuka, {} pending", o.open, o.pending),
            Lang::En => format!("🧾 Sales orders: {} open, {} pending", o.open, o.pending),
        });
    }
    if let Some(a) = &s.approvals {
        let mut parts = Vec::new();
        if let Some(n) = a.purchase_orders {
            parts.push(format!("{n} PO"));
        }
        if let Some(n) = a.sales_orders {
            parts.push(format!("{n} SO"));
        }
        lines.push(format!(
            "✍️ {}: {}",
            pick(lang, "Menunggu approval Anda", "Awaiting your approval"),
            parts.join(", ")
        ));
    }
    for (name, prod) in [
        (p.day.label.get(lang), &s.production_day),
        (p.week_to_date.label.get(lang), &s.production_week),
    ] {
        if let Some(x) = prod {
            lines.push(format!(
                "🏭 {} {name}: output {}, reject {}, OEE {}",
                pick(lang, "Produksi", "Production"),
                qty(x.output),
                pct(x.reject_rate),
                pct(x.oee)
            ));
        }
    }
    if let Some(a) = &s.alerts {
        lines.push(match lang {
            Lang::Id => format!(
                "🚨 Alert aktif: {} ({} kritis, {} tinggi, {} sedang, {} rendah)",
                a.total(),
                a.critical,
                a.high,
                a.medium,
                a.low
            ),
            Lang::En => format!(
                "🚨 Open alerts: {} ({} critical, {} high, {} medium, {} low)",
                a.total(),
                a.critical,
                a.high,
                a.medium,
                a.low
            ),
        });
    }
    if let Some(v) = s.receivables_overdue {
        lines.push(format!(
            "📥 {}: {}",
            pick(lang, "Piutang overdue", "Overdue receivables"),
            rupiah_short(v)
        ));
    }
    if let Some(v) = s.payables_due_7d {
        lines.push(format!(
            "📤 {}: {}",
            pick(
                lang,
                "Hutang jatuh tempo 7 hari ke depan",
                "Payables due in the next 7 days"
            ),
            rupiah_short(v)
        ));
    }
    if let Some(c) = &s.cash {
        lines.push(match c.balance_dt {
            None => pick(
                lang,
                "🏦 Kas: saldo bank belum dimuat ke data warehouse",
                "🏦 Cash: no bank balances have been loaded into the warehouse",
            )
            .to_owned(),
            Some(d) => {
                let stale = if d < p.today {
                    format!(
                        " ({} {})",
                        pick(lang, "saldo per", "balance as of"),
                        d.format("%d-%m-%Y")
                    )
                } else {
                    String::new()
                };
                match lang {
                    Lang::Id => format!(
                        "🏦 Kas: {}{stale}; proyeksi 7 hari: {}",
                        rupiah_short(c.balance),
                        rupiah_short(c.outlook_7d)
                    ),
                    Lang::En => format!(
                        "🏦 Cash: {}{stale}; 7-day outlook: {}",
                        rupiah_short(c.balance),
                        rupiah_short(c.outlook_7d)
                    ),
                }
            }
        });
    }
    if lines.len() == 2 {
        lines.push(
            pick(
                lang,
                "Peran Anda tidak mencakup angka ringkasan ini.",
                "Your role does not cover the figures of this summary.",
            )
            .to_owned(),
        );
    }
    lines.join("\n")
}
