//! Spec → one parameterised, read-only statement. Identifiers and SQL come only from the
//! catalogue; every value of the question (dates, codes, statuses, thresholds) is a bind
//! parameter. The statement returns, per group: its key, its label, whether the row belongs to
//! the current period (`true`) or to the comparison, and one numeric column per measure.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::catalogue::{Catalogue, Kind, Label, Measure, Relation};
use super::spec::{Filter, Group, Shape, Spec};

/// The most measures one spec may ask for.
pub const MAX_MEASURES: usize = 3;
/// The largest "top N".
pub const MAX_TOP: u32 = 50;

/// A value bound to the statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Date(NaiveDate),
    Texts(Vec<String>),
    Number(Decimal),
}

/// A statement ready to run.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub sql: String,
    pub binds: Vec<Bind>,
    pub shape: Shape,
    /// Rows beyond this are cut (the statement asks for one more, to tell).
    pub row_cap: usize,
}

/// Why a spec cannot be compiled; each names what was asked, for the asker.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    #[error("unknown measure {0:?}")]
    UnknownMeasure(String),
    #[error("no measure asked")]
    NoMeasure,
    #[error("at most {MAX_MEASURES} measures")]
    TooManyMeasures,
    #[error("{0} and {1} cannot be answered together")]
    MixedRelations(String, String),
    #[error("{measure} cannot be cut by {dim}")]
    NoSuchCut { measure: String, dim: String },
    #[error("{measure} has no attribute {attr}")]
    NoSuchAttribute { measure: String, attr: String },
    #[error("{0} has no history: only its current value is known")]
    NoHistory(String),
    #[error("a comparison needs a period")]
    CompareWithoutPeriod,
    #[error("a trend is not compared with another period")]
    TrendComparison,
    #[error("top N must be between 1 and {MAX_TOP}")]
    BadTop,
    #[error("empty or reversed period")]
    BadPeriod,
    #[error("a filter needs at least one value")]
    EmptyFilter,
}

/// The measures of a spec, looked up and checked to share one relation.
pub fn measures<'c>(
    catalogue: &'c Catalogue,
    spec: &Spec,
) -> Result<Vec<(&'c str, &'c Measure)>, Invalid> {
    if spec.measures.is_empty() {
        return Err(Invalid::NoMeasure);
    }
    if spec.measures.len() > MAX_MEASURES {
        return Err(Invalid::TooManyMeasures);
    }
    let mut found: Vec<(&str, &Measure)> = Vec::new();
    for name in &spec.measures {
        let (key, m) = catalogue
            .measures
            .get_key_value(name.as_str())
            .ok_or_else(|| Invalid::UnknownMeasure(name.clone()))?;
        found.push((key.as_str(), m));
    }
    if catalogue.view(&spec.measures).is_none() {
        return Err(Invalid::MixedRelations(
            spec.measures[0].clone(),
            spec.measures.last().cloned().unwrap_or_default(),
        ));
    }
    Ok(found)
}

/// The relation the spec runs over: the first of its measures' relations that has every
/// dimension, attribute and (for a trend) the date it needs.
fn relation_for<'c>(
    catalogue: &'c Catalogue,
    spec: &Spec,
) -> Result<(&'c str, &'c Relation), Invalid> {
    let view = catalogue.view(&spec.measures).ok_or(Invalid::NoMeasure)?;
    let dims: Vec<&str> = spec.dims().collect();
    let attrs: Vec<&str> = spec
        .filters
        .iter()
        .filter_map(|f| match f {
            Filter::Above { attr, .. } | Filter::Below { attr, .. } => Some(attr.as_str()),
            Filter::Is { .. } => None,
        })
        .collect();
    let trend = matches!(spec.group_by, Some(Group::Time(_)));
    let fits = |r: &Relation| {
        dims.iter().all(|d| r.dims.contains_key(*d))
            && attrs.iter().all(|a| r.attributes.contains_key(*a))
            && (!trend || r.time.is_some())
    };
    if let Some((name, r)) = view.relations.iter().find(|(_, r)| fits(r)) {
        return Ok((name, r));
    }
    let measure = spec.measures[0].clone();
    if let Some(d) = dims.iter().find(|d| !view.has_dim(d)) {
        return Err(Invalid::NoSuchCut {
            measure,
            dim: (*d).to_owned(),
        });
    }
    if let Some(a) = attrs.iter().find(|a| !view.has_attribute(a)) {
        return Err(Invalid::NoSuchAttribute {
            measure,
            attr: (*a).to_owned(),
        });
    }
    Err(Invalid::NoHistory(
        catalogue.measures[&spec.measures[0]].label.en.clone(),
    ))
}

