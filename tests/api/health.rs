use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn readyz_is_ready_when_postgres_and_nats_answer() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["nats"], "ok");
}

#[tokio::test]
async fn readyz_reports_a_dead_database_as_not_ready() {
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    app.kill_database().await;

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["postgres"], "unavailable");
    assert_eq!(body["checks"]["nats"], "ok");
    // Still alive: liveness does not depend on the database.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    let id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let given = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "caller-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "caller-chosen-id");
}

#[tokio::test]
async fn metrics_expose_request_counts_and_latencies() {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.get("/healthz").await;
    }
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    let count_line = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains(r#"route="/healthz""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no healthz counter in:\n{text}"));
    let count: f64 = count_line.rsplit(' ').next().unwrap().parse().unwrap();
    // The recorder is process-wide: other tests add to it, never subtract.
    assert!(count >= 3.0, "{count_line}");
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "{text}"
    );
}

#[tokio::test]
async fn a_request_id_too_long_or_with_odd_characters_is_replaced() {
    let app = spawn_app().await;
    for hostile in [
        "x".repeat(65),
        "id with spaces".to_owned(),
        "a\"b{}".to_owned(),
    ] {
        let response = app
            .client
            .get(format!("{}/healthz", app.address))
            .header("x-request-id", hostile.as_str())
            .send()
            .await
            .unwrap();
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{hostile:?} became {id}");
    }
    let fit = "req-2026.12.01:abc_DEF";
    let response = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", fit)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], fit);
}
