//! Approvals from the chat: purchase orders in "Pending Director" (`PO.APPROVE`) and sales
//! orders in "Pending" (`SO.APPROVE`), listed, approved or rejected from WhatsApp.
//!
//! - "approval", "PO yang perlu saya approve" list what waits for the asker, oldest first: a
//!   message with Approve / Reject / Detail buttons per document, or one list message when more
//!   than three wait.
//! - "approve PO-…" (or a tap on Approve) asks for confirmation with the document's value. Above
//!   `approvals.step_up_above`, or when the device was confirmed more than
//!   `approvals.step_up_after_hours` ago, a fresh one-time code goes by email first (the gate's
//!   mailer sends it; only its keyed hash is stored) and typing it is the confirmation.
//! - "tolak PO-…" (or Reject) asks for the reason; the next message is the reason.
//! - The change is one transaction on the locked document: status, `approved_by`,
//!   `approved_at` (an approval), `log_status` (old and new status, minutes in the old one, the
//!   reason) and `log_audit`. A second tap, a stale button, or another director who was quicker
//!   finds the document no longer pending and is told "already approved by … at …"; a user
//!   without the permission is refused. A rejected document goes back to Draft for its creator.
//! - The document's creator is told on WhatsApp, where their device is confirmed.
//!
//! What the user still has to finish (a tap, a code, a reason) is one row per user in
//! `wa_approval_step`, which expires after `approvals.step_ttl_mins`.

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Utc};
use regex::Regex;
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::{self, Entry};
use crate::config::ApprovalSettings;
use crate::domain::{otp, Caller};
use crate::metrics::format::rupiah;
use crate::outbox::{self, Outgoing, Purpose};
use crate::texts::{local_time, Lang};
use crate::whatsapp::graph::{content, Recipient};

/// What the step-up codes need of the identity settings.
#[derive(Clone)]
pub struct Rules {
    pub settings: ApprovalSettings,
    /// `identity.otp_secret`: the key of the codes' hashes.
    pub otp_secret: SecretString,
    /// `identity.otp_ttl_secs`.
    pub otp_ttl_secs: u64,
    /// `identity.otp_max_attempts`.
    pub otp_max_attempts: i32,
    /// `identity.otp_max_per_hour`.
    pub otp_max_per_hour: i64,
    pub timezone: chrono_tz::Tz,
}

/// A purchase order or a sales order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Po,
    So,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Po => "PO",
            Kind::So => "SO",
        }
    }

    fn parse(code: &str) -> Option<Kind> {
        match code {
            "PO" => Some(Kind::Po),
            "SO" => Some(Kind::So),
            _ => None,
        }
    }

    /// The status a document waits for approval in.
    fn pending(self) -> &'static str {
        match self {
            Kind::Po => "Pending Director",
            Kind::So => "Pending",
        }
    }

    fn approve_permission(self) -> &'static str {
        match self {
            Kind::Po => "PO.APPROVE",
            Kind::So => "SO.APPROVE",
        }
    }

    fn read_permission(self) -> &'static str {
        match self {
            Kind::Po => "PO.READ",
            Kind::So => "SO.READ",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Kind::Po => "t_po",
            Kind::So => "t_so",
        }
    }

    /// The document's row with its counterparty and approver, by id, uuid or number.
    fn select(self) -> String {
        let (party_join, party) = match self {
            Kind::Po => ("join m_vendor pa on pa.id = d.vendor_id", "pa.name"),
            Kind::So => ("join m_cust pa on pa.id = d.cust_id", "pa.name"),
        };
        format!(
            "select d.id, d.uuid, d.doc_no, {party} as party, d.total_amt, d.status, d.created_by,
                    ab.full_name as approved_by_name, d.approved_at,
                    coalesce((select max(ls.changed_at) from log_status ls
                              where ls.entity_type = '{code}' and ls.entity_id = d.id), d.created_at) as since
             from {table} d {party_join}
             left join adm_user ab on ab.id = d.approved_by
             where d.deleted_at is null",
            code = self.code(),
            table = self.table(),
        )
    }
}

/// A document as the chat shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Doc {
    id: i64,
    uuid: Uuid,
    doc_no: String,
    party: String,
    total_amt: Decimal,
    status: String,
    created_by: Option<i64>,
    approved_by_name: Option<String>,
    approved_at: Option<DateTime<Utc>>,
    /// When it entered its current status.
    since: DateTime<Utc>,
}

impl Doc {
    fn line(&self, lang: Lang) -> String {
        let days = (Utc::now() - self.since).num_days();
        let age = match (lang, days) {
            (Lang::Id, 0) => "hari ini".to_owned(),
            (Lang::Id, d) => format!("{d} hari"),
            (Lang::En, 0) => "today".to_owned(),
            (Lang::En, 1) => "1 day".to_owned(),
            (Lang::En, d) => format!("{d} days"),
        };
        match lang {
            Lang::Id => format!(
                "{} · {} · {} · menunggu {age}",
                self.doc_no,
                self.party,
                rupiah(self.total_amt)
            ),
            Lang::En => format!(
                "{} · {} · {} · waiting {age}",
                self.doc_no,
                self.party,
                rupiah(self.total_amt)
            ),
        }
    }

