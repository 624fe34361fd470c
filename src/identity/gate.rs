//! The gate every inbound message passes before the brain sees it: whitelist (phone or BSUID of
//! an active, non-deleted user whose role may chat), then device trust (email OTP), inside the
//! worker's transaction, so what the gate decides and what the worker records commit together.
//!
//! What each sender gets:
//! - unknown, deactivated or deleted: one polite refusal per 24 hours, every attempt audited, no
//!   data, no LLM call, no OTP;
//! - whitelisted but not (or no longer) trusted: the message is held (at most
//!   `identity.max_held`; a later one is not kept, and the user is told so once), a code is
//!   issued (at most `identity.otp_max_per_hour` an hour) and mailed after the transaction, and
//!   the user is asked for it; when the right code comes the held messages are released to the
//!   brain, in order;
//! - trusted: admitted, with role and permissions.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use crate::audit::{self, Entry};
use crate::config::IdentitySettings;
use crate::domain::otp;
use crate::domain::phone::{mask_email, mask_phone, PhoneE164};
use crate::domain::Caller;
use crate::identity::mailer::{MailPurpose, OtpMail, SendsCodes};
use crate::outbox::{self, Outgoing, Purpose};
use crate::queue::Doorbell;
use crate::texts::{self, Lang};
use crate::whatsapp::graph::{content, Recipient};

/// The gate stage. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    /// Mails the codes.
    mailer: Arc<dyn SendsCodes>,
    settings: Arc<IdentitySettings>,
    /// Zone of the time named in the code mail.
    timezone: chrono_tz::Tz,
    /// Longest wait for one code mail (the SMTP timeout and a second).
    mail_timeout: Duration,
    /// The sender's, rung when a code mail's notice is queued.
    sender: Doorbell,
    /// The mailer's, rung once a code to mail has committed.
    mail: Doorbell,
}

/// What the worker needs to know of an inbound message.
pub struct Inbound<'a> {
    pub wamid: &'a str,
    pub sender_key: &'a str,
    pub wa_id: Option<&'a str>,
    pub bsuid: Option<&'a str>,
    pub identity_hash: Option<&'a str>,
    pub msg_type: &'a str,
    pub body: Option<&'a str>,
    pub payload: &'a Value,
    pub lang: Lang,
}

