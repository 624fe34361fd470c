//! A question → a metrics [`Spec`], by rules over reviewed words: the catalogue's synonyms
//! (`metrics/catalogue.toml`) and the shaping words (`metrics/questions.toml`), the masters the
//! classifier found, and the periods in the text. What the rules cannot express is said so
//! ([`Reading::NotYet`]), never answered as another question.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::NaiveDate;
use serde::Deserialize;

use super::catalog::{Catalog, MasterKind};
use super::intent::{Classification, Intent};
use super::period::{self, Period, Span};
use crate::metrics::catalogue::{Better, Catalogue, Label, Unit, CATALOGUE};
use crate::metrics::spec::{Filter, Grain, Group, Spec, Top};

const SHIPPED: &str = include_str!("../../metrics/questions.toml");

/// The shipped words, parsed once.
pub static WORDS: LazyLock<Words> =
    LazyLock::new(|| toml::from_str(SHIPPED).expect("metrics/questions.toml is valid"));

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Words {
    abbreviations: BTreeMap<String, String>,
    shape: Shape,
    grains: Grains,
    thresholds: Thresholds,
    upgrades: BTreeMap<String, Upgrade>,
    values: BTreeMap<String, BTreeMap<String, String>>,
    default_measure: BTreeMap<String, String>,
    averages: AsksFigure,
    who: BTreeMap<String, String>,
    companions: BTreeMap<String, Vec<String>>,
    asks_figure: AsksFigure,
    unmute: AsksFigure,
    chart: AsksFigure,
    not_yet: BTreeMap<String, Label>,
}

impl Words {
    /// The values a filter on `dim` takes from the named-value lists (segment, category …).
    pub fn values(&self, dim: &str) -> Option<Vec<&str>> {
        self.values.get(dim).map(|t| {
            let mut v: Vec<&str> = t.values().map(String::as_str).collect();
            v.sort_unstable();
            v.dedup();
            v
        })
    }

    /// Whether the question asks for a chart ("grafik", "chart"): a breakdown is then drawn too.
    pub fn asks_chart(&self, text: &str) -> bool {
        has(&normalise(text), &self.chart.words)
    }

