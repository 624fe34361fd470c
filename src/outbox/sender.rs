//! The sender loop (see the module above for the delivery guarantee).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rand::Rng;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::outbox::ratelimit::RateLimiter;
use crate::startup::AppState;
use crate::whatsapp::graph::{content, Recipient, SendError, PAIR_RATE, WINDOW_CLOSED};

/// Rows claimed per round; each recipient appears at most once in a round.
const CLAIM_BATCH: i64 = 64;
/// Sends in flight at once (different recipients).
const CONCURRENCY: usize = 16;
/// Meta's pair rate: about one message per six seconds to one user.
const PAIR_RATE_PAUSE: Duration = Duration::from_secs(6);
/// The customer-service window.
const WINDOW: chrono::Duration = chrono::Duration::hours(24);

pub async fn run(state: AppState, shutdown: CancellationToken) {
    let limiter = Arc::new(RateLimiter::per_second(
        state.settings.whatsapp.messages_per_second,
    ));
    loop {
        if let Err(e) = expire_leases(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot expire send leases");
        }
        loop {
            match send_due(&state, &limiter).await {
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
            () = state.wake.sender.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    tracing::debug!("sender stopped");
}

/// Rows left `sending` by a process that died: never resent (at most once), marked `unknown`.
async fn expire_leases(state: &AppState) -> anyhow::Result<()> {
    let expired = sqlx::query(
        "update wa_outbox set status = 'unknown', lease_until = null,
             error_text = 'the hub stopped during the send; not resent (at most once)'
         where status = 'sending' and lease_until < now()",
    )
    .execute(&state.db)
    .await
    .context("expiring leases")?;
    if expired.rows_affected() > 0 {
        metrics::counter!("outbox_sends_total", "outcome" => "unknown")
            .increment(expired.rows_affected());
        tracing::warn!(
            rows = expired.rows_affected(),
            "sends interrupted by a crash marked unknown"
        );
    }
    Ok(())
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

/// Claims due rows (oldest first; none while an earlier row to the same recipient is still
/// pending or sending, so parts arrive in order) and sends them. Returns how many were claimed.
/// An alert never tried yet that waits for a later time (the recipient muted alerts) holds
/// nothing back: answers to a muted user's questions still go out.
async fn send_due(state: &AppState, limiter: &Arc<RateLimiter>) -> anyhow::Result<usize> {
    let lease = state.settings.whatsapp.graph_timeout_secs as f64 * 3.0 + 5.0;
    let claimed: Vec<Claimed> = sqlx::query_as(
        "with due as (
             select o.id from wa_outbox o
             where o.status = 'pending' and o.next_try_at <= now()
               and not exists (
                   select 1 from wa_outbox e
                   where e.id < o.id and e.status in ('pending', 'sending')
                     and coalesce(e.wa_id, e.bsuid) = coalesce(o.wa_id, o.bsuid)
                     and not (e.purpose = 'alert' and e.status = 'pending' and e.attempts = 0
                              and e.next_try_at > now()))
             order by o.id
             limit $1
             for update skip locked)
         update wa_outbox o set status = 'sending', attempts = o.attempts + 1,
             lease_until = now() + make_interval(secs => $2)
         from due where o.id = due.id
         returning o.id, o.uuid, o.wa_id, o.bsuid, o.kind, o.purpose, o.payload, o.attempts,
             (select c.last_in_at from wa_contact c
              where c.sender_key = coalesce(o.wa_id, o.bsuid)) as last_in_at",
    )
    .bind(CLAIM_BATCH)
    .bind(lease)
    .fetch_all(&state.db)
    .await
    .context("claiming due sends")?;
    let count = claimed.len();
    futures::stream::iter(claimed)
        .for_each_concurrent(CONCURRENCY, |row| {
            let limiter = limiter.clone();
            async move {
                if let Err(e) = send_one(state, &limiter, row).await {
                    tracing::error!(error = %format!("{e:#}"), "cannot record a send result");
                }
            }
        })
        .await;
    Ok(count)
}

#[tracing::instrument(skip_all, fields(outbox_id = row.id, attempt = row.attempts))]
async fn send_one(state: &AppState, limiter: &RateLimiter, row: Claimed) -> anyhow::Result<()> {
    let wanted = if row.purpose == "alert" {
        let check = crate::alerts::dispatch::still_wanted(
            &state.db,
            row.id,
            state.settings.identity.trust_days,
        )
        .await;
        match check {
            Ok(wanted) => wanted,
            Err(e) => {
                // Nothing went out: the row waits for the next round rather than its lease.
                tracing::warn!(error = %format!("{e:#}"), "cannot check an alert before sending; will try again");
                sqlx::query(
                    "update wa_outbox set status = 'pending', lease_until = null,
                         next_try_at = now() + interval '5 seconds'
                     where id = $1 and status = 'sending'",
                )
                .bind(row.id)
                .execute(&state.db)
                .await
                .context("putting an unchecked alert back")?;
                return Ok(());
            }
        }
    } else {
        true
    };
    if !wanted {
        metrics::counter!("outbox_sends_total", "outcome" => "withdrawn").increment(1);
        tracing::info!("alert acknowledged meanwhile, or its recipient lost the device trust or access; not sent");
        sqlx::query(
            "update wa_outbox set status = 'withdrawn', lease_until = null,
                 error_text = 'acknowledged meanwhile, or the recipient lost the device trust or access'
             where id = $1",
        )
        .bind(row.id)
        .execute(&state.db)
        .await
        .context("withdrawing an alert")?;
        return Ok(());
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
        limiter.acquire().await;
        state
            .transport
            .send(&to, &row.payload, &row.uuid.to_string())
            .await
    };
    match result {
        Ok(wamid) => {
            metrics::counter!("outbox_sends_total", "outcome" => "sent").increment(1);
            // The chat log learns the wamid of the answer's first part in the same statement.
            sqlx::query(
                "with sent as (
                     update wa_outbox set
                         status = case when status = 'sending' then 'sent' else status end,
                         wamid = $2, sent_at = coalesce(sent_at, now()), lease_until = null,
                         error_code = null, error_text = null
                     where id = $1
                     returning inbound_wamid, purpose, part_no)
                 update ai_chat set wamid_out = $2
                 from sent
                 where ai_chat.wamid_in = sent.inbound_wamid and sent.purpose = 'answer'
                   and sent.part_no = 1 and ai_chat.wamid_out is null",
            )
            .bind(row.id)
            .bind(&wamid)
            .execute(&state.db)
            .await
            .context("recording a sent message")?;
        }
        Err(e) if e.code() == Some(WINDOW_CLOSED) && row.kind != "template" => {
            window_closed(state, &row, &e).await?;
        }
        Err(e)
            if e.is_retryable()
                && (row.attempts as u32) < state.settings.whatsapp.send_max_attempts =>
        {
            metrics::counter!("outbox_sends_total", "outcome" => "retry").increment(1);
            let mut delay = backoff(state, row.attempts as u32);
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
            .execute(&state.db)
            .await
            .context("scheduling a retry")?;
        }
        Err(e) => {
            metrics::counter!("outbox_sends_total", "outcome" => "failed").increment(1);
            tracing::error!(error = %e, "send failed for good");
            fail(state, row.id, e.code(), &e.to_string()).await?;
        }
    }
    Ok(())
}

/// Full-jitter exponential backoff: uniform in [0, min(max, base·2^(attempt-1))].
fn backoff(state: &AppState, attempt: u32) -> Duration {
    let wa = &state.settings.whatsapp;
    let ceiling = wa
        .retry_base_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(20))
        .min(wa.retry_max_ms);
    Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling))
}

