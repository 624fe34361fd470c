//! The labelled analytic questions (`tests/data/analytic_questions.toml`): every question is
//! asked as a director on the demo data, and its figures are checked against SQL written for
//! the test. At least 95 % must be exactly right, and every miss must be an honest "not yet" or
//! an ask-back: an answer with other figures (another question's answer) fails the test at once.
//! Also: the role × measure matrix (refused exactly when the role lacks a permission).

use std::collections::BTreeMap;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sentient_hub::brain::catalog::Catalog;
use sentient_hub::brain::{Outcome, Prepared, Preparer};
use sentient_hub::db::demo;
use sentient_hub::domain::Caller;
use sentient_hub::metrics::catalogue::{Kind, CATALOGUE};
use sentient_hub::texts::Lang;
use serde::Deserialize;
use sqlx::{PgPool, Row};

use crate::helpers::{asker, demo_preparer, fresh_database};

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    questions: Vec<String>,
    #[serde(default)]
    sql: Option<String>,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default)]
    ranked: bool,
}

/// One result row as both sides see it: (group, current) → values.
type Keyed = Vec<((Option<String>, bool), Vec<f64>)>;

/// The expected rows: the case's SQL with $1 = today in Jakarta.
async fn expected(db: &PgPool, sql: &str) -> Keyed {
    let rows = sqlx::query(sql)
        .bind(today())
        .fetch_all(db)
        .await
        .unwrap_or_else(|e| panic!("expected SQL fails: {e}\n{sql}"));
    rows.iter()
        .map(|r| {
            let g: Option<String> = r.get(0);
            let cur: bool = r.get(1);
            let values = (2..r.len()).map(|i| number(r, i)).collect();
            ((g, cur), values)
        })
        .collect()
}

/// A numeric, bigint or float column as f64; null as zero.
fn number(r: &sqlx::postgres::PgRow, i: usize) -> f64 {
    if let Ok(v) = r.try_get::<Option<Decimal>, _>(i) {
        return v.and_then(|d| d.to_f64()).unwrap_or(0.0);
    }
    if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
        return v.unwrap_or(0) as f64;
    }
    r.try_get::<Option<f64>, _>(i)
        .unwrap_or_else(|e| panic!("column {i} is not a number: {e}"))
        .unwrap_or(0.0)
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive()
}

/// Equal within rounding: a cent, or a millionth of the figure (line totals are stored rounded).
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.01 + 1e-6 * b.abs()
}

fn same(expected: &Keyed, actual: &Keyed, ranked: bool) -> bool {
    if expected.len() != actual.len() {
        return false;
    }
    let values_match =
        |e: &[f64], a: &[f64]| e.len() == a.len() && e.iter().zip(a).all(|(x, y)| close(*y, *x));
    if ranked {
        return expected
            .iter()
            .zip(actual)
            .all(|(e, a)| e.0 == a.0 && values_match(&e.1, &a.1));
    }
    let actual: BTreeMap<_, _> = actual.iter().cloned().collect();
    expected
        .iter()
        .all(|(k, e)| actual.get(k).is_some_and(|a| values_match(e, a)))
}

#[derive(Debug)]
enum Verdict {
    Right,
    /// "Not yet" or an ask-back: honest.
    Honest(String),
    /// Other figures, or an answer where "not yet" was due.
    Wrong(String),
}

async fn judge(prep: &Preparer, director: &Caller, db: &PgPool, case: &Case, q: &str) -> Verdict {
    let prepared = prep.prepare(director, q, Lang::detect(q)).await.unwrap();
    let not_yet = case.expect.as_deref() == Some("not_yet");
    match prepared {
        // The rules could not read it; without an LLM that is the "not yet" answer.
        Prepared::Unmapped { .. } if not_yet => Verdict::Right,
        Prepared::Unmapped { not_yet: text, .. } => Verdict::Honest(text),
        Prepared::Direct { text, outcome, .. } | Prepared::Rich { text, outcome, .. } => {
            match (outcome, not_yet) {
                (Outcome::Clarify, true) => Verdict::Right,
                (Outcome::Clarify, false) => Verdict::Honest(text),
                (_, _) => Verdict::Wrong(format!("{outcome:?}: {text}")),
            }
        }
        Prepared::Ask {
            worked, snapshot, ..
        } => {
            if not_yet {
                return Verdict::Wrong(format!("answered: {}", snapshot.answer.id));
            }
            let Some(w) = worked else {
                return Verdict::Wrong(format!("not by the metrics layer: {}", snapshot.answer.id));
            };
            let actual: Keyed = w
                .rows
                .rows
                .iter()
                .map(|r| {
                    let values = r
                        .values
                        .iter()
                        .map(|v| v.and_then(|d| d.to_f64()).unwrap_or(0.0))
                        .collect();
                    ((r.label.clone(), r.current), values)
                })
                .collect();
            let want = expected(db, case.sql.as_deref().expect("an answer case has SQL")).await;
            if same(&want, &actual, case.ranked) {
                Verdict::Right
            } else {
                Verdict::Wrong(format!(
                    "figures differ\n    spec: {}\n    want: {want:?}\n    got:  {actual:?}",
                    serde_json::to_string(&w.spec).unwrap()
                ))
            }
        }
    }
}

