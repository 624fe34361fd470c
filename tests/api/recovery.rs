//! Crash safety (issue 12): a row is `sending` only during its own Graph call; a send the hub
//! was killed during is settled by Meta's status or sent once more after the grace period, and
//! holds later messages to its recipient meanwhile; a relayed message whose JetStream job was
//! lost is relayed again under a new message id.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    eventually, new_sender, now, spawn_app_with, status_delivery, text_delivery, texts_to, TestApp,
};

const WAIT: Duration = Duration::from_secs(20);

/// JetStream on the NATS the app uses.
async fn jetstream(settings: &sentient_hub::config::Settings) -> async_nats::jetstream::Context {
    let url = secrecy::ExposeSecret::expose_secret(&settings.nats.url);
    async_nats::jetstream::new(async_nats::connect(url).await.unwrap())
}

/// An outbox row of `body` to `to` in `status`, `attempts` tried, its lease (if sending) over;
/// the recipient wrote a minute ago, so the 24-hour window is open. Returns the row's uuid.
async fn outbox_row(
    app: &TestApp,
    to: &str,
    body: &str,
    status: &str,
    attempts: i32,
) -> uuid::Uuid {
    sqlx::query(
        "insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now() - interval '1 minute')
         on conflict (sender_key) do nothing",
    )
    .bind(to)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query_scalar(
        "insert into wa_outbox (inbound_wamid, wa_id, kind, payload, status, attempts, lease_until)
         values ('wamid.' || gen_random_uuid(), $1, 'text', $2, $3, $4,
                 case when $3 = 'sending' then now() - interval '1 minute' end)
         returning uuid",
    )
    .bind(to)
    .bind(json!({"type": "text", "text": {"body": body}}))
    .bind(status)
    .bind(attempts)
    .fetch_one(&app.db)
    .await
    .unwrap()
}

