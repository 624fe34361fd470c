//! The morning digest: the executive summary pushed to a user's confirmed WhatsApp device once
//! a day. Who gets it when: a user's own choice (`wa_digest_pref`: a time, or off), else the
//! role's default (`digest.default_roles` at `digest.default_time`, in `app.timezone`).
//!
//! Once per user per day, on any number of instances: the digest is the outbox "reply" of
//! purpose `digest` to the key `digest:<user uuid>:<day>`, and the outbox writes a reply once
//! per key. From there it travels like every message (rate limit, retries, delivery statuses);
//! outside the 24-hour window the sender sends it as `whatsapp.window_template`, or records it as
//! failed (131047) when none is configured — which `GET /api/v1/users/{uuid}/digest` shows. A
//! digest not sent within `digest.catch_up_mins` of its time (the hub was down) is skipped for
//! the day. Just before it goes out, the sender asks [`Digests::veto`] whether its user is still
//! active, still on that device and still wants it.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Duration as Span, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use regex::Regex;
use serde::Deserialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::summary;
use crate::config::DigestSettings;
use crate::outbox::sender::Veto;
use crate::outbox::{self, Outgoing, Purpose};
use crate::queue::Doorbell;
use crate::texts::Lang;
use crate::whatsapp::graph::{content, split_text, Recipient};

/// The words that turn the digest off or on (`words/digest.toml`), reviewed data.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Words {
    off: Vec<String>,
    question: Vec<String>,
    on: Vec<String>,
}

static WORDS: LazyLock<Words> = LazyLock::new(|| {
    toml::from_str(include_str!("../../words/digest.toml")).expect("words/digest.toml is valid")
});

/// "jam 6", "pukul 06.30", "jam 7 pagi", "at 6:30", "6am", "06:00".
static TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?: \b(?:jam|pukul|pkl|at)\s*(\d{1,2})(?:[.:](\d{2}))?\s*(pagi|siang|sore|malam|am|pm)?\b )
        | (?: \b(\d{1,2})[.:](\d{2})\s*(am|pm)?\b )
        | (?: \b(\d{1,2})\s*(am|pm)\b )",
    )
    .expect("time pattern")
});

/// What a digest message in the chat asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// On, at this time or (none named) at the current or default time.
    On(Option<NaiveTime>),
    Off,
    /// Neither: say how it stands.
    Status,
}

fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Reads a digest message. A valid time turns it on at that time ("digest jam 6", "jangan
/// lupa kirim digest jam 6"); otherwise an `off` phrase turns it off ("stop digest", "gak mau
/// digest lagi"); a question only asks how it stands ("digest masih aktif?"); an `on` word turns
/// it on ("kirim ringkasan tiap pagi"). A time that is not one ("jam 25") changes nothing.
pub fn parse(text: &str) -> Command {
    let text = text.to_lowercase();
    let off = WORDS.off.iter().any(|w| has_word(&text, w));
    if let Some(c) = TIME.captures(&text) {
        let (hour, minute, part) = if c.get(1).is_some() {
            (c.get(1), c.get(2), c.get(3))
        } else if c.get(4).is_some() {
            (c.get(4), c.get(5), c.get(6))
        } else {
            (c.get(7), None, c.get(8))
        };
        let hour: u32 = hour.map_or("x", |m| m.as_str()).parse().unwrap_or(99);
        let minute: u32 = minute.map_or(Ok(0), |m| m.as_str().parse()).unwrap_or(99);
        let hour = match part.map(|m| m.as_str()) {
            Some("malam" | "am") if hour == 12 => 0,
            Some("pm" | "sore" | "malam") if hour < 12 => hour + 12,
            Some("siang") if hour < 11 => hour + 12,
            _ => hour,
        };
        return match NaiveTime::from_hms_opt(hour, minute, 0) {
            Some(t) if !off || !text.contains("stop") => Command::On(Some(t)),
            Some(_) => Command::Off,
            None => Command::Status,
        };
    }
    if off {
        return Command::Off;
    }
    if text.trim_end().ends_with('?') || WORDS.question.iter().any(|w| has_word(&text, w)) {
        return Command::Status;
    }
    if WORDS.on.iter().any(|w| has_word(&text, w)) {
        return Command::On(None);
    }
    Command::Status
}

/// A user's digest as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// When it goes out (`app.timezone`); `None` = off.
    pub send_at: Option<NaiveTime>,
    /// The user (or an admin for them) chose it; otherwise it is the role's default.
    pub chosen: bool,
}

