//! A result drawn as a PNG: a trend as a line over its buckets, a breakdown or ranking as
//! horizontal bars (the comparison period in grey beside each). Drawn in the process with the
//! font shipped in `assets/fonts` (no system fonts, no browser), labels in the asker's language,
//! rupiah the Indonesian way. [`caption`] holds the key figures in words, complete on its own.

use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;

use super::catalogue::{Catalogue, Kind, Measure, Unit};
use super::render::{self, NameOf};
use super::run::{Row, Rows};
use super::spec::{Group, Shape, Spec};
use crate::texts::Lang;

/// Size of every chart, in pixels (16:9, sharp on a phone).
pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 540;
/// Bars a breakdown shows, as many as its text answer lists.
const MAX_BARS: usize = 15;
/// Buckets a trend draws at most (the row cap allows no more); a longer one is not drawn.
const MAX_BUCKETS: usize = 500;
/// Buckets whose values are written beside their points.
const MAX_POINT_LABELS: usize = 12;
/// Meta's limit for an image caption, in characters.
pub const CAPTION_LIMIT: usize = 1024;

const FAMILY: &str = "sans-serif";
const INK: RGBColor = RGBColor(33, 37, 41);
const MUTED: RGBColor = RGBColor(108, 117, 125);
const GRID: RGBColor = RGBColor(226, 230, 234);
const PRIMARY: RGBColor = RGBColor(31, 111, 178);
const NEGATIVE: RGBColor = RGBColor(192, 57, 43);
const EARLIER: RGBColor = RGBColor(184, 194, 204);

/// A drawn answer: the PNG and its caption.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub png: Vec<u8>,
    pub caption: String,
}

/// Whether the answer to `spec` is drawn: a trend of two or more buckets always (it is easier
/// seen than read), a breakdown or ranking of two or more values when the asker asked for a
/// chart ("grafik", "chart"), a single figure never.
pub fn wanted(spec: &Spec, rows: &Rows, asked: bool) -> bool {
    let points = rows
        .rows
        .iter()
        .filter(|r| r.current && r.values.first().copied().flatten().is_some())
        .count();
    match spec.shape() {
        // A trend cut at the row cap would end early: its latest buckets are missing.
        Shape::Trend => points >= 2 && !rows.truncated,
        Shape::Breakdown | Shape::Ranking => asked && points >= 2,
        Shape::Figure => false,
    }
}

/// The chart of `rows` for `spec` (its first measure), in `lang`; `as_of` is printed at the
/// foot. `None` when there is nothing to draw.
pub fn draw(
    catalogue: &Catalogue,
    spec: &Spec,
    rows: &Rows,
    lang: Lang,
    name_of: NameOf<'_>,
    as_of: &str,
    today: NaiveDate,
) -> anyhow::Result<Option<Chart>> {
    let Some(measure) = spec.measures.first().and_then(|m| catalogue.measure(m)) else {
        return Ok(None);
    };
    let Some(series) = Series::of(catalogue, spec, rows, lang, today) else {
        return Ok(None);
    };
    fonts()?;
    let title = describe_first(catalogue, spec, lang, name_of);
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        let frame = Frame {
            root: &root,
            measure,
            lang,
        };
        let foot = match series.running {
            Some(through) => Some(match lang {
                Lang::Id => format!("* berjalan, s.d. {}", day_month(through, lang)),
                Lang::En => format!("* so far, to {}", day_month(through, lang)),
            }),
            // What stands now, grouped by its date: not a history.
            None => render::state_by_time(catalogue, spec).map(|(_, dated)| {
                match (lang, dated.map(|d| d.get(lang))) {
                    (Lang::Id, Some(d)) => {
                        format!("posisi saat ini menurut tanggal {d}, bukan riwayat")
                    }
                    (Lang::En, Some(d)) => format!("as it stands now, by {d} date; not a history"),
                    (Lang::Id, None) => "posisi saat ini, bukan riwayat".to_owned(),
                    (Lang::En, None) => "as it stands now; not a history".to_owned(),
                }
            }),
        };
        frame.heading(&title, as_of, foot.as_deref())?;
        match spec.shape() {
            Shape::Trend => frame.line(&series)?,
            _ => frame.bars(&series, spec)?,
        }
        root.present().map_err(|e| anyhow!("{e}"))?;
    }
    let png = encode(&pixels)?;
    Ok(Some(Chart {
        png,
        caption: caption(
            catalogue,
            spec,
            measure,
            &series,
            rows.truncated,
            lang,
            name_of,
        ),
    }))
}

