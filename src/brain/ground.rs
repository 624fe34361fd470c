//! Grounding: every figure in the LLM's answer must come from the context — as it is, or as a
//! simple derivation (difference, ratio or percentage change) of two figures of the same record
//! (fields of one JSON object: this month's and last month's revenue, an item's stock and its
//! minimum), never of any two figures anywhere. Support comes only from numeric fields (numbers,
//! and strings that are a number): a number inside a name ("PT 2000 Jaya", "Motor 12V") supports
//! nothing. Figures are normalised first (`Rp 1,25 M` = 1.250.000.000, `625,8 jt` =
//! 625.800.000, `8,5%` = 8.5); money is `Rp`/`IDR` before or `rupiah`/`IDR`/`Rp` after a number,
//! or a magnitude word. Limit: amounts written in words ("sembilan miliar") are not read.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

/// A figure found in a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// As written.
    pub text: String,
    /// Its value.
    pub value: f64,
    /// Written as money (Rp/IDR or a magnitude word).
    pub money: bool,
}

fn figure_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)(?P<rp>\b(?:rp|idr)\.?\s?)?(?P<num>[0-9](?:[0-9.,]*[0-9])?)\s?(?P<unit>%|(?:triliun|miliar|milyar|juta|ribu|jt|rb|bn|m|t|k)\b)?(?P<cur>\s?(?:rupiah|idr|rp)\b)?",
        )
        .unwrap()
    })
}

/// Parses `1.250.000`, `1,25`, `12.5`, `1,250,000` the way people mean them.
fn parse_number(raw: &str) -> Option<f64> {
    let dots = raw.matches('.').count();
    let commas = raw.matches(',').count();
    let cleaned = match (dots, commas) {
        (0, 0) => raw.to_owned(),
        // 1.250.000 or 1.250.000,5 (Indonesian)
        (d, c) if d >= 2 || (d == 1 && c == 1 && raw.find('.') < raw.find(',')) => {
            raw.replace('.', "").replace(',', ".")
        }
        // 1,250,000 or 1,250,000.5 (English)
        (_, c) if c >= 2 || (c == 1 && dots == 1) => raw.replace(',', ""),
        // one separator: three digits after it = thousands, else a decimal
        (1, 0) => {
            let after = raw.len() - raw.find('.')? - 1;
            if after == 3 {
                raw.replace('.', "")
            } else {
                raw.to_owned()
            }
        }
        (0, 1) => {
            let after = raw.len() - raw.find(',')? - 1;
            if after == 3 {
                raw.replace(',', "")
            } else {
                raw.replace(',', ".")
            }
        }
        _ => return None,
    };
    cleaned.parse().ok()
}

/// The figures in `text`. Document numbers, codes and dates are not figures.
pub fn figures(text: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    for c in figure_re().captures_iter(text) {
        let m = c.name("num").expect("num is not optional");
        // Part of a code or date: SO-202412-0002, MCH-003, 28-11-2026, 10:30.
        // Part of a name: "12V", "3rd".
        let before = text[..m.start()].chars().last();
        let after = text[m.end()..].chars().next();
        let unit_or_currency = c.name("unit").is_some() || c.name("cur").is_some();
        if matches!(before, Some('-' | '/' | ':'))
            || before.is_some_and(|b| b.is_alphabetic())
            || matches!(after, Some('-' | '/' | ':'))
            || (!unit_or_currency && after.is_some_and(|a| a.is_alphanumeric()))
        {
            continue;
        }
        let Some(mut value) = parse_number(m.as_str()) else {
            continue;
        };
        let unit = c.name("unit").map(|u| u.as_str().to_lowercase());
        let rp = c.name("rp").is_some() || c.name("cur").is_some();
        let magnitude = match unit.as_deref() {
            Some("triliun" | "t") => 1e12,
            Some("miliar" | "milyar" | "m" | "bn") => 1e9,
            Some("juta" | "jt") => 1e6,
            Some("ribu" | "rb" | "k") => 1e3,
            _ => 1.0,
        };
        if magnitude > 1.0 && (rp || !matches!(unit.as_deref(), Some("m" | "t" | "k"))) {
            value *= magnitude;
        }
        let money = rp || magnitude > 1.0 && unit.as_deref() != Some("k");
        out.push(Figure {
            text: c.get(0).unwrap().as_str().trim().to_owned(),
            value,
            money,
        });
    }
    out
}