    /// Whether the question asks to lift an alert mute.
    pub fn unmutes(&self, text: &str) -> bool {
        has(&normalise(text), &self.unmute.words)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shape {
    per: Vec<String>,
    cut_alone: Vec<String>,
    top: Vec<String>,
    bottom: Vec<String>,
    singular: Vec<String>,
    best: Vec<String>,
    worst: Vec<String>,
    compare: Vec<String>,
    trend: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grains {
    day: Vec<String>,
    week: Vec<String>,
    month: Vec<String>,
    quarter: Vec<String>,
    year: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Thresholds {
    above: Vec<String>,
    below: Vec<String>,
    days: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upgrade {
    to: String,
    words: Vec<String>,
}

/// A list of phrases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AsksFigure {
    words: Vec<String>,
}

/// What the rules made of a question.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A question the metrics layer answers.
    Metric(Box<Spec>),
    /// A figure the catalogue cannot give (yet): what was asked, and measures nearby;
    /// `rules_only` when the rules found no way to read it (the LLM may propose a spec), not
    /// when the catalogue is known to lack it.
    NotYet {
        asked: Label,
        nearby: Vec<String>,
        rules_only: bool,
    },
    /// More than one thing fits a name: the choices, by name.
    AskBack { name: String, choices: Vec<String> },
    /// Not a figure question: a lookup, a status, help, a greeting.
    Other,
}

/// The question as the rules read it: lower case, punctuation gone, shorthand spelled out,
/// padded with spaces so phrases match whole words as `" phrase "`.
pub fn normalise(text: &str) -> String {
    let lower = text.to_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '%' | '-' | '/' | '>' | '<') {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut out = String::with_capacity(cleaned.len() + 2);
    out.push(' ');
    for w in cleaned.split_whitespace() {
        // "q4", "2025" stay; "10%" splits so "%" is a word of its own.
        let (word, pct) = match w.strip_suffix('%') {
            Some(head) if !head.is_empty() => (head, true),
            _ => (w, false),
        };
        let word = WORDS.abbreviations.get(word).map_or(word, String::as_str);
        out.push_str(word);
        out.push(' ');
        if pct {
            out.push_str("% ");
        }
    }
    out
}

/// Where `phrase` occurs in `norm` as whole words: byte ranges of the phrase itself.
fn occurrences<'a>(norm: &'a str, phrase: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    let needle_len = phrase.len();
    norm.match_indices(phrase).filter_map(move |(i, _)| {
        let before = i.checked_sub(1).map(|b| norm.as_bytes()[b]);
        let after = norm.as_bytes().get(i + needle_len).copied();
        (before == Some(b' ') && after == Some(b' ')).then_some((i, i + needle_len))
    })
}

fn has(norm: &str, phrases: &[String]) -> bool {
    phrases
        .iter()
        .any(|p| occurrences(norm, p).next().is_some())
}

fn first_of<'p>(
    norm: &str,
    phrases: impl IntoIterator<Item = &'p String>,
) -> Option<(usize, usize, &'p str)> {
    phrases
        .into_iter()
        .filter_map(|p| occurrences(norm, p).next().map(|(a, b)| (a, b, p.as_str())))
        .min_by_key(|(a, b, _)| (*a, usize::MAX - b))
}

/// The measures named, in order, longest phrase first where they overlap.
fn measures_in(norm: &str, catalogue: &Catalogue) -> Vec<(usize, usize, String)> {
    let mut hits: Vec<(usize, usize, &str)> = Vec::new();
    for (name, m) in &catalogue.measures {
        for s in &m.synonyms {
            for (a, b) in occurrences(norm, s) {
                hits.push((a, b, name));
            }
        }
    }
    pick_longest(hits)
}

fn pick_longest(mut hits: Vec<(usize, usize, &str)>) -> Vec<(usize, usize, String)> {
    hits.sort_by_key(|(a, b, _)| (usize::MAX - (b - a), *a));
    let mut chosen: Vec<(usize, usize, String)> = Vec::new();
    for (a, b, name) in hits {
        if chosen.iter().all(|(x, y, _)| b <= *x || a >= *y) {
            chosen.push((a, b, name.to_owned()));
        }
    }
    chosen.sort_by_key(|(a, _, _)| *a);
    chosen
}

/// The dimensions named, in order.
fn dims_in(norm: &str, catalogue: &Catalogue) -> Vec<(usize, usize, String)> {
    let mut hits: Vec<(usize, usize, &str)> = Vec::new();
    for (name, d) in &catalogue.dimensions {
        for s in &d.synonyms {
            for (a, b) in occurrences(norm, s) {
                hits.push((a, b, name));
            }
        }
    }
    pick_longest(hits)
}

/// Whether `a` becomes `b` by one letter changed, added or dropped.
fn one_edit(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    match a.len() as isize - b.len() as isize {
        0 => a.iter().zip(&b).filter(|(x, y)| x != y).count() == 1,
        1 | -1 => {
            let (long, short) = if a.len() > b.len() {
                (&a, &b)
            } else {
                (&b, &a)
            };
            (0..long.len()).any(|skip| {
                long.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, c)| c)
                    .eq(short.iter())
            })
        }
        _ => false,
    }
}

/// A whole number right before `at` ("top 5", "5 customer").
fn number_before(norm: &str, at: usize) -> Option<u32> {
    norm[..at].split_whitespace().last()?.parse().ok()
}

/// A whole number right after `at` ("top 5 customer").
fn number_after(norm: &str, at: usize) -> Option<u32> {
    norm[at..].split_whitespace().next()?.parse().ok()
}

fn dim_of(kind: MasterKind) -> &'static str {
    match kind {
        MasterKind::Customer => "customer",
        MasterKind::Item => "item",
        MasterKind::Vendor => "vendor",
        MasterKind::Machine => "machine",
        MasterKind::Warehouse => "warehouse",
    }
}

/// Intents that look something up or report a state rather than ask for a figure: without a
/// figure word, a period or a cut they keep their own answers.
fn is_lookup(intent: Intent) -> bool {
    use Intent::*;
    matches!(
        intent,
        Help | OrderStatus
            | DeliveryStatus
            | PurchaseStatus
            | ProductionStatus
            | MachineHealth
            | Alerts
            | CustomerInsight
            | CashPosition
            | AlertMute
            | OtpCode
    )
}

