//! Entities in a question: document numbers, master codes and names, UUIDs, periods, a mute
//! duration and a one-time code. The pattern scans here work on the lower-cased text; names are
//! matched against the masters by [`super::catalog::Catalog`], and the orchestration lives in
//! [`super::intent::classify`].

use std::ops::Range;
use std::sync::LazyLock;

use chrono::{Datelike, Duration, NaiveDate};
use regex::Regex;
use serde::Serialize;

use super::catalog::MasterKind;

/// Everything a question names besides its intent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Entities {
    /// Document numbers, normalised (`SO-202412-0002`), in the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<DocNumber>,
    /// Masters named by code (`ITM-005`, `mch3`) or by name (`motor dc`), in the order written.
    /// A name shared by several masters gives one entry per candidate the intent cannot rule
    /// out, so the brain can ask back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masters: Vec<MasterRef>,
    /// Full UUIDs and 8-hex prefixes of exposed rows, lower-case.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uuids: Vec<String>,
    /// The first period mentioned ("omzet bulan ini").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// A second period to compare against ("… vs bulan lalu").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_period: Option<Period>,
    /// How long to mute alerts, in minutes ("mute 2 jam"); only for `alert_mute`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mute_minutes: Option<u32>,
    /// The six digits of a one-time code; only for `otp_code`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otp: Option<String>,
}

impl Entities {
    /// Whether anything that narrows a question was found (documents, masters, UUIDs, a
    /// period).
    pub fn has_context(&self) -> bool {
        !self.documents.is_empty()
            || !self.masters.is_empty()
            || !self.uuids.is_empty()
            || self.period.is_some()
    }

    /// The codes of the masters found, in order, without repeats.
    pub fn master_codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = Vec::new();
        for m in &self.masters {
            if !codes.contains(&m.code.as_str()) {
                codes.push(&m.code);
            }
        }
        codes
    }
}

/// The kind of a transaction document, from its number's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DocKind {
    /// Sales order (`t_so`).
    So,
    /// Purchase order (`t_po`).
    Po,
    /// Delivery order (`t_do`).
    Do,
    /// Work order (`t_wo`).
    Wo,
}

impl DocKind {
    /// The number prefix, `SO` … `WO`.
    pub fn prefix(self) -> &'static str {
        match self {
            DocKind::So => "SO",
            DocKind::Po => "PO",
            DocKind::Do => "DO",
            DocKind::Wo => "WO",
        }
    }

    fn from_prefix(prefix: &str) -> Option<DocKind> {
        match prefix {
            "so" => Some(DocKind::So),
            "po" => Some(DocKind::Po),
            "do" => Some(DocKind::Do),
            "wo" => Some(DocKind::Wo),
            _ => None,
        }
    }
}

/// A document number in the schema's form `XX-YYYYMM-NNNN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocNumber {
    pub kind: DocKind,
    /// Normalised: upper-case prefix, dashes, a four-digit sequence (`SO-202412-0002`).
    pub number: String,
}

/// How a master was recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// Its code was written (`CUST-003`, `mch3`, `mesin 3`).
    Code,
    /// Its name or an alias was written (`maju jaya`, `robot las`).
    Name,
}

/// A master named in a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MasterRef {
    pub kind: MasterKind,
    /// The master's code (`ITM-005`); a typed code that is not in the catalogue is kept, so the
    /// brain can say it does not exist.
    pub code: String,
    /// The master's name; `None` for a typed code the catalogue does not know.
    pub name: Option<String>,
    /// The words of the question that matched (normalised), so an admin sees why.
    pub matched: String,
    pub by: MatchedBy,
}

/// A period a question is about. [`Period::range`] turns it into dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Today,
    Yesterday,
    /// Monday to Sunday of the current week.
    ThisWeek,
    LastWeek,
    /// The current calendar month ("bulan ini", "MTD").
    ThisMonth,
    LastMonth,
    /// The current calendar year ("tahun ini", "YTD").
    ThisYear,
    LastYear,
    /// The last N days including today ("7 hari terakhir").
    LastDays(u32),
    /// A named month; without a year, the most recent such month that has begun.
    Month {
        year: Option<i32>,
        month: u32,
    },
}

