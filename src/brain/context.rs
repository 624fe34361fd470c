//! Live context: for each intent, parameterised read-only SQL over the warehouse, producing a
//! compact snapshot (JSON for the prompt, and a ready answer in both languages for when the LLM
//! is not used), with its as-of time. The LLM never writes SQL; the asker's permission was
//! checked before any of this runs.

// Query rows are read as tuples right next to their SQL, which keeps each query readable as one
// piece; naming a struct for every shape would scatter them.
#![allow(clippy::type_complexity)]

use std::time::Duration;

use anyhow::Context as _;
use chrono::NaiveDate;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::brain::intent::Intent;
use crate::domain::production::REJECT_THRESHOLD_PCT;
use crate::metrics::format::{number, percent, rupiah, rupiah_short};
use crate::texts::Lang;

/// How long the cash outlook's reads may take.
const CASH_TIMEOUT: Duration = Duration::from_secs(5);

/// A date range: `from` inclusive, `to` exclusive, with how to call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub label_id: String,
    pub label_en: String,
}

/// What the question named.
#[derive(Debug, Clone, Default)]
pub struct Params {
    /// A document number (`SO-202412-0002`, `DO-…`, `PO-…`, `WO-…`).
    pub doc: Option<String>,
    /// A master code (`CUST-003`, `ITM-005`, `VND-001`, `MCH-003`, `WH-B1`).
    pub code: Option<String>,
    /// The period asked about.
    pub period: Option<Window>,
}

/// Text in both languages; the asker's picks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bilingual {
    pub id: String,
    pub en: String,
}

impl Bilingual {
    pub fn new(id: impl Into<String>, en: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            en: en.into(),
        }
    }

    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Id => &self.id,
            Lang::En => &self.en,
        }
    }
}

/// The data behind an answer.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the data was read, in the factory's time zone.
    pub as_of: String,
    /// Structured data for the prompt.
    pub data: Value,
    /// The deterministic answer from the same data.
    pub answer: Bilingual,
}

/// What the context step came to.
#[derive(Debug, Clone)]
pub enum Built {
    /// Data to answer from.
    Data(Snapshot),
    /// Something must be named first ("Order yang mana?"), with suggestions from the data.
    Clarify(Bilingual),
    /// The thing asked about does not exist: say so, never invent.
    NotFound(Bilingual),
}

