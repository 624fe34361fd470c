//! The intent classifier with its entity extraction, and the metrics layer's reading of the
//! question: any text is classified and read without panicking.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sentient_hub::brain::catalog::Catalog;
use sentient_hub::brain::{intent, understand};

static MASTERS: LazyLock<Catalog> = LazyLock::new(Catalog::blueprint_sample);

fuzz_target!(|text: &str| {
    let c = intent::classify(text, &MASTERS);
    assert!((0.0..=1.0).contains(&c.confidence));
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 2).expect("a date");
    let _ = understand::read(text, &c, &MASTERS, today, Some("omzet bulan ini"));
});