/// The digest of `user_id` as set.
pub async fn setting(
    db: &PgPool,
    settings: &DigestSettings,
    user_id: i64,
) -> anyhow::Result<Setting> {
    let (role, chosen, send_at): (String, bool, Option<NaiveTime>) = sqlx::query_as(
        "select r.code, p.user_id is not null, p.send_at
         from adm_user u join adm_role r on r.id = u.role_id
         left join wa_digest_pref p on p.user_id = u.id
         where u.id = $1",
    )
    .bind(user_id)
    .fetch_one(db)
    .await
    .context("reading a digest setting")?;
    Ok(if chosen {
        Setting { send_at, chosen }
    } else {
        Setting {
            send_at: settings
                .default_roles
                .contains(&role)
                .then_some(settings.default_time),
            chosen,
        }
    })
}

/// Records the choice of `user_id` (`None` = off), by `by`.
pub async fn choose(
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    send_at: Option<NaiveTime>,
    by: i64,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into wa_digest_pref (user_id, send_at, updated_by) values ($1, $2, $3)
         on conflict (user_id) do update
             set send_at = excluded.send_at, updated_by = excluded.updated_by, updated_at = now()",
    )
    .bind(user_id)
    .bind(send_at)
    .bind(by)
    .execute(conn)
    .await
    .context("recording a digest choice")?;
    Ok(())
}

