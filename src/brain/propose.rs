//! Help from the LLM for a figure question the rules cannot map — never SQL from it: the LLM is
//! asked for a spec as JSON constrained to the catalogue (measure names and the allowed values
//! are in the prompt, `prompts/spec.j2`), and what it proposes is checked strictly here before
//! anything runs: known measures of one relation, cuts and filters the relation has, filter
//! values from the masters and the catalogue's value lists only, sane dates.

use std::collections::BTreeSet;

use chrono::{Duration, NaiveDate};
use minijinja::{context, Environment};
use serde::Deserialize;

use super::catalog::Catalog;
use super::period::{Period, Span};
use super::understand::WORDS;
use crate::llm::ChatMessage;
use crate::metrics::catalogue::CATALOGUE;
use crate::metrics::compile::{MAX_MEASURES, MAX_TOP};
use crate::metrics::spec::{Filter, Group, Spec, Top};

const TEMPLATE: &str = include_str!("../../prompts/spec.j2");

/// The age buckets of receivables and payables, as the catalogue names them.
const AGE_BUCKETS: [&str; 5] = ["not due", "1-30", "31-60", "61-90", ">90"];

/// What the LLM may propose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Proposal {
    #[serde(default)]
    unsupported: bool,
    #[serde(default)]
    measures: Vec<String>,
    #[serde(default)]
    group_by: Option<Group>,
    #[serde(default)]
    filters: Vec<Filter>,
    #[serde(default)]
    period: Option<Dates>,
    #[serde(default)]
    compare: Option<Dates>,
    #[serde(default)]
    top: Option<Top>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dates {
    from: NaiveDate,
    to: NaiveDate,
}

/// The values a filter on `dim` may take: master codes, status values, the catalogue's lists.
fn allowed_values(dim: &str, masters: &Catalog) -> Option<BTreeSet<String>> {
    use super::catalog::MasterKind::*;
    let kind = match dim {
        "customer" => Some(Customer),
        "item" => Some(Item),
        "vendor" => Some(Vendor),
        "machine" => Some(Machine),
        "warehouse" => Some(Warehouse),
        _ => None,
    };
    if let Some(kind) = kind {
        return Some(
            masters
                .entries()
                .iter()
                .filter(|e| e.kind == kind)
                .map(|e| e.code.clone())
                .collect(),
        );
    }
    match dim {
        "status" => Some(
            CATALOGUE
                .statuses
                .values()
                .flat_map(|g| g.values())
                .flat_map(|g| g.values.iter().cloned())
                .collect(),
        ),
        "age" => Some(AGE_BUCKETS.iter().map(|s| (*s).to_owned()).collect()),
        d => WORDS
            .values(d)
            .map(|v| v.into_iter().map(str::to_owned).collect()),
    }
}

/// The messages asking for a spec of `question`.
pub fn request(question: &str, masters: &Catalog, today: NaiveDate) -> Vec<ChatMessage> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    let env = ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.add_template("spec", TEMPLATE)
            .expect("prompts/spec.j2 is valid");
        env
    });
    let measures: Vec<_> = CATALOGUE
        .measures
        .iter()
        .map(|(name, m)| {
            let view = CATALOGUE.view(&[name]).expect("a relation");
            let mut dims: Vec<&str> = view
                .relations
                .iter()
                .flat_map(|(_, r)| r.dims.keys().map(String::as_str))
                .collect();
            dims.sort_unstable();
            dims.dedup();
            context! {
                name => name,
                label => m.label.en,
                description => m.description,
                relation => view.names().collect::<Vec<_>>().join(" or "),
                dims => dims.join(", "),
            }
        })
        .collect();
    let values: Vec<_> = CATALOGUE
        .dimensions
        .keys()
        .filter_map(|d| {
            allowed_values(d, masters).map(|v| {
                context! { dim => d, values => v.into_iter().collect::<Vec<_>>().join(", ") }
            })
        })
        .collect();
    let system = env
        .get_template("spec")
        .expect("spec template")
        .render(context! { today => today.to_string(), measures, values })
        .expect("the spec prompt renders");
    vec![
        ChatMessage::new("system", system),
        ChatMessage::new("user", question),
    ]
}

/// Why a proposal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the LLM found it unsupported")]
    Unsupported,
    #[error("not a JSON spec: {0}")]
    NotJson(String),
    #[error("unknown measure {0:?}")]
    UnknownMeasure(String),
    #[error("{0}")]
    Invalid(String),
}

/// The JSON object `content` is: the whole reply, or one fenced block at its end (models like
/// to say a word first). Anything after the object refuses it.
fn json_object(content: &str) -> Option<&str> {
    let content = content.trim();
    let body = match content.find("```") {
        Some(open) => {
            let inner = &content[open + 3..];
            let inner = inner.strip_prefix("json").unwrap_or(inner);
            inner.strip_suffix("```")?.trim()
        }
        None => content,
    };
    (body.starts_with('{') && body.ends_with('}')).then_some(body)
}

