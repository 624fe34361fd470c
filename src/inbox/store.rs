//! Writing webhook deliveries to PostgreSQL: new messages, the senders' 24-hour windows and
//! outbox status updates. Duplicates (by wamid) add nothing.
//!
//! Group commit: concurrent deliveries are gathered by a few committer tasks into one
//! transaction each, so a burst costs one fsync per batch instead of one per delivery. Every
//! caller still waits for *its* commit before answering Meta. If a batch fails, its deliveries
//! are retried one by one, so one bad delivery cannot fail the others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::queue::Doorbell;
use crate::whatsapp::payload::{Delivery, InboundMessage};

/// Deliveries waiting for a committer; beyond this, callers wait to enqueue (back-pressure).
const QUEUE: usize = 4096;

/// Why a delivery was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The database refused the data itself (a value too long, …): retrying cannot help, so
    /// the caller keeps the body as a dead letter.
    #[error("delivery refused by the database: {0}")]
    Invalid(String),
    /// The database is unavailable or failed: Meta should retry later.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

struct Pending {
    delivery: Delivery,
    reply: oneshot::Sender<Result<Ingested, IngestError>>,
}

/// Handle to the committer tasks. Cheap to clone; the tasks end when the last handle is gone.
#[derive(Clone)]
pub struct Ingestor {
    /// Deliveries on their way to a committer.
    queue: mpsc::Sender<Pending>,
    /// The relay's doorbell, rung when new messages are committed.
    relay: Doorbell,
}

impl Ingestor {
    /// Starts `committers` tasks that each commit up to `max_batch` deliveries at a time.
    pub fn start(db: PgPool, committers: usize, max_batch: usize) -> Self {
        let (queue, receiver) = mpsc::channel::<Pending>(QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..committers.max(1) {
            let receiver = receiver.clone();
            let db = db.clone();
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::with_capacity(max_batch);
                    {
                        let mut rx = receiver.lock().await;
                        match rx.recv().await {
                            Some(first) => batch.push(first),
                            None => return,
                        }
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                    }
                    commit_batch(&db, batch).await;
                }
            });
        }
        Self {
            queue,
            relay: Doorbell::default(),
        }
    }

    /// What the relay waits on: rung whenever new inbox rows are committed (or released).
    pub fn relay_doorbell(&self) -> Doorbell {
        self.relay.clone()
    }

    /// Stores `delivery`; returns once it is committed (and the relay was told of new rows).
    pub async fn ingest(&self, delivery: Delivery) -> Result<Ingested, IngestError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { delivery, reply })
            .await
            .map_err(|_| anyhow::anyhow!("ingest committers have stopped"))?;
        let ingested = answer
            .await
            .map_err(|_| anyhow::anyhow!("ingest committer dropped the delivery"))??;
        if ingested.new > 0 {
            self.relay.ring();
        }
        Ok(ingested)
    }
}

async fn commit_batch(db: &PgPool, batch: Vec<Pending>) {
    metrics::histogram!("inbox_commit_batch_size").record(batch.len() as f64);
    let deliveries: Vec<&Delivery> = batch.iter().map(|p| &p.delivery).collect();
    match ingest(db, &deliveries).await {
        Ok(results) => {
            for (pending, result) in batch.into_iter().zip(results) {
                let _ = pending.reply.send(Ok(result));
            }
        }
        Err(e) if batch.len() == 1 => {
            let pending = batch.into_iter().next().expect("one");
            let _ = pending.reply.send(Err(classify(e)));
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), size = batch.len(), "batch failed; storing one by one");
            for pending in batch {
                let result = ingest(db, &[&pending.delivery])
                    .await
                    .map(|mut r| r.remove(0))
                    .map_err(classify);
                let _ = pending.reply.send(result);
            }
        }
    }
}

/// Data exceptions (SQLSTATE class 22) and check violations (23514) are the delivery's fault.
fn classify(e: anyhow::Error) -> IngestError {
    let data_fault = e
        .chain()
        .filter_map(|c| c.downcast_ref::<sqlx::Error>())
        .filter_map(|c| c.as_database_error())
        .any(|d| {
            d.code()
                .is_some_and(|c| c.starts_with("22") || c == "23514")
        });
    if data_fault {
        IngestError::Invalid(format!("{e:#}"))
    } else {
        IngestError::Unavailable(e)
    }
}

/// What one delivery changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Messages stored for the first time.
    pub new: usize,
    /// Messages already in the inbox (Meta retried or duplicated them).
    pub duplicates: usize,
    /// Outbox rows whose status moved.
    pub statuses: usize,
}

/// The key that orders a sender's messages: the WhatsApp id, else the BSUID.
pub fn sender_key(msg: &InboundMessage) -> Option<&str> {
    msg.from.as_deref().or(msg.from_user_id.as_deref())
}

