//! The door: handshake, signatures, body limit, parsing, durable ingest, duplicates.

use crate::helpers::{
    new_sender, now, spawn_app, spawn_app_with, text_delivery, TestApp, APP_SECRET,
};
use sentient_hub::whatsapp::signature::sign;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/whatsapp");

#[tokio::test]
async fn handshake_echoes_the_challenge_when_the_token_matches() {
    let app = spawn_app().await;
    let ok = app
        .get("/webhook?hub.mode=subscribe&hub.verify_token=test-verify-token&hub.challenge=1158201444")
        .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");

    for query in [
        "hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
        "hub.mode=unsubscribe&hub.verify_token=test-verify-token&hub.challenge=1",
        "hub.mode=subscribe&hub.challenge=1",
        "hub.mode=subscribe&hub.verify_token=test-verify-token",
    ] {
        assert_eq!(
            app.get(&format!("/webhook?{query}")).await.status(),
            403,
            "{query}"
        );
    }
}

#[tokio::test]
async fn webhook_returns_401_and_stores_nothing_when_the_signature_is_missing_or_wrong() {
    let app = spawn_app().await;
    let body = text_delivery(&new_sender(), "wamid.unsigned", "halo", now());
    let url = format!("{}/webhook", app.address);

    let missing = app
        .client
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);

    let wrong = app
        .client
        .post(&url)
        .header(
            "x-hub-signature-256",
            sign(b"not-the-secret", body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    // Signed over different bytes (re-serialised): still wrong.
    let reserialised: serde_json::Value = serde_json::from_str(&body).unwrap();
    let other_bytes = serde_json::to_string_pretty(&reserialised).unwrap();
    let tampered = app
        .client
        .post(&url)
        .header(
            "x-hub-signature-256",
            sign(APP_SECRET.as_bytes(), other_bytes.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);

    assert_eq!(app.count("select count(*) from wa_inbox").await, 0);
    assert_eq!(app.count("select count(*) from wa_dead_letter").await, 0);
}

#[tokio::test]
async fn webhook_refuses_bodies_over_the_limit_with_413() {
    let app = spawn_app().await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(3 * 1024 * 1024 + 1));
    let response = app.post_webhook(&big).await;
    assert_eq!(response.status(), 413);
    assert_eq!(app.count("select count(*) from wa_dead_letter").await, 0);
}

#[tokio::test]
async fn every_fixture_is_accepted_and_every_message_stored() {
    let app = spawn_app().await;
    let mut files: Vec<_> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 40);
    let mut expected = std::collections::HashSet::new();
    for file in &files {
        let body = std::fs::read_to_string(file).unwrap();
        let delivery = sentient_hub::whatsapp::payload::parse(body.as_bytes()).unwrap();
        for m in &delivery.messages {
            expected.insert(m.wamid.clone());
        }
        let response = app.post_webhook(&body).await;
        assert_eq!(response.status(), 200, "{}", file.display());
    }
    let stored: Vec<String> = sqlx::query_scalar("select wamid from wa_inbox")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let stored: std::collections::HashSet<String> = stored.into_iter().collect();
    assert_eq!(stored, expected);
    assert_eq!(app.count("select count(*) from wa_dead_letter").await, 0);
}