/// The 24-hour window is closed: resend as the configured template, or record the failure.
async fn window_closed(state: &AppState, row: &Claimed, e: &SendError) -> anyhow::Result<()> {
    let wa = &state.settings.whatsapp;
    if wa.window_template.is_empty() {
        metrics::counter!("outbox_sends_total", "outcome" => "window_closed").increment(1);
        tracing::warn!("24-hour window closed and no template configured; not sent");
        return fail(state, row.id, Some(WINDOW_CLOSED), &e.to_string()).await;
    }
    let text = row.payload["text"]["body"]
        .as_str()
        .or_else(|| row.payload["interactive"]["body"]["text"].as_str())
        .unwrap_or_default();
    let template = content::template(&wa.window_template, &wa.window_template_lang, &[text]);
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
    .execute(&state.db)
    .await
    .context("switching a send to the window template")?;
    state.wake.sender.notify_one();
    Ok(())
}

async fn fail(state: &AppState, id: i64, code: Option<i64>, text: &str) -> anyhow::Result<()> {
    sqlx::query(
        "update wa_outbox set status = 'failed', failed_at = now(), lease_until = null,
             error_code = $2, error_text = $3
         where id = $1",
    )
    .bind(id)
    .bind(code.map(|c| c as i32))
    .bind(text)
    .execute(&state.db)
    .await
    .context("recording a failed send")?;
    Ok(())
}