/// The gate's decision.
pub enum Admission {
    /// Not whitelisted; the refusal to send, if one is due.
    Refused(Option<String>),
    /// A WhatsApp system notice was recorded; nothing to say.
    Noted,
    /// Held until the device is confirmed; what to tell the user.
    Held(String),
    /// Not kept: `identity.max_held` messages wait for the code already; what to tell the user
    /// (the first time only).
    Dropped(Option<String>),
    /// A code was checked: the answer to it and, when it was right, how many held messages
    /// were released to be answered.
    Code { reply: String, released: usize },
    /// Trusted: go ahead.
    Admitted(Caller),
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    full_name: String,
    email: Option<String>,
    phone: Option<String>,
    bsuid: Option<String>,
    lang: String,
    is_active: bool,
    wa_revoked_at: Option<DateTime<Utc>>,
    role: String,
    permissions: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct TrustRow {
    wa_id: Option<String>,
    identity_hash: Option<String>,
    confirmed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct OtpRow {
    id: i64,
    code_hash: String,
    sent_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    attempts: i32,
}

impl Gate {
    pub fn new(
        mailer: Arc<dyn SendsCodes>,
        settings: IdentitySettings,
        timezone: chrono_tz::Tz,
        mail_timeout: Duration,
        sender: Doorbell,
    ) -> Self {
        Self {
            mailer,
            settings: Arc::new(settings),
            timezone,
            mail_timeout,
            sender,
            mail: Doorbell::default(),
        }
    }

    /// Decides what happens to `msg`, recording trust, codes and audit rows in `tx`.
    #[tracing::instrument(skip_all, fields(wamid = msg.wamid))]
    pub async fn admit(
        &self,
        tx: &mut PgConnection,
        msg: &Inbound<'_>,
    ) -> anyhow::Result<Admission> {
        let phone = msg.wa_id.and_then(|w| PhoneE164::from_wa_id(w).ok());
        let user = find_user(&mut *tx, phone.as_ref(), msg.bsuid).await?;

        let user = match user {
            Some(u) if u.is_active && u.permissions.iter().any(|p| p == "AI.CHAT") => u,
            other => {
                let reason = match &other {
                    None => "unknown",
                    Some(u) if !u.is_active => "inactive",
                    Some(_) => "no_ai_chat",
                };
                return refuse(tx, msg, other.map(|u| u.id), reason).await;
            }
        };

        // Meta sent both ids for a known phone: remember the BSUID for messages without a phone.
        if let (Some(bsuid), Some(phone)) = (msg.bsuid, &phone) {
            if user.bsuid.as_deref() != Some(bsuid) && user.phone.as_deref() == Some(phone.as_str())
            {
                sqlx::query("update adm_user set bsuid = $2 where id = $1")
                    .bind(user.id)
                    .bind(bsuid)
                    .execute(&mut *tx)
                    .await
                    .context("recording the BSUID")?;
            }
        }

        let caller = Caller {
            user_id: user.id,
            full_name: user.full_name.clone(),
            role: user.role.clone(),
            permissions: user.permissions.iter().cloned().collect::<HashSet<_>>(),
            lang: Lang::from_code(&user.lang),
        };

        if msg.msg_type == "system" {
            return system_notice(tx, &user, msg).await;
        }

        let trust: Option<TrustRow> = sqlx::query_as(
            "select wa_id, identity_hash, confirmed_at from wa_trust where user_id = $1 for update",
        )
        .bind(user.id)
        .fetch_optional(&mut *tx)
        .await
        .context("reading device trust")?;

        let untrusted = match &trust {
            None => Some("first_contact"),
            Some(t) => why_not_trusted(t, &user, msg, self.settings.trust_days),
        };
        let Some(reason) = untrusted else {
            if msg.identity_hash.is_some()
                && trust.as_ref().is_some_and(|t| t.identity_hash.is_none())
            {
                sqlx::query("update wa_trust set identity_hash = $2 where user_id = $1")
                    .bind(user.id)
                    .bind(msg.identity_hash)
                    .execute(&mut *tx)
                    .await
                    .context("recording the identity hash")?;
            }
            return Ok(Admission::Admitted(caller));
        };

        match &trust {
            None => distrust(tx, user.id, reason, false).await?,
            Some(t) if t.confirmed_at.is_some() => distrust(tx, user.id, reason, true).await?,
            Some(_) => {} // already waiting for a code
        }
        self.challenge(tx, msg, &user).await
    }
}

/// The live user holding `phone` (preferred) or `bsuid`, with role and permissions.
async fn find_user(
    conn: &mut PgConnection,
    phone: Option<&PhoneE164>,
    bsuid: Option<&str>,
) -> anyhow::Result<Option<UserRow>> {
    sqlx::query_as(
        "select u.id, u.full_name, u.email, u.phone, u.bsuid, u.lang, u.is_active, u.wa_revoked_at,
                r.code as role,
                coalesce(array_agg(p.code) filter (where p.code is not null), '{}') as permissions
         from adm_user u
         join adm_role r on r.id = u.role_id
         left join adm_role_permission rp on rp.role_id = r.id
         left join adm_permission p on p.id = rp.permission_id
         where u.deleted_at is null and (u.phone = $1 or u.bsuid = $2)
         group by u.id, r.code
         order by (u.phone is not distinct from $1) desc
         limit 1",
    )
    .bind(phone.map(PhoneE164::as_str))
    .bind(bsuid)
    .fetch_optional(conn)
    .await
    .context("looking up the sender")
}

/// The caller behind a phone, for `sentient-hub prompt` (no device check: an admin's tool).
pub async fn caller_by_phone(
    db: &sqlx::PgPool,
    phone: &PhoneE164,
) -> anyhow::Result<Option<Caller>> {
    let mut conn = db.acquire().await.context("connecting to the database")?;
    Ok(find_user(&mut conn, Some(phone), None)
        .await?
        .filter(|u| u.is_active)
        .map(|u| u.caller()))
}

impl UserRow {
    fn caller(&self) -> Caller {
        Caller {
            user_id: self.id,
            full_name: self.full_name.clone(),
            role: self.role.clone(),
            permissions: self.permissions.iter().cloned().collect::<HashSet<_>>(),
            lang: Lang::from_code(&self.lang),
        }
    }
}

/// `None` when the stored trust holds for this message; else the reason it does not.
fn why_not_trusted(
    t: &TrustRow,
    user: &UserRow,
    msg: &Inbound<'_>,
    trust_days: i64,
) -> Option<&'static str> {
    let Some(confirmed) = t.confirmed_at else {
        return Some("unconfirmed");
    };
    if Utc::now().signed_duration_since(confirmed) > chrono::Duration::days(trust_days) {
        return Some("expired");
    }
    if user.wa_revoked_at.is_some_and(|r| r >= confirmed) {
        return Some("revoked");
    }
    if let (Some(seen), Some(now)) = (&t.identity_hash, msg.identity_hash) {
        if seen != now {
            return Some("identity_changed");
        }
    }
    if let (Some(seen), Some(now)) = (&t.wa_id, msg.wa_id) {
        if seen != now {
            return Some("number_changed");
        }
    }
    None
}

/// Marks the user's device as not (or no longer) trusted, for `reason`; a device that loses its
/// trust (`audited`) leaves a `WA.DEVICE_CHANGED` row.
async fn distrust(
    tx: &mut PgConnection,
    user_id: i64,
    reason: &str,
    audited: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "insert into wa_trust (user_id, reason) values ($1, $2)
         on conflict (user_id) do update set confirmed_at = null, reason = $2",
    )
    .bind(user_id)
    .bind(reason)
    .execute(&mut *tx)
    .await
    .context("voiding device trust")?;
    if audited {
        audit(
            tx,
            Some(user_id),
            "WA.DEVICE_CHANGED",
            json!({ "reason": reason }),
        )
        .await?;
    }
    Ok(())
}