    fn named(&self) -> String {
        format!(
            "{} ({}, {})",
            self.doc_no,
            self.party,
            rupiah(self.total_amt)
        )
    }
}

/// What the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Approve,
    Reject,
    Detail,
    /// "Ya, setujui" under a confirmation.
    Confirm,
    /// "Batal".
    Cancel,
}

impl Action {
    fn letter(self) -> char {
        match self {
            Action::Approve => 'a',
            Action::Reject => 'r',
            Action::Detail => 'd',
            Action::Confirm => 'y',
            Action::Cancel => 'n',
        }
    }
}

/// A button of ours: the action and the document (`apv:<action>:<PO|SO>:<uuid>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tap {
    pub action: Action,
    pub kind: Kind,
    pub uuid: Uuid,
}

const PREFIX: &str = "apv:";

pub fn button_id(action: Action, kind: Kind, uuid: Uuid) -> String {
    format!("{PREFIX}{}:{}:{uuid}", action.letter(), kind.code())
}

/// The approval button a tap names, if it is one.
pub fn parse_button(id: &str) -> Option<Tap> {
    let mut parts = id.strip_prefix(PREFIX)?.splitn(3, ':');
    let action = match parts.next()? {
        "a" => Action::Approve,
        "r" => Action::Reject,
        "d" => Action::Detail,
        "y" => Action::Confirm,
        "n" => Action::Cancel,
        _ => return None,
    };
    let kind = Kind::parse(parts.next()?)?;
    let uuid = parts.next()?.parse().ok()?;
    Some(Tap { action, kind, uuid })
}

/// "approve PO-202412-0002", "setujui SO 202412-0002", "tolak po-202412-0002": the action and
/// the document number as written in the database.
static COMMAND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^\s*(approve|approved|setujui|setuju|acc|reject|tolak|detail|lihat)\b\W*(po|so)[\s\-]?(\d{6})[\s\-]?(\d{4})\b",
    )
    .expect("command pattern")
});

/// A typed approval command, with the document's number.
pub fn command(text: &str) -> Option<(Action, Kind, String)> {
    let c = COMMAND.captures(text)?;
    let action = match c[1].to_lowercase().as_str() {
        "reject" | "tolak" => Action::Reject,
        "detail" | "lihat" => Action::Detail,
        _ => Action::Approve,
    };
    let kind = Kind::parse(&c[2].to_uppercase())?;
    Some((action, kind, format!("{}-{}-{}", kind.code(), &c[3], &c[4])))
}

/// What to send back: the text for the chat log, and the messages (several, interactive) when
/// there are more than a text.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    pub text: String,
    pub messages: Vec<Value>,
    /// The asker may not do this.
    pub refused: bool,
}

impl Reply {
    fn text(text: String) -> Reply {
        Reply {
            text,
            ..Default::default()
        }
    }

    fn refused(text: String) -> Reply {
        Reply {
            text,
            refused: true,
            ..Default::default()
        }
    }
}

fn t(lang: Lang, id: &str, en: &str) -> String {
    match lang {
        Lang::Id => id.to_owned(),
        Lang::En => en.to_owned(),
    }
}

fn may_decide(caller: &Caller, kind: Kind) -> bool {
    caller.may(kind.approve_permission()) && caller.may(kind.read_permission())
}

async fn find(db: impl sqlx::PgExecutor<'_>, kind: Kind, key: &str) -> anyhow::Result<Option<Doc>> {
    sqlx::query_as(&format!(
        "{} and (d.doc_no = $1 or d.uuid::text = $1)",
        kind.select()
    ))
    .bind(key)
    .fetch_optional(db)
    .await
    .context("reading a document to approve")
}

fn not_found(lang: Lang, key: &str) -> Reply {
    Reply::text(match lang {
        Lang::Id => format!("Dokumen {key} tidak ditemukan."),
        Lang::En => format!("Document {key} was not found."),
    })
}

fn denied(lang: Lang, kind: Kind) -> Reply {
    Reply::refused(match lang {
        Lang::Id => format!(
            "Maaf, peran Anda tidak berwenang menyetujui {} (perlu {}).",
            kind.code(),
            kind.approve_permission()
        ),
        Lang::En => format!(
            "Sorry, your role may not approve {}s (it needs {}).",
            kind.code(),
            kind.approve_permission()
        ),
    })
}

