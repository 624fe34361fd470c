//! The morning digest: scheduled once per user per day (however many instances try), changed
//! from the chat and the admin API, refused by the window without a template, withdrawn for a
//! user who lost the right to it.

use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use reqwest::Method;
use serde_json::json;

use crate::admin_support::{audit_count, call, get, signed_in, status_json};
use crate::helpers::{eventually, now, spawn_app, text_delivery, texts_to, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// `hh:mm` today in Jakarta, as an instant.
fn jakarta(h: u32, m: u32) -> DateTime<Utc> {
    let today = Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    chrono_tz::Asia::Jakarta
        .from_local_datetime(&today.and_hms_opt(h, m, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// The user wrote to the hub a minute ago: free text may reach them.
async fn open_window(app: &TestApp, wa_id: &str) {
    sqlx::query(
        "insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now() - interval '1 minute')
         on conflict (sender_key) do update set last_in_at = excluded.last_in_at",
    )
    .bind(wa_id)
    .execute(&app.db)
    .await
    .unwrap();
}

async fn digests_to(app: &TestApp, wa_id: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from wa_outbox where purpose = 'digest' and part_no = 1 and wa_id = $1",
    )
    .bind(wa_id)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn ask(app: &TestApp, wa_id: &str, text: &str) -> String {
    let before = texts_to(app, wa_id).len();
    let body = text_delivery(
        wa_id,
        &format!("wamid.dg.{}", uuid::Uuid::new_v4()),
        text,
        now(),
    );
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let answered = eventually(WAIT, || async {
        app.settle().await;
        texts_to(app, wa_id).len() > before
    })
    .await;
    assert!(answered, "{text:?} answered");
    texts_to(app, wa_id).last().cloned().unwrap()
}

#[tokio::test]
async fn a_directors_digest_goes_once_a_day_however_many_instances_try() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    let director = app.user_with_role("DIRECTOR", true).await;
    let manager = app.user_with_role("MANAGER_PROD", true).await;
    let unconfirmed = app.user_with_role("DIRECTOR", false).await;
    for u in [&director, &manager, &unconfirmed] {
        open_window(&app, u).await;
    }
    let digests = &app.stages.digests;
    // Before 07:00 nothing is due.
    assert_eq!(digests.send_due(jakarta(6, 59)).await.unwrap(), 0);
    // Two instances at once, and again a minute later: one digest.
    let other = digests.clone();
    let (a, b) = tokio::join!(
        digests.send_due(jakarta(7, 1)),
        other.send_due(jakarta(7, 1))
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(digests.send_due(jakarta(7, 2)).await.unwrap(), 0);
    assert_eq!(digests_to(&app, &director).await, 1);
    // Managers only when they ask; an unconfirmed device never.
    assert_eq!(digests_to(&app, &manager).await, 0);
    assert_eq!(digests_to(&app, &unconfirmed).await, 0);
    let sent = eventually(WAIT, || async {
        app.settle().await;
        !texts_to(&app, &director).is_empty()
    })
    .await;
    assert!(sent, "the digest reaches the director");
    let text = texts_to(&app, &director).join("\n");
    assert!(
        text.starts_with("☀️ Selamat pagi, Test. Ringkasan Anda (angka sampai kemarin)"),
        "{text}"
    );
    // Closed days: yesterday's production, not this morning's empty hours.
    assert!(text.contains("Produksi kemarin"), "{text}");
    assert!(
        text.contains("📊 Ringkasan eksekutif") && text.contains("Kas: Rp"),
        "{text}"
    );
    assert!(text.contains("stop digest"), "{text}");
    assert_eq!(
        app.count("select count(*) from wa_outbox where purpose = 'digest' and status = 'sent'")
            .await,
        1
    );
    // Three hours late (the hub was down all morning): skipped for the day.
    let late = app.user_with_role("DIRECTOR", true).await;
    assert_eq!(digests.send_due(jakarta(10, 0)).await.unwrap(), 0);
    assert_eq!(digests_to(&app, &late).await, 0);
}

#[tokio::test]
async fn the_chat_turns_the_digest_on_at_a_time_and_off() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    app.stages.catalog.reload(&app.db).await.unwrap();
    let director = app.user_with_role("DIRECTOR", true).await;
    let manager = app.user_with_role("MANAGER_PROD", true).await;
    let reply = ask(&app, &manager, "digest jam 6").await;
    assert!(reply.contains("pukul 06:00"), "{reply}");
    let reply = ask(&app, &director, "stop digest").await;
    assert!(reply.contains("tidak dikirim"), "{reply}");
    let set: Vec<(String, Option<NaiveTime>)> = sqlx::query_as(
        "select u.phone, p.send_at from wa_digest_pref p join adm_user u on u.id = p.user_id order by u.phone",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let mut expected = vec![
        (format!("+{manager}"), NaiveTime::from_hms_opt(6, 0, 0)),
        (format!("+{director}"), None),
    ];
    expected.sort();
    assert_eq!(set, expected);
    let digests = &app.stages.digests;
    assert_eq!(digests.send_due(jakarta(6, 1)).await.unwrap(), 1);
    assert_eq!(digests_to(&app, &manager).await, 1);
    assert_eq!(digests.send_due(jakarta(7, 1)).await.unwrap(), 0);
    assert_eq!(digests_to(&app, &director).await, 0);
    // "kirim ringkasan tiap pagi" turns it back on at the default time; in English too.
    let reply = ask(&app, &director, "kirim ringkasan tiap pagi").await;
    assert!(reply.contains("pukul 07:00"), "{reply}");
    let reply = ask(&app, &manager, "send me the digest at 5:30 am").await;
    assert!(reply.contains("at 05:30"), "{reply}");
    assert_eq!(
        app.count("select count(*) from ai_chat where intent = 'digest'")
            .await,
        4
    );
}

#[tokio::test]
async fn the_admin_api_shows_and_sets_a_digest_and_what_became_of_it() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    let director = app.user_with_role("DIRECTOR", true).await;
    let uuid: uuid::Uuid = sqlx::query_scalar("select uuid from adm_user where phone = '+' || $1")
        .bind(&director)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let admin = signed_in(&app, "digest.admin", "SYSADMIN").await;
    let path = format!("/api/v1/users/{uuid}/digest");
    let (status, body) = status_json(get(&app, &path, &admin.access).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["send_at"], "07:00");
    assert_eq!(body["source"], "default");

    // The director has not written in 24 hours and no template is configured: recorded as
    // not deliverable, nothing reaches Meta.
    assert_eq!(app.stages.digests.send_due(jakarta(7, 1)).await.unwrap(), 1);
    let failed = eventually(WAIT, || async {
        app.settle().await;
        app.count("select count(*) from wa_outbox where purpose = 'digest' and status = 'failed'")
            .await
            == 1
    })
    .await;
    assert!(failed, "the digest is recorded as failed");
    assert!(texts_to(&app, &director).is_empty());
    let (_, body) = status_json(get(&app, &path, &admin.access).await).await;
    let recent = body["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 1, "{body}");
    assert_eq!(recent[0]["status"], "failed");
    assert_eq!(recent[0]["error_code"], 131047);

    // Set, audited; a bad time is 422; an unknown user 404; a reader may not set.
    let (status, body) = status_json(
        call(
            &app,
            Method::PUT,
            &path,
            Some(&admin.access),
            Some(json!({"enabled": true, "send_at": "05:30"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["send_at"].as_str(), body["source"].as_str()),
        (Some("05:30"), Some("user"))
    );
    assert_eq!(audit_count(&app, "DIGEST_SET").await, 1);
    let (status, body) = status_json(
        call(
            &app,
            Method::PUT,
            &path,
            Some(&admin.access),
            Some(json!({"enabled": true, "send_at": "25:00"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = status_json(
        call(
            &app,
            Method::PUT,
            &path,
            Some(&admin.access),
            Some(json!({"enabled": "yes"})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    let unknown = format!("/api/v1/users/{}/digest", uuid::Uuid::new_v4());
    assert_eq!(
        status_json(get(&app, &unknown, &admin.access).await)
            .await
            .0,
        404
    );
    let (status, body) = status_json(
        call(
            &app,
            Method::PUT,
            &path,
            Some(&admin.access),
            Some(json!({"enabled": false})),
        )
        .await,
    )
    .await;
    assert_eq!((status, body["enabled"].as_bool()), (200, Some(false)));
    let reader = signed_in(&app, "digest.reader", "READONLY").await;
    let (status, _) = status_json(
        call(
            &app,
            Method::PUT,
            &path,
            Some(&reader.access),
            Some(json!({"enabled": true})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_digest_is_not_for_a_user_deactivated_of_another_role_late_or_turned_off() {
    let app = spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    let director = app.user_with_role("DIRECTOR", true).await;
    let deactivate = |active: bool| {
        sqlx::query("update adm_user set is_active = $2 where phone = '+' || $1")
            .bind(director.clone())
            .bind(active)
            .execute(&app.db)
    };
    // An inactive user is not queued.
    deactivate(false).await.unwrap();
    let digests = &app.stages.digests;
    assert_eq!(digests.send_due(jakarta(7, 1)).await.unwrap(), 0);
    deactivate(true).await.unwrap();
    assert_eq!(digests.send_due(jakarta(7, 2)).await.unwrap(), 1);
    let row: i64 = sqlx::query_scalar("select id from wa_outbox where purpose = 'digest'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    // The sender's last check before a (retried, delayed) send: still wanted while active, of
    // the same role, within the catch-up window and on; not otherwise.
    let veto = digests.veto();
    assert!(veto(row).await.unwrap());
    deactivate(false).await.unwrap();
    assert!(!veto(row).await.unwrap());
    deactivate(true).await.unwrap();
    assert!(veto(row).await.unwrap());
    // A role changed since the digest was written: its figures were the old role's.
    sqlx::query("update adm_user set role_id = (select id from adm_role where code = 'READONLY') where phone = '+' || $1")
        .bind(&director)
        .execute(&app.db)
        .await
        .unwrap();
    assert!(!veto(row).await.unwrap());
    sqlx::query("update adm_user set role_id = (select id from adm_role where code = 'DIRECTOR') where phone = '+' || $1")
        .bind(&director)
        .execute(&app.db)
        .await
        .unwrap();
    assert!(veto(row).await.unwrap());
    // Held back past the catch-up window (retries): not sent at noon.
    sqlx::query("update wa_outbox set created_at = now() - interval '181 minutes' where id = $1")
        .bind(row)
        .execute(&app.db)
        .await
        .unwrap();
    assert!(!veto(row).await.unwrap());
    sqlx::query("update wa_outbox set created_at = now() where id = $1")
        .bind(row)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "insert into wa_digest_pref (user_id, send_at) select id, null from adm_user where phone = '+' || $1",
    )
    .bind(&director)
    .execute(&app.db)
    .await
    .unwrap();
    assert!(!veto(row).await.unwrap());
}
