//! The relay: hands committed inbox rows to JetStream (`Nats-Msg-Id` = wamid, so a republish
//! after a crash is deduplicated) and marks them relayed. Only one relay runs at a time across
//! all instances (a transaction-level advisory lock), which keeps each sender's messages in
//! commit order on the stream. When NATS is down, rows simply wait and go out when it returns.
//! PostgreSQL, not JetStream, is the record: a relayed row whose job JetStream lost is found by
//! [`Relay::rerelay_lost`] and relayed again.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::InboxSettings;
use crate::inbox::{partition_of, subject};
use crate::queue::Doorbell;

/// Advisory lock key of the relay ("WAIN").
const RELAY_LOCK: i64 = 0x5741_494e;

/// What travels on JetStream: a pointer to the row; PostgreSQL holds the message itself.
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    /// `wa_inbox.id`.
    pub id: i64,
    /// The inbound wamid, for logs and dedupe.
    pub wamid: String,
}

/// Creates the inbox stream (a work queue, see [`crate::queue`]) over every partition's subject.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &InboxSettings,
) -> anyhow::Result<jetstream::stream::Stream> {
    crate::queue::ensure_stream(
        js,
        &settings.stream,
        vec![format!("{}.*", settings.subject_prefix)],
    )
    .await
}

/// The relay stage. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    db: PgPool,
    js: jetstream::Context,
    settings: InboxSettings,
    /// Rung by the ingestor (new rows) and by the consumer (released held rows).
    doorbell: Doorbell,
}

impl Relay {
    pub fn new(
        db: PgPool,
        js: jetstream::Context,
        settings: InboxSettings,
        doorbell: Doorbell,
    ) -> Self {
        Self {
            db,
            js,
            settings,
            doorbell,
        }
    }

    /// Runs until `shutdown`: relays on every wake-up, and every `relay_idle_ms` regardless
    /// (rows committed while NATS was down, or by another instance whose relay died).
    pub async fn run(self, shutdown: CancellationToken) {
        let idle = Duration::from_millis(self.settings.relay_idle_ms);
        loop {
            if let Err(e) = self.rerelay_lost().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot look for lost jobs");
            }
            loop {
                match self.relay_once().await {
                    Ok(n) if n as i64 >= self.settings.relay_batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        metrics::counter!("inbox_relay_errors_total").increment(1);
                        tracing::warn!(error = %format!("{e:#}"), "relay round failed; rows stay pending");
                        // The stream may be gone (deleted, or lost with nats-server's store):
                        // set it up again, so the next round can publish.
                        if let Err(e) = ensure_stream(&self.js, &self.settings).await {
                            tracing::debug!(error = %format!("{e:#}"), "cannot set up the inbox stream");
                        }
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.doorbell.rung() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
        tracing::debug!("relay stopped");
    }

    /// Rows relayed longer ago than any delivery of their job could take (`ack_wait_secs ×
    /// max_deliver` plus `rerelay_margin_secs`) and still not done: JetStream lost the job (a
    /// crash before its fsync, a deleted or recreated stream). They are relayed again under a
    /// new message id; if the old job was only slow, the consumer finds the row done and acks
    /// the second one. Returns how many.
    pub async fn rerelay_lost(&self) -> anyhow::Result<u64> {
        let settings = &self.settings;
        let after = settings
            .ack_wait_secs
            .saturating_mul(settings.max_deliver as u64)
            + settings.rerelay_margin_secs;
        let lost = sqlx::query(
            "update wa_inbox set relayed_at = null, rerelays = rerelays + 1
             where status = 'relayed' and relayed_at < now() - make_interval(secs => $1)",
        )
        .bind(after as f64)
        .execute(&self.db)
        .await
        .context("re-relaying rows whose job was lost")?
        .rows_affected();
        if lost > 0 {
            metrics::counter!("inbox_rerelayed_total").increment(lost);
            tracing::warn!(
                rows = lost,
                "relayed messages not answered in time: relaying them again"
            );
            self.doorbell.ring();
        }
        Ok(lost)
    }

    /// One round: up to `relay_batch` unrelayed rows, in id order, published and acknowledged
    /// by JetStream, then marked. Returns how many rows moved.
    pub async fn relay_once(&self) -> anyhow::Result<usize> {
        let (db, js, settings) = (&self.db, &self.js, &self.settings);
        let mut tx = db.begin().await.context("starting relay transaction")?;
        let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(0); // another instance is relaying
        }
        let rows: Vec<(i64, String, String, i32, i32)> = sqlx::query_as(
            "select id, wamid, sender_key, relay_gen, rerelays from wa_inbox
         where relayed_at is null order by id limit $1",
        )
        .bind(settings.relay_batch)
        .fetch_all(&mut *tx)
        .await
        .context("reading unrelayed rows")?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(rows.len());
        for (id, wamid, sender, gen, rerelays) in &rows {
            let partition = partition_of(sender, settings.partitions);
            let mut headers = async_nats::HeaderMap::new();
            // A released message (`wa_inbox.relay_gen`) or one whose job was lost
            // (`wa_inbox.rerelays`) goes out again under a new id.
            let msg_id = match (gen, rerelays) {
                (0, 0) => wamid.clone(),
                (gen, 0) => format!("{wamid}#{gen}"),
                (gen, r) => format!("{wamid}#{gen}r{r}"),
            };
            headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
            let body = serde_json::to_vec(&Job {
                id: *id,
                wamid: wamid.clone(),
            })?;
            let ack = js
                .publish_with_headers(
                    subject(&settings.subject_prefix, partition),
                    headers,
                    body.into(),
                )
                .await
                .map_err(|e| anyhow::anyhow!("publishing to JetStream: {e}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| anyhow::anyhow!("JetStream did not acknowledge: {e}"))?;
        }
        let ids: Vec<i64> = rows.iter().map(|(id, ..)| *id).collect();
        sqlx::query(
            "update wa_inbox set relayed_at = now(),
             status = case when status = 'pending' then 'relayed' else status end
         where id = any($1)",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .context("marking rows relayed")?;
        tx.commit().await.context("committing relay round")?;
        metrics::counter!("inbox_relayed_total").increment(ids.len() as u64);
        Ok(ids.len())
    }
}
