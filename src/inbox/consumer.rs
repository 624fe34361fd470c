//! Workers: one durable JetStream pull consumer per sender partition, shared by every instance,
//! with at most one message in flight each (`max_ack_pending = 1`). So a sender's messages are
//! handled in order and never concurrently, on any number of instances.
//!
//! A tapped alert button goes to the alert acknowledgement; anything else an admitted sender
//! says goes to the brain.
//!
//! Delivery is at-least-once; the effect is exactly-once: the inbox row is locked, its reply is
//! written to the outbox under a unique `(inbound_wamid, part_no)` and the row marked done in one
//! transaction. A redelivery of a done row is acknowledged without doing anything. A failure is
//! retried (NAK with backoff) up to `inbox.max_deliver` deliveries; then the row is marked `dead`
//! and the message terminated — the dead-letter path for poison messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull, AckKind};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::alerts::ack;
use crate::brain::{self, intent::Intent, Brain};
use crate::config::{InboxSettings, StalePolicy};
use crate::domain::Caller;
use crate::identity::gate::{Admission, Gate, Inbound};
use crate::inbox::relay::Job;
use crate::inbox::subject;
use crate::outbox::{enqueue_reply, Purpose};
use crate::queue::{Doorbell, Ensure};
use crate::texts::{self, Lang};
use crate::whatsapp::graph::{content, Recipient, Transport};

/// The durable consumer of each partition, created when missing.
pub async fn ensure_consumers(
    stream: &jetstream::stream::Stream,
    settings: &InboxSettings,
) -> anyhow::Result<Vec<jetstream::consumer::Consumer<pull::Config>>> {
    let mut consumers = Vec::with_capacity(usize::from(settings.partitions));
    for partition in 0..settings.partitions {
        consumers.push(ensure_consumer(stream, settings, partition).await?);
    }
    Ok(consumers)
}

/// The durable consumer of `partition`, created when missing.
async fn ensure_consumer(
    stream: &jetstream::stream::Stream,
    settings: &InboxSettings,
    partition: u16,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let name = format!("{}-p{partition}", settings.stream.to_lowercase());
    stream
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
        .with_context(|| format!("creating JetStream consumer {name}"))
}

/// What sets up the stream and the consumer of `partition` again (see [`crate::queue::Ensure`]).
pub fn ensure_again(js: jetstream::Context, settings: InboxSettings, partition: u16) -> Ensure {
    Arc::new(move || {
        let (js, settings) = (js.clone(), settings.clone());
        Box::pin(async move {
            let stream = crate::inbox::relay::ensure_stream(&js, &settings).await?;
            ensure_consumer(&stream, &settings, partition).await
        })
    })
}

/// Earlier open messages of the same sender processed before a job, at most.
const EARLIER_FIRST: i64 = 5;

/// What the consumer takes from the settings.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `inbox.max_deliver`: deliveries before a failing message is marked dead.
    pub max_deliver: i64,
    /// `inbox.max_per_sender_per_minute`: questions of one sender answered per minute.
    pub max_per_sender_per_minute: i64,
    /// `whatsapp.stale_after_secs`: age after which an inbound message is stale.
    pub stale_after_secs: u64,
    /// `whatsapp.stale_policy`: what a stale message gets.
    pub stale_policy: StalePolicy,
    /// `app.timezone`: the zone of the time named in a stale notice and an acknowledgement.
    pub timezone: chrono_tz::Tz,
}

/// The consuming stage: gate, then brain (or alert acknowledgement), then the reply. Cheap to
/// clone; one clone runs per partition.
#[derive(Clone)]
pub struct Consumer {
    db: PgPool,
    gate: Gate,
    brain: Brain,
    /// For the blue ticks and "typing…" on a first delivery.
    transport: Transport,
    settings: std::sync::Arc<ConsumerSettings>,
    /// The sender's, rung after replies were written.
    sender: Doorbell,
    /// The relay's, rung after a right code released held messages.
    relay: Doorbell,
}

