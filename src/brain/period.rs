//! Periods in a question, in the configured zone's calendar: today, yesterday, tomorrow,
//! this/last/next week, this/last/next month, month to date, this/last quarter, "Q3", "kuartal 4",
//! this/last year, year to date, the last N days/weeks/months, named months and years
//! ("November", "Nov 2025", "2025"), dates and ranges ("5 Nov", "1–15 Nov", "tgl 5 s/d 10").
//! And the like-for-like period before one ([`previous`]): month to date against the same days
//! of last month.

use std::ops::Range;
use std::sync::LazyLock;

use chrono::{Datelike, Duration, Months, NaiveDate};
use regex::Regex;

use crate::metrics::catalogue::Label;
use crate::metrics::spec::Window;
use crate::texts::{month_name, Lang};

/// What kind of span a period is, for finding the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Day,
    Week,
    Month,
    Quarter,
    Year,
    /// Any other run of days (the last N days, a date range).
    Days,
}

/// A period found in a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    /// Exclusive.
    pub to: NaiveDate,
    pub span: Span,
    /// Its name as asked ("bulan ini", "this month"); the dates are added by [`Period::window`].
    pub name: Option<Label>,
}

impl Period {
    /// Inclusive last day.
    pub fn last_day(&self) -> NaiveDate {
        self.to - Duration::days(1)
    }

    /// The window a spec carries: dates and a name that says them.
    pub fn window(&self) -> Window {
        let dates_id = dates(self.from, self.last_day(), Lang::Id, self.span);
        let dates_en = dates(self.from, self.last_day(), Lang::En, self.span);
        let label = match &self.name {
            Some(n) if n.id != dates_id => Label {
                id: format!("{} ({dates_id})", n.id),
                en: format!("{} ({dates_en})", n.en),
            },
            _ => Label {
                id: dates_id,
                en: dates_en,
            },
        };
        Window {
            from: self.from,
            to: self.to,
            label,
        }
    }

    /// Whether `today` falls inside (the period is still running).
    pub fn running(&self, today: NaiveDate) -> bool {
        self.from <= today && today < self.to
    }

    /// The part up to and including `today`.
    pub fn to_date(&self, today: NaiveDate) -> Period {
        let mut p = self.clone();
        if p.running(today) {
            p.to = today + Duration::days(1);
            if p.span != Span::Day {
                p.span = Span::Days;
            }
        }
        p
    }
}

/// "1–15 Nov 2026", "November 2026", "2026", "Q4 2026", "5 Nov 2026".
fn dates(from: NaiveDate, last: NaiveDate, lang: Lang, span: Span) -> String {
    let whole_month = from.day() == 1 && (last + Duration::days(1)).day() == 1;
    match span {
        Span::Year if from.ordinal() == 1 && last.month() == 12 && last.day() == 31 => {
            return from.year().to_string()
        }
        Span::Quarter
            if whole_month
                && from.month0().is_multiple_of(3)
                && last.month() == from.month() + 2 =>
        {
            return format!("Q{} {}", from.month0() / 3 + 1, from.year())
        }
        _ if whole_month && from.month() == last.month() && from.year() == last.year() => {
            return format!("{} {}", month_name(lang, from.month0(), false), from.year())
        }
        _ => {}
    }
    let m = |d: NaiveDate| month_name(lang, d.month0(), true);
    if from == last {
        format!("{} {} {}", from.day(), m(from), from.year())
    } else if from.year() != last.year() {
        format!(
            "{} {} {}–{} {} {}",
            from.day(),
            m(from),
            from.year(),
            last.day(),
            m(last),
            last.year()
        )
    } else if from.month() != last.month() {
        format!(
            "{} {}–{} {} {}",
            from.day(),
            m(from),
            last.day(),
            m(last),
            last.year()
        )
    } else {
        format!("{}–{} {} {}", from.day(), last.day(), m(last), last.year())
    }
}