/// Compiles `spec` for `today` (the configured zone's date) and an asker holding
/// `permissions`, cutting at `row_cap` rows.
pub fn compile(
    catalogue: &Catalogue,
    spec: &Spec,
    today: NaiveDate,
    permissions: &[String],
    row_cap: usize,
) -> Result<Compiled, Invalid> {
    let found = measures(catalogue, spec)?;
    let (first_name, first) = found[0];
    let (relation_name, relation) = relation_for(catalogue, spec)?;
    // $1 is today, $2 the asker's permission codes; the question's values follow.
    let mut binds = vec![Bind::Date(today), Bind::Texts(permissions.to_vec())];
    let sub = |s: &str| {
        s.replace("{today}", "$1::date")
            .replace("{permissions}", "$2::text[]")
    };
    let next = |binds: &mut Vec<Bind>, b: Bind| {
        binds.push(b);
        binds.len()
    };

    // The period: required by a comparison and by a trend; for a relation without history only
    // a period that holds today makes sense (its current value).
    for w in spec.period.iter().chain(spec.compare.iter()) {
        if w.from >= w.to {
            return Err(Invalid::BadPeriod);
        }
    }
    if spec.compare.is_some() && spec.period.is_none() {
        return Err(Invalid::CompareWithoutPeriod);
    }
    if spec.compare.is_some() && matches!(spec.group_by, Some(Group::Time(_))) {
        return Err(Invalid::TrendComparison);
    }
    let time = match (&relation.time, &spec.period) {
        (Some(t), Some(_)) => Some(sub(t)),
        (None, Some(p)) => {
            if spec.compare.is_some() || !(p.from <= today && today < p.to) {
                return Err(Invalid::NoHistory(first.label.en.clone()));
            }
            None
        }
        (_, None) => None,
    };
    if matches!(spec.group_by, Some(Group::Time(_))) && relation.time.is_none() {
        return Err(Invalid::NoHistory(first.label.en.clone()));
    }
    if let Some(top) = spec.top {
        if top.n == 0 || top.n > MAX_TOP {
            return Err(Invalid::BadTop);
        }
    }

    let mut conditions = vec![format!("({})", sub(&relation.filter))];
    let current = match (&time, &spec.period, &spec.compare) {
        (Some(t), Some(p), compare) => {
            let a = next(&mut binds, Bind::Date(p.from));
            let b = next(&mut binds, Bind::Date(p.to));
            let cur = format!("({t} >= ${a} and {t} < ${b})");
            match compare {
                Some(c) => {
                    let ca = next(&mut binds, Bind::Date(c.from));
                    let cb = next(&mut binds, Bind::Date(c.to));
                    conditions.push(format!("({cur} or ({t} >= ${ca} and {t} < ${cb}))"));
                    cur
                }
                None => {
                    conditions.push(cur);
                    "true".to_owned()
                }
            }
        }
        _ => "true".to_owned(),
    };

    for f in &spec.filters {
        match f {
            Filter::Is { dim, values } => {
                if values.is_empty() {
                    return Err(Invalid::EmptyFilter);
                }
                let d = relation.dims.get(dim).ok_or_else(|| Invalid::NoSuchCut {
                    measure: first_name.to_owned(),
                    dim: dim.clone(),
                })?;
                let n = next(&mut binds, Bind::Texts(values.clone()));
                conditions.push(format!("({})::text = any(${n}::text[])", sub(d.key())));
            }
            Filter::Above { attr, value } | Filter::Below { attr, value } => {
                let a = relation
                    .attributes
                    .get(attr)
                    .ok_or_else(|| Invalid::NoSuchAttribute {
                        measure: first_name.to_owned(),
                        attr: attr.clone(),
                    })?;
                let value = Decimal::try_from(*value).map_err(|_| Invalid::EmptyFilter)?;
                let n = next(&mut binds, Bind::Number(value));
                let op = if matches!(f, Filter::Above { .. }) {
                    ">"
                } else {
                    "<"
                };
                conditions.push(format!("({}) {op} ${n}::numeric", sub(a)));
            }
        }
    }

    let (key, label) = match &spec.group_by {
        None => ("null::text".to_owned(), "null::text".to_owned()),
        Some(Group::Dim(dim)) => {
            let d = relation.dims.get(dim).ok_or_else(|| Invalid::NoSuchCut {
                measure: first_name.to_owned(),
                dim: dim.clone(),
            })?;
            (
                format!("({})::text", sub(d.key())),
                format!("({})::text", sub(d.label())),
            )
        }
        Some(Group::Time(grain)) => {
            let t = sub(relation.time.as_deref().unwrap_or("null"));
            let k = format!("date_trunc('{}', {t})::date::text", grain.field());
            (k.clone(), k)
        }
    };
    let values: Vec<String> = found
        .iter()
        .enumerate()
        .map(|(i, (_, m))| {
            let expr = m.form(relation_name).unwrap_or(&m.expr);
            format!("round(({})::numeric, 6) as m{i}", sub(expr))
        })
        .collect();
    let mut grouping: Vec<&str> = Vec::new();
    if spec.group_by.is_some() {
        grouping.extend(["1", "2"]);
    }
    if spec.compare.is_some() {
        grouping.push("3");
    }
    let shape = spec.shape();
    let order = match shape {
        Shape::Figure => "3 desc".to_owned(),
        Shape::Trend => "1, 3 desc".to_owned(),
        Shape::Breakdown | Shape::Ranking => {
            let dir = if spec.top.is_some_and(|t| t.ascending) {
                "asc"
            } else {
                "desc"
            };
            format!("3 desc, m0 {dir} nulls last, 2")
        }
    };
    let limit = match (shape, spec.top, &spec.compare) {
        (Shape::Ranking, Some(top), None) => top.n as usize,
        _ => row_cap + 1,
    };
    // Only the joins the statement's own parts name.
    let mut parts: Vec<&str> = vec![&key, &label, &current];
    parts.extend(values.iter().map(String::as_str));
    parts.extend(conditions.iter().map(String::as_str));
    let from = sub(&relation.from_for(&parts));
    let sql = format!(
        "select {key} as k, {label} as l, {current} as cur, {values}\nfrom {from}\nwhere {conditions}{group}\norder by {order}\nlimit {limit}",
        values = values.join(", "),
        conditions = conditions.join("\n  and "),
        group = if grouping.is_empty() {
            String::new()
        } else {
            format!("\ngroup by {}", grouping.join(", "))
        },
    );
    Ok(Compiled {
        sql,
        binds,
        shape,
        row_cap,
    })
}

