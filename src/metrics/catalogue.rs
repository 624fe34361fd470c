//! The catalogue of measures and dimensions (`metrics/catalogue.toml`, compiled in): what each
//! figure means in SQL, its unit, who may see it and the words people use for it. Checked once
//! at load ([`Catalogue::load`]): a measure on an unknown relation, a dimension no relation
//! defines, a placeholder other than `{today}` and `{permissions}`, or a statement separator
//! stops the hub.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::texts::Lang;

/// The shipped catalogue.
const SHIPPED: &str = include_str!("../../metrics/catalogue.toml");

/// The shipped catalogue, parsed and checked once.
pub static CATALOGUE: LazyLock<Catalogue> =
    LazyLock::new(|| Catalogue::load(SHIPPED).expect("metrics/catalogue.toml is valid"));

/// What a figure counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Money,
    Quantity,
    Count,
    Percent,
    Minutes,
    /// A 0–100 score.
    Score,
}

/// How a period applies to a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Happens over time (revenue, output): month to date when no period is named.
    Flow,
    /// A state now (stock, open receivables): the period, when named, filters the time column.
    Snapshot,
}

/// Which way a measure is good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    #[default]
    Higher,
    Lower,
}

/// A name in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    pub id: String,
    pub en: String,
}

impl Label {
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::Id => &self.id,
            Lang::En => &self.en,
        }
    }
}

/// How a relation exposes a dimension: the value filters match, and the value answers show.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum DimExpr {
    Plain(String),
    Keyed { key: String, label: String },
}

impl DimExpr {
    pub fn key(&self) -> &str {
        match self {
            DimExpr::Plain(e) => e,
            DimExpr::Keyed { key, .. } => key,
        }
    }