/// Why a document is not waiting: approved (by whom, when) or in another status.
fn not_pending(doc: &Doc, lang: Lang, timezone: chrono_tz::Tz) -> Reply {
    match (&doc.approved_by_name, doc.approved_at) {
        (Some(by), Some(at))
            if doc.status == "Approved"
                || doc.status == "Open"
                || doc.status == "Received"
                || doc.status == "Closed" =>
        {
            let at = local_time(at, timezone);
            Reply::text(match lang {
                Lang::Id => format!(
                    "{} sudah disetujui oleh {by} pada {at}. Tidak ada yang diubah.",
                    doc.doc_no
                ),
                Lang::En => format!(
                    "{} was already approved by {by} at {at}. Nothing was changed.",
                    doc.doc_no
                ),
            })
        }
        _ => Reply::text(match lang {
            Lang::Id => format!(
                "{} tidak menunggu approval (status: {}). Tidak ada yang diubah.",
                doc.doc_no, doc.status
            ),
            Lang::En => format!(
                "{} is not waiting for approval (status: {}). Nothing was changed.",
                doc.doc_no, doc.status
            ),
        }),
    }
}

fn decision_buttons(doc: &Doc, kind: Kind, lang: Lang) -> Value {
    let body = match lang {
        Lang::Id => format!("✍️ Menunggu approval Anda:\n{}", doc.line(lang)),
        Lang::En => format!("✍️ Awaiting your approval:\n{}", doc.line(lang)),
    };
    let approve = button_id(Action::Approve, kind, doc.uuid);
    let reject = button_id(Action::Reject, kind, doc.uuid);
    let detail = button_id(Action::Detail, kind, doc.uuid);
    let (a, r, d) = match lang {
        Lang::Id => ("Setujui", "Tolak", "Detail"),
        Lang::En => ("Approve", "Reject", "Detail"),
    };
    content::buttons(&body, &[(&approve, a), (&reject, r), (&detail, d)])
}

/// Most documents one list message shows (WhatsApp's limit is ten rows).
const LIST_ROWS: usize = 10;

/// "approval": what waits for the asker, oldest first.
pub async fn list(db: &PgPool, caller: &Caller, lang: Lang) -> anyhow::Result<Reply> {
    let mut waiting: Vec<(Kind, Doc)> = Vec::new();
    let kinds: Vec<Kind> = [Kind::Po, Kind::So]
        .into_iter()
        .filter(|k| may_decide(caller, *k))
        .collect();
    if kinds.is_empty() {
        return Ok(Reply::refused(t(
            lang,
            "Maaf, peran Anda tidak menyetujui PO atau SO.",
            "Sorry, your role approves neither POs nor sales orders.",
        )));
    }
    for kind in kinds {
        let docs: Vec<Doc> = sqlx::query_as(&format!(
            "{} and d.status = $1 order by since, d.doc_no limit 50",
            kind.select()
        ))
        .bind(kind.pending())
        .fetch_all(db)
        .await
        .context("reading documents waiting for approval")?;
        waiting.extend(docs.into_iter().map(|d| (kind, d)));
    }
    waiting.sort_by_key(|(_, d)| d.since);
    if waiting.is_empty() {
        return Ok(Reply::text(t(
            lang,
            "Tidak ada dokumen yang menunggu approval Anda.",
            "Nothing is waiting for your approval.",
        )));
    }
    let header = match lang {
        Lang::Id => format!("✍️ {} dokumen menunggu approval Anda:", waiting.len()),
        Lang::En => format!("✍️ {} document(s) awaiting your approval:", waiting.len()),
    };
    let lines: Vec<String> = waiting
        .iter()
        .map(|(_, d)| format!("• {}", d.line(lang)))
        .collect();
    let text = format!("{header}\n{}", lines.join("\n"));
    let messages = if waiting.len() <= 3 {
        waiting
            .iter()
            .map(|(k, d)| decision_buttons(d, *k, lang))
            .collect()
    } else {
        let ids: Vec<String> = waiting
            .iter()
            .take(LIST_ROWS)
            .map(|(k, d)| button_id(Action::Detail, *k, d.uuid))
            .collect();
        let descriptions: Vec<String> = waiting
            .iter()
            .take(LIST_ROWS)
            .map(|(_, d)| {
                let days = (Utc::now() - d.since).num_days();
                let mut s = format!(
                    "{} · {} · {days}d",
                    d.party,
                    crate::metrics::format::rupiah_short(d.total_amt)
                );
                if s.chars().count() > 72 {
                    s = s.chars().take(71).collect::<String>() + "…";
                }
                s
            })
            .collect();
        let rows: Vec<(&str, &str, &str)> = waiting
            .iter()
            .take(LIST_ROWS)
            .enumerate()
            .map(|(i, (_, d))| (ids[i].as_str(), d.doc_no.as_str(), descriptions[i].as_str()))
            .collect();
        let more = waiting.len().saturating_sub(LIST_ROWS);
        let body = match (lang, more) {
            (Lang::Id, 0) => format!("{header}\nPilih dokumen untuk melihat detail dan memutuskan."),
            (Lang::Id, n) => format!("{header}\nPilih dokumen untuk melihat detail dan memutuskan ({n} lainnya: ketik “approve <nomor>”)."),
            (Lang::En, 0) => format!("{header}\nPick a document to see it and decide."),
            (Lang::En, n) => format!("{header}\nPick a document to see it and decide ({n} more: type “approve <number>”)."),
        };
        let (button, section) = match lang {
            Lang::Id => ("Lihat dokumen", "Menunggu approval"),
            Lang::En => ("Show documents", "Awaiting approval"),
        };
        vec![content::list(&body, button, section, &rows)]
    };
    Ok(Reply {
        text,
        messages,
        refused: false,
    })
}

