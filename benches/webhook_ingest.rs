//! Webhook ingest benchmark (not a test): `cargo bench --bench webhook_ingest`.
//!
//! Starts the real app (release build) against a fresh database on the local PostgreSQL and the
//! local NATS, then:
//! 1. sends pre-signed deliveries (one text message each, 10% repeating an earlier wamid) over
//!    many connections as fast as they are answered: deliveries/s and p50/p99 of the 200;
//! 2. sends at a fixed 1,000 deliveries/s: p50/p99 of the 200;
//! 0. first, while the app is idle, measures PostgreSQL's own single-row insert-and-commit rate
//!    on a table of the inbox's shape, on one connection and on as many as the app's pool: the
//!    ceiling of a durable ingest (printed with the ratios at the end);
//! 3. checks that repeated wamids added no rows.
//!
//! Knobs (environment): BENCH_DELIVERIES (default 20000), BENCH_CONNECTIONS (64),
//! BENCH_RATE (1000), BENCH_RATE_SECS (10).

mod support;

use support::{env_or, pct};

use std::str::FromStr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use secrecy::ExposeSecret;
use sentient_hub::startup::Application;
use sentient_hub::whatsapp::{local::text_delivery, signature::sign};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let deliveries = env_or("BENCH_DELIVERIES", 20_000);
    let connections = env_or("BENCH_CONNECTIONS", 64);
    let rate = env_or("BENCH_RATE", 1000);
    let rate_secs = env_or("BENCH_RATE_SECS", 10);

    let env = support::BenchEnv::new().await?;
    let settings = env.settings.clone();
    let pool_size = settings.database.max_connections;
    let app = Application::build(settings.clone()).await?;
    let endpoint = format!("http://127.0.0.1:{}/webhook", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let secret = settings
        .whatsapp
        .app_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    let make = |i: usize, tag: &str| -> (String, String) {
        // 10% of deliveries repeat the wamid of an earlier one (Meta's retries and duplicates).
        let n = if i % 10 == 9 { i - 5 } else { i };
        let sender = format!("6281{:08}", n % 5000);
        let body = text_delivery(
            &settings.whatsapp.phone_number_id,
            &sender,
            "Bench",
            &format!("wamid.bench.{tag}.{n}"),
            "omzet bulan ini berapa?",
            chrono::Utc::now().timestamp(),
        );
        let sig = sign(&secret, body.as_bytes());
        (body, sig)
    };
    let burst: Vec<(String, String)> = (0..deliveries).map(|i| make(i, "burst")).collect();
    let unique_burst = (0..deliveries).filter(|i| i % 10 != 9).count();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let post = |client: reqwest::Client, endpoint: String, (body, sig): (String, String)| async move {
        let start = Instant::now();
        let response = client
            .post(&endpoint)
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
            .await;
        let ok = matches!(&response, Ok(r) if r.status() == 200);
        (start.elapsed(), ok)
    };

    // 0. The database's own single-row commit rate, same table shape, same pool size, measured
    //    first, while the app is idle, so the pipeline's background work does not lower it.
    let db_opts = PgConnectOptions::from_str(settings.database.url.expose_secret())?;
    let mut setup = PgConnection::connect_with(&db_opts).await?;
    setup
        .execute("create table bench_commit (like wa_inbox including all)")
        .await?;
    let single = commit_rate(&db_opts, 1, deliveries / 4, "one").await?;
    let pooled = commit_rate(&db_opts, pool_size as usize, deliveries, "pool").await?;
    println!("database single-row insert+commit: {single:.0} rows/s on 1 connection, {pooled:.0} rows/s on {pool_size} connections");

    // Warm up connections and the pool.
    futures::stream::iter((0..200).map(|i| make(i, "warm")))
        .for_each_concurrent(connections, |d| {
            let c = client.clone();
            let e = endpoint.clone();
            async move {
                post(c, e, d).await;
            }
        })
        .await;

    // 1. Throughput.
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = futures::stream::iter(burst)
        .map(|d| post(client.clone(), endpoint.clone(), d))
        .buffer_unordered(connections)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failures = results.iter().filter(|(_, ok)| !ok).count();
    let mut latencies: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
    let throughput = deliveries as f64 / elapsed.as_secs_f64();
    println!("throughput: {deliveries} deliveries over {connections} connections in {:.2}s = {throughput:.0} deliveries/s (failures: {failures})", elapsed.as_secs_f64());
    println!(
        "  latency of the 200: p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut latencies, 0.50),
        pct(&mut latencies, 0.99)
    );

    // 2. Fixed rate.
    let total = rate * rate_secs;
    let paced: Vec<(String, String)> = (0..total).map(|i| make(i, "paced")).collect();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut handles = Vec::with_capacity(total);
    for (i, d) in paced.into_iter().enumerate() {
        tokio::time::sleep_until(start + interval * i as u32).await;
        handles.push(tokio::spawn(post(client.clone(), endpoint.clone(), d)));
    }
    let mut paced_lat = Vec::with_capacity(total);
    let mut paced_fail = 0;
    for h in handles {
        let (d, ok) = h.await?;
        paced_lat.push(d);
        paced_fail += usize::from(!ok);
    }
    println!("fixed rate: {rate} deliveries/s for {rate_secs}s: p50 {:.1} ms, p99 {:.1} ms (failures: {paced_fail})", pct(&mut paced_lat, 0.50), pct(&mut paced_lat, 0.99));

    println!(
        "ingest / database commit rate = {:.2} (1 connection), {:.2} ({pool_size} connections)",
        throughput / single,
        throughput / pooled
    );

    // 3. Duplicates added nothing.
    let stored: i64 =
        sqlx::query_scalar("select count(*) from wa_inbox where wamid like 'wamid.bench.burst.%'")
            .fetch_one(&mut setup)
            .await?;
    println!(
        "repeated wamids: {} deliveries, {} unique, {} rows stored, {} extra rows",
        deliveries,
        unique_burst,
        stored,
        stored - unique_burst as i64
    );

    drop(setup);
    env.cleanup().await?;
    Ok(())
}

/// Rows per second that `connections` connections insert, each row its own transaction.
async fn commit_rate(
    opts: &PgConnectOptions,
    connections: usize,
    rows: usize,
    tag: &'static str,
) -> anyhow::Result<f64> {
    let per_conn = rows / connections;
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let opts = opts.clone();
            tokio::spawn(async move {
                let mut conn = PgConnection::connect_with(&opts).await?;
                for i in 0..per_conn {
                    sqlx::query(
                        "insert into bench_commit (wamid, phone_nr_id, wa_id, sender_key, msg_type, body, payload, sent_at)
                         values ($1, '1', '6281', '6281', 'text', 'omzet bulan ini berapa?', '{}', now())",
                    )
                    .bind(format!("wamid.{tag}.{c}.{i}"))
                    .execute(&mut conn)
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok((per_conn * connections) as f64 / started.elapsed().as_secs_f64())
}