/// Answers a digest message of `user_id` in the chat: changes the setting, says how it stands.
pub async fn answer(
    db: &PgPool,
    settings: &DigestSettings,
    user_id: i64,
    text: &str,
    lang: Lang,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<String> {
    let now = setting(db, settings, user_id).await?;
    let zone = Utc::now().with_timezone(&timezone).format("%Z").to_string();
    let (send_at, changed) = match parse(text) {
        Command::Off => (None, true),
        Command::On(Some(t)) => (Some(t), true),
        Command::On(None) => (Some(now.send_at.unwrap_or(settings.default_time)), true),
        Command::Status => (now.send_at, false),
    };
    if changed {
        let mut conn = db.acquire().await.context("choosing a digest")?;
        choose(&mut conn, user_id, send_at, user_id).await?;
    }
    Ok(match (send_at, lang) {
        (Some(t), Lang::Id) => format!(
            "☀️ Ringkasan harian dikirim setiap hari pukul {} {zone}. Ketik “stop digest” untuk berhenti, atau “digest jam 6” untuk mengganti jamnya.",
            t.format("%H:%M")
        ),
        (Some(t), Lang::En) => format!(
            "☀️ The daily digest comes every day at {} {zone}. Type “stop digest” to stop it, or “digest at 6” to change the time.",
            t.format("%H:%M")
        ),
        (None, Lang::Id) => "Ringkasan harian tidak dikirim. Ketik “kirim ringkasan tiap pagi” atau “digest jam 7” untuk menyalakannya.".to_owned(),
        (None, Lang::En) => "The daily digest is off. Type “send the summary every morning” or “digest at 7” to turn it on.".to_owned(),
    })
}

/// The outbox key of the digest of `user` for `day`, written with the figures of role
/// `role_id` (the sender withdraws it if the user's role has changed since).
pub fn key(user: Uuid, day: NaiveDate, role_id: i64) -> String {
    format!("{}:{role_id}", key_of_day(user, day))
}

fn key_of_day(user: Uuid, day: NaiveDate) -> String {
    format!("digest:{user}:{day}")
}

/// The day whose digest is due at `now` for a digest at `send_at`: today's once its time has
/// come, or yesterday's while its catch-up window (which may pass midnight) lasts.
fn due_day(now: NaiveDateTime, send_at: NaiveTime, catch_up: Span) -> Option<NaiveDate> {
    let today = now.date();
    [today, today - Span::days(1)].into_iter().find(|day| {
        let at = day.and_time(send_at);
        at <= now && now < at + catch_up
    })
}

/// Who may get a digest on which device: an active user whose role holds `AI.CHAT`, on a device
/// confirmed within `$1` days and not revoked since (the chat gate's trust).
const MAY_RECEIVE: &str = "u.deleted_at is null and u.is_active
    and t.confirmed_at > now() - make_interval(days => $1)
    and (u.wa_revoked_at is null or u.wa_revoked_at < t.confirmed_at)
    and (t.wa_id is not null or t.bsuid is not null)
    and exists (
        select 1 from adm_role r
        join adm_role_permission rp on rp.role_id = r.id
        join adm_permission p on p.id = rp.permission_id
        where r.id = u.role_id and r.deleted_at is null and p.code = 'AI.CHAT')";

#[derive(sqlx::FromRow)]
struct Candidate {
    uuid: Uuid,
    full_name: String,
    lang: String,
    role_id: i64,
    wa_id: Option<String>,
    bsuid: Option<String>,
    send_at: Option<NaiveTime>,
}

/// The digest stage. Cheap to clone.
#[derive(Clone)]
pub struct Digests {
    db: PgPool,
    settings: DigestSettings,
    /// `identity.trust_days`.
    trust_days: i64,
    timezone: chrono_tz::Tz,
    /// How long one of the summary's reads may take.
    metrics_timeout: Duration,
    /// The sender's, rung after digests were written to the outbox.
    sender: Doorbell,
}

impl Digests {
    pub fn new(
        db: PgPool,
        settings: DigestSettings,
        trust_days: i64,
        timezone: chrono_tz::Tz,
        metrics_timeout: Duration,
        sender: Doorbell,
    ) -> Self {
        Self {
            db,
            settings,
            trust_days,
            timezone,
            metrics_timeout,
            sender,
        }
    }

    pub fn settings(&self) -> &DigestSettings {
        &self.settings
    }

    /// Looks for digests due every `digest.poll_secs` until `shutdown` (never when 0).
    pub async fn run(self, shutdown: CancellationToken) {
        if self.settings.poll_secs == 0 {
            tracing::info!("the morning digest scheduler is off (digest.poll_secs = 0)");
            return;
        }
        loop {
            match self.send_due(Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(digests = n, "morning digests queued"),
                Err(e) => {
                    metrics::counter!("digest_errors_total").increment(1);
                    tracing::warn!(error = %format!("{e:#}"), "cannot queue the morning digests; next round as planned");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(self.settings.poll_secs)) => {}
            }
        }
    }

    /// Queues every digest due at `now` that is not queued yet; returns how many this call
    /// queued (another instance may have queued the rest).
    pub async fn send_due(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let local = now.with_timezone(&self.timezone).naive_local();
        let catch_up = Span::minutes(i64::from(self.settings.catch_up_mins));
        let candidates: Vec<Candidate> = sqlx::query_as(&format!(
            "select distinct on (u.id) u.uuid, u.full_name, u.lang, u.role_id,
                    t.wa_id, t.bsuid,
                    case when p.user_id is not null then p.send_at
                         when (select r.code from adm_role r where r.id = u.role_id) = any($2)
                         then $3::time end as send_at
             from adm_user u
             join wa_trust t on t.user_id = u.id
             left join wa_digest_pref p on p.user_id = u.id
             where {MAY_RECEIVE}
             order by u.id, t.confirmed_at desc"
        ))
        .bind(self.trust_days as i32)
        .bind(&self.settings.default_roles)
        .bind(self.settings.default_time)
        .fetch_all(&self.db)
        .await
        .context("finding the users of a morning digest")?;
        let mut queued = 0;
        for c in candidates {
            let Some(day) = c.send_at.and_then(|at| due_day(local, at, catch_up)) else {
                continue;
            };
            // One user's failure (a slow read) does not keep the others' digests back.
            match self.queue(&c, day, local.hour()).await {
                Ok(true) => {
                    queued += 1;
                    metrics::counter!("digests_queued_total").increment(1);
                }
                Ok(false) => {}
                Err(e) => {
                    metrics::counter!("digest_errors_total").increment(1);
                    tracing::warn!(error = %format!("{e:#}"), user = %c.uuid, "cannot queue a morning digest; next round tries again");
                }
            }
        }
        if queued > 0 {
            self.sender.ring();
        }
        Ok(queued)
    }

    /// Queues the digest of `c` for `day` unless it is queued already; whether this call did.
    async fn queue(&self, c: &Candidate, day: NaiveDate, hour: u32) -> anyhow::Result<bool> {
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from wa_outbox where purpose = 'digest' and inbound_wamid like $1)",
        )
        .bind(format!("{}:%", key_of_day(c.uuid, day)))
        .fetch_one(&self.db)
        .await
        .context("looking for a queued digest")?;
        if exists {
            return Ok(false);
        }
        let text = self.text(c, day, hour).await?;
        let to = Recipient {
            wa_id: c.wa_id.clone(),
            bsuid: c.bsuid.clone(),
        };
        let key = key(c.uuid, day, c.role_id);
        let mut tx = self.db.begin().await.context("queuing a digest")?;
        // A part is written once per key: when another instance wrote part 1 first, this one
        // writes nothing (its text may be cut into other parts).
        for (n, part) in split_text(&text).iter().enumerate() {
            let written = outbox::enqueue(
                &mut tx,
                Outgoing {
                    purpose: Purpose::Digest,
                    reply_to: Some((&key, n as i32 + 1)),
                    to: &to,
                    content: content::text(part),
                    not_before: None,
                },
            )
            .await?
            .is_some();
            if !written {
                return Ok(false);
            }
        }
        tx.commit().await.context("queuing a digest")?;
        Ok(true)
    }

    /// The digest of `c` for `day`: a greeting, the summary under the user's permissions, how
    /// to stop it.
    async fn text(&self, c: &Candidate, day: NaiveDate, hour: u32) -> anyhow::Result<String> {
        let permissions: Vec<String> = sqlx::query_scalar(
            "select p.code from adm_role_permission rp join adm_permission p on p.id = rp.permission_id
             where rp.role_id = $1 order by p.code",
        )
        .bind(c.role_id)
        .fetch_all(&self.db)
        .await
        .context("reading the permissions of a digest's user")?;
        let s = summary::compute(
            &self.db,
            day,
            summary::Basis::ClosedDays,
            &permissions,
            self.metrics_timeout,
        )
        .await?;
        let lang = Lang::from_code(&c.lang);
        let first = c.full_name.split_whitespace().next().unwrap_or_default();
        let body = summary::text(&s, lang, self.timezone);
        let greeting = match (lang, hour) {
            (Lang::Id, 0..=10) => "Selamat pagi",
            (Lang::Id, 11..=14) => "Selamat siang",
            (Lang::Id, 15..=17) => "Selamat sore",
            (Lang::Id, _) => "Selamat malam",
            (Lang::En, 0..=11) => "Good morning",
            (Lang::En, 12..=17) => "Good afternoon",
            (Lang::En, _) => "Good evening",
        };
        Ok(match lang {
            Lang::Id => format!(
                "☀️ {greeting}, {first}. Ringkasan Anda (angka sampai kemarin):\n\n{body}\n\nKetik “stop digest” untuk berhenti menerima ringkasan ini."
            ),
            Lang::En => format!(
                "☀️ {greeting}, {first}. Your summary (figures up to yesterday):\n\n{body}\n\nType “stop digest” to stop this digest."
            ),
        })
    }

    /// The sender's last check of a digest row: its user is still active, still trusted on the
    /// device the row is addressed to, still of the role whose figures it holds, still wants a
    /// digest, and it is still within the catch-up window (a digest held back by retries is not
    /// sent at noon).
    pub fn veto(&self) -> Veto {
        let db = self.db.clone();
        let trust_days = self.trust_days;
        let settings = self.settings.clone();
        std::sync::Arc::new(move |outbox_id| {
            let db = db.clone();
            let settings = settings.clone();
            Box::pin(async move { still_wanted(&db, outbox_id, trust_days, &settings).await })
        })
    }
}