/// Refuses a sender that is not whitelisted: audited every time, answered once a day.
async fn refuse(
    tx: &mut PgConnection,
    msg: &Inbound<'_>,
    user_id: Option<i64>,
    reason: &str,
) -> anyhow::Result<Admission> {
    let due = sqlx::query(
        "insert into wa_refusal (sender_key, refused_at) values ($1, now())
         on conflict (sender_key) do update set refused_at = now()
         where wa_refusal.refused_at < now() - interval '24 hours'",
    )
    .bind(msg.sender_key)
    .execute(&mut *tx)
    .await
    .context("recording a refusal")?
    .rows_affected()
        > 0;
    audit(
        tx,
        user_id,
        "WA.DENIED",
        json!({ "sender": mask_phone(msg.sender_key), "reason": reason, "answered": due }),
    )
    .await?;
    tracing::info!(sender = %mask_phone(msg.sender_key), reason, answered = due, "sender refused");
    Ok(Admission::Refused(
        due.then(|| texts::not_registered(msg.lang)),
    ))
}

/// `user_changed_number`, `user_changed_user_id`, `customer_identity_changed`: the device may
/// have changed hands, so the next message needs a new code.
async fn system_notice(
    tx: &mut PgConnection,
    user: &UserRow,
    msg: &Inbound<'_>,
) -> anyhow::Result<Admission> {
    let system = &msg.payload["system"];
    let kind = system["type"].as_str().unwrap_or_default();
    let reason = match kind {
        "user_changed_number" | "customer_changed_number" => "number_changed",
        "user_changed_user_id" => "user_id_changed",
        "customer_identity_changed" | "user_identity_changed" => "identity_changed",
        _ => return Ok(Admission::Noted),
    };
    if let Some(new_bsuid) = system["user_id"].as_str() {
        sqlx::query("update adm_user set bsuid = $2 where id = $1")
            .bind(user.id)
            .bind(new_bsuid)
            .execute(&mut *tx)
            .await
            .context("recording the new BSUID")?;
    }
    distrust(tx, user.id, reason, true).await?;
    Ok(Admission::Noted)
}

