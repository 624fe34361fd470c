//! The road from inbox to reply: one reply per wamid, statuses, retries, the 24-hour window,
//! stale backlogs, crashes and NATS outages.

use std::time::Duration;

use crate::helpers::{
    eventually, fresh_database, new_sender, now, spawn_app, spawn_app_with, start, status_delivery,
    text_delivery, FakeGraph, TestApp,
};

const WAIT: Duration = Duration::from_secs(20);

async fn sends_to(app: &TestApp, to: &str) -> usize {
    app.graph()
        .sends()
        .iter()
        .filter(|r| r.body["to"] == to)
        .count()
}

/// Waits for the app's own workers (through JetStream) to send `to` at least `n` messages.
async fn wait_for_sends(app: &TestApp, to: &str, n: usize) -> bool {
    eventually(WAIT, || async { sends_to(app, to).await >= n }).await
}

/// Runs the pipeline to quiescence, then: whether `to` got at least `n` sends.
async fn settled_sends(app: &TestApp, to: &str, n: usize) -> bool {
    app.settle().await;
    sends_to(app, to).await >= n
}

#[tokio::test]
async fn a_text_message_gets_exactly_one_reply_in_its_language() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    app.post_webhook(&text_delivery(
        &from,
        "wamid.one",
        "What is the revenue this month?",
        now(),
    ))
    .await;
    assert!(settled_sends(&app, &from, 1).await, "no reply sent");

    let send = app
        .graph()
        .sends()
        .into_iter()
        .find(|r| r.body["to"] == from)
        .unwrap();
    assert_eq!(send.path, "/v23.0/000000000000000/messages");
    assert_eq!(
        send.authorization.as_deref(),
        Some("Bearer test-graph-token")
    );
    assert_eq!(send.body["messaging_product"], "whatsapp");
    assert_eq!(send.body["type"], "text");
    assert!(send.body["text"]["body"]
        .as_str()
        .unwrap()
        .contains("Revenue, this month"));

    app.settle().await;
    assert_eq!(app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.one' and status = 'sent' and wamid is not null").await, 1);
    assert_eq!(
        app.count("select count(*) from wa_inbox where wamid = 'wamid.one' and status = 'done'")
            .await,
        1
    );
    // Marked read with the typing indicator.
    assert!(
        eventually(WAIT, || async {
            app.graph().requests.lock().unwrap().iter().any(|r| {
                r.body["message_id"] == "wamid.one" && r.body["typing_indicator"]["type"] == "text"
            })
        })
        .await
    );
}

#[tokio::test]
async fn duplicate_deliveries_cause_one_reply() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    let body = text_delivery(&from, "wamid.twice", "omzet bulan ini brp?", now());
    futures::future::join_all((0..10).map(|_| app.post_webhook(&body))).await;
    assert!(settled_sends(&app, &from, 1).await);
    for _ in 0..3 {
        app.post_webhook(&body).await;
    }
    // Any second processing would have been done by now.
    app.settle().await;
    assert_eq!(sends_to(&app, &from).await, 1);
    let reply: String = sqlx::query_scalar(
        "select payload->'text'->>'body' from wa_outbox where inbound_wamid = 'wamid.twice'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(reply.contains("Omzet, bulan ini"), "{reply}");
}