/// The approval turn of `caller`'s message `wamid`: a tap on one of our buttons, a typed
/// command ("approve PO-…"), or the answer to a step the user started (the code, the reason,
/// "batal"); `None` when the message is none of these (it is answered as usual).
///
/// A turn runs in one transaction under a per-user lock and stores its reply by `wamid`: the
/// same message processed twice (a redelivery, two instances at once) gets the same reply and
/// issues, counts or changes nothing a second time.
pub async fn turn(
    db: &PgPool,
    rules: &Rules,
    caller: &Caller,
    wamid: &str,
    button: Option<&str>,
    text: Option<&str>,
    lang: Lang,
) -> anyhow::Result<Option<Reply>> {
    let tap = button.and_then(parse_button);
    let typed = text.and_then(command);
    if tap.is_none() && typed.is_none() {
        let open: bool = sqlx::query_scalar(
            "select exists (select 1 from wa_approval_step where user_id = $1 and expires_at > now())",
        )
        .bind(caller.user_id)
        .fetch_one(db)
        .await
        .context("looking for an open approval step")?;
        if !open || text.is_none() {
            return Ok(None);
        }
    }
    let mut tx = db.begin().await.context("starting an approval turn")?;
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('approval:' || $1::text, 0))")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await
        .context("taking the approver's lock")?;
    let done: Option<sqlx::types::Json<Reply>> =
        sqlx::query_scalar("select reply from wa_approval_turn where wamid = $1")
            .bind(wamid)
            .fetch_optional(&mut *tx)
            .await
            .context("reading an earlier turn")?;
    if let Some(done) = done {
        return Ok(Some(done.0));
    }
    let reply = if let Some(tap) = tap {
        Some(self::tap(&mut tx, rules, caller, tap, caller.lang).await?)
    } else if let Some((action, kind, doc)) = typed {
        Some(start(&mut tx, rules, caller, action, kind, &doc, lang).await?)
    } else {
        match (open_step(&mut tx, caller.user_id).await?, text) {
            (Some(step), Some(text)) => {
                follow_up(&mut tx, rules, caller, &step, text, lang).await?
            }
            _ => None,
        }
    };
    let Some(reply) = reply else {
        return Ok(None);
    };
    sqlx::query("insert into wa_approval_turn (wamid, user_id, reply) values ($1, $2, $3)")
        .bind(wamid)
        .bind(caller.user_id)
        .bind(sqlx::types::Json(&reply))
        .execute(&mut *tx)
        .await
        .context("recording an approval turn")?;
    sqlx::query("delete from wa_approval_turn where created_at < now() - interval '1 day'")
        .execute(&mut *tx)
        .await
        .context("forgetting old approval turns")?;
    tx.commit().await.context("committing an approval turn")?;
    Ok(Some(reply))
}

/// A step the user has to finish.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Step {
    entity_type: String,
    entity_id: i64,
    action: String,
    stage: String,
    otp_id: Option<i64>,
}

/// The user's open step, if any.
async fn open_step(conn: &mut PgConnection, user_id: i64) -> anyhow::Result<Option<Step>> {
    sqlx::query_as(
        "select entity_type, entity_id, action, stage, otp_id from wa_approval_step
         where user_id = $1 and expires_at > now()",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
    .context("reading an open approval step")
}

async fn set_step(
    conn: &mut PgConnection,
    rules: &Rules,
    user_id: i64,
    kind: Kind,
    doc: &Doc,
    (action, stage): (&str, &str),
    otp_id: Option<i64>,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into wa_approval_step (user_id, entity_type, entity_id, action, stage, otp_id, expires_at)
         values ($1, $2, $3, $4, $5, $6, now() + make_interval(mins => $7))
         on conflict (user_id) do update set entity_type = excluded.entity_type,
             entity_id = excluded.entity_id, action = excluded.action, stage = excluded.stage,
             otp_id = excluded.otp_id, expires_at = excluded.expires_at, created_at = now()",
    )
    .bind(user_id)
    .bind(kind.code())
    .bind(doc.id)
    .bind(action)
    .bind(stage)
    .bind(otp_id)
    .bind(rules.settings.step_ttl_mins as i32)
    .execute(conn)
    .await
    .context("recording an approval step")?;
    Ok(())
}

async fn clear_step(db: impl sqlx::PgExecutor<'_>, user_id: i64) -> anyhow::Result<()> {
    sqlx::query("delete from wa_approval_step where user_id = $1")
        .bind(user_id)
        .execute(db)
        .await
        .context("ending an approval step")?;
    Ok(())
}

