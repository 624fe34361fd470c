//! The executive summary (chat and `GET /api/v1/dashboard/summary`) and the 7-day cash outlook
//! with its detector. Expected figures come from SQL written here, on the demo data.

use std::time::Duration;

use chrono::NaiveDate;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;

use crate::admin_support::{get, signed_in, status_json};
use crate::helpers::{demo_preparer, eventually, now, spawn_app, text_delivery, texts_to};
use sentient_hub::executive::{cash, summary};

fn today() -> NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive()
}

const TIMEOUT: Duration = Duration::from_secs(10);

async fn num(db: &PgPool, sql: &str) -> Option<f64> {
    sqlx::query_scalar::<_, Option<Decimal>>(sql)
        .bind(today())
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
        .and_then(|d| d.to_f64())
}

/// The summary's figures as the test's own SQL computes them ($1 = today in Jakarta).
struct Expected {
    revenue_mtd: f64,
    revenue_before: f64,
    pending_orders: f64,
    open_orders: f64,
    pos_waiting: f64,
    oee_week: Option<f64>,
    output_week: f64,
    ar_overdue: f64,
    ap_due_7: f64,
    cash: f64,
    outlook: f64,
    critical: f64,
    open_alerts: f64,
}

async fn expected(db: &PgPool) -> Expected {
    const SO: &str = "from t_so where deleted_at is null and status not in ('Draft', 'Cancel')";
    let revenue_mtd = num(db, &format!("select coalesce(sum(total_amt), 0) {SO} and order_dt >= date_trunc('month', $1::date) and order_dt <= $1")).await.unwrap();
    // The same days of last month, cut at its end.
    let revenue_before = num(db, &format!(
        "select coalesce(sum(total_amt), 0) {SO}
           and order_dt >= date_trunc('month', $1::date) - interval '1 month'
           and order_dt < least(date_trunc('month', $1::date) - interval '1 month' + (extract(day from $1::date) || ' days')::interval,
                                date_trunc('month', $1::date))")).await.unwrap();
    let pending_orders = num(
        db,
        &format!("select count(*)::numeric {SO} and status = 'Pending'"),
    )
    .await
    .unwrap();
    let open_orders = num(
        db,
        &format!("select count(*)::numeric {SO} and status in ('Pending', 'Approved', 'Open')"),
    )
    .await
    .unwrap();
    let pos_waiting = num(db, "select count(*)::numeric from t_po where deleted_at is null and status = 'Pending Director' and $1::date is not null").await.unwrap();
    let week =
        "sl.deleted_at is null and sl.log_dt >= date_trunc('week', $1::date) and sl.log_dt <= $1";
    let output_week = num(
        db,
        &format!("select coalesce(sum(sl.output_qty), 0) from t_shift_log sl where {week}"),
    )
    .await
    .unwrap();
    // OEE = availability × performance × quality over the week's shift logs (480 planned min).
    let oee_week = num(db, &format!(
        "select round(100.0 * (sum(480 - sl.downtime_min) / nullif(480.0 * count(*), 0))
                * (sum(sl.output_qty) / nullif(sum(mc.cap_per_hr * (480 - sl.downtime_min) / 60.0), 0))
                * ((sum(sl.output_qty) - sum(sl.reject_qty)) / nullif(sum(sl.output_qty), 0)), 6)
         from t_shift_log sl join m_machine mc on mc.id = sl.machine_id where {week}")).await;
    let ar_overdue = num(db, "select coalesce(sum(amt), 0) from t_ar where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt < $1").await.unwrap();
    let ap_due_7 = num(db, "select coalesce(sum(amt), 0) from t_ap where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt between $1 and $1 + 7").await.unwrap();
    let cash = num(
        db,
        "select coalesce(sum(b.bal_amt), 0) from t_bank_bal b
         where b.deleted_at is null and b.bal_dt = (select max(c.bal_dt) from t_bank_bal c
               where c.bank_acc = b.bank_acc and c.deleted_at is null and c.bal_dt <= $1)",
    )
    .await
    .unwrap();
    let ar_due_7 = num(db, "select coalesce(sum(amt), 0) from t_ar where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt between $1 and $1 + 7").await.unwrap();
    let ap_by_7 = num(db, "select coalesce(sum(amt), 0) from t_ap where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt <= $1 + 7").await.unwrap();
    let critical = num(db, "select count(*)::numeric from ai_alert where acked_at is null and severity = 'Critical' and $1::date is not null").await.unwrap();
    let open_alerts = num(
        db,
        "select count(*)::numeric from ai_alert where acked_at is null and $1::date is not null",
    )
    .await
    .unwrap();
    Expected {
        revenue_mtd,
        revenue_before,
        pending_orders,
        open_orders,
        pos_waiting,
        oee_week,
        output_week,
        ar_overdue,
        ap_due_7,
        cash,
        outlook: cash + ar_due_7 - ap_by_7,
        critical,
        open_alerts,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.01_f64.max(b.abs() * 1e-9)
}

fn f(d: Option<Decimal>) -> f64 {
    d.and_then(|d| d.to_f64()).unwrap_or(f64::NAN)
}

#[tokio::test]
async fn the_directors_summary_holds_every_figure_as_the_database_has_it() {
    let (_db, db, _prep) = demo_preparer().await;
    let e = expected(&db).await;
    assert!(
        e.revenue_mtd > 0.0 && e.cash > 0.0 && e.pos_waiting > 0.0,
        "the demo has data"
    );
    let director = crate::helpers::asker(&db, "DIRECTOR").await;
    let permissions: Vec<String> = director.permissions.iter().cloned().collect();
    let s = summary::compute(&db, today(), summary::Basis::Now, &permissions, TIMEOUT)
        .await
        .unwrap();
    let r = s.revenue.as_ref().expect("a director sees revenue");
    assert!(
        close(f(r.month_to_date), e.revenue_mtd),
        "{r:?} vs {}",
        e.revenue_mtd
    );
    assert!(
        close(f(r.compared_with), e.revenue_before),
        "{r:?} vs {}",
        e.revenue_before
    );
    let o = s.orders.as_ref().unwrap();
    assert_eq!(
        (o.pending as f64, o.open as f64),
        (e.pending_orders, e.open_orders)
    );
    let a = s.approvals.as_ref().unwrap();
    assert_eq!(a.purchase_orders.map(|n| n as f64), Some(e.pos_waiting));
    assert_eq!(a.sales_orders.map(|n| n as f64), Some(e.pending_orders));
    let w = s.production_week.as_ref().unwrap();
    assert!(close(f(w.output), e.output_week), "{w:?}");
    match e.oee_week {
        Some(oee) => assert!(close(f(w.oee), oee), "{w:?} vs {oee}"),
        None => assert_eq!(w.oee, None),
    }
    assert!(close(f(s.receivables_overdue), e.ar_overdue));
    assert!(close(f(s.payables_due_7d), e.ap_due_7));
    let c = s.cash.as_ref().unwrap();
    assert_eq!(c.balance_dt, Some(today()));
    assert!(
        close(c.balance.to_f64().unwrap(), e.cash),
        "{c:?} vs {}",
        e.cash
    );
    assert!(
        close(c.outlook_7d.to_f64().unwrap(), e.outlook),
        "{c:?} vs {}",
        e.outlook
    );
    let al = s.alerts.as_ref().unwrap();
    assert_eq!(
        (al.critical as f64, al.total() as f64),
        (e.critical, e.open_alerts)
    );

    // The chat message: the bottom line first, then the lines with the same figures.
    let text = summary::text(&s, sentient_hub::texts::Lang::Id, chrono_tz::Asia::Jakarta);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("📊 Ringkasan eksekutif"), "{text}");
    assert!(
        lines[1].starts_with('*') && lines[1].contains("alert kritis"),
        "{text}"
    );
    let money = |v: f64| sentient_hub::metrics::format::rupiah_short(Decimal::try_from(v).unwrap());
    for needle in [
        "Omzet ".to_owned(),
        money(e.revenue_mtd),
        money(e.revenue_before),
        format!("{} terbuka, {} pending", e.open_orders, e.pending_orders),
        format!("{} PO, {} SO", e.pos_waiting, e.pending_orders),
        format!("Piutang overdue: {}", money(e.ar_overdue)),
        format!("Hutang jatuh tempo 7 hari ke depan: {}", money(e.ap_due_7)),
        format!("Kas: {}", money(e.cash)),
        format!("proyeksi 7 hari: {}", money(e.outlook)),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in\n{text}");
    }
}

#[tokio::test]
async fn each_line_needs_its_own_permissions() {
    let (_db, db, _prep) = demo_preparer().await;
    let today = today();
    // An operator reads production and alerts, no money: no revenue, orders, cash or approvals.
    let operator = crate::helpers::asker(&db, "OPERATOR").await;
    let permissions: Vec<String> = operator.permissions.iter().cloned().collect();
    let s = summary::compute(&db, today, summary::Basis::Now, &permissions, TIMEOUT)
        .await
        .unwrap();
    assert!(s.revenue.is_none() && s.orders.is_none() && s.approvals.is_none());
    assert!(s.cash.is_none() && s.receivables_overdue.is_none() && s.payables_due_7d.is_none());
    assert!(s.production_week.is_some() && s.alerts.is_some());
    // Only the modules the role reads (WO, QC, MAINT, and SYS with ALERT.READ): the demo's open
    // cash (FIN) and stock (INV) alerts are not counted for them.
    let readable = num(&db, "select count(*)::numeric from ai_alert where acked_at is null and module in ('WO', 'QC', 'MAINT', 'SYS') and $1::date is not null").await.unwrap();
    assert_eq!(s.alerts.as_ref().unwrap().total() as f64, readable);
    let text = summary::text(&s, sentient_hub::texts::Lang::En, chrono_tz::Asia::Jakarta);
    for absent in [
        "Rp",
        "Revenue",
        "Cash",
        "approval",
        "receivables",
        "Payables",
    ] {
        assert!(!text.contains(absent), "{absent:?} in\n{text}");
    }
    assert!(text.contains("Production this week"), "{text}");
    // A sales manager reads revenue and finance, approves nothing.
    let sales = crate::helpers::asker(&db, "MANAGER_SALES").await;
    let permissions: Vec<String> = sales.permissions.iter().cloned().collect();
    let s = summary::compute(&db, today, summary::Basis::Now, &permissions, TIMEOUT)
        .await
        .unwrap();
    assert!(s.revenue.is_some() && s.cash.is_some());
    // MANAGER_SALES has the whole SO module, SO.APPROVE included: the POs are not theirs.
    let a = s.approvals.as_ref().expect("SO.APPROVE");
    assert_eq!(a.purchase_orders, None);
    assert!(a.sales_orders.is_some());
}

#[tokio::test]
async fn the_dashboard_api_answers_the_blueprints_shape_for_the_callers_permissions() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    let e = expected(&app.db).await;
    let director = signed_in(&app, "dash.director", "DIRECTOR").await;
    let (status, body) =
        status_json(get(&app, "/api/v1/dashboard/summary", &director.access).await).await;
    assert_eq!(status, 200, "{body}");
    let n = |k: &str| body[k].as_f64().unwrap_or_else(|| panic!("{k} in {body}"));
    assert!(close(n("revenue_mtd"), e.revenue_mtd), "{body}");
    assert!(close(n("revenue_last_month"), e.revenue_before), "{body}");
    let growth = (e.revenue_mtd / e.revenue_before - 1.0) * 100.0;
    assert!(
        (n("revenue_growth_pct") - growth).abs() <= 0.051,
        "{body} vs {growth}"
    );
    assert_eq!(n("pending_orders"), e.pending_orders);
    assert_eq!(n("pending_approvals"), e.pending_orders + e.pos_waiting);
    assert!(close(n("cash_balance"), e.cash), "{body}");
    assert!(close(n("cash_outlook_7_days"), e.outlook), "{body}");
    assert!(close(n("ar_overdue"), e.ar_overdue), "{body}");
    assert!(close(n("ap_due_7_days"), e.ap_due_7), "{body}");
    assert_eq!(n("active_alerts"), e.open_alerts);
    assert_eq!(n("alerts_critical"), e.critical);
    assert_eq!(body["periods"]["today"], today().to_string());
    assert!(body["as_of"].is_string());
    match e.oee_week {
        Some(oee) => assert!((n("production_oee") - oee).abs() <= 0.051, "{body}"),
        None => assert_eq!(body["production_oee"], Value::Null),
    }

    // A production manager: no money fields at all (omitted, not null).
    let prod = signed_in(&app, "dash.prod", "MANAGER_PROD").await;
    let (status, body) =
        status_json(get(&app, "/api/v1/dashboard/summary", &prod.access).await).await;
    assert_eq!(status, 200, "{body}");
    for absent in [
        "cash_balance",
        "cash_outlook_7_days",
        "ar_overdue",
        "ap_due_7_days",
        "pending_approvals",
    ] {
        assert!(body.get(absent).is_none(), "{absent} in {body}");
    }
    assert!(
        body.get("production_oee").is_some() && body.get("revenue_mtd").is_some(),
        "{body}"
    );

    // Without a token: 401.
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/dashboard/summary", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn ringkasan_on_whatsapp_is_answered_with_the_summary_and_logged() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    app.stages.catalog.reload(&app.db).await.unwrap();
    let director = app.user_with_role("DIRECTOR", true).await;
    let operator = app.user_with_role("OPERATOR", true).await;
    for (who, text) in [
        (&director, "ringkasan eksekutif hari ini"),
        (&operator, "ringksan"),
    ] {
        let body = text_delivery(who, &format!("wamid.sum.{who}"), text, now());
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    let answered = eventually(Duration::from_secs(30), || async {
        app.settle().await;
        !texts_to(&app, &director).is_empty() && !texts_to(&app, &operator).is_empty()
    })
    .await;
    assert!(answered, "both answered");
    let to_director = texts_to(&app, &director).join("\n");
    assert!(
        to_director.starts_with("📊 Ringkasan eksekutif"),
        "{to_director}"
    );
    assert!(to_director.contains("Kas: Rp"), "{to_director}");
    let to_operator = texts_to(&app, &operator).join("\n");
    assert!(
        to_operator.starts_with("📊 Ringkasan eksekutif"),
        "{to_operator}"
    );
    assert!(!to_operator.contains("Rp"), "{to_operator}");
    assert_eq!(
        app.count("select count(*) from ai_chat where intent = 'executive_summary' and outcome = 'fallback'").await,
        2
    );
}

/// A fresh database with only what the cash detector reads: one account and the flows.
#[tokio::test]
async fn the_cash_detector_raises_a_negative_outlook_once_and_not_on_stale_or_missing_balances() {
    let app = spawn_app().await;
    let db = &app.db;
    let today = today();
    let raised = || cash::detect(db, today, TIMEOUT);
    // No balance loaded at all: payables alone are no "negative cash".
    sqlx::query("insert into m_vendor (code, name) values ('VND-T1', 'Vendor Test')")
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "insert into t_ap (vendor_id, amt, due_dt, status)
         select id, 500000000, $1::date + 3, 'Open' from m_vendor where code = 'VND-T1'",
    )
    .bind(today)
    .execute(db)
    .await
    .unwrap();
    assert_eq!(raised().await.unwrap(), 0);
    // A stale balance (10 days old): still nothing.
    sqlx::query("insert into t_bank_bal (bank_acc, bank_name, bal_dt, bal_amt) values ('111', 'BCA', $1::date - 10, 100000000)")
        .bind(today)
        .execute(db)
        .await
        .unwrap();
    assert_eq!(raised().await.unwrap(), 0);
    // Today's balance: 100 m + 0 due in − 500 m due out = −400 m.
    sqlx::query("insert into t_bank_bal (bank_acc, bank_name, bal_dt, bal_amt) values ('111', 'BCA', $1, 100000000)")
        .bind(today)
        .execute(db)
        .await
        .unwrap();
    assert_eq!(raised().await.unwrap(), 1);
    let (severity, message, projected): (String, String, Decimal) = sqlx::query_as(
        "select severity, message, (payload->>'projected')::numeric from ai_alert where module = 'FIN' and alert_type = 'CASHFLOW'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(severity, "Critical");
    assert_eq!(projected, Decimal::from(-400_000_000));
    assert!(
        message.starts_with("Saldo kas negatif dalam 7 hari"),
        "{message}"
    );
    assert!(message.contains("proyeksi -Rp 400.000.000"), "{message}");
    // The same day again, and while it is open: nothing more.
    assert_eq!(raised().await.unwrap(), 0);
    sqlx::query("update ai_alert set is_sent = true")
        .execute(db)
        .await
        .unwrap();
    assert_eq!(
        cash::detect(db, today + chrono::Duration::days(1), TIMEOUT)
            .await
            .unwrap(),
        0
    );
    // A positive outlook raises nothing.
    sqlx::query("update ai_alert set acked_at = now()")
        .execute(db)
        .await
        .unwrap();
    sqlx::query("update t_bank_bal set bal_amt = 900000000 where bal_dt = $1")
        .bind(today)
        .execute(db)
        .await
        .unwrap();
    assert_eq!(
        cash::detect(db, today + chrono::Duration::days(1), TIMEOUT)
            .await
            .unwrap(),
        0
    );
}