#[tokio::test]
async fn a_senders_messages_are_answered_in_order() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    for i in 0..6 {
        let body = text_delivery(
            &from,
            &format!("wamid.order.{i}"),
            &format!("pesan {i}"),
            now(),
        );
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    assert!(settled_sends(&app, &from, 6).await);
    let order: Vec<String> = sqlx::query_scalar("select inbound_wamid from wa_outbox order by id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let expected: Vec<String> = (0..6).map(|i| format!("wamid.order.{i}")).collect();
    assert_eq!(order, expected);
    // The last send is recorded a moment after Meta's fake has it: settled, it is.
    assert_eq!(
        app.count("select count(*) from wa_outbox where status = 'sent'")
            .await,
        6
    );
    let sent_order: Vec<String> =
        sqlx::query_scalar("select inbound_wamid from wa_outbox order by sent_at, id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(sent_order, expected);
}

#[tokio::test]
async fn statuses_move_the_outbox_forward_never_back() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    app.post_webhook(&text_delivery(&from, "wamid.st", "halo", now()))
        .await;
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_outbox where status = 'sent'")
            .await,
        1
    );
    let wamid: String = sqlx::query_scalar("select wamid from wa_outbox")
        .fetch_one(&app.db)
        .await
        .unwrap();

    app.post_webhook(&status_delivery(&wamid, "delivered", &from, None))
        .await;
    app.post_webhook(&status_delivery(&wamid, "read", &from, None))
        .await;
    app.post_webhook(&status_delivery(&wamid, "delivered", &from, None))
        .await; // late
    let (status, delivered, read): (String, bool, bool) = sqlx::query_as(
        "select status, delivered_at is not null, read_at is not null from wa_outbox",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((status.as_str(), delivered, read), ("read", true, true));
}

#[tokio::test]
async fn retryable_errors_are_retried_and_others_are_not() {
    let app = spawn_app().await;
    let graph = app.graph().clone();
    graph.fail_next(400, 130429);
    graph.fail_next(503, 131016);
    let patient = app.trusted_sender().await;
    app.post_webhook(&text_delivery(&patient, "wamid.retry", "halo", now()))
        .await;
    app.settle().await;
    assert_eq!(app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.retry' and status = 'sent'").await, 1);
    assert_eq!(sends_to(&app, &patient).await, 3);
    assert_eq!(
        app.count("select attempts::bigint from wa_outbox where inbound_wamid = 'wamid.retry'")
            .await,
        3
    );

    for (code, wamid) in [
        (131026, "wamid.noretry.1"),
        (100, "wamid.noretry.2"),
        (132001, "wamid.noretry.3"),
    ] {
        graph.fail_next(400, code);
        let to = app.trusted_sender().await;
        app.post_webhook(&text_delivery(&to, wamid, "halo", now()))
            .await;
        app.settle().await;
        assert_eq!(app.count(&format!("select count(*) from wa_outbox where inbound_wamid = '{wamid}' and status = 'failed' and error_code = {code}")).await, 1, "{code}");
        assert_eq!(sends_to(&app, &to).await, 1, "{code} must not be retried");
    }
}

#[tokio::test]
async fn retries_stop_after_the_configured_attempts() {
    let app = spawn_app_with(|s| s.whatsapp.send_max_attempts = 3).await;
    for _ in 0..5 {
        app.graph().fail_next(500, 131000);
    }
    let to = app.trusted_sender().await;
    app.post_webhook(&text_delivery(&to, "wamid.giveup", "halo", now()))
        .await;
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_outbox where status = 'failed' and error_code = 131000")
            .await,
        1
    );
    assert_eq!(sends_to(&app, &to).await, 3);
}

#[tokio::test]
async fn a_closed_window_switches_to_the_configured_template() {
    let app = spawn_app_with(|s| s.whatsapp.window_template = "hub_notice".into()).await;
    app.graph().fail_next(400, 131047);
    let to = app.trusted_sender().await;
    app.post_webhook(&text_delivery(&to, "wamid.window", "halo", now()))
        .await;
    assert!(settled_sends(&app, &to, 2).await);
    let sends: Vec<_> = app
        .graph()
        .sends()
        .into_iter()
        .filter(|r| r.body["to"] == to.as_str())
        .collect();
    assert_eq!(sends[0].body["type"], "text");
    assert_eq!(sends[1].body["type"], "template");
    assert_eq!(sends[1].body["template"]["name"], "hub_notice");
    let param = sends[1].body["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap();
    assert!(param.contains("Saya bisa menjawab"), "{param}");
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_outbox where kind = 'template' and status = 'sent'")
            .await,
        1
    );
}

#[tokio::test]
async fn without_a_template_a_closed_window_is_recorded_and_nothing_is_sent() {
    let app = spawn_app().await;
    let to = new_sender();
    // The user wrote 30 hours ago: the window is closed before any call to Meta.
    sqlx::query("insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now() - interval '30 hours')")
        .bind(&to).execute(&app.db).await.unwrap();
    sqlx::query("insert into wa_outbox (wa_id, kind, payload) values ($1, 'text', '{\"type\":\"text\",\"text\":{\"body\":\"alert\"}}')")
        .bind(&to).execute(&app.db).await.unwrap();
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_outbox where status = 'failed' and error_code = 131047")
            .await,
        1
    );
    assert_eq!(sends_to(&app, &to).await, 0);
}