#[tokio::test]
async fn signed_garbage_is_kept_as_a_dead_letter_and_acknowledged() {
    let app = spawn_app().await;
    for body in [
        "not json at all",
        r#"{"object":"page","entry":[]}"#,
        r#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1"},"messages":[{"from":"1","type":"text"}]}}]}]}"#,
    ] {
        let response = app.post_webhook(body).await;
        assert_eq!(response.status(), 200, "{body}");
    }
    let kept: Vec<Vec<u8>> = sqlx::query_scalar("select body from wa_dead_letter order by id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0], b"not json at all");
    assert_eq!(app.count("select count(*) from wa_inbox").await, 0);
}

#[tokio::test]
async fn sequential_and_concurrent_duplicates_add_one_row() {
    let app = spawn_app().await;
    let body = text_delivery(&new_sender(), "wamid.dup.1", "stok motor dc berapa", now());
    for _ in 0..3 {
        assert_eq!(app.post_webhook(&body).await.status(), 200);
    }
    let concurrent = futures::future::join_all((0..20).map(|_| app.post_webhook(&body))).await;
    assert!(concurrent.iter().all(|r| r.status() == 200));
    assert_eq!(
        app.count("select count(*) from wa_inbox where wamid = 'wamid.dup.1'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_dead_database_gets_503_so_meta_retries() {
    let app = spawn_app().await;
    app.kill_database().await;
    let body = text_delivery(&new_sender(), "wamid.nodb", "halo", now());
    assert_eq!(app.post_webhook(&body).await.status(), 503);
}

#[tokio::test]
async fn a_delivery_the_database_refuses_is_a_dead_letter_and_does_not_sink_its_batch() {
    let app = spawn_app().await;
    // A sender id far longer than any WhatsApp id: parses, but no column takes it.
    let bad = text_delivery(&"9".repeat(200), "wamid.toolong", "halo", now());
    let good: Vec<String> = (0..30)
        .map(|i| text_delivery(&new_sender(), &format!("wamid.batch.{i}"), "halo", now()))
        .collect();
    let mut requests = vec![app.post_webhook(&bad)];
    requests.extend(good.iter().map(|b| app.post_webhook(b)));
    let responses = futures::future::join_all(requests).await;
    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(
        app.count("select count(*) from wa_inbox where wamid like 'wamid.batch.%'")
            .await,
        30
    );
    assert_eq!(
        app.count("select count(*) from wa_inbox where wamid = 'wamid.toolong'")
            .await,
        0
    );
    assert_eq!(
        app.count(
            "select count(*) from wa_dead_letter where reason like '%refused by the database%'"
        )
        .await,
        1
    );
}

/// Sends the head of a POST /webhook announcing a 3 MB body (and none of it) on a raw
/// connection; returns the connection and the status line the hub answered with, if it
/// answered within `wait`.
async fn head_only(
    app: &TestApp,
    signature: Option<&str>,
    wait: std::time::Duration,
) -> (tokio::net::TcpStream, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST /webhook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 3000000\r\n"
    );
    if let Some(s) = signature {
        head.push_str(&format!("x-hub-signature-256: {s}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let answered = match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        _ => None,
    };
    (stream, answered)
}

#[tokio::test]
async fn webhook_refuses_an_unsigned_request_before_reading_its_body() {
    let app = spawn_app().await;
    let wait = std::time::Duration::from_secs(10);
    for signature in [None, Some("sha256=nothex"), Some("md5=abc")] {
        let (_conn, answered) = head_only(&app, signature, wait).await;
        assert_eq!(
            answered.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "{signature:?}"
        );
    }
}

#[tokio::test]
async fn webhook_sheds_load_beyond_its_concurrency_with_503() {
    let app = spawn_app_with(|s| s.whatsapp.max_concurrent_webhooks = 1).await;
    let well_formed = format!("sha256={}", "0".repeat(64));
    // The first request holds the one permit while its body never comes.
    let (_held, answered) = head_only(
        &app,
        Some(&well_formed),
        std::time::Duration::from_millis(300),
    )
    .await;
    assert_eq!(answered, None, "the first request waits for its body");
    // Once the hub has read that head (a bounded wait), a second delivery is shed.
    let mut shed = None;
    for n in 0..50 {
        let wamid = format!("wamid.shed.{n}");
        let response = app
            .post_webhook(&text_delivery(&new_sender(), &wamid, "halo", now()))
            .await;
        if response.status() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            shed = Some(wamid);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let wamid = shed.expect("a delivery beyond the limit gets 503");
    assert_eq!(
        app.count(&format!(
            "select count(*) from wa_inbox where wamid = '{wamid}'"
        ))
        .await,
        0,
        "nothing of a shed delivery is stored"
    );
}

/// One delivery carrying several messages (as Meta batches them).
fn batch(messages: &[serde_json::Value]) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "0", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550000000", "phone_number_id": "123" },
            "messages": messages,
        }}]}]
    })
    .to_string()
}

fn text(from: &str, wamid: &str, body: &str) -> serde_json::Value {
    serde_json::json!({ "from": from, "id": wamid, "timestamp": now().to_string(),
                        "type": "text", "text": { "body": body } })
}

#[tokio::test]
async fn a_nul_character_in_one_message_of_a_batch_loses_nothing() {
    let app = spawn_app().await;
    let from = app.trusted_sender().await;
    let body = batch(&[
        text(&from, "wamid.nul.1", "omzet\u{0} bulan ini"),
        text(&from, "wamid.nul.2", "halo"),
    ]);
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let stored: Vec<(String, String)> =
        sqlx::query_as("select wamid, body from wa_inbox order by id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(
        stored,
        [
            ("wamid.nul.1".to_owned(), "omzet bulan ini".to_owned()),
            ("wamid.nul.2".to_owned(), "halo".to_owned())
        ],
        "both stored, the NUL removed"
    );
    assert_eq!(app.count("select count(*) from wa_dead_letter").await, 0);
    app.settle().await;
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid like 'wamid.nul.%'")
            .await,
        2,
        "both answered"
    );
}

#[tokio::test]
async fn a_batch_the_database_refuses_keeps_the_other_messages_and_dead_letters_only_the_refused_one(
) {
    let app = spawn_app().await;
    let from = new_sender();
    let body = batch(&[
        text(&from, "wamid.part.1", "satu"),
        // A sender id far longer than any WhatsApp id: parses, but no column takes it.
        text(&"9".repeat(200), "wamid.part.bad", "dua"),
        text(&from, "wamid.part.3", "tiga"),
    ]);
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let stored: Vec<String> = sqlx::query_scalar("select wamid from wa_inbox order by id")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, ["wamid.part.1", "wamid.part.3"]);
    let kept: Vec<Vec<u8>> = sqlx::query_scalar("select body from wa_dead_letter")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    let kept: serde_json::Value = serde_json::from_slice(&kept[0]).unwrap();
    assert_eq!(
        kept["id"], "wamid.part.bad",
        "the refused message itself is kept"
    );
}