/// "approve PO-…", "tolak PO-…", "detail PO-…", or a tap on one of a document's buttons.
async fn start(
    conn: &mut PgConnection,
    rules: &Rules,
    caller: &Caller,
    action: Action,
    kind: Kind,
    key: &str,
    lang: Lang,
) -> anyhow::Result<Reply> {
    if !may_decide(caller, kind) {
        return Ok(denied(lang, kind));
    }
    let Some(doc) = find(&mut *conn, kind, key).await? else {
        return Ok(not_found(lang, key));
    };
    if doc.status != kind.pending() {
        clear_step(&mut *conn, caller.user_id).await?;
        return Ok(not_pending(&doc, lang, rules.timezone));
    }
    match action {
        Action::Detail => {
            let message = decision_buttons(&doc, kind, lang);
            Ok(Reply {
                text: doc.line(lang),
                messages: vec![message],
                refused: false,
            })
        }
        Action::Reject => {
            set_step(
                conn,
                rules,
                caller.user_id,
                kind,
                &doc,
                ("reject", "reason"),
                None,
            )
            .await?;
            Ok(Reply::text(match lang {
                Lang::Id => format!(
                    "Alasan menolak {}? Balas dengan alasannya (atau “batal”).",
                    doc.named()
                ),
                Lang::En => format!(
                    "Why reject {}? Reply with the reason (or “cancel”).",
                    doc.named()
                ),
            }))
        }
        Action::Approve => approve_step(conn, rules, caller, kind, &doc, lang).await,
        Action::Confirm | Action::Cancel => Ok(Reply::default()),
    }
}

/// The confirmation, or the step-up code first.
async fn approve_step(
    conn: &mut PgConnection,
    rules: &Rules,
    caller: &Caller,
    kind: Kind,
    doc: &Doc,
    lang: Lang,
) -> anyhow::Result<Reply> {
    let (email, confirmed_at): (Option<String>, Option<DateTime<Utc>>) = sqlx::query_as(
        "select u.email, t.confirmed_at from adm_user u left join wa_trust t on t.user_id = u.id
         where u.id = $1",
    )
    .bind(caller.user_id)
    .fetch_one(&mut *conn)
    .await
    .context("reading the approver's device")?;
    let device_old = confirmed_at.is_none_or(|at| {
        (Utc::now() - at).num_minutes() > i64::from(rules.settings.step_up_after_hours) * 60
    });
    let large = doc.total_amt > Decimal::from(rules.settings.step_up_above);
    if !(device_old || large) {
        set_step(
            conn,
            rules,
            caller.user_id,
            kind,
            doc,
            ("approve", "confirm"),
            None,
        )
        .await?;
        let yes = button_id(Action::Confirm, kind, doc.uuid);
        let no = button_id(Action::Cancel, kind, doc.uuid);
        let (body, y, n) = match lang {
            Lang::Id => (format!("Setujui {}?", doc.named()), "Ya, setujui", "Batal"),
            Lang::En => (
                format!("Approve {}?", doc.named()),
                "Yes, approve",
                "Cancel",
            ),
        };
        return Ok(Reply {
            text: body.clone(),
            messages: vec![content::buttons(&body, &[(&yes, y), (&no, n)])],
            refused: false,
        });
    }
    let Some(email) = email else {
        return Ok(Reply::refused(t(
            lang,
            "Dokumen ini perlu kode verifikasi lewat email, tetapi akun Anda tidak punya alamat email. Hubungi administrator.",
            "This document needs a code by email, but your account has no email address. Ask your administrator.",
        )));
    };
    let recent: i64 = sqlx::query_scalar(
        "select count(*) from wa_otp
         where user_id = $1 and purpose = 'approval' and created_at > now() - interval '1 hour'",
    )
    .bind(caller.user_id)
    .fetch_one(&mut *conn)
    .await
    .context("counting recent approval codes")?;
    if recent >= rules.otp_max_per_hour {
        return Ok(Reply::refused(t(
            lang,
            "Terlalu banyak kode persetujuan dalam satu jam. Coba lagi nanti.",
            "Too many approval codes within an hour. Try again later.",
        )));
    }
    sqlx::query(
        "update wa_otp set voided_at = now()
         where user_id = $1 and purpose = 'approval' and consumed_at is null and voided_at is null",
    )
    .bind(caller.user_id)
    .execute(&mut *conn)
    .await
    .context("voiding older approval codes")?;
    // No code yet: the gate's mailer draws it, and stores its hash, when it sends.
    let otp_id: i64 = sqlx::query_scalar(
        "insert into wa_otp (user_id, code_hash, expires_at, purpose, subject)
         values ($1, '', now() + make_interval(secs => $2), 'approval', $3) returning id",
    )
    .bind(caller.user_id)
    .bind(rules.otp_ttl_secs as f64)
    .bind(doc.named())
    .fetch_one(&mut *conn)
    .await
    .context("issuing an approval code")?;
    set_step(
        conn,
        rules,
        caller.user_id,
        kind,
        doc,
        ("approve", "code"),
        Some(otp_id),
    )
    .await?;
    let masked = crate::domain::phone::mask_email(&email);
    let minutes = rules.otp_ttl_secs / 60;
    let why = match (large, lang) {
        (true, Lang::Id) => "nilainya di atas batas",
        (true, Lang::En) => "its value is above the limit",
        (false, Lang::Id) => "perangkat Anda terakhir dikonfirmasi sudah lama",
        (false, Lang::En) => "your device was confirmed a while ago",
    };
    Ok(Reply::text(match lang {
        Lang::Id => format!(
            "🔐 Untuk menyetujui {} ({why}), ketik kode 6 digit yang kami kirim ke {masked}. Berlaku {minutes} menit. Ketik “batal” untuk membatalkan."
            , doc.named()
        ),
        Lang::En => format!(
            "🔐 To approve {} ({why}), type the 6-digit code we sent to {masked}. Valid for {minutes} minutes. Type “cancel” to stop.",
            doc.named()
        ),
    }))
}