/// What the asker may see of a spec: the measures and dimensions they lack a permission for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forbidden {
    /// Measures the asker may not see (left out when others remain).
    pub measures: Vec<(String, Label)>,
    /// Dimensions (cut or filter) the asker may not use: the question cannot be answered.
    pub dims: Vec<Label>,
}

impl Forbidden {
    pub fn is_empty(&self) -> bool {
        self.measures.is_empty() && self.dims.is_empty()
    }
}

/// Checks every measure and every dimension the spec touches against `may`.
pub fn forbidden(catalogue: &Catalogue, spec: &Spec, may: impl Fn(&str) -> bool) -> Forbidden {
    let mut out = Forbidden::default();
    for name in &spec.measures {
        if let Some(m) = catalogue.measure(name) {
            if !m.permissions.iter().all(|p| may(p)) {
                out.measures.push((name.clone(), m.label.clone()));
            }
        }
    }
    for dim in spec.dims() {
        if let Some(d) = catalogue.dimension(dim) {
            if !d.permissions.iter().all(|p| may(p)) && !out.dims.contains(&d.label) {
                out.dims.push(d.label.clone());
            }
        }
    }
    out
}

/// Whether a measure answers month to date when no period is named.
pub fn needs_default_period(catalogue: &Catalogue, spec: &Spec) -> bool {
    spec.period.is_none()
        && spec
            .measures
            .first()
            .and_then(|m| catalogue.measure(m))
            .is_some_and(|m| m.kind == Kind::Flow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::catalogue::CATALOGUE;
    use crate::metrics::spec::{Grain, Top, Window};

    fn window(from: (i32, u32, u32), to: (i32, u32, u32)) -> Window {
        Window {
            from: NaiveDate::from_ymd_opt(from.0, from.1, from.2).unwrap(),
            to: NaiveDate::from_ymd_opt(to.0, to.1, to.2).unwrap(),
            label: Label {
                id: "x".into(),
                en: "x".into(),
            },
        }
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 2).unwrap()
    }

    #[test]
    fn values_are_bound_never_spliced() {
        let hostile = "CUST-001' or 1=1 --".to_owned();
        let spec = Spec {
            measures: vec!["revenue".into()],
            group_by: Some(Group::Dim("item".into())),
            filters: vec![Filter::Is {
                dim: "customer".into(),
                values: vec![hostile.clone()],
            }],
            period: Some(window((2026, 11, 1), (2026, 12, 1))),
            compare: None,
            top: Some(Top {
                n: 5,
                ascending: false,
            }),
        };
        let c = compile(&CATALOGUE, &spec, today(), &[], 100).unwrap();
        assert!(!c.sql.contains(&hostile));
        assert!(!c.sql.contains("CUST-001"));
        assert!(c.binds.contains(&Bind::Texts(vec![hostile])));
        assert!(c.sql.contains("limit 5"));
        assert_eq!(c.shape, Shape::Ranking);
    }

    #[test]
    fn unknown_parts_are_refused_by_name() {
        let mut spec = Spec {
            measures: vec!["revenue; drop table t_so".into()],
            group_by: None,
            filters: vec![],
            period: None,
            compare: None,
            top: None,
        };
        assert!(matches!(
            compile(&CATALOGUE, &spec, today(), &[], 10),
            Err(Invalid::UnknownMeasure(_))
        ));
        spec.measures = vec!["revenue".into()];
        spec.group_by = Some(Group::Dim("machine".into()));
        assert!(matches!(
            compile(&CATALOGUE, &spec, today(), &[], 10),
            Err(Invalid::NoSuchCut { .. })
        ));
        spec.group_by = None;
        spec.measures = vec!["revenue".into(), "downtime".into()];
        assert!(matches!(
            compile(&CATALOGUE, &spec, today(), &[], 10),
            Err(Invalid::MixedRelations(..))
        ));
        spec.measures = vec!["stock_on_hand".into()];
        spec.group_by = Some(Group::Time(Grain::Month));
        assert!(matches!(
            compile(&CATALOGUE, &spec, today(), &[], 10),
            Err(Invalid::NoHistory(_))
        ));
    }

    #[test]
    fn permissions_are_checked_per_measure_and_per_dimension() {
        let spec = Spec {
            measures: vec!["revenue".into(), "gross_margin".into()],
            group_by: Some(Group::Dim("customer".into())),
            filters: vec![],
            period: None,
            compare: None,
            top: None,
        };
        let staff_sales = |p: &str| ["SO.READ", "INV.READ", "DO.READ"].contains(&p);
        let f = forbidden(&CATALOGUE, &spec, staff_sales);
        assert_eq!(f.measures.len(), 1);
        assert_eq!(f.measures[0].0, "gross_margin");
        assert!(f.dims.is_empty());
        let warehouse = |p: &str| ["INV.READ", "DO.READ", "PO.READ"].contains(&p);
        let f = forbidden(&CATALOGUE, &spec, warehouse);
        assert_eq!(f.measures.len(), 2);
        assert_eq!(f.dims.len(), 1, "the customer cut needs SO.READ");
    }
}