impl Period {
    /// The dates covered: inclusive start, exclusive end. "This" periods cover the whole
    /// week/month/year (their future part simply holds no data yet, while plans such as
    /// scheduled work orders are included).
    pub fn range(&self, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        let day = Duration::days(1);
        let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
        let month_start = first_of(today.year(), today.month());
        match *self {
            Period::Today => (today, today + day),
            Period::Yesterday => (today - day, today),
            Period::ThisWeek => (monday, monday + Duration::days(7)),
            Period::LastWeek => (monday - Duration::days(7), monday),
            Period::ThisMonth => (month_start, next_month(month_start)),
            Period::LastMonth => (previous_month(month_start), month_start),
            Period::ThisYear => (first_of(today.year(), 1), first_of(today.year() + 1, 1)),
            Period::LastYear => (first_of(today.year() - 1, 1), first_of(today.year(), 1)),
            Period::LastDays(n) => (today - Duration::days(i64::from(n.max(1)) - 1), today + day),
            Period::Month { year, month } => {
                let month = month.clamp(1, 12);
                let year = year.unwrap_or(if month <= today.month() {
                    today.year()
                } else {
                    today.year() - 1
                });
                let start = first_of(year, month);
                (start, next_month(start))
            }
        }
    }

    /// A short stable label: `today`, `last_month`, `last_days:7`, `2024-12`, `month:12` (a
    /// month without a year).
    pub fn label(&self) -> String {
        match *self {
            Period::Today => "today".into(),
            Period::Yesterday => "yesterday".into(),
            Period::ThisWeek => "this_week".into(),
            Period::LastWeek => "last_week".into(),
            Period::ThisMonth => "this_month".into(),
            Period::LastMonth => "last_month".into(),
            Period::ThisYear => "this_year".into(),
            Period::LastYear => "last_year".into(),
            Period::LastDays(n) => format!("last_days:{n}"),
            Period::Month {
                year: Some(y),
                month,
            } => format!("{y:04}-{month:02}"),
            Period::Month { year: None, month } => format!("month:{month}"),
        }
    }
}

fn first_of(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).expect("the first of a month 1..=12 exists")
}

fn next_month(first: NaiveDate) -> NaiveDate {
    match first.month() {
        12 => first_of(first.year() + 1, 1),
        m => first_of(first.year(), m + 1),
    }
}

fn previous_month(first: NaiveDate) -> NaiveDate {
    match first.month() {
        1 => first_of(first.year() - 1, 12),
        m => first_of(first.year(), m - 1),
    }
}

// ---------------------------------------------------------------------------------------------
// Pattern scans over the lower-cased text
// ---------------------------------------------------------------------------------------------

/// `so-202412-0002`, `so 202412 0002`, `so2024120002`, `so-202412-2`. The month must be a real
/// one, which keeps ordinary numbers out.
static DOC_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?-u:\b)(so|po|do|wo)[\s_./#-]{0,2}(20[0-9]{2})(0[1-9]|1[0-2])[\s_./-]{0,2}([0-9]{1,4})(?-u:\b)",
    )
    .expect("document regex")
});

/// `cust-001`, `itm005`, `mch3`, `vnd 2`.
static CODE_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)(cust|itm|vnd|mch)[\s_-]{0,2}([0-9]{1,4})(?-u:\b)").expect("code regex")
});

/// `wh-b1`, `wh b1`, `whb1`.
static WH_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)wh[\s_-]{0,2}([a-z])[\s_-]?([0-9]{1,2})(?-u:\b)").expect("wh regex")
});

static UUID_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?-u:\b)")
        .expect("uuid regex")
});

static HEX8_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?-u:\b)[0-9a-f]{8}(?-u:\b)").expect("hex8 regex"));

/// A master code as written: its kind, normalised code and the matched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeHit {
    pub kind: MasterKind,
    pub code: String,
    pub matched: String,
    pub at: usize,
}

/// What the pattern scans found, and the text with those spans blanked out (so the words of
/// a code do not count as words of the question).
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub documents: Vec<DocNumber>,
    pub codes: Vec<CodeHit>,
    pub uuids: Vec<String>,
    pub rest: String,
}