/// A tap on one of our buttons.
async fn tap(
    conn: &mut PgConnection,
    rules: &Rules,
    caller: &Caller,
    tap: Tap,
    lang: Lang,
) -> anyhow::Result<Reply> {
    let key = tap.uuid.to_string();
    match tap.action {
        Action::Approve | Action::Reject | Action::Detail => {
            start(conn, rules, caller, tap.action, tap.kind, &key, lang).await
        }
        Action::Cancel => {
            clear_step(&mut *conn, caller.user_id).await?;
            Ok(Reply::text(t(
                lang,
                "Dibatalkan. Tidak ada yang diubah.",
                "Cancelled. Nothing was changed.",
            )))
        }
        Action::Confirm => {
            if !may_decide(caller, tap.kind) {
                return Ok(denied(lang, tap.kind));
            }
            let Some(doc) = find(&mut *conn, tap.kind, &key).await? else {
                return Ok(not_found(lang, &key));
            };
            let step = open_step(&mut *conn, caller.user_id).await?;
            let confirmed = step.is_some_and(|s| {
                s.stage == "confirm"
                    && s.action == "approve"
                    && s.entity_type == tap.kind.code()
                    && s.entity_id == doc.id
            });
            if doc.status != tap.kind.pending() {
                clear_step(&mut *conn, caller.user_id).await?;
                return Ok(not_pending(&doc, lang, rules.timezone));
            }
            if !confirmed {
                return Ok(Reply::text(match lang {
                    Lang::Id => format!("Konfirmasi untuk {} sudah tidak berlaku. Ketik “approve {}” untuk mulai lagi.", doc.doc_no, doc.doc_no),
                    Lang::En => format!("The confirmation for {} is no longer valid. Type “approve {}” to start again.", doc.doc_no, doc.doc_no),
                }));
            }
            decide(
                conn,
                rules,
                caller,
                tap.kind,
                doc.id,
                Decision::Approve,
                lang,
            )
            .await
        }
    }
}