async fn still_wanted(
    db: &PgPool,
    outbox_id: i64,
    trust_days: i64,
    settings: &DigestSettings,
) -> anyhow::Result<bool> {
    sqlx::query_scalar(&format!(
        "select exists (
             select 1 from wa_outbox o
             join adm_user u on u.uuid::text = split_part(o.inbound_wamid, ':', 2)
             join adm_role r on r.id = u.role_id
             join wa_trust t on t.user_id = u.id
             left join wa_digest_pref p on p.user_id = u.id
             where o.id = $2
               and coalesce(t.wa_id, t.bsuid) = coalesce(o.wa_id, o.bsuid)
               and split_part(o.inbound_wamid, ':', 4) = u.role_id::text
               and (p.send_at is not null or (p.user_id is null and r.code = any($3)))
               and o.created_at > now() - make_interval(mins => $4)
               and {MAY_RECEIVE})"
    ))
    .bind(trust_days as i32)
    .bind(outbox_id)
    .bind(&settings.default_roles)
    .bind(settings.catch_up_mins as i32)
    .fetch_one(db)
    .await
    .context("checking that a digest is still wanted")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32) -> Option<NaiveTime> {
        NaiveTime::from_hms_opt(h, m, 0)
    }

    #[test]
    fn digest_messages_are_read_as_people_type_them() {
        assert_eq!(parse("digest jam 6"), Command::On(at(6, 0)));
        assert_eq!(parse("Digest jam 06.30 ya"), Command::On(at(6, 30)));
        assert_eq!(parse("kirim digest pukul 7 pagi"), Command::On(at(7, 0)));
        assert_eq!(parse("digest at 6:45"), Command::On(at(6, 45)));
        assert_eq!(parse("digest 6am please"), Command::On(at(6, 0)));
        assert_eq!(parse("digest jam 5 sore"), Command::On(at(17, 0)));
        assert_eq!(parse("stop digest"), Command::Off);
        assert_eq!(parse("matikan ringkasan pagi"), Command::Off);
        assert_eq!(parse("jangan kirim ringkasan tiap pagi lagi"), Command::Off);
        assert_eq!(parse("stop digest jam 6"), Command::Off);
        assert_eq!(parse("kirim ringkasan tiap pagi"), Command::On(None));
        assert_eq!(
            parse("send me the summary every morning"),
            Command::On(None)
        );
        assert_eq!(parse("digest jam 25"), Command::Status);
        assert_eq!(parse("kirim digest jam 25"), Command::Status);
        assert_eq!(parse("digest?"), Command::Status);
        assert_eq!(parse("digest jam 12 malam"), Command::On(at(0, 0)));
        assert_eq!(
            parse("jangan lupa kirim digest jam 6"),
            Command::On(at(6, 0))
        );
        assert_eq!(
            parse("digest jam 7 aja, tidak usah jam 6"),
            Command::On(at(7, 0))
        );
        assert_eq!(parse("gak mau digest lagi"), Command::Off);
        assert_eq!(parse("don't send me the digest"), Command::Off);
        assert_eq!(parse("tidak perlu kirim ringkasan tiap pagi"), Command::Off);
        assert_eq!(parse("is the digest on?"), Command::Status);
        assert_eq!(parse("kapan digest dikirim"), Command::Status);
    }

    #[test]
    fn a_digest_is_due_from_its_time_for_the_catch_up_window_even_past_midnight() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let three_hours = Span::minutes(180);
        let now = |h, m| day.and_hms_opt(h, m, 0).unwrap();
        assert_eq!(due_day(now(6, 59), at(7, 0).unwrap(), three_hours), None);
        assert_eq!(
            due_day(now(7, 0), at(7, 0).unwrap(), three_hours),
            Some(day)
        );
        assert_eq!(
            due_day(now(9, 59), at(7, 0).unwrap(), three_hours),
            Some(day)
        );
        assert_eq!(due_day(now(10, 0), at(7, 0).unwrap(), three_hours), None);
        let yesterday = day - Span::days(1);
        assert_eq!(
            due_day(now(1, 0), at(23, 0).unwrap(), three_hours),
            Some(yesterday)
        );
    }
}