async fn status_of(app: &TestApp, uuid: uuid::Uuid) -> String {
    sqlx::query_scalar("select status from wa_outbox where uuid = $1")
        .bind(uuid)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn rows_waiting_for_the_rate_limiter_are_still_pending() {
    // One message a second: of eight due rows (eight recipients), a crash at any moment finds
    // at most the one whose Graph call is in flight marked `sending`. Before the fix, one claim
    // marked all eight `sending`, and a crash made them all `unknown`.
    let app = spawn_app_with(|s| s.whatsapp.messages_per_second = 1).await;
    for n in 0..8 {
        outbox_row(&app, &new_sender(), &format!("m{n}"), "pending", 0).await;
    }
    app.stages.sender.doorbell().ring();
    let mut most_sending = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < deadline {
        let sending = app
            .count("select count(*) from wa_outbox where status = 'sending'")
            .await;
        most_sending = most_sending.max(sending);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = app
        .count("select count(*) from wa_outbox where status = 'sent'")
        .await;
    assert!(sent >= 2, "the sender kept going at 1/s: {sent} sent");
    assert!(
        most_sending <= 1,
        "{most_sending} rows were `sending` at once at 1 message/s"
    );
}

#[tokio::test]
async fn an_unknown_send_holds_later_messages_and_is_sent_once_more_when_meta_never_named_it() {
    let app = spawn_app_with(|s| s.whatsapp.unknown_grace_secs = 2).await;
    let to = new_sender();
    // The hub was killed during this send; a later answer to the same person waits behind it.
    let crashed = outbox_row(&app, &to, "first", "sending", 1).await;
    let later = outbox_row(&app, &to, "second", "pending", 0).await;
    // (The app's own sender expires leases too; whoever comes first.)
    app.stages.sender.expire_leases().await.unwrap();
    assert_eq!(status_of(&app, crashed).await, "unknown");

    app.stages.sender.send_due().await.unwrap();
    assert!(
        texts_to(&app, &to).is_empty(),
        "nothing overtakes a send that may still arrive"
    );
    assert_eq!(status_of(&app, later).await, "pending");

    // No status from Meta within the grace period: sent once more, then the later one.
    assert!(
        eventually(WAIT, || async { texts_to(&app, &to).len() == 2 }).await,
        "both sent after the grace period: {:?}",
        texts_to(&app, &to)
    );
    assert_eq!(
        texts_to(&app, &to),
        ["first", "second"],
        "in order, once each"
    );
    assert_eq!(status_of(&app, crashed).await, "sent");
    let attempts: i32 = sqlx::query_scalar("select attempts from wa_outbox where uuid = $1")
        .bind(crashed)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(attempts, 2);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        // One recorder serves every test in this process: the line, not its count.
        metrics.contains("outbox_unknown_settled_total{by=\"resent\"}"),
        "counted: {}",
        metrics
            .lines()
            .filter(|l| l.contains("unknown"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn meta_naming_an_unknown_send_settles_it_without_a_resend_and_releases_the_next() {
    let app = spawn_app_with(|s| s.whatsapp.unknown_grace_secs = 3600).await;
    let to = new_sender();
    let crashed = outbox_row(&app, &to, "first", "sending", 1).await;
    outbox_row(&app, &to, "second", "pending", 0).await;
    app.stages.sender.expire_leases().await.unwrap();
    app.stages.sender.send_due().await.unwrap();
    assert!(texts_to(&app, &to).is_empty());

    // Meta did take it: its status carries our callback data.
    app.post_webhook(&status_delivery(
        "wamid.meta.first",
        "sent",
        &to,
        Some(&crashed.to_string()),
    ))
    .await;
    assert_eq!(status_of(&app, crashed).await, "sent");
    assert!(
        eventually(WAIT, || async { texts_to(&app, &to).len() == 1 }).await,
        "the later message goes once the earlier one is settled"
    );
    assert_eq!(
        texts_to(&app, &to),
        ["second"],
        "the first is not sent twice"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("outbox_unknown_settled_total{by=\"status\"}"));
}

#[tokio::test]
async fn an_unknown_send_on_its_last_attempt_stays_unknown_and_holds_nothing_back() {
    let app = spawn_app_with(|s| {
        s.whatsapp.unknown_grace_secs = 0;
        s.whatsapp.send_max_attempts = 2;
    })
    .await;
    let to = new_sender();
    let crashed = outbox_row(&app, &to, "first", "sending", 2).await;
    outbox_row(&app, &to, "second", "pending", 0).await;
    app.stages.sender.expire_leases().await.unwrap();
    app.stages.sender.settle_unknown().await.unwrap();
    app.settle().await;
    assert_eq!(texts_to(&app, &to), ["second"]);
    assert_eq!(status_of(&app, crashed).await, "unknown");
}

#[tokio::test]
async fn a_relayed_message_whose_job_was_lost_is_relayed_again_under_a_new_id_and_answered_once() {
    let app = spawn_app_with(|s| {
        s.inbox.ack_wait_secs = 2;
        s.inbox.max_deliver = 1;
        s.inbox.rerelay_margin_secs = 3;
    })
    .await;
    let from = app.trusted_sender().await;
    // An earlier question, answered normally: the lost one copies its row.
    app.post_webhook(&text_delivery(
        &from,
        "wamid.first",
        "omzet bulan ini",
        now(),
    ))
    .await;
    app.settle().await;

    // The lost job: JetStream took a message with id `wamid.lost` (so its duplicate window
    // knows that id), but the job never reached a worker (here: it names another row, the
    // shape of another deployment's job, which the consumer terminates).
    let settings = &app.test_db.settings.inbox;
    let partition = sentient_hub::inbox::partition_of(&from, settings.partitions);
    let js = jetstream(&app.test_db.settings).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, "wamid.lost");
    js.publish_with_headers(
        sentient_hub::inbox::subject(&settings.subject_prefix, partition),
        headers,
        json!({"id": i64::MAX, "wamid": "wamid.lost"})
            .to_string()
            .into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    sqlx::query(
        "insert into wa_inbox (wamid, phone_nr_id, wa_id, sender_key, msg_type, body, payload,
                               sent_at, status, relayed_at)
         select 'wamid.lost', phone_nr_id, wa_id, sender_key, msg_type, 'berapa order bulan ini',
                payload, now(), 'relayed', now() - interval '10 seconds'
         from wa_inbox where wamid = 'wamid.first'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // A row relayed just now is only slow, not lost.
    sqlx::query(
        "insert into wa_inbox (wamid, phone_nr_id, wa_id, sender_key, msg_type, body, payload,
                               sent_at, status, relayed_at)
         select 'wamid.slow', phone_nr_id, wa_id, sender_key, msg_type, 'halo', payload, now(),
                'relayed', now()
         from wa_inbox where wamid = 'wamid.first'",
    )
    .execute(&app.db)
    .await
    .unwrap();

    // (The app's own relay sweeps too, every second; whoever comes first.)
    app.stages.relay.rerelay_lost().await.unwrap();
    assert_eq!(
        app.count("select rerelays::bigint from wa_inbox where wamid = 'wamid.slow'")
            .await,
        0,
        "a row relayed just now is left alone"
    );
    // The app's own relay and consumers take it from here, through JetStream: the old message
    // id would be dropped as a duplicate, so only a new one gets it answered.
    assert!(
        eventually(WAIT, || async {
            app.count(
                "select count(*) from wa_inbox where wamid = 'wamid.lost' and status = 'done'",
            )
            .await
                == 1
        })
        .await,
        "the lost message was answered"
    );
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.lost'")
            .await,
        1
    );
    assert_eq!(
        app.count("select rerelays::bigint from wa_inbox where wamid = 'wamid.lost'")
            .await,
        1
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("inbox_rerelayed_total"));
}

#[tokio::test]
async fn a_deleted_inbox_stream_is_set_up_again_while_the_hub_runs() {
    let app = spawn_app_with(|s| s.inbox.relay_idle_ms = 200).await;
    let from = app.trusted_sender().await;
    let js = jetstream(&app.test_db.settings).await;
    // As if nats-server lost its store, or an operator removed the stream.
    js.delete_stream(&app.test_db.settings.inbox.stream)
        .await
        .unwrap();
    app.post_webhook(&text_delivery(&from, "wamid.nostream", "halo", now()))
        .await;
    assert!(
        eventually(WAIT, || async {
            app.graph().sends().iter().any(|r| r.body["to"] == from)
        })
        .await,
        "the relay and the consumers set the stream up again and the message was answered"
    );
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.nostream'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_senders_earlier_message_whose_job_was_lost_is_answered_before_the_next_one() {
    let app = spawn_app_with(|_| {}).await;
    let from = app.trusted_sender().await;
    app.post_webhook(&text_delivery(&from, "wamid.first", "halo", now()))
        .await;
    app.settle().await;
    // Relayed a moment ago, its job lost (the sweep would only find it minutes later).
    sqlx::query(
        "insert into wa_inbox (wamid, phone_nr_id, wa_id, sender_key, msg_type, body, payload,
                               sent_at, status, relayed_at)
         select 'wamid.lost.early', phone_nr_id, wa_id, sender_key, msg_type, 'omzet bulan ini',
                payload, now(), 'relayed', now()
         from wa_inbox where wamid = 'wamid.first'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    app.post_webhook(&text_delivery(
        &from,
        "wamid.next",
        "berapa order bulan ini",
        now(),
    ))
    .await;
    // The app's own workers, through JetStream: the job of wamid.next comes, the lost one never.
    assert!(
        eventually(WAIT, || async { texts_to(&app, &from).len() == 3 }).await,
        "both answered: {:?}",
        texts_to(&app, &from)
    );
    let order: Vec<String> = sqlx::query_scalar(
        "select inbound_wamid from wa_outbox where wa_id = $1 order by sent_at, id",
    )
    .bind(&from)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(order, ["wamid.first", "wamid.lost.early", "wamid.next"]);
}

#[tokio::test]
async fn the_alert_stream_of_a_release_before_deployment_names_is_taken_over_with_what_it_holds() {
    let mut test_db = crate::helpers::fresh_database().await;
    let alerts = test_db.settings.alerts.clone();
    let legacy = format!("{}_LEGACY", alerts.stream);
    let js = jetstream(&test_db.settings).await;
    // The old release's stream over the same subject, holding an alert published while the hub
    // was being upgraded.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: legacy.clone(),
        subjects: vec![alerts.subject.clone()],
        retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish(
        alerts.subject.clone(),
        json!({"module": "WO", "alert_type": "ANOMALY", "severity": "High",
               "message": "published during the upgrade"})
        .to_string()
        .into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    test_db.settings.alerts.legacy_stream = legacy.clone();
    let app = crate::helpers::start(test_db, None).await;
    assert!(
        eventually(WAIT, || async {
            app.count(
                "select count(*) from ai_alert where message = 'published during the upgrade'",
            )
            .await
                == 1
        })
        .await,
        "the hub started on the old stream and stored what it held"
    );
    let _ = js.delete_stream(&legacy).await;
}
