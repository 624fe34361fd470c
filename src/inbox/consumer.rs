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
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::brain;
use crate::config::{InboxSettings, StalePolicy};
use crate::identity::gate::{self, Admission, Inbound};
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
    let state = &state;
    crate::queue::pull(&consumer, &shutdown, "inbox", |message| async move {
        handle(state, message).await
    })
    .await;
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
    id: i64,
    wamid: String,
    sender_key: String,
    wa_id: Option<String>,
    bsuid: Option<String>,
    identity_hash: Option<String>,
    body: Option<String>,
    msg_type: String,
    payload: Value,
    sent_at: DateTime<Utc>,
    status: String,
    relay_gen: i32,
}

async fn load(tx: &mut sqlx::PgConnection, id: i64) -> anyhow::Result<Option<InboxRow>> {
    sqlx::query_as(
        "select id, wamid, sender_key, wa_id, bsuid, identity_hash, body, msg_type, payload,
                sent_at, status, relay_gen
         from wa_inbox where id = $1 for update",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .context("loading inbox row")
}

/// Three steps, each safe to repeat after a crash:
/// 1. in one transaction: lock the row, pass it through the gate and record what the gate
///    decided (refusal, held message, code check — with their replies) — done unless admitted;
/// 2. without a transaction: the brain answers an admitted question (database reads, maybe
///    the LLM), so no connection or lock is held while the model thinks;
/// 3. in one transaction: lock the row again and, unless another delivery finished it meanwhile,
///    write the answer to the outbox, the exchange to `ai_chat`, and mark the row done.
async fn process(state: &AppState, job: &Job) -> anyhow::Result<Outcome> {
    let mut tx = state
        .db
        .begin()
        .await
        .context("starting processing transaction")?;
    let Some(row) = load(&mut tx, job.id).await? else {
        return Ok(Outcome::Missing);
    };
    if matches!(row.status.as_str(), "done" | "dead" | "held") {
        return Ok(Outcome::AlreadyDone);
    }
    let lang = row.body.as_deref().map(Lang::detect).unwrap_or(Lang::Id);
    let inbound = Inbound {
        wamid: &row.wamid,
        sender_key: &row.sender_key,
        wa_id: row.wa_id.as_deref(),
        bsuid: row.bsuid.as_deref(),
        identity_hash: row.identity_hash.as_deref(),
        msg_type: &row.msg_type,
        body: row.body.as_deref(),
        payload: &row.payload,
        lang,
    };
    let to = Recipient {
        wa_id: row.wa_id.clone(),
        bsuid: row.bsuid.clone(),
    };
    let caller = match gate::admit(&mut tx, state, &inbound).await? {
        Admission::Admitted(caller) => caller,
        Admission::Refused(reply) => {
            let parts = write_reply(&mut tx, &row.wamid, "answer", &to, reply.as_deref()).await?;
            mark_done(tx, row.id).await?;
            return Ok(Outcome::Answered(parts));
        }
        Admission::Noted => {
            mark_done(tx, row.id).await?;
            return Ok(Outcome::Answered(0));
        }
        Admission::Held(reply) => {
            // The row stays 'held' until the code comes.
            let parts = write_reply(&mut tx, &row.wamid, "gate", &to, Some(&reply)).await?;
            tx.commit().await.context("committing a held message")?;
            return Ok(Outcome::Answered(parts));
        }
        Admission::Code { reply, released } => {
            let parts = write_reply(&mut tx, &row.wamid, "answer", &to, Some(&reply)).await?;
            mark_done(tx, row.id).await?;
            if released > 0 {
                state.wake.relay.notify_one();
            }
            return Ok(Outcome::Answered(parts));
        }
    };
    // A released message was held on purpose: only a true backlog gets the stale policy.
    if row.relay_gen == 0 {
        if let Some(notice) = stale(state, &row, lang, Utc::now()) {
            let parts = write_reply(&mut tx, &row.wamid, "answer", &to, notice.as_deref()).await?;
            mark_done(tx, row.id).await?;
            return Ok(Outcome::Answered(parts));
        }
    }
    tx.commit().await.context("committing the gate")?;

    let question = brain::Question {
        wamid: &row.wamid,
        msg_type: &row.msg_type,
        text: row.body.as_deref(),
        // The id of a reply button of ours (the hub sends no template quick replies).
        button: row.payload["interactive"]["button_reply"]["id"].as_str(),
        lang,
        phone: row.wa_id.as_deref(),
    };
    let answer = brain::answer(state, &caller, &question).await;

    let mut tx = state
        .db
        .begin()
        .await
        .context("starting the answer transaction")?;
    let Some(again) = load(&mut tx, job.id).await? else {
        return Ok(Outcome::Missing);
    };
    if again.status == "done" || again.status == "dead" {
        return Ok(Outcome::AlreadyDone);
    }
    let parts = write_reply(&mut tx, &row.wamid, "answer", &to, answer.text.as_deref()).await?;
    brain::record(&mut tx, &caller, &question, &answer).await?;
    mark_done(tx, row.id).await?;
    Ok(Outcome::Answered(parts))
}

/// Writes `text` (split at WhatsApp's limit) as the reply of `purpose` to `wamid`; returns the
/// parts written. A reply that exists already is left as it is.
async fn write_reply(
    tx: &mut sqlx::PgConnection,
    wamid: &str,
    purpose: &str,
    to: &Recipient,
    text: Option<&str>,
) -> anyhow::Result<usize> {
    let Some(text) = text else { return Ok(0) };
    let parts = split_text(text);
    for (n, part) in parts.iter().enumerate() {
        sqlx::query(
            "insert into wa_outbox (inbound_wamid, purpose, part_no, wa_id, bsuid, kind, payload)
             values ($1, $2, $3, $4, $5, 'text', $6)
             on conflict (inbound_wamid, purpose, part_no) do nothing",
        )
        .bind(wamid)
        .bind(purpose)
        .bind(n as i32 + 1)
        .bind(&to.wa_id)
        .bind(&to.bsuid)
        .bind(content::text(part))
        .execute(&mut *tx)
        .await
        .context("writing a reply to the outbox")?;
    }
    Ok(parts.len())
}

/// Marks the row done and commits.
async fn mark_done(mut tx: sqlx::Transaction<'_, sqlx::Postgres>, id: i64) -> anyhow::Result<()> {
    sqlx::query(
        "update wa_inbox set status = 'done', done_at = now(), attempts = attempts + 1,
             last_error = null
         where id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .context("marking the row done")?;
    tx.commit().await.context("committing processing")
}

/// The stale policy for a message processed long after it was sent (a backlog replayed after
/// an outage): `Some(Some(notice))`, `Some(None)` for silence, `None` when it is fresh.
fn stale(
    state: &AppState,
    row: &InboxRow,
    lang: Lang,
    now: DateTime<Utc>,
) -> Option<Option<String>> {
    let settings = &state.settings.whatsapp;
    let age = now.signed_duration_since(row.sent_at);
    if age.num_seconds() <= settings.stale_after_secs as i64 {
        return None;
    }
    metrics::counter!("inbox_stale_total").increment(1);
    Some(match settings.stale_policy {
        StalePolicy::Ignore => None,
        StalePolicy::Notice => {
            let local = row.sent_at.with_timezone(&state.settings.app.timezone);
            Some(texts::stale_notice(
                lang,
                &local.format("%d-%m-%Y %H:%M").to_string(),
            ))
        }
    })
}
