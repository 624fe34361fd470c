//! Who may chat: whitelist, device trust by email OTP over real SMTP, permissions.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    eventually, free_port, new_sender, now, spawn_app_with, text_delivery, texts_to, SmtpSink,
    TestApp,
};

const WAIT: Duration = Duration::from_secs(20);

async fn wait_texts(app: &TestApp, to: &str, n: usize) -> Vec<String> {
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            texts_to(app, to).len() >= n
        })
        .await,
        "expected {n} messages to {to}, got {:?}",
        texts_to(app, to)
    );
    texts_to(app, to)
}

async fn say(app: &TestApp, from: &str, wamid: &str, text: &str) {
    let response = app
        .post_webhook(&text_delivery(from, wamid, text, now()))
        .await;
    assert_eq!(response.status(), 200);
}

async fn app_with_mail() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(move |s| s.smtp.port = port).await;
    (app, sink)
}

async fn audits(app: &TestApp, action: &str) -> i64 {
    app.count(&format!(
        "select count(*) from log_audit where action = '{action}'"
    ))
    .await
}

#[tokio::test]
async fn an_unknown_sender_is_refused_once_a_day_and_every_attempt_is_audited() {
    let (app, sink) = app_with_mail().await;
    let stranger = new_sender();
    say(&app, &stranger, "wamid.u1", "omzet bulan ini berapa?").await;
    say(&app, &stranger, "wamid.u2", "halo?").await;
    say(&app, &stranger, "wamid.u3", "What is the revenue?").await;
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_inbox where status = 'done'")
            .await,
        3
    );
    // The refusal goes out after its row is committed; then give a second one time to show up.
    wait_texts(&app, &stranger, 1).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let texts = texts_to(&app, &stranger);
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("tidak terdaftar"), "{texts:?}");
    assert_eq!(audits(&app, "WA.DENIED").await, 3);
    assert!(sink.mails().is_empty(), "no code for strangers");
    assert_eq!(app.count("select count(*) from wa_otp").await, 0);
}

#[tokio::test]
async fn first_contact_needs_the_mailed_code_and_then_the_held_question_is_answered() {
    let (app, sink) = app_with_mail().await;
    let me = app.user_with_role("DIRECTOR", false).await;

    say(&app, &me, "wamid.q1", "omzet bulan ini berapa?").await;
    let texts = wait_texts(&app, &me, 1).await;
    assert!(texts[0].contains("kode 6 digit"), "{texts:?}");
    let first = sink.code(1).await;
    let mail = &sink.mails()[0];
    assert!(mail.contains("+62812****"), "masked phone in the mail");
    assert!(mail.contains("Jika bukan Anda") && mail.contains("If this was not you"));
    assert_eq!(
        app.count("select count(*) from wa_inbox where wamid = 'wamid.q1' and status = 'held'")
            .await,
        1
    );
    // Stored hashed, never in clear.
    assert_eq!(
        app.count(&format!(
            "select count(*) from wa_otp where code_hash like '%{first}%'"
        ))
        .await,
        0
    );

    // Five wrong codes void it.
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    for i in 0..5 {
        say(&app, &me, &format!("wamid.wrong.{i}"), wrong).await;
    }
    let texts = wait_texts(&app, &me, 6).await;
    assert!(texts[1].contains("Sisa percobaan: 4"), "{texts:?}");
    assert!(texts[5].contains("dibatalkan"), "{texts:?}");
    assert_eq!(audits(&app, "WA.OTP_WRONG").await, 5);
    assert_eq!(audits(&app, "WA.OTP_LOCKED").await, 1);

    // The voided code no longer works; a new question brings a new code.
    say(&app, &me, "wamid.q2", "stok motor dc berapa?").await;
    let second = sink.code(2).await;
    wait_texts(&app, &me, 7).await;
    say(&app, &me, "wamid.first.again", &first).await;
    let texts = wait_texts(&app, &me, 8).await;
    // Checked against the open code, so it counts as a wrong try.
    assert!(texts[7].contains("Sisa percobaan: 4"), "{texts:?}");

    // Anything but a code while a code is open is held, with a reminder.
    say(&app, &me, "wamid.q2b", "dan stok widget?").await;
    let texts = wait_texts(&app, &me, 9).await;
    assert!(texts[8].contains("kode 6 digit yang dikirim"), "{texts:?}");

    // The right code, typed the way people type it.
    let typed = format!("{} {}.", &second[..3], &second[3..]);
    say(&app, &me, "wamid.code", &typed).await;
    app.settle().await;
    assert_eq!(app.count("select count(*) from wa_outbox where purpose = 'answer' and inbound_wamid in ('wamid.code', 'wamid.q1', 'wamid.q2', 'wamid.q2b')").await, 4);
    let replies: Vec<(String, String)> = sqlx::query_as(
        "select inbound_wamid, payload->'text'->>'body' from wa_outbox
         where purpose = 'answer' and inbound_wamid in ('wamid.code', 'wamid.q1', 'wamid.q2', 'wamid.q2b') order by id")
        .fetch_all(&app.db).await.unwrap();
    assert_eq!(replies[0].0, "wamid.code");
    assert!(replies[0].1.contains("Verifikasi berhasil"), "{replies:?}");
    let held_order: Vec<&str> = replies[1..].iter().map(|r| r.0.as_str()).collect();
    assert_eq!(held_order, ["wamid.q1", "wamid.q2", "wamid.q2b"]);
    assert_eq!(
        app.count("select count(*) from wa_inbox where status = 'held'")
            .await,
        0
    );
    assert_eq!(audits(&app, "WA.OTP_CONFIRMED").await, 1);
    assert_eq!(audits(&app, "WA.OTP_SENT").await, 2);

    // Trusted now: the next question goes straight through.
    say(&app, &me, "wamid.q3", "omzet bulan lalu?").await;
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.q3'")
            .await,
        1
    );
    assert_eq!(sink.mails().len(), 2);

    // After the device trust is voided, the used code cannot be replayed.
    sqlx::query("update wa_trust set confirmed_at = null, reason = 'revoked'")
        .execute(&app.db)
        .await
        .unwrap();
    say(&app, &me, "wamid.replay", &second).await;
    app.settle().await;
    assert!(
        texts_to(&app, &me)
            .iter()
            .any(|t| t.contains("tidak berlaku")),
        "{:?}",
        texts_to(&app, &me)
    );
    assert_eq!(
        app.count("select count(*) from wa_trust where confirmed_at is not null")
            .await,
        0
    );
}