    pub fn label(&self) -> &str {
        match self {
            DimExpr::Plain(e) => e,
            DimExpr::Keyed { label, .. } => label,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relation {
    pub from: String,
    /// Joins taken only when their alias is used: alias → `join … on …`, in order.
    #[serde(default)]
    pub joins: BTreeMap<String, String>,
    #[serde(rename = "where")]
    pub filter: String,
    /// The date column periods filter; none for a relation without history.
    #[serde(default)]
    pub time: Option<String>,
    /// What that date is, when it is not when things happened ("due").
    #[serde(default)]
    pub time_label: Option<Label>,
    #[serde(default)]
    pub dims: BTreeMap<String, DimExpr>,
    /// Numeric row attributes thresholds compare ("more than 30 days late").
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub label: Label,
    #[serde(default)]
    pub permissions: Vec<String>,
    pub synonyms: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub relation: String,
    pub label: Label,
    pub unit: Unit,
    pub kind: Kind,
    #[serde(skip_serializing)]
    pub expr: String,
    /// The same figure over other relations: relation → expression.
    #[serde(default, skip_serializing)]
    pub also: BTreeMap<String, String>,
    /// Which way is good, for "best" and "worst".
    #[serde(default)]
    pub better: Better,
    /// Always broken down by this dimension unless a question filters on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<String>,
    pub permissions: Vec<String>,
    pub synonyms: Vec<String>,
    pub description: String,
}

/// A status word ("open") and the status values it stands for on one relation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusGroup {
    pub values: Vec<String>,
    pub synonyms: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    pub relations: BTreeMap<String, Relation>,
    pub dimensions: BTreeMap<String, Dimension>,
    pub measures: BTreeMap<String, Measure>,
    /// Per relation: status word → values.
    #[serde(default)]
    pub statuses: BTreeMap<String, BTreeMap<String, StatusGroup>>,
}

impl Catalogue {
    /// Parses and checks a catalogue.
    pub fn load(text: &str) -> anyhow::Result<Catalogue> {
        let c: Catalogue = toml::from_str(text).context("parsing the metrics catalogue")?;
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> anyhow::Result<()> {
        for (name, r) in &self.relations {
            let mut sql: Vec<&str> = vec![&r.from, &r.filter];
            sql.extend(r.joins.values().map(String::as_str));
            sql.extend(r.time.as_deref());
            sql.extend(r.dims.values().flat_map(|d| [d.key(), d.label()]));
            sql.extend(r.attributes.values().map(String::as_str));
            for s in sql {
                check_sql(s).with_context(|| format!("relation {name}"))?;
            }
            for dim in r.dims.keys() {
                if !self.dimensions.contains_key(dim) {
                    bail!("relation {name}: dimension {dim} is not defined");
                }
            }
        }
        for (name, m) in &self.measures {
            check_sql(&m.expr).with_context(|| format!("measure {name}"))?;
            if !self.relations.contains_key(&m.relation) {
                bail!("measure {name}: relation {} is not defined", m.relation);
            }
            for (relation, expr) in &m.also {
                check_sql(expr).with_context(|| format!("measure {name} over {relation}"))?;
                if !self.relations.contains_key(relation) {
                    bail!("measure {name}: relation {relation} is not defined");
                }
            }
            if m.permissions.is_empty() {
                bail!("measure {name}: every measure needs a permission");
            }
            check_words(&m.synonyms).with_context(|| format!("measure {name}"))?;
            if let Some(cut) = &m.cut {
                if !self.relations[&m.relation].dims.contains_key(cut) {
                    bail!("measure {name}: its relation has no dimension {cut}");
                }
            }
        }
        for (name, d) in &self.dimensions {
            check_words(&d.synonyms).with_context(|| format!("dimension {name}"))?;
        }
        for (relation, groups) in &self.statuses {
            let Some(r) = self.relations.get(relation) else {
                bail!("statuses: relation {relation} is not defined");
            };
            if !r.dims.contains_key("status") {
                bail!("statuses: relation {relation} has no status dimension");
            }
            for (word, g) in groups {
                check_words(&g.synonyms).with_context(|| format!("status {relation}.{word}"))?;
            }
        }
        Ok(())
    }

    pub fn measure(&self, name: &str) -> Option<&Measure> {
        self.measures.get(name)
    }

    pub fn dimension(&self, name: &str) -> Option<&Dimension> {
        self.dimensions.get(name)
    }

    pub fn relation_of(&self, measure: &Measure) -> &Relation {
        &self.relations[&measure.relation]
    }

    /// The relations that can give every one of `measures`, the first measure's preferred
    /// first; `None` when no relation gives them all (or a name is unknown).
    pub fn view<S: AsRef<str>>(&self, measures: &[S]) -> Option<View<'_>> {
        let first = self.measure(measures.first()?.as_ref())?;
        let mut relations = Vec::new();
        for r in first.forms().map(|(r, _)| r) {
            if measures.iter().all(|m| {
                self.measure(m.as_ref())
                    .is_some_and(|m| m.form(r).is_some())
            }) {
                relations.push((r, &self.relations[r]));
            }
        }
        (!relations.is_empty()).then_some(View { relations })
    }
}

impl Measure {
    /// Where the measure can be computed, preferred first: (relation, expression).
    pub fn forms(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once((self.relation.as_str(), self.expr.as_str()))
            .chain(self.also.iter().map(|(r, e)| (r.as_str(), e.as_str())))
    }

    /// Its expression over `relation`, if it has one there.
    pub fn form(&self, relation: &str) -> Option<&str> {
        self.forms().find(|(r, _)| *r == relation).map(|(_, e)| e)
    }
}

/// The relations a set of measures can be computed over, preferred first. A question may cut
/// and filter by what any of them has; the compiler takes the first that has all it needs.
#[derive(Debug, Clone)]
pub struct View<'c> {
    pub relations: Vec<(&'c str, &'c Relation)>,
}

impl Relation {
    /// `from` with the joins whose alias `parts` use (and the joins those need), each after
    /// the joins it names.
    pub fn from_for(&self, parts: &[&str]) -> String {
        let uses = |text: &str, alias: &str| {
            text.match_indices(&format!("{alias}.")).any(|(i, _)| {
                let before = i.checked_sub(1).map(|b| text.as_bytes()[b]);
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            })
        };
        // Which joins are needed: used by a part, or by a needed join.
        let mut needed: Vec<&str> = Vec::new();
        loop {
            let before = needed.len();
            for alias in self.joins.keys() {
                if !needed.contains(&alias.as_str())
                    && (parts.iter().any(|p| uses(p, alias))
                        || needed.iter().any(|a| uses(&self.joins[*a], alias)))
                {
                    needed.push(alias);
                }
            }
            if needed.len() == before {
                break;
            }
        }
        // In an order where each join comes after the joins it names.
        let mut from = self.from.clone();
        let mut placed: Vec<&str> = Vec::new();
        while placed.len() < needed.len() {
            let next = needed.iter().find(|a| {
                !placed.contains(a)
                    && needed
                        .iter()
                        .filter(|o| *o != *a)
                        .all(|o| placed.contains(o) || !uses(&self.joins[**a], o))
            });
            let Some(alias) = next else {
                break; // a cycle: the catalogue check refuses it
            };
            from.push_str("\n  ");
            from.push_str(&self.joins[*alias]);
            placed.push(alias);
        }
        from
    }
}

impl View<'_> {
    pub fn has_dim(&self, dim: &str) -> bool {
        self.relations.iter().any(|(_, r)| r.dims.contains_key(dim))
    }