/// The key figures in words, for the image's caption: what is drawn, then for a trend the last
/// bucket (and its change from the one before), the highest and the lowest; for a breakdown the
/// highest and the lowest and how many there are. Complete without the picture.
fn caption(
    catalogue: &Catalogue,
    spec: &Spec,
    measure: &Measure,
    series: &Series,
    truncated: bool,
    lang: Lang,
    name_of: NameOf<'_>,
) -> String {
    let title = render::cap(&describe_first(catalogue, spec, lang, name_of));
    let shown = |v: f64| render::value(measure, Decimal::from_f64(v), lang);
    let known: Vec<(usize, f64)> = series
        .values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    // A bucket not whole (this month so far, part of a first week) is neither the highest nor
    // the lowest, and is not set against a whole one.
    let last = series.values.len() - 1;
    let whole: Vec<(usize, f64)> = known
        .iter()
        .copied()
        .filter(|&(i, _)| !(i == last && series.running.is_some()))
        .filter(|&(i, _)| !(i == 0 && series.partial_first))
        .collect();
    let ranked = if whole.is_empty() { &known } else { &whole };
    let Some(&(first, _)) = ranked.first() else {
        return title;
    };
    let (mut high, mut low) = (first, first);
    for &(i, v) in ranked {
        if v > series.values[high].unwrap_or(f64::MIN) {
            high = i;
        }
        if v < series.values[low].unwrap_or(f64::MAX) {
            low = i;
        }
    }
    let (w_last, w_high, w_low, w_from, w_of) = match lang {
        Lang::Id => ("Terakhir", "Tertinggi", "Terendah", "dari", "dari"),
        Lang::En => ("Latest", "Highest", "Lowest", "from", "of"),
    };
    let at = |i: usize| {
        format!(
            "{} ({})",
            shown(series.values[i].unwrap_or(0.0)),
            series.labels[i]
        )
    };
    let mut lines = vec![format!("📈 {title}")];
    let snapshot = render::snapshot_by_time(catalogue, spec, lang);
    if let Some(note) = &snapshot {
        // Buckets of what stands now by its date: no "latest", no change from one to the next.
        lines.push(note.clone());
    } else if spec.shape() == Shape::Trend {
        if let (Some(through), Some(now)) = (series.running, series.values[last]) {
            lines.push(match lang {
                Lang::Id => format!(
                    "Berjalan: {} ({}, s.d. {})",
                    shown(now),
                    series.labels[last],
                    day_month(through, lang)
                ),
                Lang::En => format!(
                    "So far: {} ({}, to {})",
                    shown(now),
                    series.labels[last],
                    day_month(through, lang)
                ),
            });
        }
        if let Some(&(latest, now)) = whole.last() {
            let mut line = format!("{w_last}: {}", at(latest));
            // Set against the whole bucket before it, named (a gap may lie between).
            if let Some(&(earlier, before)) = whole.iter().rev().nth(1) {
                if before == 0.0 {
                    line.push_str(&format!(", {w_from} {}", at(earlier)));
                } else {
                    let change = render::change(
                        measure,
                        Decimal::from_f64(now),
                        Decimal::from_f64(before),
                        lang,
                    );
                    line.push_str(&format!(", {change} {w_from} {}", at(earlier)));
                }
            }
            lines.push(line);
        }
    } else {
        let count = series.labels.len();
        let dim = match &spec.group_by {
            Some(Group::Dim(d)) => catalogue.dimension(d).map(|d| d.label.get(lang).to_owned()),
            _ => None,
        };
        if let Some(dim) = dim {
            // Cut at the row cap: there are more than were read.
            let more = if truncated { "+" } else { "" };
            let total = format!("{}{more}", series.total.max(count));
            lines.push(match lang {
                Lang::Id => format!("{count} {w_of} {total} {dim} ditampilkan"),
                Lang::En => format!("{count} {w_of} {total} shown (by {dim})"),
            });
        }
    }
    lines.push(format!("{w_high}: {} · {w_low}: {}", at(high), at(low)));
    let text = lines.join("\n");
    match text.char_indices().nth(CAPTION_LIMIT - 1) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// How the first measure was asked, without the others (the chart draws only the first).
fn describe_first(catalogue: &Catalogue, spec: &Spec, lang: Lang, name_of: NameOf<'_>) -> String {
    let first = Spec {
        measures: spec.measures.iter().take(1).cloned().collect(),
        ..spec.clone()
    };
    render::describe(catalogue, &first, lang, name_of)
}

/// What is drawn: one label and value of the first measure per bucket or group, in the order
/// the text answer lists them, with the comparison's value where there is one.
struct Series {
    labels: Vec<String>,
    values: Vec<Option<f64>>,
    earlier: Option<Vec<Option<f64>>>,
    /// Groups in the result, shown or not.
    total: usize,
    /// For a trend whose last bucket is not whole (it holds today, or the period ends inside
    /// it): the last day it counts.
    running: Option<NaiveDate>,
    /// A trend's first bucket starts before the period (part of a week).
    partial_first: bool,
}

impl Series {
    fn of(
        catalogue: &Catalogue,
        spec: &Spec,
        rows: &Rows,
        lang: Lang,
        today: NaiveDate,
    ) -> Option<Series> {
        let measure = spec.measures.first().and_then(|m| catalogue.measure(m));
        let flows = measure.is_some_and(|m| m.kind == Kind::Flow);
        let current: Vec<&Row> = rows.rows.iter().filter(|r| r.current).collect();
        if current.is_empty() || spec.shape() == Shape::Figure {
            return None;
        }
        let first = |r: &Row| r.values.first().copied().flatten().and_then(|v| v.to_f64());
        let earlier_of = |key: &Option<String>| {
            rows.rows
                .iter()
                .find(|e| !e.current && &e.key == key)
                .and_then(first)
        };
        if let (Shape::Trend, Some(Group::Time(g)), Some(period)) =
            (spec.shape(), &spec.group_by, &spec.period)
        {
            // Every bucket of the period, those without a row too: no orders in a month is a
            // zero of revenue (an undefined rate is a gap in the line), and the buckets stay
            // evenly spaced in time.
            let zero = flows
                && measure
                    .is_some_and(|m| matches!(m.unit, Unit::Money | Unit::Quantity | Unit::Count));
            let missing = if zero { Some(0.0) } else { None };
            let mut starts = Vec::new();
            let mut start = g.start(period.from);
            while start < period.to {
                if starts.len() == MAX_BUCKETS {
                    return None;
                }
                starts.push(start);
                start = g.end(start);
            }
            let keys: Vec<Option<String>> = starts.iter().map(|d| Some(d.to_string())).collect();
            let labels = keys
                .iter()
                .map(|k| render::bucket(k.as_deref().unwrap_or("-"), *g, lang))
                .collect();
            let values = keys
                .iter()
                .map(|k| match current.iter().find(|r| &r.key == k) {
                    Some(r) => first(r),
                    None => missing,
                })
                .collect();
            let earlier = spec
                .compare
                .as_ref()
                .map(|_| keys.iter().map(|k| earlier_of(k).or(missing)).collect());
            // The bucket holding today, or cut by the period's end, is not a whole one; nor is
            // a first bucket that starts before the period.
            let holds_today = |s: NaiveDate| s <= today && today < g.end(s);
            let running = starts
                .last()
                .filter(|s| flows && (g.end(**s) > period.to || holds_today(**s)))
                .and_then(|_| period.to.pred_opt())
                .map(|last_day| last_day.min(today));
            let partial_first = flows && starts.first().is_some_and(|s| *s < period.from);
            return Some(Series {
                labels,
                values,
                earlier,
                total: starts.len(),
                running,
                partial_first,
            });
        }
        let total = current.len();
        let mut shown = current;
        if let (Shape::Ranking, Some(top)) = (spec.shape(), spec.top) {
            shown.truncate(top.n as usize);
        }
        if spec.shape() != Shape::Trend {
            shown.truncate(MAX_BARS);
        }
        let labels = shown
            .iter()
            .map(|r| match &spec.group_by {
                Some(Group::Time(g)) => render::bucket(r.key.as_deref().unwrap_or("-"), *g, lang),
                _ => r
                    .label
                    .clone()
                    .unwrap_or_else(|| render::none_label(lang).to_owned()),
            })
            .collect();
        let values = shown.iter().map(|r| first(r)).collect();
        let earlier = spec
            .compare
            .as_ref()
            .map(|_| shown.iter().map(|r| earlier_of(&r.key)).collect());
        Some(Series {
            labels,
            values,
            earlier,
            total,
            running: None,
            partial_first: false,
        })
    }

    /// The smallest and largest value drawn, zero included (bars and lines start at zero).
    fn range(&self) -> (f64, f64) {
        let all = self
            .values
            .iter()
            .chain(self.earlier.iter().flatten())
            .flatten()
            .copied();
        let (lo, hi) = all.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if (hi - lo).abs() < f64::EPSILON {
            (lo, lo + 1.0)
        } else {
            (lo, hi)
        }
    }
}

/// "3 Des", "3 Dec".
fn day_month(d: NaiveDate, lang: Lang) -> String {
    format!(
        "{} {}",
        d.day(),
        crate::texts::month_name(lang, d.month0(), true)
    )
}

/// The shipped font, registered once for the process.
fn fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let regular: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
            let bold: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");
            plotters::style::register_font(FAMILY, FontStyle::Normal, regular)
                .and_then(|()| plotters::style::register_font(FAMILY, FontStyle::Bold, bold))
                .map_err(|_| "the font shipped in assets/fonts does not load".to_owned())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// The shipped font at `size` pixels.
fn font(size: f64, bold: bool) -> FontDesc<'static> {
    let style = if bold {
        FontStyle::Bold
    } else {
        FontStyle::Normal
    };
    FontDesc::new(FontFamily::Name(FAMILY), size, style)
}

