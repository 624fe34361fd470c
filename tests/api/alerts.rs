//! Proactive alerts: from NATS or a row in ai_alert, routed by rule and role to confirmed
//! devices, once per user, through the outbox (window, template, mutes, statuses).

use std::time::Duration;

use reqwest::Method;

use crate::admin_support::{call, signed_in, status_json};
use crate::helpers::{
    button_delivery, eventually, now, spawn_app, spawn_app_with, status_delivery, text_delivery,
    GraphRequest, TestApp,
};

const WAIT: Duration = Duration::from_secs(20);

fn sends_to(app: &TestApp, to: &str) -> Vec<GraphRequest> {
    app.graph()
        .sends()
        .into_iter()
        .filter(|r| r.body["to"] == to)
        .collect()
}

/// What the person reads: a text's body or an interactive message's body.
fn shown(send: &GraphRequest) -> &str {
    send.body["text"]["body"]
        .as_str()
        .or_else(|| send.body["interactive"]["body"]["text"].as_str())
        .unwrap_or_default()
}

async fn wait_sends(app: &TestApp, to: &str, n: usize) -> Vec<GraphRequest> {
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            sends_to(app, to).len() >= n
        })
        .await,
        "expected {n} sends to {to}, got {:?}",
        sends_to(app, to)
    );
    sends_to(app, to)
}

/// The user wrote to the hub a minute ago: free text may reach them.
async fn open_window(app: &TestApp, wa_id: &str) {
    sqlx::query(
        "insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now() - interval '1 minute')",
    )
    .bind(wa_id)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn publish(app: &TestApp, body: &str) {
    let settings = &app.test_db.settings;
    let nats = sentient_hub::queue::connect_nats(&settings.nats)
        .await
        .unwrap();
    nats.publish(settings.alerts.subject.clone(), body.to_owned().into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
}

async fn user_id(app: &TestApp, wa_id: &str) -> i64 {
    sqlx::query_scalar("select id from adm_user where phone = '+' || $1")
        .bind(wa_id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_alert_on_nats_reaches_each_confirmed_user_its_rules_name_once() {
    let app = spawn_app_with(|s| s.whatsapp.window_template = "hub_alert".into()).await;
    // Default rules: every module from High for directors, WO from Medium for production.
    let director = app.user_with_role("DIRECTOR", true).await;
    let production = app.user_with_role("MANAGER_PROD", true).await;
    let sales = app.user_with_role("MANAGER_SALES", true).await;
    let unconfirmed = app.user_with_role("MANAGER_PROD", false).await;
    let inactive = app.user_with_role("DIRECTOR", true).await;
    sqlx::query("update adm_user set lang = 'en' where phone = '+' || $1")
        .bind(&director)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query("update adm_user set is_active = false where phone = '+' || $1")
        .bind(&inactive)
        .execute(&app.db)
        .await
        .unwrap();
    open_window(&app, &director).await;

    let alert = r#"{"module":"WO","alert_type":"DELAY","severity":"High",
        "message":"WO-202412-0001 terlambat 2 hari","wo":"WO-202412-0001","dedup_key":"wo-delay-1"}"#;
    publish(&app, alert).await;
    // A duplicate: stored and sent once.
    publish(&app, alert).await;
    // Alerts are taken in order: once this one is stored, the duplicate has been handled.
    publish(
        &app,
        r#"{"module":"SYS","alert_type":"MARKER","severity":"Low","message":"marker"}"#,
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            app.count("select count(*) from ai_alert where alert_type = 'MARKER'")
                .await
                == 1
        })
        .await
    );
    assert_eq!(
        app.count("select count(*) from ai_alert").await,
        2,
        "the duplicate added no alert"
    );
    assert_eq!(app.count("select count(*) from wa_dead_letter").await, 0);

    let to_director = wait_sends(&app, &director, 1).await;
    assert_eq!(
        to_director[0].body["type"], "interactive",
        "directors may acknowledge: the alert carries the button"
    );
    let text = shown(&to_director[0]);
    assert!(
        text.contains("HIGH alert"),
        "in the user's language: {text}"
    );
    assert!(text.contains("WO · DELAY"), "{text}");
    assert!(text.contains("WO-202412-0001 terlambat 2 hari"), "{text}");

    // The manager has not written in 24 hours: the alert goes as the approved template.
    let to_production = wait_sends(&app, &production, 1).await;
    assert_eq!(to_production[0].body["type"], "template");
    assert_eq!(to_production[0].body["template"]["name"], "hub_alert");
    let param = to_production[0].body["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap();
    assert!(param.contains("Alert TINGGI"), "{param}");
    assert!(!param.contains('\n'), "template parameters are one line");

    let routed: Vec<i64> =
        sqlx::query_scalar("select user_id from ai_alert_recipient order by user_id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let mut expected = vec![
        user_id(&app, &director).await,
        user_id(&app, &production).await,
    ];
    expected.sort();
    assert_eq!(
        routed, expected,
        "sales has no WO rule; unconfirmed and inactive users get nothing"
    );
    for nobody in [&sales, &unconfirmed, &inactive] {
        assert!(sends_to(&app, nobody).is_empty());
    }

    // The admin list shows where it went, and a delivery status moves the count.
    let director_row =
        "select o.wamid from wa_outbox o join ai_alert_recipient r on r.outbox_id = o.id
         join adm_user u on u.id = r.user_id where u.phone = '+' || $1 and o.status = 'sent'";
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            sqlx::query_scalar::<_, String>(director_row)
                .bind(&director)
                .fetch_optional(&app.db)
                .await
                .unwrap()
                .is_some()
        })
        .await,
        "the send to the director is recorded"
    );
    let wamid: String = sqlx::query_scalar(director_row)
        .bind(&director)
        .fetch_one(&app.db)
        .await
        .unwrap();
    app.post_webhook(&status_delivery(&wamid, "delivered", &director, None))
        .await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let (status, page) = status_json(
        call(
            &app,
            Method::GET,
            "/api/v1/alerts?module=WO",
            Some(&admin.access),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["recipients"], 2);
    assert_eq!(page["items"][0]["delivered"], 1);
    assert_eq!(page["items"][0]["failed"], 0);
    assert_eq!(page["items"][0]["payload"]["wo"], "WO-202412-0001");
}