impl Gate {
    /// The sender is whitelisted but not trusted: check a code, or hold the message and ask for one.
    async fn challenge(
        &self,
        tx: &mut PgConnection,
        msg: &Inbound<'_>,
        user: &UserRow,
    ) -> anyhow::Result<Admission> {
        let settings = &self.settings;
        let open: Option<OtpRow> = sqlx::query_as(
            "select id, code_hash, sent_at, last_error, attempts from wa_otp
         where user_id = $1 and purpose = 'device' and consumed_at is null and voided_at is null
           and expires_at > now()
         order by id desc limit 1 for update",
        )
        .bind(user.id)
        .fetch_optional(&mut *tx)
        .await
        .context("reading the open code")?;
        let email_masked = user.email.as_deref().map(mask_email).unwrap_or_default();

        if let Some(code) = msg.body.and_then(otp::parse) {
            let Some(open) = open.filter(|o| o.sent_at.is_some()) else {
                audit(tx, Some(user.id), "WA.OTP_INVALID", json!({})).await?;
                let reply = texts::otp_invalid(msg.lang);
                // A fresh code follows, unless the hourly limit is reached.
                let next = self.new_code(tx, msg, user).await?;
                return Ok(Admission::Code {
                    reply: format!("{reply}\n\n{next}"),
                    released: 0,
                });
            };
            let given = otp::hash(
                settings.otp_secret.expose_secret().as_bytes(),
                user.id,
                &code,
            );
            if otp::same(&given, &open.code_hash) {
                sqlx::query("update wa_otp set consumed_at = now() where id = $1")
                    .bind(open.id)
                    .execute(&mut *tx)
                    .await
                    .context("consuming the code")?;
                sqlx::query(
                    "update wa_trust set confirmed_at = now(), reason = 'confirmed', wa_id = $2,
                     bsuid = $3, identity_hash = $4
                 where user_id = $1",
                )
                .bind(user.id)
                .bind(msg.wa_id)
                .bind(msg.bsuid)
                .bind(msg.identity_hash)
                .execute(&mut *tx)
                .await
                .context("confirming the device")?;
                audit(tx, Some(user.id), "WA.OTP_CONFIRMED", json!({})).await?;
                // Held messages go round the pipeline again, now as a trusted sender's.
                let released = sqlx::query(
                    "update wa_inbox set status = 'pending', relayed_at = null,
                     relay_gen = relay_gen + 1
                 where sender_key = $1 and status = 'held'",
                )
                .bind(msg.sender_key)
                .execute(&mut *tx)
                .await
                .context("releasing held messages")?
                .rows_affected() as usize;
                return Ok(Admission::Code {
                    reply: texts::otp_confirmed(msg.lang, released),
                    released,
                });
            }
            let attempts = open.attempts + 1;
            let locked = attempts >= settings.otp_max_attempts;
            sqlx::query(
                "update wa_otp set attempts = $2,
                 voided_at = case when $3 then now() else voided_at end
             where id = $1",
            )
            .bind(open.id)
            .bind(attempts)
            .bind(locked)
            .execute(&mut *tx)
            .await
            .context("counting a wrong code")?;
            audit(
                tx,
                Some(user.id),
                "WA.OTP_WRONG",
                json!({ "attempt": attempts }),
            )
            .await?;
            if locked {
                audit(tx, Some(user.id), "WA.OTP_LOCKED", json!({})).await?;
            }
            let reply = if locked {
                texts::otp_locked(msg.lang)
            } else {
                texts::otp_wrong(msg.lang, settings.otp_max_attempts - attempts)
            };
            return Ok(Admission::Code { reply, released: 0 });
        }

        // A question: hold it until the device is confirmed — up to `identity.max_held` of them.
        let (held, told): (i64, bool) = sqlx::query_as(
            "select count(*),
                    exists (select 1 from log_audit a
                            where a.user_id = $2 and a.action = 'WA.HELD_FULL'
                              and a.created_at >= min(i.received_at))
             from wa_inbox i where i.sender_key = $1 and i.status = 'held'",
        )
        .bind(msg.sender_key)
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await
        .context("counting held messages")?;
        if held >= settings.max_held {
            audit(tx, Some(user.id), "WA.HELD_FULL", json!({ "held": held })).await?;
            metrics::counter!("identity_held_dropped_total").increment(1);
            return Ok(Admission::Dropped(
                (!told).then(|| texts::held_full(msg.lang, settings.max_held)),
            ));
        }
        sqlx::query("update wa_inbox set status = 'held' where wamid = $1")
            .bind(msg.wamid)
            .execute(&mut *tx)
            .await
            .context("holding the message")?;
        let reply = match open {
            Some(o) if o.sent_at.is_some() || o.last_error.is_none() => {
                texts::otp_reminder(msg.lang, &email_masked)
            }
            Some(_) => texts::otp_send_failed(msg.lang),
            None => self.new_code(tx, msg, user).await?,
        };
        Ok(Admission::Held(reply))
    }

