//! Result rows → the answer, deterministically, per shape, in the asker's language: a figure
//! (with its comparison and change), a breakdown, a ranking or a trend; rupiah the Indonesian
//! way. [`data`] gives the same rows as named fields for the LLM and for grounding.

use chrono::NaiveDate;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::catalogue::{Catalogue, Kind, Label, Measure, Unit};
use super::format::{number, percent, rupiah_short};
use super::run::{Row, Rows};
use super::spec::{Filter, Grain, Group, Shape, Spec};
use crate::texts::Lang;

/// Lines a breakdown or trend shows before "and N more".
const MAX_LINES: usize = 15;

/// Names a filter value (a code) for the answer; `None` shows the value itself.
pub type NameOf<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How the spec was understood, in words: "omzet per customer, November 2026".
pub fn describe(catalogue: &Catalogue, spec: &Spec, lang: Lang, name_of: NameOf<'_>) -> String {
    let measures: Vec<&str> = spec
        .measures
        .iter()
        .filter_map(|m| catalogue.measure(m))
        .map(|m| m.label.get(lang))
        .collect();
    let mut text = join_and(&measures, lang);
    match &spec.group_by {
        Some(Group::Dim(d)) => {
            if let Some(dim) = catalogue.dimension(d) {
                let top = spec.top.map(|t| match (lang, t.ascending) {
                    (Lang::Id, false) => format!("{} teratas", t.n),
                    (Lang::Id, true) => format!("{} terbawah", t.n),
                    (Lang::En, false) => format!("top {}", t.n),
                    (Lang::En, true) => format!("bottom {}", t.n),
                });
                let per = match lang {
                    Lang::Id => "per",
                    Lang::En => "by",
                };
                text = match top {
                    Some(top) => format!("{text}, {top} {per} {}", dim.label.get(lang)),
                    None => format!("{text} {per} {}", dim.label.get(lang)),
                };
            }
        }
        Some(Group::Time(g)) => {
            let grain = match (lang, g) {
                (Lang::Id, Grain::Day) => "per hari",
                (Lang::Id, Grain::Week) => "per minggu",
                (Lang::Id, Grain::Month) => "per bulan",
                (Lang::Id, Grain::Quarter) => "per kuartal",
                (Lang::Id, Grain::Year) => "per tahun",
                (Lang::En, Grain::Day) => "by day",
                (Lang::En, Grain::Week) => "by week",
                (Lang::En, Grain::Month) => "by month",
                (Lang::En, Grain::Quarter) => "by quarter",
                (Lang::En, Grain::Year) => "by year",
            };
            text = format!("{text} {grain}");
        }
        None => {}
    }
    for f in &spec.filters {
        text.push_str(&format!(", {}", filter_words(catalogue, f, lang, name_of)));
    }
    let time_label = spec
        .measures
        .first()
        .and_then(|m| catalogue.measure(m))
        .and_then(|m| catalogue.relation_of(m).time_label.as_ref());
    let dated = |l: &str| match time_label {
        Some(t) => format!("{} {l}", t.get(lang)),
        None => l.to_owned(),
    };
    if let Some(p) = &spec.period {
        text.push_str(&format!(", {}", dated(p.label.get(lang))));
    }
    if let Some(c) = &spec.compare {
        let vs = match lang {
            Lang::Id => "dibanding",
            Lang::En => "compared with",
        };
        text.push_str(&format!(" {vs} {}", dated(c.label.get(lang))));
    }
    text
}