fn first_of(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).expect("a valid month")
}

fn label(id: &str, en: &str) -> Option<Label> {
    Some(Label {
        id: id.to_owned(),
        en: en.to_owned(),
    })
}

fn month_of(word: &str) -> Option<u32> {
    let m = match word {
        "januari" | "january" | "jan" => 1,
        "februari" | "february" | "feb" | "pebruari" => 2,
        "maret" | "march" | "mar" => 3,
        "april" | "apr" => 4,
        "mei" | "may" => 5,
        "juni" | "june" | "jun" => 6,
        "juli" | "july" | "jul" => 7,
        "agustus" | "august" | "agu" | "agt" | "ags" | "aug" => 8,
        "september" | "sept" | "sep" => 9,
        "oktober" | "october" | "okt" | "oct" => 10,
        "november" | "nov" | "nop" | "nopember" => 11,
        "desember" | "december" | "des" | "dec" => 12,
        _ => return None,
    };
    Some(m)
}

/// A year after a month or quarter: written, or "tahun lalu" / "this year".
const YEAR_RE: &str = r"\d{4}|tahun lalu|tahun kemarin|last year|tahun ini|this year";

/// The year `word` names, for `today`.
fn year_of(word: &str, today: NaiveDate) -> Option<i32> {
    match word {
        "tahun lalu" | "tahun kemarin" | "last year" => Some(today.year() - 1),
        "tahun ini" | "this year" => Some(today.year()),
        digits => digits.parse().ok(),
    }
}

const MONTHS_RE: &str = "januari|january|jan|februari|february|pebruari|feb|maret|march|mar|april|apr|mei|may|juni|june|jun|juli|july|jul|agustus|august|agu|agt|ags|aug|september|sept|sep|oktober|october|okt|oct|november|nopember|nov|nop|desember|december|des|dec";

struct Patterns {
    range: Regex,
    day_range: Regex,
    date: Regex,
    iso: Regex,
    quarter: Regex,
    month: Regex,
    year: Regex,
    last_n: Regex,
    relative: Regex,
    ago: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let r = |s: &str| Regex::new(s).expect("period pattern");
    Patterns {
        // "1-15 nov", "1 s/d 15 november 2026", "tgl 5 sampai 10 des"
        range: r(&format!(
            r"\b(?:(?:tgl|tanggal|dari|from)\s*)?(\d{{1,2}})\s*(?:-|–|s/d|sd|sampai|hingga|to|until)\s*(?:(?:tgl|tanggal)\s*)?(\d{{1,2}})\s+({MONTHS_RE})\b(?:\s+({YEAR_RE}))?"
        )),
        // "tgl 5 s/d 10" (this month)
        day_range: r(
            r"\b(?:tgl|tanggal)\s*(\d{1,2})\s*(?:-|–|s/d|sd|sampai|hingga)\s*(?:(?:tgl|tanggal)\s*)?(\d{1,2})\b",
        ),
        // "5 nov", "5 november 2025", "tgl 5 des"
        date: r(&format!(
            r"\b(?:(?:tgl|tanggal)\s*)?(\d{{1,2}})\s+({MONTHS_RE})\b(?:\s+({YEAR_RE}))?"
        )),
        iso: r(r"\b(\d{4})-(\d{2})-(\d{2})\b|\b(\d{1,2})/(\d{1,2})/(\d{4})\b"),
        quarter: r(&format!(
            r"\b(?:q|kuartal|triwulan|quarter|kw)\s*-?\s*([1-4])\b(?:\s*(?:tahun\s+)?({YEAR_RE}))?|\b(?:kuartal|triwulan|quarter)\s+(ini|lalu|kemarin|sebelumnya|terakhir|this|last|previous)\b|\b(this|last|previous)\s+quarter\b|\bqtd\b"
        )),
        month: r(&format!(
            r"\b(?:bulan\s+)?({MONTHS_RE})\b(?:\s+({YEAR_RE}))?"
        )),
        year: r(r"\b(?:tahun\s+|year\s+|th\s+|thn\s+)?(20\d{2})\b"),
        last_n: r(
            r"\b(?:(\d{1,3}|se)\s*(hari|minggu|pekan|bulan|tahun)\s+(?:terakhir|belakangan|ke\s*belakang)|(?:last|past|previous)\s+(\d{1,3})\s+(days?|weeks?|months?|years?))\b",
        ),
        // "2 minggu lalu", "3 bulan yang lalu", "2 weeks ago": that one day, week or month.
        ago: r(
            r"\b(\d{1,3}|se)\s*(hari|minggu|pekan|bulan|days?|weeks?|months?)\s+(?:yang\s+)?(?:lalu|ago|kemarin)\b",
        ),
        relative: r(
            r"\b(hari ini|today|kemarin|yesterday|besok|tomorrow|lusa|minggu ini|pekan ini|this week|minggu lalu|minggu kemarin|pekan lalu|last week|minggu depan|pekan depan|next week|bulan ini|this month|month to date|mtd|bulan lalu|bulan kemarin|last month|previous month|bulan depan|next month|tahun ini|this year|year to date|ytd|tahun lalu|tahun kemarin|last year|previous year)\b",
        ),
    }
});