#[tokio::test]
async fn a_stale_backlog_message_gets_a_notice_not_an_answer() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    let two_hours_ago = now() - 7200;
    app.post_webhook(&text_delivery(
        &from,
        "wamid.stale",
        "stok motor dc berapa",
        two_hours_ago,
    ))
    .await;
    assert!(settled_sends(&app, &from, 1).await);
    let send = app
        .graph()
        .sends()
        .into_iter()
        .find(|r| r.body["to"] == from)
        .unwrap();
    let text = send.body["text"]["body"].as_str().unwrap();
    assert!(text.contains("kirim ulang"), "{text}");

    let quiet =
        spawn_app_with(|s| s.whatsapp.stale_policy = sentient_hub::config::StalePolicy::Ignore)
            .await;
    let from = quiet.trusted_sender().await;
    quiet
        .post_webhook(&text_delivery(
            &from,
            "wamid.stale2",
            "stok?",
            two_hours_ago,
        ))
        .await;
    quiet.settle().await;
    assert_eq!(
        quiet
            .count("select count(*) from wa_inbox where status = 'done'")
            .await,
        1
    );
    assert_eq!(quiet.count("select count(*) from wa_outbox").await, 0);
}

#[tokio::test]
async fn a_send_interrupted_by_a_crash_is_not_repeated_within_the_grace_and_is_reconciled_by_its_status(
) {
    let app = spawn_app().await;
    let to = new_sender();
    // What a crash between "Meta accepted" and "hub recorded" leaves behind.
    let uuid: uuid::Uuid = sqlx::query_scalar(
        "insert into wa_outbox (inbound_wamid, wa_id, kind, payload, status, attempts, lease_until)
         values ('wamid.crashed', $1, 'text', '{\"type\":\"text\",\"text\":{\"body\":\"x\"}}', 'sending', 1, now() - interval '1 minute')
         returning uuid")
        .bind(&to).fetch_one(&app.db).await.unwrap();
    // The sender expires leases every round; driven here by hand.
    app.stages.sender.expire_leases().await.unwrap();
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_outbox where status = 'unknown'")
            .await,
        1
    );
    assert_eq!(
        sends_to(&app, &to).await,
        0,
        "not resent within whatsapp.unknown_grace_secs"
    );

    // Meta did send it: its status webhook carries our callback data.
    app.post_webhook(&status_delivery(
        "wamid.meta.123",
        "delivered",
        &to,
        Some(&uuid.to_string()),
    ))
    .await;
    let (status, wamid): (String, Option<String>) =
        sqlx::query_as("select status, wamid from wa_outbox where uuid = $1")
            .bind(uuid)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(status, "delivered");
    assert_eq!(wamid.as_deref(), Some("wamid.meta.123"));
}

#[tokio::test]
async fn messages_committed_while_nats_is_down_are_answered_when_it_returns() {
    let nats = PrivateNats::start().await;
    let mut test_db = fresh_database().await;
    let graph = FakeGraph::start().await;
    test_db.settings.nats.url = secrecy::SecretString::from(nats.url());
    test_db.settings.whatsapp.access_token = secrecy::SecretString::from("t");
    test_db.settings.whatsapp.graph_base_url = graph.address.clone();
    test_db.settings.inbox.relay_idle_ms = 200;
    let app = start(test_db, Some(graph)).await;

    let nats = nats.stop();
    let from = app.trusted_sender().await;
    let response = app
        .post_webhook(&text_delivery(&from, "wamid.natsdown", "halo", now()))
        .await;
    assert_eq!(response.status(), 200, "ingest does not need NATS");
    assert_eq!(
        app.count(
            "select count(*) from wa_inbox where wamid = 'wamid.natsdown' and relayed_at is null"
        )
        .await,
        1
    );
    let readyz = app.get("/readyz").await;
    assert_eq!(readyz.status(), 503);

    let _nats = nats.restart().await;
    assert!(
        wait_for_sends(&app, &from, 1).await,
        "relayed and answered after NATS returned"
    );
    assert_eq!(sends_to(&app, &from).await, 1);
}

