//! Charts end to end: a webhook in, the recorded Graph calls out (the PNG uploaded to the phone
//! number's `/media` endpoint, then an `image` message by that media id, then the text), and
//! the rows written. The caption's figures are checked against SQL written here, on the demo data.

use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::{eventually, now, spawn_app_with, text_delivery, GraphRequest, TestApp};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des",
];
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn today() -> NaiveDate {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Jakarta)
        .date_naive()
}

/// "Rp 1,33 M", "Rp 757,1 jt", "8,1%" → the number shown.
fn shown(text: &str) -> f64 {
    let text = text.trim().trim_start_matches("Rp ").trim_end_matches('%');
    let (number, scale) = match text.split_once(' ') {
        Some((n, "rb")) => (n, 1e3),
        Some((n, "jt")) => (n, 1e6),
        Some((n, "M")) => (n, 1e9),
        Some((n, "T")) => (n, 1e12),
        Some((_, unit)) => panic!("unknown unit {unit:?} in {text:?}"),
        None => (text, 1.0),
    };
    number
        .replace('.', "")
        .replace(',', ".")
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("not a figure: {text:?}"))
        * scale
}

/// The figure shown is `expected` as rounded for reading (three or four significant digits).
fn about(text: &str, expected: f64) -> bool {
    let v = shown(text);
    (v - expected).abs() <= 0.006 * expected.abs() + 0.05
}

/// A demo factory with the catalogue read, and a director whose device is confirmed.
async fn demo_app(tweak: impl FnOnce(&mut sentient_hub::config::Settings)) -> (TestApp, String) {
    let app = spawn_app_with(tweak).await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    app.stages.catalog.reload(&app.db).await.unwrap();
    let director = app.trusted_sender().await;
    (app, director)
}

/// Sends `text` from `from` and waits until `parts` messages went to them.
async fn ask(
    app: &TestApp,
    from: &str,
    wamid: &str,
    text: &str,
    parts: usize,
) -> Vec<GraphRequest> {
    let body = text_delivery(from, wamid, text, now());
    assert_eq!(app.post_webhook(&body).await.status(), 200);
    let sends = || {
        app.graph()
            .sends()
            .into_iter()
            .filter(|r| r.body["to"] == from)
            .collect::<Vec<_>>()
    };
    let done = eventually(Duration::from_secs(30), || async {
        app.settle().await;
        sends().len() >= parts
    })
    .await;
    assert!(done, "{parts} messages expected, got {:#?}", sends());
    sends()
}

