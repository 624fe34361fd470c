//! The second factor of an admin sign-in (blueprint: "2FA: OTP via WhatsApp/Email for sensitive
//! login").
//!
//! After a correct password, a user whose role has `mfa_required` gets a challenge instead of
//! tokens ([`SecondFactor::issue`], called by the login), unless the role has
//! `mfa_remember_address` and this address completed a sign-in to the account within
//! `auth.mfa_remember_days`. The code goes:
//! - to the user's confirmed WhatsApp device (the chat gate's trust), through the outbox as a row
//!   of purpose `login`, when the 24-hour window is open or a window template is configured. The
//!   row is withdrawn if the challenge is closed before it goes out, and its text is blanked once
//!   it is sent, withdrawn or failed; a failed one falls back to email;
//! - otherwise by email, by [`SecondFactor::run_mailer`], which draws a fresh code at each try
//!   (only its keyed hash is stored) and retries with backoff until the challenge expires.
//!
//! `POST /api/v1/auth/login/verify` exchanges the challenge id and the code for the tokens. The
//! rules are the chat's codes': six digits from the OS's CSPRNG, stored as an HMAC, single use,
//! `auth.mfa_code_ttl_secs`, void after `auth.mfa_max_attempts` wrong tries, at most
//! `auth.mfa_codes_per_hour` a user; the verify step has its own per-IP throttle. Wrong, expired,
//! replayed and unknown codes and challenges all get the same 401. Every step is audited; no
//! code reaches a log.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{FromRef, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{open_session, scope_sql, user_agent, ClientIp, TokenResponse};
use super::throttle::Throttle;
use super::{AdminState, ApiJson, ApiRouter};
use crate::audit::{self, Entry};
use crate::config::AuthSettings;
use crate::domain::otp;
use crate::domain::phone::{mask_email, mask_phone};
use crate::error::{Error, Result};
use crate::identity::mailer::{MailPurpose, OtpMail, SendsCodes};
use crate::outbox::sender::{Sent, Veto};
use crate::outbox::{self, Outgoing, Purpose};
use crate::queue::Doorbell;
use crate::texts::{self, Lang};
use crate::whatsapp::graph::{content, Recipient};

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new().routes(routes!(verify))
}

/// What the second factor needs at hand. Cheap to clone; lives in [`AdminState`].
#[derive(Clone)]
pub struct SecondFactor(Arc<Inner>);

struct Inner {
    mailer: Arc<dyn SendsCodes>,
    /// `identity.otp_secret`, the key of the codes' HMAC.
    secret: SecretString,
    /// `identity.trust_days`: how long a confirmed WhatsApp device stays trusted.
    trust_days: i64,
    /// A window template is configured, so WhatsApp reaches users who have not written in 24 h.
    window_template: bool,
    timezone: chrono_tz::Tz,
    /// Longest wait for one mail.
    mail_timeout: Duration,
    ttl_secs: u64,
    max_attempts: i32,
    per_hour: i64,
    /// Per-IP throttle of the verify step.
    throttle: Throttle,
    /// The outbox sender's, rung when a code is queued for WhatsApp.
    sender: Doorbell,
    /// [`SecondFactor::run_mailer`]'s, rung when a code is due by email.
    mail: Doorbell,
}

/// Where [`SecondFactor`] sends from and what it honours.
pub struct Channels {
    pub mailer: Arc<dyn SendsCodes>,
    pub otp_secret: SecretString,
    pub trust_days: i64,
    pub window_template: bool,
    pub timezone: chrono_tz::Tz,
    pub mail_timeout: Duration,
    pub sender: Doorbell,
}

/// The user a challenge is for.
pub(crate) struct Challenged<'a> {
    pub id: i64,
    pub uuid: Uuid,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// A login waiting for its code.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChallengeResponse {
    /// Send it back with the code to `/api/v1/auth/login/verify`.
    pub challenge_id: Uuid,
    /// Where the code went: `whatsapp` (the user's confirmed device) or `email`. A WhatsApp
    /// message that cannot be delivered is followed by an email.
    pub channel: &'static str,
    /// The phone or email, masked.
    pub sent_to: String,
    /// The code is valid until then.
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Reach {
    email: Option<String>,
    lang: String,
    wa_id: Option<String>,
    bsuid: Option<String>,
    /// The confirmed device is trusted and WhatsApp may write to it now.
    whatsapp: bool,
}