/// Reads `text` (with its classification) into a spec, for `today`; `previous` is the asker's
/// previous question, whose spec a bare follow-up ("kalau bulan lalu?") takes over.
pub fn read(
    text: &str,
    c: &Classification,
    masters: &Catalog,
    today: NaiveDate,
    previous: Option<&str>,
) -> Reading {
    let catalogue = &*CATALOGUE;
    let words = &*WORDS;
    if !c.entities.documents.is_empty() || !c.entities.uuids.is_empty() {
        return Reading::Other;
    }
    if matches!(c.intent, Intent::OtpCode | Intent::AlertMute) {
        return Reading::Other;
    }
    let norm = normalise(text);
    if let Some((_, _, phrase)) = first_of(&norm, words.not_yet.keys()) {
        let asked = words.not_yet[phrase].clone();
        return Reading::NotYet {
            asked,
            nearby: nearby(&norm, catalogue),
            rules_only: false,
        };
    }
    let periods = period::find(&norm, today);
    let found = measures_in(&norm, catalogue);
    let mut names: Vec<String> = Vec::new();
    for (_, _, m) in &found {
        let mut m = m.clone();
        if let Some(up) = words.upgrades.get(&m) {
            if has(&norm, &up.words) {
                m = up.to.clone();
            }
        }
        if !names.contains(&m) {
            names.push(m);
        }
    }
    let ranked_words = has(&norm, &words.shape.top)
        || has(&norm, &words.shape.bottom)
        || has(&norm, &words.shape.best)
        || has(&norm, &words.shape.worst);
    let has_cut = has(&norm, &words.shape.per) || ranked_words || has(&norm, &words.shape.trend);
    if names.is_empty() && ranked_words {
        // "top 5 customer": ranked by the dimension's usual measure.
        if let Some(m) = dims_in(&norm, catalogue)
            .iter()
            .find_map(|(_, _, d)| words.default_measure.get(d))
        {
            names.push(m.clone());
        }
    }
    if names.is_empty() {
        // A bare follow-up takes the previous question's spec with what it names now.
        if c.follow_up || (c.intent == Intent::GeneralQuestion && !periods.is_empty()) {
            if let Some(prev) = previous {
                let before = read(
                    prev,
                    &super::intent::classify(prev, masters),
                    masters,
                    today,
                    None,
                );
                if let Reading::Metric(spec) = before {
                    return follow_up(*spec, c, &periods, today);
                }
            }
        }
        if has(&norm, &words.asks_figure.words) && !matches!(c.intent, Intent::Help) {
            if is_lookup(c.intent) && periods.is_empty() && !has_cut {
                return Reading::Other;
            }
            return Reading::NotYet {
                asked: asked_as(text),
                nearby: nearby(&norm, catalogue),
                rules_only: true,
            };
        }
        return Reading::Other;
    }
    // A cash question naming a cash figure ("saldo kas", "proyeksi kas") asks for that figure;
    // "posisi kas" keeps the cash-position answer.
    let names_cash = names.iter().any(|m| m.starts_with("cash_"));
    if is_lookup(c.intent)
        && !(c.intent == Intent::CashPosition && names_cash)
        && periods.is_empty()
        && !has_cut
        && !has(&norm, &words.asks_figure.words)
        && c.entities.masters.is_empty()
    {
        return Reading::Other;
    }
    if let [only] = names.as_slice() {
        if let Some(more) = words.companions.get(only) {
            names.extend(more.iter().cloned());
        }
    }
    // "rata-rata omzet per hari": an average the catalogue does not hold.
    if has(&norm, &words.averages.words)
        && !names.iter().any(|m| {
            let m = &catalogue.measures[m];
            matches!(m.unit, Unit::Percent | Unit::Score) || m.label.en.starts_with("average")
        })
    {
        return Reading::NotYet {
            asked: asked_as(text),
            nearby: nearby(&norm, catalogue),
            rules_only: false,
        };
    }
    // Measures that one relation can give together: the first decides, the others join it when
    // they can.
    let mut kept: Vec<String> = Vec::new();
    for m in names {
        let mut with = kept.clone();
        with.push(m);
        if catalogue.view(&with).is_some() {
            kept = with;
        }
    }
    let mut names = kept;
    names.truncate(crate::metrics::compile::MAX_MEASURES);
    let rel = catalogue
        .view(&names)
        .expect("the first measure has a relation");
    let first_label = catalogue.measures[&names[0]].label.clone();

    let mut spec = Spec {
        measures: names,
        group_by: None,
        filters: Vec::new(),
        period: None,
        compare: None,
        top: None,
    };

    // Filters: the masters named.
    let mut by_dim: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut seen_matched: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    // Words the measures took: a master the classifier found by correcting one of them
    // ("laba kotor" → "motor") is not named.
    let measure_words: Vec<&str> = found
        .iter()
        .flat_map(|(a, b, _)| norm[*a..*b].split_whitespace())
        .collect();
    let from_measure_word = |matched: &str| {
        matched.split_whitespace().any(|w| {
            occurrences(&norm, w).next().is_none() && measure_words.iter().any(|mw| one_edit(mw, w))
        })
    };
    for m in c
        .entities
        .masters
        .iter()
        .filter(|m| !from_measure_word(&m.matched))
    {
        seen_matched
            .entry(m.matched.as_str())
            .or_default()
            .push(m.name.clone().unwrap_or_else(|| m.code.clone()));
        let dim = dim_of(m.kind);
        let codes = by_dim.entry(dim).or_default();
        if !codes.contains(&m.code) {
            codes.push(m.code.clone());
        }
    }
    for (matched, choices) in &seen_matched {
        if choices.len() > 1 {
            return Reading::AskBack {
                name: (*matched).to_owned(),
                choices: choices.clone(),
            };
        }
    }
    for (dim, codes) in by_dim {
        if !rel.has_dim(dim) {
            return not_for(catalogue, &first_label, dim, &norm);
        }
        spec.filters.push(Filter::Is {
            dim: dim.to_owned(),
            values: codes,
        });
    }
    // Named values: segment, category, shift, maintenance type.
    for (dim, table) in &words.values {
        let mut values: Vec<String> = Vec::new();
        for (phrase, value) in table {
            if occurrences(&norm, phrase).next().is_some() && !values.contains(value) {
                values.push(value.clone());
            }
        }
        if !values.is_empty() {
            if !rel.has_dim(dim) {
                return not_for(catalogue, &first_label, dim, &norm);
            }
            spec.filters.push(Filter::Is {
                dim: dim.clone(),
                values,
            });
        }
    }
    // Status words of the relation.
    let mut status_named = false;
    if let Some(groups) = rel.names().find_map(|r| catalogue.statuses.get(r)) {
        // "belum selesai" is open, not "selesai": the longest status phrase wins.
        let mut hits: Vec<(usize, usize, &str)> = Vec::new();
        for (word, g) in groups {
            for syn in &g.synonyms {
                hits.extend(occurrences(&norm, syn).map(|(a, b)| (a, b, word.as_str())));
            }
        }
        let mut values: Vec<String> = Vec::new();
        for (_, _, word) in pick_longest(hits) {
            for v in &groups[&word].values {
                if !values.contains(v) {
                    values.push(v.clone());
                }
            }
        }
        if !values.is_empty() {
            status_named = true;
            spec.filters.push(Filter::Is {
                dim: "status".into(),
                values,
            });
        }
    }
    // Thresholds: "lebih dari 30 hari".
    for (phrases, above) in [
        (&words.thresholds.above, true),
        (&words.thresholds.below, false),
    ] {
        for p in phrases {
            for (_, end) in occurrences(&norm, p) {
                let mut rest = norm[end..].split_whitespace();
                let (Some(n), unit) =
                    (rest.next().and_then(|n| n.parse::<f64>().ok()), rest.next())
                else {
                    continue;
                };
                if !unit.is_some_and(|u| words.thresholds.days.iter().any(|d| d == u)) {
                    continue;
                }
                if !rel.has_attribute("days_late") {
                    return Reading::NotYet {
                        asked: asked_as(text),
                        nearby: nearby(&norm, catalogue),
                        rules_only: false,
                    };
                }
                let f = if above {
                    Filter::Above {
                        attr: "days_late".into(),
                        value: n,
                    }
                } else {
                    Filter::Below {
                        attr: "days_late".into(),
                        value: n,
                    }
                };
                if !spec.filters.contains(&f) {
                    spec.filters.push(f);
                }
            }
        }
    }

    // The cut: a time grain, or a dimension asked "per …", "top …", "… mana".
    let grain = [
        (&words.grains.day, Grain::Day),
        (&words.grains.week, Grain::Week),
        (&words.grains.month, Grain::Month),
        (&words.grains.quarter, Grain::Quarter),
        (&words.grains.year, Grain::Year),
    ]
    .into_iter()
    .find(|(w, _)| has(&norm, w))
    .map(|(_, g)| g);
    // "best"/"worst" are top or bottom by which way the measure is good.
    let lower_better = catalogue.measures[&spec.measures[0]].better == Better::Lower;
    let (good, bad) = (
        first_of(&norm, &words.shape.best),
        first_of(&norm, &words.shape.worst),
    );
    let (good_top, good_bottom) = if lower_better {
        (bad, good)
    } else {
        (good, bad)
    };
    let top_at = first_of(&norm, &words.shape.top).or(good_top);
    let bottom_at = first_of(&norm, &words.shape.bottom).or(good_bottom);
    let ranked = top_at.or(bottom_at);
    let dims = dims_in(&norm, catalogue);
    // Dimensions that are only filters (a master was named by a dimension word, e.g.
    // "customer PT ABC") are not cuts.
    let filtered: Vec<&str> = spec
        .filters
        .iter()
        .filter_map(|f| match f {
            Filter::Is { dim, .. } => Some(dim.as_str()),
            _ => None,
        })
        .collect();
    let asked_per = |at: usize| {
        let before = norm[..at].trim_end();
        words
            .shape
            .per
            .iter()
            .any(|p| before.ends_with(&format!(" {p}")))
    };
    let open_dims: Vec<&(usize, usize, String)> = dims
        .iter()
        .filter(|(_, _, d)| !filtered.contains(&d.as_str()))
        .collect();
    // "per customer" first; else, in a ranking or a "which …" question, the first dimension.
    let cut = open_dims
        .iter()
        .find(|(a, _, d)| asked_per(*a) || words.shape.cut_alone.contains(d))
        .or_else(|| {
            (ranked.is_some() || has(&norm, &words.shape.singular))
                .then(|| open_dims.first())
                .flatten()
        });
    if let Some(g) = grain {
        spec.group_by = Some(Group::Time(g));
    } else if let Some((_, _, d)) = cut {
        if !rel.has_dim(d) {
            return not_for(catalogue, &first_label, d, &norm);
        }
        spec.group_by = Some(Group::Dim(d.clone()));
    } else if has(&norm, &words.shape.trend) {
        spec.group_by = Some(Group::Time(Grain::Month));
    } else if has(&norm, &words.shape.singular) {
        // "piutang overdue siapa aja?": by the party the rows belong to.
        if let Some(d) = rel.names().find_map(|r| words.who.get(r)) {
            if !filtered.contains(&d.as_str()) {
                spec.group_by = Some(Group::Dim(d.clone()));
            }
        }
    }
    // Quantities of different items do not add up: broken down unless one is named.
    if spec.group_by.is_none() {
        if let Some(cut) = &catalogue.measures[&spec.measures[0]].cut {
            if !filtered.contains(&cut.as_str()) {
                spec.group_by = Some(Group::Dim(cut.clone()));
            }
        }
    }
    if let (Some((a, b, _)), Some(Group::Dim(_))) = (ranked, &spec.group_by) {
        let n = number_after(&norm, b)
            .or_else(|| number_before(&norm, a))
            .or_else(|| cut.and_then(|(ca, _, _)| number_before(&norm, *ca)));
        // "the worst machine" asks for one, "the top machines" for a few.
        let singular_noun = cut.is_some_and(|(ca, cb, d)| {
            let phrase = &norm[*ca..*cb];
            catalogue.dimensions[d]
                .synonyms
                .iter()
                .any(|s| *s == format!("{phrase}s"))
        });
        let n = n.unwrap_or(if has(&norm, &words.shape.singular) || singular_noun {
            1
        } else {
            5
        });
        let ascending = match (top_at, bottom_at) {
            (Some(t), Some(b)) => b.0 < t.0,
            (None, Some(_)) => true,
            _ => false,
        };
        spec.top = Some(Top {
            n: n.clamp(1, crate::metrics::compile::MAX_TOP),
            ascending,
        });
    }
    if ranked.is_some() && spec.group_by.is_none() {
        // "top" with nothing to rank by: which dimension is meant is not known.
        return Reading::NotYet {
            asked: asked_as(text),
            nearby: nearby(&norm, catalogue),
            rules_only: true,
        };
    }

    // The period and the comparison.
    let compare_asked = has(&norm, &words.shape.compare);
    let measure = &catalogue.measures[&spec.measures[0]];
    let flow = measure.kind == crate::metrics::catalogue::Kind::Flow;
    match periods.as_slice() {
        [] => {
            if let Some(Group::Time(g)) = &spec.group_by {
                spec.period = Some(trend_default(*g, today).window());
            } else if flow && !status_named {
                let month = period::this_month(today);
                if compare_asked {
                    let (cur, before) = period::previous(&month, today);
                    spec.period = Some(cur.window());
                    spec.compare = Some(before.window());
                } else {
                    spec.period = Some(month.to_date(today).window());
                }
            }
        }
        [(_, p)] => {
            if compare_asked && !matches!(spec.group_by, Some(Group::Time(_))) {
                let (cur, before) = period::previous(p, today);
                spec.period = Some(cur.window());
                spec.compare = Some(before.window());
            } else {
                // A running period of a flow holds nothing after today: say the days it covers.
                let p = if flow { p.to_date(today) } else { p.clone() };
                spec.period = Some(p.window());
            }
        }
        [(_, first), (_, second), ..] => {
            if matches!(spec.group_by, Some(Group::Time(_))) {
                // "dari Juni sampai November per bulan": one span from the first to the second.
                let p = Period {
                    from: first.from.min(second.from),
                    to: first.to.max(second.to),
                    span: Span::Days,
                    name: None,
                };
                spec.period = Some(p.window());
            } else {
                // "November 2025 vs November 2026": the later one is measured against the earlier.
                let (first, second) = if second.from > first.from {
                    (second, first)
                } else {
                    (first, second)
                };
                let (cur, before) = like_for_like(first, second, today);
                spec.period = Some(cur.window());
                spec.compare = Some(before.window());
            }
        }
    }
    Reading::Metric(Box::new(spec))
}

