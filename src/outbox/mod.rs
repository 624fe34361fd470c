//! The outbox: every message the hub sends is a row first, then a Graph API call. This module is
//! the only writer of `wa_outbox` and `wa_media`: [`enqueue`] (and [`enqueue_reply`],
//! [`enqueue_messages`] for answers in parts, [`store_image`] for the charts they carry) for
//! everyone who sends, [`apply_statuses`] for Meta's status webhooks, and the
//! [`Sender`] loop, which claims due rows, respects the global rate and each recipient's order
//! and 24-hour window, retries what Meta says is temporary, and records what Meta answered.
//!
//! The outbox knows nothing of what it carries. A feature that must veto a send at the last
//! moment, or learn that its message went out, registers that with the [`Sender`] at start-up
//! for its [`Purpose`] (the alerts' "still wanted?", the chat log's "answer sent as wamid …").
//!
//! Exactly once where the hub can know, and at least once where it cannot. A row is `sending`
//! (with a lease) only while its own Graph call is in flight: the rate limiter's permit is
//! taken while the row is still `pending`, then the row is claimed on its own (see
//! [`Sender::send_due`]). If the process dies during that call, Meta may or may not have
//! accepted the message; the expired lease makes the row `unknown`. Every send carries
//! `biz_opaque_callback_data` = the row's uuid, so Meta's status webhook (which also names the
//! wamid) settles it as sent; with no status after `whatsapp.unknown_grace_secs` it is sent once
//! more. A message is doubled only when the hub died inside a Graph call that Meta accepted and
//! Meta's status did not reach any instance within the grace period. An `unknown` row holds back
//! later rows to its recipient until it is settled, so answers keep their order.

pub mod ratelimit;
pub mod sender;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub use sender::Sender;

use crate::whatsapp::graph::{content, Recipient};
use crate::whatsapp::payload::{DeliveryStatus, StatusUpdate};

/// Why a message is sent (`wa_outbox.purpose`): what the sender's hooks are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The reply to an inbound message (or a notice to a user).
    Answer,
    /// The gate's reply to a message it holds until the device is confirmed.
    Gate,
    /// A pushed alert.
    Alert,
    /// An admin API sign-in code (second factor).
    Login,
    /// The morning digest.
    Digest,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Answer => "answer",
            Purpose::Gate => "gate",
            Purpose::Alert => "alert",
            Purpose::Login => "login",
            Purpose::Digest => "digest",
        }
    }

    fn parse(word: &str) -> Option<Purpose> {
        [
            Purpose::Answer,
            Purpose::Gate,
            Purpose::Alert,
            Purpose::Login,
            Purpose::Digest,
        ]
        .into_iter()
        .find(|p| p.as_str() == word)
    }
}

/// One message to send.
pub struct Outgoing<'a> {
    pub purpose: Purpose,
    /// The inbound wamid this replies to and the part number: a reply is written once per
    /// `(wamid, purpose, part)`, however often its message is processed.
    pub reply_to: Option<(&'a str, i32)>,
    pub to: &'a Recipient,
    /// The Graph API message object ([`content`]); its `type` is the row's kind.
    pub content: Value,
    /// Not before this time (a muted recipient's alert); now when `None`.
    pub not_before: Option<DateTime<Utc>>,
}

/// Writes `message` in the caller's transaction; returns the row's id, or `None` when this
/// reply part exists already. Ring the sender's doorbell ([`Sender::doorbell`]) after the commit.
pub async fn enqueue(
    conn: &mut sqlx::PgConnection,
    message: Outgoing<'_>,
) -> anyhow::Result<Option<i64>> {
    let (wamid, part) = message.reply_to.unzip();
    sqlx::query_scalar(
        "insert into wa_outbox (inbound_wamid, purpose, part_no, wa_id, bsuid, kind, payload,
                                next_try_at)
         values ($1, $2, coalesce($3, 1), $4, $5, $6->>'type', $6,
                 greatest(now(), coalesce($7, now())))
         on conflict (inbound_wamid, purpose, part_no) do nothing
         returning id",
    )
    .bind(wamid)
    .bind(message.purpose.as_str())
    .bind(part)
    .bind(&message.to.wa_id)
    .bind(&message.to.bsuid)
    .bind(&message.content)
    .bind(message.not_before)
    .fetch_optional(&mut *conn)
    .await
    .context("writing to the outbox")
}