impl SecondFactor {
    pub fn new(auth: &AuthSettings, channels: Channels) -> Self {
        Self(Arc::new(Inner {
            mailer: channels.mailer,
            secret: channels.otp_secret,
            trust_days: channels.trust_days,
            window_template: channels.window_template,
            timezone: channels.timezone,
            mail_timeout: channels.mail_timeout,
            ttl_secs: auth.mfa_code_ttl_secs,
            max_attempts: auth.mfa_max_attempts,
            per_hour: auth.mfa_codes_per_hour,
            throttle: Throttle::new(auth.mfa_verify_burst, auth.mfa_verify_per_minute),
            sender: channels.sender,
            mail: Doorbell::default(),
        }))
    }

    fn hash(&self, user_id: i64, code: &str) -> String {
        // Its own message space: an admin code is never a chat code of the same user.
        otp::hash(
            self.0.secret.expose_secret().as_bytes(),
            user_id,
            &format!("admin-login:{code}"),
        )
    }

    /// Opens a challenge for `user` in the login's transaction (which holds the user's row
    /// lock, so the hourly limit counts concurrent logins right) and queues its code. Ring
    /// [`SecondFactor::ring`] after the commit. 429 past the hourly limit; refused when the user
    /// has neither a trusted WhatsApp device nor an email.
    pub(crate) async fn issue(
        &self,
        tx: &mut PgConnection,
        user: &Challenged<'_>,
    ) -> Result<ChallengeResponse> {
        let s = &self.0;
        let (sent, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "select count(*), min(created_at) from adm_login_challenge
             where user_id = $1 and created_at > now() - interval '1 hour'",
        )
        .bind(user.id)
        .fetch_one(&mut *tx)
        .await?;
        if sent >= s.per_hour {
            let retry = oldest.map_or(60, |at| {
                (at + chrono::Duration::hours(1) - Utc::now())
                    .num_seconds()
                    .max(1) as u64
            });
            record(
                tx,
                user,
                "LOGIN_CODE_LIMIT",
                json!({ "sent_last_hour": sent }),
            )
            .await?;
            return Err(Error::TooManyRequests {
                retry_after_secs: retry,
            });
        }
        let reach: Reach = sqlx::query_as(
            "select u.email, u.lang, t.wa_id, t.bsuid,
                    coalesce(t.confirmed_at > now() - make_interval(days => $2)
                             and (u.wa_revoked_at is null or u.wa_revoked_at < t.confirmed_at)
                             and (t.wa_id is not null or t.bsuid is not null)
                             and ($3 or exists (
                                 select 1 from wa_contact c
                                 where c.sender_key = coalesce(t.wa_id, t.bsuid)
                                   and c.last_in_at > now() - interval '24 hours')),
                             false) as whatsapp
             from adm_user u left join wa_trust t on t.user_id = u.id
             where u.id = $1",
        )
        .bind(user.id)
        .bind(s.trust_days as i32)
        .bind(s.window_template)
        .fetch_one(&mut *tx)
        .await?;
        // Only the newest code of a user works.
        void_open(tx, user.id).await?;
        let (channel, sent_to) = if reach.whatsapp {
            let to = reach.wa_id.as_deref().or(reach.bsuid.as_deref());
            ("whatsapp", to.map(mask_phone).unwrap_or_default())
        } else if let Some(email) = &reach.email {
            ("email", mask_email(email))
        } else {
            record(tx, user, "LOGIN_CODE_UNREACHABLE", json!({})).await?;
            return Err(Error::refused(
                "Your role signs in with a one-time code, but you have neither a confirmed WhatsApp device nor an email to receive it. Ask an administrator to add your email.",
            ));
        };
        let (id, uuid, expires_at): (i64, Uuid, DateTime<Utc>) = sqlx::query_as(
            "insert into adm_login_challenge (user_id, channel, ip_address, user_agent, expires_at)
             values ($1, $2, $3, $4, now() + make_interval(secs => $5))
             returning id, uuid, expires_at",
        )
        .bind(user.id)
        .bind(channel)
        .bind(user.ip)
        .bind(user.user_agent)
        .bind(s.ttl_secs as f64)
        .fetch_one(&mut *tx)
        .await?;
        if channel == "whatsapp" {
            let code = otp::generate();
            let text = texts::admin_login_code(
                Lang::from_code(&reach.lang),
                &code,
                user.ip.unwrap_or("?"),
                s.ttl_secs / 60,
            );
            let to = Recipient {
                wa_id: reach.wa_id.clone(),
                bsuid: reach.bsuid.clone(),
            };
            let outbox_id = outbox::enqueue(
                tx,
                Outgoing {
                    purpose: Purpose::Login,
                    reply_to: None,
                    to: &to,
                    content: content::text(&text),
                    not_before: None,
                },
            )
            .await?;
            sqlx::query(
                "update adm_login_challenge set code_hash = $2, outbox_id = $3 where id = $1",
            )
            .bind(id)
            .bind(self.hash(user.id, &code))
            .bind(outbox_id)
            .execute(&mut *tx)
            .await?;
        }
        record(
            tx,
            user,
            "LOGIN_CHALLENGE",
            json!({ "challenge": uuid, "channel": channel }),
        )
        .await?;
        metrics::counter!("admin_login_challenges_total", "channel" => channel).increment(1);
        Ok(ChallengeResponse {
            challenge_id: uuid,
            channel,
            sent_to,
            expires_at,
        })
    }

