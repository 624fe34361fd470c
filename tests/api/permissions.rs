//! Field-level permissions of the brain's answers: for every role of the catalogue, every
//! question shape of the demo data and every module's fields, nothing of a module reaches the
//! data answer or the LLM's prompt for a caller without that module's read permission.

use std::collections::BTreeSet;

use sentient_hub::brain::{Outcome, Prepared};
use sentient_hub::domain::Caller;
use sentient_hub::texts::Lang;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{asker, demo_preparer};

/// Data keys that only a module's data has (as the context builders name them), by the
/// permission that reads that module. Written for the test, from the schema, not from the code
/// that produces them.
const FIELDS: &[(&str, &[&str])] = &[
    (
        "FIN.READ",
        &[
            "receivables_open",
            "receivables_overdue",
            "payables_open",
            "payables_overdue",
            "gross_margin",
            "gross_margin_pct",
            "invoice_status",
            "payable_status",
            "open_receivables_rp",
            "invoices",
            "overdue_by_customer",
            "open_rp",
            "max_days_overdue",
            "due_next_7_days_rp",
            "net_30d_rp",
            "payables_due_30d_rp",
            "payables_overdue_rp",
            "receivables_due_30d_rp",
            "receivables_overdue_rp",
            "amount_rp",
            "overdue_rp",
        ],
    ),
    (
        "DO.READ",
        &[
            "deliveries_late",
            "on_time_pct",
            "deliveries",
            "delivery",
            "driver",
            "eta",
            "ship_date",
            "arrived",
            "late",
        ],
    ),
    (
        "PO.READ",
        &[
            "purchases",
            "po_count",
            "vendor_otd",
            "vendor_quality",
            "purchase_order",
            "pending_purchase_orders",
            "purchase_orders_12m",
            "vendors",
            "on_time",
            "value_12m_rp",
        ],
    ),
    (
        "INV.READ",
        &[
            "stock_on_hand",
            "stock_reserved",
            "stock_available",
            "items_below_min",
            "on_hand",
            "reserved",
            "available",
            "min_stock",
            "stock",
            "warehouse",
        ],
    ),
    (
        "WO.READ",
        &[
            "rejects",
            "reject_rate",
            "downtime",
            "oee",
            "work_order",
            "work_orders_in_progress",
            "plan",
            "actual",
            "output",
        ],
    ),
    (
        "MAINT.READ",
        &[
            "last_maintenance",
            "run_hours",
            "errors",
            "maintenance_cost",
            "maintenance_count",
        ],
    ),
    (
        "SO.READ",
        &[
            "revenue",
            "order_count",
            "avg_order_value",
            "units_sold",
            "top_customers",
            "revenue_rp",
            "previous_revenue_rp",
            "growth_pct",
            "revenue_12m_rp",
            "orders_12m",
            "last_order",
            "segment",
        ],
    ),
    ("ALERT.READ", &["open_alerts", "most_urgent"]),
];

/// Words of a module's fields in the answers' text (both languages), by permission.
const WORDS: &[(&str, &[&str])] = &[
    (
        "FIN.READ",
        &[
            "Tagihan:",
            "Invoice:",
            "Hutang:",
            "Payable:",
            "piutang",
            "receivable",
        ],
    ),
    (
        "DO.READ",
        &["Pengiriman:", "Deliveries:", "sopir", "driver"],
    ),
];

/// One question for each intent and document kind of the demo data, and the follow-ups that
/// switch documents.
const QUESTIONS: &[&str] = &[
    "status SO-202412-0002?",
    "pesanan PO-202412-0001?",
    "order DO-202412-0001 gimana?",
    "status pengiriman DO-202412-0002",
    "status PO-202412-0002",
    "customer terbesar siapa",
    "profil customer CUST-001",
    "omzet bulan ini vs bulan lalu?",
    "stok motor dc berapa?",
    "produksi hari ini",
    "kondisi mesin MCH-003",
    "piutang overdue",
    "hutang jatuh tempo minggu ini",
    "posisi kas",
    "alert aktif",
    "skor vendor",
    "top customers this year",
    "omzet dan margin per customer bulan lalu",
    "downtime per operator minggu ini",
    "pengiriman telat per sopir bulan ini",
    "pembelian per vendor tahun ini",
    "biaya perawatan per mesin bulan lalu",
    "stok per gudang",
    "piutang per umur",
    "berapa alert aktif per modul",
];