#[tokio::test]
async fn a_trend_is_answered_with_an_uploaded_chart_whose_caption_holds_the_figures() {
    let (app, director) = demo_app(|_| {}).await;
    let sends = ask(
        &app,
        &director,
        "wamid.chart.trend",
        "grafik omzet 6 bulan",
        2,
    )
    .await;

    // 1. The upload: multipart to the phone number's /media, with the token.
    let uploads = app.graph().uploads();
    assert_eq!(uploads.len(), 1, "{uploads:#?}");
    let upload = &uploads[0];
    let settings = &app.test_db.settings.whatsapp;
    assert_eq!(
        upload.path,
        format!(
            "/{}/{}/media",
            settings.graph_api_version, settings.phone_number_id
        )
    );
    assert_eq!(
        upload.authorization.as_deref(),
        Some("Bearer test-graph-token")
    );
    assert_eq!(upload.fields["messaging_product"], "whatsapp");
    assert_eq!(upload.fields["type"], "image/png");
    assert_eq!(upload.file_type.as_deref(), Some("image/png"));
    assert!(upload.file.starts_with(PNG_SIGNATURE), "a PNG is uploaded");
    assert!(
        upload.file.len() < 150 * 1024,
        "{} bytes",
        upload.file.len()
    );
    let stored: (Vec<u8>, Option<String>) = sqlx::query_as(
        "select bytes, media_id from wa_media where key = 'chart:wamid.chart.trend'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        stored.0, upload.file,
        "the stored chart is the one uploaded"
    );
    assert_eq!(stored.1.as_deref(), Some("media.fake.1"));

    // 2. The image by media id, then the text, complete on its own.
    assert_eq!(sends[0].body["type"], "image", "{:#?}", sends[0].body);
    assert_eq!(sends[0].body["image"]["id"], "media.fake.1");
    assert!(sends[0].body["image"].get("link").is_none());
    assert_eq!(sends[1].body["type"], "text");
    let text = sends[1].body["text"]["body"].as_str().unwrap();
    assert!(text.starts_with("📊 Omzet per bulan"), "{text}");
    let caption = sends[0].body["image"]["caption"].as_str().unwrap();
    assert!(caption.starts_with("📈 Omzet per bulan"), "{caption}");
    assert!(caption.chars().count() <= 1024);

    // 3. The figures, from the test's own SQL: revenue per month, this month and five before
    //    (a month without orders is a zero).
    let rows: Vec<(NaiveDate, Decimal)> = sqlx::query_as(
        "select m::date, coalesce(sum(so.total_amt), 0)
         from generate_series(date_trunc('month', $1::date) - interval '5 months',
                              date_trunc('month', $1::date), interval '1 month') m
         left join t_so so on date_trunc('month', so.order_dt) = m and so.deleted_at is null
              and so.status not in ('Draft', 'Cancel') and so.order_dt <= $1
         group by 1 order by 1",
    )
    .bind(today())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 6);
    let label = |d: NaiveDate| format!("{} {}", MONTHS[d.month0() as usize], d.year());
    let month: Vec<(String, f64)> = rows
        .iter()
        .map(|(d, v)| (label(*d), v.to_f64().unwrap()))
        .collect();
    // This month holds today: it is running, even on its last day.
    let whole = &month[..month.len() - 1];
    let lines: Vec<&str> = caption.lines().collect();
    let (name, value) = month.last().unwrap();
    let line = lines[1];
    let figure = line
        .strip_prefix("Berjalan: ")
        .and_then(|l| l.split(" (").next())
        .unwrap_or_else(|| panic!("{caption}"));
    assert!(about(figure, *value), "{line} vs {value}");
    let through = format!(
        "s.d. {} {})",
        today().day(),
        MONTHS[today().month0() as usize]
    );
    assert!(line.ends_with(&format!("({name}, {through}")), "{line}");
    let at = 2;
    let (last, last_value) = whole.last().unwrap();
    let (before_name, before) = &whole[whole.len() - 2];
    let line = lines[at];
    let latest = regex::Regex::new(
        r"^Terakhir: (Rp [^(]+) \(([^)]+)\), ([+-]?[\d,.]+)% dari (Rp [^(]+) \(([^)]+)\)$",
    )
    .unwrap()
    .captures(line)
    .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(&latest[2], last);
    assert!(about(&latest[1], *last_value), "{line} vs {last_value}");
    assert!(about(&latest[4], *before), "{line} vs {before}");
    assert_eq!(&latest[5], before_name, "the month compared is named");
    let change = (last_value / before - 1.0) * 100.0;
    assert!(
        (shown(&latest[3]) - change).abs() <= 0.051,
        "{line} vs {change}"
    );
    let high = whole.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let low = whole.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    let extremes = regex::Regex::new(
        r"^Tertinggi: (Rp [^(]+) \(([^)]+)\) · Terendah: (Rp [^(]+) \(([^)]+)\)$",
    )
    .unwrap()
    .captures(lines[at + 1])
    .unwrap_or_else(|| panic!("{caption}"));
    assert_eq!(
        (&extremes[2], &extremes[4]),
        (high.0.as_str(), low.0.as_str()),
        "{caption}"
    );
    assert!(
        about(&extremes[1], high.1) && about(&extremes[3], low.1),
        "{caption}"
    );

    // The exchange is logged once, and the outbox holds the image and the text as parts 1 and 2.
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.chart.trend' and status = 'sent'")
            .await,
        2
    );
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.chart.trend' and kind = 'image' and part_no = 1")
            .await,
        1
    );
}

