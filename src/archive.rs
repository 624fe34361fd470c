//! Retention: rows older than their table's age (`retention.days`) move to compressed JSON Lines
//! files, one per table and month (`<dir>/<table>/<table>-YYYY-MM.jsonl.gz`), and
//! `sentient-hub restore FILE` brings them back.
//!
//! Nothing is lost or doubled when a run is killed at any moment:
//! - a month's file is rewritten whole (what it held, plus the new rows, by id) to a temporary
//!   file, which is read back and compared (row count and SHA-256 of its content) before it is
//!   renamed over the old one and the folder is synced;
//! - only then are the new rows deleted, in one transaction, by id;
//! - a run killed before the rename leaves the old file and the rows; one killed after it leaves
//!   rows that are in the file too, which the next run finds there and deletes without writing
//!   them twice.
//!
//! Several instances: each table is archived under a PostgreSQL advisory lock; an instance that
//! does not get it leaves that table to the one that has it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::config::RetentionSettings;

/// An archived table: its time column, and what must hold before a row may go.
struct Table {
    name: &'static str,
    /// The column whose age decides.
    time: &'static str,
    /// Rows that must stay whatever their age (open work, rows others still point at).
    keep_unless: &'static str,
}

/// In the order they are archived: a row goes only after the rows that point at it.
const TABLES: &[Table] = &[
    Table {
        name: "ai_alert_recipient",
        time: "created_at",
        keep_unless: "true",
    },
    Table {
        name: "ai_alert",
        time: "created_at",
        keep_unless: "not exists (select 1 from ai_alert_recipient r where r.alert_id = t.id)",
    },
    Table {
        name: "wa_outbox",
        time: "created_at",
        keep_unless: "t.status in ('sent', 'delivered', 'read', 'failed', 'withdrawn')
                      and not exists (select 1 from ai_alert_recipient r where r.outbox_id = t.id)",
    },
    Table {
        // A chart goes once no unsent image points at it.
        name: "wa_media",
        time: "created_at",
        keep_unless: "not exists (select 1 from wa_outbox o where o.kind = 'image'
                          and o.status not in ('sent', 'delivered', 'read', 'failed', 'withdrawn')
                          and o.payload->'image'->>'hub_media' = t.uuid::text)",
    },
    Table {
        name: "wa_inbox",
        time: "received_at",
        keep_unless: "t.status in ('done', 'dead')",
    },
    Table {
        name: "ai_chat",
        time: "ts",
        keep_unless: "true",
    },
    Table {
        name: "adm_login_challenge",
        time: "created_at",
        keep_unless: "t.expires_at < now()",
    },
    Table {
        name: "wa_dead_letter",
        time: "created_at",
        keep_unless: "true",
    },
    Table {
        name: "log_audit",
        time: "created_at",
        keep_unless: "true",
    },
];

/// The shortest age: past Meta's week of webhook retries (an archived `wa_inbox` row no longer
/// stops a redelivered message) and any alert's dispatch.
const MIN_DAYS: u32 = 8;
/// The longest: a hundred years.
const MAX_DAYS: u32 = 36_500;

/// Refuses settings that leave a retained table without an age or name a table retention does
/// not know.
pub fn check(settings: &RetentionSettings) -> anyhow::Result<()> {
    for table in TABLES {
        if settings.days_for(table.name).is_none() {
            bail!(
                "invalid configuration: retention.days.{} is missing",
                table.name
            );
        }
    }
    for (table, days) in &settings.days {
        if !TABLES.iter().any(|t| t.name == table) {
            bail!("invalid configuration: retention.days.{table}: not a retained table");
        }
        if !(MIN_DAYS..=MAX_DAYS).contains(days) {
            bail!("invalid configuration: retention.days.{table} must be between {MIN_DAYS} and {MAX_DAYS}");
        }
    }
    Ok(())
}

/// What one table's archiving did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Archived {
    pub table: &'static str,
    /// Rows moved to files (and deleted) by this run.
    pub rows: u64,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Another instance held the table's lock.
    pub skipped: bool,
}

/// Archives every table once.
pub async fn run(db: &PgPool, settings: &RetentionSettings) -> anyhow::Result<Vec<Archived>> {
    check(settings)?;
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for table in TABLES {
        let days = settings.days_for(table.name).unwrap_or(MAX_DAYS);
        let cutoff = Utc::now() - chrono::Duration::days(i64::from(days));
        // One table's trouble (an unreadable file) does not stop the others.
        match archive_table(db, &settings.dir, table, cutoff).await {
            Ok(done) => report.push(done),
            Err(e) => failed.push(format!("{}: {e:#}", table.name)),
        }
    }
    if !failed.is_empty() {
        bail!("archiving failed for {}", failed.join("; "));
    }
    Ok(report)
}

