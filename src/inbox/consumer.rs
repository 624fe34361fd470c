//! Workers: one durable JetStream pull consumer per sender partition, shared by every instance,
//! with at most one message in flight each (`max_ack_pending = 1`). So a sender's messages are
//! handled in order and never concurrently, on any number of instances.
//!
//! Delivery is at-least-once; the effect is exactly-once: the inbox row is locked, its reply is
//! written to the outbox under a unique `(inbound_wamid, part_no)` and the row marked done in one
//! transaction. A redelivery of a done row is acknowledged without doing anything. A failure is
//! retried (NAK with backoff) up to `inbox.max_deliver` deliveries; then the row is marked `dead`
//! and the message terminated — the dead-letter path for poison messages.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::{InboxSettings, StalePolicy};
use crate::inbox::relay::Job;
use crate::inbox::subject;
use crate::startup::AppState;
use crate::texts::{self, Lang};
use crate::whatsapp::graph::{content, split_text, Recipient};

/// The durable consumer of each partition, created when missing.
pub async fn ensure_consumers(
    stream: &jetstream::stream::Stream,
    settings: &InboxSettings,
) -> anyhow::Result<Vec<jetstream::consumer::Consumer<pull::Config>>> {
    let mut consumers = Vec::with_capacity(usize::from(settings.partitions));
    for partition in 0..settings.partitions {
        let name = format!("{}-p{partition}", settings.stream.to_lowercase());
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: subject(&settings.subject_prefix, partition),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(settings.ack_wait_secs),
                    max_deliver: settings.max_deliver,
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("creating JetStream consumer {name}"))?;
        consumers.push(consumer);
    }
    Ok(consumers)
}

/// Pulls and handles messages of one partition until `shutdown`. The message being handled is
/// finished before the loop stops.
pub async fn run(
    state: AppState,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    shutdown: CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot pull from JetStream; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => handle(&state, message).await,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "pull stream hiccup");
                }
                None => break,
            }
        }
    }
}

/// What processing one inbox row came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Reply parts written to the outbox (0 = nothing to say).
    Answered(usize),
    /// Already processed earlier: a redelivery.
    AlreadyDone,
    /// The row does not exist: nothing will ever make this message work.
    Missing,
}

#[tracing::instrument(skip_all, fields(wamid))]
async fn handle(state: &AppState, message: jetstream::Message) {
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let job: Job = match serde_json::from_slice(&message.payload) {
        Ok(job) => job,
        Err(e) => {
            tracing::error!(error = %e, "unreadable job on the inbox stream; terminating it");
            let _ = sqlx::query(
                "insert into wa_dead_letter (source, reason, body) values ('consumer', $1, $2)",
            )
            .bind(format!("unreadable job: {e}"))
            .bind(message.payload.as_ref())
            .execute(&state.db)
            .await;
            finish(&message, AckKind::Term).await;
            return;
        }
    };
    tracing::Span::current().record("wamid", job.wamid.as_str());
    if delivered == 1 {
        // Blue ticks and "typing…" while the answer is prepared; best effort, off the hot path.
        let transport = state.transport.clone();
        let wamid = job.wamid.clone();
        tokio::spawn(async move {
            if let Err(e) = transport.mark_read_typing(&wamid).await {
                tracing::debug!(error = %e, "mark-as-read failed");
            }
        });
    }
    match process(state, &job).await {
        Ok(Outcome::Answered(parts)) => {
            metrics::counter!("inbox_processed_total", "outcome" => "answered").increment(1);
            tracing::debug!(parts, "message processed");
            if parts > 0 {
                state.wake.sender.notify_one();
            }
            finish(&message, AckKind::Ack).await;
        }
        Ok(Outcome::AlreadyDone) => {
            metrics::counter!("inbox_processed_total", "outcome" => "redelivery").increment(1);
            finish(&message, AckKind::Ack).await;
        }
        Ok(Outcome::Missing) => {
            metrics::counter!("inbox_processed_total", "outcome" => "missing").increment(1);
            tracing::error!(id = job.id, "job points at no inbox row; terminating it");
            finish(&message, AckKind::Term).await;
        }
        Err(e) if delivered >= state.settings.inbox.max_deliver => {
            metrics::counter!("inbox_processed_total", "outcome" => "dead").increment(1);
            tracing::error!(error = %format!("{e:#}"), delivered, "poison message: marked dead");
            let _ = sqlx::query(
                "update wa_inbox set status = 'dead', attempts = attempts + 1, last_error = $2
                 where id = $1 and status <> 'done'",
            )
            .bind(job.id)
            .bind(format!("{e:#}"))
            .execute(&state.db)
            .await;
            finish(&message, AckKind::Term).await;
        }
        Err(e) => {
            metrics::counter!("inbox_processed_total", "outcome" => "retry").increment(1);
            tracing::warn!(error = %format!("{e:#}"), delivered, "processing failed; will retry");
            let _ = sqlx::query(
                "update wa_inbox set attempts = attempts + 1, last_error = $2 where id = $1",
            )
            .bind(job.id)
            .bind(format!("{e:#}"))
            .execute(&state.db)
            .await;
            // The NAKed message stays pending, so the partition waits for it: order is kept.
            let delay = Duration::from_millis(250 * 2u64.pow(delivered.clamp(1, 8) as u32 - 1));
            finish(&message, AckKind::Nak(Some(delay))).await;
        }
    }
}

