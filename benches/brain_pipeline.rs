//! Brain benchmarks (not tests): `cargo bench --bench brain_pipeline`.
//!
//! 1. The whole answer path except the LLM — classify, context SQL, prompt, chat log — on the
//!    demo data, one question after another: p50/p99 per message (target p99 < 10 ms).
//! 2. Webhook in to reply out with an instant fake LLM worker on the real NATS, 100 messages/s
//!    from 200 trusted users for 10 s (local sink; send pace raised to 1,000/s, Meta's top tier):
//!    p50/p99 from the POST to the reply on the sink (target p99 < 50 ms).
//!
//! Knobs: BENCH_PREPARE (default 2000), BENCH_RATE (100), BENCH_SECS (10).

mod support;

use support::{env_or, pct};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use secrecy::ExposeSecret;
use sentient_hub::queue::connect_nats;
use sentient_hub::startup::Application;
use sentient_hub::texts::Lang;
use sentient_hub::whatsapp::{local::text_delivery, signature::sign};

const QUESTIONS: &[&str] = &[
    "omzet bulan ini vs bulan lalu?",
    "status SO-202412-0002?",
    "stok ITM-005 berapa",
    "reject rate MCH-003 minggu ini",
    "piutang overdue siapa aja?",
    "which receivables are overdue?",
    "hutang jatuh tempo minggu ini?",
    "status PO-202412-0002",
    "posisi kas gimana?",
    "alert aktif apa aja?",
    "skor vendor VND-001",
    "DO-202412-0001 sdh sampai?",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = support::BenchEnv::new().await?;
    let mut settings = env.settings.clone();
    settings.whatsapp.messages_per_second = 1000;
    let app = Application::build(settings.clone()).await?;
    let port = app.port();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let db = sqlx::PgPool::connect_with(settings.database.connect_options()).await?;
    sentient_hub::db::demo::load(&db).await?;

    // 1. The answer path without the LLM.
    let caller = support::demo_director(&db).await?;
    let prep = support::preparer(&db, &settings).await?;
    let n = env_or("BENCH_PREPARE", 2000);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let text = QUESTIONS[i % QUESTIONS.len()];
        let started = Instant::now();
        let prepared = prep.prepare(&caller, text, Lang::detect(text)).await?;
        let answer_text = match prepared {
            sentient_hub::brain::Prepared::Direct { text, .. }
            | sentient_hub::brain::Prepared::Rich { text, .. }
            | sentient_hub::brain::Prepared::Unmapped { not_yet: text, .. } => text,
            sentient_hub::brain::Prepared::Ask { snapshot, .. } => snapshot.answer.id,
        };
        let mut tx = db.begin().await?;
        sqlx::query("insert into ai_chat (user_id, user_role, msg_in, msg_out, outcome, wamid_in) values ($1, $2, $3, $4, 'fallback', $5)")
            .bind(caller.user_id).bind(&caller.role).bind(text).bind(answer_text).bind(format!("bench.{i}"))
            .execute(&mut *tx).await?;
        tx.commit().await?;
        lat.push(started.elapsed());
    }
    println!(
        "answer path without the LLM ({n} questions, demo data): p50 {:.2} ms, p99 {:.2} ms",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );

    // 2. Webhook in → reply out, with an instant fake LLM.
    let nats = connect_nats(&settings.nats).await?;
    let mut llm = nats.subscribe(settings.llm.subject.clone()).await?;
    let responder = nats.clone();
    tokio::spawn(async move {
        while let Some(msg) = llm.next().await {
            let Some(reply) = msg.reply else { continue };
            let request: serde_json::Value =
                serde_json::from_slice(&msg.payload).unwrap_or_default();
            let body = serde_json::json!({ "request_id": request["request_id"], "content": "Baik, sudah saya cek.",
                "model": "instant", "prompt_tokens": 100, "completion_tokens": 10 });
            let _ = responder.publish(reply, body.to_string().into()).await;
        }
    });
    sqlx::query(
        "with u as (
           insert into adm_user (username, email, full_name, phone, role_id)
           select 'bench' || g, 'bench' || g || '@factory.local', 'Bench ' || g, '+62899' || lpad(g::text, 7, '0'),
                  (select id from adm_role where code = 'DIRECTOR')
           from generate_series(1, 200) g returning id, phone)
         insert into wa_trust (user_id, wa_id, confirmed_at, reason) select id, substr(phone, 2), now(), 'confirmed' from u",
    )
    .execute(&db)
    .await?;
    let arrivals: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let mut sink = nats.subscribe("wa.local.out.*".to_owned()).await?;
    nats.flush().await?;
    let seen = arrivals.clone();
    tokio::spawn(async move {
        while let Some(msg) = sink.next().await {
            let to = msg
                .subject
                .as_str()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned();
            seen.lock()
                .unwrap()
                .entry(to)
                .or_default()
                .push(Instant::now());
        }
    });
    let rate = env_or("BENCH_RATE", 100);
    let secs = env_or("BENCH_SECS", 10);
    let total = rate * secs;
    let secret = settings
        .whatsapp
        .app_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    let client = reqwest::Client::new();
    let endpoint = format!("http://127.0.0.1:{port}/webhook");
    let mut sent: HashMap<String, Vec<Instant>> = HashMap::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut posts = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let wa_id = format!("62899{:07}", i % 200 + 1);
        let text = QUESTIONS[i % QUESTIONS.len()];
        let body = text_delivery(
            &settings.whatsapp.phone_number_id,
            &wa_id,
            "Bench",
            &format!("wamid.e2e.{i}"),
            text,
            chrono::Utc::now().timestamp(),
        );
        let sig = sign(&secret, body.as_bytes());
        sent.entry(wa_id).or_default().push(Instant::now());
        let c = client.clone();
        let e = endpoint.clone();
        posts.push(tokio::spawn(async move {
            c.post(e)
                .header("x-hub-signature-256", sig)
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for p in posts {
        assert_eq!(p.await??, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: usize = arrivals.lock().unwrap().values().map(Vec::len).sum();
        if got >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let mut e2e = Vec::new();
    for (who, posted) in &sent {
        if let Some(got) = arrivals.get(who) {
            for (p, a) in posted.iter().zip(got) {
                e2e.push(a.saturating_duration_since(*p));
            }
        }
    }
    let llm_answers: i64 = sqlx::query_scalar("select count(*) from ai_chat where outcome = 'llm'")
        .fetch_one(&db)
        .await?;
    println!(
        "webhook in → reply out at {rate}/s for {secs}s: {} of {total} replies, {llm_answers} answered by the (instant) LLM; p50 {:.1} ms, p99 {:.1} ms",
        e2e.len(),
        pct(&mut e2e, 0.5),
        pct(&mut e2e, 0.99)
    );

    db.close().await;
    env.cleanup().await?;
    Ok(())
}