#[tokio::test]
async fn a_worker_killed_mid_message_leaves_it_to_another_instance_and_one_reply() {
    let mut test_db = fresh_database().await;
    let graph = FakeGraph::start().await;
    test_db.settings.whatsapp.access_token = secrecy::SecretString::from("t");
    test_db.settings.whatsapp.graph_base_url = graph.address.clone();
    test_db.settings.inbox.ack_wait_secs = 2;
    test_db.settings.inbox.relay_idle_ms = 3_600_000;
    let settings = test_db.settings.clone();

    // Instance A runs on its own runtime, so it can be killed outright, like kill -9.
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let a_settings = settings.clone();
    let runtime_a = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = rt
            .block_on(sentient_hub::startup::Application::build(a_settings))
            .unwrap();
        port_tx.send(app.port()).unwrap();
        rt.spawn(app.run_until_stopped(std::future::pending()));
        rt
    })
    .join()
    .unwrap();
    let port_a = port_rx.recv().unwrap();

    let db = sqlx::PgPool::connect_with(settings.database.connect_options())
        .await
        .unwrap();
    let from = new_sender();
    // The message as ingest stores it, committed but not yet relayed (A relays only on a
    // wake-up), then locked so that A's worker blocks on it mid-message.
    sqlx::query("insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now())")
        .bind(&from)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "insert into wa_inbox (wamid, phone_nr_id, wa_id, sender_key, msg_type, body, payload, sent_at)
         values ('wamid.killed', '000000000000000', $1, $1, 'text', 'halo', '{}', now())")
        .bind(&from).execute(&db).await.unwrap();
    let mut lock_holder = db.begin().await.unwrap();
    sqlx::query("select 1 from wa_inbox where wamid = 'wamid.killed' for update")
        .execute(&mut *lock_holder)
        .await
        .unwrap();
    // Another delivery wakes A's relay, which hands both rows to JetStream.
    let body = text_delivery(&new_sender(), "wamid.wakeup", "halo", now());
    let sig = sentient_hub::whatsapp::signature::sign(
        crate::helpers::APP_SECRET.as_bytes(),
        body.as_bytes(),
    );
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port_a}/webhook"))
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Wait until A has the message in hand (relayed, and its worker is waiting on the lock).
    assert!(eventually(WAIT, || async {
        sqlx::query_scalar::<_, i64>("select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query like '%wa_inbox%for update%'")
            .fetch_one(&db).await.unwrap() >= 1
    }).await, "A's worker never picked the message up");

    runtime_a.shutdown_background(); // kill: no ack, no cleanup
    drop(lock_holder);

    // Instance B, same database and stream, takes over after ack_wait.
    let app_b = start(test_db, Some(graph)).await;
    assert!(
        wait_for_sends(&app_b, &from, 1).await,
        "B answered the orphaned message"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(sends_to(&app_b, &from).await, 1, "exactly one reply");
    assert_eq!(
        app_b
            .count("select count(*) from wa_inbox where wamid = 'wamid.killed' and status = 'done'")
            .await,
        1
    );
}

/// A nats-server of the test's own, on a free port, that can be stopped and restarted.
struct PrivateNats {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl PrivateNats {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("sentient-nats-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self::spawn(port, dir).await
    }