/// Runs the pattern scans on lower-cased text. Every pattern needs a digit, so text without
/// one costs a single pass.
pub(crate) fn scan(lower: &str) -> Scan {
    let mut out = Scan::default();
    if !lower.bytes().any(|b| b.is_ascii_digit()) {
        out.rest = lower.to_owned();
        return out;
    }
    let mut spans: Vec<Range<usize>> = Vec::new();
    for c in DOC_RE.captures_iter(lower) {
        let kind = DocKind::from_prefix(&c[1]).expect("the regex only matches known prefixes");
        let seq: u32 = c[4].parse().expect("digits");
        let number = format!("{}-{}{}-{:04}", kind.prefix(), &c[2], &c[3], seq);
        spans.push(c.get(0).expect("whole match").range());
        if !out.documents.iter().any(|d| d.number == number) {
            out.documents.push(DocNumber { kind, number });
        }
    }
    for c in CODE_RE.captures_iter(lower) {
        let whole = c.get(0).expect("whole match");
        let Ok(n) = c[2].parse::<u32>() else { continue };
        if n == 0 || n > 999 || overlaps(&spans, &whole.range()) {
            continue;
        }
        let kind = match &c[1] {
            "cust" => MasterKind::Customer,
            "itm" => MasterKind::Item,
            "vnd" => MasterKind::Vendor,
            _ => MasterKind::Machine,
        };
        out.codes.push(CodeHit {
            kind,
            code: format!("{}-{n:03}", kind.code_prefix()),
            matched: whole.as_str().to_owned(),
            at: whole.start(),
        });
        spans.push(whole.range());
    }
    for c in WH_RE.captures_iter(lower) {
        let whole = c.get(0).expect("whole match");
        if overlaps(&spans, &whole.range()) {
            continue;
        }
        out.codes.push(CodeHit {
            kind: MasterKind::Warehouse,
            code: format!("WH-{}{}", c[1].to_ascii_uppercase(), &c[2]),
            matched: whole.as_str().to_owned(),
            at: whole.start(),
        });
        spans.push(whole.range());
    }
    out.codes.sort_by_key(|c| c.at);
    let mut uuid_spans: Vec<(usize, String)> = Vec::new();
    for m in UUID_RE.find_iter(lower) {
        spans.push(m.range());
        uuid_spans.push((m.start(), m.as_str().to_owned()));
    }
    for m in HEX8_RE.find_iter(lower) {
        let s = m.as_str();
        // a prefix has both letters and digits: dates (20241201) and words (deadbeef) do not
        let letters = s.bytes().any(|b| b.is_ascii_alphabetic());
        let digits = s.bytes().any(|b| b.is_ascii_digit());
        if letters && digits && !overlaps(&spans, &m.range()) {
            spans.push(m.range());
            uuid_spans.push((m.start(), s.to_owned()));
        }
    }
    uuid_spans.sort_by_key(|(at, _)| *at);
    for (_, u) in uuid_spans {
        if !out.uuids.contains(&u) {
            out.uuids.push(u);
        }
    }
    let mut rest = lower.as_bytes().to_vec();
    for span in &spans {
        rest[span.clone()].fill(b' ');
    }
    // only ASCII bytes of matches were replaced by ASCII spaces
    out.rest = String::from_utf8(rest).expect("still UTF-8");
    out
}

fn overlaps(spans: &[Range<usize>], r: &Range<usize>) -> bool {
    spans.iter().any(|s| s.start < r.end && r.start < s.end)
}

/// Words that may stand around a one-time code ("kode nya 123456", "OTP: 123 456").
const OTP_WORDS: &[&str] = &[
    "kode",
    "kodenya",
    "nya",
    "otp",
    "code",
    "my",
    "is",
    "the",
    "ini",
    "verifikasi",
    "verification",
    "pin",
];

/// The six digits of a message that is only a one-time code: `123456`, `123 456`,
/// `kode nya 123456`.
pub(crate) fn otp_code(lower: &str) -> Option<String> {
    let mut digits = String::new();
    let mut groups = 0;
    for word in lower.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        if word.bytes().all(|b| b.is_ascii_digit()) {
            groups += 1;
            digits.push_str(word);
        } else if !OTP_WORDS.contains(&word) {
            return None;
        }
    }
    (digits.len() == 6 && (1..=2).contains(&groups)).then_some(digits)
}

// ---------------------------------------------------------------------------------------------
// Periods and durations over normalised tokens
// ---------------------------------------------------------------------------------------------

/// A period found at `tokens[span]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeriodHit {
    pub period: Period,
    pub span: Range<usize>,
}