fn filter_words(catalogue: &Catalogue, f: &Filter, lang: Lang, name_of: NameOf<'_>) -> String {
    match f {
        Filter::Is { dim, values } => {
            let names: Vec<String> = values
                .iter()
                .map(|v| name_of(v).unwrap_or_else(|| v.clone()))
                .collect();
            let dim = catalogue
                .dimension(dim)
                .map(|d| d.label.get(lang))
                .unwrap_or(dim);
            format!("{dim} {}", names.join("/"))
        }
        Filter::Above { attr, value } | Filter::Below { attr, value } => {
            let above = matches!(f, Filter::Above { .. });
            let n = number(Decimal::try_from(*value).unwrap_or_default());
            match (attr.as_str(), lang, above) {
                ("days_late", Lang::Id, true) => format!("terlambat lebih dari {n} hari"),
                ("days_late", Lang::Id, false) => format!("terlambat kurang dari {n} hari"),
                ("days_late", Lang::En, true) => format!("more than {n} days late"),
                ("days_late", Lang::En, false) => format!("less than {n} days late"),
                (a, _, true) => format!("{a} > {n}"),
                (a, _, false) => format!("{a} < {n}"),
            }
        }
    }
}

fn join_and(parts: &[&str], lang: Lang) -> String {
    match parts {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => {
            let and = match lang {
                Lang::Id => "dan",
                Lang::En => "and",
            };
            format!("{} {and} {last}", init.join(", "))
        }
    }
}

/// A value in its unit; nothing recorded (a sum over no rows, a rate over nothing) is said so,
/// not shown as zero.
pub fn value(m: &Measure, v: Option<Decimal>, lang: Lang) -> String {
    let Some(v) = v else {
        return match lang {
            Lang::Id => "tidak ada data".to_owned(),
            Lang::En => "no data".to_owned(),
        };
    };
    match m.unit {
        Unit::Money => rupiah_short(v),
        Unit::Quantity | Unit::Count => number(v.round_dp(2)),
        Unit::Percent => percent(v.to_f64().unwrap_or(0.0)),
        Unit::Score => number(v.round_dp(1)),
        Unit::Minutes => match lang {
            Lang::Id => format!("{} menit", number(v.round())),
            Lang::En => format!("{} min", number(v.round())),
        },
    }
}

/// The change from `before` to `now`: percent, or points for a percentage.
pub(crate) fn change(
    m: &Measure,
    now: Option<Decimal>,
    before: Option<Decimal>,
    lang: Lang,
) -> String {
    let (Some(now), Some(before)) = (now, before) else {
        return "—".to_owned();
    };
    let (now, before) = (now.to_f64().unwrap_or(0.0), before.to_f64().unwrap_or(0.0));
    if matches!(m.unit, Unit::Percent | Unit::Score) {
        let d = now - before;
        let pts = match lang {
            Lang::Id => "poin",
            Lang::En => "pts",
        };
        return format!(
            "{}{} {pts}",
            if d >= 0.0 { "+" } else { "" },
            number(Decimal::try_from(d).unwrap_or_default().round_dp(1))
        );
    }
    if before == 0.0 {
        return match lang {
            Lang::Id => "baru (sebelumnya 0)".to_owned(),
            Lang::En => "new (was 0)".to_owned(),
        };
    }
    let pct = (now - before) / before.abs() * 100.0;
    format!("{}{}", if pct >= 0.0 { "+" } else { "" }, percent(pct))
}

/// The name of a trend bucket starting on `key` (an ISO date).
pub(crate) fn bucket(key: &str, grain: Grain, lang: Lang) -> String {
    let Ok(d) = NaiveDate::parse_from_str(key, "%Y-%m-%d") else {
        return key.to_owned();
    };
    use chrono::Datelike;
    let m = crate::texts::month_name(lang, d.month0(), true);
    match grain {
        Grain::Day => format!("{} {m} {}", d.day(), d.year()),
        Grain::Week => match lang {
            Lang::Id => format!("minggu {} {m}", d.day()),
            Lang::En => format!("week of {m} {}", d.day()),
        },
        Grain::Month => format!("{m} {}", d.year()),
        Grain::Quarter => format!("Q{} {}", d.month0() / 3 + 1, d.year()),
        Grain::Year => d.year().to_string(),
    }
}