#[tokio::test]
async fn an_expired_code_is_refused_and_a_new_one_is_sent() {
    let (app, sink) = app_with_mail().await;
    let me = app.user_with_role("MANAGER_SALES", false).await;
    say(&app, &me, "wamid.e1", "status SO-202412-0002?").await;
    let code = sink.code(1).await;
    // The mailer records the code as sent just after the mail leaves: wait for that, then age it.
    assert!(
        eventually(WAIT, || async {
            app.count("select count(*) from wa_otp where sent_at is not null")
                .await
                == 1
        })
        .await
    );
    sqlx::query("update wa_otp set expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    say(&app, &me, "wamid.e2", &code).await;
    let texts = wait_texts(&app, &me, 2).await;
    assert!(texts[1].contains("tidak berlaku"), "{texts:?}");
    let fresh = sink.code(2).await;
    say(&app, &me, "wamid.e3", &fresh).await;
    let texts = wait_texts(&app, &me, 3).await;
    assert!(texts[2].contains("Verifikasi berhasil"), "{texts:?}");
}

#[tokio::test]
async fn a_number_change_or_a_new_identity_hash_forces_a_new_code() {
    let (app, sink) = app_with_mail().await;
    let me = app.trusted_sender().await;
    say(&app, &me, "wamid.ok", "halo").await;
    wait_texts(&app, &me, 1).await;

    // WhatsApp says the user changed number.
    let notice = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "1", "phone_number_id": "000000000000000" },
            "messages": [{ "from": me, "id": "wamid.sys", "timestamp": now().to_string(), "type": "system",
                "system": { "body": "User changed number", "wa_id": "6289999999999", "type": "user_changed_number" } }]
        }}]}]
    }).to_string();
    assert_eq!(app.post_webhook(&notice).await.status(), 200);
    say(&app, &me, "wamid.after", "omzet?").await;
    let texts = wait_texts(&app, &me, 2).await;
    assert!(texts[1].contains("kode 6 digit"), "{texts:?}");
    sink.code(1).await;

    // Another trusted user whose device key changes.
    let other = app.trusted_sender().await;
    sqlx::query("update wa_trust set identity_hash = 'OLDHASH' where wa_id = $1")
        .bind(&other)
        .execute(&app.db)
        .await
        .unwrap();
    let with_hash = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "1", "phone_number_id": "000000000000000" },
            "contacts": [{ "profile": { "name": "X" }, "wa_id": other, "identity_key_hash": "NEWHASH" }],
            "messages": [{ "from": other, "id": "wamid.hash", "timestamp": now().to_string(), "type": "text", "text": { "body": "stok?" } }]
        }}]}]
    }).to_string();
    assert_eq!(app.post_webhook(&with_hash).await.status(), 200);
    let texts = wait_texts(&app, &other, 1).await;
    assert!(texts[0].contains("kode 6 digit"), "{texts:?}");
    sink.code(2).await;
    assert_eq!(audits(&app, "WA.DEVICE_CHANGED").await, 2);
}

#[tokio::test]
async fn a_device_revoked_by_an_admin_or_a_deactivated_user_is_stopped_at_once() {
    let (app, sink) = app_with_mail().await;
    let revoked = app.trusted_sender().await;
    sqlx::query("update adm_user set wa_revoked_at = now() where phone = '+' || $1")
        .bind(&revoked)
        .execute(&app.db)
        .await
        .unwrap();
    say(&app, &revoked, "wamid.r1", "omzet?").await;
    let texts = wait_texts(&app, &revoked, 1).await;
    assert!(texts[0].contains("kode 6 digit"), "{texts:?}");
    sink.code(1).await;

    let gone = app.trusted_sender().await;
    sqlx::query("update adm_user set is_active = false where phone = '+' || $1")
        .bind(&gone)
        .execute(&app.db)
        .await
        .unwrap();
    say(&app, &gone, "wamid.d1", "omzet?").await;
    let texts = wait_texts(&app, &gone, 1).await;
    assert!(texts[0].contains("tidak terdaftar"), "{texts:?}");
}