/// A trend without a period: the last six months, eight weeks, fourteen days, four quarters or
/// three years, the running one included.
fn trend_default(g: Grain, today: NaiveDate) -> Period {
    use chrono::{Datelike, Duration, Months};
    let day = Duration::days(1);
    let (from, span) = match g {
        Grain::Day => (today - Duration::days(13), Span::Days),
        Grain::Week => {
            let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
            (monday - Duration::weeks(7), Span::Days)
        }
        Grain::Month => (
            NaiveDate::from_ymd_opt(today.year(), today.month(), 1).expect("month")
                - Months::new(5),
            Span::Days,
        ),
        Grain::Quarter => {
            let q =
                NaiveDate::from_ymd_opt(today.year(), today.month0() / 3 * 3 + 1, 1).expect("q");
            (q - Months::new(9), Span::Days)
        }
        Grain::Year => (
            NaiveDate::from_ymd_opt(today.year() - 2, 1, 1).expect("year"),
            Span::Days,
        ),
    };
    Period {
        from,
        to: today + day,
        span,
        name: None,
    }
}

/// Two periods named ("bulan ini vs bulan lalu"): a running first one is cut at today and the
/// second cut to as many days, when both are the same kind of span.
fn like_for_like(first: &Period, second: &Period, today: NaiveDate) -> (Period, Period) {
    if !first.running(today) {
        return (first.clone(), second.clone());
    }
    let cur = first.to_date(today);
    let mut before = second.clone();
    if first.span == second.span && !second.running(today) {
        let elapsed = cur.to - cur.from;
        before.to = (second.from + elapsed).min(second.to);
        before.span = Span::Days;
    }
    (cur, before)
}