/// Builds the context, retrying the database three times with exponential backoff (blueprint
/// 6.A) before giving up.
pub async fn build(
    db: &PgPool,
    intent: Intent,
    params: &Params,
    permissions: &[String],
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match build_once(db, intent, params, permissions, today, as_of).await {
            Ok(built) => return Ok(built),
            Err(e) if attempt < 3 => {
                tracing::warn!(error = %format!("{e:#}"), attempt, "context query failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn build_once(
    db: &PgPool,
    intent: Intent,
    p: &Params,
    permissions: &[String],
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let may = |code: &str| permissions.iter().any(|p| p == code);
    match intent {
        Intent::OrderStatus => order_status(db, p, may("FIN.READ"), may("DO.READ"), as_of).await,
        Intent::DeliveryStatus => delivery_status(db, p, as_of).await,
        Intent::SalesSummary => sales_summary(db, p, today, as_of).await,
        Intent::StockLevel => stock_level(db, p, as_of).await,
        Intent::ProductionStatus => production_status(db, p, today, as_of).await,
        Intent::MachineHealth => machine_health(db, p, today, as_of).await,
        Intent::Receivables => receivables(db, p, today, as_of).await,
        Intent::Payables => payables(db, today, as_of).await,
        Intent::PurchaseStatus => purchase_status(db, p, may("FIN.READ"), as_of).await,
        Intent::CashPosition => cash_position(db, permissions, today, as_of).await,
        Intent::Alerts | Intent::AlertMute => alerts(db, permissions, as_of).await,
        Intent::VendorScore => vendor_score(db, p, today, as_of).await,
        Intent::CustomerInsight => customer_insight(db, p, may("FIN.READ"), today, as_of).await,
        Intent::Help
        | Intent::OtpCode
        | Intent::GeneralQuestion
        | Intent::ExecutiveSummary
        | Intent::Digest
        | Intent::Approvals
        | Intent::Metric => Ok(Built::Data(Snapshot {
            as_of: as_of.to_owned(),
            data: json!({}),
            answer: help(),
        })),
    }
}

/// What the hub can be asked.
pub fn help() -> Bilingual {
    Bilingual::new(
        "Saya bisa menjawab dari data pabrik, misalnya:\n• status SO-202412-0002\n• omzet bulan ini vs bulan lalu\n• stok motor dc\n• piutang overdue\n• hutang jatuh tempo minggu ini\n• reject rate MCH-003 minggu ini\n• status PO / pengiriman\n• alert aktif\n• skor vendor, profil customer\n• ringkasan eksekutif; “digest jam 6” untuk ringkasan tiap pagi",
        "I can answer from the factory's data, for example:\n• status of SO-202412-0002\n• revenue this month vs last month\n• stock of motor dc\n• overdue receivables\n• payables due this week\n• reject rate of MCH-003 this week\n• PO / delivery status\n• active alerts\n• vendor scores, customer profiles\n• executive summary; “digest at 6” for a summary every morning",
    )
}

fn data(as_of: &str, data: Value, answer: Bilingual) -> anyhow::Result<Built> {
    Ok(Built::Data(Snapshot {
        as_of: as_of.to_owned(),
        data,
        answer,
    }))
}

fn f64_of(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Rejects as a percentage of output (shift logs count rejects inside the output); 0 without output.
fn reject_rate(reject: Decimal, output: Decimal) -> f64 {
    if output.is_zero() {
        0.0
    } else {
        f64_of(reject) / f64_of(output) * 100.0
    }
}

fn date(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%d-%m-%Y").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// A sales order; its invoice status only for a caller with `FIN.READ` (`finance`), its
/// deliveries only with `DO.READ` (`deliveries_too`): neither is read otherwise.
async fn order_status(
    db: &PgPool,
    p: &Params,
    finance: bool,
    deliveries_too: bool,
    as_of: &str,
) -> anyhow::Result<Built> {
    let Some(doc) = p.doc.as_deref().filter(|d| d.starts_with("SO-")) else {
        let recent: Vec<(String, String)> = sqlx::query_as(
            "select s.doc_no, c.name from t_so s join m_cust c on c.id = s.cust_id
             where s.deleted_at is null and s.status in ('Pending', 'Approved', 'Open')
             order by s.order_dt desc, s.doc_no desc limit 3",
        )
        .fetch_all(db)
        .await
        .context("suggesting orders")?;
        let list = suggestions(&recent);
        return Ok(Built::Clarify(Bilingual::new(
            format!("Order yang mana? Sebutkan nomor SO-nya, misalnya:\n{list}"),
            format!("Which order? Give its SO number, for example:\n{list}"),
        )));
    };
    let row: Option<(
        String,
        String,
        NaiveDate,
        Option<NaiveDate>,
        Decimal,
        String,
        Option<String>,
        Option<String>,
    )> = sqlx::query_as(
        "select s.doc_no, s.status, s.order_dt, s.deadline_dt, s.total_amt, c.name,
                    case when $3 then
                        (select string_agg(d.doc_no || ' (' || d.status || ')', ', ' order by d.doc_no)
                         from t_do d where d.so_id = s.id and d.deleted_at is null) end,
                    case when $2 then (select ar.status from t_ar ar where ar.so_id = s.id) end
             from t_so s join m_cust c on c.id = s.cust_id
             where s.doc_no = $1 and s.deleted_at is null",
    )
    .bind(doc)
    .bind(finance)
    .bind(deliveries_too)
    .fetch_optional(db)
    .await
    .context("reading the order")?;
    let Some((no, status, order_dt, deadline, total, customer, deliveries, ar)) = row else {
        return Ok(not_found(doc));
    };
    let lines: Vec<(String, Decimal, String)> = sqlx::query_as(
        "select i.name, d.qty, i.uom from t_so_detail d join m_item i on i.id = d.item_id
         join t_so s on s.id = d.so_id where s.doc_no = $1 order by i.code",
    )
    .bind(doc)
    .fetch_all(db)
    .await
    .context("reading order lines")?;
    let items = lines
        .iter()
        .map(|(name, qty, uom)| format!("{name} {} {uom}", number(*qty)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut fields = json!({ "order": no, "status": status, "customer": customer,
        "order_date": order_dt, "deadline": deadline, "total_rp": total, "items": items });
    let mut id = format!(
        "📦 {no} — {customer}\nStatus: {status}\nTanggal order: {}, tenggat: {}\nNilai: {}\nItem: {items}",
        date(Some(order_dt)),
        date(deadline),
        rupiah(total)
    );
    let mut en = format!(
        "📦 {no} — {customer}\nStatus: {status}\nOrdered: {}, due: {}\nValue: {}\nItems: {items}",
        date(Some(order_dt)),
        date(deadline),
        rupiah(total)
    );
    if deliveries_too {
        let deliveries = deliveries.unwrap_or_else(|| "-".to_owned());
        id.push_str(&format!("\nPengiriman: {deliveries}"));
        en.push_str(&format!("\nDeliveries: {deliveries}"));
        fields["deliveries"] = json!(deliveries);
    }
    if finance {
        let ar = ar.unwrap_or_else(|| "-".to_owned());
        id.push_str(&format!("\nTagihan: {ar}"));
        en.push_str(&format!("\nInvoice: {ar}"));
        fields["invoice_status"] = json!(ar);
    }
    data(as_of, fields, Bilingual::new(id, en))
}

async fn delivery_status(db: &PgPool, p: &Params, as_of: &str) -> anyhow::Result<Built> {
    let doc = p
        .doc
        .as_deref()
        .filter(|d| d.starts_with("DO-") || d.starts_with("SO-"));
    let Some(doc) = doc else {
        let open: Vec<(String, String)> = sqlx::query_as(
            "select d.doc_no, c.name from t_do d join t_so s on s.id = d.so_id
             join m_cust c on c.id = s.cust_id
             where d.deleted_at is null and d.status in ('Pending', 'Shipped', 'In Transit')
             order by d.ship_dt desc nulls last, d.doc_no desc limit 3",
        )
        .fetch_all(db)
        .await
        .context("suggesting deliveries")?;
        let list = suggestions(&open);
        return Ok(Built::Clarify(Bilingual::new(
            format!("Pengiriman yang mana? Sebutkan nomor DO atau SO-nya, misalnya:\n{list}"),
            format!("Which delivery? Give its DO or SO number, for example:\n{list}"),
        )));
    };
    let rows: Vec<(
        String,
        String,
        String,
        Option<NaiveDate>,
        Option<NaiveDate>,
        Option<NaiveDate>,
        Option<String>,
    )> = sqlx::query_as(
        "select d.doc_no, s.doc_no, d.status, d.ship_dt, d.eta_dt, d.actual_dt,
                    coalesce(e.name, d.driver_name)
             from t_do d join t_so s on s.id = d.so_id left join m_emp e on e.id = d.driver_id
             where d.deleted_at is null and (d.doc_no = $1 or s.doc_no = $1)
             order by d.doc_no",
    )
    .bind(doc)
    .fetch_all(db)
    .await
    .context("reading deliveries")?;
    if rows.is_empty() {
        return Ok(not_found(doc));
    }
    let mut id = Vec::new();
    let mut en = Vec::new();
    let mut items = Vec::new();
    for (no, so, status, ship, eta, actual, driver) in &rows {
        let late = matches!((eta, actual), (Some(e), Some(a)) if a > e);
        let driver = driver.clone().unwrap_or_else(|| "-".to_owned());
        id.push(format!(
            "🚚 {no} (untuk {so}): {status}; kirim {}, ETA {}, tiba {}{}; sopir {driver}",
            date(*ship),
            date(*eta),
            date(*actual),
            if late { " — TERLAMBAT" } else { "" }
        ));
        en.push(format!(
            "🚚 {no} (for {so}): {status}; shipped {}, ETA {}, arrived {}{}; driver {driver}",
            date(*ship),
            date(*eta),
            date(*actual),
            if late { " — LATE" } else { "" }
        ));
        items.push(
            json!({ "delivery": no, "order": so, "status": status, "ship_date": ship,
            "eta": eta, "arrived": actual, "late": late, "driver": driver }),
        );
    }
    data(
        as_of,
        json!({ "deliveries": items }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

/// The comparison period of `w`: the whole previous month for a month, else the same length
/// immediately before.
fn previous(w: &Window) -> (NaiveDate, NaiveDate) {
    use chrono::Datelike;
    if w.from.day() == 1 {
        let prev_start = w.from - chrono::Months::new(1);
        if (w.to - w.from).num_days() <= 31 {
            return (prev_start, w.from);
        }
    }
    let len = w.to - w.from;
    (w.from - len, w.from)
}

async fn sales_summary(
    db: &PgPool,
    p: &Params,
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let w = p.period.clone().unwrap_or_else(|| this_month(today));
    let (pf, pt) = previous(&w);
    let (cur, cur_n, prev, prev_n): (Decimal, i64, Decimal, i64) = sqlx::query_as(
        "select coalesce(sum(total_amt) filter (where order_dt >= $1 and order_dt < $2), 0),
                count(*) filter (where order_dt >= $1 and order_dt < $2),
                coalesce(sum(total_amt) filter (where order_dt >= $3 and order_dt < $4), 0),
                count(*) filter (where order_dt >= $3 and order_dt < $4)
         from t_so where deleted_at is null and status not in ('Cancel', 'Draft')
           and order_dt >= least($1, $3) and order_dt < greatest($2, $4)",
    )
    .bind(w.from)
    .bind(w.to)
    .bind(pf)
    .bind(pt)
    .fetch_one(db)
    .await
    .context("summing sales")?;
    let top: Vec<(String, Decimal)> = sqlx::query_as(
        "select c.name, sum(s.total_amt) from t_so s join m_cust c on c.id = s.cust_id
         where s.deleted_at is null and s.status not in ('Cancel', 'Draft')
           and s.order_dt >= $1 and s.order_dt < $2
         group by c.name order by 2 desc limit 3",
    )
    .bind(w.from)
    .bind(w.to)
    .fetch_all(db)
    .await
    .context("ranking customers")?;
    let growth = if prev.is_zero() {
        None
    } else {
        Some((f64_of(cur) - f64_of(prev)) / f64_of(prev) * 100.0)
    };
    let growth_txt = growth
        .map(|g| format!("{}{}", if g >= 0.0 { "+" } else { "" }, percent(g)))
        .unwrap_or_else(|| "-".to_owned());
    let top_txt = top
        .iter()
        .map(|(n, v)| format!("{n} {}", rupiah_short(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    data(
        as_of,
        json!({ "period": w.label_en, "from": w.from, "to_exclusive": w.to, "revenue_rp": cur,
                "orders": cur_n, "previous_from": pf, "previous_to_exclusive": pt,
                "previous_revenue_rp": prev, "previous_orders": prev_n,
                "growth_pct": growth.map(|g| (g * 10.0).round() / 10.0), "top_customers": top_txt }),
        Bilingual::new(
            format!("💰 Omzet {}: {} ({cur_n} order)\nPeriode sebelumnya: {} ({prev_n} order)\nPerubahan: {growth_txt}\nTop customer: {top_txt}",
                w.label_id, rupiah(cur), rupiah(prev)),
            format!("💰 Revenue {}: {} ({cur_n} orders)\nPrevious period: {} ({prev_n} orders)\nChange: {growth_txt}\nTop customers: {top_txt}",
                w.label_en, rupiah(cur), rupiah(prev)),
        ),
    )
}

async fn stock_level(db: &PgPool, p: &Params, as_of: &str) -> anyhow::Result<Built> {
    let code = p.code.as_deref().filter(|c| c.starts_with("ITM-"));
    let rows: Vec<(
        String,
        String,
        String,
        String,
        Decimal,
        Decimal,
        Option<Decimal>,
    )> = sqlx::query_as(
        "select i.code, i.name, i.uom, w.code, v.qty_on_hand, v.qty_reserved, i.min_stock
         from t_inv v join m_item i on i.id = v.item_id join m_wh w on w.id = v.wh_id
         where i.deleted_at is null and ($1::text is null or i.code = $1)
         order by i.code, w.code",
    )
    .bind(code)
    .fetch_all(db)
    .await
    .context("reading stock")?;
    if rows.is_empty() {
        return Ok(not_found(code.unwrap_or("stok")));
    }
    let mut id = Vec::new();
    let mut en = Vec::new();
    let mut items = Vec::new();
    for (code, name, uom, wh, on_hand, reserved, min) in &rows {
        let available = on_hand - reserved;
        let (flag, word_id, word_en) = if available.is_sign_negative() && !available.is_zero() {
            ("🔴", "oversold", "oversold")
        } else if min.is_some_and(|m| available < m) {
            ("🟡", "di bawah minimum", "below minimum")
        } else {
            ("🟢", "aman", "OK")
        };
        id.push(format!(
            "{flag} {name} ({code}) di {wh}: tersedia {} {uom} (fisik {}, dipesan {}) — {word_id}",
            number(available),
            number(*on_hand),
            number(*reserved)
        ));
        en.push(format!("{flag} {name} ({code}) in {wh}: {} {uom} available ({} on hand, {} reserved) — {word_en}",
            number(available), number(*on_hand), number(*reserved)));
        items.push(
            json!({ "item": code, "name": name, "warehouse": wh, "uom": uom, "on_hand": on_hand,
            "reserved": reserved, "available": available, "min_stock": min, "state": word_en }),
        );
    }
    data(
        as_of,
        json!({ "stock": items }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

async fn production_status(
    db: &PgPool,
    p: &Params,
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let code = p.code.as_deref().filter(|c| c.starts_with("MCH-"));
    let w = p.period.clone().unwrap_or_else(|| last_days(today, 7));
    let rows: Vec<(String, String, Decimal, Decimal, i64)> = sqlx::query_as(
        "select m.code, m.name, coalesce(sum(s.output_qty), 0), coalesce(sum(s.reject_qty), 0),
                coalesce(sum(s.downtime_min), 0)::bigint
         from m_machine m left join t_shift_log s on s.machine_id = m.id
              and s.log_dt >= $1 and s.log_dt < $2
         where m.deleted_at is null and ($3::text is null or m.code = $3)
         group by m.code, m.name order by m.code",
    )
    .bind(w.from)
    .bind(w.to)
    .bind(code)
    .fetch_all(db)
    .await
    .context("reading shift logs")?;
    if rows.is_empty() {
        return Ok(not_found(code.unwrap_or("mesin")));
    }
    let wos: Vec<(String, String, String, Decimal, Decimal)> = sqlx::query_as(
        "select w.doc_no, i.name, m.code, w.plan_qty, w.actual_qty from t_wo w
         join m_item i on i.id = w.item_id join m_machine m on m.id = w.machine_id
         where w.deleted_at is null and w.status = 'In Progress' and ($1::text is null or m.code = $1)
         order by w.start_dt desc limit 5",
    )
    .bind(code)
    .fetch_all(db)
    .await
    .context("reading work orders")?;
    let mut id = vec![format!("🏭 Produksi {}:", w.label_id)];
    let mut en = vec![format!("🏭 Production {}:", w.label_en)];
    let mut machines = Vec::new();
    for (code, name, output, reject, downtime) in &rows {
        let rate = reject_rate(*reject, *output);
        let warn = if rate > REJECT_THRESHOLD_PCT {
            " ⚠️"
        } else {
            ""
        };
        id.push(format!(
            "• {code} {name}: output {}, reject {} ({}){warn}, downtime {downtime} menit",
            number(*output),
            number(*reject),
            percent(rate)
        ));
        en.push(format!(
            "• {code} {name}: output {}, reject {} ({}){warn}, downtime {downtime} min",
            number(*output),
            number(*reject),
            percent(rate)
        ));
        machines.push(
            json!({ "machine": code, "name": name, "output": output, "reject": reject,
            "reject_rate_pct": (rate * 10.0).round() / 10.0, "downtime_min": downtime }),
        );
    }
    for (no, item, machine, plan, actual) in &wos {
        id.push(format!(
            "• {no} {item} di {machine}: {} dari {}",
            number(*actual),
            number(*plan)
        ));
        en.push(format!(
            "• {no} {item} on {machine}: {} of {}",
            number(*actual),
            number(*plan)
        ));
    }
    let wo_json: Vec<Value> = wos.iter().map(|(no, item, m, plan, actual)| json!({ "work_order": no, "item": item, "machine": m, "plan": plan, "actual": actual })).collect();
    data(
        as_of,
        json!({ "period": w.label_en, "from": w.from, "to_exclusive": w.to, "machines": machines, "work_orders_in_progress": wo_json }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

async fn machine_health(
    db: &PgPool,
    p: &Params,
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let code = p.code.as_deref().filter(|c| c.starts_with("MCH-"));
    let w = p.period.clone().unwrap_or_else(|| last_days(today, 7));
    let rows: Vec<(String, String, Option<NaiveDate>, Option<Decimal>, Decimal, Decimal, i64, Option<String>)> = sqlx::query_as(
        "select m.code, m.name, m.last_maint_dt, m.run_hours,
                coalesce(sum(s.output_qty), 0), coalesce(sum(s.reject_qty), 0),
                coalesce(sum(s.downtime_min), 0)::bigint,
                (select string_agg(x.error_code || ' ×' || x.n, ', ') from (
                    select error_code, count(*) n from t_shift_log
                    where machine_id = m.id and log_dt >= $1 and log_dt < $2 and error_code is not null
                    group by error_code order by 2 desc limit 3) x)
         from m_machine m left join t_shift_log s on s.machine_id = m.id
              and s.log_dt >= $1 and s.log_dt < $2
         where m.deleted_at is null and ($3::text is null or m.code = $3)
         group by m.id, m.code, m.name order by m.code",
    )
    .bind(w.from)
    .bind(w.to)
    .bind(code)
    .fetch_all(db)
    .await
    .context("reading machine health")?;
    if rows.is_empty() {
        return Ok(not_found(code.unwrap_or("mesin")));
    }
    let mut id = vec![format!("🔧 Kondisi mesin, {}:", w.label_id)];
    let mut en = vec![format!("🔧 Machine health, {}:", w.label_en)];
    let mut machines = Vec::new();
    for (code, name, last_maint, hours, output, reject, downtime, errors) in &rows {
        let rate = reject_rate(*reject, *output);
        let errors = errors.clone().unwrap_or_else(|| "-".to_owned());
        let warn = if rate > REJECT_THRESHOLD_PCT {
            format!(" ⚠️ di atas ambang {}", percent(REJECT_THRESHOLD_PCT))
        } else {
            String::new()
        };
        let warn_en = if rate > REJECT_THRESHOLD_PCT {
            format!(" ⚠️ above the {} threshold", percent(REJECT_THRESHOLD_PCT))
        } else {
            String::new()
        };
        id.push(format!("• {code} {name}: reject {}{warn}, downtime {downtime} menit, error {errors}, servis terakhir {}", percent(rate), date(*last_maint)));
        en.push(format!("• {code} {name}: reject {}{warn_en}, downtime {downtime} min, errors {errors}, last service {}", percent(rate), date(*last_maint)));
        machines.push(json!({ "machine": code, "name": name, "reject_rate_pct": (rate * 10.0).round() / 10.0,
            "downtime_min": downtime, "errors": errors, "last_maintenance": last_maint, "run_hours": hours }));
    }
    data(
        as_of,
        json!({ "period": w.label_en, "machines": machines, "reject_threshold_pct": REJECT_THRESHOLD_PCT }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

async fn receivables(
    db: &PgPool,
    p: &Params,
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let code = p.code.as_deref().filter(|c| c.starts_with("CUST-"));
    let rows: Vec<(String, String, i64, Decimal, i32)> = sqlx::query_as(
        "select c.code, c.name, count(*), sum(ar.amt), max($1 - ar.due_dt)
         from t_ar ar join m_cust c on c.id = ar.cust_id
         where ar.paid_dt is null and ar.status <> 'Paid' and ar.due_dt < $1
           and ($2::text is null or c.code = $2)
         group by c.code, c.name order by 4 desc",
    )
    .bind(today)
    .bind(code)
    .fetch_all(db)
    .await
    .context("reading overdue receivables")?;
    let (open_total,): (Decimal,) = sqlx::query_as(
        "select coalesce(sum(ar.amt), 0) from t_ar ar join m_cust c on c.id = ar.cust_id
         where ar.paid_dt is null and ar.status <> 'Paid' and ($1::text is null or c.code = $1)",
    )
    .bind(code)
    .fetch_one(db)
    .await
    .context("reading open receivables")?;
    let overdue: Decimal = rows.iter().map(|r| r.3).sum();
    let mut id = vec![format!(
        "📑 Piutang terbuka: {}; overdue: {}",
        rupiah(open_total),
        rupiah(overdue)
    )];
    let mut en = vec![format!(
        "📑 Open receivables: {}; overdue: {}",
        rupiah(open_total),
        rupiah(overdue)
    )];
    let mut customers = Vec::new();
    for (code, name, n, amt, days) in &rows {
        id.push(format!(
            "• {name} ({code}): {n} tagihan, {}, terlama {days} hari",
            rupiah(*amt)
        ));
        en.push(format!(
            "• {name} ({code}): {n} invoice(s), {}, oldest {days} days",
            rupiah(*amt)
        ));
        customers.push(json!({ "customer": code, "name": name, "invoices": n, "overdue_rp": amt, "max_days_overdue": days }));
    }
    if rows.is_empty() {
        id.push("Tidak ada piutang yang lewat jatuh tempo.".to_owned());
        en.push("No receivable is past due.".to_owned());
    }
    data(
        as_of,
        json!({ "open_rp": open_total, "overdue_rp": overdue, "overdue_by_customer": customers }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

async fn payables(db: &PgPool, today: NaiveDate, as_of: &str) -> anyhow::Result<Built> {
    let rows: Vec<(String, Option<String>, Decimal, NaiveDate)> = sqlx::query_as(
        "select v.name, p.doc_no, ap.amt, ap.due_dt from t_ap ap
         join m_vendor v on v.id = ap.vendor_id left join t_po p on p.id = ap.po_id
         where ap.paid_dt is null and ap.status <> 'Paid' and ap.due_dt < $1 + 7
         order by ap.due_dt limit 10",
    )
    .bind(today)
    .fetch_all(db)
    .await
    .context("reading payables")?;
    let overdue: Decimal = rows.iter().filter(|r| r.3 < today).map(|r| r.2).sum();
    let due_week: Decimal = rows.iter().filter(|r| r.3 >= today).map(|r| r.2).sum();
    let mut id = vec![format!(
        "💳 Hutang jatuh tempo 7 hari ke depan: {}; sudah lewat jatuh tempo: {}",
        rupiah(due_week),
        rupiah(overdue)
    )];
    let mut en = vec![format!(
        "💳 Payables due in the next 7 days: {}; already overdue: {}",
        rupiah(due_week),
        rupiah(overdue)
    )];
    let mut items = Vec::new();
    for (vendor, po, amt, due) in &rows {
        let po = po.clone().unwrap_or_else(|| "-".to_owned());
        id.push(format!(
            "• {vendor} {po}: {} jatuh tempo {}",
            rupiah(*amt),
            date(Some(*due))
        ));
        en.push(format!(
            "• {vendor} {po}: {} due {}",
            rupiah(*amt),
            date(Some(*due))
        ));
        items.push(json!({ "vendor": vendor, "po": po, "amount_rp": amt, "due": due, "overdue": *due < today }));
    }
    data(
        as_of,
        json!({ "due_next_7_days_rp": due_week, "overdue_rp": overdue, "items": items }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

/// A purchase order (its payable status only for a caller with `FIN.READ`, `finance`), or
/// those not yet received.
async fn purchase_status(
    db: &PgPool,
    p: &Params,
    finance: bool,
    as_of: &str,
) -> anyhow::Result<Built> {
    if let Some(doc) = p.doc.as_deref().filter(|d| d.starts_with("PO-")) {
        let row: Option<(String, String, String, NaiveDate, Decimal, Option<String>)> =
            sqlx::query_as(
                "select p.doc_no, p.status, v.name, p.order_dt, p.total_amt,
                    case when $2 then (select ap.status from t_ap ap where ap.po_id = p.id) end
             from t_po p join m_vendor v on v.id = p.vendor_id
             where p.doc_no = $1 and p.deleted_at is null",
            )
            .bind(doc)
            .bind(finance)
            .fetch_optional(db)
            .await
            .context("reading the purchase order")?;
        let Some((no, status, vendor, order_dt, total, ap)) = row else {
            return Ok(not_found(doc));
        };
        let mut fields = json!({ "purchase_order": no, "status": status, "vendor": vendor,
            "order_date": order_dt, "total_rp": total });
        let mut id = format!(
            "🧾 {no} — {vendor}\nStatus: {status}\nTanggal: {}\nNilai: {}",
            date(Some(order_dt)),
            rupiah(total)
        );
        let mut en = format!(
            "🧾 {no} — {vendor}\nStatus: {status}\nDate: {}\nValue: {}",
            date(Some(order_dt)),
            rupiah(total)
        );
        if finance {
            let ap = ap.unwrap_or_else(|| "-".to_owned());
            id.push_str(&format!("\nHutang: {ap}"));
            en.push_str(&format!("\nPayable: {ap}"));
            fields["payable_status"] = json!(ap);
        }
        return data(as_of, fields, Bilingual::new(id, en));
    }
    let pending: Vec<(String, String, String, Decimal)> = sqlx::query_as(
        "select p.doc_no, v.name, p.status, p.total_amt from t_po p join m_vendor v on v.id = p.vendor_id
         where p.deleted_at is null and p.status in ('Draft', 'Pending Director', 'Approved')
         order by p.order_dt desc limit 5",
    )
    .fetch_all(db)
    .await
    .context("reading pending purchase orders")?;
    let mut id = vec!["🧾 PO yang belum selesai:".to_owned()];
    let mut en = vec!["🧾 Purchase orders not yet received:".to_owned()];
    let mut items = Vec::new();
    for (no, vendor, status, total) in &pending {
        id.push(format!("• {no} {vendor}: {status}, {}", rupiah(*total)));
        en.push(format!("• {no} {vendor}: {status}, {}", rupiah(*total)));
        items.push(
            json!({ "purchase_order": no, "vendor": vendor, "status": status, "total_rp": total }),
        );
    }
    data(
        as_of,
        json!({ "pending_purchase_orders": items }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

/// The bank balance and its 7-day outlook (the catalogue's cash measures), and the flows of the
/// next 30 days from receivables and payables.
async fn cash_position(
    db: &PgPool,
    permissions: &[String],
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let (ar_30, ar_overdue, ap_30, ap_overdue): (Decimal, Decimal, Decimal, Decimal) = sqlx::query_as(
        "select
           (select coalesce(sum(amt), 0) from t_ar where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt >= $1 and due_dt < $1 + 30),
           (select coalesce(sum(amt), 0) from t_ar where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt < $1),
           (select coalesce(sum(amt), 0) from t_ap where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt >= $1 and due_dt < $1 + 30),
           (select coalesce(sum(amt), 0) from t_ap where deleted_at is null and paid_dt is null and status <> 'Paid' and due_dt < $1)",
    )
    .bind(today)
    .fetch_one(db)
    .await
    .context("reading cash flows")?;
    let outlook = crate::executive::cash::outlook(db, today, permissions, CASH_TIMEOUT)
        .await?
        .filter(|o| o.position.balance_dt.is_some());
    let net = ar_30 - ap_30;
    let (bank_id, bank_en, bank) = match &outlook {
        Some(o) => {
            let p = &o.position;
            let day = p
                .balance_dt
                .map(|d| d.format("%d-%m-%Y").to_string())
                .unwrap_or_default();
            (
                format!("🏦 Saldo bank (per {day}): {}\nProyeksi 7 hari: {} (+ piutang jatuh tempo {} − hutang jatuh tempo {}, termasuk yang sudah lewat)\n",
                    rupiah(p.balance), rupiah(p.outlook_7d), rupiah(o.inflow), rupiah(o.outflow)),
                format!("🏦 Bank balance (as of {day}): {}\n7-day outlook: {} (+ receivables due {} − payables due {}, overdue included)\n",
                    rupiah(p.balance), rupiah(p.outlook_7d), rupiah(o.inflow), rupiah(o.outflow)),
                json!({ "balance_rp": p.balance, "balance_dt": p.balance_dt, "outlook_7d_rp": p.outlook_7d,
                        "receivables_due_7d_rp": o.inflow, "payables_due_7d_rp": o.outflow }),
            )
        }
        None => (
            "🏦 Saldo bank belum dimuat ke data warehouse.\n".to_owned(),
            "🏦 No bank balances have been loaded into the warehouse.\n".to_owned(),
            json!(null),
        ),
    };
    data(as_of,
        json!({ "bank": bank, "receivables_due_30d_rp": ar_30, "receivables_overdue_rp": ar_overdue,
                "payables_due_30d_rp": ap_30, "payables_overdue_rp": ap_overdue,
                "net_30d_rp": net }),
        Bilingual::new(
            format!("{bank_id}Arus kas 30 hari ke depan (dari piutang dan hutang):\nMasuk (piutang jatuh tempo): {}\nKeluar (hutang jatuh tempo): {}\nBersih: {}\nPiutang overdue: {}; hutang overdue: {}",
                rupiah(ar_30), rupiah(ap_30), rupiah(net), rupiah(ar_overdue), rupiah(ap_overdue)),
            format!("{bank_en}Cash flow, next 30 days (from receivables and payables):\nIn (receivables due): {}\nOut (payables due): {}\nNet: {}\nOverdue receivables: {}; overdue payables: {}",
                rupiah(ar_30), rupiah(ap_30), rupiah(net), rupiah(ar_overdue), rupiah(ap_overdue)),
        ))
}

/// Open alerts of the modules the asker may read: an alert of module M needs `M.READ` when the
/// permission catalogue has such a code (a finance alert is finance data), any other module
/// (SYS …) only `ALERT.READ`, which the intent already required.
async fn alerts(db: &PgPool, permissions: &[String], as_of: &str) -> anyhow::Result<Built> {
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(&format!(
        "select a.severity, a.module, a.alert_type, a.message, count(*) over () from ai_alert a
         where a.acked_at is null and {}
         order by case a.severity when 'Critical' then 0 when 'High' then 1
                                  when 'Medium' then 2 else 3 end,
                  a.created_at desc limit 10",
        crate::domain::access::module_readable("a.module", "$1")
    ))
    .bind(permissions)
    .fetch_all(db)
    .await
    .context("reading alerts")?;
    // The ten most urgent are listed; the count is of all of them.
    let open = rows.first().map_or(0, |r| r.4);
    let mut id = vec![format!("🚨 {open} alert aktif:")];
    let mut en = vec![format!("🚨 {open} active alert(s):")];
    let mut items = Vec::new();
    for (severity, module, kind, message, _) in &rows {
        id.push(format!(
            "{} [{severity}] {module}/{kind}: {message}",
            crate::texts::severity_icon(severity)
        ));
        en.push(format!(
            "{} [{severity}] {module}/{kind}: {message}",
            crate::texts::severity_icon(severity)
        ));
        items.push(
            json!({ "severity": severity, "module": module, "type": kind, "message": message }),
        );
    }
    data(
        as_of,
        json!({ "open_alerts": open, "most_urgent": items }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

async fn vendor_score(
    db: &PgPool,
    p: &Params,
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let code = p.code.as_deref().filter(|c| c.starts_with("VND-"));
    let rows: Vec<(
        String,
        String,
        Option<Decimal>,
        Option<Decimal>,
        i64,
        Decimal,
    )> = sqlx::query_as(
        "select v.code, v.name, v.otd_score, v.quality_score,
                count(p.id), coalesce(sum(p.total_amt), 0)
         from m_vendor v left join t_po p on p.vendor_id = v.id and p.deleted_at is null
              and p.order_dt >= $1 - 365 and p.status <> 'Cancel'
         where v.deleted_at is null and ($2::text is null or v.code = $2)
         group by v.code, v.name, v.otd_score, v.quality_score order by v.code",
    )
    .bind(today)
    .bind(code)
    .fetch_all(db)
    .await
    .context("reading vendors")?;
    if rows.is_empty() {
        return Ok(not_found(code.unwrap_or("vendor")));
    }
    let mut id = vec!["🏷️ Skor vendor (12 bulan):".to_owned()];
    let mut en = vec!["🏷️ Vendor scores (12 months):".to_owned()];
    let mut items = Vec::new();
    for (code, name, otd, quality, n, total) in &rows {
        let otd = otd
            .map(|d| percent(f64_of(d)))
            .unwrap_or_else(|| "-".to_owned());
        let quality = quality
            .map(|d| percent(f64_of(d)))
            .unwrap_or_else(|| "-".to_owned());
        id.push(format!(
            "• {name} ({code}): tepat waktu {otd}, kualitas {quality}, {n} PO senilai {}",
            rupiah_short(*total)
        ));
        en.push(format!(
            "• {name} ({code}): on time {otd}, quality {quality}, {n} POs worth {}",
            rupiah_short(*total)
        ));
        items.push(json!({ "vendor": code, "name": name, "on_time": otd, "quality": quality, "purchase_orders_12m": n, "value_12m_rp": total }));
    }
    data(
        as_of,
        json!({ "vendors": items }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

/// The largest customers, or one; open receivables only for a caller with `FIN.READ`
/// (`finance`).
async fn customer_insight(
    db: &PgPool,
    p: &Params,
    finance: bool,
    today: NaiveDate,
    as_of: &str,
) -> anyhow::Result<Built> {
    let code = p.code.as_deref().filter(|c| c.starts_with("CUST-"));
    type Row = (
        String,
        String,
        String,
        i64,
        Decimal,
        Option<NaiveDate>,
        Option<Decimal>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select c.code, c.name, c.segment, count(s.id), coalesce(sum(s.total_amt), 0), max(s.order_dt),
                case when $3 then (select coalesce(sum(ar.amt), 0) from t_ar ar where ar.cust_id = c.id and ar.paid_dt is null and ar.status <> 'Paid') end
         from m_cust c left join t_so s on s.cust_id = c.id and s.deleted_at is null
              and s.status not in ('Cancel', 'Draft') and s.order_dt >= $1 - 365
         where c.deleted_at is null and ($2::text is null or c.code = $2)
         group by c.id, c.code, c.name, c.segment order by 5 desc limit 5",
    )
    .bind(today)
    .bind(code)
    .bind(finance)
    .fetch_all(db)
    .await
    .context("reading customers")?;
    if rows.is_empty() {
        return Ok(not_found(code.unwrap_or("customer")));
    }
    let mut id = vec!["👥 Customer (12 bulan):".to_owned()];
    let mut en = vec!["👥 Customers (12 months):".to_owned()];
    let mut items = Vec::new();
    for (code, name, segment, n, total, last, open) in &rows {
        let mut line_id = format!(
            "• {name} ({code}, {segment}): {n} order, {}, order terakhir {}",
            rupiah_short(*total),
            date(*last)
        );
        let mut line_en = format!(
            "• {name} ({code}, {segment}): {n} orders, {}, last order {}",
            rupiah_short(*total),
            date(*last)
        );
        let mut item = json!({ "customer": code, "name": name, "segment": segment,
            "orders_12m": n, "revenue_12m_rp": total, "last_order": last });
        if let Some(open) = open.filter(|_| finance) {
            line_id.push_str(&format!(", piutang terbuka {}", rupiah(open)));
            line_en.push_str(&format!(", open receivables {}", rupiah(open)));
            item["open_receivables_rp"] = json!(open);
        }
        id.push(line_id);
        en.push(line_en);
        items.push(item);
    }
    data(
        as_of,
        json!({ "customers": items }),
        Bilingual::new(id.join("\n"), en.join("\n")),
    )
}

fn suggestions(rows: &[(String, String)]) -> String {
    rows.iter()
        .map(|(no, name)| format!("• {no} ({name})"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn not_found(what: &str) -> Built {
    Built::NotFound(Bilingual::new(
        format!("Data untuk {what} tidak ditemukan. Mohon periksa kembali nomornya."),
        format!("No data found for {what}. Please check the number."),
    ))
}

/// The month so far.
pub fn this_month(today: NaiveDate) -> Window {
    use chrono::Datelike;
    let from = today.with_day(1).expect("day 1 exists");
    Window {
        from,
        to: today + chrono::Days::new(1),
        label_id: "bulan ini".to_owned(),
        label_en: "this month".to_owned(),
    }
}

/// The last `n` days including today.
pub fn last_days(today: NaiveDate, n: u64) -> Window {
    Window {
        from: today - chrono::Days::new(n - 1),
        to: today + chrono::Days::new(1),
        label_id: format!("{n} hari terakhir"),
        label_en: format!("the last {n} days"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_compares_with_the_whole_previous_month() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let (from, to) = previous(&this_month(today));
        assert_eq!(from, NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
        assert_eq!(to, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        let (from, to) = previous(&last_days(today, 7));
        assert_eq!((to - from).num_days(), 7);
        assert_eq!(to, NaiveDate::from_ymd_opt(2026, 11, 22).unwrap());
    }
}