/// The scheduled job: [`run`] every `retention.every_hours` (the first a minute after start).
pub async fn run_every(
    db: PgPool,
    settings: RetentionSettings,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if settings.every_hours == 0 {
        return;
    }
    let mut wait = std::time::Duration::from_secs(60);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match run(&db, &settings).await {
            Ok(report) => {
                for t in report.iter().filter(|t| t.rows > 0) {
                    tracing::info!(table = t.table, rows = t.rows, "archived");
                    metrics::counter!("archive_rows_total", "table" => t.table).increment(t.rows);
                }
            }
            Err(e) => {
                metrics::counter!("archive_errors_total").increment(1);
                tracing::error!(error = %format!("{e:#}"), "archiving failed; the next run tries again");
            }
        }
        wait = std::time::Duration::from_secs(settings.every_hours * 3600);
    }
}

async fn archive_table(
    db: &PgPool,
    dir: &Path,
    table: &Table,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<Archived> {
    let mut report = Archived {
        table: table.name,
        rows: 0,
        files: Vec::new(),
        skipped: false,
    };
    // A session lock on a connection of our own, released when it goes back to the pool.
    let mut lock = db.acquire().await?;
    let key = lock_key(table.name);
    let got: bool = sqlx::query_scalar("select pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *lock)
        .await?;
    if !got {
        report.skipped = true;
        return Ok(report);
    }
    let result = archive_locked(db, dir, table, cutoff, &mut report).await;
    let _ = sqlx::query("select pg_advisory_unlock($1)")
        .bind(key)
        .execute(&mut *lock)
        .await;
    result.map(|()| report)
}

async fn archive_locked(
    db: &PgPool,
    dir: &Path,
    table: &Table,
    cutoff: DateTime<Utc>,
    report: &mut Archived,
) -> anyhow::Result<()> {
    let folder = dir.join(table.name);
    if folder.exists() {
        remove_leftovers(&folder)?;
    }
    let (name, time, keep_unless) = (table.name, table.time, table.keep_unless);
    let aged = format!("t.{time} < $1 and ({keep_unless})");
    let months: Vec<NaiveDate> = sqlx::query_scalar(&format!(
        "select distinct (date_trunc('month', t.{time} at time zone 'UTC'))::date
         from {name} t where {aged} order by 1"
    ))
    .bind(cutoff)
    .fetch_all(db)
    .await
    .with_context(|| format!("finding the aged months of {name}"))?;
    for month in months {
        let next = next_month(month);
        let rows: Vec<(i64, String)> = sqlx::query_as(&format!(
            "select t.id, to_jsonb(t)::text from {name} t
             where {aged} and t.{time} >= $2 and t.{time} < $3 order by t.id"
        ))
        .bind(cutoff)
        .bind(month.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .bind(next.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .fetch_all(db)
        .await
        .with_context(|| format!("reading {name} of {month}"))?;
        if rows.is_empty() {
            continue;
        }
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("creating the archive folder {}", folder.display()))?;
        let file = folder.join(format!(
            "{name}-{:04}-{:02}.jsonl.gz",
            month.year(),
            month.month()
        ));
        let mut all: BTreeMap<i64, String> = if file.exists() {
            let existing = file.clone();
            tokio::task::spawn_blocking(move || read_rows(&existing))
                .await
                .context("the archive reader panicked")??
        } else {
            BTreeMap::new()
        };
        // The database's copy wins over one an interrupted run wrote (the row may have changed
        // since, e.g. a late "read" status).
        let fresh = rows
            .iter()
            .filter(|(id, json)| all.get(id) != Some(json))
            .count();
        let (ids, jsons): (Vec<i64>, Vec<String>) = rows.into_iter().unzip();
        for (id, json) in ids.iter().zip(&jsons) {
            all.insert(*id, json.clone());
        }
        if fresh > 0 {
            let target = file.clone();
            tokio::task::spawn_blocking(move || write_verified(&target, &all))
                .await
                .context("the archive writer panicked")??;
            report.files.push(file.clone());
        }
        // The file holds every one of them now, as they are: they may go. A row that changed
        // since it was read stays, and goes next time with its new content.
        let deleted = sqlx::query(&format!(
            "delete from {name} t using unnest($1::bigint[], $2::text[]) a(id, row)
             where t.id = a.id and to_jsonb(t)::text = a.row"
        ))
        .bind(&ids)
        .bind(&jsons)
        .execute(db)
        .await
        .with_context(|| format!("deleting the archived rows of {name}"))?
        .rows_affected();
        report.rows += deleted;
    }
    Ok(())
}

/// Writes `rows` to a temporary file next to `file`, reads it back, compares, then renames it
/// over `file` and syncs the folder.
fn write_verified(file: &Path, rows: &BTreeMap<i64, String>) -> anyhow::Result<()> {
    // Unique (two containers are both PID 1), and never opened over another run's file.
    let tmp = file.with_extension(format!("gz.tmp-{}", uuid::Uuid::new_v4().simple()));
    let mut digest = Sha256::new();
    {
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        for line in rows.values() {
            gz.write_all(line.as_bytes())?;
            gz.write_all(b"\n")?;
            digest.update(line.as_bytes());
            digest.update(b"\n");
        }
        let out = gz.finish()?;
        out.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    let expected = digest.finalize();
    let (count, checksum) = content_of(&tmp)?;
    if count != rows.len() || checksum[..] != expected[..] {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "{} read back {count} rows, not {}, or another checksum: nothing deleted",
            tmp.display(),
            rows.len()
        );
    }
    std::fs::rename(&tmp, file).with_context(|| format!("renaming to {}", file.display()))?;
    if let Some(folder) = file.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Lines and SHA-256 of a file's decompressed content.
fn content_of(file: &Path) -> anyhow::Result<(usize, Vec<u8>)> {
    let mut reader = BufReader::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    ));
    let mut digest = Sha256::new();
    let mut count = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        digest.update(&line);
        count += 1;
    }
    Ok((count, digest.finalize().to_vec()))
}

/// The rows of an archive file by id.
fn read_rows(file: &Path) -> anyhow::Result<BTreeMap<i64, String>> {
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    )
    .read_to_string(&mut text)
    .with_context(|| format!("reading {}", file.display()))?;
    let mut rows = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}: not JSON", file.display(), n + 1))?;
        let id = value["id"]
            .as_i64()
            .with_context(|| format!("{} line {}: no id", file.display(), n + 1))?;
        rows.insert(id, line.to_owned());
    }
    Ok(rows)
}

