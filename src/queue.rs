//! Handing work on: the NATS connection, JetStream work queues as the inbox and the alert intake
//! use them (a file-backed stream that keeps a message until a worker acknowledges it, and the
//! pull loop that hands messages over), and the in-process [`Doorbell`] a stage rings when it
//! has committed work for the next one.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull};
use futures::future::BoxFuture;
use futures::StreamExt;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::NatsSettings;

/// Connects to NATS once; afterwards the client reconnects by itself. Fails with the target
/// (without credentials) when the server cannot be reached in time.
pub async fn connect_nats(settings: &NatsSettings) -> anyhow::Result<async_nats::Client> {
    let timeout = Duration::from_secs(settings.connect_timeout_secs);
    let target = settings.display_target();
    let mut options = async_nats::ConnectOptions::new();
    if !settings.creds_file.is_empty() {
        options = options
            .credentials_file(&settings.creds_file)
            .await
            .with_context(|| format!("reading nats.creds_file {}", settings.creds_file))?;
    }
    if !settings.user.is_empty() {
        options = options.user_and_password(
            settings.user.clone(),
            settings.password.expose_secret().to_owned(),
        );
    }
    let options = options
        .name("sentient-hub")
        .custom_inbox_prefix(&settings.inbox_prefix)
        .connection_timeout(timeout);
    tokio::time::timeout(
        timeout,
        async_nats::connect_with_options(settings.url.expose_secret(), options),
    )
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {}s", timeout.as_secs()))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .with_context(|| format!("cannot connect to NATS at {target}"))
}

/// A wake-up between two stages in this process: the stage that commits work rings it, the one
/// that does the work waits on it (and polls as well, for work committed elsewhere). Each
/// doorbell belongs to the stage that waits on it; cheap to clone.
#[derive(Clone, Default)]
pub struct Doorbell(Arc<Notify>);

impl Doorbell {
    /// Wakes the waiting stage (or the next wait, when it is busy).
    pub fn ring(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next ring.
    pub async fn rung(&self) {
        self.0.notified().await;
    }
}

/// Creates the stream `name` over `subjects` when missing. Work-queue retention: a message leaves
/// the stream once a worker acknowledges it; the two-minute duplicate window absorbs republishes
/// with the same `Nats-Msg-Id`; what nobody takes is dropped after seven days.
pub async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: Vec<String>,
) -> anyhow::Result<jetstream::stream::Stream> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: name.to_owned(),
        subjects,
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        max_age: Duration::from_secs(7 * 24 * 3600),
        ..Default::default()
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))
    .with_context(|| format!("creating JetStream stream {name}"))
}

/// Makes sure a stream and its durable consumer exist and returns the consumer: what [`pull`]
/// calls again after a failure, so a stream deleted or lost with nats-server's store is created
/// anew while the hub runs.
pub type Ensure = Arc<
    dyn Fn() -> BoxFuture<'static, anyhow::Result<jetstream::consumer::Consumer<pull::Config>>>
        + Send
        + Sync,
>;

/// Pulls from `consumer` and awaits `handle` on each message, one at a time, until `shutdown`;
/// the message in hand is finished first. After a failed pull (NATS away, the consumer or its
/// stream gone) it waits a second, calls `ensure` and pulls again; `what` names the queue in
/// the logs.
pub async fn pull<F, Fut>(
    mut consumer: jetstream::consumer::Consumer<pull::Config>,
    ensure: Ensure,
    shutdown: &CancellationToken,
    what: &str,
    mut handle: F,
) where
    F: FnMut(jetstream::Message) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut failed = false;
    while !shutdown.is_cancelled() {
        if failed {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match ensure().await {
                Ok(fresh) => consumer = fresh,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), queue = what, "cannot set up the JetStream consumer; retrying");
                    continue;
                }
            }
        }
        failed = true;
        // A 5 s idle heartbeat (instead of 15): a consumer lost with the server's store is noticed,
        // and set up again, within seconds.
        let pulled = consumer
            .stream()
            .expires(Duration::from_secs(10))
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await;
        let mut messages = match pulled {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, queue = what, "cannot pull from JetStream; retrying");
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => handle(message).await,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, queue = what, "pull stream failed; pulling anew");
                    break;
                }
                None => break,
            }
        }
    }
}
