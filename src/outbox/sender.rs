//! The sender loop (see the module above for the delivery guarantee).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::StreamExt;
use rand::Rng;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Purpose;
use crate::config::WhatsAppSettings;
use crate::outbox::ratelimit::RateLimiter;
use crate::queue::Doorbell;
use crate::whatsapp::graph::{content, Recipient, SendError, Transport, PAIR_RATE, WINDOW_CLOSED};

/// Due rows read per round; each recipient appears at most once in a round.
const CLAIM_BATCH: i64 = 64;
/// "Row `e` is an earlier message to `o`'s recipient that has not gone out": pending, sending,
/// or unknown and still waiting to be settled. A never-tried row scheduled later (a muted
/// alert) does not count.
macro_rules! no_earlier_unsent {
    () => {
        "not exists (
             select 1 from wa_outbox e
             where e.id < o.id and coalesce(e.wa_id, e.bsuid) = coalesce(o.wa_id, o.bsuid)
               and (e.status in ('pending', 'sending')
                    or (e.status = 'unknown' and e.next_try_at <> 'infinity'))
               and not (e.status = 'pending' and e.attempts = 0 and e.next_try_at > now()))"
    };
}
/// Sends in flight at once (different recipients).
const CONCURRENCY: usize = 16;
/// Meta's pair rate: about one message per six seconds to one user.
const PAIR_RATE_PAUSE: Duration = Duration::from_secs(6);
/// The customer-service window.
const WINDOW: chrono::Duration = chrono::Duration::hours(24);
/// Attempts of a chart (its text waits behind it).
const IMAGE_MAX_ATTEMPTS: u32 = 2;

/// Asked just before a row of its purpose is sent, with the row's id: `false` withdraws it
/// (status `withdrawn`), an error puts it back for the next round.
pub type Veto = Arc<dyn Fn(i64) -> BoxFuture<'static, anyhow::Result<bool>> + Send + Sync>;

/// Told, inside the transaction that records the send, that a row of its purpose went out.
pub type AfterSent =
    for<'c> fn(&'c mut PgConnection, &'c Sent) -> BoxFuture<'c, anyhow::Result<()>>;

/// A row Meta accepted.
pub struct Sent {
    /// `wa_outbox.id`.
    pub outbox_id: i64,
    /// The inbound message it replies to, if any.
    pub inbound_wamid: Option<String>,
    /// Which part of the reply (from 1).
    pub part_no: i32,
    /// The wamid Meta gave the message.
    pub wamid: String,
}

/// What the sender takes from the `whatsapp` settings.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// Global send rate of this instance.
    pub messages_per_second: u32,
    /// Time limit of one Graph API call (the lease of a claimed row is three of them, plus 5 s).
    pub graph_timeout_secs: u64,
    /// Attempts per message for retryable errors.
    pub max_attempts: u32,
    /// Backoff base delay.
    pub retry_base_ms: u64,
    /// Backoff ceiling.
    pub retry_max_ms: u64,
    /// Template used when the 24-hour window is closed; empty = none.
    pub window_template: String,
    /// Language code of `window_template`.
    pub window_template_lang: String,
    /// How long a send interrupted by a crash waits for Meta's status before it is sent again.
    pub unknown_grace_secs: u64,
}

impl From<&WhatsAppSettings> for SenderSettings {
    fn from(wa: &WhatsAppSettings) -> Self {
        Self {
            messages_per_second: wa.messages_per_second,
            graph_timeout_secs: wa.graph_timeout_secs,
            max_attempts: wa.send_max_attempts,
            retry_base_ms: wa.retry_base_ms,
            retry_max_ms: wa.retry_max_ms,
            window_template: wa.window_template.clone(),
            window_template_lang: wa.window_template_lang.clone(),
            unknown_grace_secs: wa.unknown_grace_secs,
        }
    }
}

/// The sending stage. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    /// Where the rows are.
    db: PgPool,
    /// The Graph API or the local sink.
    transport: Transport,
    settings: Arc<SenderSettings>,
    /// This instance's share of the business number's throughput.
    limiter: Arc<RateLimiter>,
    /// Rung by whoever committed new rows.
    doorbell: Doorbell,
    /// Last-moment checks, by purpose.
    vetoes: Arc<HashMap<Purpose, Veto>>,
    /// Reactions to a sent row, by purpose.
    after_sent: Arc<HashMap<Purpose, AfterSent>>,
}