/// Stores parsed deliveries in one transaction and commits before returning, so a 200 after
/// `Ok` is safe. Returns what each delivery changed, in order.
#[tracing::instrument(skip_all, fields(deliveries = deliveries.len()))]
pub async fn ingest(db: &PgPool, deliveries: &[&Delivery]) -> anyhow::Result<Vec<Ingested>> {
    let mut results: Vec<Ingested> = Vec::with_capacity(deliveries.len());
    let mut tx = db.begin().await.context("starting ingest transaction")?;

    let messages: Vec<&InboundMessage> = deliveries
        .iter()
        .flat_map(|d| d.messages.iter())
        .filter(|m| sender_key(m).is_some())
        .collect();
    let total: usize = deliveries.iter().map(|d| d.messages.len()).sum();
    if messages.len() < total {
        tracing::warn!(
            dropped = total - messages.len(),
            "messages without any sender id were not stored"
        );
    }
    let mut inserted: HashSet<String> = HashSet::new();
    if !messages.is_empty() {
        let col = |f: fn(&InboundMessage) -> Option<String>| -> Vec<Option<String>> {
            messages.iter().map(|m| f(m)).collect()
        };
        let new_wamids: Vec<String> = sqlx::query_scalar(
            "insert into wa_inbox
                (wamid, phone_nr_id, wa_id, bsuid, sender_key, profile_name, identity_hash,
                 msg_type, body, payload, sent_at)
             select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::text[], $9::text[], $10::jsonb[],
                                  $11::timestamptz[])
             on conflict (wamid) do nothing
             returning wamid",
        )
        .bind(col(|m| Some(m.wamid.clone())))
        .bind(col(|m| Some(m.phone_number_id.clone())))
        .bind(col(|m| m.from.clone()))
        .bind(col(|m| m.from_user_id.clone()))
        .bind(col(|m| sender_key(m).map(str::to_owned)))
        .bind(col(|m| m.profile_name.clone()))
        .bind(col(|m| m.identity_key_hash.clone()))
        .bind(col(|m| Some(m.kind.type_name().to_owned())))
        .bind(col(|m| m.kind.text().map(str::to_owned)))
        .bind(messages.iter().map(|m| m.raw.clone()).collect::<Vec<_>>())
        .bind(messages.iter().map(|m| m.timestamp).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await
        .context("inserting inbox rows")?;
        inserted.extend(new_wamids);
        touch_windows(&mut tx, &messages).await?;
    }

    for delivery in deliveries {
        let mut out = Ingested::default();
        for m in delivery.messages.iter().filter(|m| sender_key(m).is_some()) {
            // The first delivery carrying a new wamid gets the credit; any other is a duplicate.
            if inserted.remove(&m.wamid) {
                out.new += 1;
            } else {
                out.duplicates += 1;
            }
        }
        out.statuses = crate::outbox::apply_statuses(&mut tx, &delivery.statuses).await?;
        results.push(out);
    }
    tx.commit().await.context("committing ingest")?;
    Ok(results)
}

/// Opens or extends each sender's 24-hour window (latest message time wins; idempotent).
async fn touch_windows(
    tx: &mut sqlx::PgConnection,
    messages: &[&InboundMessage],
) -> anyhow::Result<()> {
    // One row per sender: ON CONFLICT cannot touch the same row twice in one statement.
    let mut latest: HashMap<&str, &InboundMessage> = HashMap::new();
    for m in messages {
        let key = sender_key(m).expect("filtered above");
        let keep = latest
            .get(key)
            .is_none_or(|seen| seen.timestamp < m.timestamp);
        if keep {
            latest.insert(key, m);
        }
    }
    let mut rows: Vec<(&str, &InboundMessage)> = latest.into_iter().collect();
    // A fixed lock order keeps concurrent deliveries from deadlocking on each other.
    rows.sort_by_key(|(k, _)| *k);
    sqlx::query(
        "insert into wa_contact (sender_key, wa_id, bsuid, profile_name, last_in_at)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
         on conflict (sender_key) do update set
             wa_id = coalesce(excluded.wa_id, wa_contact.wa_id),
             bsuid = coalesce(excluded.bsuid, wa_contact.bsuid),
             profile_name = coalesce(excluded.profile_name, wa_contact.profile_name),
             last_in_at = greatest(wa_contact.last_in_at, excluded.last_in_at)",
    )
    .bind(rows.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>())
    .bind(rows.iter().map(|(_, m)| m.from.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|(_, m)| m.from_user_id.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(_, m)| m.profile_name.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(_, m)| m.timestamp)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .execute(&mut *tx)
    .await
    .context("updating service windows")?;
    Ok(())
}