    /// Issues a code to be mailed (within the hourly limit); returns what to tell the user. The
    /// mail itself leaves from [`Gate::send_due_codes`] once this transaction has committed, so a
    /// slow SMTP server never holds a database connection.
    async fn new_code(
        &self,
        tx: &mut PgConnection,
        msg: &Inbound<'_>,
        user: &UserRow,
    ) -> anyhow::Result<String> {
        let settings = &self.settings;
        let Some(email) = user.email.as_deref() else {
            audit(tx, Some(user.id), "WA.OTP_NO_EMAIL", json!({})).await?;
            return Ok(texts::no_email(msg.lang));
        };
        let recent: i64 = sqlx::query_scalar(
            "select count(*) from wa_otp
             where user_id = $1 and purpose = 'device' and created_at > now() - interval '1 hour'",
        )
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await
        .context("counting recent codes")?;
        if recent >= settings.otp_max_per_hour {
            audit(tx, Some(user.id), "WA.OTP_RATE_LIMITED", json!({})).await?;
            return Ok(texts::otp_rate_limited(msg.lang));
        }
        // Older open codes are void once a new one is issued.
        sqlx::query(
            "update wa_otp set voided_at = now()
             where user_id = $1 and purpose = 'device' and consumed_at is null and voided_at is null",
        )
        .bind(user.id)
        .execute(&mut *tx)
        .await
        .context("voiding older codes")?;
        // No code yet: the mailer draws it, and stores its hash, when it sends.
        sqlx::query(
            "insert into wa_otp (user_id, code_hash, expires_at)
             values ($1, '', now() + make_interval(secs => $2))",
        )
        .bind(user.id)
        .bind(settings.otp_ttl_secs as f64)
        .execute(&mut *tx)
        .await
        .context("storing the code")?;
        Ok(texts::otp_coming(
            msg.lang,
            &mask_email(email),
            settings.otp_ttl_secs / 60,
        ))
    }

    /// Mails `code`: a device code, or (`approval` names the document) a step-up code.
    async fn mail_code(
        &self,
        user: &UserRow,
        email: &str,
        code: &str,
        approval: Option<&str>,
    ) -> anyhow::Result<()> {
        let asked_at = Utc::now()
            .with_timezone(&self.timezone)
            .format("%d-%m-%Y %H:%M %Z")
            .to_string();
        let mail = OtpMail {
            name: &user.full_name,
            to: email,
            code,
            purpose: if approval.is_some() {
                MailPurpose::Approval
            } else {
                MailPurpose::Chat
            },
            asked_from: &match approval {
                Some(document) => document.to_owned(),
                None => user.phone.as_deref().map(mask_phone).unwrap_or_default(),
            },
            phone: user.phone.as_deref(),
            asked_at: &asked_at,
            valid_minutes: self.settings.otp_ttl_secs / 60,
        };
        tokio::time::timeout(self.mail_timeout, self.mailer.send_otp(&mail))
            .await
            .map_err(|_| anyhow::anyhow!("SMTP timed out"))?
    }