#[tokio::test]
async fn garbage_on_the_alert_subject_is_kept_as_a_dead_letter_and_the_next_alert_still_lands() {
    let app = spawn_app().await;
    publish(&app, "not json at all").await;
    publish(
        &app,
        r#"{"module":"WO","alert_type":"DELAY","message":"no severity"}"#,
    )
    .await;
    publish(
        &app,
        r#"{"module":"SYS","type":"DISK_FULL","severity":"🔴 Critical","message":"Disk 98%"}"#,
    )
    .await;
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            app.count("select count(*) from ai_alert where module = 'SYS'")
                .await
                == 1
        })
        .await,
        "the valid alert after the garbage was stored"
    );
    let reasons: Vec<String> =
        sqlx::query_scalar("select reason from wa_dead_letter where source = 'alerts' order by id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("not JSON"), "{reasons:?}");
    assert!(reasons[1].starts_with("severity"), "{reasons:?}");
    let body: Vec<u8> = sqlx::query_scalar(
        "select body from wa_dead_letter where source = 'alerts' order by id limit 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(body, b"not json at all", "kept raw");
    assert_eq!(
        app.count("select count(*) from ai_alert where severity = 'Critical' and alert_type = 'DISK_FULL'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_muted_user_gets_the_alert_when_the_mute_ends_and_answers_meanwhile() {
    let app = spawn_app().await;
    let briefly_muted = app.user_with_role("DIRECTOR", true).await;
    let revoked = app.user_with_role("DIRECTOR", true).await;
    let long_muted = app.user_with_role("DIRECTOR", true).await;
    let listening = app.user_with_role("DIRECTOR", true).await;
    for user in [&briefly_muted, &revoked, &long_muted, &listening] {
        open_window(&app, user).await;
    }
    sqlx::query(
        "insert into wa_alert_mute (user_id, until_at)
         select id, now() + interval '1 hour'
         from adm_user where phone in ('+' || $1, '+' || $2, '+' || $3)",
    )
    .bind(&briefly_muted)
    .bind(&revoked)
    .bind(&long_muted)
    .execute(&app.db)
    .await
    .unwrap();
    // A backlog alert from two days ago is kept but not pushed; a fresh one written straight
    // into the table (as a detector does) is.
    sqlx::raw_sql(
        "insert into ai_alert (module, alert_type, severity, message, created_at)
         values ('FIN', 'CASHFLOW', 'Critical', 'Kas negatif (lama)', now() - interval '2 days');
         insert into ai_alert (module, alert_type, severity, message)
         values ('FIN', 'CASHFLOW', 'Critical', 'Saldo kas negatif dalam 7 hari');",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let to_listening = wait_sends(&app, &listening, 1).await;
    let text = shown(&to_listening[0]);
    assert!(text.contains("Alert KRITIS"), "{text}");
    assert!(text.contains("Saldo kas negatif dalam 7 hari"), "{text}");
    assert!(text.contains(" WIB"), "{text}");
    assert_eq!(
        app.count("select count(*) from ai_alert where not is_sent and message like '%(lama)'")
            .await,
        1,
        "the two-day-old alert is not pushed"
    );
    assert_eq!(
        app.count(
            "select count(*) from wa_outbox o join ai_alert_recipient r on r.outbox_id = o.id
             join wa_alert_mute m on m.user_id = r.user_id
             where o.status = 'pending' and o.next_try_at >= m.until_at"
        )
        .await,
        3,
        "the muted users' alerts wait for the end of their mute"
    );
    // While it waits, an admin revokes one muted user's device: that alert must not go out.
    sqlx::query("update adm_user set wa_revoked_at = now() where phone = '+' || $1")
        .bind(&revoked)
        .execute(&app.db)
        .await
        .unwrap();
    // Two of the mutes end (brought forward here rather than waited out).
    sqlx::query(
        "update wa_outbox set next_try_at = now()
         where purpose = 'alert' and status = 'pending' and wa_id in ($1, $2)",
    )
    .bind(&briefly_muted)
    .bind(&revoked)
    .execute(&app.db)
    .await
    .unwrap();

    // The long-muted director asks a question: the answer is not held behind the alert.
    app.post_webhook(&text_delivery(
        &long_muted,
        "wamid.muted.q",
        "What is the revenue this month?",
        now(),
    ))
    .await;
    let to_long_muted = wait_sends(&app, &long_muted, 1).await;
    assert!(to_long_muted[0].body["text"]["body"]
        .as_str()
        .unwrap()
        .contains("Revenue, this month"));

    let to_briefly_muted = wait_sends(&app, &briefly_muted, 1).await;
    assert!(shown(&to_briefly_muted[0]).contains("Saldo kas negatif"));
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            app.count(
                "select count(*) from wa_outbox o join ai_alert_recipient r on r.outbox_id = o.id
                 join adm_user u on u.id = r.user_id
                 where o.status = 'withdrawn' and u.wa_revoked_at is not null",
            )
            .await
                == 1
        })
        .await,
        "the revoked device's alert is withdrawn"
    );
    assert!(sends_to(&app, &revoked).is_empty());
    assert!(
        sends_to(&app, &long_muted)
            .iter()
            .all(|r| !shown(r).contains("KRITIS")),
        "an hour's mute still holds the alert"
    );
}

#[tokio::test]
async fn the_alert_command_checks_and_publishes_what_the_hub_then_pushes() {
    let app = spawn_app().await;
    let director = app.user_with_role("DIRECTOR", true).await;
    open_window(&app, &director).await;
    let settings = &app.test_db.settings;
    let run = |args: &'static [&'static str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("SENTIENT_ENV", "test")
            .env("SENTIENT__ALERTS__SUBJECT", &settings.alerts.subject)
            .env("SENTIENT__ALERTS__STREAM", &settings.alerts.stream)
            .arg("alert")
            .args(args)
            .output()
    };

    let refused = run(&[
        "--module",
        "MAINT",
        "--type",
        "MACHINE_DOWN",
        "--severity",
        "urgent",
        "x",
    ])
    .await
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("severity must be"), "{stderr}");

    let raised = run(&[
        "--module",
        "MAINT",
        "--type",
        "MACHINE_DOWN",
        "--severity",
        "Critical",
        "MCH-003",
        "berhenti",
    ])
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&raised.stdout);
    assert!(
        raised.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&raised.stderr)
    );
    assert!(
        stdout.contains("alert kept in stream") && stdout.contains("(sequence 1)"),
        "only the valid alert was published: {stdout}"
    );
    let sends = wait_sends(&app, &director, 1).await;
    let text = shown(&sends[0]);
    assert!(text.contains("MAINT · MACHINE_DOWN"), "{text}");
    assert!(text.contains("MCH-003 berhenti"), "{text}");
    assert_eq!(
        app.count("select count(*) from wa_dead_letter").await,
        0,
        "the refused alert was never published"
    );
}