#[tokio::test]
async fn labelled_analytic_questions_get_the_right_figures_or_an_honest_not_yet() {
    let cases: Cases =
        toml::from_str(&std::fs::read_to_string("tests/data/analytic_questions.toml").unwrap())
            .unwrap();
    let (_test_db, db, prep) = demo_preparer().await;
    let director = asker(&db, "DIRECTOR").await;
    let (mut right, mut honest, mut wrong) = (0, Vec::new(), Vec::new());
    let total: usize = cases.case.iter().map(|c| c.questions.len()).sum();
    assert!(total >= 200, "at least 200 labelled questions: {total}");
    for case in &cases.case {
        for q in &case.questions {
            match judge(&prep, &director, &db, case, q).await {
                Verdict::Right => right += 1,
                Verdict::Honest(t) => honest.push(format!("{q:?} → {t}")),
                Verdict::Wrong(t) => wrong.push(format!("{q:?} → {t}")),
            }
        }
    }
    let score = 100.0 * right as f64 / total as f64;
    println!(
        "analytic questions: {right}/{total} right ({score:.1} %), {} honest misses, {} wrong",
        honest.len(),
        wrong.len()
    );
    for h in &honest {
        println!("  honest miss: {h}");
    }
    assert!(
        wrong.is_empty(),
        "answers to a different question:\n{}",
        wrong.join("\n")
    );
    assert!(
        score >= 95.0,
        "{score:.1} % right; misses:\n{}",
        honest.join("\n")
    );
}