/// Every key of `value`, at any depth.
fn keys(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.insert(k.clone());
                keys(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

async fn roles(db: &PgPool) -> Vec<(String, Vec<String>)> {
    sqlx::query_as(
        "select r.code, coalesce(array_agg(p.code) filter (where p.code is not null), '{}')
         from adm_role r
         left join adm_role_permission rp on rp.role_id = r.id
         left join adm_permission p on p.id = rp.permission_id
         where r.deleted_at is null group by r.code order by r.code",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// What of `text` and `data` a caller without `permission` must not get.
fn leaks(permission: &str, text: &str, data: Option<&Value>) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(data) = data {
        let mut seen = BTreeSet::new();
        keys(data, &mut seen);
        for (p, fields) in FIELDS.iter().filter(|(p, _)| *p == permission) {
            for f in fields.iter().filter(|f| seen.contains(**f)) {
                found.push(format!("field {f} ({p})"));
            }
        }
    }
    for (p, words) in WORDS.iter().filter(|(p, _)| *p == permission) {
        for w in words.iter().filter(|w| text.contains(**w)) {
            found.push(format!("word {w:?} ({p})"));
        }
    }
    found
}

#[tokio::test]
async fn no_role_gets_a_field_of_a_module_it_may_not_read_for_any_question() {
    let (_test_db, db, prep) = demo_preparer().await;
    let mut problems = Vec::new();
    let mut checked = 0;
    for (role, permissions) in roles(&db).await {
        let caller = asker(&db, &role).await;
        let missing: Vec<&str> = FIELDS
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| !permissions.iter().any(|h| h == p))
            .collect();
        for question in QUESTIONS {
            let (text, data) = match prep.prepare(&caller, question, Lang::Id).await.unwrap() {
                // A refusal names what was asked and holds no data: only its data is checked.
                Prepared::Direct {
                    outcome: Outcome::Denied,
                    ..
                }
                | Prepared::Rich {
                    outcome: Outcome::Denied,
                    ..
                } => (String::new(), None),
                Prepared::Direct { text, .. }
                | Prepared::Rich { text, .. }
                | Prepared::Unmapped { not_yet: text, .. } => (text, None),
                Prepared::Ask {
                    snapshot, messages, ..
                } => {
                    // The prompt carries the data block and the history: all of it counts.
                    let prompt: Vec<String> = messages.iter().map(|m| m.content.clone()).collect();
                    let text = format!(
                        "{}\n{}\n{}",
                        snapshot.answer.get(Lang::Id),
                        snapshot.answer.get(Lang::En),
                        prompt.join("\n")
                    );
                    (text, Some(snapshot.data))
                }
            };
            for permission in &missing {
                for leak in leaks(permission, &text, data.as_ref()) {
                    problems.push(format!("{role} asking {question:?}: {leak}"));
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 8 * QUESTIONS.len(),
        "every role was asked: {checked}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn a_follow_up_naming_a_purchase_order_needs_the_purchase_permission() {
    let (_test_db, db, prep) = demo_preparer().await;
    let permissions: Vec<String> = roles(&db)
        .await
        .into_iter()
        .find(|(r, _)| r == "STAFF_SALES")
        .expect("the blueprint's sales staff role")
        .1;
    assert!(permissions.iter().any(|p| p == "SO.READ"));
    assert!(!permissions.iter().any(|p| p == "PO.READ"));
    let caller = asker(&db, "STAFF_SALES").await;
    // The previous turn, as the chat log holds it.
    sqlx::query(
        "insert into ai_chat (user_id, user_role, msg_in, msg_out, intent, outcome, wamid_in)
         values ($1, 'STAFF_SALES', 'status SO-202412-0002?', 'SO-202412-0002 Approved',
                 'order_status', 'fallback', 'wamid.perm.1')",
    )
    .bind(caller.user_id)
    .execute(&db)
    .await
    .unwrap();
    for question in ["kalau PO-202412-0001?", "pesanan PO-202412-0001?"] {
        match prep.prepare(&caller, question, Lang::Id).await.unwrap() {
            Prepared::Direct { text, .. } | Prepared::Rich { text, .. } => {
                assert!(text.contains("pembelian"), "refused as purchasing: {text}");
                assert!(!text.contains("PO-202412-0001 —"), "{text}");
            }
            Prepared::Unmapped { .. } => panic!("{question:?} is a lookup"),
            Prepared::Ask { snapshot, .. } => {
                panic!("{question:?} was answered: {}", snapshot.data)
            }
        }
    }
}

#[tokio::test]
async fn after_a_role_is_lowered_the_prompt_history_carries_nothing_it_may_no_longer_see() {
    let (_test_db, db, prep) = demo_preparer().await;
    let all = roles(&db).await;
    let of = |code: &str| all.iter().find(|(r, _)| r == code).unwrap().1.clone();
    let sales_manager = of("MANAGER_SALES");
    assert!(sales_manager.iter().any(|p| p == "FIN.READ"));
    let caller = asker(&db, "MANAGER_SALES").await;
    // What the chat log holds from when the user was a sales manager.
    sqlx::query(
        "insert into ai_chat (user_id, user_role, msg_in, msg_out, intent, outcome, wamid_in, ts)
         values ($1, 'MANAGER_SALES', 'piutang overdue?', 'RAHASIA-PIUTANG Rp 1,2 M', 'receivables',
                 'fallback', 'wamid.hist.1', now() - interval '3 minutes'),
                ($1, 'MANAGER_SALES', 'omzet bulan ini?', 'OMZET-TURN Rp 3 M', 'sales_summary',
                 'fallback', 'wamid.hist.2', now() - interval '2 minutes'),
                ($1, 'MANAGER_SALES', 'TOO-LONG-TURN ' || repeat('x', 5000), 'too long',
                 'general_question', 'clarify', 'wamid.hist.3', now() - interval '1 minute')",
    )
    .bind(caller.user_id)
    .execute(&db)
    .await
    .unwrap();
    let prompt_of = |caller: Caller| {
        let prep = prep.clone();
        async move {
            match prep
                .prepare(&caller, "status SO-202412-0002?", Lang::Id)
                .await
                .unwrap()
            {
                Prepared::Ask { messages, .. } => messages
                    .iter()
                    .map(|m| m.content.clone())
                    .collect::<Vec<_>>()
                    .join("\n"),
                Prepared::Direct { text, .. }
                | Prepared::Rich { text, .. }
                | Prepared::Unmapped { not_yet: text, .. } => {
                    panic!("an order question is answered: {text}")
                }
            }
        }
    };
    // Unchanged: both earlier answered turns are in the history; one too long to answer is not.
    let prompt = prompt_of(caller.clone()).await;
    assert!(prompt.contains("RAHASIA-PIUTANG"), "{prompt}");
    assert!(prompt.contains("OMZET-TURN"), "{prompt}");
    assert!(!prompt.contains("TOO-LONG-TURN"), "{prompt}");

    // The same role without FIN.READ: the receivables turn leaves, the sales turn stays.
    let mut without_finance = caller.clone();
    without_finance.permissions.remove("FIN.READ");
    let prompt = prompt_of(without_finance).await;
    assert!(!prompt.contains("RAHASIA-PIUTANG"), "{prompt}");
    assert!(prompt.contains("OMZET-TURN"), "{prompt}");

    // Moved to another role: nothing said under the old one is carried over.
    let staff = Caller {
        role: "STAFF_SALES".into(),
        permissions: of("STAFF_SALES").into_iter().collect(),
        ..caller
    };
    let prompt = prompt_of(staff).await;
    assert!(!prompt.contains("RAHASIA-PIUTANG"), "{prompt}");
    assert!(!prompt.contains("OMZET-TURN"), "{prompt}");
}
