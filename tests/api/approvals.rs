//! Approvals from the chat, end to end: webhook in → the recorded Graph calls out, and the rows
//! written (the document, log_status, log_audit, the creator's notice).

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{
    button_delivery, eventually, now, spawn_app_with, text_delivery, SmtpSink, TestApp,
};

const WAIT: Duration = Duration::from_secs(30);

async fn app_with_mail() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(move |s| s.smtp.port = port).await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    app.stages.catalog.reload(&app.db).await.unwrap();
    (app, sink)
}

/// Every message the fake Graph API got for `to`, in order.
fn sent_to(app: &TestApp, to: &str) -> Vec<Value> {
    app.graph()
        .sends()
        .into_iter()
        .filter(|r| r.body["to"] == to)
        .map(|r| r.body)
        .collect()
}

fn shown(message: &Value) -> String {
    message["text"]["body"]
        .as_str()
        .or_else(|| message["interactive"]["body"]["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// Sends `body` as `from` and waits for the messages it brings; returns them.
async fn exchange(app: &TestApp, from: &str, body: String) -> Vec<Value> {
    let before = sent_to(app, from).len();
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let answered = eventually(WAIT, || async {
        app.settle().await;
        sent_to(app, from).len() > before
    })
    .await;
    assert!(answered, "answered");
    // A reply of several parts lands together; give the rest a moment.
    app.settle().await;
    sent_to(app, from)[before..].to_vec()
}

async fn say(app: &TestApp, from: &str, text: &str) -> Vec<Value> {
    let wamid = format!("wamid.apv.{}", Uuid::new_v4());
    exchange(app, from, text_delivery(from, &wamid, text, now())).await
}

async fn tap(app: &TestApp, from: &str, id: &str) -> Vec<Value> {
    let wamid = format!("wamid.apv.{}", Uuid::new_v4());
    exchange(app, from, button_delivery(from, &wamid, id, "tap")).await
}

fn button_ids(message: &Value) -> Vec<String> {
    let buttons = message["interactive"]["action"]["buttons"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    buttons
        .iter()
        .map(|b| b["reply"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn user_id(db: &PgPool, wa_id: &str) -> i64 {
    sqlx::query_scalar("select id from adm_user where phone = '+' || $1")
        .bind(wa_id)
        .fetch_one(db)
        .await
        .unwrap()
}

async fn po(db: &PgPool, doc_no: &str) -> (Uuid, String, Option<i64>) {
    sqlx::query_as("select uuid, status, approved_by from t_po where doc_no = $1")
        .bind(doc_no)
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_list_has_buttons_and_a_confirmed_tap_approves_once_and_tells_the_creator() {
    let (app, _sink) = app_with_mail().await;
    let db = &app.db;
    let director = app.user_with_role("DIRECTOR", true).await;
    let creator = app.user_with_role("MANAGER_PROD", true).await;
    // The creator wrote to the hub lately: free text reaches them (outside the 24-hour window
    // the notice goes as the window template, or is recorded as failed without one).
    sqlx::query("insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now() - interval '1 minute')")
        .bind(&creator)
        .execute(db)
        .await
        .unwrap();
    sqlx::query("update t_po set created_by = $1, created_at = now() - interval '3 days' where doc_no = 'PO-202412-0002'")
        .bind(user_id(db, &creator).await)
        .execute(db)
        .await
        .unwrap();
    // What waits, by the test's own SQL.
    let waiting: Vec<String> = sqlx::query_scalar(
        "select doc_no from t_po where deleted_at is null and status = 'Pending Director'
         union all select doc_no from t_so where deleted_at is null and status = 'Pending'",
    )
    .fetch_all(db)
    .await
    .unwrap();
    assert!(
        waiting.contains(&"PO-202412-0002".to_owned()),
        "{waiting:?}"
    );

    let listed = say(&app, &director, "PO yang perlu saya approve").await;
    if waiting.len() <= 3 {
        assert_eq!(listed.len(), waiting.len(), "{listed:?}");
        for m in &listed {
            assert_eq!(m["interactive"]["type"], "button", "{m}");
            assert_eq!(button_ids(m).len(), 3);
        }
    } else {
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["interactive"]["type"], "list");
        let rows = listed[0]["interactive"]["action"]["sections"][0]["rows"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(rows.len(), waiting.len().min(10));
    }
    let all: String = listed.iter().map(|m| m.to_string()).collect();
    for doc in waiting.iter().take(10) {
        assert!(all.contains(doc.as_str()), "{doc} not listed: {all}");
    }

    // Approve → the confirmation with the value (Rp 45 m is below the step-up amount).
    let (uuid, status, _) = po(db, "PO-202412-0002").await;
    assert_eq!(status, "Pending Director");
    let asked = tap(&app, &director, &format!("apv:a:PO:{uuid}")).await;
    let confirm = &asked[0];
    assert!(shown(confirm).contains("Rp 45.000.000"), "{confirm}");
    let ids = button_ids(confirm);
    assert_eq!(
        ids,
        [format!("apv:y:PO:{uuid}"), format!("apv:n:PO:{uuid}")]
    );
    // A second director is at the same step: both tap "yes" at once; one approval.
    let second = app.user_with_role("DIRECTOR", true).await;
    tap(&app, &second, &format!("apv:a:PO:{uuid}")).await;
    let yes = format!("apv:y:PO:{uuid}");
    let (a, b) = tokio::join!(tap(&app, &director, &ids[0]), tap(&app, &second, &yes));
    let answers = [shown(&a[0]), shown(&b[0])];
    assert_eq!(
        answers.iter().filter(|t| t.contains("✅")).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|t| t.contains("sudah disetujui oleh"))
            .count(),
        1,
        "{answers:?}"
    );
    let (_, status, approved_by) = po(db, "PO-202412-0002").await;
    assert_eq!(status, "Approved");
    let winner = if answers[0].contains("✅") {
        &director
    } else {
        &second
    };
    assert_eq!(approved_by, Some(user_id(db, winner).await));
    // log_status: old and new status, minutes in the old one (3 days), by the approver.
    let (old, new, by, minutes, notes): (
        Option<String>,
        String,
        Option<i64>,
        Option<i32>,
        Option<String>,
    ) = sqlx::query_as(
        "select old_status, new_status, changed_by, duration_min, notes from log_status
             where entity_type = 'PO' and new_status = 'Approved'
               and entity_id = (select id from t_po where doc_no = 'PO-202412-0002')",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(
        (old.as_deref(), new.as_str()),
        (Some("Pending Director"), "Approved")
    );
    assert_eq!(by, approved_by);
    let minutes = minutes.unwrap();
    assert!(
        (3 * 24 * 60 - 2..=3 * 24 * 60 + 2).contains(&minutes),
        "{minutes}"
    );
    assert_eq!(notes.as_deref(), Some("via WhatsApp"));
    assert_eq!(
        app.count(
            "select count(*) from log_audit where action = 'APPROVE' and entity_type = 't_po'"
        )
        .await,
        1
    );
    // The creator is told, once.
    let told = eventually(WAIT, || async {
        app.settle().await;
        sent_to(&app, &creator)
            .iter()
            .any(|m| shown(m).contains("disetujui oleh"))
    })
    .await;
    assert!(told, "the creator is told");
    assert_eq!(sent_to(&app, &creator).len(), 1);
    // A stale button afterwards changes nothing.
    let again = tap(&app, &director, &ids[0]).await;
    assert!(
        shown(&again[0]).contains("sudah disetujui oleh"),
        "{again:?}"
    );
    assert_eq!(
        app.count("select count(*) from log_status where entity_type = 'PO' and entity_id = (select id from t_po where doc_no = 'PO-202412-0002')").await,
        1
    );
}

#[tokio::test]
async fn a_large_document_needs_the_emailed_code_first() {
    let (app, sink) = app_with_mail().await;
    let db = &app.db;
    let director = app.user_with_role("DIRECTOR", true).await;
    // SO-202412-0002 is worth Rp 125 m, above the Rp 100 m step-up amount.
    let asked = say(&app, &director, "approve SO-202412-0002").await;
    let text = shown(&asked[0]);
    assert!(
        text.contains("kode 6 digit") && text.contains("@factory.local"),
        "{text}"
    );
    let code = sink.approval_code(1).await;
    let mail = &sink.mails()[0];
    assert!(mail.contains("SO-202412-0002"), "{mail}");
    // Only the code's keyed hash is stored.
    assert_eq!(
        app.count(&format!(
            "select count(*) from wa_otp where purpose = 'approval' and code_hash like '%{code}%'"
        ))
        .await,
        0
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let reply = say(&app, &director, wrong).await;
    assert!(shown(&reply[0]).contains("Kode salah"), "{reply:?}");
    let status: String =
        sqlx::query_scalar("select status from t_so where doc_no = 'SO-202412-0002'")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(status, "Pending");
    let reply = say(&app, &director, &code).await;
    assert!(shown(&reply[0]).contains("✅ SO-202412-0002"), "{reply:?}");
    let (status, approved_at): (String, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("select status, approved_at from t_so where doc_no = 'SO-202412-0002'")
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(status, "Approved");
    assert!(approved_at.is_some());
    // The code is spent: typing it again approves nothing more.
    let reply = say(&app, &director, &code).await;
    assert!(!shown(&reply[0]).contains("✅"), "{reply:?}");
    assert_eq!(
        app.count("select count(*) from log_status where entity_type = 'SO' and new_status = 'Approved' and entity_id = (select id from t_so where doc_no = 'SO-202412-0002')").await,
        1
    );

    // A device confirmed long ago needs the code even for a small document.
    let other = app.user_with_role("DIRECTOR", true).await;
    sqlx::query("update wa_trust set confirmed_at = now() - interval '13 hours' where wa_id = $1")
        .bind(&other)
        .execute(db)
        .await
        .unwrap();
    let asked = say(&app, &other, "approve PO-202412-0002").await;
    assert!(shown(&asked[0]).contains("kode 6 digit"), "{asked:?}");
    let reply = say(&app, &other, "batal").await;
    assert!(shown(&reply[0]).contains("Dibatalkan"), "{reply:?}");
}

#[tokio::test]
async fn reject_asks_for_the_reason_and_roles_without_the_permission_are_refused() {
    let (app, _sink) = app_with_mail().await;
    let db = &app.db;
    let director = app.user_with_role("DIRECTOR", true).await;
    let manager = app.user_with_role("MANAGER_PROD", true).await;
    let (uuid, _, _) = po(db, "PO-202412-0002").await;
    // A production manager may not approve POs: typed or tapped (a forged button), refused.
    let reply = say(&app, &manager, "approve PO-202412-0002").await;
    assert!(shown(&reply[0]).contains("PO.APPROVE"), "{reply:?}");
    let reply = tap(&app, &manager, &format!("apv:y:PO:{uuid}")).await;
    assert!(shown(&reply[0]).contains("PO.APPROVE"), "{reply:?}");
    assert_eq!(
        app.count("select count(*) from ai_chat where intent = 'approvals' and outcome = 'denied'")
            .await,
        2
    );
    // Reject → the reason → back to Draft, with the reason in log_status and the audit.
    let reply = say(&app, &director, "tolak PO-202412-0002").await;
    assert!(shown(&reply[0]).contains("Alasan"), "{reply:?}");
    let reply = say(
        &app,
        &director,
        "harga terlalu tinggi, minta penawaran ulang",
    )
    .await;
    assert!(shown(&reply[0]).contains("ditolak"), "{reply:?}");
    let (_, status, approved_by) = po(db, "PO-202412-0002").await;
    assert_eq!((status.as_str(), approved_by), ("Draft", None));
    let notes: String = sqlx::query_scalar("select notes from log_status where entity_type = 'PO' and entity_id = (select id from t_po where doc_no = 'PO-202412-0002')")
        .fetch_one(db)
        .await
        .unwrap();
    assert!(notes.contains("harga terlalu tinggi"), "{notes}");
    assert_eq!(
        app.count(
            "select count(*) from log_audit where action = 'REJECT' and entity_type = 't_po'"
        )
        .await,
        1
    );
    // Now it waits for nobody: approving it is refused as not pending, nothing changes.
    let reply = say(&app, &director, "approve PO-202412-0002").await;
    assert!(
        shown(&reply[0]).contains("tidak menunggu approval (status: Draft)"),
        "{reply:?}"
    );
    // An unknown document is said so.
    let reply = say(&app, &director, "approve PO-209912-9999").await;
    assert!(shown(&reply[0]).contains("tidak ditemukan"), "{reply:?}");
}