#[tokio::test]
async fn every_role_is_refused_a_measure_exactly_when_it_lacks_the_permission() {
    let (_test_db, db, prep) = demo_preparer().await;
    let roles: Vec<String> =
        sqlx::query_scalar("select code from adm_role where deleted_at is null order by code")
            .fetch_all(&db)
            .await
            .unwrap();
    // One question per measure, naming it by its first synonym, over a period where it has one.
    let mut checked = 0;
    let mut problems = Vec::new();
    for role in &roles {
        let caller = asker(&db, role).await;
        for (name, m) in &CATALOGUE.measures {
            // A snapshot has no history: asked as it stands now.
            let question = match m.kind {
                Kind::Flow => format!("{} bulan lalu", m.synonyms[0]),
                Kind::Snapshot => m.synonyms[0].clone(),
            };
            let allowed = m.permissions.iter().all(|p| caller.may(p));
            let prepared = prep.prepare(&caller, &question, Lang::Id).await.unwrap();
            let refused = matches!(
                prepared,
                Prepared::Direct {
                    outcome: Outcome::Denied,
                    ..
                }
            );
            let answered_it = matches!(
                &prepared,
                Prepared::Ask { worked: Some(w), .. } if w.spec.measures.contains(name)
            );
            if allowed && !answered_it {
                problems.push(format!(
                    "{role} may see {name} but {question:?} was not answered with it"
                ));
            }
            if !allowed && !refused {
                problems.push(format!(
                    "{role} may not see {name} but {question:?} was not refused"
                ));
            }
            checked += 1;
        }
    }
    assert!(checked >= roles.len() * 27, "{checked}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn the_catalogue_is_listed_for_admins_with_what_their_role_may_ask() {
    use crate::admin_support::{get, signed_in, status_json};
    let app = crate::helpers::spawn_app().await;
    assert_eq!(get(&app, "/api/v1/metrics", "").await.status(), 401);
    let staff = signed_in(&app, "catalogue.reader", "STAFF_SALES").await;
    let (status, body) = status_json(get(&app, "/api/v1/metrics", &staff.access).await).await;
    assert_eq!(status, 200, "{body}");
    // Read from the reviewed file itself, not from the code that serves it.
    let shipped: toml::Table =
        toml::from_str(&std::fs::read_to_string("metrics/catalogue.toml").unwrap()).unwrap();
    let measures = body["measures"].as_array().unwrap();
    assert_eq!(
        measures.len(),
        shipped["measures"].as_table().unwrap().len()
    );
    let find = |name: &str| {
        measures
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))
    };
    let revenue = find("revenue");
    assert_eq!(revenue["unit"], "money");
    assert_eq!(revenue["permissions"], serde_json::json!(["SO.READ"]));
    assert!(revenue["synonyms"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == "omzet"));
    assert_eq!(revenue["allowed"], true, "staff sales may ask for revenue");
    assert_eq!(
        find("gross_margin")["allowed"],
        false,
        "but not for margins (FIN.READ)"
    );
    assert_eq!(find("stock_on_hand")["has_history"], false);
    assert!(body["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["name"] == "customer"));
}

/// Every (table, node type) the plan reads rows with.
fn scans(plan: &serde_json::Value, out: &mut Vec<(String, String)>) {
    if let Some(t) = plan.get("Relation Name").and_then(|v| v.as_str()) {
        let node = plan["Node Type"].as_str().unwrap_or_default().to_owned();
        out.push((t.to_owned(), node));
    }
    for key in ["Plan", "Plans"] {
        match plan.get(key) {
            Some(serde_json::Value::Array(items)) => items.iter().for_each(|p| scans(p, out)),
            Some(p @ serde_json::Value::Object(_)) => scans(p, out),
            _ => {}
        }
    }
    if let serde_json::Value::Array(items) = plan {
        items.iter().for_each(|p| scans(p, out));
    }
}

#[tokio::test]
async fn period_bounded_figures_on_the_big_tables_read_an_index_at_scale_100() {
    use sentient_hub::brain::intent::classify;
    use sentient_hub::brain::understand::{read, Reading};
    use sentient_hub::metrics::compile::compile;
    use sentient_hub::metrics::run::explain;
    let test_db = fresh_database().await;
    let db = PgPool::connect_with(test_db.settings.database.connect_options())
        .await
        .unwrap();
    demo::load_scaled(&db, 100).await.unwrap();
    let orders: i64 = sqlx::query_scalar("select count(*) from t_so")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(orders > 100_000, "scale 100 holds {orders} orders");
    let masters = Catalog::load(&db).await.unwrap();
    for (question, table) in [
        ("omzet bulan lalu", "t_so"),
        ("omzet per customer minggu lalu", "t_so"),
        ("jumlah order kemarin", "t_so"),
        ("unit terjual minggu lalu", "t_so"),
        ("margin per item kemarin", "t_so"),
        ("output per mesin bulan lalu", "t_shift_log"),
        ("downtime minggu lalu", "t_shift_log"),
        ("reject rate per shift kemarin", "t_shift_log"),
    ] {
        let Reading::Metric(spec) = read(
            question,
            &classify(question, &masters),
            &masters,
            today(),
            None,
        ) else {
            panic!("{question:?} is a figure question");
        };
        let compiled = compile(&CATALOGUE, &spec, today(), &[], 500).unwrap();
        let plan = explain(&db, &compiled).await.unwrap();
        let mut found = Vec::new();
        scans(&plan, &mut found);
        let on_table: Vec<&(String, String)> = found.iter().filter(|(t, _)| t == table).collect();
        assert!(
            !on_table.is_empty(),
            "{question:?} reads {table}: {found:?}"
        );
        assert!(
            on_table
                .iter()
                .all(|(_, node)| node.contains("Index") || node == "Bitmap Heap Scan"),
            "{question:?} reads {table} without an index: {found:?}"
        );
    }
}

#[test]
fn the_readme_lists_every_measure_of_the_catalogue() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    for (name, m) in &CATALOGUE.measures {
        let row = format!("| `{name}` | {} / {} |", m.label.id, m.label.en);
        assert!(readme.contains(&row), "README's table lacks {row}");
    }
}

#[tokio::test]
async fn an_operator_counts_only_the_alerts_of_modules_it_may_read() {
    let (_test_db, db, prep) = demo_preparer().await;
    let operator = asker(&db, "OPERATOR").await;
    // Written from the role's permissions (WO, QC, MAINT, ALERT) and the module map.
    let expected: i64 = sqlx::query_scalar(
        "select count(*) from ai_alert where acked_at is null and module in ('WO', 'QC', 'MAINT', 'SYS')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let all: i64 = sqlx::query_scalar("select count(*) from ai_alert where acked_at is null")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        all > expected,
        "the demo has alerts the operator may not read"
    );
    let Prepared::Ask {
        worked: Some(w), ..
    } = prep
        .prepare(&operator, "berapa alert aktif", Lang::Id)
        .await
        .unwrap()
    else {
        panic!("an operator may count alerts");
    };
    let counted = w.rows.rows[0].values[0].and_then(|d| d.to_f64()).unwrap();
    assert_eq!(counted as i64, expected);
}