/// The answer to `spec` from `rows`.
pub fn render(
    catalogue: &Catalogue,
    spec: &Spec,
    rows: &Rows,
    lang: Lang,
    name_of: NameOf<'_>,
) -> String {
    let measures: Vec<&Measure> = spec
        .measures
        .iter()
        .filter_map(|m| catalogue.measure(m))
        .collect();
    let title = describe(catalogue, spec, lang, name_of);
    let title = cap(&title);
    let current: Vec<&Row> = rows.rows.iter().filter(|r| r.current).collect();
    let previous = |key: &Option<String>| {
        rows.rows
            .iter()
            .find(|r| !r.current && &r.key == key)
            .map(|r| r.values.clone())
    };
    let values_of = |r: Option<&Row>| -> Vec<Option<Decimal>> {
        r.map(|r| r.values.clone())
            .unwrap_or_else(|| vec![None; measures.len()])
    };
    let mut out = String::new();
    match spec.shape() {
        Shape::Figure => {
            let now = values_of(current.first().copied());
            match (&spec.period, &spec.compare) {
                (Some(p), Some(c)) => {
                    // The title names what; each line names its period.
                    let what = describe(
                        catalogue,
                        &Spec {
                            period: None,
                            compare: None,
                            ..spec.clone()
                        },
                        lang,
                        name_of,
                    );
                    out.push_str(&format!("📊 {}\n", cap(&what)));
                    let before = previous(&None).unwrap_or_else(|| vec![None; measures.len()]);
                    let change_word = match lang {
                        Lang::Id => "Perubahan",
                        Lang::En => "Change",
                    };
                    for (i, m) in measures.iter().enumerate() {
                        let head = if measures.len() > 1 {
                            format!("{}\n", cap(m.label.get(lang)))
                        } else {
                            String::new()
                        };
                        out.push_str(&format!(
                            "{head}• {}: {}\n• {}: {}\n• {change_word}: {}\n",
                            cap(p.label.get(lang)),
                            value(m, now[i], lang),
                            cap(c.label.get(lang)),
                            value(m, before[i], lang),
                            change(m, now[i], before[i], lang)
                        ));
                    }
                }
                _ => {
                    out.push_str(&format!("📊 {title}\n"));
                    for (i, m) in measures.iter().enumerate() {
                        out.push_str(&format!(
                            "• {}: {}\n",
                            cap(m.label.get(lang)),
                            value(m, now[i], lang)
                        ));
                    }
                }
            }
        }
        Shape::Breakdown | Shape::Ranking | Shape::Trend => {
            out.push_str(&format!("📊 {title}\n"));
            if current.is_empty() {
                out.push_str(match lang {
                    Lang::Id => "Tidak ada data untuk itu.",
                    Lang::En => "There is no data for that.",
                });
                return out;
            }
            if measures.len() > 1 {
                let names: Vec<String> = measures.iter().map(|m| cap(m.label.get(lang))).collect();
                out.push_str(&format!("({})\n", names.join(" · ")));
            }
            let mut shown: Vec<&Row> = current.clone();
            if let (Shape::Ranking, Some(top)) = (spec.shape(), spec.top) {
                shown.truncate(top.n as usize);
            }
            let more = shown.len().saturating_sub(MAX_LINES);
            shown.truncate(MAX_LINES);
            for (n, r) in shown.iter().enumerate() {
                let name = match &spec.group_by {
                    Some(Group::Time(g)) => bucket(r.key.as_deref().unwrap_or("-"), *g, lang),
                    _ => r
                        .label
                        .clone()
                        .unwrap_or_else(|| none_label(lang).to_owned()),
                };
                let figures: Vec<String> = measures
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let v = value(m, r.values[i], lang);
                        match spec.compare.as_ref().map(|_| previous(&r.key)) {
                            Some(b) => {
                                let b = b.map(|b| b[i]).unwrap_or(None);
                                format!(
                                    "{v} (vs {}, {})",
                                    value(m, b, lang),
                                    change(m, r.values[i], b, lang)
                                )
                            }
                            None => v,
                        }
                    })
                    .collect();
                let lead = if spec.shape() == Shape::Ranking {
                    format!("{}.", n + 1)
                } else {
                    "•".to_owned()
                };
                out.push_str(&format!("{lead} {name}: {}\n", figures.join(" · ")));
            }
            if more > 0 || rows.truncated {
                out.push_str(&match lang {
                    Lang::Id => "… dan lainnya.\n".to_owned(),
                    Lang::En => "… and more.\n".to_owned(),
                });
            }
        }
    }
    if let Some(note) = snapshot_by_time(catalogue, spec, lang) {
        out.push_str(&note);
    } else if measures.iter().any(|m| m.kind == Kind::Snapshot) && spec.period.is_none() {
        out.push_str(match lang {
            Lang::Id => "(posisi saat ini)",
            Lang::En => "(as it stands now)",
        });
    }
    out.trim_end().to_owned()
}

