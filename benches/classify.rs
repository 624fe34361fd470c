//! Classification + entity extraction throughput: the labelled questions of
//! `tests/fixtures/intents.tsv` classified over and over on one thread against the blueprint's
//! masters. Run with `cargo bench --bench classify` (knobs: `BENCH_RUNS`, `BENCH_RUN_SECS`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use sentient_hub::brain::catalog::Catalog;
use sentient_hub::brain::intent::classify;
use support::env_or;

mod support;

fn main() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/intents.tsv");
    let data = std::fs::read_to_string(path).expect("read the intent fixtures");
    let texts: Vec<&str> = data
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('\t').next().unwrap_or_default())
        .collect();
    let runs: usize = env_or("BENCH_RUNS", 5);
    let run_for = Duration::from_secs_f64(env_or("BENCH_RUN_SECS", 1.0));

    let catalog = Catalog::blueprint_sample();
    // warm-up: builds the lexicon, fills caches
    for t in &texts {
        black_box(classify(black_box(t), &catalog));
    }

    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < run_for {
            for t in &texts {
                black_box(classify(black_box(t), &catalog));
            }
            done += texts.len() as u64;
        }
        rates.push(done as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "classify: {} labelled questions, {runs} runs of {:.1} s on one thread",
        texts.len(),
        run_for.as_secs_f64()
    );
    println!(
        "messages/s: median {median:.0}, best {:.0}, worst {:.0}; {:.2} µs per message (median)",
        rates[rates.len() - 1],
        rates[0],
        1e6 / median
    );
    let target = 50_000.0;
    println!(
        "target ≥ {target:.0}/s: {}",
        if median >= target { "met" } else { "NOT met" }
    );
}
