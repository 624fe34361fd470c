//! Admin API benchmark (not a test): `cargo bench --bench admin`.
//!
//! Starts the real app (release build) against a fresh database on the local PostgreSQL and the
//! local NATS, with the production password cost (argon2id 19 MiB, 2 iterations, 1 lane, one
//! hash at a time as in `config/default.toml`), then:
//! 1. logins/s: BENCH_LOGINS logins over BENCH_LOGIN_CONNECTIONS connections (CPU-bound by
//!    design), with p50/p99 and how many were shed with 503;
//! 2. the webhook and /healthz while idle, then again during a login flood of the same
//!    concurrency: p50/p99 of each, so the flood's effect on them is visible;
//! 3. authenticated reads (`GET /api/v1/users`, `/api/v1/auth/me`, `/api/v1/menus`), each
//!    BENCH_READS requests over BENCH_CONNECTIONS connections: requests/s, p50, p99.
//!
//! The per-IP login throttle is raised for the run: every request comes from 127.0.0.1.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use sentient_hub::startup::Application;
use sentient_hub::whatsapp::{local::text_delivery, signature::sign};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use support::{env_or, pct};

const PASSWORD: &str = "Bench-Password-2024";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let logins = env_or("BENCH_LOGINS", 300);
    let login_connections = env_or("BENCH_LOGIN_CONNECTIONS", 16);
    let reads = env_or("BENCH_READS", 20_000);
    let connections = env_or("BENCH_CONNECTIONS", 32);
    let probe_secs: u64 = env_or("BENCH_PROBE_SECS", 8);

    let env = support::BenchEnv::new().await?;
    let mut settings = env.settings.clone();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    // Production cost and concurrency of password hashing from config/default.toml (the test
    // profile makes hashing cheap).
    let defaults = config::Config::builder()
        .add_source(config::File::from(dir.join("default.toml")))
        .build()?;
    settings.auth.argon2_memory_kib = defaults.get("auth.argon2_memory_kib")?;
    settings.auth.argon2_iterations = defaults.get("auth.argon2_iterations")?;
    settings.auth.argon2_parallelism = defaults.get("auth.argon2_parallelism")?;
    settings.auth.max_concurrent_hashes = defaults.get("auth.max_concurrent_hashes")?;
    settings.auth.hash_wait_ms = defaults.get("auth.hash_wait_ms")?;
    settings.auth.login_burst = 1_000_000;
    settings.auth.login_per_minute = 1_000_000;
    println!(
        "argon2id m={} KiB t={} p={}, {} hash(es) at a time; {} cores",
        settings.auth.argon2_memory_kib,
        settings.auth.argon2_iterations,
        settings.auth.argon2_parallelism,
        settings.auth.max_concurrent_hashes,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let app = Application::build(settings.clone()).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    // 100 users with the production-cost hash of one password (one hash, reused).
    let hasher = sentient_hub::admin::password::Hasher::new(&settings.auth)?;
    let hash = hasher
        .hash(SecretString::from(PASSWORD))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut db = PgConnection::connect_with(&settings.database.connect_options()).await?;
    sqlx::query(
        "insert into adm_user (username, email, full_name, role_id, password_hash)
         select 'user' || n, 'user' || n || '@factory.local', 'User ' || n,
                (select id from adm_role where code = case when n = 0 then 'SYSADMIN' else 'OPERATOR' end),
                $1
         from generate_series(0, 99) n",
    )
    .bind(&hash)
    .execute(&mut db)
    .await?;
    // What is measured is the password step and the session; user0 (SYSADMIN) would get a
    // second-factor challenge, whose delivery needs a mail server or a phone.
    sqlx::query("update adm_role set mfa_required = false where code = 'SYSADMIN'")
        .execute(&mut db)
        .await?;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections.max(login_connections) + 8)
        .build()?;
    let login_url = format!("{base}/api/v1/auth/login");
    let login = |client: reqwest::Client, url: String, i: usize| async move {
        let start = Instant::now();
        let r = client
            .post(&url)
            .json(&json!({ "login": format!("user{}", i % 100), "password": PASSWORD }))
            .send()
            .await;
        (start.elapsed(), r.map(|r| r.status().as_u16()).unwrap_or(0))
    };

    // 1. Logins per second.
    let started = Instant::now();
    let results: Vec<(Duration, u16)> = futures::stream::iter(0..logins)
        .map(|i| login(client.clone(), login_url.clone(), i))
        .buffer_unordered(login_connections)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = results.iter().filter(|(_, s)| *s == 200).count();
    let shed = results.iter().filter(|(_, s)| *s == 503).count();
    let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    println!(
        "logins: {logins} over {login_connections} connections in {elapsed:.2}s = {:.1} logins/s ({ok} ok, {shed} shed with 503); latency p50 {:.0} ms, p99 {:.0} ms",
        ok as f64 / elapsed,
        pct(&mut lat, 0.50),
        pct(&mut lat, 0.99)
    );

    // 2. Webhook and healthz, idle and during a login flood.
    let secret = settings
        .whatsapp
        .app_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    let webhook = format!("{base}/webhook");
    let healthz = format!("{base}/healthz");
    let seq = Arc::new(AtomicUsize::new(0));
    let probe = |label: &'static str| {
        let client = client.clone();
        let (webhook, healthz, secret, seq) = (
            webhook.clone(),
            healthz.clone(),
            secret.clone(),
            seq.clone(),
        );
        let phone_id = settings.whatsapp.phone_number_id.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(probe_secs);
            let (mut hook, mut health) = (Vec::new(), Vec::new());
            let mut failures = 0;
            while Instant::now() < deadline {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let body = text_delivery(
                    &phone_id,
                    &format!("6281{:08}", n % 500),
                    "Bench",
                    &format!("wamid.adminbench.{n}"),
                    "stok motor dc berapa?",
                    chrono::Utc::now().timestamp(),
                );
                let sig = sign(&secret, body.as_bytes());
                let t = Instant::now();
                let r = client
                    .post(&webhook)
                    .header("x-hub-signature-256", sig)
                    .body(body)
                    .send()
                    .await;
                failures += usize::from(!matches!(&r, Ok(r) if r.status() == 200));
                hook.push(t.elapsed());
                let t = Instant::now();
                let r = client.get(&healthz).send().await;
                failures += usize::from(!matches!(&r, Ok(r) if r.status() == 200));
                health.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            println!(
                "  {label}: webhook p50 {:.1} ms, p99 {:.1} ms; healthz p50 {:.1} ms, p99 {:.1} ms ({} probes, {failures} failures)",
                pct(&mut hook, 0.50),
                pct(&mut hook, 0.99),
                pct(&mut health, 0.50),
                pct(&mut health, 0.99),
                hook.len()
            );
        }
    };
    println!("webhook and healthz, one request at a time every 20 ms:");
    probe("idle").await;
    let flooding = Arc::new(AtomicBool::new(true));
    let flood_done = Arc::new(AtomicUsize::new(0));
    let flood_shed = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for c in 0..login_connections * 2 {
        let (client, url, flooding, done, shed) = (
            client.clone(),
            login_url.clone(),
            flooding.clone(),
            flood_done.clone(),
            flood_shed.clone(),
        );
        flood.push(tokio::spawn(async move {
            let mut i = c;
            while flooding.load(Ordering::Relaxed) {
                let (_, status) = login(client.clone(), url.clone(), i).await;
                done.fetch_add(1, Ordering::Relaxed);
                shed.fetch_add(usize::from(status == 503), Ordering::Relaxed);
                i += 7;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flood_started = Instant::now();
    probe("during a flood of login attempts").await;
    flooding.store(false, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    println!(
        "  the flood: {} concurrent login loops, {:.1} attempts/s answered ({} shed with 503)",
        login_connections * 2,
        flood_done.load(Ordering::Relaxed) as f64 / flood_started.elapsed().as_secs_f64(),
        flood_shed.load(Ordering::Relaxed)
    );

    // 3. Authenticated reads.
    let token: Value = client
        .post(&login_url)
        .json(&json!({ "login": "user0", "password": PASSWORD }))
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token: {token}"))?
        .to_owned();
    for path in [
        "/api/v1/users?per_page=20",
        "/api/v1/auth/me",
        "/api/v1/menus",
    ] {
        let url = format!("{base}{path}");
        // Warm-up.
        for _ in 0..50 {
            client.get(&url).bearer_auth(&token).send().await?;
        }
        let started = Instant::now();
        let results: Vec<(Duration, bool)> = futures::stream::iter(0..reads)
            .map(|_| {
                let (client, url, token) = (client.clone(), url.clone(), token.clone());
                async move {
                    let t = Instant::now();
                    let r = client.get(&url).bearer_auth(&token).send().await;
                    let ok = match r {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    (t.elapsed(), ok)
                }
            })
            .buffer_unordered(connections)
            .collect()
            .await;
        let elapsed = started.elapsed().as_secs_f64();
        let failures = results.iter().filter(|(_, ok)| !ok).count();
        let mut lat: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
        println!(
            "GET {path}: {reads} over {connections} connections: {:.0} requests/s, p50 {:.1} ms, p99 {:.1} ms (failures: {failures})",
            reads as f64 / elapsed,
            pct(&mut lat, 0.50),
            pct(&mut lat, 0.99)
        );
    }

    drop(db);
    env.cleanup().await?;
    Ok(())
}
