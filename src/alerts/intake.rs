//! Alerts from other services over NATS. A JetStream stream captures `alerts.subject`, so an
//! alert published with a plain `nats pub` while the hub is down waits there. One durable
//! consumer, shared by every instance, stores each alert in `ai_alert` and then acknowledges it.
//!
//! The message is JSON: `{"module","alert_type","severity","message"}` (also `type` for
//! `alert_type`, as in the blueprint), optional `channel` (WA, Email, Dashboard; default WA) and
//! `dedup_key`; every other field is kept in `ai_alert.payload`. A redelivered alert is stored
//! once: the key is `dedup_key`, else the message's position in the stream. The alert is dated
//! when JetStream received it, so one that waited out an outage in the stream is seen as old.
//!
//! Garbage (not JSON, a missing or malformed field, a NUL character, more than [`MAX_BODY`]
//! bytes, anything PostgreSQL refuses as data) is kept raw in `wa_dead_letter` (source `alerts`)
//! with the reason, and terminated. While PostgreSQL is unreachable nothing is acknowledged:
//! JetStream offers the alert again until the row is written. While NATS is unreachable the
//! intake retries the pull every second; other services' alerts wait in their own client or,
//! once published, in the stream.
//!
//! Anyone who may publish on the subject can put text on the directors' phones: restrict it with
//! the NATS server's permissions. Control and bidirectional-override characters are removed from
//! the message so it reads on the phone as it reads in the list.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::alerts::Severity;
use crate::config::AlertSettings;
use crate::queue::{Doorbell, Ensure};

/// Largest alert message accepted, in bytes of JSON.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest `message`, in characters (a WhatsApp text holds 4,096).
const MAX_MESSAGE_CHARS: usize = 3000;
/// Longest `dedup_key` (the column's width).
const MAX_DEDUP_KEY: usize = 100;
/// Key prefixes of the hub's own alerts: the detectors' (`detect:`) and the stream positions it
/// keys messages without a key by (`js:`).
const RESERVED_KEY_PREFIXES: [&str; 2] = ["detect:", "js:"];
/// How long a message waits before JetStream offers it again after the database failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// An alert as another service sent it, checked and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// Upper case, 2-10 letters (SO, WO, MAINT, SYS …).
    pub module: String,
    /// Upper case, letters, digits and underscores (ANOMALY, STOCK, MACHINE_DOWN …).
    pub alert_type: String,
    pub severity: Severity,
    pub message: String,
    /// WA (pushed to phones), Email or Dashboard (stored only).
    pub channel: &'static str,
    pub dedup_key: Option<String>,
    /// Every other field of the message.
    pub payload: Value,
}

/// Reads one alert message; the error says what is wrong, for the dead letter.
pub fn parse(body: &[u8]) -> Result<NewAlert, String> {
    if body.len() > MAX_BODY {
        return Err(format!(
            "alert of {} bytes is over the limit of {MAX_BODY}",
            body.len()
        ));
    }
    let mut fields: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("an alert must be a JSON object".into()),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    if fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)) {
        // PostgreSQL stores neither text nor jsonb with a NUL in it.
        return Err("the alert holds a NUL character (\\u0000)".into());
    }
    let mut take = |names: &[&str]| -> Result<Option<String>, String> {
        for name in names {
            match fields.remove(*name) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => return Ok(Some(s.trim().to_owned())),
                Some(_) => return Err(format!("{name} must be a string")),
            }
        }
        Ok(None)
    };
    let module = take(&["module"])?.unwrap_or_default().to_uppercase();
    let alert_type = take(&["alert_type", "type"])?
        .unwrap_or_default()
        .to_uppercase()
        .replace([' ', '-'], "_");
    let severity = take(&["severity"])?.unwrap_or_default();
    let message = readable(&take(&["message"])?.unwrap_or_default());
    let channel = take(&["channel"])?;
    let dedup_key = take(&["dedup_key"])?.filter(|k| !k.is_empty());

    if !(2..=10).contains(&module.len()) || !module.chars().all(|c| c.is_ascii_uppercase()) {
        return Err("module must be 2-10 letters, e.g. WO".into());
    }
    let type_ok = alert_type.len() <= 30
        && alert_type.starts_with(|c: char| c.is_ascii_uppercase())
        && alert_type
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !type_ok {
        return Err("alert_type must be up to 30 letters, digits or _, e.g. STOCK".into());
    }
    let severity = Severity::parse(&severity)
        .ok_or_else(|| "severity must be Low, Medium, High or Critical".to_owned())?;
    if message.is_empty() {
        return Err("message is missing".into());
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(format!(
            "message is longer than {MAX_MESSAGE_CHARS} characters"
        ));
    }
    let channel = match channel.as_deref().map(str::to_lowercase).as_deref() {
        None | Some("wa") | Some("whatsapp") => "WA",
        Some("email") => "Email",
        Some("dashboard") => "Dashboard",
        Some(_) => return Err("channel must be WA, Email or Dashboard".into()),
    };
    if dedup_key.as_ref().is_some_and(|k| k.len() > MAX_DEDUP_KEY) {
        return Err(format!(
            "dedup_key is longer than {MAX_DEDUP_KEY} characters"
        ));
    }
    if let Some(prefix) = dedup_key.as_deref().and_then(|k| {
        RESERVED_KEY_PREFIXES
            .iter()
            .find(|p| k.to_ascii_lowercase().starts_with(**p))
    }) {
        // A publisher must not take the key of a detector's (or a later message's) alert.
        return Err(format!(
            "dedup_key may not start with {prefix:?}: reserved for the hub's own alerts"
        ));
    }
    Ok(NewAlert {
        module,
        alert_type,
        severity,
        message,
        channel,
        dedup_key,
        payload: Value::Object(fields),
    })
}