/// Every period in `text` (lower case), in the order written, with where it was found.
pub fn find(text: &str, today: NaiveDate) -> Vec<(Range<usize>, Period)> {
    let p = &*PATTERNS;
    let mut found: Vec<(Range<usize>, Period)> = Vec::new();
    let free = |found: &Vec<(Range<usize>, Period)>, r: &Range<usize>| {
        found
            .iter()
            .all(|(f, _)| r.end <= f.start || r.start >= f.end)
    };
    let year_or = |s: Option<regex::Match<'_>>, month: u32| -> i32 {
        match s.and_then(|m| year_of(m.as_str(), today)) {
            Some(y) => y,
            // A month without a year: the most recent such month that has begun.
            None if month <= today.month() => today.year(),
            None => today.year() - 1,
        }
    };

    for c in p.range.captures_iter(text) {
        let m = c.get(0).expect("match");
        let (Some(a), Some(b), Some(month)) = (
            c[1].parse::<u32>().ok(),
            c[2].parse::<u32>().ok(),
            month_of(&c[3]),
        ) else {
            continue;
        };
        let year = year_or(c.get(4), month);
        if let (Some(from), Some(last)) = (
            NaiveDate::from_ymd_opt(year, month, a),
            NaiveDate::from_ymd_opt(year, month, b),
        ) {
            if from <= last && free(&found, &m.range()) {
                found.push((m.range(), days(from, last)));
            }
        }
    }
    for c in p.day_range.captures_iter(text) {
        let m = c.get(0).expect("match");
        let (Some(a), Some(b)) = (c[1].parse::<u32>().ok(), c[2].parse::<u32>().ok()) else {
            continue;
        };
        if let (Some(from), Some(last)) = (
            NaiveDate::from_ymd_opt(today.year(), today.month(), a),
            NaiveDate::from_ymd_opt(today.year(), today.month(), b),
        ) {
            if from <= last && free(&found, &m.range()) {
                found.push((m.range(), days(from, last)));
            }
        }
    }
    for c in p.iso.captures_iter(text) {
        let m = c.get(0).expect("match");
        let date = if let Some(y) = c.get(1) {
            NaiveDate::from_ymd_opt(
                y.as_str().parse().unwrap_or(0),
                c[2].parse().unwrap_or(0),
                c[3].parse().unwrap_or(0),
            )
        } else {
            NaiveDate::from_ymd_opt(
                c[6].parse().unwrap_or(0),
                c[5].parse().unwrap_or(0),
                c[4].parse().unwrap_or(0),
            )
        };
        if let Some(d) = date {
            if free(&found, &m.range()) {
                found.push((m.range(), one_day(d, None)));
            }
        }
    }
    for c in p.date.captures_iter(text) {
        let m = c.get(0).expect("match");
        let (Some(day), Some(month)) = (c[1].parse::<u32>().ok(), month_of(&c[2])) else {
            continue;
        };
        let year = year_or(c.get(3), month);
        if let Some(d) = NaiveDate::from_ymd_opt(year, month, day) {
            if free(&found, &m.range()) {
                found.push((m.range(), one_day(d, None)));
            }
        }
    }
    for c in p.quarter.captures_iter(text) {
        let m = c.get(0).expect("match");
        let this_q = (today.month0() / 3) as i32;
        let (year, q, name) = if let Some(n) = c.get(1) {
            let q: i32 = n.as_str().parse().unwrap_or(1) - 1;
            let year = match c.get(2).and_then(|y| year_of(y.as_str(), today)) {
                Some(y) => y,
                None if q <= this_q => today.year(),
                None => today.year() - 1,
            };
            let name = format!("Q{} {year}", q + 1);
            (year, q, label(&name, &name))
        } else {
            let word = c.get(3).or(c.get(4)).map_or("ini", |w| w.as_str());
            if matches!(word, "ini" | "this") || m.as_str() == "qtd" {
                (today.year(), this_q, label("kuartal ini", "this quarter"))
            } else {
                let (y, q) = if this_q == 0 {
                    (today.year() - 1, 3)
                } else {
                    (today.year(), this_q - 1)
                };
                (y, q, label("kuartal lalu", "last quarter"))
            }
        };
        let from = first_of(year, (q * 3 + 1) as u32);
        if free(&found, &m.range()) {
            found.push((
                m.range(),
                Period {
                    from,
                    to: from + Months::new(3),
                    span: Span::Quarter,
                    name,
                },
            ));
        }
    }
    for c in p.ago.captures_iter(text) {
        let m = c.get(0).expect("match");
        let n: u32 = if &c[1] == "se" {
            1
        } else {
            c[1].parse().unwrap_or(1)
        };
        let n = n.clamp(1, 366);
        let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
        let period = match c[2].trim_end_matches('s') {
            "hari" | "day" => one_day(
                today - Duration::days(i64::from(n)),
                label(&format!("{n} hari lalu"), &format!("{n} days ago")),
            ),
            "minggu" | "pekan" | "week" => week(
                monday - Duration::weeks(i64::from(n)),
                label(&format!("{n} minggu lalu"), &format!("{n} weeks ago")),
            ),
            _ => whole_month(
                first_of(today.year(), today.month()) - Months::new(n),
                label(&format!("{n} bulan lalu"), &format!("{n} months ago")),
            ),
        };
        if free(&found, &m.range()) {
            found.push((m.range(), period));
        }
    }
    for c in p.last_n.captures_iter(text) {
        let m = c.get(0).expect("match");
        let (n, unit) = match (c.get(1), c.get(2), c.get(3), c.get(4)) {
            (Some(n), Some(u), _, _) => (
                if n.as_str() == "se" {
                    1
                } else {
                    n.as_str().parse().unwrap_or(1)
                },
                u.as_str(),
            ),
            (_, _, Some(n), Some(u)) => (n.as_str().parse().unwrap_or(1), u.as_str()),
            _ => continue,
        };
        let n: u32 = n.clamp(1, 366);
        let (from, to, span) = match unit.trim_end_matches('s') {
            "hari" | "day" => (
                today - Duration::days(i64::from(n) - 1),
                today + Duration::days(1),
                Span::Days,
            ),
            "minggu" | "pekan" | "week" => {
                let monday =
                    today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
                (monday - Duration::weeks(i64::from(n)), monday, Span::Days)
            }
            "bulan" | "month" => {
                let start = first_of(today.year(), today.month());
                (start - Months::new(n), start, Span::Days)
            }
            _ => {
                let start = first_of(today.year(), 1);
                (first_of(today.year() - n as i32, 1), start, Span::Days)
            }
        };
        let name = match unit.trim_end_matches('s') {
            "hari" | "day" => label(&format!("{n} hari terakhir"), &format!("the last {n} days")),
            "minggu" | "pekan" | "week" => label(
                &format!("{n} minggu terakhir"),
                &format!("the last {n} weeks"),
            ),
            "bulan" | "month" => label(
                &format!("{n} bulan terakhir"),
                &format!("the last {n} months"),
            ),
            _ => label(
                &format!("{n} tahun terakhir"),
                &format!("the last {n} years"),
            ),
        };
        if free(&found, &m.range()) {
            found.push((
                m.range(),
                Period {
                    from,
                    to,
                    span,
                    name,
                },
            ));
        }
    }
    // Before the relative words, so "November last year" is one period.
    for c in p.month.captures_iter(text) {
        let m = c.get(0).expect("match");
        let word = &c[1];
        // "may" is a month only with a year ("may 2026"); "mar", "jun"… need "bulan" or a year
        // when they could be words of their own.
        if matches!(
            word,
            "may" | "mar" | "des" | "jan" | "jun" | "jul" | "sep" | "apr" | "agu"
        ) && c.get(2).is_none()
            && !m.as_str().starts_with("bulan")
        {
            continue;
        }
        let Some(month) = month_of(word) else {
            continue;
        };
        let year = year_or(c.get(2), month);
        if free(&found, &m.range()) {
            let name = Label {
                id: format!("{} {year}", month_name(Lang::Id, month - 1, false)),
                en: format!("{} {year}", month_name(Lang::En, month - 1, false)),
            };
            found.push((m.range(), whole_month(first_of(year, month), Some(name))));
        }
    }
    for c in p.relative.captures_iter(text) {
        let m = c.get(0).expect("match");
        if !free(&found, &m.range()) {
            continue;
        }
        let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
        let month = first_of(today.year(), today.month());
        let year = first_of(today.year(), 1);
        let day = Duration::days(1);
        let period = match &c[1] {
            "hari ini" | "today" => one_day(today, label("hari ini", "today")),
            "kemarin" | "yesterday" => one_day(today - day, label("kemarin", "yesterday")),
            "besok" | "tomorrow" => one_day(today + day, label("besok", "tomorrow")),
            "lusa" => one_day(today + day + day, label("lusa", "the day after tomorrow")),
            "minggu ini" | "pekan ini" | "this week" => {
                week(monday, label("minggu ini", "this week"))
            }
            "minggu lalu" | "minggu kemarin" | "pekan lalu" | "last week" => week(
                monday - Duration::weeks(1),
                label("minggu lalu", "last week"),
            ),
            "minggu depan" | "pekan depan" | "next week" => week(
                monday + Duration::weeks(1),
                label("minggu depan", "next week"),
            ),
            "bulan ini" | "this month" | "month to date" | "mtd" => this_month(today),
            "bulan lalu" | "bulan kemarin" | "last month" | "previous month" => {
                whole_month(month - Months::new(1), label("bulan lalu", "last month"))
            }
            "bulan depan" | "next month" => {
                whole_month(month + Months::new(1), label("bulan depan", "next month"))
            }
            "tahun ini" | "this year" | "year to date" | "ytd" => {
                whole_year(year, label("tahun ini", "this year"))
            }
            _ => whole_year(year - Months::new(12), label("tahun lalu", "last year")),
        };
        found.push((m.range(), period));
    }
    for c in p.year.captures_iter(text) {
        let m = c.get(0).expect("match");
        let Some(y) = c[1].parse::<i32>().ok() else {
            continue;
        };
        if free(&found, &m.range()) {
            let name = y.to_string();
            found.push((m.range(), whole_year(first_of(y, 1), label(&name, &name))));
        }
    }
    found.sort_by_key(|(r, _)| r.start);
    found
}