/// RGB pixels → PNG.
fn encode(pixels: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut png = Vec::with_capacity(64 * 1024);
    let mut encoder = png::Encoder::new(&mut png, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Default compression with per-row filters: a few milliseconds, half the bytes of Fast.
    encoder.set_compression(png::Compression::Default);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    let mut writer = encoder.write_header().context("writing the PNG header")?;
    writer
        .write_image_data(pixels)
        .context("writing the PNG data")?;
    writer.finish().context("finishing the PNG")?;
    Ok(png)
}

type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;

/// One chart being drawn.
struct Frame<'a, 'b> {
    root: &'a Area<'b>,
    measure: &'a Measure,
    lang: Lang,
}

/// Where the plot sits, in pixels.
const PLOT_TOP: i32 = 96;
const PLOT_BOTTOM: i32 = HEIGHT as i32 - 70;
const RIGHT: i32 = WIDTH as i32 - 40;

impl Frame<'_, '_> {
    fn text(
        &self,
        s: &str,
        (x, y): (i32, i32),
        size: f64,
        bold: bool,
        color: &'static RGBColor,
        pos: Pos,
    ) -> anyhow::Result<()> {
        let font = font(size, bold).color(color).pos(pos);
        self.root
            .draw(&Text::new(s.to_owned(), (x, y), font))
            .map_err(|e| anyhow!("{e}"))
    }

    fn rect(
        &self,
        (x0, y0): (i32, i32),
        (x1, y1): (i32, i32),
        color: &RGBColor,
    ) -> anyhow::Result<()> {
        self.root
            .draw(&Rectangle::new([(x0, y0), (x1, y1)], color.filled()))
            .map_err(|e| anyhow!("{e}"))
    }

    fn value(&self, v: f64) -> String {
        render::value(self.measure, Decimal::from_f64(v), self.lang)
    }

    /// The title, and the data's time at the foot.
    fn heading(&self, title: &str, as_of: &str, note: Option<&str>) -> anyhow::Result<()> {
        let left = Pos::new(HPos::Left, VPos::Top);
        // A long title ("… dibanding bulan lalu (…)") gets a smaller type before it is cut.
        let title = render::cap(title);
        let size = if title.chars().count() <= 58 {
            26.0
        } else {
            20.0
        };
        self.text(&fit(&title, 86), (32, 24), size, true, &INK, left)?;
        let mut foot = match self.lang {
            Lang::Id => format!("Sentient Hub · data per {as_of}"),
            Lang::En => format!("Sentient Hub · data as of {as_of}"),
        };
        if let Some(note) = note {
            foot.push_str(" · ");
            foot.push_str(note);
        }
        self.text(
            &foot,
            (32, HEIGHT as i32 - 28),
            14.0,
            false,
            &MUTED,
            Pos::new(HPos::Left, VPos::Center),
        )
    }

    /// A trend: gridlines at round values, the line with its points, the buckets below.
    fn line(&self, s: &Series) -> anyhow::Result<()> {
        let (lo, hi) = s.range();
        let ticks = ticks(lo, hi);
        let (lo, hi) = (ticks[0].min(lo), ticks[ticks.len() - 1].max(hi));
        let left = 150;
        let y = |v: f64| {
            PLOT_BOTTOM - ((v - lo) / (hi - lo) * f64::from(PLOT_BOTTOM - PLOT_TOP)) as i32
        };
        for &t in &ticks {
            let ty = y(t);
            self.rect((left, ty), (RIGHT, ty + 1), &GRID)?;
            self.text(
                &self.value(t),
                (left - 10, ty),
                15.0,
                false,
                &MUTED,
                Pos::new(HPos::Right, VPos::Center),
            )?;
        }
        let n = s.values.len();
        let step = f64::from(RIGHT - left - 40) / (n.max(2) - 1) as f64;
        let x = |i: usize| left + 20 + (i as f64 * step) as i32;
        let every = n.div_ceil(12).max(1);
        for (i, label) in s.labels.iter().enumerate() {
            if i % every == 0 || i == n - 1 {
                let star = if i == n - 1 && s.running.is_some() {
                    "*"
                } else {
                    ""
                };
                self.text(
                    &format!("{}{star}", fit(label, 14)),
                    (x(i), PLOT_BOTTOM + 14),
                    14.0,
                    false,
                    &INK,
                    Pos::new(HPos::Center, VPos::Top),
                )?;
            }
        }
        // The line breaks where a bucket has no value.
        let mut run: Vec<(i32, i32)> = Vec::new();
        let mut runs = Vec::new();
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => run.push((x(i), y(*v))),
                None => runs.push(std::mem::take(&mut run)),
            }
        }
        runs.push(run);
        for r in runs.into_iter().filter(|r| r.len() > 1) {
            self.root
                .draw(&PathElement::new(r, PRIMARY.stroke_width(3)))
                .map_err(|e| anyhow!("{e}"))?;
        }
        for (i, v) in s.values.iter().enumerate() {
            let Some(v) = v else { continue };
            let color = if *v < 0.0 { NEGATIVE } else { PRIMARY };
            self.root
                .draw(&Circle::new((x(i), y(*v)), 5, color.filled()))
                .map_err(|e| anyhow!("{e}"))?;
            if n <= MAX_POINT_LABELS {
                // On a white patch, so the line never runs through the figure.
                let label = self.value(*v);
                let (cx, bottom) = (x(i), y(*v) - 12);
                let (w, h) = self
                    .root
                    .estimate_text_size(&label, &font(13.0, false).into())
                    .map_err(|e| anyhow!("{e}"))?;
                let (w, h) = (w as i32, h as i32);
                self.rect(
                    (cx - w / 2 - 3, bottom - h - 2),
                    (cx + w / 2 + 3, bottom + 2),
                    &WHITE,
                )?;
                self.text(
                    &label,
                    (cx, bottom),
                    13.0,
                    false,
                    &INK,
                    Pos::new(HPos::Center, VPos::Bottom),
                )?;
            }
        }
        Ok(())
    }

    /// One legend entry at `x` (a swatch, then its label); returns where the next one starts.
    fn legend_item(&self, x: i32, color: &RGBColor, label: &str) -> anyhow::Result<i32> {
        let y = PLOT_TOP - 30;
        self.rect((x, y - 6), (x + 14, y + 6), color)?;
        let label = render::cap(label);
        self.text(
            &label,
            (x + 20, y),
            14.0,
            false,
            &INK,
            Pos::new(HPos::Left, VPos::Center),
        )?;
        Ok(x + 40 + label.chars().count() as i32 * 9)
    }

    /// A breakdown or ranking: one bar per group, largest first as the text lists them, the
    /// comparison period's bar in grey below each.
    fn bars(&self, s: &Series, spec: &Spec) -> anyhow::Result<()> {
        let (lo, hi) = s.range();
        let label_right = 290;
        let (bar_left, bar_right) = (label_right + 14, RIGHT - 130);
        let x = |v: f64| bar_left + ((v - lo) / (hi - lo) * f64::from(bar_right - bar_left)) as i32;
        let zero = x(0.0);
        let n = s.labels.len() as i32;
        let slot = (f64::from(PLOT_BOTTOM - PLOT_TOP) / f64::from(n)).min(44.0);
        let lead = |i: usize| match spec.shape() {
            Shape::Ranking => format!("{}. ", i + 1),
            _ => String::new(),
        };
        if let (Some(period), Some(compare)) = (&spec.period, &spec.compare) {
            // The legend: which bar is which period.
            let next = self.legend_item(bar_left, &PRIMARY, period.label.get(self.lang))?;
            self.legend_item(next, &EARLIER, compare.label.get(self.lang))?;
        }
        for (i, label) in s.labels.iter().enumerate() {
            let top = PLOT_TOP + (i as f64 * slot) as i32;
            let middle = top + (slot / 2.0) as i32;
            let name = format!("{}{}", lead(i), fit(label, 28));
            self.text(
                &name,
                (label_right, middle),
                15.0,
                false,
                &INK,
                Pos::new(HPos::Right, VPos::Center),
            )?;
            let height = (slot * 0.7) as i32;
            let (bar_top, bar_bottom) = match &s.earlier {
                Some(_) => (middle - height / 2, middle + height / 6),
                None => (middle - height / 2, middle + height / 2),
            };
            match s.values[i] {
                Some(v) => {
                    let end = x(v);
                    let color = if v < 0.0 { NEGATIVE } else { PRIMARY };
                    self.rect(
                        (zero.min(end), bar_top),
                        (zero.max(end).max(zero.min(end) + 1), bar_bottom),
                        &color,
                    )?;
                    self.text(
                        &self.value(v),
                        (zero.max(end) + 8, (bar_top + bar_bottom) / 2),
                        14.0,
                        false,
                        &INK,
                        Pos::new(HPos::Left, VPos::Center),
                    )?;
                }
                None => {
                    let none = render::value(self.measure, None, self.lang);
                    self.text(
                        &none,
                        (zero + 8, middle),
                        14.0,
                        false,
                        &MUTED,
                        Pos::new(HPos::Left, VPos::Center),
                    )?;
                }
            }
            if let Some(Some(v)) = s.earlier.as_ref().map(|e| e[i]) {
                let end = x(v);
                self.rect(
                    (zero.min(end), bar_bottom + 2),
                    (zero.max(end).max(zero.min(end) + 1), middle + height / 2),
                    &EARLIER,
                )?;
            }
        }
        self.rect((zero, PLOT_TOP - 4), (zero + 1, PLOT_BOTTOM), &MUTED)
    }
}

