//! Chart benchmarks (not tests): `cargo bench --bench chart`.
//!
//! 1. Drawing alone, no database, one thread: a 6- and a 24-month trend, a 15-bar breakdown
//!    with its comparison, a top 10 — p50/p99 of `chart::draw` (PNG and caption) and the
//!    largest PNG (targets: p99 < 50 ms, < 150 KB).
//! 2. The whole answer of a chart question on the demo data as a director (understanding,
//!    permission check, the statement, the text and the chart), charts on and off: what a
//!    chart adds to the answer.
//!
//! Knobs: BENCH_RUNS (100 per chart, 30 per question).

mod support;

use support::{env_or, pct};

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use sentient_hub::brain::Prepared;
use sentient_hub::metrics::catalogue::{Label, CATALOGUE};
use sentient_hub::metrics::chart;
use sentient_hub::metrics::run::{Row, Rows};
use sentient_hub::metrics::spec::{Grain, Group, Spec, Top, Window};
use sentient_hub::texts::Lang;

const QUESTIONS: &[&str] = &[
    "grafik omzet 6 bulan",
    "chart reject rate per mesin bulan ini",
    "tren piutang overdue",
];

fn window(from: &str, to: &str) -> Window {
    Window {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
        label: Label {
            id: "periode".into(),
            en: "period".into(),
        },
    }
}

fn row(key: String, label: String, current: bool, v: i64) -> Row {
    Row {
        key: Some(key),
        label: Some(label),
        current,
        values: vec![Some(Decimal::from(v))],
    }
}

fn trend(months: u32) -> (Spec, Rows) {
    let from: NaiveDate = "2025-01-01".parse().unwrap();
    let rows = (0..months)
        .map(|i| {
            let key = (from + chrono::Months::new(i)).to_string();
            let v = 600_000_000 + i64::from((i * 37) % 11) * 70_000_000;
            row(key, String::new(), true, v)
        })
        .collect();
    let spec = Spec {
        measures: vec!["revenue".into()],
        group_by: Some(Group::Time(Grain::Month)),
        filters: vec![],
        period: Some(Window {
            from,
            to: from + chrono::Months::new(months),
            label: window("2025-01-01", "2025-01-02").label,
        }),
        compare: None,
        top: None,
    };
    (
        spec,
        Rows {
            rows,
            truncated: false,
        },
    )
}

fn breakdown(groups: i64, compare: bool, top: Option<u32>) -> (Spec, Rows) {
    let mut rows = Vec::new();
    for i in 0..groups {
        let name = format!("PT Pelanggan Contoh Nomor {i}");
        rows.push(row(
            format!("C{i}"),
            name.clone(),
            true,
            90_000_000 - i * 4_000_000,
        ));
        if compare {
            rows.push(row(
                format!("C{i}"),
                name,
                false,
                70_000_000 - i * 2_500_000,
            ));
        }
    }
    let spec = Spec {
        measures: vec!["revenue".into()],
        group_by: Some(Group::Dim("customer".into())),
        filters: vec![],
        period: Some(window("2026-11-01", "2026-12-01")),
        compare: compare.then(|| window("2026-10-01", "2026-11-01")),
        top: top.map(|n| Top {
            n,
            ascending: false,
        }),
    };
    (
        spec,
        Rows {
            rows,
            truncated: false,
        },
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs = env_or("BENCH_RUNS", 100usize);
    let cases = [
        ("trend, 6 months", trend(6)),
        ("trend, 24 months", trend(24)),
        ("breakdown, 15 bars + comparison", breakdown(20, true, None)),
        ("ranking, top 10", breakdown(30, false, Some(10))),
    ];
    let today: NaiveDate = "2026-12-03".parse()?;
    println!("drawing ({runs} runs each, one thread):");
    for (name, (spec, rows)) in &cases {
        let mut lat = Vec::with_capacity(runs);
        let mut largest = 0usize;
        for _ in 0..runs {
            let started = Instant::now();
            let drawn = chart::draw(&CATALOGUE, spec, rows, Lang::Id, &|_| None, "now", today)?
                .expect("a chart");
            lat.push(started.elapsed());
            largest = largest.max(drawn.png.len());
        }
        println!(
            "  {name:<34} p50 {:>6.2} ms  p99 {:>6.2} ms  PNG {:>5.1} KB",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
            largest as f64 / 1024.0
        );
    }

    // 2. The answer of a chart question on the demo data, charts on and off.
    let runs = env_or("BENCH_RUNS", 30usize).min(30);
    let env = support::BenchEnv::new().await?;
    let db = sqlx::PgPool::connect_with(env.settings.database.connect_options()).await?;
    sentient_hub::db::demo::load(&db).await?;
    let caller = support::demo_director(&db).await?;
    println!("\nthe answer, demo data, as a director ({runs} runs each):");
    for charts in [true, false] {
        let mut settings = env.settings.clone();
        settings.brain.charts = charts;
        let prep = support::preparer(&db, &settings).await?;
        for question in QUESTIONS {
            let mut lat: Vec<Duration> = Vec::with_capacity(runs);
            let mut size = 0usize;
            for _ in 0..runs {
                let started = Instant::now();
                let prepared = prep.prepare(&caller, question, Lang::Id).await?;
                lat.push(started.elapsed());
                let Prepared::Ask { chart, .. } = prepared else {
                    anyhow::bail!("{question:?} is not answered from the data");
                };
                assert_eq!(chart.is_some(), charts, "{question:?}");
                size = chart.map_or(0, |c| c.png.len());
            }
            println!(
                "  charts {:<3} {question:<40} p50 {:>6.2} ms  p99 {:>6.2} ms  PNG {:>5.1} KB",
                if charts { "on" } else { "off" },
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99),
                size as f64 / 1024.0
            );
        }
    }
    db.close().await;
    env.cleanup().await?;
    Ok(())
}
