use std::time::Duration;

use secrecy::SecretString;
use sentient_hub::startup::Application;

use crate::helpers::{base_settings, fresh_database};

#[tokio::test]
async fn build_fails_clearly_when_postgres_is_unreachable() {
    let mut settings = base_settings();
    settings.database.url = SecretString::from("postgres://nobody:s3cret@127.0.0.1:1/hub");
    settings.database.acquire_timeout_secs = 2;
    let err = Application::build(settings)
        .await
        .err()
        .expect("build fails");
    let message = format!("{err:#}");
    assert!(
        message.contains("PostgreSQL at 127.0.0.1:1/hub"),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "{message}");
}

#[tokio::test]
async fn build_fails_clearly_when_nats_is_unreachable() {
    let db = fresh_database().await;
    let mut settings = db.settings.clone();
    settings.nats.url = SecretString::from("nats://127.0.0.1:1");
    settings.nats.connect_timeout_secs = 2;
    let err = Application::build(settings)
        .await
        .err()
        .expect("build fails");
    let message = format!("{err:#}");
    assert!(message.contains("NATS at nats://127.0.0.1:1"), "{message}");
}

#[tokio::test]
async fn shutdown_stops_the_server_and_frees_the_port() {
    let db = fresh_database().await;
    let app = Application::build(db.settings.clone()).await.unwrap();
    let port = app.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let url = format!("http://127.0.0.1:{port}/healthz");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);

    stop.send(()).unwrap();
    // Bounded by the configured grace period; a generous outer limit catches a hang.
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops within its grace period")
        .unwrap()
        .unwrap();
    assert!(reqwest::get(&url).await.is_err(), "port still answers");
}
