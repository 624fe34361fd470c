//! Alert benchmark (not a test): `cargo bench --bench alerts`.
//!
//! Starts the real app (release build) against a fresh database, the local NATS and the local
//! sink, with BENCH_RECIPIENTS directors on confirmed devices (who may read maintenance data and
//! acknowledge alerts, so routing checks both and every message carries the button), then:
//! 1. latency: BENCH_SINGLE alerts one at a time, each published on `alerts.subject` and timed
//!    until its outbox rows (one per director) are committed: p50 / p99;
//! 2. throughput: BENCH_ALERTS alerts published at once; alerts/s stored, and alerts/s (and
//!    outbox rows/s) routed, from the first publish to the last commit;
//! 3. checks every alert was stored and routed once to every director.
//!
//! The Graph API's pace (80 messages/s per number by default) bounds the sends themselves; this
//! measures what the hub adds before them.
//!
//! Knobs (environment): BENCH_ALERTS (default 2000), BENCH_RECIPIENTS (20), BENCH_SINGLE (200).

mod support;

use support::{env_or, pct};

use std::time::{Duration, Instant};

use sentient_hub::startup::Application;
use sqlx::PgPool;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let alerts: i64 = env_or("BENCH_ALERTS", 2000);
    let recipients: i64 = env_or("BENCH_RECIPIENTS", 20);
    let single: i64 = env_or("BENCH_SINGLE", 200);

    let env = support::BenchEnv::new().await?;
    let settings = env.settings.clone();
    let app = Application::build(settings.clone()).await?;
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let db = PgPool::connect_with(settings.database.connect_options()).await?;
    seed_directors(&db, recipients).await?;
    let nats = sentient_hub::queue::connect_nats(&settings.nats).await?;
    let subject = settings.alerts.subject.clone();
    let body = |kind: &str, i: i64| {
        format!(
            r#"{{"module":"MAINT","alert_type":"BENCH","severity":"High","message":"Bench alert {kind} {i}","dedup_key":"bench-{kind}-{i}","n":{i}}}"#
        )
    };

    // 1. One at a time: publish → outbox rows committed.
    let mut latencies = Vec::with_capacity(single as usize);
    for i in 0..single {
        let start = Instant::now();
        nats.publish(subject.clone(), body("single", i).into())
            .await?;
        nats.flush().await?;
        let key = format!("bench-single-{i}");
        loop {
            let routed: i64 = sqlx::query_scalar(
                "select count(*) from ai_alert_recipient r join ai_alert a on a.id = r.alert_id
                 where a.dedup_key = $1",
            )
            .bind(&key)
            .fetch_one(&db)
            .await?;
            if routed == recipients {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "alert {key} not routed in 30 s ({routed} rows)"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        latencies.push(start.elapsed());
    }
    println!(
        "one at a time: {single} alerts to {recipients} directors each, publish → outbox rows committed: p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut latencies, 0.50),
        pct(&mut latencies, 0.99)
    );

    // 2. A burst.
    let start = Instant::now();
    for i in 0..alerts {
        nats.publish(subject.clone(), body("burst", i).into())
            .await?;
    }
    nats.flush().await?;
    let published = start.elapsed();
    let mut stored_at = None;
    loop {
        let (stored, unsent): (i64, i64) = sqlx::query_as(
            "select count(*), count(*) filter (where not is_sent) from ai_alert
             where alert_type = 'BENCH' and dedup_key like 'bench-burst-%'",
        )
        .fetch_one(&db)
        .await?;
        if stored == alerts && stored_at.is_none() {
            stored_at = Some(start.elapsed());
        }
        if stored == alerts && unsent == 0 {
            break;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "burst not done in 10 min: {stored} stored, {unsent} unsent"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let routed_at = start.elapsed();
    let stored_at = stored_at.unwrap_or(routed_at);
    println!(
        "burst: {alerts} alerts published in {:.2} s; stored in {:.2} s = {:.0} alerts/s; routed in {:.2} s = {:.0} alerts/s, {:.0} outbox rows/s",
        published.as_secs_f64(),
        stored_at.as_secs_f64(),
        alerts as f64 / stored_at.as_secs_f64(),
        routed_at.as_secs_f64(),
        alerts as f64 / routed_at.as_secs_f64(),
        (alerts * recipients) as f64 / routed_at.as_secs_f64()
    );

    // 3. Exactly once per director.
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct (r.alert_id, r.user_id)) from ai_alert_recipient r
         join ai_alert a on a.id = r.alert_id where a.alert_type = 'BENCH'",
    )
    .fetch_one(&db)
    .await?;
    let expected = (alerts + single) * recipients;
    println!("routing rows: {rows} (expected {expected}, distinct {distinct})");
    anyhow::ensure!(
        rows == expected && distinct == expected,
        "each alert must reach each director exactly once"
    );

    db.close().await;
    env.cleanup().await?;
    Ok(())
}

/// `n` active directors, each on a confirmed device with an open 24-hour window.
async fn seed_directors(db: &PgPool, n: i64) -> anyhow::Result<()> {
    sqlx::query(
        "with u as (
             insert into adm_user (username, email, full_name, phone, role_id)
             select 'bench' || g, 'bench' || g || '@factory.local', 'Bench Director ' || g,
                    '+6289' || lpad(g::text, 8, '0'), (select id from adm_role where code = 'DIRECTOR')
             from generate_series(1, $1) g
             returning id, phone),
         t as (
             insert into wa_trust (user_id, wa_id, confirmed_at, reason)
             select id, substr(phone, 2), now(), 'confirmed' from u
             returning wa_id)
         insert into wa_contact (sender_key, wa_id, last_in_at)
         select wa_id, wa_id, now() from t",
    )
    .bind(n)
    .execute(db)
    .await?;
    Ok(())
}