    async fn spawn(port: u16, dir: std::path::PathBuf) -> Self {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH");
        let up = crate::helpers::port_opens(port).await;
        assert!(up, "private nats-server did not start");
        PrivateNats { child, port, dir }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) -> StoppedNats {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        StoppedNats {
            port: self.port,
            dir: self.dir.clone(),
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct StoppedNats {
    port: u16,
    dir: std::path::PathBuf,
}

impl StoppedNats {
    async fn restart(self) -> PrivateNats {
        PrivateNats::spawn(self.port, self.dir.clone()).await
    }
}

#[tokio::test]
async fn a_poison_message_is_retried_a_bounded_number_of_times_then_marked_dead() {
    let app = spawn_app_with(|s| s.inbox.max_deliver = 3).await;
    // A row no reply can be written for (no recipient at all): processing fails every time.
    sqlx::query(
        "insert into wa_inbox (wamid, phone_nr_id, sender_key, msg_type, body, payload, sent_at)
         values ('wamid.poison', '000000000000000', 'nobody', 'text', 'halo', '{}', now())",
    )
    .execute(&app.db)
    .await
    .unwrap();
    // The next delivery wakes the relay, which takes the poison row along.
    let from = app.trusted_sender().await;
    app.post_webhook(&text_delivery(&from, "wamid.after.poison", "halo", now()))
        .await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            app.count(
                "select count(*) from wa_inbox where wamid = 'wamid.poison' and status = 'dead'",
            )
            .await
                == 1
        })
        .await,
        "poison row never marked dead"
    );
    assert_eq!(
        app.count("select attempts::bigint from wa_inbox where wamid = 'wamid.poison'")
            .await,
        3
    );
    assert!(
        app.count(
            "select count(*) from wa_inbox where wamid = 'wamid.poison' and last_error is not null"
        )
        .await
            == 1
    );
    // Other senders are not held up by it.
    assert!(wait_for_sends(&app, &from, 1).await);
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.poison'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_question_over_the_length_limit_gets_ask_it_shorter_in_its_language() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    // One 65,536-letter word: once 26 s and 4 GiB of typo correction.
    let huge = "a".repeat(65_536);
    app.post_webhook(&text_delivery(&from, "wamid.huge", &huge, now()))
        .await;
    let long_english = format!("what is the revenue {}", "really ".repeat(200));
    app.post_webhook(&text_delivery(&from, "wamid.long.en", &long_english, now()))
        .await;
    app.post_webhook(&text_delivery(
        &from,
        "wamid.after",
        "omzet bulan ini?",
        now(),
    ))
    .await;
    assert!(settled_sends(&app, &from, 3).await);
    let replies: Vec<(String, String)> =
        sqlx::query_as("select inbound_wamid, payload->'text'->>'body' from wa_outbox order by id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(replies[0].0, "wamid.huge");
    assert!(replies[0].1.contains("terlalu panjang"), "{replies:?}");
    assert!(replies[0].1.contains("1000"), "{replies:?}");
    assert!(replies[1].1.contains("too long"), "{replies:?}");
    assert!(replies[2].1.contains("Omzet, bulan ini"), "{replies:?}");
    assert_eq!(
        app.count("select count(*) from wa_inbox where status = 'done'")
            .await,
        3,
        "answered once, not retried"
    );
}

#[tokio::test]
async fn a_flood_from_one_sender_is_answered_up_to_the_allowance_then_told_once() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    let at = now();
    for i in 0..15 {
        let body = text_delivery(&from, &format!("wamid.flood.{i}"), "omzet bulan ini?", at);
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    app.settle().await;
    let replies: Vec<(String, String)> =
        sqlx::query_as("select inbound_wamid, payload->'text'->>'body' from wa_outbox order by id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let answers = replies
        .iter()
        .filter(|(_, t)| t.contains("Omzet, bulan ini"))
        .count();
    let told: Vec<_> = replies
        .iter()
        .filter(|(_, t)| t.contains("terlalu cepat"))
        .collect();
    assert_eq!(answers, 10, "{replies:?}");
    assert_eq!(told.len(), 1, "{replies:?}");
    assert_eq!(told[0].0, "wamid.flood.10");
    assert_eq!(
        app.count("select count(*) from wa_inbox where status = 'done'")
            .await,
        15,
        "every message is settled, none retried"
    );
}

#[tokio::test]
async fn an_unconfirmed_device_keeps_only_its_first_messages_and_is_told_once() {
    let app = spawn_app().await;
    let me = app.user_with_role("DIRECTOR", false).await;
    for i in 0..8 {
        let body = text_delivery(&me, &format!("wamid.held.{i}"), "omzet?", now());
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_inbox where status = 'held'")
            .await,
        5
    );
    let full: Vec<String> = sqlx::query_scalar(
        "select inbound_wamid from wa_outbox
         where payload->'text'->>'body' like '%tidak disimpan%' order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(full, ["wamid.held.5"]);
    assert_eq!(
        app.count("select count(*) from log_audit where action = 'WA.HELD_FULL'")
            .await,
        3
    );
}
