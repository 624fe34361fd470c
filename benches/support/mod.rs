//! What the benchmarks share: the binary's allocator; the test settings pointed at a fresh
//! database, their own JetStream stream and subjects and the local sink; clean-up; knobs;
//! percentiles.

// Each benchmark uses a different part of this module.
#![allow(dead_code)]

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sentient_hub::config::Settings;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

/// The allocator of the `sentient-hub` binary (see `src/main.rs`), so that what a benchmark
/// measures in its own process is what the service does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A benchmark's own database and stream, removed by `cleanup`.
pub struct BenchEnv {
    /// The test profile's settings, pointed at the fresh database, port 0, local sink.
    pub settings: Settings,
    /// The database's name.
    name: String,
    /// Where to drop it from.
    admin: PgConnectOptions,
}

impl BenchEnv {
    pub async fn new() -> anyhow::Result<Self> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut settings = Settings::load_from(&dir, "test", &std::env::vars().collect())?;
        let name = format!("sentient_bench_{}", uuid::Uuid::new_v4().simple());
        let admin = settings.database.connect_options().database("postgres");
        PgConnection::connect_with(&admin)
            .await?
            .execute(format!(r#"create database "{name}""#).as_str())
            .await?;
        let mut url = url::Url::parse(settings.database.url.expose_secret())?;
        url.set_path(&format!("/{name}"));
        settings.database.url = SecretString::from(url.to_string());
        settings.server.port = 0;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        settings.inbox.stream = format!("WA_INBOX_BENCH_{tag}");
        settings.inbox.subject_prefix = format!("bench.{tag}.inbox");
        settings.llm.subject = format!("bench.{tag}.llm");
        settings.alerts.stream = format!("AI_ALERTS_BENCH_{tag}");
        settings.alerts.subject = format!("bench.{tag}.alerts");
        settings.whatsapp.access_token = SecretString::from(""); // local sink: nothing leaves the machine
        Ok(Self {
            settings,
            name,
            admin,
        })
    }

    /// Drops the database (with force) and the streams.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        PgConnection::connect_with(&self.admin)
            .await?
            .execute(format!(r#"drop database "{}" with (force)"#, self.name).as_str())
            .await?;
        if let Ok(client) = sentient_hub::queue::connect_nats(&self.settings.nats).await {
            let js = async_nats::jetstream::new(client);
            for stream in [&self.settings.inbox.stream, &self.settings.alerts.stream] {
                let _ = js.delete_stream(stream).await;
            }
        }
        Ok(())
    }
}

/// A knob from the environment: its value when it parses, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `p` percentile (0–1) in milliseconds (0 for no samples); sorts `v`.
pub fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}