#[tokio::test]
async fn detectors_raise_what_is_not_open_yet_at_most_once_a_day_and_it_is_pushed() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    let director = app.user_with_role("DIRECTOR", true).await;
    open_window(&app, &director).await;
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    let detect = || sentient_hub::alerts::detect::detect(&app.db, today);
    let detected = || async {
        sqlx::query_as::<_, (String, String, String, String)>(
            "select module, alert_type, severity, message from ai_alert
             where dedup_key like 'detect:%' order by module, message",
        )
        .fetch_all(&app.db)
        .await
        .unwrap()
    };

    // The demo's open alerts already speak of MCH-003's rejects and ITM-005 being oversold: the
    // detectors add the rest of what the data shows (low stock, customers over 30 days late).
    let raised = detect().await.unwrap();
    let first = detected().await;
    assert_eq!(raised as usize, first.len(), "{first:?}");
    assert!(
        !first
            .iter()
            .any(|d| d.3.contains("MCH-003") || d.3.contains("ITM-005")),
        "{first:?}"
    );
    assert!(
        first.iter().any(|d| d.0 == "INV"
            && d.2 == "Low"
            && d.3.starts_with("ITM-003 di bawah stok minimum")),
        "{first:?}"
    );
    let overdue: Vec<_> = first
        .iter()
        .filter(|d| d.0 == "FIN" && d.1 == "OVERDUE")
        .collect();
    assert_eq!(overdue.len(), 1, "{first:?}");
    let customers: i64 = app
        .count(&format!(
            "select count(distinct cust_id) from t_ar
             where paid_dt is null and status <> 'Paid' and due_dt < date '{today}' - 30"
        ))
        .await;
    assert_eq!(
        overdue[0].3,
        format!("{customers} customer piutang > 30 hari")
    );
    assert_eq!(
        detect().await.unwrap(),
        0,
        "nothing new while they are open"
    );
    // An item below its minimum that becomes oversold is news, though that alert is still open.
    sqlx::query(
        "update t_inv v set qty_reserved = v.qty_on_hand + 50
         from m_item i, m_wh w
         where i.id = v.item_id and w.id = v.wh_id and i.code = 'ITM-003' and w.code = 'WH-C1'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(detect().await.unwrap(), 1);
    let first = detected().await;
    assert!(
        first
            .iter()
            .any(|d| d.2 == "Medium" && d.3.starts_with("ITM-003 oversold (-50")),
        "{first:?}"
    );

    // Once handled, a lasting condition is raised again, but the same day only what was not
    // raised that day yet.
    sqlx::query("update ai_alert set acked_at = now() where acked_at is null")
        .execute(&app.db)
        .await
        .unwrap();
    detect().await.unwrap();
    let second = detected().await;
    let new: Vec<_> = second.iter().filter(|d| !first.contains(d)).collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(
        new.iter().any(|d| d.0 == "WO"
            && d.1 == "ANOMALY"
            && d.2 == "High"
            && d.3.starts_with("Reject rate MCH-003 = ")
            && d.3.contains("% (ambang 5%) dalam 7 hari terakhir")),
        "{new:?}"
    );
    assert!(
        new.iter()
            .any(|d| d.0 == "INV" && d.2 == "Medium" && d.3.starts_with("ITM-005 oversold (-200")),
        "{new:?}"
    );
    assert!(
        !second.iter().any(|d| d.3.contains("MCH-001")),
        "healthy machines raise nothing"
    );

    // Directors receive everything from High: the reject-rate anomaly, nothing else.
    let sends = wait_sends(&app, &director, 1).await;
    let text = shown(&sends[0]);
    assert!(text.contains("Reject rate MCH-003"), "{text}");
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            app.count(
                "select count(*) from ai_alert where dedup_key like 'detect:%' and not is_sent",
            )
            .await
                == 0
        })
        .await,
        "every detected alert was routed"
    );
    assert_eq!(
        app.count(
            "select count(*) from ai_alert_recipient r join adm_user u on u.id = r.user_id
             where u.role_id = (select id from adm_role where code = 'DIRECTOR')"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn alerts_of_a_module_the_user_may_not_read_are_neither_pushed_nor_told() {
    let app = spawn_app().await;
    let operator = app.user_with_role("OPERATOR", true).await;
    open_window(&app, &operator).await;
    // An admin routes every alert to operators; operators may read maintenance, not finance.
    sqlx::raw_sql(
        "insert into ai_alert_rule (module, min_severity, role_id)
         select null, 'Low', id from adm_role where code = 'OPERATOR';
         insert into ai_alert (module, alert_type, severity, message) values
            ('FIN', 'CASHFLOW', 'High', 'Saldo kas negatif dalam 7 hari'),
            ('MAINT', 'MACHINE_DOWN', 'High', 'MCH-002 berhenti');",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let sends = wait_sends(&app, &operator, 1).await;
    assert!(shown(&sends[0]).contains("MCH-002 berhenti"));
    assert_eq!(
        sends[0].body["type"], "text",
        "operators may not acknowledge: no button"
    );
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            app.count("select count(*) from ai_alert where not is_sent")
                .await
                == 0
        })
        .await
    );
    assert_eq!(
        app.count(
            "select count(*) from ai_alert_recipient r join ai_alert a on a.id = r.alert_id
             where a.module = 'FIN'"
        )
        .await,
        0,
        "a finance alert is finance data"
    );

    // Asked for the active alerts, the operator hears of the machine, not of the cash.
    app.post_webhook(&text_delivery(
        &operator,
        "wamid.op.alerts",
        "alert aktif apa aja?",
        now(),
    ))
    .await;
    let sends = wait_sends(&app, &operator, 2).await;
    let answer = sends[1].body["text"]["body"].as_str().unwrap();
    assert!(answer.contains("MCH-002 berhenti"), "{answer}");
    assert!(!answer.contains("Saldo kas"), "{answer}");
    assert_eq!(sends_to(&app, &operator).len(), 2);
}

