//! The dispatcher: routes each new WhatsApp alert to its recipients and hands it to the outbox.
//!
//! Recipients are the active users whose role holds `ALERT.READ` and the module's read
//! permission (`ai_alert_module`: a finance alert is finance data; a module not in that map only
//! for `ALERT.MANAGE`) and is named by an active routing
//! rule for the alert's module (or every module) at or below its severity, and whose
//! WhatsApp device is confirmed (the same trust the chat gate asks for: confirmed by email code,
//! not expired, not revoked by an admin). The alert goes to the number or BSUID of that device, in
//! the user's language, with an acknowledge button for users whose role holds `ALERT.ACK`
//! ([`ack`]). A user who muted alerts ("mute alert 2 jam") gets it when the mute ends,
//! unless by then it was acknowledged or the user lost the trust or the permission
//! ([`Dispatcher::veto`], asked by the sender): such a row ends `withdrawn`.
//!
//! Alerts are taken oldest first under `for update skip locked`, so instances share the work and
//! never route one alert twice. An alert older than `alerts.max_age_mins` when first seen (a
//! backlog after an outage) is left unsent: it stays in the admin list and the "alerts" answer.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::alerts::{ack, Severity};
use crate::outbox::sender::Veto;
use crate::outbox::{self, Outgoing, Purpose};
use crate::queue::Doorbell;
use crate::texts::{self, Lang};
use crate::whatsapp::graph::{self, content};

/// Alerts routed per transaction.
const BATCH: i64 = 32;
/// SQL condition: the `adm_user u` may receive alerts of module `module` (an SQL expression) on
/// the device `t` (their `wa_trust` row): an active user whose live role holds `ALERT.READ` and
/// may read the module, on a device confirmed within `$1` days and not revoked since — the trust
/// the chat gate asks for. The one definition, for routing and for the check before a waiting
/// alert goes out.
fn may_receive(module: &str) -> String {
    let readable = crate::domain::access::module_readable_by_role(module, "u.role_id");
    format!(
        "u.deleted_at is null and u.is_active
         and t.confirmed_at > now() - make_interval(days => $1)
         and (u.wa_revoked_at is null or u.wa_revoked_at < t.confirmed_at)
         and exists (
             select 1 from adm_role r
             join adm_role_permission rp on rp.role_id = r.id
             join adm_permission p on p.id = rp.permission_id
             where r.id = u.role_id and r.deleted_at is null and p.code = 'ALERT.READ')
         and {readable}"
    )
}

/// Longest alert message quoted on a phone, in characters (the rest is in the admin list): the
/// whole text, frame included, stays within the 1,024 characters of an interactive body.
const MAX_QUOTED_CHARS: usize = 700;

/// What the dispatcher takes from the settings.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    /// `alerts.poll_secs`: how often to look for rows written straight into `ai_alert`.
    pub poll: Duration,
    /// `alerts.max_age_mins`: older alerts are not pushed when first seen.
    pub max_age_mins: u64,
    /// `identity.trust_days`: the device trust an alert's recipient needs, as the chat gate.
    pub trust_days: i64,
    /// `app.timezone`: the zone of the time named on the phone.
    pub timezone: chrono_tz::Tz,
}

/// The dispatching stage. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    db: PgPool,
    settings: DispatchSettings,
    /// Rung by the intake and the detectors when they stored alerts.
    doorbell: Doorbell,
    /// The sender's, rung after alerts were written to the outbox.
    sender: Doorbell,
}

impl Dispatcher {
    pub fn new(db: PgPool, settings: DispatchSettings, sender: Doorbell) -> Self {
        Self {
            db,
            settings,
            doorbell: Doorbell::default(),
            sender,
        }
    }

    /// Ring it after storing alerts.
    pub fn doorbell(&self) -> Doorbell {
        self.doorbell.clone()
    }

    /// The sender's last-moment check of alert rows: [`still_wanted`].
    pub fn veto(&self) -> Veto {
        let db = self.db.clone();
        let trust_days = self.settings.trust_days;
        std::sync::Arc::new(move |outbox_id| {
            let db = db.clone();
            Box::pin(async move { still_wanted(&db, outbox_id, trust_days).await })
        })
    }

    /// Runs until `shutdown`: on every wake-up (an alert stored from NATS) and every
    /// `alerts.poll_secs` (rows written straight into `ai_alert`).
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            loop {
                match self.dispatch_due().await {
                    Ok(n) if n as i64 >= BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        metrics::counter!("alerts_dispatch_errors_total").increment(1);
                        // A dead database included: nothing was written, the alerts wait.
                        tracing::warn!(error = %format!("{e:#}"), "alert dispatch failed; alerts wait for the next round");
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.doorbell.rung() => {}
                () = tokio::time::sleep(self.settings.poll) => {}
            }
        }
        tracing::debug!("alert dispatcher stopped");
    }

    /// Routes up to [`BATCH`] due alerts in one transaction; returns how many.
    pub async fn dispatch_due(&self) -> anyhow::Result<usize> {
        let mut tx = self.db.begin().await.context("starting a dispatch")?;
        let due: Vec<Due> = sqlx::query_as(
            "select id, uuid, module, alert_type, severity, message, created_at from ai_alert
             where not is_sent and channel = 'WA'
               and created_at > now() - make_interval(mins => $1)
             order by created_at, id
             limit $2
             for update skip locked",
        )
        .bind(self.settings.max_age_mins as i32)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .context("claiming due alerts")?;
        let mut messages = 0;
        for alert in &due {
            messages += route(&mut tx, &self.settings, alert).await?;
        }
        tx.commit().await.context("committing a dispatch")?;
        if messages > 0 {
            self.sender.ring();
        }
        Ok(due.len())
    }
}