impl Sender {
    pub fn new(db: PgPool, transport: Transport, settings: SenderSettings) -> Self {
        Self {
            db,
            transport,
            limiter: Arc::new(RateLimiter::per_second(settings.messages_per_second)),
            settings: Arc::new(settings),
            doorbell: Doorbell::default(),
            vetoes: Arc::default(),
            after_sent: Arc::default(),
        }
    }

    /// Registers the last-moment check of rows of `purpose` (one per purpose).
    pub fn veto(mut self, purpose: Purpose, check: Veto) -> Self {
        Arc::make_mut(&mut self.vetoes).insert(purpose, check);
        self
    }

    /// Registers what happens, in the recording transaction, when a row of `purpose` went out.
    pub fn after_sent(mut self, purpose: Purpose, hook: AfterSent) -> Self {
        Arc::make_mut(&mut self.after_sent).insert(purpose, hook);
        self
    }

    /// Ring it after committing rows written with [`super::enqueue`].
    pub fn doorbell(&self) -> Doorbell {
        self.doorbell.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.expire_leases().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot expire send leases");
            }
            if let Err(e) = self.settle_unknown().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot settle unknown sends");
            }
            loop {
                match self.send_due().await {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "sender round failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.doorbell.rung() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tracing::debug!("sender stopped");
    }

    /// Rows left `sending` by a process that died during their Graph call become `unknown`:
    /// Meta may or may not have taken them. Each waits `unknown_grace_secs` for evidence (a
    /// status webhook naming its wamid or uuid, [`super::apply_statuses`]) and holds back later
    /// rows to its recipient meanwhile; [`Sender::settle_unknown`] sends it once more after
    /// that. A row whose attempts are spent stays `unknown` for good (visible to admins).
    pub async fn expire_leases(&self) -> anyhow::Result<u64> {
        // An image whose upload had not been recorded: nothing can have reached /messages
        // (it is sent by the media id), so it goes again at once instead of waiting for a
        // status that will not come.
        sqlx::query(
            "update wa_outbox o set status = 'pending', lease_until = null, next_try_at = now(),
                 error_text = 'the hub stopped during the image upload; nothing was sent'
             where o.status = 'sending' and o.lease_until < now() and o.kind = 'image'
               and not exists (select 1 from wa_media m
                               where m.uuid::text = o.payload->'image'->>'hub_media'
                                 and m.media_id is not null)",
        )
        .execute(&self.db)
        .await
        .context("expiring image uploads")?;
        let expired: Vec<bool> = sqlx::query_scalar(
            "update wa_outbox set status = 'unknown', lease_until = null,
                 next_try_at = case when attempts < $2 then now() + make_interval(secs => $1)
                                    else 'infinity' end,
                 error_text = case when attempts < $2
                     then 'the hub stopped during the send; waiting for Meta''s status before sending it again'
                     else 'the hub stopped during the last allowed send; not sent again' end
             where status = 'sending' and lease_until < now()
             returning attempts < $2",
        )
        .bind(self.settings.unknown_grace_secs as f64)
        .bind(self.settings.max_attempts as i32)
        .fetch_all(&self.db)
        .await
        .context("expiring leases")?;
        if !expired.is_empty() {
            let given_up = expired.iter().filter(|resend| !**resend).count() as u64;
            metrics::counter!("outbox_sends_total", "outcome" => "unknown")
                .increment(expired.len() as u64);
            if given_up > 0 {
                metrics::counter!("outbox_unknown_settled_total", "by" => "given_up")
                    .increment(given_up);
            }
            tracing::warn!(
                rows = expired.len(),
                given_up,
                "sends interrupted by a crash are unknown until Meta's status (or the grace period) settles them"
            );
        }
        Ok(expired.len() as u64)
    }

    /// `unknown` rows whose grace period passed without a status from Meta: most likely never
    /// accepted, so they are sent once more. Returns how many.
    pub async fn settle_unknown(&self) -> anyhow::Result<u64> {
        let resent = sqlx::query(
            "update wa_outbox set status = 'pending', next_try_at = now(),
                 error_text = 'no status from Meta after the hub stopped during the send; sent again'
             where status = 'unknown' and next_try_at <= now()",
        )
        .execute(&self.db)
        .await
        .context("settling unknown sends")?
        .rows_affected();
        if resent > 0 {
            metrics::counter!("outbox_unknown_settled_total", "by" => "resent").increment(resent);
            tracing::warn!(
                rows = resent,
                "sends interrupted by a crash had no status from Meta; sending them again"
            );
        }
        Ok(resent)
    }

    /// Sends the due rows: oldest first, none while an earlier row to the same recipient is
    /// pending, sending or unknown (so parts and answers arrive in order). A row never tried yet
    /// that waits for a later time (an alert to a user who muted alerts) holds nothing back:
    /// answers to a muted user's questions still go out. Returns how many rows were due.
    ///
    /// A row is `sending` only while its own Graph call is in flight: each due row first waits
    /// for the rate limiter's permit (still `pending`, so a crash here loses nothing), then is
    /// claimed on its own, re-checking that it is still due (another instance may have taken
    /// it meanwhile; the permit is then simply unused).
    pub async fn send_due(&self) -> anyhow::Result<usize> {
        let due: Vec<(i64, bool)> = sqlx::query_as(concat!(
            "select o.id,
                 o.kind = 'template' or exists (
                     select 1 from wa_contact c
                     where c.sender_key = coalesce(o.wa_id, o.bsuid)
                       and c.last_in_at > now() - interval '24 hours')
             from wa_outbox o
             where o.status = 'pending' and o.next_try_at <= now() and ",
            no_earlier_unsent!(),
            " order by o.id limit $1"
        ))
        .bind(CLAIM_BATCH)
        .fetch_all(&self.db)
        .await
        .context("reading due sends")?;
        let count = due.len();
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |(id, calls_meta)| async move {
                if calls_meta {
                    self.limiter.acquire().await;
                }
                let sent = match self.claim(id).await {
                    Ok(Some(row)) => self.send_one(row).await,
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    tracing::error!(error = %format!("{e:#}"), "cannot claim or record a send");
                }
            })
            .await;
        Ok(count)
    }

    /// Marks row `id` `sending` (with a lease) when it is still due.
    async fn claim(&self, id: i64) -> anyhow::Result<Option<Claimed>> {
        let lease = self.settings.graph_timeout_secs as f64 * 3.0 + 5.0;
        sqlx::query_as(concat!(
            "update wa_outbox o set status = 'sending', attempts = o.attempts + 1,
                 lease_until = now() + make_interval(secs => $2)
             where o.id = $1 and o.status = 'pending' and o.next_try_at <= now() and ",
            no_earlier_unsent!(),
            " returning o.id, o.uuid, o.wa_id, o.bsuid, o.kind, o.purpose, o.payload, o.attempts,
                 (select c.last_in_at from wa_contact c
                  where c.sender_key = coalesce(o.wa_id, o.bsuid)) as last_in_at"
        ))
        .bind(id)
        .bind(lease)
        .fetch_optional(&self.db)
        .await
        .context("claiming a due send")
    }

    #[tracing::instrument(skip_all, fields(outbox_id = row.id, attempt = row.attempts))]
    async fn send_one(&self, row: Claimed) -> anyhow::Result<()> {
        let purpose = Purpose::parse(&row.purpose);
        if let Some(veto) = purpose.and_then(|p| self.vetoes.get(&p)) {
            match veto(row.id).await {
                Ok(true) => {}
                Ok(false) => {
                    metrics::counter!("outbox_sends_total", "outcome" => "withdrawn").increment(1);
                    tracing::info!(
                        purpose = row.purpose,
                        "no longer wanted (e.g. an alert acknowledged meanwhile or its recipient lost the device trust or access, a sign-in code whose login ended); not sent"
                    );
                    sqlx::query(
                        "update wa_outbox set status = 'withdrawn', lease_until = null,
                             error_text = 'no longer wanted: acknowledged or ended meanwhile, or the recipient lost the device trust or access'
                         where id = $1",
                    )
                    .bind(row.id)
                    .execute(&self.db)
                    .await
                    .context("withdrawing a send")?;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot check a send before it goes out; will try again");
                    return self.put_back(row.id).await;
                }
            }
        }
        let to = Recipient {
            wa_id: row.wa_id.clone(),
            bsuid: row.bsuid.clone(),
        };
        let window_open = row
            .last_in_at
            .is_some_and(|t| Utc::now().signed_duration_since(t) < WINDOW);
        let result = if row.kind != "template" && !window_open {
            // Meta would refuse it with 131047; do not spend a call to hear that.
            Err(SendError::Api {
                http_status: 400,
                code: WINDOW_CLOSED,
                message: "24-hour window closed (checked locally)".into(),
            })
        } else {
            match self.outgoing(&row).await {
                // The permit was taken before the claim (see `send_due`).
                Ok(Ok(payload)) => {
                    self.transport
                        .send(&to, &payload, &row.uuid.to_string())
                        .await
                }
                Ok(Err(e)) => Err(e),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot read an image to send; will try again");
                    return self.put_back(row.id).await;
                }
            }
        };
        match result {
            Ok(wamid) => {
                metrics::counter!("outbox_sends_total", "outcome" => "sent").increment(1);
                self.record_sent(&row, purpose, wamid).await?;
            }
            Err(e) if e.code() == Some(WINDOW_CLOSED) && row.kind != "template" => {
                self.window_closed(&row, &e).await?;
            }
            Err(e) if e.is_retryable() && (row.attempts as u32) < self.max_attempts(&row) => {
                metrics::counter!("outbox_sends_total", "outcome" => "retry").increment(1);
                let mut delay = self.backoff(row.attempts as u32);
                if e.code() == Some(PAIR_RATE) {
                    delay = delay.max(PAIR_RATE_PAUSE);
                }
                tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "send failed; will retry");
                sqlx::query(
                    "update wa_outbox set status = 'pending', lease_until = null,
                         next_try_at = now() + make_interval(secs => $2),
                         error_code = $3, error_text = $4
                     where id = $1 and status = 'sending'",
                )
                .bind(row.id)
                .bind(delay.as_secs_f64())
                .bind(e.code().map(|c| c as i32))
                .bind(e.to_string())
                .execute(&self.db)
                .await
                .context("scheduling a retry")?;
            }
            Err(e) => {
                metrics::counter!("outbox_sends_total", "outcome" => "failed").increment(1);
                tracing::error!(error = %e, "send failed for good");
                self.fail(row.id, e.code(), &e.to_string()).await?;
            }
        }
        Ok(())
    }

    /// Attempts a row gets: a chart at most two, since the answer's text waits behind it in
    /// the recipient's order; everything else `whatsapp.send_max_attempts`.
    fn max_attempts(&self, row: &Claimed) -> u32 {
        if row.kind == "image" {
            self.settings.max_attempts.min(IMAGE_MAX_ATTEMPTS)
        } else {
            self.settings.max_attempts
        }
    }

    /// A claimed row that did not go out (the database could not be read): pending again, for
    /// the next round rather than after its lease.
    async fn put_back(&self, id: i64) -> anyhow::Result<()> {
        sqlx::query(
            "update wa_outbox set status = 'pending', lease_until = null,
                 next_try_at = now() + interval '5 seconds'
             where id = $1 and status = 'sending'",
        )
        .bind(id)
        .execute(&self.db)
        .await
        .context("putting an unsent row back")?;
        Ok(())
    }

    /// What goes to Meta for `row`: its payload, or for an image (which the outbox names by its
    /// `wa_media` uuid) the image message by media id, uploading the bytes first unless Meta
    /// has them from an earlier attempt (its ids last 30 days). The outer error is the
    /// database's (try again later); the inner one the upload's, handled as a send's.
    async fn outgoing(&self, row: &Claimed) -> anyhow::Result<Result<Value, SendError>> {
        if row.kind != "image" {
            return Ok(Ok(row.payload.clone()));
        }
        let image = &row.payload["image"];
        let caption = image["caption"].as_str().unwrap_or_default();
        let media = image["hub_media"]
            .as_str()
            .and_then(|u| Uuid::parse_str(u).ok());
        let stored: Option<(Option<String>, Vec<u8>, String)> = match media {
            Some(uuid) => sqlx::query_as(
                "select case when uploaded_at > now() - interval '29 days' then media_id end,
                        bytes, mime
                 from wa_media where uuid = $1",
            )
            .bind(uuid)
            .fetch_optional(&self.db)
            .await
            .context("reading an image to send")?,
            None => None,
        };
        let Some((uploaded, bytes, mime)) = stored else {
            return Ok(Err(SendError::Unsendable(
                "the image is no longer stored".into(),
            )));
        };
        if let Some(id) = uploaded {
            return Ok(Ok(self.transport.image(&id, caption)));
        }
        let name = format!("chart-{}.png", media.unwrap_or(row.uuid));
        let id = match self.transport.upload(&bytes, &mime, &name).await {
            Ok(id) => id,
            Err(e) => {
                metrics::counter!("outbox_media_uploads_total", "outcome" => "failed").increment(1);
                return Ok(Err(e));
            }
        };
        metrics::counter!("outbox_media_uploads_total", "outcome" => "uploaded").increment(1);
        sqlx::query("update wa_media set media_id = $2, uploaded_at = now() where uuid = $1")
            .bind(media)
            .bind(&id)
            .execute(&self.db)
            .await
            .context("recording an uploaded image")?;
        Ok(Ok(self.transport.image(&id, caption)))
    }

    /// Records the wamid Meta gave the row and tells the row's purpose, in one transaction.
    async fn record_sent(
        &self,
        row: &Claimed,
        purpose: Option<Purpose>,
        wamid: String,
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await.context("starting to record a send")?;
        let (inbound_wamid, part_no): (Option<String>, i32) = sqlx::query_as(
            "update wa_outbox set
                 status = case when status = 'sending' then 'sent' else status end,
                 wamid = $2, sent_at = coalesce(sent_at, now()), lease_until = null,
                 error_code = null, error_text = null
             where id = $1
             returning inbound_wamid, part_no",
        )
        .bind(row.id)
        .bind(&wamid)
        .fetch_one(&mut *tx)
        .await
        .context("recording a sent message")?;
        if let Some(hook) = purpose.and_then(|p| self.after_sent.get(&p)) {
            let sent = Sent {
                outbox_id: row.id,
                inbound_wamid,
                part_no,
                wamid,
            };
            hook(&mut tx, &sent).await?;
        }
        tx.commit().await.context("committing a sent message")
    }

    /// Full-jitter exponential backoff: uniform in [0, min(max, base·2^(attempt-1))].
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .settings
            .retry_base_ms
            .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
            .min(self.settings.retry_max_ms);
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling))
    }

    /// The 24-hour window is closed: resend as the configured template, or record the failure.
    async fn window_closed(&self, row: &Claimed, e: &SendError) -> anyhow::Result<()> {
        let settings = &self.settings;
        if row.kind == "image" {
            // Only text goes as the template: the answer's text part follows this row.
            metrics::counter!("outbox_sends_total", "outcome" => "window_closed").increment(1);
            return self
                .fail(
                    row.id,
                    Some(WINDOW_CLOSED),
                    &format!("{e}; an image is not sent outside the 24-hour window (the text is)"),
                )
                .await;
        }
        if settings.window_template.is_empty() {
            metrics::counter!("outbox_sends_total", "outcome" => "window_closed").increment(1);
            tracing::warn!("24-hour window closed and no template configured; not sent");
            return self.fail(row.id, Some(WINDOW_CLOSED), &e.to_string()).await;
        }
        let text = row.payload["text"]["body"]
            .as_str()
            .or_else(|| row.payload["interactive"]["body"]["text"].as_str())
            .unwrap_or_default();
        let template = content::template(
            &settings.window_template,
            &settings.window_template_lang,
            &[text],
        );
        metrics::counter!("outbox_sends_total", "outcome" => "to_template").increment(1);
        sqlx::query(
            "update wa_outbox set kind = 'template', payload = $2, status = 'pending',
                 lease_until = null, next_try_at = now(), error_code = $3, error_text = $4
             where id = $1",
        )
        .bind(row.id)
        .bind(template)
        .bind(WINDOW_CLOSED as i32)
        .bind(e.to_string())
        .execute(&self.db)
        .await
        .context("switching a send to the window template")?;
        self.doorbell.ring();
        Ok(())
    }

    async fn fail(&self, id: i64, code: Option<i64>, text: &str) -> anyhow::Result<()> {
        sqlx::query(
            "update wa_outbox set status = 'failed', failed_at = now(), lease_until = null,
                 error_code = $2, error_text = $3
             where id = $1",
        )
        .bind(id)
        .bind(code.map(|c| c as i32))
        .bind(text)
        .execute(&self.db)
        .await
        .context("recording a failed send")?;
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    uuid: Uuid,
    wa_id: Option<String>,
    bsuid: Option<String>,
    kind: String,
    purpose: String,
    payload: Value,
    attempts: i32,
    last_in_at: Option<DateTime<Utc>>,
}
