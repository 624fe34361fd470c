//! The typed question: which measures, cut how, filtered how, over which period, compared with
//! what, top or bottom how many. Built by the brain's understanding (or parsed from the LLM's
//! JSON and then checked against the catalogue); compiled by [`super::compile`].

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::catalogue::Label;

/// A query over the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// One to three measures of one relation; the first orders rankings.
    pub measures: Vec<String>,
    /// One cut: a dimension or a time grain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Group>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Window>,
    /// The period compared against (like-for-like by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<Top>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Group {
    Dim(String),
    Time(Grain),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Grain {
    /// PostgreSQL's `date_trunc` field.
    pub fn field(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Week => "week",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }

    /// The first day of the bucket holding `day` (weeks start on Monday, as PostgreSQL's
    /// `date_trunc` has them).
    pub fn start(self, day: NaiveDate) -> NaiveDate {
        use chrono::Datelike;
        let first_of = |month: u32| NaiveDate::from_ymd_opt(day.year(), month, 1).unwrap_or(day);
        match self {
            Grain::Day => day,
            Grain::Week => day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday())),
            Grain::Month => first_of(day.month()),
            Grain::Quarter => first_of(day.month0() / 3 * 3 + 1),
            Grain::Year => first_of(1),
        }
    }

    /// Where the bucket that starts on `start` ends (exclusive, as a [`Window`]'s `to`).
    pub fn end(self, start: NaiveDate) -> NaiveDate {
        use chrono::{Days, Months};
        let next = match self {
            Grain::Day => start.checked_add_days(Days::new(1)),
            Grain::Week => start.checked_add_days(Days::new(7)),
            Grain::Month => start.checked_add_months(Months::new(1)),
            Grain::Quarter => start.checked_add_months(Months::new(3)),
            Grain::Year => start.checked_add_months(Months::new(12)),
        };
        next.unwrap_or(NaiveDate::MAX)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    /// The dimension's key (a code, a status) is one of `values`.
    Is {
        dim: String,
        values: Vec<String>,
    },
    /// A row attribute compared with a number ("more than 30 days late").
    Above {
        attr: String,
        value: f64,
    },
    Below {
        attr: String,
        value: f64,
    },
}

/// A date range: `from` inclusive, `to` exclusive, with its name in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub label: Label,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Top {
    pub n: u32,
    /// Smallest first ("bottom 3", "paling sedikit").
    #[serde(default)]
    pub ascending: bool,
}

/// How the result is laid out, from the spec's parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// One figure per measure (with the comparison, if any).
    Figure,
    /// A figure per dimension value, largest first.
    Breakdown,
    /// The top (or bottom) N by the first measure.
    Ranking,
    /// A figure per time bucket, in order.
    Trend,
}

impl Spec {
    /// The dimensions it cuts or filters by.
    pub fn dims(&self) -> impl Iterator<Item = &str> {
        let cut = self.group_by.iter().filter_map(|g| match g {
            Group::Dim(d) => Some(d.as_str()),
            Group::Time(_) => None,
        });
        let filtered = self.filters.iter().filter_map(|f| match f {
            Filter::Is { dim, .. } => Some(dim.as_str()),
            _ => None,
        });
        cut.chain(filtered)
    }

    pub fn shape(&self) -> Shape {
        match (&self.group_by, self.top) {
            (None, _) => Shape::Figure,
            (Some(Group::Time(_)), _) => Shape::Trend,
            (Some(Group::Dim(_)), Some(_)) => Shape::Ranking,
            (Some(Group::Dim(_)), None) => Shape::Breakdown,
        }
    }
}