#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    uuid: uuid::Uuid,
    module: String,
    alert_type: String,
    severity: String,
    message: String,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Recipient {
    user_id: i64,
    lang: String,
    wa_id: Option<String>,
    bsuid: Option<String>,
    muted_until: Option<DateTime<Utc>>,
    /// The role holds `ALERT.ACK`: the alert comes with an acknowledge button.
    may_ack: bool,
}

/// Writes one outbox row per recipient of `alert` and marks it sent; returns the rows written.
async fn route(
    tx: &mut sqlx::PgConnection,
    settings: &DispatchSettings,
    alert: &Due,
) -> anyhow::Result<usize> {
    // The row's check constraint admits only these four.
    let severity = Severity::parse(&alert.severity).unwrap_or(Severity::Low);
    let recipients: Vec<Recipient> = sqlx::query_as(&format!(
        "select u.id as user_id, u.lang, t.wa_id, t.bsuid, m.until_at as muted_until,
                exists (
                    select 1 from adm_role_permission rp
                    join adm_permission p on p.id = rp.permission_id
                    where rp.role_id = u.role_id and p.code = 'ALERT.ACK') as may_ack
         from adm_user u
         join wa_trust t on t.user_id = u.id
         left join wa_alert_mute m on m.user_id = u.id and m.until_at > now()
         where {}
           and (t.wa_id is not null or t.bsuid is not null)
           and exists (
               select 1 from ai_alert_rule a
               where a.role_id = u.role_id and a.is_active
                 and (a.module is null or a.module = $2)
                 and a.min_severity = any($3))
         order by u.id",
        may_receive("$2::text")
    ))
    .bind(settings.trust_days as i32)
    .bind(&alert.module)
    .bind(severity.at_or_below())
    .fetch_all(&mut *tx)
    .await
    .context("finding the recipients of an alert")?;

    let raised = crate::texts::local_time(alert.created_at, settings.timezone);
    let origin = format!("{} · {}", alert.module, alert.alert_type);
    let quoted = quote(&alert.message);
    for to in &recipients {
        let lang = Lang::from_code(&to.lang);
        let text = texts::alert(lang, severity.as_str(), &origin, &quoted, &raised);
        let payload = if to.may_ack {
            let id = ack::button_id(alert.uuid);
            content::buttons(&text, &[(&id, texts::alert_ack_button(lang))])
        } else {
            content::text(&text)
        };
        let address = graph::Recipient {
            wa_id: to.wa_id.clone(),
            bsuid: to.bsuid.clone(),
        };
        let outbox_id = outbox::enqueue(
            tx,
            Outgoing {
                purpose: Purpose::Alert,
                reply_to: None,
                to: &address,
                content: payload,
                not_before: to.muted_until,
            },
        )
        .await?
        .context("the outbox wrote no row for an alert")?;
        sqlx::query(
            "insert into ai_alert_recipient (alert_id, user_id, outbox_id) values ($1, $2, $3)",
        )
        .bind(alert.id)
        .bind(to.user_id)
        .bind(outbox_id)
        .execute(&mut *tx)
        .await
        .context("recording an alert's recipient")?;
    }
    sqlx::query("update ai_alert set is_sent = true, sent_at = now() where id = $1")
        .bind(alert.id)
        .execute(&mut *tx)
        .await
        .context("marking an alert dispatched")?;

    let muted = recipients
        .iter()
        .filter(|r| r.muted_until.is_some())
        .count();
    metrics::counter!("alerts_dispatched_total").increment(1);
    metrics::counter!("alert_messages_total").increment(recipients.len() as u64);
    if recipients.is_empty() {
        metrics::counter!("alerts_unrouted_total").increment(1);
        tracing::warn!(
            alert_id = alert.id,
            module = alert.module,
            severity = alert.severity,
            "nobody received this alert: no routing rule (/api/v1/alert-rules) names a user who may read it on a confirmed device"
        );
    } else {
        tracing::info!(
            alert_id = alert.id,
            module = alert.module,
            severity = alert.severity,
            recipients = recipients.len(),
            muted,
            "alert dispatched"
        );
    }
    Ok(recipients.len())
}

/// Whether the alert in outbox row `outbox_id` should still go out: not acknowledged yet, and
/// its recipient may still receive alerts on the device the row is addressed to. Asked by the
/// sender just before the send ([`Dispatcher::veto`]), since a muted or retried alert can wait
/// for hours.
async fn still_wanted(db: &sqlx::PgPool, outbox_id: i64, trust_days: i64) -> anyhow::Result<bool> {
    sqlx::query_scalar(&format!(
        "select exists (
             select 1 from ai_alert_recipient ar
             join ai_alert a on a.id = ar.alert_id
             join wa_outbox o on o.id = ar.outbox_id
             join adm_user u on u.id = ar.user_id
             join wa_trust t on t.user_id = u.id
             where ar.outbox_id = $2 and a.acked_at is null
               and coalesce(t.wa_id, t.bsuid) = coalesce(o.wa_id, o.bsuid)
               and {})",
        may_receive("a.module")
    ))
    .bind(trust_days as i32)
    .bind(outbox_id)
    .fetch_one(db)
    .await
    .context("checking that an alert is still wanted")
}

/// The alert message as quoted on a phone: at most [`MAX_QUOTED_CHARS`] characters.
fn quote(message: &str) -> String {
    match message.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(quote("Mesin berhenti"), "Mesin berhenti");
        let long = "é".repeat(MAX_QUOTED_CHARS + 5);
        let cut = quote(&long);
        assert_eq!(cut.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