impl Consumer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        db: PgPool,
        gate: Gate,
        brain: Brain,
        transport: Transport,
        settings: ConsumerSettings,
        sender: Doorbell,
        relay: Doorbell,
    ) -> Self {
        Self {
            db,
            gate,
            brain,
            transport,
            settings: std::sync::Arc::new(settings),
            sender,
            relay,
        }
    }

    /// Pulls and handles messages of one partition until `shutdown`. The message being handled
    /// is finished before the loop stops.
    pub async fn run(
        self,
        consumer: jetstream::consumer::Consumer<pull::Config>,
        ensure: Ensure,
        shutdown: CancellationToken,
    ) {
        let this = &self;
        crate::queue::pull(consumer, ensure, &shutdown, "inbox", |message| async move {
            this.handle(message).await
        })
        .await;
    }
}
/// What processing one inbox row came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reply parts written to the outbox (0 = nothing to say).
    Answered(usize),
    /// Already processed earlier: a redelivery.
    AlreadyDone,
    /// The row does not exist: nothing will ever make this message work.
    Missing,
}

impl Consumer {
    #[tracing::instrument(skip_all, fields(wamid))]
    async fn handle(&self, message: jetstream::Message) {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let job: Job = match serde_json::from_slice(&message.payload) {
            Ok(job) => job,
            Err(e) => {
                tracing::error!(error = %e, "unreadable job on the inbox stream; terminating it");
                let reason = format!("unreadable job: {e}");
                let _ = crate::dead_letter::keep(
                    &self.db,
                    "consumer",
                    &reason,
                    message.payload.as_ref(),
                    None,
                )
                .await;
                finish(&message, AckKind::Term).await;
                return;
            }
        };
        tracing::Span::current().record("wamid", job.wamid.as_str());
        if delivered > 1 {
            metrics::counter!("inbox_redeliveries_total").increment(1);
        }
        if delivered == 1 {
            // Blue ticks and "typing…" while the answer is prepared; best effort, off the hot path.
            let transport = self.transport.clone();
            let wamid = job.wamid.clone();
            tokio::spawn(async move {
                if let Err(e) = transport.mark_read_typing(&wamid).await {
                    tracing::debug!(error = %e, "mark-as-read failed");
                }
            });
        }
        match self.process_in_order(&job).await {
            Ok(Outcome::Answered(parts)) => {
                metrics::counter!("inbox_processed_total", "outcome" => "answered").increment(1);
                tracing::debug!(parts, "message processed");
                if parts > 0 {
                    self.sender.ring();
                }
                finish(&message, AckKind::Ack).await;
            }
            Ok(Outcome::AlreadyDone) => {
                metrics::counter!("inbox_processed_total", "outcome" => "redelivery").increment(1);
                finish(&message, AckKind::Ack).await;
            }
            Ok(Outcome::Missing) => {
                metrics::counter!("inbox_processed_total", "outcome" => "missing").increment(1);
                tracing::error!(
                    id = job.id,
                    "job points at no inbox row of this deployment; terminating it"
                );
                finish(&message, AckKind::Term).await;
            }
            Err(e) if delivered >= self.settings.max_deliver => {
                metrics::counter!("inbox_processed_total", "outcome" => "dead").increment(1);
                tracing::error!(error = %format!("{e:#}"), delivered, "poison message: marked dead");
                let _ = sqlx::query(
                    "update wa_inbox set status = 'dead', attempts = attempts + 1, last_error = $2
                 where id = $1 and status <> 'done'",
                )
                .bind(job.id)
                .bind(format!("{e:#}"))
                .execute(&self.db)
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
                .execute(&self.db)
                .await;
                // The NAKed message stays pending, so the partition waits for it: order is kept.
                let delay = Duration::from_millis(250 * 2u64.pow(delivered.clamp(1, 8) as u32 - 1));
                finish(&message, AckKind::Nak(Some(delay))).await;
            }
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
impl Consumer {
    /// Processes `job` after the sender's earlier messages that are still open (at most
    /// [`EARLIER_FIRST`]): their jobs were lost on JetStream (and wait for the relay's sweep), or
    /// were committed late. So a sender's answers keep their order even then; each earlier row's
    /// own job, when it comes, finds it done. An earlier row that fails is left to its own job
    /// (and its poison path), so it cannot take this one down with it.
    async fn process_in_order(&self, job: &Job) -> anyhow::Result<Outcome> {
        let earlier: Vec<(i64, String)> = sqlx::query_as(
            "select e.id, e.wamid from wa_inbox j
             join wa_inbox e on e.sender_key = j.sender_key and e.id < j.id
             where j.id = $1 and j.wamid = $2 and e.status in ('pending', 'relayed')
             order by e.id limit $3",
        )
        .bind(job.id)
        .bind(&job.wamid)
        .bind(EARLIER_FIRST)
        .fetch_all(&self.db)
        .await
        .context("looking for the sender's earlier open messages")?;
        for (id, wamid) in earlier {
            match self.process(&Job { id, wamid }).await {
                Ok(Outcome::Answered(parts)) => {
                    metrics::counter!("inbox_processed_total", "outcome" => "earlier_first")
                        .increment(1);
                    if parts > 0 {
                        self.sender.ring();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), id, "an earlier open message failed; left to its own job");
                    break;
                }
            }
        }
        self.process(job).await
    }

    /// Processes the inbox row `job` points at (see above); safe to call again for the same job,
    /// from any instance: a finished row is left alone.
    pub async fn process(&self, job: &Job) -> anyhow::Result<Outcome> {
        let mut tx = self
            .db
            .begin()
            .await
            .context("starting processing transaction")?;
        // A job must name its row's message too: one that does not (another database's job on
        // a stream shared by mistake) is not this deployment's.
        let Some(row) = load(&mut tx, job.id)
            .await?
            .filter(|row| row.wamid == job.wamid)
        else {
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
        let caller = match self.gate.admit(&mut tx, &inbound).await? {
            Admission::Admitted(caller) => caller,
            Admission::Refused(reply) | Admission::Dropped(reply) => {
                let parts =
                    enqueue_reply(&mut tx, &row.wamid, Purpose::Answer, &to, reply.as_deref())
                        .await?;
                mark_done(tx, row.id).await?;
                return Ok(Outcome::Answered(parts));
            }
            Admission::Noted => {
                mark_done(tx, row.id).await?;
                return Ok(Outcome::Answered(0));
            }
            Admission::Held(reply) => {
                // The row stays 'held' until the code comes.
                let parts =
                    enqueue_reply(&mut tx, &row.wamid, Purpose::Gate, &to, Some(&reply)).await?;
                tx.commit().await.context("committing a held message")?;
                self.gate.ring_mailer();
                return Ok(Outcome::Answered(parts));
            }
            Admission::Code { reply, released } => {
                let parts =
                    enqueue_reply(&mut tx, &row.wamid, Purpose::Answer, &to, Some(&reply)).await?;
                mark_done(tx, row.id).await?;
                self.gate.ring_mailer();
                if released > 0 {
                    self.relay.ring();
                }
                return Ok(Outcome::Answered(parts));
            }
        };
        // A released message was held on purpose: only a true backlog gets the stale policy.
        if row.relay_gen == 0 {
            if let Some(notice) = stale(&self.settings, &row, lang, Utc::now()) {
                let parts =
                    enqueue_reply(&mut tx, &row.wamid, Purpose::Answer, &to, notice.as_deref())
                        .await?;
                mark_done(tx, row.id).await?;
                return Ok(Outcome::Answered(parts));
            }
        }
        // A flood from one sender: answered up to the allowance, told once, then left unanswered.
        let earlier: i64 = sqlx::query_scalar(
            "select count(*) from wa_inbox
         where sender_key = $1 and id < $2 and msg_type <> 'system'
           and sent_at > $3 - interval '1 minute' and sent_at <= $3",
        )
        .bind(&row.sender_key)
        .bind(row.id)
        .bind(row.sent_at)
        .fetch_one(&mut *tx)
        .await
        .context("counting the sender's recent messages")?;
        let allowance = self.settings.max_per_sender_per_minute;
        if earlier >= allowance {
            metrics::counter!("inbox_rate_limited_total").increment(1);
            let notice = (earlier == allowance).then(|| texts::slow_down(lang));
            let parts = enqueue_reply(&mut tx, &row.wamid, Purpose::Answer, &to, notice).await?;
            mark_done(tx, row.id).await?;
            return Ok(Outcome::Answered(parts));
        }
        tx.commit().await.context("committing the gate")?;

        // The id of a reply button or list row of ours (the hub sends no template quick replies).
        let button = row.payload["interactive"]["button_reply"]["id"]
            .as_str()
            .or_else(|| row.payload["interactive"]["list_reply"]["id"].as_str());
        let question = brain::Question {
            wamid: &row.wamid,
            msg_type: &row.msg_type,
            text: row.body.as_deref(),
            lang,
            phone: row.wa_id.as_deref(),
            button,
        };
        let answer = match button.and_then(ack::parse_button) {
            Some(alert) => self.acknowledge(&caller, alert).await,
            None => self.brain.answer(&caller, &question).await,
        };

        let mut tx = self
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
        // Buttons or a list: each message one part; a chart goes first, its text after it.
        let mut messages = answer.messages.clone();
        if messages.is_empty() {
            if let Some(chart) = &answer.chart {
                let key = format!("chart:{}", row.wamid);
                let media = crate::outbox::store_image(&mut tx, &key, &chart.png).await?;
                messages.push(content::chart(media, &chart.caption));
            }
            messages.extend(
                answer
                    .text
                    .as_deref()
                    .map(content::text_parts)
                    .unwrap_or_default(),
            );
        }
        let parts =
            crate::outbox::enqueue_messages(&mut tx, &row.wamid, Purpose::Answer, &to, &messages)
                .await?;
        brain::record(&mut tx, &caller, &question, &answer).await?;
        mark_done(tx, row.id).await?;
        metrics::counter!("brain_replies_total", "outcome" => answer.outcome.as_str()).increment(1);
        Ok(Outcome::Answered(parts))
    }

    /// A tap on a pushed alert's button: answered in the user's language, not the label's.
    async fn acknowledge(&self, caller: &Caller, alert: uuid::Uuid) -> brain::Answer {
        let started = Instant::now();
        let lang = caller.lang;
        let (text, outcome) =
            match ack::acknowledge(&self.db, caller, alert, lang, self.settings.timezone).await {
                Ok(reply) if reply.refused => {
                    metrics::counter!("brain_denied_total").increment(1);
                    (reply.text, brain::Outcome::Denied)
                }
                Ok(reply) => (reply.text, brain::Outcome::Fallback),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot acknowledge an alert");
                    (
                        texts::data_unavailable(lang).to_owned(),
                        brain::Outcome::Error,
                    )
                }
            };
        brain::Answer {
            text: Some(text),
            messages: Vec::new(),
            chart: None,
            intent: Some(Intent::Alerts),
            outcome,
            tokens: 0,
            latency_ms: brain::elapsed_ms(started),
        }
    }
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
    settings: &ConsumerSettings,
    row: &InboxRow,
    lang: Lang,
    now: DateTime<Utc>,
) -> Option<Option<String>> {
    let age = now.signed_duration_since(row.sent_at);
    if age.num_seconds() <= settings.stale_after_secs as i64 {
        return None;
    }
    metrics::counter!("inbox_stale_total").increment(1);
    Some(match settings.stale_policy {
        StalePolicy::Ignore => None,
        StalePolicy::Notice => {
            let local = row.sent_at.with_timezone(&settings.timezone);
            Some(texts::stale_notice(
                lang,
                &local.format("%d-%m-%Y %H:%M").to_string(),
            ))
        }
    })
}