/// This calendar month ("bulan ini"), the period a flow answers when none is named.
pub fn this_month(today: NaiveDate) -> Period {
    whole_month(
        first_of(today.year(), today.month()),
        label("bulan ini", "this month"),
    )
}

fn one_day(d: NaiveDate, name: Option<Label>) -> Period {
    Period {
        from: d,
        to: d + Duration::days(1),
        span: Span::Day,
        name,
    }
}

fn days(from: NaiveDate, last: NaiveDate) -> Period {
    Period {
        from,
        to: last + Duration::days(1),
        span: Span::Days,
        name: None,
    }
}

fn week(monday: NaiveDate, name: Option<Label>) -> Period {
    Period {
        from: monday,
        to: monday + Duration::weeks(1),
        span: Span::Week,
        name,
    }
}

fn whole_month(first: NaiveDate, name: Option<Label>) -> Period {
    Period {
        from: first,
        to: first + Months::new(1),
        span: Span::Month,
        name,
    }
}

fn whole_year(first: NaiveDate, name: Option<Label>) -> Period {
    Period {
        from: first,
        to: first + Months::new(12),
        span: Span::Year,
        name,
    }
}

/// The period `current` is compared with by default, like for like: a running period is cut
/// at today and compared with the same days of the period before (month to date against the
/// same days of last month); a finished one with the whole one before.
pub fn previous(current: &Period, today: NaiveDate) -> (Period, Period) {
    let running = current.running(today);
    let cur = current.to_date(today);
    let shift = |d: NaiveDate| -> NaiveDate {
        match current.span {
            Span::Day => d - Duration::days(1),
            Span::Week => d - Duration::weeks(1),
            Span::Month => d - Months::new(1),
            Span::Quarter => d - Months::new(3),
            Span::Year => d - Months::new(12),
            Span::Days => d - (current.to - current.from),
        }
    };
    let before_from = shift(current.from);
    let (before_to, span) = if running {
        let elapsed = cur.to - cur.from;
        ((before_from + elapsed).min(current.from), Span::Days)
    } else {
        (
            shift(current.to).max(before_from + Duration::days(1)),
            current.span,
        )
    };
    let name = match (current.span, running) {
        (Span::Month, false) | (Span::Month, true) => label("bulan sebelumnya", "the month before"),
        (Span::Week, _) => label("minggu sebelumnya", "the week before"),
        (Span::Quarter, _) => label("kuartal sebelumnya", "the quarter before"),
        (Span::Year, _) => label("tahun sebelumnya", "the year before"),
        (Span::Day, _) => label("hari sebelumnya", "the day before"),
        (Span::Days, _) => label("periode sebelumnya", "the period before"),
    };
    (
        cur,
        Period {
            from: before_from,
            to: before_to,
            span,
            name,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn one(text: &str, today: NaiveDate) -> Period {
        let found = find(text, today);
        assert_eq!(found.len(), 1, "{text}: {found:?}");
        found[0].1.clone()
    }

    #[test]
    fn the_issue_forms_are_read() {
        let today = d(2026, 12, 2);
        let cases: &[(&str, NaiveDate, NaiveDate)] = &[
            ("omzet hari ini", d(2026, 12, 2), d(2026, 12, 3)),
            ("kemarin", d(2026, 12, 1), d(2026, 12, 2)),
            ("minggu ini", d(2026, 11, 30), d(2026, 12, 7)),
            ("last week", d(2026, 11, 23), d(2026, 11, 30)),
            ("bulan ini", d(2026, 12, 1), d(2027, 1, 1)),
            ("mtd", d(2026, 12, 1), d(2027, 1, 1)),
            ("bulan lalu", d(2026, 11, 1), d(2026, 12, 1)),
            ("kuartal lalu", d(2026, 7, 1), d(2026, 10, 1)),
            ("this quarter", d(2026, 10, 1), d(2027, 1, 1)),
            ("q3", d(2026, 7, 1), d(2026, 10, 1)),
            ("kuartal 4 2025", d(2025, 10, 1), d(2026, 1, 1)),
            ("q3 tahun lalu", d(2025, 7, 1), d(2025, 10, 1)),
            ("november last year", d(2025, 11, 1), d(2025, 12, 1)),
            ("bulan maret tahun ini", d(2026, 3, 1), d(2026, 4, 1)),
            ("5 nov tahun lalu", d(2025, 11, 5), d(2025, 11, 6)),
            ("ytd", d(2026, 1, 1), d(2027, 1, 1)),
            ("tahun lalu", d(2025, 1, 1), d(2026, 1, 1)),
            ("7 hari terakhir", d(2026, 11, 26), d(2026, 12, 3)),
            ("last 3 months", d(2026, 9, 1), d(2026, 12, 1)),
            ("6 bulan terakhir", d(2026, 6, 1), d(2026, 12, 1)),
            ("november", d(2026, 11, 1), d(2026, 12, 1)),
            ("nov 2025", d(2025, 11, 1), d(2025, 12, 1)),
            ("2025", d(2025, 1, 1), d(2026, 1, 1)),
            ("1-15 nov", d(2026, 11, 1), d(2026, 11, 16)),
            ("tgl 5 s/d 10", d(2026, 12, 5), d(2026, 12, 11)),
            ("5 november 2026", d(2026, 11, 5), d(2026, 11, 6)),
            ("besok", d(2026, 12, 3), d(2026, 12, 4)),
            ("minggu depan", d(2026, 12, 7), d(2026, 12, 14)),
            ("2 minggu lalu", d(2026, 11, 16), d(2026, 11, 23)),
            ("3 bulan yang lalu", d(2026, 9, 1), d(2026, 10, 1)),
            ("2 days ago", d(2026, 11, 30), d(2026, 12, 1)),
        ];
        for (text, from, to) in cases {
            let p = one(text, today);
            assert_eq!((p.from, p.to), (*from, *to), "{text}");
        }
        // A month not yet begun this year is last year's.
        assert_eq!(one("desember", d(2026, 11, 20)).from, d(2025, 12, 1));
        // Numbers that are not periods.
        assert!(find("piutang lebih dari 30 hari", today).is_empty());
        assert!(find("may i see the stock", today).is_empty());
    }

    #[test]
    fn comparisons_are_like_for_like() {
        let today = d(2026, 12, 2);
        let (cur, before) = previous(&one("bulan ini", today), today);
        assert_eq!((cur.from, cur.to), (d(2026, 12, 1), d(2026, 12, 3)));
        assert_eq!((before.from, before.to), (d(2026, 11, 1), d(2026, 11, 3)));
        let (cur, before) = previous(&one("bulan lalu", today), today);
        assert_eq!((cur.from, cur.to), (d(2026, 11, 1), d(2026, 12, 1)));
        assert_eq!((before.from, before.to), (d(2026, 10, 1), d(2026, 11, 1)));
        let (_, before) = previous(&one("ytd", today), today);
        assert_eq!((before.from, before.to), (d(2025, 1, 1), d(2025, 12, 3)));
        // 31 March to date against February: capped at February's end.
        let today = d(2026, 3, 31);
        let (_, before) = previous(&one("bulan ini", today), today);
        assert_eq!((before.from, before.to), (d(2026, 2, 1), d(2026, 3, 1)));
    }

    #[test]
    fn windows_say_their_dates() {
        let today = d(2026, 12, 2);
        let w = previous(&one("bulan ini", today), today).0.window();
        assert_eq!(w.label.id, "bulan ini (1–2 Des 2026)");
        let w = one("bulan lalu", today).window();
        assert_eq!(w.label.id, "bulan lalu (November 2026)");
        assert_eq!(w.label.en, "last month (November 2026)");
        assert_eq!(one("q3", today).window().label.en, "Q3 2026");
    }
}
