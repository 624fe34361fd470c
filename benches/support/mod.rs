//! What the benchmarks share: the binary's allocator; the test suite's setup
//! (`tests/support/setup.rs`: a fresh database, own JetStream streams and subjects), with the
//! local sink; clean-up; knobs; percentiles.

// Each benchmark uses a different part of this module.
#![allow(dead_code)]

use std::time::Duration;

use secrecy::SecretString;
use sentient_hub::config::Settings;

/// The allocator of the `sentient-hub` binary (see `src/main.rs`), so that what a benchmark
/// measures in its own process is what the service does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../../tests/support/setup.rs"]
mod setup;

/// A benchmark's own database (migrated) and streams, removed by `cleanup`.
pub struct BenchEnv {
    /// The test profile's settings, pointed at the fresh database, port 0, local sink.
    pub settings: Settings,
    isolated: setup::Isolated,
}

impl BenchEnv {
    pub async fn new() -> anyhow::Result<Self> {
        let isolated = setup::Isolated::new("sentient_bench", setup::Schema::Migrated).await?;
        let mut settings = isolated.settings.clone();
        settings.whatsapp.access_token = SecretString::from(""); // local sink: nothing leaves the machine
        Ok(Self { settings, isolated })
    }

    /// Drops the database (with force) and the streams.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        self.isolated.remove().await;
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

/// The demo's director (+628110000001), as the brain sees them.
pub async fn demo_director(db: &sqlx::PgPool) -> anyhow::Result<sentient_hub::domain::Caller> {
    let phone = sentient_hub::domain::phone::PhoneE164::parse("+628110000001")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    sentient_hub::identity::gate::caller_by_phone(db, &phone)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the demo director is missing"))
}

/// The brain's preparer on `db` with `settings`, the masters read now.
pub async fn preparer(
    db: &sqlx::PgPool,
    settings: &Settings,
) -> anyhow::Result<sentient_hub::brain::Preparer> {
    use sentient_hub::brain::{catalog::Catalog, Preparer, SharedCatalog};
    Ok(Preparer::from_settings(
        db.clone(),
        SharedCatalog::new(Catalog::load(db).await?),
        settings,
    ))
}