/// Writes `text` (split at WhatsApp's limit) as the reply of `purpose` to `wamid`; returns the
/// parts written. A reply that exists already is left as it is.
pub async fn enqueue_reply(
    conn: &mut sqlx::PgConnection,
    wamid: &str,
    purpose: Purpose,
    to: &Recipient,
    text: Option<&str>,
) -> anyhow::Result<usize> {
    let parts = text.map(content::text_parts).unwrap_or_default();
    enqueue_messages(conn, wamid, purpose, to, &parts).await
}

/// Writes `messages` (Graph API message objects) as parts 1, 2, … of the reply of `purpose` to
/// `wamid`; returns how many. A part that exists already is left as it is.
pub async fn enqueue_messages(
    conn: &mut sqlx::PgConnection,
    wamid: &str,
    purpose: Purpose,
    to: &Recipient,
    messages: &[Value],
) -> anyhow::Result<usize> {
    for (n, message) in messages.iter().enumerate() {
        enqueue(
            conn,
            Outgoing {
                purpose,
                reply_to: Some((wamid, n as i32 + 1)),
                to,
                content: message.clone(),
                not_before: None,
            },
        )
        .await?;
    }
    Ok(messages.len())
}

/// Keeps an image to send under `key` (written once, however often it is stored); returns the
/// uuid an image message ([`content::chart`]) names it by.
pub async fn store_image(
    conn: &mut sqlx::PgConnection,
    key: &str,
    png: &[u8],
) -> anyhow::Result<uuid::Uuid> {
    sqlx::query_scalar(
        "insert into wa_media (key, mime, bytes) values ($1, 'image/png', $2)
         on conflict (key) do update set key = excluded.key
         returning uuid",
    )
    .bind(key)
    .bind(png)
    .fetch_one(&mut *conn)
    .await
    .context("storing an image to send")
}

/// Moves outbox rows forward from status webhooks, matched by the wamid Meta returned or by
/// our own `biz_opaque_callback_data` (the outbox uuid). A status never moves a row backwards
/// (a late "delivered" after "read" changes nothing); "failed" records Meta's error. Returns
/// how many rows moved.
pub async fn apply_statuses(
    tx: &mut sqlx::PgConnection,
    statuses: &[StatusUpdate],
) -> anyhow::Result<usize> {
    let mut moved = 0;
    for status in statuses {
        let (word, rank) = match &status.status {
            DeliveryStatus::Sent => ("sent", 1),
            DeliveryStatus::Delivered => ("delivered", 2),
            DeliveryStatus::Read => ("read", 3),
            DeliveryStatus::Failed => ("failed", 4),
            DeliveryStatus::Other(other) => {
                tracing::debug!(status = %other, "status kind not tracked");
                continue;
            }
        };
        let error = status.errors.first();
        let callback = status
            .callback
            .as_deref()
            .and_then(|c| uuid::Uuid::parse_str(c).ok());
        let settled: Vec<bool> = sqlx::query_scalar(
            "with hit as (
                 select id, status as was from wa_outbox
                 where (wamid = $1 or ($7::uuid is not null and uuid = $7))
                   and (case status when 'sent' then 1 when 'delivered' then 2 when 'read' then 3
                                    when 'failed' then 4 else 0 end) < $3
                 for update)
             update wa_outbox o set
                 status = $2,
                 wamid = coalesce(wamid, $1),
                 sent_at = coalesce(sent_at, $4),
                 delivered_at = case when $3 >= 2 and $3 <> 4 then coalesce(delivered_at, $4) else delivered_at end,
                 read_at = case when $3 = 3 then coalesce(read_at, $4) else read_at end,
                 failed_at = case when $3 = 4 then $4 else failed_at end,
                 error_code = case when $3 = 4 then $5 else error_code end,
                 error_text = case when $3 = 4 then $6 else error_text end,
                 lease_until = null
             from hit where o.id = hit.id
             returning hit.was = 'unknown'",
        )
        .bind(&status.wamid)
        .bind(word)
        .bind(rank)
        .bind(status.timestamp)
        .bind(error.map(|e| e.code as i32))
        .bind(error.map(|e| {
            e.details
                .clone()
                .or_else(|| e.message.clone())
                .or_else(|| e.title.clone())
                .unwrap_or_default()
        }))
        .bind(callback)
        .fetch_all(&mut *tx)
        .await
        .context("applying a status update")?;
        let unknown = settled.iter().filter(|was_unknown| **was_unknown).count();
        if unknown > 0 {
            // A send the hub was killed during: Meta's status says it did go out.
            metrics::counter!("outbox_unknown_settled_total", "by" => "status")
                .increment(unknown as u64);
        }
        moved += settled.len();
    }
    Ok(moved)
}