    /// Wakes the sender and the mailer: a challenge has committed.
    pub fn ring(&self) {
        self.0.sender.ring();
        self.0.mail.ring();
    }

    /// The outbox's last-moment check of a `login` row: is its challenge still open, and the
    /// device still trusted (not revoked by an admin meanwhile)? A row that is not wanted any
    /// more has its text blanked before it is withdrawn.
    pub fn veto(&self, db: PgPool) -> Veto {
        let trust_days = self.0.trust_days;
        Arc::new(move |outbox_id| {
            let db = db.clone();
            Box::pin(async move {
                let open: bool = sqlx::query_scalar(
                    "select exists (
                         select 1 from adm_login_challenge c
                         join adm_user u on u.id = c.user_id
                         join wa_trust t on t.user_id = u.id
                         where c.outbox_id = $1 and c.consumed_at is null
                           and c.voided_at is null and c.expires_at > now()
                           and u.is_active and u.deleted_at is null
                           and t.confirmed_at > now() - make_interval(days => $2)
                           and (u.wa_revoked_at is null or u.wa_revoked_at < t.confirmed_at))",
                )
                .bind(outbox_id)
                .bind(trust_days as i32)
                .fetch_one(&db)
                .await
                .context("checking a sign-in code's challenge")?;
                if !open {
                    let mut conn = db.acquire().await.context("blanking a sign-in code")?;
                    blank(&mut conn, outbox_id).await?;
                }
                Ok(open)
            })
        })
    }

    /// Mails the codes that are due and moves WhatsApp codes that failed to email: at each
    /// ring, and every two seconds, until `shutdown`.
    pub async fn run_mailer(self, db: PgPool, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.fall_back(&db).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot move failed sign-in codes to email");
            }
            if let Err(e) = self.mail_due(&db).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot mail sign-in codes");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.0.mail.rung() => {}
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// WhatsApp challenges whose message failed (Meta refused it at once or reported it failed
    /// later, the window closed with no template), each once: the row's text is blanked, and a challenge still open goes by email
    /// instead, or is voided when the user has none.
    pub async fn fall_back(&self, db: &PgPool) -> anyhow::Result<usize> {
        let mut tx = db.begin().await?;
        let failed: Vec<(i64, i64, Uuid, i64, bool, bool)> = sqlx::query_as(
            "select c.id, c.user_id, u.uuid, o.id, u.email is not null,
                    c.consumed_at is null and c.voided_at is null and c.expires_at > now()
             from adm_login_challenge c
             join wa_outbox o on o.id = c.outbox_id
             join adm_user u on u.id = c.user_id
             where c.channel = 'whatsapp' and c.last_error is null and o.status = 'failed'
             for update of c skip locked",
        )
        .fetch_all(&mut *tx)
        .await
        .context("finding failed sign-in messages")?;
        let mut moved = false;
        for (id, user_id, user_uuid, outbox_id, has_email, open) in &failed {
            blank(&mut tx, *outbox_id).await?;
            let (to_email, void) = (*open && *has_email, *open && !*has_email);
            sqlx::query(
                "update adm_login_challenge set last_error = 'WhatsApp message failed',
                     channel = case when $2 then 'email' else channel end,
                     code_hash = case when $2 or $3 then null else code_hash end,
                     sent_at = case when $2 then null else sent_at end,
                     send_tries = case when $2 then 0 else send_tries end,
                     voided_at = case when $3 then now() else voided_at end,
                     next_try_at = now()
                 where id = $1",
            )
            .bind(id)
            .bind(to_email)
            .bind(void)
            .execute(&mut *tx)
            .await?;
            if !*open {
                continue;
            }
            moved |= to_email;
            audit::record(
                &mut tx,
                Some(*user_id),
                None,
                Entry {
                    action: "LOGIN_CODE_FALLBACK",
                    entity_type: "adm_user",
                    entity_id: Some(*user_id),
                    entity_uuid: Some(*user_uuid),
                    old: None,
                    new: Some(json!({ "to": if to_email { "email" } else { "none" } })),
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("auditing a fallback: {e}"))?;
        }
        tx.commit().await?;
        if moved {
            self.0.mail.ring();
        }
        Ok(failed.len())
    }

    /// Mails the email challenges that are due, with no transaction open while SMTP talks (as
    /// the chat's code mails): claim and draw a fresh code (only its hash stored) under a lease,
    /// send, record. Returns how many were tried.
    pub async fn mail_due(&self, db: &PgPool) -> anyhow::Result<usize> {
        #[derive(sqlx::FromRow)]
        struct Due {
            id: i64,
            user_id: i64,
            send_tries: i32,
            full_name: String,
            email: Option<String>,
            ip_address: Option<String>,
        }
        let s = &self.0;
        let mut tx = db.begin().await?;
        let due: Vec<Due> = sqlx::query_as(
            "select c.id, c.user_id, c.send_tries, u.full_name, u.email, c.ip_address
             from adm_login_challenge c join adm_user u on u.id = c.user_id
             where c.channel = 'email' and c.sent_at is null and c.consumed_at is null
               and c.voided_at is null and c.expires_at > now() and c.next_try_at <= now()
             order by c.id limit 20
             for update of c skip locked",
        )
        .fetch_all(&mut *tx)
        .await
        .context("reading due sign-in mails")?;
        let lease = s.mail_timeout.as_secs_f64() + 30.0;
        let mut codes = Vec::with_capacity(due.len());
        for d in &due {
            let code = otp::generate();
            sqlx::query(
                "update adm_login_challenge set code_hash = $2, send_tries = send_tries + 1,
                     next_try_at = now() + make_interval(secs => $3),
                     voided_at = case when $4 then now() end
                 where id = $1",
            )
            .bind(d.id)
            .bind(self.hash(d.user_id, &code))
            .bind(lease)
            .bind(d.email.is_none())
            .execute(&mut *tx)
            .await
            .context("claiming a sign-in mail")?;
            codes.push(code);
        }
        tx.commit().await?;
        let asked_at = Utc::now()
            .with_timezone(&s.timezone)
            .format("%d-%m-%Y %H:%M %Z")
            .to_string();
        for (d, code) in due.iter().zip(&codes) {
            let Some(email) = &d.email else { continue };
            let mail = OtpMail {
                name: &d.full_name,
                to: email,
                code,
                purpose: MailPurpose::AdminLogin,
                asked_from: d.ip_address.as_deref().unwrap_or("?"),
                phone: None,
                asked_at: &asked_at,
                valid_minutes: s.ttl_secs / 60,
            };
            let result = tokio::time::timeout(s.mail_timeout, s.mailer.send_otp(&mail))
                .await
                .map_err(|_| anyhow::anyhow!("SMTP timed out"))
                .and_then(|r| r);
            match result {
                Ok(()) => {
                    sqlx::query(
                        "update adm_login_challenge set sent_at = now(), last_error = null
                         where id = $1",
                    )
                    .bind(d.id)
                    .execute(db)
                    .await
                    .context("recording a sent sign-in mail")?;
                    metrics::counter!("admin_login_codes_sent_total", "channel" => "email")
                        .increment(1);
                }
                Err(e) => {
                    let wait = (2f64).powi(d.send_tries.min(6)).min(60.0);
                    tracing::warn!(error = %format!("{e:#}"), to = %mask_email(email), "sign-in mail not sent; retrying");
                    sqlx::query(
                        "update adm_login_challenge set last_error = $2,
                             next_try_at = now() + make_interval(secs => $3)
                         where id = $1",
                    )
                    .bind(d.id)
                    .bind(format!("{e:#}"))
                    .bind(wait)
                    .execute(db)
                    .await
                    .context("recording a failed sign-in mail")?;
                }
            }
        }
        Ok(due.len())
    }
}

