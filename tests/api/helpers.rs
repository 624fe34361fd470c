//! `spawn_app()`: the real application on a random port, against a fresh PostgreSQL database
//! (dropped when the test ends) and the machine's real NATS.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use sentient_hub::config::Settings;
use sentient_hub::startup::Application;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

pub struct TestApp {
    pub address: String,
    /// A pool on the test's own database, for assertions.
    pub db: PgPool,
    pub client: reqwest::Client,
    /// The test's database; dropped with the app.
    pub test_db: TestDb,
}

/// A fresh, empty database that is dropped (with force) when this guard goes away.
pub struct TestDb {
    /// Settings pointing at this database, port 0, no auto-creation.
    pub settings: Settings,
    pub name: String,
    admin: PgConnectOptions,
}

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// Settings as a developer's machine has them (config files + environment), for tests.
pub fn base_settings() -> Settings {
    let vars: HashMap<String, String> = std::env::vars().collect();
    Settings::load_from(&config_dir(), "test", &vars).expect("test settings load")
}

pub async fn fresh_database() -> TestDb {
    let mut settings = base_settings();
    let admin = settings.database.connect_options().database("postgres");
    let name = format!("sentient_test_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .expect("connect to the postgres database");
    conn.execute(format!(r#"create database "{name}""#).as_str())
        .await
        .expect("create test database");
    let mut url = url::Url::parse(settings.database.url.expose_secret()).expect("database url");
    url.set_path(&format!("/{name}"));
    settings.database.url = SecretString::from(url.to_string());
    settings.database.create_if_missing = false;
    settings.server.port = 0;
    // Each test gets its own JetStream stream and subjects on the shared NATS server.
    let tag = Uuid::new_v4().simple().to_string();
    settings.inbox.stream = format!("WA_INBOX_TEST_{tag}");
    settings.inbox.subject_prefix = format!("test.{tag}.inbox");
    TestDb {
        settings,
        name,
        admin,
    }
}

pub async fn spawn_app() -> TestApp {
    let test_db = fresh_database().await;
    let settings = test_db.settings.clone();
    let app = Application::build(settings.clone())
        .await
        .expect("application builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(settings.database.connect_options())
        .await
        .expect("test pool");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db,
        client: reqwest::Client::new(),
        test_db,
    }
}

impl TestApp {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request is sent")
    }

    /// Drops the test's database while the app is still connected to it.
    pub async fn kill_database(&self) {
        drop_database(&self.test_db.admin, &self.test_db.name).await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
        let nats = self.settings.nats.clone();
        let stream = self.settings.inbox.stream.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime")
                .block_on(async {
                    drop_database(&admin, &name).await;
                    if let Ok(client) = sentient_hub::startup::connect_nats(&nats).await {
                        let _ = async_nats::jetstream::new(client)
                            .delete_stream(&stream)
                            .await;
                    }
                });
        })
        .join()
        .expect("cleanup thread");
    }
}

async fn drop_database(admin: &PgConnectOptions, name: &str) {
    if let Ok(mut conn) = PgConnection::connect_with(admin).await {
        let _ = conn
            .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
            .await;
    }
}