/// The numeric fields of a JSON value (numbers, and strings that are one: amounts travel as
/// decimal strings), grouped by the object that holds them: the records derivations may combine.
pub fn context_groups(value: &Value, into: &mut Vec<Vec<f64>>) {
    let numeric = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match value {
        Value::Array(items) => {
            let here: Vec<f64> = items.iter().filter_map(numeric).collect();
            if !here.is_empty() {
                into.push(here);
            }
            items.iter().for_each(|v| context_groups(v, into));
        }
        Value::Object(map) => {
            let here: Vec<f64> = map.values().filter_map(numeric).collect();
            if !here.is_empty() {
                into.push(here);
            }
            map.values().for_each(|v| context_groups(v, into));
        }
        _ => {}
    }
}

/// Close enough: within 1% (short forms round), or equal after rounding to one decimal.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.01 * a.abs().max(b.abs()) || (a * 10.0).round() == (b * 10.0).round()
}

/// The figures of `answer` that the context does not support: not one of `context` (every
/// figure the data holds) and no derivation of two figures of one of `groups` (the records).
/// Small whole numbers (≤ 31: days, counts, list positions) are not checked, unless they are
/// money or percentages.
pub fn unsupported(answer: &str, context: &[f64], groups: &[Vec<f64>]) -> Vec<Figure> {
    let supported = |v: f64| {
        if context.iter().any(|c| close(*c, v)) {
            return true;
        }
        for group in groups {
            for a in group {
                for b in group {
                    if close(a - b, v) || close((a - b).abs(), v) {
                        return true;
                    }
                    if *b != 0.0
                        && (close(a / b * 100.0, v)
                            || close((a - b) / b * 100.0, v)
                            || close(((a - b) / b * 100.0).abs(), v))
                    {
                        return true;
                    }
                }
            }
        }
        false
    };
    figures(answer)
        .into_iter()
        .filter(|f| {
            f.value.fract() != 0.0 || f.value.abs() > 31.0 || f.money || f.text.ends_with('%')
        })
        .filter(|f| !supported(f.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_the_way_people_write_them() {
        let f = figures("Omzet Rp 1,25 M (naik 7,9%), 625,8 jt bulan lalu, stok 2.500 PCS, SO-202412-0002 tgl 28-11-2026");
        let values: Vec<f64> = f.iter().map(|f| f.value).collect();
        assert_eq!(values, vec![1.25e9, 7.9, 625.8e6, 2500.0]);
        assert!(f[0].money && !f[1].money && f[2].money && !f[3].money);
        assert_eq!(figures("Rp 1.250.000.000")[0].value, 1.25e9);
        assert_eq!(figures("IDR 1,250,000")[0].value, 1.25e6);
    }

    #[test]
    fn supported_and_derived_figures_pass_invented_ones_do_not() {
        let context = [697_333_225.0, 749_731_852.5, 70.0, 71.0];
        let good = "Omzet bulan ini Rp 697.333.225 (Rp 697,3 jt), turun 7% dari Rp 749,7 jt; selisih Rp 52,4 jt. 70 order.";
        assert!(
            unsupported(good, &context, &[context.to_vec()]).is_empty(),
            "{:?}",
            unsupported(good, &context, &[context.to_vec()])
        );
        let bad = "Omzet bulan ini Rp 812 jt, naik 12%.";
        let flagged = unsupported(bad, &context, &[context.to_vec()]);
        assert_eq!(flagged.len(), 2, "{flagged:?}");
        assert!(flagged[0].money);
    }

    #[test]
    fn numeric_fields_are_collected_by_record_and_names_support_nothing() {
        let mut out = Vec::new();
        context_groups(
            &serde_json::json!({"a": "697333225.00", "b": [1, 2.5], "c": "Rp 1,2 M",
                                "d": {"name": "PT 2000 Jaya", "x": 7}}),
            &mut out,
        );
        assert_eq!(out, vec![vec![697_333_225.0], vec![1.0, 2.5], vec![7.0]]);
    }

    #[test]
    fn adversarial_figures_are_caught() {
        // Money in every form.
        for text in [
            "9.876.543.210 rupiah",
            "9.876.543.210 IDR",
            "IDR 9.876.543.210",
        ] {
            let f = figures(text);
            assert!(f[0].money && f[0].value == 9_876_543_210.0, "{text}: {f:?}");
        }
        // A number of a name is not a figure of the answer either.
        assert!(figures("Motor DC 12V").is_empty());
        // A hundred unrelated records (1e6·i² + 37): a difference across records is not
        // support, the same difference within one record is.
        let v = |i: u32| 1_000_000.0 * f64::from(i * i) + 37.0;
        let groups: Vec<Vec<f64>> = (0..100).map(|i| vec![v(i)]).collect();
        let context: Vec<f64> = groups.iter().flatten().copied().collect();
        let invented = "Selisihnya Rp 91.000.000.";
        assert_eq!(unsupported(invented, &context, &groups).len(), 1);
        let record = vec![vec![v(10), v(3)]];
        assert!(unsupported(invented, &context, &record).is_empty());
    }
}