/// A follow-up: the previous spec with the new period and masters.
fn follow_up(
    mut spec: Spec,
    c: &Classification,
    periods: &[(std::ops::Range<usize>, Period)],
    today: NaiveDate,
) -> Reading {
    let catalogue = &*CATALOGUE;
    if let Some((_, p)) = periods.first() {
        if spec.compare.is_some() {
            let (cur, before) = period::previous(p, today);
            spec.period = Some(cur.window());
            spec.compare = Some(before.window());
        } else {
            spec.period = Some(p.window());
        }
    }
    let Some(rel) = catalogue.view(&spec.measures) else {
        return Reading::Other;
    };
    for m in &c.entities.masters {
        let dim = dim_of(m.kind);
        if !rel.has_dim(dim) {
            let label = catalogue.measures[&spec.measures[0]].label.clone();
            return not_for(catalogue, &label, dim, "");
        }
        spec.filters
            .retain(|f| !matches!(f, Filter::Is { dim: d, .. } if d == dim));
        spec.filters.push(Filter::Is {
            dim: dim.to_owned(),
            values: vec![m.code.clone()],
        });
    }
    Reading::Metric(Box::new(spec))
}

/// "<measure> per/for <dimension>" is not in the catalogue.
fn not_for(catalogue: &Catalogue, measure: &Label, dim: &str, norm: &str) -> Reading {
    let d = catalogue
        .dimension(dim)
        .map(|d| d.label.clone())
        .unwrap_or(Label {
            id: dim.to_owned(),
            en: dim.to_owned(),
        });
    Reading::NotYet {
        asked: Label {
            id: format!("{} menurut {}", measure.id, d.id),
            en: format!("{} by {}", measure.en, d.en),
        },
        nearby: nearby(norm, catalogue),
        rules_only: false,
    }
}