/// Temporary files of runs that were killed (we hold the table's lock: nobody writes them).
fn remove_leftovers(folder: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(folder)? {
        let path = entry?.path();
        let leftover = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.starts_with("tmp-"));
        if leftover {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Restored {
    pub table: String,
    /// Rows inserted.
    pub restored: u64,
    /// Rows already present (by id or another unique key), left as they are.
    pub present: u64,
}

/// Brings the rows of an archive file back; rows already present are left alone, so restoring
/// twice (or a file whose rows were never deleted) doubles nothing.
pub async fn restore(db: &PgPool, file: &Path) -> anyhow::Result<Restored> {
    let file_name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let Some(table) = TABLES.iter().find(|t| {
        file_name
            .strip_prefix(t.name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| {
                rest.ends_with(".jsonl.gz") && rest.len() == "YYYY-MM.jsonl.gz".len()
            })
    }) else {
        bail!(
            "{file_name:?} is not an archive file (<table>-YYYY-MM.jsonl.gz of a retained table)"
        );
    };
    let rows = read_rows(file)?;
    let mut tx = db.begin().await?;
    let mut restored = 0;
    let statement = format!(
        "insert into {name} overriding system value
         select * from jsonb_populate_record(null::{name}, $1::jsonb)
         on conflict do nothing",
        name = table.name
    );
    for json in rows.values() {
        restored += sqlx::query(&statement)
            .bind(json)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("restoring a row of {}", table.name))?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(Restored {
        table: table.name.to_owned(),
        restored,
        present: rows.len() as u64 - restored,
    })
}

fn next_month(month: NaiveDate) -> NaiveDate {
    month
        .checked_add_months(chrono::Months::new(1))
        .expect("a month within chrono's range")
}

/// The advisory lock key of `table`'s archiving (stable across builds and instances).
fn lock_key(table: &str) -> i64 {
    let digest = Sha256::digest(format!("sentient-hub archive {table}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(days: &[(&str, u32)]) -> RetentionSettings {
        RetentionSettings {
            every_hours: 24,
            dir: PathBuf::from("archive"),
            days: days.iter().map(|(t, d)| (t.to_string(), *d)).collect(),
        }
    }

    #[test]
    fn every_table_needs_an_age_past_metas_retries_and_unknown_tables_are_refused() {
        let all: Vec<(&str, u32)> = TABLES.iter().map(|t| (t.name, 90)).collect();
        assert!(check(&settings(&all)).is_ok());
        let err = check(&settings(&all[1..])).unwrap_err().to_string();
        assert!(
            err.contains("retention.days.ai_alert_recipient is missing"),
            "{err}"
        );
        let mut short = all.clone();
        let inbox = short.iter().position(|(t, _)| *t == "wa_inbox").unwrap();
        short[inbox].1 = 1;
        let err = check(&settings(&short)).unwrap_err().to_string();
        assert!(
            err.contains("retention.days.wa_inbox must be between 8"),
            "{err}"
        );
        let mut unknown = all.clone();
        unknown.push(("adm_user", 90));
        let err = check(&settings(&unknown)).unwrap_err().to_string();
        assert!(err.contains("adm_user: not a retained table"), "{err}");
    }
}