/// Month names and the abbreviations that are safe on their own.
const MONTHS: &[(&str, u32)] = &[
    ("januari", 1),
    ("january", 1),
    ("jan", 1),
    ("februari", 2),
    ("pebruari", 2),
    ("february", 2),
    ("feb", 2),
    ("maret", 3),
    ("march", 3),
    ("april", 4),
    ("mei", 5),
    ("juni", 6),
    ("june", 6),
    ("juli", 7),
    ("july", 7),
    ("agustus", 8),
    ("august", 8),
    ("agt", 8),
    ("agu", 8),
    ("aug", 8),
    ("september", 9),
    ("sept", 9),
    ("oktober", 10),
    ("october", 10),
    ("okt", 10),
    ("oct", 10),
    ("november", 11),
    ("nov", 11),
    ("nop", 11),
    ("desember", 12),
    ("december", 12),
    ("des", 12),
    ("dec", 12),
];

/// Abbreviations that are ordinary words too ("may", "mar"): a month only before a year or
/// after "bulan"/"month".
const MONTHS_GUARDED: &[(&str, u32)] = &[
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("sep", 9),
];

/// Words of periods, known to the normaliser (never typo-corrected into something else).
pub(crate) const PERIOD_WORDS: &[&str] = &[
    "hari",
    "ini",
    "today",
    "kemarin",
    "yesterday",
    "minggu",
    "pekan",
    "week",
    "bulan",
    "month",
    "tahun",
    "year",
    "lalu",
    "sebelumnya",
    "last",
    "previous",
    "prev",
    "past",
    "this",
    "terakhir",
    "belakangan",
    "kebelakang",
    "mtd",
    "ytd",
    "wtd",
    "days",
    "day",
    "seminggu",
    "sebulan",
    "setahun",
];

fn month_name(word: &str) -> Option<u32> {
    MONTHS.iter().find(|(w, _)| *w == word).map(|&(_, m)| m)
}

fn guarded_month(word: &str) -> Option<u32> {
    MONTHS_GUARDED
        .iter()
        .find(|(w, _)| *w == word)
        .map(|&(_, m)| m)
}

/// A year written after a month: `2024`, or `24` (2000 + n, for 20..=40).
fn year_token(word: Option<&&str>) -> Option<i32> {
    let word = word?;
    if !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i32 = word.parse().ok()?;
    match word.len() {
        4 if (2000..=2099).contains(&n) => Some(n),
        2 if (20..=40).contains(&n) => Some(2000 + n),
        _ => None,
    }
}

fn small_number(word: &str) -> Option<u32> {
    if word.len() <= 3 && word.bytes().all(|b| b.is_ascii_digit()) {
        word.parse().ok().filter(|n| (1..=366).contains(n))
    } else {
        None
    }
}

/// Periods in normalised tokens, in order. The normaliser has already turned "bln" into
/// "bulan", "kmrn" into "kemarin" and so on.
pub(crate) fn periods(tokens: &[&str]) -> Vec<PeriodHit> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match period_at(tokens, i) {
            Some((period, len)) => {
                out.push(PeriodHit {
                    period,
                    span: i..i + len,
                });
                i += len;
            }
            None => i += 1,
        }
    }
    out
}