/// Whether a NUL character hides in `value`'s strings or keys.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// `text` without control characters (line breaks and tabs stay) and without the bidirectional
/// overrides that make a message read differently from what it holds.
fn readable(text: &str) -> String {
    text.chars()
        .filter(|c| {
            matches!(c, '\n' | '\t')
                || !(c.is_control()
                    || ('\u{202a}'..='\u{202e}').contains(c)
                    || ('\u{2066}'..='\u{2069}').contains(c))
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Stores `alert`, dated `raised_at` (never later than now), unless one with the same dedup key
/// exists; true when a row was written.
async fn store(
    db: &PgPool,
    alert: &NewAlert,
    raised_at: Option<DateTime<Utc>>,
) -> anyhow::Result<bool> {
    let written = sqlx::query(
        "insert into ai_alert (module, alert_type, severity, message, channel, dedup_key, payload,
                               created_at)
         values ($1, $2, $3, $4, $5, $6, $7, least(now(), coalesce($8, now())))
         on conflict (dedup_key) do nothing",
    )
    .bind(&alert.module)
    .bind(&alert.alert_type)
    .bind(alert.severity.as_str())
    .bind(&alert.message)
    .bind(alert.channel)
    .bind(&alert.dedup_key)
    .bind(&alert.payload)
    .bind(raised_at)
    .execute(db)
    .await
    .context("storing an alert")?;
    Ok(written.rows_affected() == 1)
}

/// Creates the stream over the alert subject and its durable consumer when missing.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    settings: &AlertSettings,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream =
        match crate::queue::ensure_stream(js, &settings.stream, vec![settings.subject.clone()])
            .await
        {
            Ok(stream) => stream,
            Err(e) => match legacy_stream(js, settings).await {
                Some(stream) => stream,
                None => {
                    return Err(e.context(format!(
                        "is alerts.subject {} already captured by another deployment's stream on this NATS? Give each deployment its own alerts.subject",
                        settings.subject
                    )))
                }
            },
        };
    // The consumer is named after the stream it reads (a taken-over one keeps its consumer: a
    // work queue allows only one).
    let name = format!("{}-hub", stream.cached_info().config.name.to_lowercase());
    stream
        .get_or_create_consumer(
            &name,
            pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                // No limit: an alert is only let go once it is stored or dead-lettered.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("creating JetStream consumer {name}"))
}

/// The stream of a release before deployment names (`alerts.stream` without the name), when it
/// still captures exactly `alerts.subject`: taken over, so an upgrade neither fails at start nor
/// leaves the alerts it holds behind.
async fn legacy_stream(
    js: &jetstream::Context,
    settings: &AlertSettings,
) -> Option<jetstream::stream::Stream> {
    if settings.legacy_stream.is_empty() || settings.legacy_stream == settings.stream {
        return None;
    }
    let mut stream = js.get_stream(&settings.legacy_stream).await.ok()?;
    let subjects = &stream.info().await.ok()?.config.subjects;
    if subjects.as_slice() != [settings.subject.clone()] {
        return None;
    }
    tracing::warn!(
        stream = settings.legacy_stream,
        "using the alert stream of a release before deployment names (alerts.stream without nats.deployment)"
    );
    Some(stream)
}

/// What sets up the alert stream and its consumer again (see [`crate::queue::Ensure`]).
pub fn ensure_again(js: jetstream::Context, settings: AlertSettings) -> Ensure {
    Arc::new(move || {
        let (js, settings) = (js.clone(), settings.clone());
        Box::pin(async move { ensure_consumer(&js, &settings).await })
    })
}

/// The intake stage: the stream's durable consumer, storing into `ai_alert`.
pub struct AlertIntake {
    db: PgPool,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// Sets the stream and the consumer up again after a failure.
    ensure: Ensure,
    /// The dispatcher's, rung when an alert was stored.
    dispatcher: Doorbell,
}

impl AlertIntake {
    pub fn new(
        db: PgPool,
        consumer: jetstream::consumer::Consumer<pull::Config>,
        ensure: Ensure,
        dispatcher: Doorbell,
    ) -> Self {
        Self {
            db,
            consumer,
            ensure,
            dispatcher,
        }
    }

    /// Stores alerts from the stream until `shutdown`; the alert in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = &self;
        let (consumer, ensure) = (self.consumer.clone(), self.ensure.clone());
        crate::queue::pull(
            consumer,
            ensure,
            &shutdown,
            "alerts",
            |message| async move { this.handle(&message).await },
        )
        .await;
    }

    /// Stores (or dead-letters) one message and acknowledges it to JetStream as it deserves.
    pub async fn handle(&self, message: &jetstream::Message) {
        let ack = self.settle(message).await;
        if let Err(e) = message.ack_with(ack).await {
            // Not fatal: JetStream redelivers after ack_wait and storing is idempotent.
            tracing::warn!(error = %e, "cannot acknowledge an alert to JetStream");
        }
    }

    /// What becomes of `message`: stored or a duplicate (`Ack`), garbage kept as a dead letter
    /// (`Term`), or the database unavailable (`Nak`, offered again later).
    async fn settle(&self, message: &jetstream::Message) -> AckKind {
        let info = message.info().ok();
        match parse(&message.payload) {
            Ok(mut alert) => {
                if alert.dedup_key.is_none() {
                    // A redelivery has the same position; a new message never does.
                    alert.dedup_key = info
                        .as_ref()
                        .map(|i| format!("js:{}:{}", i.stream_sequence, i.published));
                }
                let raised_at = info
                    .as_ref()
                    .and_then(|i| i64::try_from(i.published.unix_timestamp_nanos()).ok())
                    .map(DateTime::from_timestamp_nanos);
                match store(&self.db, &alert, raised_at).await {
                    Ok(new) => {
                        let outcome = if new { "stored" } else { "duplicate" };
                        metrics::counter!("alerts_received_total", "outcome" => outcome)
                            .increment(1);
                        tracing::info!(
                            module = alert.module,
                            alert_type = alert.alert_type,
                            severity = alert.severity.as_str(),
                            outcome,
                            "alert received"
                        );
                        self.dispatcher.ring();
                        AckKind::Ack
                    }
                    Err(e) => match refused_as_data(&e) {
                        Some(reason) => self.dead_letter(message, &reason).await,
                        None => {
                            tracing::warn!(error = %format!("{e:#}"), "cannot store an alert; JetStream will offer it again");
                            AckKind::Nak(Some(RETRY_AFTER))
                        }
                    },
                }
            }
            Err(reason) => self.dead_letter(message, &reason).await,
        }
    }

    /// Keeps an alert that can never be stored; `Term` once it is kept, `Nak` when even that
    /// fails.
    async fn dead_letter(&self, message: &jetstream::Message, reason: &str) -> AckKind {
        let id = message_id(message);
        let kept = crate::dead_letter::keep(
            &self.db,
            "alerts",
            reason,
            message.payload.as_ref(),
            id.as_deref(),
        )
        .await;
        match kept {
            Ok(()) => {
                metrics::counter!("alerts_received_total", "outcome" => "invalid").increment(1);
                tracing::warn!(reason, "unreadable alert kept as a dead letter");
                AckKind::Term
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep an unreadable alert; JetStream will offer it again");
                AckKind::Nak(Some(RETRY_AFTER))
            }
        }
    }
}

/// The reason when PostgreSQL refused the alert's data itself (SQLSTATE classes 22, data
/// exceptions, and 23, constraint violations): trying again would fail again.
fn refused_as_data(e: &anyhow::Error) -> Option<String> {
    let sqlx::Error::Database(db) = e.downcast_ref::<sqlx::Error>()? else {
        return None;
    };
    let code = db.code()?;
    (code.starts_with("22") || code.starts_with("23"))
        .then(|| format!("refused by the database ({code}): {}", db.message()))
}

/// The publisher's `Nats-Msg-Id`, for the dead letter's reference.
fn message_id(message: &jetstream::Message) -> Option<String> {
    let id = message
        .headers
        .as_ref()?
        .get(async_nats::header::NATS_MESSAGE_ID)?
        .as_str();
    (!id.is_empty() && id.len() <= 128).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_alert_is_normalised_and_keeps_its_extra_fields() {
        let alert = parse(
            r#"{"module":"maint","type":"machine down","severity":"🔴 Critical",
                 "message":" MCH-003 stopped ","machine":"MCH-003","dedup_key":"mch-003-down"}"#
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(alert.module, "MAINT");
        assert_eq!(alert.alert_type, "MACHINE_DOWN");
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.message, "MCH-003 stopped");
        assert_eq!(alert.channel, "WA");
        assert_eq!(alert.dedup_key.as_deref(), Some("mch-003-down"));
        assert_eq!(alert.payload, serde_json::json!({"machine": "MCH-003"}));
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        let reason = |body: &[u8]| parse(body).unwrap_err();
        assert!(reason(b"not json").starts_with("not JSON"));
        assert_eq!(reason(b"[1,2]"), "an alert must be a JSON object");
        let ok = r#""module":"WO","alert_type":"DELAY","severity":"High","message":"late""#;
        assert!(parse(format!("{{{ok}}}").as_bytes()).is_ok());
        assert!(
            reason(br#"{"alert_type":"DELAY","severity":"High","message":"m"}"#)
                .starts_with("module")
        );
        assert!(reason(
            br#"{"module":"WORKORDERS1","alert_type":"X","severity":"High","message":"m"}"#
        )
        .starts_with("module"));
        assert!(
            reason(br#"{"module":"WO","alert_type":"1X","severity":"High","message":"m"}"#)
                .starts_with("alert_type")
        );
        assert!(
            reason(br#"{"module":"WO","alert_type":"X","severity":"meh","message":"m"}"#)
                .starts_with("severity")
        );
        assert_eq!(
            reason(br#"{"module":"WO","alert_type":"X","severity":"Low","message":"  "}"#),
            "message is missing"
        );
        assert!(
            reason(br#"{"module":"WO","alert_type":"X","severity":"Low","message":7}"#)
                .starts_with("message must be a string")
        );
        assert!(reason(
            br#"{"module":"WO","alert_type":"X","severity":"Low","message":"m","channel":"SMS"}"#
        )
        .starts_with("channel"));
        let long = format!(
            r#"{{"module":"WO","alert_type":"X","severity":"Low","message":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_CHARS + 1)
        );
        assert!(reason(long.as_bytes()).starts_with("message is longer"));
        assert!(reason(&vec![b' '; MAX_BODY + 1]).contains("over the limit"));
        assert!(reason(
            br#"{"module":"WO","alert_type":"X","severity":"Low","message":"m","extra":["a\u0000"]}"#
        )
        .contains("NUL"));
    }

    #[test]
    fn control_and_override_characters_leave_the_message() {
        let alert = parse(
            "{\"module\":\"WO\",\"alert_type\":\"X\",\"severity\":\"Low\",\
              \"message\":\"Mesin\\u0007 berhenti\\u202e lihat\\nbaris 2\"}"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(alert.message, "Mesin berhenti lihat\nbaris 2");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_get_an_alert_or_a_reason(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            match parse(&body) {
                Ok(alert) => prop_assert!(!alert.message.contains('\0')),
                Err(reason) => prop_assert!(!reason.is_empty()),
            }
        }

        #[test]
        fn any_message_text_is_stored_readable_and_bounded(message in any::<String>()) {
            let body = serde_json::json!({
                "module": "WO", "alert_type": "ANOMALY", "severity": "High", "message": message,
            });
            match parse(body.to_string().as_bytes()) {
                Ok(alert) => {
                    prop_assert!(alert.message.chars().count() <= 3000);
                    prop_assert!(!alert.message.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
                    let bidi = |c: char| ('\u{202a}'..='\u{202e}').contains(&c)
                        || ('\u{2066}'..='\u{2069}').contains(&c);
                    prop_assert!(!alert.message.chars().any(bidi), "bidi controls removed");
                }
                Err(reason) => prop_assert!(reason.contains("NUL") || reason.contains("message"), "{}", reason),
            }
        }
    }
}
