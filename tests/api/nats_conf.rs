//! The compose file's `docker/nats.conf`, run by a nats-server of the test's own: each party (hub,
//! llm-worker, alert publishers) can do its work and nothing else. A forbidden operation shows up
//! as the server's "Permissions Violation" error on that connection.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Event, ServerError};
use futures::StreamExt;
use secrecy::SecretString;

use crate::helpers::{eventually, free_port, now, spawn_app_with, text_delivery};

const HUB: (&str, &str) = ("hub", "hub-nats-pass-7c1d");
const WORKER: (&str, &str) = ("llm-worker", "worker-nats-pass-2b9e");
const ALERTS: (&str, &str) = ("alerts", "alerts-nats-pass-5f3a");

/// nats-server on `docker/nats.conf`, with only the port and the store moved (and
/// `sync_interval` dropped: this machine's nats-server 2.9 predates it; compose runs 2.10).
struct ComposeNats {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl ComposeNats {
    async fn start() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sentient-natsconf-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = std::fs::read_to_string("docker/nats.conf").unwrap();
        assert!(shipped.contains("port: 4222") && shipped.contains("store_dir: /data"));
        let conf = shipped
            .replace("port: 4222", &format!("port: {port}"))
            .replace("http_port: 8222", "")
            .replace("sync_interval: always", "")
            .replace(
                "store_dir: /data",
                &format!("store_dir: {:?}", dir.join("js")),
            );
        let path = dir.join("nats.conf");
        std::fs::write(&path, conf).unwrap();
        let child = std::process::Command::new("nats-server")
            .arg("-c")
            .arg(&path)
            .args(["-a", "127.0.0.1"])
            .env("NATS_HUB_PASSWORD", HUB.1)
            .env("NATS_WORKER_PASSWORD", WORKER.1)
            .env("NATS_ALERTS_PASSWORD", ALERTS.1)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on PATH");
        let up = crate::helpers::port_opens(port).await;
        assert!(up, "nats-server did not start on docker/nats.conf");
        Self { child, port, dir }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for ComposeNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One connection as `user`, keeping the server's errors.
struct Party {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Party {
    async fn connect(url: &str, (user, password): (&str, &str), inbox: &str) -> Self {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
                .custom_inbox_prefix(inbox)
                .event_callback(move |event| {
                    let seen = seen.clone();
                    async move {
                        if let Event::ServerError(ServerError::Other(e)) = event {
                            seen.lock().unwrap().push(e);
                        }
                    }
                })
                .connect(url)
                .await
                .unwrap_or_else(|e| panic!("{user} cannot connect: {e}"));
        Self { client, errors }
    }

    /// Waits for the server to refuse something naming `subject`.
    async fn refused(&self, subject: &str) -> bool {
        self.client.flush().await.unwrap();
        eventually(Duration::from_secs(3), || async {
            self.errors
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.to_lowercase().contains("permissions violation") && e.contains(subject))
        })
        .await
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn the_compose_nats_gives_each_party_only_its_subjects() {
    let nats = ComposeNats::start().await;
    let url = nats.url();

    // The hub, with the shipped names, does its whole job: the inbox stream and its consumers,
    // the request to the (absent) llm-worker, the alert stream, the answer.
    let hub_url = url.clone();
    let app = spawn_app_with(move |s| {
        s.nats.url = SecretString::from(hub_url);
        s.nats.user = HUB.0.into();
        s.nats.password = SecretString::from(HUB.1);
        s.nats.inbox_prefix = "_INBOX_hub".into();
        s.inbox.stream = "WA_INBOX".into();
        s.inbox.subject_prefix = "wa.inbox".into();
        s.llm.subject = "ai.llm.chat".into();
        s.alerts.stream = "AI_ALERTS".into();
        s.alerts.subject = "alerts.new".into();
    })
    .await;
    let me = app.user_with_role("DIRECTOR", true).await;
    let response = app
        .post_webhook(&text_delivery(
            &me,
            "wamid.natsconf.1",
            "stok gudang",
            now(),
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert!(
        eventually(Duration::from_secs(20), || async {
            app.settle().await;
            app.count(
                "select count(*) from wa_outbox where inbound_wamid = 'wamid.natsconf.1' and status = 'sent'",
            )
            .await
                == 1
        })
        .await,
        "the hub could not answer with the compose permissions"
    );

    // An alert publisher raises an alert (JetStream acks it) and the hub takes it in.
    let alerts = Party::connect(&url, ALERTS, "_INBOX").await;
    let js = async_nats::jetstream::new(alerts.client.clone());
    let alert = serde_json::json!({
        "module": "PRODUCTION", "alert_type": "NATS_CONF_TEST", "severity": "WARNING",
        "message": "Mesin uji berhenti"
    });
    js.publish("alerts.new", alert.to_string().into())
        .await
        .expect("alerts may publish")
        .await
        .expect("JetStream acks the alert");
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.count("select count(*) from ai_alert where alert_type = 'NATS_CONF_TEST'")
                .await
                == 1
        })
        .await
    );
    // …and nothing else: not the LLM's requests, not the hub's replies, not the inbox stream.
    let _sniff = alerts.client.subscribe("ai.llm.chat").await.unwrap();
    assert!(alerts.refused("ai.llm.chat").await, "{:?}", alerts.errors());
    let _replies = alerts.client.subscribe("_INBOX_hub.>").await.unwrap();
    assert!(
        alerts.refused("_INBOX_hub.>").await,
        "{:?}",
        alerts.errors()
    );
    alerts
        .client
        .publish("wa.inbox.0", "{}".into())
        .await
        .unwrap();
    assert!(alerts.refused("wa.inbox.0").await, "{:?}", alerts.errors());
    alerts
        .client
        .publish("$JS.API.STREAM.PURGE.WA_INBOX", "".into())
        .await
        .unwrap();
    assert!(
        alerts.refused("$JS.API.STREAM.PURGE.WA_INBOX").await,
        "{:?}",
        alerts.errors()
    );

    // The llm-worker takes requests and answers them on the reply subject…
    let worker = Party::connect(&url, WORKER, "_INBOX").await;
    let mut requests = worker
        .client
        .queue_subscribe("ai.llm.chat", "llm-workers".into())
        .await
        .unwrap();
    worker.client.flush().await.unwrap();
    let answering = worker.client.clone();
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            if let Some(reply) = request.reply {
                let _ = answering.publish(reply, "pong".into()).await;
            }
        }
    });
    let hub = Party::connect(&url, HUB, "_INBOX_hub").await;
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        hub.client.request("ai.llm.chat", "ping".into()),
    )
    .await
    .expect("the worker answers in time")
    .expect("the hub may ask");
    assert_eq!(&reply.payload[..], b"pong");
    assert!(worker.errors().is_empty(), "{:?}", worker.errors());
    // …and may not raise alerts or ask in the hub's place.
    worker
        .client
        .publish("alerts.new", alert.to_string().into())
        .await
        .unwrap();
    assert!(worker.refused("alerts.new").await, "{:?}", worker.errors());
    worker
        .client
        .publish("ai.llm.chat", "forged".into())
        .await
        .unwrap();
    assert!(worker.refused("ai.llm.chat").await, "{:?}", worker.errors());
    assert!(hub.errors().is_empty(), "{:?}", hub.errors());

    // Nobody gets in without a password.
    assert!(async_nats::connect(&url).await.is_err());
}
