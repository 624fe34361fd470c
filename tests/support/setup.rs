//! What the test suite (`tests/api/helpers.rs`) and the benchmarks (`benches/support`) share:
//! the test profile's settings pointed at a database of their own, their own JetStream streams
//! and subjects, and the clean-up of both.
//!
//! A fresh database is a copy of a template that holds every migration: PostgreSQL copies it in
//! a third of the time the migrations take. The template is built once per set of migration
//! files (its name carries their hash), under an advisory lock, so parallel test processes
//! build it once; templates of older migration sets are dropped when a new one is built.

use std::collections::HashMap;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use sentient_hub::config::Settings;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

/// Settings as a developer's machine has them (config files + environment), test profile.
pub fn test_settings() -> Settings {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let vars: HashMap<String, String> = std::env::vars().collect();
    Settings::load_from(&dir, "test", &vars).expect("test settings load")
}

/// A database and JetStream names of one test or benchmark run.
pub struct Isolated {
    /// The test profile's settings, pointed at the database, port 0, own streams and subjects.
    pub settings: Settings,
    /// The database's name.
    pub name: String,
    /// Where to create and drop it from (the `postgres` database).
    admin: PgConnectOptions,
}

/// Whether the new database starts migrated (a template copy) or empty.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Migrated,
    Empty,
}

impl Isolated {
    /// A new database named `<prefix>_<uuid>` and streams and subjects tagged `<prefix>`.
    pub async fn new(prefix: &str, schema: Schema) -> anyhow::Result<Self> {
        let mut settings = test_settings();
        let admin = settings.database.connect_options().database("postgres");
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect_with(&admin).await?;
        let statement = match schema {
            Schema::Migrated => {
                let template = ensure_template(&mut conn, &settings).await?;
                format!(r#"create database "{name}" template "{template}""#)
            }
            Schema::Empty => format!(r#"create database "{name}""#),
        };
        conn.execute(statement.as_str()).await?;
        conn.close().await?;
        let mut url = url::Url::parse(settings.database.url.expose_secret())?;
        url.set_path(&format!("/{name}"));
        settings.database.url = SecretString::from(url.to_string());
        settings.database.create_if_missing = false;
        settings.server.port = 0;
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let upper = prefix.to_uppercase();
        settings.inbox.stream = format!("WA_INBOX_{upper}_{tag}");
        settings.inbox.subject_prefix = format!("{prefix}.{tag}.inbox");
        settings.llm.subject = format!("{prefix}.{tag}.llm");
        settings.alerts.stream = format!("AI_ALERTS_{upper}_{tag}");
        settings.alerts.subject = format!("{prefix}.{tag}.alerts");
        Ok(Self {
            settings,
            name,
            admin,
        })
    }

    /// Where the database is dropped from.
    pub fn admin(&self) -> &PgConnectOptions {
        &self.admin
    }

    /// Drops the database (with force, so a running app does not stop it) and the streams,
    /// with those a `sentient-hub` process started on these settings named after its deployment
    /// (`<stream>_<deployment>`).
    pub async fn remove(&self) {
        drop_database(&self.admin, &self.name).await;
        if let Ok(client) = sentient_hub::queue::connect_nats(&self.settings.nats).await {
            let js = async_nats::jetstream::new(client);
            let ours = [&self.settings.inbox.stream, &self.settings.alerts.stream];
            let mut names = js.stream_names();
            let mut doomed = Vec::new();
            while let Some(Ok(name)) = futures::StreamExt::next(&mut names).await {
                if ours.iter().any(|s| name.starts_with(s.as_str())) {
                    doomed.push(name);
                }
            }
            for stream in doomed {
                let _ = js.delete_stream(&stream).await;
            }
        }
    }
}

/// Drops `name` with force; quiet when it is gone already.
pub async fn drop_database(admin: &PgConnectOptions, name: &str) {
    if let Ok(mut conn) = PgConnection::connect_with(admin).await {
        let _ = conn
            .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
            .await;
    }
}

/// The name of the migrated template of the current migration files, built when missing.
async fn ensure_template(conn: &mut PgConnection, settings: &Settings) -> anyhow::Result<String> {
    let template = format!("sentient_template_{:016x}", migrations_hash()?);
    // One builder at a time across processes; the lock ends with the statement's session.
    conn.execute("select pg_advisory_lock(7405941)").await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&template)
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        let building = format!("{template}_building");
        conn.execute(format!(r#"drop database if exists "{building}""#).as_str())
            .await?;
        conn.execute(format!(r#"create database "{building}""#).as_str())
            .await?;
        let mut url = url::Url::parse(settings.database.url.expose_secret())?;
        url.set_path(&format!("/{building}"));
        let pool = sqlx::PgPool::connect(url.as_str()).await?;
        sentient_hub::db::MIGRATOR.run(&pool).await?;
        pool.close().await;
        conn.execute(format!(r#"alter database "{building}" rename to "{template}""#).as_str())
            .await?;
        let stale: Vec<String> = sqlx::query_scalar(
            "select datname::text from pg_database
             where datname like 'sentient\\_template\\_%' and datname <> $1",
        )
        .bind(&template)
        .fetch_all(&mut *conn)
        .await?;
        for old in stale {
            let _ = conn
                .execute(format!(r#"drop database if exists "{old}""#).as_str())
                .await;
        }
    }
    conn.execute("select pg_advisory_unlock(7405941)").await?;
    Ok(template)
}

/// FNV-1a over the migration files' names and contents, in name order.
fn migrations_hash() -> anyhow::Result<u64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        for byte in name.bytes().chain(std::fs::read(&file)?) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(hash)
}