#[tokio::test]
async fn an_operator_asking_for_finance_is_refused_without_reading_finance_tables() {
    let (app, _sink) = app_with_mail().await;
    let operator = app.user_with_role("OPERATOR", true).await;
    // Were the finance tables read, processing would fail instead of answering.
    sqlx::query("alter table t_ar rename to t_ar_hidden")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("alter table t_ap rename to t_ap_hidden")
        .execute(&app.db)
        .await
        .unwrap();
    say(
        &app,
        &operator,
        "wamid.fin",
        "piutang yang overdue siapa saja?",
    )
    .await;
    let texts = wait_texts(&app, &operator, 1).await;
    assert!(
        texts[0].contains("🔒") && texts[0].contains("piutang overdue"),
        "refused, naming what: {texts:?}"
    );
    assert_eq!(
        app.count("select count(*) from wa_inbox where wamid = 'wamid.fin' and status = 'done'")
            .await,
        1
    );

    // The same question from a director passes the permission check.
    let director = app.trusted_sender().await;
    say(
        &app,
        &director,
        "wamid.fin2",
        "piutang yang overdue siapa saja?",
    )
    .await;
    let texts = wait_texts(&app, &director, 1).await;
    assert!(!texts[0].contains("🔒"), "{texts:?}");
}

#[tokio::test]
async fn when_smtp_is_down_the_user_is_told_and_the_code_follows_when_it_returns() {
    let port = free_port();
    let app = spawn_app_with(move |s| s.smtp.port = port).await;
    let me = app.user_with_role("DIRECTOR", false).await;
    say(&app, &me, "wamid.s1", "omzet bulan ini?").await;
    let texts = wait_texts(&app, &me, 2).await;
    assert!(texts[0].contains("sedang mengirim"), "{texts:?}");
    assert!(texts[1].contains("belum dapat dikirim"), "{texts:?}");
    assert_eq!(
        app.count("select count(*) from wa_inbox where wamid = 's1' or status = 'held'")
            .await,
        1
    );
    assert_eq!(audits(&app, "WA.OTP_SEND_FAILED").await, 1);

    let sink = SmtpSink::start_on(port).await;
    let code = sink.code(1).await;
    let texts = wait_texts(&app, &me, 3).await;
    assert!(texts[2].contains("sudah terkirim"), "{texts:?}");
    say(&app, &me, "wamid.s2", &code).await;
    app.settle().await;
    assert_eq!(app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.s1' and purpose = 'answer'").await, 1, "the held question is answered");
}

#[tokio::test]
async fn a_bsuid_is_recorded_and_then_identifies_the_user_without_a_phone() {
    let (app, _sink) = app_with_mail().await;
    let me = app.trusted_sender().await;
    let delivery = |from: Option<&str>, wamid: &str| {
        let mut message = json!({ "id": wamid, "timestamp": now().to_string(), "type": "text",
            "text": { "body": "halo" }, "from_user_id": "ID.123456789" });
        let mut contact = json!({ "profile": { "name": "X" }, "user_id": "ID.123456789" });
        if let Some(f) = from {
            message["from"] = json!(f);
            contact["wa_id"] = json!(f);
        }
        json!({ "object": "whatsapp_business_account", "entry": [{ "id": "1", "changes": [{ "field": "messages",
            "value": { "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "1", "phone_number_id": "000000000000000" },
                "contacts": [contact], "messages": [message] } }] }] }).to_string()
    };
    app.post_webhook(&delivery(Some(&me), "wamid.b1")).await;
    wait_texts(&app, &me, 1).await;
    assert_eq!(
        app.count("select count(*) from adm_user where bsuid = 'ID.123456789'")
            .await,
        1
    );

    app.post_webhook(&delivery(None, "wamid.b2")).await;
    app.settle().await;
    assert_eq!(
        app.count(
            "select count(*) from wa_outbox where inbound_wamid = 'wamid.b2' and status = 'sent'"
        )
        .await,
        1
    );
    let to_bsuid = app
        .graph()
        .sends()
        .into_iter()
        .find(|r| r.body["recipient"] == "ID.123456789")
        .expect("sent to the BSUID");
    assert!(to_bsuid.body["text"]["body"]
        .as_str()
        .unwrap()
        .contains("Saya bisa menjawab"));
}

#[tokio::test]
async fn the_code_mail_keeps_the_code_out_of_its_subject_line() {
    let (app, sink) = app_with_mail().await;
    let me = app.user_with_role("DIRECTOR", false).await;
    say(&app, &me, "wamid.subj", "omzet?").await;
    let code = sink.code(1).await;
    let mail = &sink.mails()[0];
    let subject = mail
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("subject:"))
        .expect("a subject line");
    assert!(!subject.contains(&code), "{subject}");
    assert!(mail.contains(&code), "the code is in the body");
}
