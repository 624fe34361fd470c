//! Understanding the question: the labelled WhatsApp questions in `tests/fixtures/intents.tsv`
//! against the masters of the demo data, and the `sentient-hub intent` command.

use std::process::Command;

use secrecy::ExposeSecret;
use sentient_hub::brain::catalog::Catalog;
use sentient_hub::brain::intent::{classify, Classification, Intent};
use sentient_hub::db::demo;

use crate::helpers::spawn_app;

/// One labelled question: its text, the intent it asks for and the entity checks.
struct Labelled {
    line: usize,
    text: String,
    intent: Intent,
    checks: Vec<(String, String)>,
}

fn labelled() -> Vec<Labelled> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/intents.tsv");
    let data = std::fs::read_to_string(path).expect("read the intent fixtures");
    data.lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
        .map(|(i, l)| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(cols.len() >= 2, "line {}: {l:?}", i + 1);
            Labelled {
                line: i + 1,
                text: cols[0].to_owned(),
                intent: cols[1]
                    .parse()
                    .unwrap_or_else(|e| panic!("line {}: {e}", i + 1)),
                checks: cols
                    .get(2)
                    .map(|c| {
                        c.split(' ')
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').expect("check is key=value");
                                (k.to_owned(), v.to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// Whether one `key=value` expectation holds.
fn check(c: &Classification, key: &str, value: &str) -> bool {
    let e = &c.entities;
    match key {
        "doc" => e.documents.iter().any(|d| d.number == value),
        "code" => e.masters.iter().any(|m| m.code == value),
        "uuid" => e.uuids.iter().any(|u| u == value),
        "period" => e.period.map(|p| p.label()).as_deref() == Some(value),
        "compare" => e.compare_period.map(|p| p.label()).as_deref() == Some(value),
        "mute" => e.mute_minutes.map(|m| m.to_string()).as_deref() == Some(value),
        "otp" => e.otp.as_deref() == Some(value),
        "follow" => c.follow_up == (value == "1"),
        other => panic!("unknown check {other:?}"),
    }
}

#[tokio::test]
async fn labelled_whatsapp_questions_are_understood_at_least_95_percent_of_the_time() {
    let app = spawn_app().await;
    demo::load(&app.db).await.unwrap();
    let catalog = Catalog::load(&app.db).await.unwrap();
    assert_eq!(catalog.len(), 19, "the demo's masters");

    let set = labelled();
    assert!(set.len() >= 200, "only {} labelled questions", set.len());
    let mut right = 0;
    let mut misses = Vec::new();
    let (mut checks, mut failed) = (0, Vec::new());
    for q in &set {
        let c = classify(&q.text, &catalog);
        assert!((0.0..=1.0).contains(&c.confidence), "{:?}", q.text);
        if c.intent == q.intent {
            right += 1;
        } else {
            misses.push(format!(
                "  line {}: {:?} wanted {}, got {} ({:.2})",
                q.line, q.text, q.intent, c.intent, c.confidence
            ));
        }
        for (k, v) in &q.checks {
            checks += 1;
            if !check(&c, k, v) {
                failed.push(format!(
                    "  line {}: {:?} wanted {k}={v}, got {}",
                    q.line,
                    q.text,
                    serde_json::to_string(&c).unwrap()
                ));
            }
        }
    }
    let accuracy = 100.0 * f64::from(right) / set.len() as f64;
    println!(
        "intent accuracy: {right}/{} = {accuracy:.1}%; entity checks: {}/{checks} hold",
        set.len(),
        checks - failed.len()
    );
    for m in misses.iter().chain(&failed) {
        println!("{m}");
    }
    assert!(accuracy >= 95.0, "accuracy {accuracy:.1}% is below 95%");
    assert!(
        failed.is_empty(),
        "{} entity checks failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[tokio::test]
async fn masters_come_from_live_rows_only() {
    let app = spawn_app().await;
    demo::load(&app.db).await.unwrap();
    sqlx::query("update m_vendor set deleted_at = now() where code = 'VND-003'")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "insert into m_item (code, name, category, std_cost, uom) \
         values ('ITM-006', 'Gearbox Planetary 40', 'Component', 90000, 'PCS')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let catalog = Catalog::load(&app.db).await.unwrap();
    assert!(catalog.get("VND-003").is_none(), "a deleted vendor");

    let c = classify("stok gearbox brp", &catalog);
    assert_eq!(c.intent, Intent::StockLevel);
    assert_eq!(c.entities.master_codes(), ["ITM-006"]);
    // "global" now names only the customer
    let c = classify("global", &catalog);
    assert_eq!(c.entities.master_codes(), ["CUST-005"]);
}

fn hub() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentient-hub"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

#[tokio::test]
async fn the_intent_command_prints_the_classification_as_json() {
    let app = spawn_app().await;
    demo::load(&app.db).await.unwrap();
    let url = app.test_db.settings.database.url.expose_secret().to_owned();
    let output = hub()
        .args(["intent", "stok", "motor", "dc", "brp?"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["intent"], "stock_level");
    assert_eq!(json["entities"]["masters"][0]["code"], "ITM-005");
    assert_eq!(json["entities"]["masters"][0]["name"], "Motor DC 12V");
    let confidence = json["confidence"].as_f64().unwrap();
    assert!(confidence > 0.5 && confidence <= 1.0, "{json}");

    let output = hub()
        .args(["intent", "omzet bln ini vs bln lalu"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["intent"], "sales_summary");
    assert_eq!(json["entities"]["period"], "this_month");
    assert_eq!(json["entities"]["compare_period"], "last_month");
}

#[test]
fn the_intent_command_fails_on_one_line_when_the_database_is_unreachable() {
    let output = hub()
        .args(["intent", "stok motor dc"])
        .env("DATABASE_URL", "postgres://hub:topsecret@127.0.0.1:1/hub")
        .env("SENTIENT__DATABASE__ACQUIRE_TIMEOUT_SECS", "2")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sentient-hub: error: cannot connect to PostgreSQL at 127.0.0.1:1/hub"),
        "{stderr}"
    );
    assert!(!stderr.contains("topsecret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
