//! Retention: `sentient-hub archive` moves aged rows to monthly files and `restore` brings them
//! back; killed in the middle, or run twice at once, it loses nothing and doubles nothing.
//! What "aged" means is written here in SQL, not taken from the code under test.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::helpers::{fresh_database, TestDb};

/// `sentient-hub <args>` on the test's database, archiving into `dir`.
fn hub(db: &TestDb, dir: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SENTIENT_ENV", "test")
        .env("DATABASE_URL", db.settings.database.url.expose_secret())
        .env("SENTIENT__RETENTION__DIR", dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn run(db: &TestDb, dir: &Path, args: &[&str]) -> serde_json::Value {
    let output = hub(db, dir).args(args).output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

/// `chats` chat rows, one every few hours back over about 16 months; audit rows at 30, 120 and
/// 400 days; answered and one unanswered inbox row past 90 days.
async fn age_rows(db: &PgPool, chats: i64) {
    sqlx::query(
        "insert into ai_chat (phone, user_role, msg_in, msg_out, intent, outcome, wamid_in, ts)
         select '+6281100000' || (g % 10), 'DIRECTOR', 'omzet bulan ' || g || '?',
                'Omzet: Rp ' || g * 1000, 'metric', 'fallback', 'wamid.aged.' || g,
                now() - make_interval(hours => (g * 11520 / $1)::int)
         from generate_series(1, $1) g",
    )
    .bind(chats)
    .execute(db)
    .await
    .unwrap();
    sqlx::raw_sql(
        "insert into log_audit (action, entity_type, new_value, created_at)
         select 'LOGIN', 'adm_user', jsonb_build_object('n', d), now() - make_interval(days => d)
         from unnest(array[30, 120, 400, 401]) d;
         insert into wa_inbox (wamid, phone_nr_id, wa_id, sender_key, msg_type, body, payload,
                               sent_at, received_at, status)
         select 'wamid.in.' || d || '.' || s, '1', '6281100000', '6281100000', 'text', 'halo',
                '{}'::jsonb, now() - make_interval(days => d), now() - make_interval(days => d), s
         from unnest(array[10, 100, 200]) d, unnest(array['done', 'pending']) s;",
    )
    .execute(db)
    .await
    .unwrap();
}

/// Every row of the retained tables the test's SQL calls aged, as `(table, id) → row`.
async fn aged(db: &PgPool) -> BTreeMap<(String, i64), String> {
    sqlx::query_as::<_, (String, i64, String)>(
        "select 'ai_chat', id, to_jsonb(t)::text from ai_chat t where ts < now() - interval '90 days'
         union all
         select 'log_audit', id, to_jsonb(t)::text from log_audit t
             where created_at < now() - interval '365 days'
         union all
         select 'wa_inbox', id, to_jsonb(t)::text from wa_inbox t
             where received_at < now() - interval '90 days' and status in ('done', 'dead')
         union all
         select 'ai_alert', id, to_jsonb(t)::text from ai_alert t
             where created_at < now() - interval '90 days'
               and not exists (select 1 from ai_alert_recipient r where r.alert_id = t.id)",
    )
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .map(|(t, id, row)| ((t, id), row))
    .collect()
}

/// The ids still in the database among `keys`.
async fn in_database(db: &PgPool, keys: &BTreeSet<(String, i64)>) -> BTreeSet<(String, i64)> {
    let mut found = BTreeSet::new();
    for table in ["ai_chat", "log_audit", "wa_inbox", "ai_alert"] {
        let ids: Vec<i64> = keys
            .iter()
            .filter(|(t, _)| t == table)
            .map(|(_, id)| *id)
            .collect();
        let present: Vec<i64> =
            sqlx::query_scalar(&format!("select id from {table} where id = any($1)"))
                .bind(&ids)
                .fetch_all(db)
                .await
                .unwrap();
        found.extend(present.into_iter().map(|id| (table.to_owned(), id)));
    }
    found
}

/// Every archive file under `dir` (temporary leftovers apart), and its rows by `(table, id)`;
/// panics on an id written twice.
fn archived(dir: &Path) -> (Vec<PathBuf>, BTreeMap<(String, i64), String>) {
    let mut files = Vec::new();
    let mut rows = BTreeMap::new();
    for table in std::fs::read_dir(dir).into_iter().flatten() {
        let table = table.unwrap().path();
        for file in std::fs::read_dir(&table).unwrap() {
            let file = file.unwrap().path();
            if !file.to_string_lossy().ends_with(".jsonl.gz") {
                continue;
            }
            let name = table.file_name().unwrap().to_string_lossy().into_owned();
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&file).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            for line in text.lines() {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let id = value["id"].as_i64().unwrap();
                let before = rows.insert((name.clone(), id), line.to_owned());
                assert!(before.is_none(), "{name} {id} is archived twice");
            }
            files.push(file);
        }
    }
    files.sort();
    (files, rows)
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("sentient-archive-{}", uuid::Uuid::new_v4()))
}

/// Compares JSON texts as values (jsonb prints keys in its own order).
fn same_rows(a: &str, b: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(a).unwrap()
        == serde_json::from_str::<serde_json::Value>(b).unwrap()
}

#[tokio::test]
async fn aged_rows_move_to_monthly_files_and_restore_brings_them_back_once() {
    let db = fresh_database().await;
    let pool = PgPool::connect_with(db.settings.database.connect_options())
        .await
        .unwrap();
    // The demo's alerts, aged past 90 days, beside aged chats, audit and inbox rows.
    sentient_hub::db::demo::load(&pool).await.unwrap();
    let demo_alerts = sqlx::query("update ai_alert set created_at = now() - interval '120 days'")
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert!(demo_alerts > 0, "the demo has alerts");
    age_rows(&pool, 600).await;
    let expected = aged(&pool).await;
    assert_eq!(
        expected.keys().filter(|(t, _)| t == "ai_alert").count() as u64,
        demo_alerts
    );
    let keys: BTreeSet<_> = expected.keys().cloned().collect();
    let kept_before: i64 = sqlx::query_scalar(
        "select (select count(*) from ai_chat where ts >= now() - interval '90 days')
              + (select count(*) from wa_inbox where status = 'pending')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(keys.len() > 300, "{} aged rows", keys.len());
    let dir = scratch();

    let report = run(&db, &dir, &["archive"]).await;
    let moved: u64 = report
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(moved, keys.len() as u64, "{report:#}");
    let (files, rows) = archived(&dir);
    assert_eq!(rows.len(), expected.len());
    for (key, row) in &expected {
        assert!(same_rows(row, &rows[key]), "{key:?} changed on its way");
    }
    assert!(in_database(&pool, &keys).await.is_empty());
    // One file per table and month; the audit rows of 120 days and the open inbox row stay.
    assert!(files.iter().all(|f| {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        regex::Regex::new(r"^(ai_chat|log_audit|wa_inbox|ai_alert)-\d{4}-\d{2}\.jsonl\.gz$")
            .unwrap()
            .is_match(&name)
    }));
    let kept_after: i64 = sqlx::query_scalar(
        "select (select count(*) from ai_chat) + (select count(*) from wa_inbox where status = 'pending')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept_after, kept_before);
    let audit_kept: i64 =
        sqlx::query_scalar("select count(*) from log_audit where new_value->>'n' in ('30', '120')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(audit_kept, 2, "log_audit keeps 365 days");

    // A second run finds nothing more to do.
    let again = run(&db, &dir, &["archive"]).await;
    assert!(again.as_array().unwrap().iter().all(|t| t["rows"] == 0));
    assert_eq!(archived(&dir).1, rows);

    // Restoring a chat month brings its rows back as they were; a second restore adds nothing.
    let month = files
        .iter()
        .find(|f| f.to_string_lossy().contains("ai_chat-"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let first = run(&db, &dir, &["restore", &month]).await;
    let restored = first["restored"].as_u64().unwrap();
    assert!(restored > 0 && first["present"] == 0, "{first}");
    let back: Vec<(i64, String)> = sqlx::query_as(
        "select id, to_jsonb(t)::text from ai_chat t where ts < now() - interval '90 days'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(back.len() as u64, restored);
    for (id, row) in &back {
        assert!(same_rows(row, &expected[&("ai_chat".to_owned(), *id)]));
    }
    let second = run(&db, &dir, &["restore", &month]).await;
    assert_eq!(second["restored"], 0);
    assert_eq!(second["present"].as_u64(), Some(restored));

    let refused = hub(&db, &dir)
        .args(["restore", "/tmp/not-an-archive.txt"])
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an archive file"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_run_or_run_twice_at_once_it_loses_nothing_and_doubles_nothing() {
    let db = fresh_database().await;
    let pool = PgPool::connect_with(db.settings.database.connect_options())
        .await
        .unwrap();
    age_rows(&pool, 40_000).await;
    let expected = aged(&pool).await;
    let keys: BTreeSet<_> = expected.keys().cloned().collect();
    let dir = scratch();

    // The invariant after any kill: every aged row is in the database or in a file (or both,
    // when the kill fell between a file's rename and the delete), and no file holds one twice.
    let mut partial = 0;
    for delay_ms in [40, 80, 160, 320, 640, 1000, 1500] {
        let mut child = hub(&db, &dir).arg("archive").spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        let (_, rows) = archived(&dir);
        let left = in_database(&pool, &keys).await;
        let lost: Vec<_> = keys
            .iter()
            .filter(|k| !rows.contains_key(*k) && !left.contains(*k))
            .collect();
        assert!(
            lost.is_empty(),
            "{} rows lost after a kill at {delay_ms} ms, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        for (key, row) in &rows {
            assert!(same_rows(row, &expected[key]));
        }
        if !rows.is_empty() && !left.is_empty() {
            partial += 1;
        }
    }
    assert!(partial > 0, "no kill landed in the middle of a run");

    // Two instances at once, to the end.
    let a = hub(&db, &dir).arg("archive").output();
    let b = hub(&db, &dir).arg("archive").output();
    let (a, b) = tokio::join!(a, b);
    assert!(a.unwrap().status.success() && b.unwrap().status.success());
    let (files, rows) = archived(&dir);
    assert!(
        rows.keys().cloned().collect::<BTreeSet<_>>() == keys,
        "the files hold {} rows, {} were aged",
        rows.len(),
        keys.len()
    );
    assert_eq!(in_database(&pool, &keys).await.len(), 0);
    let leftovers = std::fs::read_dir(dir.join("ai_chat"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(leftovers, 0, "temporary files are cleaned up");
    assert!(files.len() > 12);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_chart_goes_after_30_days_unless_an_unsent_image_names_it_and_comes_back_byte_for_byte() {
    let db = fresh_database().await;
    let pool = PgPool::connect_with(db.settings.database.connect_options())
        .await
        .unwrap();
    // Three charts 40 days old (one named by an image still pending) and one of 10 days.
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\n\x00\x01\xfe\xff binary".to_vec();
    sqlx::query(
        "insert into wa_media (key, mime, bytes, created_at)
         select 'chart:wamid.aged.' || d || '.' || n, 'image/png', $1, now() - make_interval(days => d)
         from unnest(array[40, 40, 40, 10]) with ordinality as a(d, n)",
    )
    .bind(&png)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into wa_outbox (wa_id, kind, payload)
         select '6281100000', 'image', jsonb_build_object('type', 'image', 'image',
                jsonb_build_object('hub_media', uuid::text, 'caption', 'x'))
         from wa_media where key = 'chart:wamid.aged.40.1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let dir = scratch();
    let report = run(&db, &dir, &["archive"]).await;
    let media = report
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "wa_media")
        .unwrap_or_else(|| panic!("wa_media in {report:#}"));
    assert_eq!(media["rows"], 2, "{report:#}");
    let left: Vec<String> = sqlx::query_scalar("select key from wa_media order by key")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, ["chart:wamid.aged.10.4", "chart:wamid.aged.40.1"]);
    let (files, rows) = archived(&dir);
    assert_eq!(rows.keys().filter(|(t, _)| t == "wa_media").count(), 2);
    let file = files
        .iter()
        .find(|f| f.to_string_lossy().contains("wa_media-"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let restored = run(&db, &dir, &["restore", &file]).await;
    assert_eq!(restored["restored"], 2, "{restored}");
    let back: Vec<Vec<u8>> =
        sqlx::query_scalar("select bytes from wa_media where key like 'chart:wamid.aged.40.%'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(back.len(), 3);
    assert!(
        back.iter().all(|b| *b == png),
        "the bytes come back as they were"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