/// Checks what the LLM proposed and turns it into a spec, or says why not.
pub fn accept(content: &str, masters: &Catalog, today: NaiveDate) -> Result<Spec, Refused> {
    let json = json_object(content).ok_or_else(|| Refused::NotJson(clip(content)))?;
    let p: Proposal = serde_json::from_str(json).map_err(|e| Refused::NotJson(e.to_string()))?;
    if p.unsupported {
        return Err(Refused::Unsupported);
    }
    if p.measures.is_empty() || p.measures.len() > MAX_MEASURES {
        return Err(Refused::Invalid("1 to 3 measures".into()));
    }
    for name in &p.measures {
        CATALOGUE
            .measure(name)
            .ok_or_else(|| Refused::UnknownMeasure(clip(name)))?;
    }
    let rel = CATALOGUE
        .view(&p.measures)
        .ok_or_else(|| Refused::Invalid("measures no relation gives together".into()))?;
    if let Some(Group::Dim(d)) = &p.group_by {
        if !rel.has_dim(d) {
            return Err(Refused::Invalid(format!("no cut by {}", clip(d))));
        }
    }
    for f in &p.filters {
        match f {
            Filter::Is { dim, values } => {
                if !rel.has_dim(dim) {
                    return Err(Refused::Invalid(format!("no filter on {}", clip(dim))));
                }
                let allowed = allowed_values(dim, masters)
                    .ok_or_else(|| Refused::Invalid(format!("{} takes no values", clip(dim))))?;
                if values.is_empty() || values.iter().any(|v| !allowed.contains(v)) {
                    return Err(Refused::Invalid(format!(
                        "a value of {} is not known",
                        clip(dim)
                    )));
                }
            }
            Filter::Above { attr, value } | Filter::Below { attr, value } => {
                if !rel.has_attribute(attr) || !value.is_finite() || !(0.0..=3650.0).contains(value)
                {
                    return Err(Refused::Invalid(format!("no threshold on {}", clip(attr))));
                }
            }
        }
    }
    if let Some(t) = p.top {
        if t.n == 0 || t.n > MAX_TOP || !matches!(p.group_by, Some(Group::Dim(_))) {
            return Err(Refused::Invalid(
                "top N needs 1 to 50 and a dimension".into(),
            ));
        }
    }
    let window = |d: &Dates| -> Result<_, Refused> {
        let earliest = today - Duration::days(3660);
        let latest = today + Duration::days(370);
        if d.from >= d.to || d.from < earliest || d.to > latest {
            return Err(Refused::Invalid("a period out of range".into()));
        }
        Ok(Period {
            from: d.from,
            to: d.to,
            span: Span::Days,
            name: None,
        }
        .window())
    };
    let mut spec = Spec {
        measures: p.measures,
        group_by: p.group_by,
        filters: p.filters,
        period: p.period.as_ref().map(window).transpose()?,
        compare: p.compare.as_ref().map(window).transpose()?,
        top: p.top,
    };
    // As for the rules: a flow with no period named answers month to date.
    if spec.compare.is_none() && crate::metrics::compile::needs_default_period(&CATALOGUE, &spec) {
        spec.period = Some(super::period::this_month(today).to_date(today).window());
    }
    Ok(spec)
}

/// A proposal's text, shortened for a log line.
fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
    }

    #[test]
    fn a_good_proposal_becomes_a_spec() {
        let masters = Catalog::blueprint_sample();
        let spec = accept(
            "```json\n{\"measures\": [\"revenue\"], \"group_by\": {\"dim\": \"customer\"}, \"filters\": [{\"is\": {\"dim\": \"segment\", \"values\": [\"VIP\"]}}], \"period\": {\"from\": \"2026-11-01\", \"to\": \"2026-12-01\"}}\n```",
            &masters,
            today(),
        )
        .unwrap();
        assert_eq!(spec.measures, vec!["revenue"]);
        assert_eq!(spec.period.unwrap().label.id, "November 2026");
    }

    #[test]
    fn hostile_proposals_are_refused() {
        let masters = Catalog::blueprint_sample();
        for (content, why) in [
            ("{\"measures\": [\"salary\"]}", "unknown measure"),
            ("{\"measures\": [\"revenue; drop table t_so\"]}", "injected measure"),
            ("{\"measures\": [\"revenue\"], \"filters\": [{\"is\": {\"dim\": \"customer\", \"values\": [\"CUST-001' or '1'='1\"]}}]}", "injected value"),
            ("{\"measures\": [\"revenue\"], \"group_by\": {\"dim\": \"machine\"}}", "a cut the relation lacks"),
            ("{\"measures\": [\"revenue\"], \"sql\": \"select 1\"}", "an unknown key"),
            ("{\"measures\": [\"revenue\", \"downtime\"]}", "two relations"),
            ("{\"measures\": [\"revenue\"], \"period\": {\"from\": \"1990-01-01\", \"to\": \"2026-01-01\"}}", "a period out of range"),
            ("{\"measures\": [\"receivables_open\"], \"filters\": [{\"above\": {\"attr\": \"amt\", \"value\": 1}}]}", "an unknown attribute"),
            ("{\"unsupported\": true}", "unsupported"),
            ("I think revenue was high", "no JSON"),
            ("{\"measures\": [\"revenue\"]}; drop table t_so; --", "trailing text"),
        ] {
            assert!(accept(content, &masters, today()).is_err(), "{why}: {content}");
        }
    }
}