/// A message while a step is open: the step-up code, the reason of a rejection, or "batal".
/// `None` when the message is something else (it is answered as usual; the step stays).
async fn follow_up(
    conn: &mut PgConnection,
    rules: &Rules,
    caller: &Caller,
    step: &Step,
    text: &str,
    lang: Lang,
) -> anyhow::Result<Option<Reply>> {
    let Some(kind) = Kind::parse(&step.entity_type) else {
        return Ok(None);
    };
    let lower = text.trim().to_lowercase();
    if matches!(
        lower.as_str(),
        "batal" | "cancel" | "batalkan" | "tidak jadi" | "ga jadi" | "gak jadi"
    ) {
        clear_step(&mut *conn, caller.user_id).await?;
        return Ok(Some(Reply::text(t(
            lang,
            "Dibatalkan. Tidak ada yang diubah.",
            "Cancelled. Nothing was changed.",
        ))));
    }
    match step.stage.as_str() {
        "code" => {
            let Some(code) = otp::parse(text) else {
                return Ok(None);
            };
            let row: Option<(i64, String, Option<DateTime<Utc>>, i32)> = sqlx::query_as(
                "select id, code_hash, sent_at, attempts from wa_otp
                 where id = $1 and user_id = $2 and purpose = 'approval' and consumed_at is null
                   and voided_at is null and expires_at > now()
                 for update",
            )
            .bind(step.otp_id)
            .bind(caller.user_id)
            .fetch_optional(&mut *conn)
            .await
            .context("reading the approval code")?;
            let Some((otp_id, stored, sent_at, attempts)) = row.filter(|r| r.2.is_some()) else {
                clear_step(&mut *conn, caller.user_id).await?;
                return Ok(Some(Reply::text(t(
                    lang,
                    "Kode itu tidak berlaku lagi. Ketik “approve <nomor dokumen>” untuk meminta kode baru.",
                    "That code is no longer valid. Type “approve <document number>” for a new one.",
                ))));
            };
            let _ = sent_at;
            let given = otp::hash(
                rules.otp_secret.expose_secret().as_bytes(),
                caller.user_id,
                &code,
            );
            if !otp::same(&given, &stored) {
                let attempts = attempts + 1;
                let locked = attempts >= rules.otp_max_attempts;
                sqlx::query(
                    "update wa_otp set attempts = $2, voided_at = case when $3 then now() else voided_at end
                     where id = $1",
                )
                .bind(otp_id)
                .bind(attempts)
                .bind(locked)
                .execute(&mut *conn)
                .await
                .context("counting a wrong approval code")?;
                if locked {
                    clear_step(&mut *conn, caller.user_id).await?;
                }
                audit::record(
                    &mut *conn,
                    Some(caller.user_id),
                    None,
                    Entry {
                        action: "APPROVAL_CODE_WRONG",
                        entity_type: "wa_otp",
                        entity_id: Some(otp_id),
                        entity_uuid: None,
                        old: None,
                        new: Some(json!({ "attempt": attempts, "locked": locked })),
                    },
                )
                .await?;
                return Ok(Some(Reply::text(if locked {
                    t(
                        lang,
                        "Kode salah terlalu sering; persetujuan dibatalkan. Tidak ada yang diubah.",
                        "Too many wrong codes; the approval was cancelled. Nothing was changed.",
                    )
                } else {
                    t(lang, "Kode salah. Coba lagi.", "Wrong code. Try again.")
                })));
            }
            sqlx::query("update wa_otp set consumed_at = now() where id = $1")
                .bind(otp_id)
                .execute(&mut *conn)
                .await
                .context("consuming an approval code")?;
            Ok(Some(
                decide(
                    conn,
                    rules,
                    caller,
                    kind,
                    step.entity_id,
                    Decision::Approve,
                    lang,
                )
                .await?,
            ))
        }
        "reason" => {
            if command(text).is_some() {
                return Ok(None);
            }
            let reason: String = text.trim().chars().take(500).collect();
            if reason.is_empty() {
                return Ok(None);
            }
            Ok(Some(
                decide(
                    conn,
                    rules,
                    caller,
                    kind,
                    step.entity_id,
                    Decision::Reject(reason),
                    lang,
                )
                .await?,
            ))
        }
        _ => Ok(None),
    }
}

enum Decision {
    Approve,
    Reject(String),
}

/// The change itself, in one transaction on the locked document.
async fn decide(
    tx: &mut PgConnection,
    rules: &Rules,
    caller: &Caller,
    kind: Kind,
    id: i64,
    decision: Decision,
    lang: Lang,
) -> anyhow::Result<Reply> {
    if !may_decide(caller, kind) {
        return Ok(denied(lang, kind));
    }
    let doc: Option<Doc> =
        sqlx::query_as(&format!("{} and d.id = $1 for update of d", kind.select()))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .context("locking the document")?;
    let Some(doc) = doc else {
        clear_step(&mut *tx, caller.user_id).await?;
        return Ok(not_found(lang, &id.to_string()));
    };
    clear_step(&mut *tx, caller.user_id).await?;
    if doc.status != kind.pending() {
        // Read again: the row was re-checked under the lock, its joins were not (the approver's
        // name of a concurrent approval is only in a fresh read).
        let fresh = find(&mut *tx, kind, &doc.uuid.to_string())
            .await?
            .unwrap_or(doc);
        return Ok(not_pending(&fresh, lang, rules.timezone));
    }
    let (new_status, reason) = match &decision {
        Decision::Approve => ("Approved", None),
        Decision::Reject(r) => ("Draft", Some(r.as_str())),
    };
    let approving = matches!(decision, Decision::Approve);
    sqlx::query(&format!(
        "update {} set status = $2, updated_at = now(), updated_by = $3,
             approved_by = case when $4 then $3 else approved_by end,
             approved_at = case when $4 then now() else approved_at end
         where id = $1",
        kind.table()
    ))
    .bind(doc.id)
    .bind(new_status)
    .bind(caller.user_id)
    .bind(approving)
    .execute(&mut *tx)
    .await
    .context("changing the document's status")?;
    let minutes = (Utc::now() - doc.since).num_minutes().max(0);
    let notes = match reason {
        Some(r) => format!("via WhatsApp; ditolak: {r}"),
        None => "via WhatsApp".to_owned(),
    };
    let log_id: i64 = sqlx::query_scalar(
        "insert into log_status (entity_type, entity_id, old_status, new_status, changed_by, duration_min, notes)
         values ($1, $2, $3, $4, $5, $6, $7) returning id",
    )
    .bind(kind.code())
    .bind(doc.id)
    .bind(&doc.status)
    .bind(new_status)
    .bind(caller.user_id)
    .bind(minutes.min(i64::from(i32::MAX)) as i32)
    .bind(&notes)
    .fetch_one(&mut *tx)
    .await
    .context("writing log_status")?;
    audit::record(
        &mut *tx,
        Some(caller.user_id),
        None,
        Entry {
            action: if approving { "APPROVE" } else { "REJECT" },
            entity_type: kind.table(),
            entity_id: Some(doc.id),
            entity_uuid: Some(doc.uuid),
            old: Some(json!({ "status": doc.status })),
            new: Some(json!({ "status": new_status, "via": "whatsapp", "reason": reason })),
        },
    )
    .await?;
    let at = local_time(Utc::now(), rules.timezone);
    tell_creator(&mut *tx, &doc, caller, approving, reason, &at, log_id).await?;
    metrics::counter!("chat_approvals_total", "decision" => if approving { "approve" } else { "reject" }).increment(1);
    Ok(Reply::text(match (approving, lang) {
        (true, Lang::Id) => format!("✅ {} disetujui pada {at}.", doc.named()),
        (true, Lang::En) => format!("✅ {} approved at {at}.", doc.named()),
        (false, Lang::Id) => format!(
            "❌ {} ditolak dan kembali ke Draft. Alasan: {}",
            doc.named(),
            reason.unwrap_or_default()
        ),
        (false, Lang::En) => format!(
            "❌ {} rejected and back to Draft. Reason: {}",
            doc.named(),
            reason.unwrap_or_default()
        ),
    }))
}