#[tokio::test]
async fn a_breakdown_is_drawn_when_asked_for_as_a_chart_and_only_then() {
    let (app, director) = demo_app(|_| {}).await;
    let sends = ask(
        &app,
        &director,
        "wamid.chart.machines",
        "chart reject rate per mesin bulan ini",
        2,
    )
    .await;
    assert_eq!(app.graph().uploads().len(), 1);
    assert_eq!(sends[0].body["type"], "image");
    let caption = sends[0].body["image"]["caption"].as_str().unwrap();
    // The test's own reject rate per machine this month.
    let rows: Vec<(String, Decimal)> = sqlx::query_as(
        "select mc.name, 100.0 * sum(sl.reject_qty) / nullif(sum(sl.output_qty), 0)
         from t_shift_log sl join m_machine mc on mc.id = sl.machine_id
         where sl.deleted_at is null and sl.log_dt >= date_trunc('month', $1::date) and sl.log_dt <= $1
         group by 1 having sum(sl.output_qty) > 0 order by 2 desc",
    )
    .bind(today())
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(rows.len() >= 2, "the demo logs several machines this month");
    let n = rows.len();
    assert!(
        caption.contains(&format!("{n} dari {n} mesin ditampilkan")),
        "{caption}"
    );
    let (high, high_rate) = (&rows[0].0, rows[0].1.to_f64().unwrap());
    let (low, low_rate) = (&rows[n - 1].0, rows[n - 1].1.to_f64().unwrap());
    let extremes =
        regex::Regex::new(r"Tertinggi: ([\d,]+%) \(([^)]+)\) · Terendah: ([\d,]+%) \(([^)]+)\)")
            .unwrap()
            .captures(caption)
            .unwrap_or_else(|| panic!("{caption}"));
    assert_eq!(
        (&extremes[2], &extremes[4]),
        (high.as_str(), low.as_str()),
        "{caption}"
    );
    assert!(
        (shown(&extremes[1]) - high_rate).abs() <= 0.051,
        "{caption} vs {high_rate}"
    );
    assert!(
        (shown(&extremes[3]) - low_rate).abs() <= 0.051,
        "{caption} vs {low_rate}"
    );

    // The same breakdown not asked for as a chart: the text alone, nothing uploaded.
    let sends = ask(
        &app,
        &director,
        "wamid.chart.words",
        "reject rate per mesin bulan ini",
        3,
    )
    .await;
    assert_eq!(sends[2].body["type"], "text", "{:#?}", sends[2].body);
    assert!(sends[2].body["text"]["body"]
        .as_str()
        .unwrap()
        .contains("Reject rate per mesin"));
    assert_eq!(app.graph().uploads().len(), 1, "no second chart");
    assert_eq!(app.count("select count(*) from wa_media").await, 1);
}

#[tokio::test]
async fn a_role_that_may_not_see_the_figure_gets_no_chart_of_it() {
    let (app, _) = demo_app(|_| {}).await;
    let operator = app.user_with_role("OPERATOR", true).await;
    let sends = ask(
        &app,
        &operator,
        "wamid.chart.denied",
        "grafik omzet 6 bulan",
        1,
    )
    .await;
    app.settle().await;
    assert!(app.graph().uploads().is_empty(), "nothing uploaded");
    assert_eq!(app.count("select count(*) from wa_media").await, 0);
    let sent: Vec<&Value> = sends.iter().map(|r| &r.body).collect();
    assert!(sent.iter().all(|b| b["type"] == "text"), "{sent:#?}");
    let text = sent[0]["text"]["body"].as_str().unwrap();
    assert!(!text.contains("Rp"), "{text}");
}

#[tokio::test]
async fn a_failed_upload_is_tried_again_and_the_text_waits_behind_the_image() {
    let (app, director) = demo_app(|_| {}).await;
    // Meta's temporary error on the first upload.
    app.graph().fail_next(500, 2);
    let sends = ask(
        &app,
        &director,
        "wamid.chart.retry",
        "grafik omzet 6 bulan",
        2,
    )
    .await;
    let uploads = app.graph().uploads();
    assert_eq!(uploads.len(), 2, "{uploads:#?}");
    assert_eq!(uploads[0].media_id, None);
    assert_eq!(uploads[1].media_id.as_deref(), Some("media.fake.2"));
    assert_eq!(
        uploads[0].file, uploads[1].file,
        "the same chart, not drawn again"
    );
    assert_eq!(sends[0].body["image"]["id"], "media.fake.2");
    assert_eq!(sends[1].body["type"], "text");
    assert_eq!(
        app.count("select attempts::bigint from wa_outbox where inbound_wamid = 'wamid.chart.retry' and kind = 'image'")
            .await,
        2
    );
}

