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

#[tokio::test]
async fn public_development_secrets_are_refused_once_anything_leaves_the_machine() {
    let db = fresh_database().await;
    // On a network interface with the committed test secrets: refused, naming each key.
    let mut exposed = db.settings.clone();
    exposed.server.host = "0.0.0.0".into();
    let err = Application::build(exposed.clone())
        .await
        .err()
        .expect("refused");
    let message = format!("{err:#}");
    for key in [
        "whatsapp.app_secret",
        "whatsapp.verify_token",
        "auth.jwt_secret",
        "identity.otp_secret",
    ] {
        assert!(message.contains(key), "{message}");
    }
    assert!(message.contains("SENTIENT__AUTH__JWT_SECRET"), "{message}");
    assert!(
        !message.contains("test-jwt-secret"),
        "no secret in the message: {message}"
    );

    // On loopback, but sending to Meta with a real token: refused too.
    let mut to_meta = db.settings.clone();
    to_meta.whatsapp.access_token = SecretString::from("EAAG-real-looking-token");
    to_meta.whatsapp.graph_base_url = "https://graph.facebook.com".into();
    assert!(Application::build(to_meta).await.is_err());

    // Secrets of its own: starts on any interface.
    exposed.whatsapp.verify_token = SecretString::from("own-verify-token-4f1c");
    exposed.whatsapp.app_secret = SecretString::from("own-app-secret-9a2e");
    exposed.auth.jwt_secret = SecretString::from("own-jwt-secret-0b7d9c1e5f3a8b2d6c4e0f1a");
    exposed.identity.otp_secret = SecretString::from("own-otp-secret-77e1");
    assert!(Application::build(exposed).await.is_ok());
}

#[tokio::test]
async fn nats_credentials_from_the_settings_are_used_and_required() {
    let port = crate::helpers::free_port();
    let mut server = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(["--user", "hub", "--pass", "hub-nats-pass-1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nats-server on PATH");
    let up = crate::helpers::port_opens(port).await;
    assert!(up, "nats-server did not start");
    let mut nats = base_settings().nats;
    nats.url = SecretString::from(format!("nats://127.0.0.1:{port}"));
    nats.connect_timeout_secs = 2;
    let anonymous = sentient_hub::queue::connect_nats(&nats).await;
    nats.user = "hub".into();
    nats.password = SecretString::from("hub-nats-pass-1");
    let with_password = sentient_hub::queue::connect_nats(&nats).await;
    let _ = server.kill();
    let _ = server.wait();
    let Err(err) = anonymous else {
        panic!("connected without credentials");
    };
    assert!(!format!("{err:#}").contains("hub-nats-pass-1"));
    assert!(with_password.is_ok(), "{:?}", with_password.err());
}

#[tokio::test]
async fn metrics_and_docs_move_to_the_internal_listener_when_it_is_configured() {
    let db = fresh_database().await;
    let mut settings = db.settings.clone();
    settings.server.internal_port = Some(0);
    let app = Application::build(settings).await.unwrap();
    let public = format!("http://127.0.0.1:{}", app.port());
    let internal = format!(
        "http://127.0.0.1:{}",
        app.internal_port().expect("an internal listener")
    );
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    for path in ["/metrics", "/api/v1/openapi.json", "/docs/"] {
        assert_eq!(
            status(format!("{public}{path}")).await,
            404,
            "public {path}"
        );
        assert_eq!(
            status(format!("{internal}{path}")).await,
            200,
            "internal {path}"
        );
    }
    for base in [&public, &internal] {
        assert_eq!(status(format!("{base}/healthz")).await, 200);
    }
    // The API itself stays public.
    assert_eq!(status(format!("{public}/api/v1/users")).await, 401);
    assert_eq!(status(format!("{internal}/api/v1/users")).await, 404);
}