#[tokio::test]
async fn tapping_the_button_acknowledges_the_alert_and_what_still_waits_is_withdrawn() {
    let app = spawn_app().await;
    let first = app.user_with_role("DIRECTOR", true).await;
    let muted = app.user_with_role("DIRECTOR", true).await;
    let operator = app.user_with_role("OPERATOR", true).await;
    let sales = app.user_with_role("MANAGER_SALES", true).await;
    for user in [&first, &muted, &operator, &sales] {
        open_window(&app, user).await;
    }
    sqlx::query(
        "insert into wa_alert_mute (user_id, until_at)
         select id, now() + interval '1 hour' from adm_user where phone = '+' || $1",
    )
    .bind(&muted)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::raw_sql(
        "insert into ai_alert (module, alert_type, severity, message)
         values ('MAINT', 'MACHINE_DOWN', 'Critical', 'MCH-003 berhenti')",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let alert = wait_sends(&app, &first, 1).await.remove(0);
    let button = &alert.body["interactive"]["action"]["buttons"][0]["reply"];
    assert_eq!(button["title"], "✅ Saya tangani");
    let id = button["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("alert.ack:"), "{id}");

    // Someone without ALERT.ACK cannot acknowledge, even with the button's id.
    app.post_webhook(&button_delivery(
        &operator,
        "wamid.ack.op",
        &id,
        "✅ Saya tangani",
    ))
    .await;
    let refused = wait_sends(&app, &operator, 1).await;
    assert!(shown(&refused[0]).contains("🔒"), "{}", shown(&refused[0]));
    // Nor can someone who may acknowledge alerts but never received this one.
    app.post_webhook(&button_delivery(
        &sales,
        "wamid.ack.sales",
        &id,
        "✅ Saya tangani",
    ))
    .await;
    let refused = wait_sends(&app, &sales, 1).await;
    assert_eq!(shown(&refused[0]), "Alert ini sudah tidak ada.");

    app.post_webhook(&button_delivery(
        &first,
        "wamid.ack.1",
        &id,
        "✅ Saya tangani",
    ))
    .await;
    let replies = wait_sends(&app, &first, 2).await;
    assert_eq!(
        shown(&replies[1]),
        "✅ Dicatat: Anda menangani alert MAINT · MACHINE_DOWN."
    );
    let first_id = sqlx::query_scalar::<_, i64>("select id from adm_user where phone = '+' || $1")
        .bind(&first)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        app.count(&format!(
            "select count(*) from ai_alert where acked_by = {first_id} and is_read"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "select count(*) from log_audit where action = 'ACK' and entity_type = 'ai_alert'
             and user_id = {first_id} and new_value ->> 'acked_at' is not null"
        ))
        .await,
        1
    );

    // The same tap again (or redelivered) changes nothing; another recipient's tap is told who
    // has it.
    app.post_webhook(&button_delivery(
        &first,
        "wamid.ack.2",
        &id,
        "✅ Saya tangani",
    ))
    .await;
    let replies = wait_sends(&app, &first, 3).await;
    assert_eq!(shown(&replies[2]), shown(&replies[1]));
    app.post_webhook(&button_delivery(
        &muted,
        "wamid.ack.3",
        &id,
        "✅ Saya tangani",
    ))
    .await;
    let told = wait_sends(&app, &muted, 1).await;
    assert!(
        shown(&told[0])
            .starts_with("ℹ️ Alert MAINT · MACHINE_DOWN sudah ditangani oleh Test User ("),
        "{}",
        shown(&told[0])
    );
    assert_eq!(
        app.count("select count(*) from log_audit where action = 'ACK'")
            .await,
        1
    );

    // The muted director's copy was still waiting: when its time comes (brought forward here
    // rather than waiting out the hour) it is withdrawn, not sent.
    sqlx::query(
        "update wa_outbox set next_try_at = now() where purpose = 'alert' and status = 'pending'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    assert!(
        eventually(WAIT, || async {
            app.settle().await;
            app.count(
                "select count(*) from wa_outbox where purpose = 'alert' and status = 'withdrawn'",
            )
            .await
                == 1
        })
        .await,
        "the waiting copy is withdrawn once its mute ends"
    );
    assert_eq!(
        sends_to(&app, &muted).len(),
        1,
        "only the answer to their tap, not the alert"
    );
}

#[tokio::test]
async fn an_alert_of_a_module_outside_the_map_reaches_only_alert_managers() {
    let app = spawn_app().await;
    let operator = app.user_with_role("OPERATOR", true).await;
    let admin = app.user_with_role("SYSADMIN", true).await;
    for user in [&operator, &admin] {
        open_window(&app, user).await;
    }
    // Every alert routed to both roles; HR is in no module map, SYS is for every alert reader.
    sqlx::raw_sql(
        "insert into ai_alert_rule (module, min_severity, role_id)
         select null, 'Low', id from adm_role where code in ('OPERATOR', 'SYSADMIN');
         insert into ai_alert (module, alert_type, severity, message) values
            ('HR', 'PAYROLL', 'High', 'Gaji Budi belum dibayar'),
            ('SYS', 'DISK_FULL', 'High', 'Disk 98%');",
    )
    .execute(&app.db)
    .await
    .unwrap();
    app.settle().await;
    let texts = |to: &str| -> Vec<String> {
        sends_to(&app, to)
            .iter()
            .map(|s| shown(s).to_owned())
            .collect()
    };
    let (to_operator, to_admin) = (texts(&operator), texts(&admin));
    assert!(
        to_operator.iter().any(|t| t.contains("Disk 98%")),
        "{to_operator:?}"
    );
    assert!(
        !to_operator.iter().any(|t| t.contains("Gaji")),
        "{to_operator:?}"
    );
    assert!(to_admin.iter().any(|t| t.contains("Gaji")), "{to_admin:?}");

    // Nor is it told in the operator's "active alerts" answer.
    app.post_webhook(&text_delivery(
        &operator,
        "wamid.op.hr",
        "alert aktif apa aja?",
        now(),
    ))
    .await;
    app.settle().await;
    let sends = sends_to(&app, &operator);
    let answer = shown(sends.last().unwrap());
    assert!(answer.contains("Disk 98%"), "{answer}");
    assert!(!answer.contains("Gaji"), "{answer}");
}

#[tokio::test]
async fn a_publisher_cannot_silence_the_detectors() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    // A detector's key (or a stream position's) is not a publisher's to take.
    for key in [format!("detect:overdue:{today}"), "js:1:2026".to_owned()] {
        let body = format!(
            r#"{{"module":"FIN","alert_type":"OVERDUE","severity":"Low","message":"x","dedup_key":"{key}"}}"#
        );
        let reason = sentient_hub::alerts::intake::parse(body.as_bytes()).unwrap_err();
        assert!(reason.contains("reserved"), "{key}: {reason}");
    }
    // An open alert of the same kind that was never pushed (Dashboard only) hides nothing.
    sqlx::query(
        "insert into ai_alert (module, alert_type, severity, message, channel)
         values ('FIN', 'OVERDUE', 'Low', 'decoy', 'Dashboard')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    sentient_hub::alerts::detect::detect(&app.db, today)
        .await
        .unwrap();
    assert_eq!(
        app.count(&format!(
            "select count(*) from ai_alert where dedup_key = 'detect:overdue:{today}'"
        ))
        .await,
        1,
        "the receivables over 30 days late are raised"
    );
}