    pub fn has_attribute(&self, attr: &str) -> bool {
        self.relations
            .iter()
            .any(|(_, r)| r.attributes.contains_key(attr))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.relations.iter().map(|(n, _)| *n)
    }
}

/// SQL from the catalogue holds no parameter, comment, separator or placeholder but `{today}`.
fn check_sql(sql: &str) -> anyhow::Result<()> {
    if sql.contains(';') || sql.contains("--") || sql.contains("/*") || sql.contains('$') {
        bail!("SQL may not hold ';', comments or '$' parameters: {sql}");
    }
    if sql
        .replace("{today}", "")
        .replace("{permissions}", "")
        .contains(['{', '}'])
    {
        bail!("the only placeholders are {{today}} and {{permissions}}: {sql}");
    }
    Ok(())
}

fn check_words(words: &[String]) -> anyhow::Result<()> {
    if words.is_empty() {
        bail!("needs at least one synonym");
    }
    for w in words {
        if w.trim().is_empty() || *w != w.to_lowercase() {
            bail!("synonym {w:?} must be non-empty and lower case");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_loads_and_has_the_issue_measures() {
        let c = &*CATALOGUE;
        for m in [
            "revenue",
            "order_count",
            "avg_order_value",
            "units_sold",
            "gross_margin",
            "gross_margin_pct",
            "receivables_open",
            "receivables_overdue",
            "payables_open",
            "payables_overdue",
            "purchases",
            "deliveries",
            "deliveries_late",
            "on_time_pct",
            "open_alerts",
            "stock_on_hand",
            "stock_reserved",
            "stock_available",
            "items_below_min",
            "output",
            "rejects",
            "reject_rate",
            "downtime",
            "oee",
            "maintenance_cost",
            "maintenance_count",
            "vendor_otd",
            "vendor_quality",
        ] {
            assert!(c.measure(m).is_some(), "{m}");
        }
        for d in [
            "customer",
            "segment",
            "item",
            "category",
            "vendor",
            "machine",
            "warehouse",
            "operator",
            "shift",
            "error_code",
            "status",
            "driver",
        ] {
            assert!(c.dimension(d).is_some(), "{d}");
        }
    }

    #[test]
    fn a_broken_catalogue_is_refused() {
        let good = SHIPPED;
        let injected = good.replace(
            "expr = \"sum(po.total_amt)\"",
            "expr = \"sum(po.total_amt); drop table t_po\"",
        );
        assert!(Catalogue::load(&injected).is_err());
        let placeholder = good.replace("{today} - ar.due_dt\"", "{now} - ar.due_dt\"");
        assert!(Catalogue::load(&placeholder).is_err());
        let orphan = good.replace("relation = \"maintenance\"", "relation = \"nowhere\"");
        assert!(Catalogue::load(&orphan).is_err());
        let open = good.replace("permissions = [\"MAINT.READ\"]", "permissions = []");
        assert!(Catalogue::load(&open).is_err());
    }
}
