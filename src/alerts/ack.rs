//! Acknowledging an alert from WhatsApp: a pushed alert carries a reply button (for users whose
//! role holds `ALERT.ACK`) whose id names the alert; tapping it marks the alert handled, as
//! `POST /api/v1/alerts/{uuid}/ack` does, with the same audit row. Alerts still waiting for
//! other users (muted, retried) are then withdrawn by the sender.
//!
//! Only a recipient of the alert who may still read its module can acknowledge it; for anyone
//! else (a forged or stale button id) the alert does not exist.

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::audit::{self, Entry};
use crate::domain::Caller;
use crate::texts::{self, Lang};

/// What the reply button's id starts with.
const BUTTON_PREFIX: &str = "alert.ack:";

/// The id of the reply button under the pushed alert `alert`.
pub fn button_id(alert: Uuid) -> String {
    format!("{BUTTON_PREFIX}{alert}")
}

/// The alert a tapped button names, when it is an acknowledge button.
pub fn parse_button(id: &str) -> Option<Uuid> {
    id.strip_prefix(BUTTON_PREFIX)?.parse().ok()
}

#[derive(sqlx::FromRow)]
struct Target {
    id: i64,
    module: String,
    alert_type: String,
    acked_at: Option<DateTime<Utc>>,
    acked_by: Option<i64>,
    acked_by_name: Option<String>,
    snapshot: Value,
}

/// What a tap came to.
pub struct Reply {
    /// What to tell the person.
    pub text: String,
    /// They may not acknowledge alerts at all.
    pub refused: bool,
}

/// Acknowledges `alert` for `caller`; returns what to tell them.
pub async fn acknowledge(
    db: &sqlx::PgPool,
    caller: &Caller,
    alert: Uuid,
    lang: Lang,
    timezone: chrono_tz::Tz,
) -> anyhow::Result<Reply> {
    if !caller.may("ALERT.ACK") {
        let area = match lang {
            Lang::Id => "penanganan alert",
            Lang::En => "alert handling",
        };
        return Ok(Reply {
            text: texts::denied(lang, area),
            refused: true,
        });
    }
    let told = |text: String| Reply {
        text,
        refused: false,
    };
    let permissions: Vec<String> = caller.permissions.iter().cloned().collect();
    let mut tx = db.begin().await.context("starting an acknowledgement")?;
    let target: Option<Target> = sqlx::query_as(&format!(
        "select a.id, a.module, a.alert_type, a.acked_at, a.acked_by,
                u.full_name as acked_by_name, to_jsonb(a) as snapshot
         from ai_alert a left join adm_user u on u.id = a.acked_by
         where a.uuid = $1
           and exists (select 1 from ai_alert_recipient r
                       where r.alert_id = a.id and r.user_id = $2)
           and {}
         for update of a",
        crate::domain::access::module_readable("a.module", "$3")
    ))
    .bind(alert)
    .bind(caller.user_id)
    .bind(&permissions)
    .fetch_optional(&mut *tx)
    .await
    .context("reading the alert to acknowledge")?;
    let Some(target) = target else {
        return Ok(told(texts::alert_gone(lang).to_owned()));
    };
    let origin = format!("{} · {}", target.module, target.alert_type);
    if let Some(at) = target.acked_at {
        if target.acked_by == Some(caller.user_id) {
            // Their own tap again (or the same tap redelivered).
            return Ok(told(texts::alert_acked(lang, &origin)));
        }
        let by = target.acked_by_name.as_deref().unwrap_or("-");
        let at = crate::texts::local_time(at, timezone);
        return Ok(told(texts::alert_already_acked(lang, &origin, by, &at)));
    }
    record(
        &mut tx,
        target.id,
        alert,
        caller.user_id,
        None,
        target.snapshot,
        "whatsapp",
    )
    .await
    .context("acknowledging the alert")?;
    tx.commit()
        .await
        .context("committing the acknowledgement")?;
    tracing::info!(alert = %alert, "alert acknowledged from WhatsApp");
    Ok(told(texts::alert_acked(lang, &origin)))
}

/// Marks the alert `id` (`uuid`, locked by the caller, `old` its row before) handled by
/// `user_id` unless it already is, with its `log_audit` row; `via` labels the metric. The one
/// acknowledgement of the admin API and of the WhatsApp button. True when this call made it.
pub async fn record(
    conn: &mut sqlx::PgConnection,
    id: i64,
    uuid: Uuid,
    user_id: i64,
    ip: Option<&str>,
    old: Value,
    via: &'static str,
) -> crate::error::Result<bool> {
    let new: Option<Value> = sqlx::query_scalar(
        "update ai_alert a set is_read = true, acked_at = now(), acked_by = $2
         where id = $1 and acked_at is null returning to_jsonb(a)",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(new) = new else {
        return Ok(false);
    };
    audit::record(
        conn,
        Some(user_id),
        ip,
        Entry {
            action: "ACK",
            entity_type: "ai_alert",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: Some(old),
            new: Some(new),
        },
    )
    .await?;
    metrics::counter!("alerts_acked_total", "via" => via).increment(1);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_ids_name_their_alert() {
        let alert = Uuid::new_v4();
        assert_eq!(parse_button(&button_id(alert)), Some(alert));
        assert_eq!(parse_button("alert.ack:not-a-uuid"), None);
        assert_eq!(parse_button("menu.help"), None);
        assert!(
            button_id(alert).len() <= 256,
            "Meta's limit for a button id"
        );
    }
}