    /// Wakes [`Gate::run_mailer`]: a code was issued in a transaction that has now committed.
    pub fn ring_mailer(&self) {
        self.mail.ring();
    }

    /// Mails the codes issued by [`Gate::admit`] and retries those that could not be sent: at
    /// each ring, and every two seconds, until `shutdown`.
    pub async fn run_mailer(self, db: PgPool, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.send_due_codes(&db).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot send code mails");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.mail.rung() => {}
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// Mails the codes that are due, with no transaction open while SMTP talks:
    /// 1. one short transaction claims up to 20 due codes, draws a fresh code for each (only its
    ///    hash is stored) and leases the row for the mail's time plus half a minute, so a crash
    ///    leaves it due again (the user may then get two mails; only the second code works);
    /// 2. each mail is sent;
    /// 3. one short transaction per code records the result: sent (the user is told on WhatsApp
    ///    when an earlier try had failed), or failed (told the first time; retried with
    ///    exponential backoff until the code's time is up).
    ///
    /// Returns how many codes were tried.
    pub async fn send_due_codes(&self, db: &PgPool) -> anyhow::Result<usize> {
        let due = self.claim_due_codes(db).await?;
        let mut told = false;
        for d in &due {
            let result = self
                .mail_code(&d.user, &d.email, &d.code, d.approval.as_deref())
                .await;
            told |= self.record_mail(db, d, result).await?;
        }
        if told {
            self.sender.ring();
        }
        Ok(due.len())
    }

    async fn claim_due_codes(&self, db: &PgPool) -> anyhow::Result<Vec<DueCode>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            user_id: i64,
            send_tries: i32,
            purpose: String,
            subject: Option<String>,
            full_name: String,
            email: Option<String>,
            phone: Option<String>,
            bsuid: Option<String>,
            lang: String,
        }
        let mut tx = db.begin().await.context("starting to claim code mails")?;
        let rows: Vec<Row> = sqlx::query_as(
            "select o.id, o.user_id, o.send_tries, o.purpose, o.subject, u.full_name, u.email, u.phone,
                    u.bsuid, u.lang
             from wa_otp o join adm_user u on u.id = o.user_id
             where o.sent_at is null and o.voided_at is null and o.consumed_at is null
               and o.next_try_at <= now()
             order by o.id limit 20
             for update of o skip locked",
        )
        .fetch_all(&mut *tx)
        .await
        .context("reading due codes")?;
        let secret = self.settings.otp_secret.expose_secret().as_bytes();
        let lease = self.mail_timeout.as_secs_f64() + 30.0;
        let mut due = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(email) = r.email else {
                sqlx::query("update wa_otp set voided_at = now() where id = $1")
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await
                    .context("voiding a code without an address")?;
                continue;
            };
            let code = otp::generate();
            let code_hash = otp::hash(secret, r.user_id, &code);
            sqlx::query(
                "update wa_otp set code_hash = $2, send_tries = send_tries + 1,
                     next_try_at = now() + make_interval(secs => $3)
                 where id = $1",
            )
            .bind(r.id)
            .bind(&code_hash)
            .bind(lease)
            .execute(&mut *tx)
            .await
            .context("claiming a code mail")?;
            due.push(DueCode {
                id: r.id,
                tries: r.send_tries + 1,
                code,
                code_hash,
                email,
                approval: (r.purpose == "approval").then(|| r.subject.unwrap_or_default()),
                user: UserRow {
                    id: r.user_id,
                    full_name: r.full_name,
                    email: None,
                    phone: r.phone,
                    bsuid: r.bsuid,
                    lang: r.lang,
                    is_active: true,
                    wa_revoked_at: None,
                    role: String::new(),
                    permissions: Vec::new(),
                },
            });
        }
        tx.commit().await.context("committing the claim")?;
        Ok(due)
    }

    /// Records one mail's outcome; returns whether a notice was queued for the user.
    async fn record_mail(
        &self,
        db: &PgPool,
        d: &DueCode,
        result: anyhow::Result<()>,
    ) -> anyhow::Result<bool> {
        let mut tx = db.begin().await.context("starting to record a code mail")?;
        let email_masked = mask_email(&d.email);
        let lang = Lang::from_code(&d.user.lang);
        let notice = match result {
            Ok(()) => {
                // Only the claim that drew this code may mark it sent (a newer code voids it).
                let recorded = sqlx::query(
                    "update wa_otp set sent_at = now(), last_error = null,
                         expires_at = now() + make_interval(secs => $3)
                     where id = $1 and code_hash = $2 and sent_at is null and voided_at is null",
                )
                .bind(d.id)
                .bind(&d.code_hash)
                .bind(self.settings.otp_ttl_secs as f64)
                .execute(&mut *tx)
                .await
                .context("recording the sent code")?
                .rows_affected()
                    == 1;
                if !recorded {
                    return Ok(false);
                }
                audit(
                    &mut tx,
                    Some(d.user.id),
                    "WA.OTP_SENT",
                    json!({ "to": email_masked, "try": d.tries }),
                )
                .await?;
                (d.tries > 1).then(|| texts::otp_sent_later(lang, &email_masked))
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), tries = d.tries, "code mail not sent; will retry");
                let delay = 5.0 * 2f64.powi((d.tries - 1).min(6));
                sqlx::query(
                    "update wa_otp set last_error = $2,
                         next_try_at = now() + make_interval(secs => $3),
                         voided_at = case when expires_at < now() then now() else null end
                     where id = $1 and code_hash = $4",
                )
                .bind(d.id)
                .bind(format!("{e:#}"))
                .bind(delay)
                .bind(&d.code_hash)
                .execute(&mut *tx)
                .await
                .context("recording the failed mail")?;
                if d.tries == 1 {
                    audit(&mut tx, Some(d.user.id), "WA.OTP_SEND_FAILED", json!({})).await?;
                }
                (d.tries == 1).then(|| texts::otp_send_failed(lang))
            }
        };
        let to = Recipient {
            wa_id: d
                .user
                .phone
                .as_deref()
                .and_then(|p| PhoneE164::parse(p).ok())
                .map(|p| p.wa_id().to_owned()),
            bsuid: d.user.bsuid.clone(),
        };
        let told = match notice {
            Some(text) if to.wa_id.is_some() || to.bsuid.is_some() => {
                outbox::enqueue(
                    &mut tx,
                    Outgoing {
                        purpose: Purpose::Answer,
                        reply_to: None,
                        to: &to,
                        content: content::text(&text),
                        not_before: None,
                    },
                )
                .await?;
                true
            }
            _ => false,
        };
        tx.commit().await.context("committing the mail's outcome")?;
        Ok(told)
    }
}

/// A code claimed for mailing: what to send, and the hash that proves the claim.
struct DueCode {
    id: i64,
    /// This try's number, from 1.
    tries: i32,
    code: String,
    code_hash: String,
    email: String,
    /// A step-up code before an approval, and the document it approves (`None`: a device code).
    approval: Option<String>,
    user: UserRow,
}

/// The gate's audit row: `action` about the user (or an unknown sender), `detail` as its value.
async fn audit(
    tx: &mut PgConnection,
    user_id: Option<i64>,
    action: &str,
    detail: Value,
) -> anyhow::Result<()> {
    let entry = Entry {
        action,
        entity_type: if user_id.is_some() {
            "adm_user"
        } else {
            "wa_sender"
        },
        entity_id: user_id,
        entity_uuid: None,
        old: None,
        new: Some(detail),
    };
    audit::record(tx, user_id, None, entry)
        .await
        .with_context(|| format!("writing audit {action}"))
}