/// The question itself, shortened, as what was asked.
fn asked_as(text: &str) -> Label {
    let mut t: String = text.trim().chars().take(60).collect();
    if text.trim().chars().count() > 60 {
        t.push('…');
    }
    let quoted = format!("“{t}”");
    Label {
        id: quoted.clone(),
        en: quoted,
    }
}

/// Measures that share a word with the question (at most four); none = the caller's usual.
fn nearby(norm: &str, catalogue: &Catalogue) -> Vec<String> {
    // Words that ask ("berapa", "total") say nothing of the topic.
    let asking: Vec<&str> = WORDS
        .asks_figure
        .words
        .iter()
        .chain(&WORDS.averages.words)
        .flat_map(|w| w.split_whitespace())
        .collect();
    let words: Vec<&str> = norm
        .split_whitespace()
        .filter(|w| w.len() > 3 && !asking.contains(w))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for (name, m) in &catalogue.measures {
        let hit = m
            .synonyms
            .iter()
            .chain(std::iter::once(&m.label.id))
            .chain(std::iter::once(&m.label.en))
            .any(|s| s.split_whitespace().any(|sw| words.contains(&sw)));
        if hit && out.len() < 4 {
            out.push(name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::intent::classify;

    fn spec(text: &str) -> Spec {
        let masters = Catalog::blueprint_sample();
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        match read(text, &classify(text, &masters), &masters, today, None) {
            Reading::Metric(s) => *s,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn the_shipped_words_load() {
        assert!(!WORDS.shape.per.is_empty());
        for up in WORDS.upgrades.values() {
            assert!(CATALOGUE.measure(&up.to).is_some(), "{}", up.to);
        }
        for (m, _) in WORDS.upgrades.iter() {
            assert!(CATALOGUE.measure(m).is_some(), "{m}");
        }
        for (r, d) in &WORDS.who {
            assert!(
                CATALOGUE.relations[r].dims.contains_key(d),
                "{r} has no {d}"
            );
        }
        for (m, more) in &WORDS.companions {
            for c in std::iter::once(m).chain(more) {
                assert!(CATALOGUE.measure(c).is_some(), "{c}");
            }
        }
        for (d, m) in &WORDS.default_measure {
            let view = CATALOGUE.view(&[m]).expect("a catalogue measure");
            assert!(view.has_dim(d), "{m} cannot be cut by {d}");
        }
    }

    #[test]
    fn shapes_are_read() {
        let s = spec("top 3 customer omzet tahun ini");
        assert_eq!(s.measures, vec!["revenue"]);
        assert_eq!(s.group_by, Some(Group::Dim("customer".into())));
        assert_eq!(s.top.map(|t| t.n), Some(3));
        assert_eq!(
            s.period.unwrap().from,
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
        );

        let s = spec("revenue per month last 6 months");
        assert_eq!(s.group_by, Some(Group::Time(Grain::Month)));

        let s = spec("berapa order yang masih open");
        assert_eq!(s.measures, vec!["order_count"]);
        assert!(s.period.is_none(), "open orders from any time");

        let s = spec("piutang lebih dari 30 hari");
        assert!(s.filters.contains(&Filter::Above {
            attr: "days_late".into(),
            value: 30.0
        }));

        let s = spec("omzet bulan ini vs bulan lalu");
        let (p, c) = (s.period.unwrap(), s.compare.unwrap());
        assert_eq!(
            (p.from.to_string(), p.to.to_string()),
            ("2026-12-01".into(), "2026-12-03".into())
        );
        assert_eq!(
            (c.from.to_string(), c.to.to_string()),
            ("2026-11-01".into(), "2026-11-03".into())
        );
    }

    #[test]
    fn what_cannot_be_answered_is_said() {
        let masters = Catalog::blueprint_sample();
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        for text in [
            "berapa gaji operator bulan ini",
            "how long do deliveries take",
            "downtime PT Maju Jaya",
        ] {
            let r = read(text, &classify(text, &masters), &masters, today, None);
            assert!(matches!(r, Reading::NotYet { .. }), "{text}: {r:?}");
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::brain::intent::classify;
    use proptest::prelude::*;

    /// Words of the questions people ask, mixed with anything at all.
    fn question() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            3 => prop_oneof![
                Just("omzet"), Just("bulan"), Just("ini"), Just("lalu"), Just("revenue"),
                Just("per"), Just("customer"), Just("top"), Just("5"), Just("reject"),
                Just("rate"), Just("mesin"), Just("MCH-003"), Just("vs"), Just("minggu"),
                Just("2"), Just("tahun"), Just("piutang"), Just("overdue"), Just("stok"),
                Just("kode"), Just("123456"), Just("mute"), Just("alert"), Just("jam"),
                Just("?"), Just("berapa"), Just("tren"), Just("margin"), Just("sejak"),
            ].prop_map(str::to_owned),
            1 => ".{0,12}",
        ];
        proptest::collection::vec(word, 0..24).prop_map(|w| w.join(" "))
    }

    proptest! {
        #[test]
        fn any_text_is_classified_and_read_without_panicking(
            text in prop_oneof![question(), ".{0,300}"],
        ) {
            let masters = Catalog::blueprint_sample();
            let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
            let c = classify(&text, &masters);
            prop_assert!((0.0..=1.0).contains(&c.confidence), "{}", c.confidence);
            let _ = read(&text, &c, &masters, today, None);
            let again = classify(&format!("  {text}\n"), &masters);
            prop_assert_eq!(again.intent, c.intent, "surrounding blanks change nothing");
        }

        #[test]
        fn a_document_number_is_found_wherever_it_stands(
            before in question(), after in question(),
            kind in prop_oneof![Just("SO"), Just("PO"), Just("DO"), Just("WO")],
            month in 1u32..=12, seq in 1u32..=9999,
        ) {
            let number = format!("{kind}-2026{month:02}-{seq:04}");
            let text = format!("{before} {} {after}", number.to_lowercase());
            let c = classify(&text, &Catalog::blueprint_sample());
            prop_assert!(
                c.entities.otp.is_some()
                    || c.entities.documents.iter().any(|d| d.number == number),
                "{} not found in {:?}", number, text
            );
        }
    }
}