#[tokio::test]
async fn outside_the_24_hour_window_the_text_goes_as_the_template_and_the_image_not_at_all() {
    let (app, director) = demo_app(|s| s.whatsapp.window_template = "hub_notice".into()).await;
    let graph = app.graph();
    // The upload works; Meta then refuses the image and the text: the window closed meanwhile.
    graph.answer_next(200, json!({ "id": "media.scripted" }));
    graph.fail_next(400, 131047);
    graph.fail_next(400, 131047);
    let sends = ask(
        &app,
        &director,
        "wamid.chart.window",
        "grafik omzet 6 bulan",
        3,
    )
    .await;
    app.settle().await;
    assert_eq!(sends[0].body["type"], "image");
    assert_eq!(sends[1].body["type"], "text");
    assert_eq!(sends[2].body["type"], "template", "{:#?}", sends[2].body);
    let param = sends[2].body["template"]["components"][0]["parameters"][0]["text"]
        .as_str()
        .unwrap();
    assert!(param.starts_with("📊 Omzet per bulan"), "{param}");
    let (status, code, error): (String, Option<i32>, Option<String>) = sqlx::query_as(
        "select status, error_code, error_text from wa_outbox
         where inbound_wamid = 'wamid.chart.window' and part_no = 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((status.as_str(), code), ("failed", Some(131047)));
    assert!(error
        .unwrap()
        .contains("not sent outside the 24-hour window"));
    assert_eq!(
        app.count("select count(*) from wa_outbox where inbound_wamid = 'wamid.chart.window' and kind = 'template' and status = 'sent'")
            .await,
        1
    );
    assert_eq!(sends.len(), 3, "nothing else was sent");
}

#[tokio::test]
async fn with_charts_off_a_trend_is_answered_in_text_alone() {
    let (app, director) = demo_app(|s| s.brain.charts = false).await;
    let sends = ask(
        &app,
        &director,
        "wamid.chart.off",
        "grafik omzet 6 bulan",
        1,
    )
    .await;
    app.settle().await;
    assert!(app.graph().uploads().is_empty());
    assert_eq!(sends.len(), 1);
    assert!(sends[0].body["text"]["body"]
        .as_str()
        .unwrap()
        .starts_with("📊 Omzet per bulan"));
}

#[tokio::test]
async fn a_chart_that_cannot_be_uploaded_twice_gives_way_to_its_text() {
    let (app, director) = demo_app(|_| {}).await;
    app.graph().fail_next(500, 2);
    app.graph().fail_next(500, 2);
    let sends = ask(
        &app,
        &director,
        "wamid.chart.giveup",
        "grafik omzet 6 bulan",
        1,
    )
    .await;
    app.settle().await;
    assert_eq!(app.graph().uploads().len(), 2, "two attempts, no more");
    assert_eq!(sends.len(), 1, "{sends:#?}");
    assert_eq!(sends[0].body["type"], "text");
    let (status, attempts): (String, i32) = sqlx::query_as(
        "select status, attempts from wa_outbox where inbound_wamid = 'wamid.chart.giveup' and kind = 'image'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((status.as_str(), attempts), ("failed", 2));
    // The chat log keeps the wamid of the text, the first part that went out.
    let logged: Option<String> =
        sqlx::query_scalar("select wamid_out from ai_chat where wamid_in = 'wamid.chart.giveup'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let text: Option<String> = sqlx::query_scalar(
        "select wamid from wa_outbox where inbound_wamid = 'wamid.chart.giveup' and kind = 'text'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(text.is_some());
    assert_eq!(logged, text);
}

#[tokio::test]
async fn a_crash_during_the_upload_sends_the_chart_again_at_once_and_one_after_it_waits() {
    let (app, _) = demo_app(|_| {}).await;
    // Two images whose sends were in flight when the hub died: one never uploaded, one
    // uploaded (its message may have reached Meta).
    sqlx::raw_sql(
        "insert into wa_media (key, mime, bytes, media_id, uploaded_at) values
             ('chart:crash.1', 'image/png', '\\x89504e47', null, null),
             ('chart:crash.2', 'image/png', '\\x89504e47', 'media.old', now());
         insert into wa_outbox (inbound_wamid, wa_id, kind, payload, status, lease_until, attempts)
         select replace(key, 'chart:', ''), '6281100000', 'image',
                jsonb_build_object('type', 'image', 'image',
                    jsonb_build_object('hub_media', uuid::text, 'caption', 'x')),
                'sending', now() - interval '1 minute', 1
         from wa_media where key like 'chart:crash.%';",
    )
    .execute(&app.db)
    .await
    .unwrap();
    app.stages.sender.expire_leases().await.unwrap();
    let states: Vec<(String, String)> = sqlx::query_as(
        "select inbound_wamid, status from wa_outbox where inbound_wamid like 'crash.%' order by 1",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        states,
        [
            ("crash.1".to_owned(), "pending".to_owned()),
            ("crash.2".to_owned(), "unknown".to_owned())
        ]
    );
}