fn period_at(t: &[&str], i: usize) -> Option<(Period, usize)> {
    let w = t[i];
    let next = t.get(i + 1).copied();
    let next2 = t.get(i + 2).copied();
    let past = |w: Option<&str>| {
        matches!(
            w,
            Some("lalu" | "kemarin" | "sebelumnya" | "kemaren" | "lalu2")
        )
    };
    let unit = |w: &str| match w {
        "minggu" | "pekan" | "week" => Some((Period::ThisWeek, Period::LastWeek)),
        "bulan" | "month" => Some((Period::ThisMonth, Period::LastMonth)),
        "tahun" | "year" => Some((Period::ThisYear, Period::LastYear)),
        _ => None,
    };
    // "hari ini", "minggu ini", "bulan lalu", "tahun kemarin"
    if w == "hari" && next == Some("ini") {
        return Some((Period::Today, 2));
    }
    if let Some((this, last)) = unit(w) {
        if next == Some("ini") {
            return Some((this, 2));
        }
        if past(next) {
            return Some((last, 2));
        }
        // "bulan desember", "bulan des 2024"
        if matches!(w, "bulan" | "month") {
            if let Some(m) = next.and_then(|n| month_name(n).or_else(|| guarded_month(n))) {
                let year = year_token(t.get(i + 2));
                return Some((
                    Period::Month { year, month: m },
                    2 + usize::from(year.is_some()),
                ));
            }
        }
    }
    // "this week", "last month", "previous year"
    if matches!(w, "this" | "last" | "previous" | "prev" | "past") {
        if let Some((this, last)) = next.and_then(unit) {
            return Some((if w == "this" { this } else { last }, 2));
        }
        // "last 7 days", "past 30 days"
        if w != "this" {
            if let (Some(n), Some("days" | "day" | "hari")) = (next.and_then(small_number), next2) {
                return Some((Period::LastDays(n), 3));
            }
        }
    }
    // "7 hari terakhir", "30 hari belakangan"
    if let Some(n) = small_number(w) {
        if matches!(next, Some("hari" | "days"))
            && matches!(
                next2,
                Some("terakhir" | "belakangan" | "kebelakang" | "terakhir2" | "lalu")
            )
        {
            return Some((Period::LastDays(n), 3));
        }
    }
    // "seminggu terakhir", "sebulan terakhir"
    if matches!(next, Some("terakhir" | "belakangan" | "kebelakang")) {
        match w {
            "seminggu" => return Some((Period::LastDays(7), 2)),
            "sebulan" => return Some((Period::LastDays(30), 2)),
            _ => {}
        }
    }
    match w {
        "today" => return Some((Period::Today, 1)),
        "kemarin" | "yesterday" => return Some((Period::Yesterday, 1)),
        "mtd" => return Some((Period::ThisMonth, 1)),
        "ytd" => return Some((Period::ThisYear, 1)),
        "wtd" => return Some((Period::ThisWeek, 1)),
        _ => {}
    }
    if let Some(m) = month_name(w) {
        let year = year_token(t.get(i + 1));
        return Some((
            Period::Month { year, month: m },
            1 + usize::from(year.is_some()),
        ));
    }
    if let Some(m) = guarded_month(w) {
        if let Some(year) = year_token(t.get(i + 1)) {
            return Some((
                Period::Month {
                    year: Some(year),
                    month: m,
                },
                2,
            ));
        }
    }
    None
}

/// Units of a mute duration, in minutes.
fn unit_minutes(word: &str) -> Option<u32> {
    match word {
        "menit" | "mnt" | "min" | "mins" | "minute" | "minutes" | "m" => Some(1),
        "jam" | "j" | "hour" | "hours" | "hr" | "hrs" | "h" => Some(60),
        "hari" | "day" | "days" | "d" => Some(24 * 60),
        _ => None,
    }
}