/// For a state measure (open receivables, stock) cut by time: the measure, and the date its
/// buckets group by ("jatuh tempo"; none when the relation names none). They group what stands
/// now by its date, they are not its history, which the warehouse does not keep.
pub(crate) fn state_by_time<'c>(
    catalogue: &'c Catalogue,
    spec: &Spec,
) -> Option<(&'c Measure, Option<&'c Label>)> {
    let measure = spec.measures.first().and_then(|m| catalogue.measure(m))?;
    if measure.kind != Kind::Snapshot || !matches!(spec.group_by, Some(Group::Time(_))) {
        return None;
    }
    Some((measure, catalogue.relation_of(measure).time_label.as_ref()))
}

/// What a [`state_by_time`] answer says of itself; "tren piutang overdue" is answered this way.
pub(crate) fn snapshot_by_time(catalogue: &Catalogue, spec: &Spec, lang: Lang) -> Option<String> {
    let (measure, dated) = state_by_time(catalogue, spec)?;
    let what = measure.label.get(lang);
    Some(match (lang, dated.map(|d| d.get(lang))) {
        (Lang::Id, Some(d)) => format!(
            "(Posisi saat ini menurut tanggal {d}nya, bukan riwayat: riwayat {what} belum tersimpan.)"
        ),
        (Lang::Id, None) => {
            format!("(Posisi saat ini, bukan riwayat: riwayat {what} belum tersimpan.)")
        }
        (Lang::En, Some(d)) => format!(
            "(As it stands now, by {d} date; not a history: the history of {what} is not kept yet.)"
        ),
        (Lang::En, None) => {
            format!("(As it stands now; not a history: the history of {what} is not kept yet.)")
        }
    })
}

pub(crate) fn none_label(lang: Lang) -> &'static str {
    match lang {
        Lang::Id => "(tanpa keterangan)",
        Lang::En => "(none)",
    }
}

pub(crate) fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The rows as named fields for the LLM's prompt and for grounding: each figure under the
/// measure's name, the group under `group`, the period under `period`.
pub fn data(catalogue: &Catalogue, spec: &Spec, rows: &Rows) -> Value {
    let names: Vec<&str> = spec.measures.iter().map(String::as_str).collect();
    let items: Vec<Value> = rows
        .rows
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            if let Some(l) = &r.label {
                o.insert("group".into(), json!(l));
            }
            let period = if r.current {
                spec.period.as_ref()
            } else {
                spec.compare.as_ref()
            };
            if let Some(p) = period {
                o.insert("period".into(), json!(p.label.en));
            }
            for (i, n) in names.iter().enumerate() {
                let unit = catalogue.measure(n).map(|m| m.unit);
                let v = r.values[i].map(|v| {
                    let v = v.round_dp(2);
                    json!(v.to_f64().unwrap_or(0.0))
                });
                o.insert((*n).to_owned(), v.unwrap_or(Value::Null));
                if let Some(u) = unit {
                    o.insert(format!("{n}_unit"), json!(u));
                }
            }
            Value::Object(o)
        })
        .collect();
    json!({ "rows": items, "truncated": rows.truncated })
}