/// Voids every open challenge of a user: a newer login, or a password change, reset,
/// deactivation or deletion (a code sent for the old password must not open a session).
pub(crate) async fn void_open(conn: &mut PgConnection, user_id: i64) -> Result<()> {
    sqlx::query(
        "update adm_login_challenge set voided_at = now()
         where user_id = $1 and consumed_at is null and voided_at is null",
    )
    .bind(user_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Told by the outbox that a `login` row went out: the challenge records it and the row's text
/// (the code) is blanked.
pub fn record_sent<'c>(
    conn: &'c mut PgConnection,
    sent: &'c Sent,
) -> BoxFuture<'c, anyhow::Result<()>> {
    Box::pin(async move {
        sqlx::query("update adm_login_challenge set sent_at = now() where outbox_id = $1")
            .bind(sent.outbox_id)
            .execute(&mut *conn)
            .await
            .context("recording a sent sign-in code")?;
        metrics::counter!("admin_login_codes_sent_total", "channel" => "whatsapp").increment(1);
        blank(conn, sent.outbox_id).await
    })
}

/// Replaces the text of the `login` outbox row `id` (it holds a code) with a placeholder.
async fn blank(conn: &mut PgConnection, id: i64) -> anyhow::Result<()> {
    sqlx::query(
        "update wa_outbox set payload = jsonb_build_object('type', 'text',
             'text', jsonb_build_object('body', '(sign-in code removed)'))
         where id = $1 and purpose = 'login'",
    )
    .bind(id)
    .execute(conn)
    .await
    .context("blanking a sign-in code")?;
    Ok(())
}