/// Round gridline values covering `lo..=hi`: four to six steps of 1, 2 or 5 × 10ⁿ.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let start = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = start;
    while t <= hi + step * 0.999 && out.len() < 12 {
        out.push(t);
        t += step;
    }
    out
}

/// `text` cut to `max` characters, a cut marked with an ellipsis.
fn fit(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text.chars().count() > max => format!("{}…", &text[..cut]),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 1_234_000_000.0);
        assert_eq!(t[0], 0.0);
        assert!(*t.last().unwrap() >= 1_234_000_000.0);
        assert!(t.len() >= 4 && t.len() <= 8, "{t:?}");
        let step = t[1] - t[0];
        assert!([1e8, 2e8, 5e8].contains(&step), "{step}");
        let t = ticks(-350.0, 800.0);
        assert!(t[0] <= -350.0 && *t.last().unwrap() >= 800.0, "{t:?}");
    }

    use crate::metrics::catalogue::{Label, CATALOGUE};
    use crate::metrics::spec::{Grain, Window};

    fn label(s: &str) -> Label {
        Label {
            id: s.into(),
            en: s.into(),
        }
    }

    fn row(key: &str, name: &str, current: bool, v: i64) -> Row {
        Row {
            key: Some(key.into()),
            label: Some(name.into()),
            current,
            values: vec![Some(Decimal::from(v))],
        }
    }

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn monthly_revenue(months: u32, to: &str) -> (Spec, Rows) {
        let from = date("2025-01-01");
        let rows = (0..months)
            .map(|i| {
                let key = from + chrono::Months::new(i);
                row(
                    &key.to_string(),
                    "",
                    true,
                    700_000_000 + i64::from(i % 5) * 90_000_000,
                )
            })
            .collect();
        let spec = Spec {
            measures: vec!["revenue".into()],
            group_by: Some(Group::Time(Grain::Month)),
            filters: vec![],
            period: Some(Window {
                from,
                to: date(to),
                label: label("periode"),
            }),
            compare: None,
            top: None,
        };
        (
            spec,
            Rows {
                rows,
                truncated: false,
            },
        )
    }

    fn valid_png(chart: &Chart) {
        let decoder = png::Decoder::new(chart.png.as_slice());
        let reader = decoder.read_info().expect("a PNG");
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
        assert!(chart.png.len() < 150 * 1024, "{} bytes", chart.png.len());
    }

    #[test]
    fn a_trend_is_a_small_valid_png_and_its_caption_sets_whole_months_against_each_other() {
        // Twelve months drawn, the last one (December) running to the 3rd.
        let (spec, rows) = monthly_revenue(12, "2025-12-04");
        let chart = draw(
            &CATALOGUE,
            &spec,
            &rows,
            Lang::Id,
            &|_| None,
            "03-12-2025 08:00 WIB",
            date("2025-12-03"),
        )
        .unwrap()
        .expect("a chart");
        valid_png(&chart);
        let lines: Vec<&str> = chart.caption.lines().collect();
        assert_eq!(
            lines[1], "Berjalan: Rp 790 jt (Des 2025, s.d. 3 Des)",
            "{lines:?}"
        );
        // November (i = 10 → 700 + 0) against October (i = 9 → 700 + 4·90).
        assert!(
            lines[2].starts_with("Terakhir: Rp 700 jt (Nov 2025)"),
            "{lines:?}"
        );
        assert!(lines[2].ends_with("dari Rp 1,06 M (Okt 2025)"), "{lines:?}");
        assert_eq!(
            lines[3],
            "Tertinggi: Rp 1,06 M (Mei 2025) · Terendah: Rp 700 jt (Jan 2025)"
        );
        // Twenty-four whole months: nothing running, the last month is the latest.
        let (spec, rows) = monthly_revenue(24, "2027-01-01");
        let chart = draw(
            &CATALOGUE,
            &spec,
            &rows,
            Lang::En,
            &|_| None,
            "now",
            date("2027-01-05"),
        )
        .unwrap()
        .expect("a chart");
        valid_png(&chart);
        assert!(!chart.caption.contains("So far"), "{}", chart.caption);
        assert!(
            chart.caption.contains("Latest: Rp 970 jt (Dec 2026)"),
            "{}",
            chart.caption
        );
    }

    #[test]
    fn empty_buckets_are_zero_today_is_not_whole_and_a_cut_trend_is_not_drawn() {
        // Daily revenue over 1–5 March; no orders on the 2nd and the 4th; today is the 5th.
        let rows = [("2025-03-01", 100), ("2025-03-03", 300), ("2025-03-05", 50)]
            .iter()
            .map(|(k, v)| row(k, "", true, *v * 1_000_000))
            .collect();
        let rows = Rows {
            rows,
            truncated: false,
        };
        let spec = Spec {
            measures: vec!["revenue".into()],
            group_by: Some(Group::Time(Grain::Day)),
            filters: vec![],
            period: Some(Window {
                from: date("2025-03-01"),
                to: date("2025-03-06"),
                label: label("periode"),
            }),
            compare: None,
            top: None,
        };
        let chart = draw(
            &CATALOGUE,
            &spec,
            &rows,
            Lang::En,
            &|_| None,
            "now",
            date("2025-03-05"),
        )
        .unwrap()
        .expect("a chart");
        let lines: Vec<&str> = chart.caption.lines().collect();
        assert!(lines[1].starts_with("So far: Rp 50 jt"), "{lines:?}");
        // The 4th had no orders: its zero is the latest whole day and the lowest.
        assert!(lines[2].starts_with("Latest: Rp 0"), "{lines:?}");
        assert!(
            lines[2].ends_with("from Rp 300 jt (3 Mar 2025)"),
            "{lines:?}"
        );
        assert!(
            lines[3].starts_with("Highest: Rp 300 jt") && lines[3].contains("Lowest: Rp 0"),
            "{lines:?}"
        );

        // A week cut at its start (the period begins on a Wednesday) is not whole either.
        let spec = Spec {
            group_by: Some(Group::Time(Grain::Week)),
            period: Some(Window {
                from: date("2025-03-05"),
                to: date("2025-03-24"),
                label: label("periode"),
            }),
            ..spec
        };
        let weeks = Rows {
            rows: [("2025-03-03", 10), ("2025-03-10", 70), ("2025-03-17", 40)]
                .iter()
                .map(|(k, v)| row(k, "", true, *v * 1_000_000))
                .collect(),
            truncated: false,
        };
        let chart = draw(
            &CATALOGUE,
            &spec,
            &weeks,
            Lang::En,
            &|_| None,
            "now",
            date("2025-04-01"),
        )
        .unwrap()
        .expect("a chart");
        assert!(
            chart.caption.contains("Lowest: Rp 40 jt"),
            "{}",
            chart.caption
        );
        let cut = Rows {
            truncated: true,
            ..weeks
        };
        assert!(
            !wanted(&spec, &cut, true),
            "a trend cut at the row cap is not drawn"
        );
    }

    #[test]
    fn a_state_by_its_due_month_is_not_read_as_a_history() {
        // "tren piutang overdue": what is overdue now, by due month, the last month running.
        let (mut spec, rows) = monthly_revenue(6, "2025-06-04");
        spec.measures = vec!["receivables_overdue".into()];
        let chart = draw(
            &CATALOGUE,
            &spec,
            &rows,
            Lang::Id,
            &|_| None,
            "now",
            date("2025-06-03"),
        )
        .unwrap()
        .expect("a chart");
        valid_png(&chart);
        let lines: Vec<&str> = chart.caption.lines().collect();
        assert!(
            !chart.caption.contains("Terakhir") && !chart.caption.contains("Berjalan"),
            "no latest, no change: {lines:?}"
        );
        assert!(
            lines[1].contains("menurut tanggal jatuh temponya, bukan riwayat"),
            "{lines:?}"
        );
        // Among all six months: May (i = 4 → 700 + 4·90) is the highest, June is not "running".
        assert_eq!(
            lines[2],
            "Tertinggi: Rp 1,06 M (Mei 2025) · Terendah: Rp 700 jt (Jan 2025)"
        );
        let text = render::render(&CATALOGUE, &spec, &rows, Lang::En, &|_| None);
        assert!(text.ends_with("(As it stands now, by due date; not a history: the history of overdue receivables is not kept yet.)"), "{text}");
    }

    #[test]
    fn a_breakdown_with_its_comparison_is_a_small_valid_png() {
        let mut rows = Vec::new();
        for i in 0..20 {
            let name = format!("Pelanggan dengan nama yang cukup panjang nomor {i}");
            rows.push(row(&format!("C{i:02}"), &name, true, 1_000_000 * (20 - i)));
            rows.push(row(&format!("C{i:02}"), &name, false, 900_000 * (20 - i)));
        }
        let window = |from: &str, to: &str| Window {
            from: date(from),
            to: date(to),
            label: label("bulan ini"),
        };
        let spec = Spec {
            measures: vec!["revenue".into()],
            group_by: Some(Group::Dim("customer".into())),
            filters: vec![],
            period: Some(window("2026-11-01", "2026-12-01")),
            compare: Some(window("2026-10-01", "2026-11-01")),
            top: None,
        };
        let rows = Rows {
            rows,
            truncated: false,
        };
        assert!(wanted(&spec, &rows, true));
        assert!(
            !wanted(&spec, &rows, false),
            "a breakdown is drawn only when asked"
        );
        let chart = draw(
            &CATALOGUE,
            &spec,
            &rows,
            Lang::Id,
            &|_| None,
            "now",
            date("2026-12-03"),
        )
        .unwrap()
        .expect("a chart");
        valid_png(&chart);
        assert!(chart.caption.contains("15 dari 20"), "{}", chart.caption);
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        assert_eq!(fit("PT Maju Jaya", 28), "PT Maju Jaya");
        assert_eq!(fit("abcdefghij", 5), "abcd…");
        assert_eq!(fit("ééééé", 5), "ééééé");
    }
}