/// A duration such as "2 jam", "30 menit", "1h", "45mnt", "setengah jam": its minutes and
/// the tokens it covers.
pub(crate) fn duration(tokens: &[&str]) -> Option<(u32, Range<usize>)> {
    for (i, w) in tokens.iter().enumerate() {
        if let Some(n) = small_number(w) {
            if let Some(per) = tokens.get(i + 1).and_then(|u| unit_minutes(u)) {
                return Some((n * per, i..i + 2));
            }
        }
        // "1h", "30m", "2jam"
        let digits = w.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && digits < w.len() {
            let (n, u) = w.split_at(digits);
            if let (Some(n), Some(per)) = (small_number(n), unit_minutes(u)) {
                return Some((n * per, i..i + 1));
            }
        }
        if *w == "setengah" && tokens.get(i + 1) == Some(&"jam") {
            return Some((30, i..i + 2));
        }
        if *w == "sejam" {
            return Some((60, i..i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn docs(text: &str) -> Vec<String> {
        scan(&text.to_ascii_lowercase())
            .documents
            .into_iter()
            .map(|d| d.number)
            .collect()
    }

    fn codes(text: &str) -> Vec<String> {
        scan(&text.to_ascii_lowercase())
            .codes
            .into_iter()
            .map(|c| c.code)
            .collect()
    }

    fn period(text: &str) -> Vec<Period> {
        let lower = text.to_ascii_lowercase();
        let tokens: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect();
        periods(&tokens).into_iter().map(|p| p.period).collect()
    }

    #[test]
    fn document_numbers_are_normalised_from_how_people_type_them() {
        for text in [
            "status SO-202412-0002?",
            "so 202412 0002 gmn",
            "SO2024120002",
            "so-202412-2",
            "so_202412_0002",
            "SO #202412/0002",
        ] {
            assert_eq!(docs(text), ["SO-202412-0002"], "{text}");
        }
        assert_eq!(
            docs("po2024120001 dan DO-202412-0002, wo 202412 0003"),
            ["PO-202412-0001", "DO-202412-0002", "WO-202412-0003"]
        );
    }

    #[test]
    fn numbers_that_are_not_documents_are_left_alone() {
        assert!(docs("so 202413 0002").is_empty(), "month 13");
        assert!(docs("so 450jt").is_empty());
        assert!(docs("also 2024120002").is_empty(), "prefix inside a word");
        assert!(docs("SO-202412-00021").is_empty(), "five-digit sequence");
    }

    #[test]
    fn master_codes_tolerate_case_dashes_and_padding() {
        assert_eq!(codes("cek CUST-003"), ["CUST-003"]);
        assert_eq!(codes("itm005 dan Itm-5"), ["ITM-005", "ITM-005"]);
        assert_eq!(codes("mch3 rusak"), ["MCH-003"]);
        assert_eq!(codes("vnd 2"), ["VND-002"]);
        assert_eq!(codes("stok di wh-b1 dan WH A1"), ["WH-B1", "WH-A1"]);
        assert!(codes("matchday 3").is_empty());
    }

    #[test]
    fn uuids_and_their_prefixes_are_found_but_not_dates_or_words() {
        let s = scan(&"cek 7C9E6679-7425-40DE-944B-E07FC1F90AE7 dan A1B2C3D4".to_ascii_lowercase());
        assert_eq!(
            s.uuids,
            ["7c9e6679-7425-40de-944b-e07fc1f90ae7", "a1b2c3d4"]
        );
        assert!(scan("tanggal 20241201").uuids.is_empty());
        assert!(scan("deadbeef 1").uuids.is_empty());
    }

    #[test]
    fn matched_spans_do_not_leave_their_words_behind() {
        let s = scan("status so-202412-0002 di wh-b1");
        assert!(!s.rest.contains("so"), "{}", s.rest);
        assert!(s.rest.contains("status"));
        assert_eq!(s.rest.len(), "status so-202412-0002 di wh-b1".len());
    }

    #[test]
    fn a_bare_six_digit_code_is_an_otp() {
        assert_eq!(otp_code("482913").as_deref(), Some("482913"));
        assert_eq!(otp_code("482 913").as_deref(), Some("482913"));
        assert_eq!(otp_code("kode otp: 907 114").as_deref(), Some("907114"));
        assert_eq!(otp_code("kode nya 551203 ").as_deref(), Some("551203"));
        assert_eq!(otp_code("12345"), None);
        assert_eq!(otp_code("1234567"), None);
        assert_eq!(otp_code("12 34 56"), None);
        assert_eq!(otp_code("so 202412"), None);
        assert_eq!(otp_code("stok 123456"), None);
    }

    #[test]
    fn periods_in_both_languages() {
        use Period::*;
        assert_eq!(period("omzet hari ini"), [Today]);
        assert_eq!(period("kemarin"), [Yesterday]);
        assert_eq!(period("minggu ini vs minggu lalu"), [ThisWeek, LastWeek]);
        assert_eq!(period("bulan ini"), [ThisMonth]);
        assert_eq!(period("revenue MTD"), [ThisMonth]);
        assert_eq!(period("this month vs last month"), [ThisMonth, LastMonth]);
        assert_eq!(period("bulan kemarin"), [LastMonth]);
        assert_eq!(period("tahun ini"), [ThisYear]);
        assert_eq!(period("YTD"), [ThisYear]);
        assert_eq!(period("7 hari terakhir"), [LastDays(7)]);
        assert_eq!(period("last 30 days"), [LastDays(30)]);
        assert_eq!(period("seminggu terakhir"), [LastDays(7)]);
        assert_eq!(
            period("omzet desember"),
            [Month {
                year: None,
                month: 12
            }]
        );
        assert_eq!(
            period("Des 2024"),
            [Month {
                year: Some(2024),
                month: 12
            }]
        );
        assert_eq!(
            period("bulan nov 25"),
            [Month {
                year: Some(2025),
                month: 11
            }]
        );
        assert!(period("may i ask").is_empty());
        assert_eq!(
            period("may 2025"),
            [Month {
                year: Some(2025),
                month: 5
            }]
        );
        assert!(
            period("piutang > 30 hari").is_empty(),
            "ageing, not a period"
        );
        assert!(period("minggu depan").is_empty());
    }

    #[test]
    fn ranges_are_half_open_and_cross_month_and_year_boundaries() {
        // Thursday 2 January 2025
        let today = d(2025, 1, 2);
        assert_eq!(Period::Today.range(today), (d(2025, 1, 2), d(2025, 1, 3)));
        assert_eq!(
            Period::Yesterday.range(today),
            (d(2025, 1, 1), d(2025, 1, 2))
        );
        assert_eq!(
            Period::ThisWeek.range(today),
            (d(2024, 12, 30), d(2025, 1, 6))
        );
        assert_eq!(
            Period::LastWeek.range(today),
            (d(2024, 12, 23), d(2024, 12, 30))
        );
        assert_eq!(
            Period::ThisMonth.range(today),
            (d(2025, 1, 1), d(2025, 2, 1))
        );
        assert_eq!(
            Period::LastMonth.range(today),
            (d(2024, 12, 1), d(2025, 1, 1))
        );
        assert_eq!(
            Period::ThisYear.range(today),
            (d(2025, 1, 1), d(2026, 1, 1))
        );
        assert_eq!(
            Period::LastYear.range(today),
            (d(2024, 1, 1), d(2025, 1, 1))
        );
        assert_eq!(
            Period::LastDays(7).range(today),
            (d(2024, 12, 27), d(2025, 1, 3))
        );
        assert_eq!(
            Period::LastDays(0).range(today),
            (d(2025, 1, 2), d(2025, 1, 3))
        );
        // December 31st: this month ends at the next year's first day
        assert_eq!(
            Period::ThisMonth.range(d(2024, 12, 31)),
            (d(2024, 12, 1), d(2025, 1, 1))
        );
        // leap February
        assert_eq!(
            Period::LastMonth.range(d(2024, 3, 15)),
            (d(2024, 2, 1), d(2024, 3, 1))
        );
        assert_eq!(
            Period::LastDays(30).range(d(2024, 3, 1)),
            (d(2024, 2, 1), d(2024, 3, 2))
        );
    }

    #[test]
    fn a_month_without_a_year_is_the_latest_one_that_has_begun() {
        let december = Period::Month {
            year: None,
            month: 12,
        };
        assert_eq!(
            december.range(d(2025, 1, 2)),
            (d(2024, 12, 1), d(2025, 1, 1))
        );
        assert_eq!(
            december.range(d(2024, 12, 31)),
            (d(2024, 12, 1), d(2025, 1, 1))
        );
        let january = Period::Month {
            year: None,
            month: 1,
        };
        assert_eq!(january.range(d(2025, 1, 2)), (d(2025, 1, 1), d(2025, 2, 1)));
        let explicit = Period::Month {
            year: Some(2023),
            month: 2,
        };
        assert_eq!(
            explicit.range(d(2025, 1, 2)),
            (d(2023, 2, 1), d(2023, 3, 1))
        );
    }

    #[test]
    fn labels_are_stable() {
        assert_eq!(Period::LastDays(7).label(), "last_days:7");
        assert_eq!(
            Period::Month {
                year: Some(2024),
                month: 3
            }
            .label(),
            "2024-03"
        );
        assert_eq!(
            Period::Month {
                year: None,
                month: 3
            }
            .label(),
            "month:3"
        );
    }

    #[test]
    fn mute_durations() {
        let t = |s: &'static str| -> Option<u32> {
            let tokens: Vec<&str> = s.split(' ').collect();
            duration(&tokens).map(|(m, _)| m)
        };
        assert_eq!(t("mute 2 jam"), Some(120));
        assert_eq!(t("snooze 30 menit"), Some(30));
        assert_eq!(t("snooze 1h"), Some(60));
        assert_eq!(t("diamkan 45 mnt"), Some(45));
        assert_eq!(t("setengah jam"), Some(30));
        assert_eq!(t("sampai jam 3"), None);
    }
}