/// Tells the document's creator (another user, active, on a confirmed device) what became of
/// it; once per status change (the outbox key names the `log_status` row).
async fn tell_creator(
    tx: &mut PgConnection,
    doc: &Doc,
    caller: &Caller,
    approved: bool,
    reason: Option<&str>,
    at: &str,
    log_id: i64,
) -> anyhow::Result<()> {
    let Some(creator) = doc.created_by.filter(|c| *c != caller.user_id) else {
        return Ok(());
    };
    let to: Option<(Option<String>, Option<String>, String)> = sqlx::query_as(
        "select t.wa_id, t.bsuid, u.lang from adm_user u join wa_trust t on t.user_id = u.id
         where u.id = $1 and u.deleted_at is null and u.is_active and t.confirmed_at is not null
           and (u.wa_revoked_at is null or u.wa_revoked_at < t.confirmed_at)
           and (t.wa_id is not null or t.bsuid is not null)",
    )
    .bind(creator)
    .fetch_optional(&mut *tx)
    .await
    .context("finding the document's creator")?;
    let Some((wa_id, bsuid, lang)) = to else {
        return Ok(());
    };
    let by = &caller.full_name;
    let text = match (approved, Lang::from_code(&lang)) {
        (true, Lang::Id) => format!("✅ {} disetujui oleh {by} pada {at}.", doc.named()),
        (true, Lang::En) => format!("✅ {} was approved by {by} at {at}.", doc.named()),
        (false, Lang::Id) => format!(
            "❌ {} ditolak oleh {by} pada {at} dan kembali ke Draft. Alasan: {}",
            doc.named(),
            reason.unwrap_or_default()
        ),
        (false, Lang::En) => format!(
            "❌ {} was rejected by {by} at {at} and is back to Draft. Reason: {}",
            doc.named(),
            reason.unwrap_or_default()
        ),
    };
    let key = format!("approval:{log_id}");
    outbox::enqueue(
        tx,
        Outgoing {
            purpose: Purpose::Answer,
            reply_to: Some((&key, 1)),
            to: &Recipient { wa_id, bsuid },
            content: content::text(&text),
            not_before: None,
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_the_action_and_the_document() {
        assert_eq!(
            command("approve PO-202412-0002"),
            Some((Action::Approve, Kind::Po, "PO-202412-0002".into()))
        );
        assert_eq!(
            command("Setujui so 202412-0002 ya"),
            Some((Action::Approve, Kind::So, "SO-202412-0002".into()))
        );
        assert_eq!(
            command("tolak PO2024120002"),
            Some((Action::Reject, Kind::Po, "PO-202412-0002".into()))
        );
        assert_eq!(command("status PO-202412-0002"), None);
        assert_eq!(command("siapa yang approve PO-202412-0002?"), None);
        assert_eq!(command("approve"), None);
    }

    #[test]
    fn buttons_round_trip_and_garbage_is_no_button() {
        let uuid = Uuid::new_v4();
        for action in [
            Action::Approve,
            Action::Reject,
            Action::Detail,
            Action::Confirm,
            Action::Cancel,
        ] {
            let id = button_id(action, Kind::So, uuid);
            assert!(id.len() <= 256);
            assert_eq!(
                parse_button(&id),
                Some(Tap {
                    action,
                    kind: Kind::So,
                    uuid
                })
            );
        }
        assert_eq!(
            parse_button("apv:x:PO:00000000-0000-0000-0000-000000000000"),
            None
        );
        assert_eq!(
            parse_button("apv:a:XX:00000000-0000-0000-0000-000000000000"),
            None
        );
        assert_eq!(parse_button("apv:a:PO:not-a-uuid"), None);
        assert_eq!(parse_button("alert.ack:whatever"), None);
    }
}
