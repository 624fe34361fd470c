//! Metrics-layer benchmarks (not tests): `cargo bench --bench metrics`.
//!
//! 1. Question → spec → SQL text, no database, one thread: every labelled analytic question
//!    (`tests/data/analytic_questions.toml`) classified, read into a spec and compiled, many
//!    times; p50/p99 per question (target p99 < 200 µs).
//! 2. Every supported query shape on `demo --scale N` data (N = 10 and 100 by default): the
//!    whole preparation of a figure question as a director — understanding, permission check,
//!    the one read-only statement, rendering — p50/p99 per shape (targets: p99 < 50 ms at
//!    N = 10, < 300 ms at N = 100).
//!
//! Knobs: BENCH_SCALES (default "10,100"), BENCH_RUNS (30 per shape), BENCH_SPEC_ROUNDS (200).

mod support;

use support::{env_or, pct};

use std::time::{Duration, Instant};

use sentient_hub::brain::catalog::Catalog;
use sentient_hub::brain::understand::{read, Reading};
use sentient_hub::brain::{intent::classify, Prepared};
use sentient_hub::metrics::catalogue::CATALOGUE;
use sentient_hub::metrics::compile::compile;
use sentient_hub::texts::Lang;

/// One question per query shape.
const SHAPES: &[(&str, &str)] = &[
    ("figure", "omzet bulan ini"),
    ("figure, compared", "omzet bulan ini vs bulan lalu"),
    ("figure, filtered", "omzet PT Maju Jaya tahun ini"),
    ("breakdown", "omzet per customer tahun ini"),
    ("ranking", "top 5 customer tahun ini"),
    ("trend", "omzet per bulan 12 bulan terakhir"),
    ("line level, by item", "margin per item tahun ini"),
    ("production by machine", "reject rate per mesin bulan lalu"),
    ("production trend", "output per minggu 3 bulan terakhir"),
    ("snapshot by customer", "piutang overdue per customer"),
    ("stock by warehouse", "stok per gudang"),
];

#[derive(serde::Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    questions: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // 1. Question → spec → SQL text.
    let cases: Cases = toml::from_str(&std::fs::read_to_string(
        "tests/data/analytic_questions.toml",
    )?)?;
    let questions: Vec<String> = cases.case.into_iter().flat_map(|c| c.questions).collect();
    let masters = Catalog::blueprint_sample();
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive();
    let rounds = env_or("BENCH_SPEC_ROUNDS", 200usize);
    let mut lat = Vec::with_capacity(rounds * questions.len());
    let mut compiled = 0usize;
    for _ in 0..rounds {
        for q in &questions {
            let started = Instant::now();
            let c = classify(q, &masters);
            if let Reading::Metric(spec) = read(q, &c, &masters, today, None) {
                if compile(&CATALOGUE, &spec, today, &[], 500).is_ok() {
                    compiled += 1;
                }
            }
            lat.push(started.elapsed());
        }
    }
    let us = |ms: f64| ms * 1000.0;
    println!(
        "question → spec → SQL ({} questions × {rounds}, {compiled} compiled): p50 {:.1} µs, p99 {:.1} µs",
        questions.len(),
        us(pct(&mut lat, 0.5)),
        us(pct(&mut lat, 0.99))
    );

    // 2. Every shape on scaled data.
    let scales: Vec<u32> = std::env::var("BENCH_SCALES")
        .unwrap_or_else(|_| "10,100".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runs = env_or("BENCH_RUNS", 30usize);
    for scale in scales {
        let env = support::BenchEnv::new().await?;
        let db = sqlx::PgPool::connect_with(env.settings.database.connect_options()).await?;
        let started = Instant::now();
        sentient_hub::db::demo::load_scaled(&db, scale).await?;
        let (orders, lines, shifts): (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from t_so), (select count(*) from t_so_detail), (select count(*) from t_shift_log)",
        )
        .fetch_one(&db)
        .await?;
        println!(
            "\nscale {scale}: {orders} orders, {lines} lines, {shifts} shift logs (generated in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        let caller = support::demo_director(&db).await?;
        let prep = support::preparer(&db, &env.settings).await?;
        for (shape, question) in SHAPES {
            let mut lat: Vec<Duration> = Vec::with_capacity(runs);
            for _ in 0..runs {
                let started = Instant::now();
                let prepared = prep.prepare(&caller, question, Lang::Id).await?;
                lat.push(started.elapsed());
                assert!(
                    matches!(
                        prepared,
                        Prepared::Ask {
                            worked: Some(_),
                            ..
                        }
                    ),
                    "{question:?} is answered by the metrics layer"
                );
            }
            println!(
                "  {shape:<24} {question:<40} p50 {:>7.2} ms  p99 {:>7.2} ms",
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99)
            );
        }
        db.close().await;
        env.cleanup().await?;
    }
    Ok(())
}