async fn record(
    tx: &mut PgConnection,
    user: &Challenged<'_>,
    action: &'static str,
    new: serde_json::Value,
) -> Result<()> {
    audit::record(
        tx,
        Some(user.id),
        user.ip,
        Entry {
            action,
            entity_type: "adm_user",
            entity_id: Some(user.id),
            entity_uuid: Some(user.uuid),
            old: None,
            new: Some(new),
        },
    )
    .await?;
    Ok(())
}

/// The second step of a sign-in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// From the login's answer.
    pub challenge_id: String,
    /// The six digits sent by WhatsApp or email.
    #[schema(value_type = String, format = Password)]
    pub code: SecretString,
}

#[derive(sqlx::FromRow)]
struct OpenChallenge {
    id: i64,
    user_id: i64,
    user_uuid: Uuid,
    channel: String,
    code_hash: Option<String>,
    attempts: i32,
    scope: String,
}

/// Completes a sign-in that got a challenge: the code for the tokens.
///
/// A wrong, expired, replayed or voided code, and an unknown challenge, all get the same 401;
/// the challenge is void after 5 wrong codes (configurable). Too many checks from one address
/// get 429.
#[utoipa::path(
    post, path = "/api/v1/auth/login/verify", tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Wrong, expired or used code, or no such challenge", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many code checks from this address", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn verify(
    State(state): State<AdminState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<TokenResponse>> {
    let factor = state.second_factor.0.clone();
    if let Some(ip) = ip {
        if let Err(retry_after_secs) = factor.throttle.check(ip) {
            metrics::counter!("admin_login_verifications_total", "outcome" => "throttled")
                .increment(1);
            return Err(Error::TooManyRequests { retry_after_secs });
        }
    }
    let Ok(challenge) = Uuid::parse_str(req.challenge_id.trim()) else {
        return Err(Error::Unauthorized);
    };
    let ip_text = ip.map(|ip: IpAddr| ip.to_string());
    let mut tx = state.db.begin().await?;
    let open: Option<OpenChallenge> = sqlx::query_as(&format!(
        "select c.id, c.user_id, u.uuid as user_uuid, c.channel, c.code_hash, c.attempts,
                {} as scope
         from adm_login_challenge c join adm_user u on u.id = c.user_id
         where c.uuid = $1 and c.consumed_at is null and c.voided_at is null
           and c.expires_at > now() and u.is_active and u.deleted_at is null
           and u.password_hash is not null
         for update of c",
        scope_sql("$2")
    ))
    .bind(challenge)
    .bind(i32::try_from(state.auth.settings.password_max_age_days).unwrap_or(i32::MAX))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(open) = open else {
        // Audited against its user when the challenge exists but is closed.
        let closed: Option<(i64, Uuid, &str)> = sqlx::query_as(
            "select c.user_id, u.uuid,
                    case when c.consumed_at is not null then 'used'
                         when c.voided_at is not null then 'void'
                         when c.expires_at <= now() then 'expired' else 'user' end
             from adm_login_challenge c join adm_user u on u.id = c.user_id where c.uuid = $1",
        )
        .bind(challenge)
        .fetch_optional(&mut *tx)
        .await?
        .map(|(id, uuid, why): (i64, Uuid, String)| (id, uuid, closed_reason(&why)));
        if let Some((user_id, user_uuid, why)) = closed {
            let who = Challenged {
                id: user_id,
                uuid: user_uuid,
                ip: ip_text.as_deref(),
                user_agent: None,
            };
            record(
                &mut tx,
                &who,
                "LOGIN_CODE_REFUSED",
                json!({ "reason": why }),
            )
            .await?;
            tx.commit().await?;
        }
        metrics::counter!("admin_login_verifications_total", "outcome" => "closed").increment(1);
        return Err(Error::Unauthorized);
    };
    let who = Challenged {
        id: open.user_id,
        uuid: open.user_uuid,
        ip: ip_text.as_deref(),
        user_agent: None,
    };
    let given =
        otp::parse(req.code.expose_secret()).map(|c| state.second_factor.hash(open.user_id, &c));
    let right = match (&given, &open.code_hash) {
        (Some(given), Some(stored)) => otp::same(given, stored),
        _ => false,
    };
    if !right {
        let attempts = open.attempts + 1;
        let locked = attempts >= factor.max_attempts;
        sqlx::query(
            "update adm_login_challenge set attempts = $2,
                 voided_at = case when $3 then now() else voided_at end
             where id = $1",
        )
        .bind(open.id)
        .bind(attempts)
        .bind(locked)
        .execute(&mut *tx)
        .await?;
        let action = if locked {
            "LOGIN_CODE_LOCKED"
        } else {
            "LOGIN_CODE_WRONG"
        };
        record(&mut tx, &who, action, json!({ "attempt": attempts })).await?;
        tx.commit().await?;
        metrics::counter!("admin_login_verifications_total", "outcome" => "wrong").increment(1);
        tracing::info!(user = %open.user_uuid, attempt = attempts, locked, "sign-in code refused");
        return Err(Error::Unauthorized);
    }
    sqlx::query("update adm_login_challenge set consumed_at = now() where id = $1")
        .bind(open.id)
        .execute(&mut *tx)
        .await?;
    let user_agent = user_agent(&headers);
    let tokens = open_session(
        &state,
        &mut tx,
        (open.user_id, open.user_uuid),
        ip_text.as_deref(),
        user_agent.as_deref(),
        &open.scope,
        Some(&open.channel),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("admin_login_verifications_total", "outcome" => "ok").increment(1);
    metrics::counter!("admin_logins_total", "outcome" => "ok").increment(1);
    tracing::info!(user = %open.user_uuid, "login with second factor");
    Ok(Json(tokens))
}

/// Why a closed challenge was refused, as the audit names it.
fn closed_reason(why: &str) -> &'static str {
    match why {
        "used" => "replayed",
        "void" => "void",
        "expired" => "expired",
        _ => "user_inactive",
    }
}