async fn finish(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        // Not fatal: JetStream redelivers after ack_wait and processing is idempotent.
        tracing::warn!(error = %e, "cannot acknowledge to JetStream");
    }
}

#[derive(sqlx::FromRow)]
struct InboxRow {
    wamid: String,
    wa_id: Option<String>,
    bsuid: Option<String>,
    body: Option<String>,
    msg_type: String,
    sent_at: DateTime<Utc>,
    status: String,
}

/// Locks the row, decides the reply, writes it to the outbox and marks the row done: all in one
/// transaction, so a crash anywhere leaves either nothing or everything.
async fn process(state: &AppState, job: &Job) -> anyhow::Result<Outcome> {
    let mut tx = state
        .db
        .begin()
        .await
        .context("starting processing transaction")?;
    let row: Option<InboxRow> = sqlx::query_as(
        "select wamid, wa_id, bsuid, body, msg_type, sent_at, status from wa_inbox
         where id = $1 for update",
    )
    .bind(job.id)
    .fetch_optional(&mut *tx)
    .await
    .context("loading inbox row")?;
    let Some(row) = row else {
        return Ok(Outcome::Missing);
    };
    if row.status == "done" || row.status == "dead" {
        return Ok(Outcome::AlreadyDone);
    }

    let reply = answer(state, &row, Utc::now());
    let to = Recipient {
        wa_id: row.wa_id.clone(),
        bsuid: row.bsuid.clone(),
    };
    let parts: Vec<Value> = reply
        .map(|text| split_text(&text).iter().map(|p| content::text(p)).collect())
        .unwrap_or_default();
    for (n, part) in parts.iter().enumerate() {
        sqlx::query(
            "insert into wa_outbox (inbound_wamid, part_no, wa_id, bsuid, kind, payload)
             values ($1, $2, $3, $4, 'text', $5)
             on conflict (inbound_wamid, part_no) do nothing",
        )
        .bind(&row.wamid)
        .bind(n as i32 + 1)
        .bind(&to.wa_id)
        .bind(&to.bsuid)
        .bind(part)
        .execute(&mut *tx)
        .await
        .context("writing the reply to the outbox")?;
    }
    sqlx::query(
        "update wa_inbox set status = 'done', done_at = now(), attempts = attempts + 1,
             last_error = null
         where id = $1",
    )
    .bind(job.id)
    .execute(&mut *tx)
    .await
    .context("marking the row done")?;
    tx.commit().await.context("committing processing")?;
    Ok(Outcome::Answered(parts.len()))
}

/// The interim brain: a fixed acknowledgement for what a person said, a short note for what the
/// hub cannot read, nothing for reactions and system notices, and the stale policy for a
/// backlog. Replaced by the real brain in a later stage of the pipeline.
fn answer(state: &AppState, row: &InboxRow, now: DateTime<Utc>) -> Option<String> {
    let settings = &state.settings.whatsapp;
    let lang = row.body.as_deref().map(Lang::detect).unwrap_or(Lang::Id);
    let age = now.signed_duration_since(row.sent_at);
    if age.num_seconds() > settings.stale_after_secs as i64 {
        metrics::counter!("inbox_stale_total").increment(1);
        return match settings.stale_policy {
            StalePolicy::Ignore => None,
            StalePolicy::Notice => {
                let local = row.sent_at.with_timezone(&state.settings.app.timezone);
                Some(texts::stale_notice(
                    lang,
                    &local.format("%d-%m-%Y %H:%M").to_string(),
                ))
            }
        };
    }
    match (row.body.as_deref(), row.msg_type.as_str()) {
        (Some(text), _) if !text.trim().is_empty() => Some(texts::received(lang).to_owned()),
        (_, "reaction" | "system" | "unsupported") => None,
        _ => Some(texts::text_only(lang).to_owned()),
    }
}
