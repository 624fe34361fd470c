//! Building and running the application: `Application::build(settings)` connects to its
//! dependencies and binds its listener; `run_until_stopped(shutdown)` serves until the shutdown
//! future resolves, then drains in-flight requests for at most `server.shutdown_timeout_secs`.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderName, Request, StatusCode};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use async_nats::jetstream::{self, consumer::pull};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{NatsSettings, Settings};
use crate::identity::mailer::Mailer;
use crate::inbox::store::Ingestor;
use crate::inbox::{consumer, relay};
use crate::llm::breaker::Breaker;
use crate::outbox::sender;
use crate::whatsapp::graph::Transport;
use crate::{alerts, db, http, telemetry, whatsapp};

/// What every handler and worker may reach, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The system of record.
    pub db: PgPool,
    /// NATS connection (JetStream work distribution, LLM requests, alerts).
    pub nats: async_nats::Client,
    /// JetStream on that connection.
    pub js: jetstream::Context,
    /// Where replies go: the Graph API or the local sink.
    pub transport: Transport,
    /// Group-committing writer of webhook deliveries.
    pub ingestor: Ingestor,
    /// Mails one-time codes.
    pub mailer: Mailer,
    /// Keeps the brain from waiting on an LLM that keeps failing.
    pub breaker: Arc<Breaker>,
    /// Masters' names for understanding questions ("motor dc" → ITM-005).
    pub catalog: crate::brain::SharedCatalog,
    /// Wake-ups between pipeline stages, so work moves without waiting for a poll.
    pub wake: Arc<Wake>,
    /// Admin API sign-in: token keys, the bounded password hasher, the login throttle.
    pub auth: crate::admin::Auth,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The settings the app was built with.
    pub settings: Arc<Settings>,
}

/// Concurrent ingest transactions: enough to overlap one batch's fsync with the next batch's
/// inserts, few enough to leave pool connections for the workers.
const INGEST_COMMITTERS: usize = 3;
/// Deliveries per ingest transaction at most.
const INGEST_BATCH: usize = 256;

/// Wake-up signals between the stages of the pipeline.
#[derive(Default)]
pub struct Wake {
    /// New inbox rows committed: the relay should run.
    pub relay: Notify,
    /// New outbox rows: the sender should run.
    pub sender: Notify,
    /// New alerts stored: the dispatcher should run.
    pub alerts: Notify,
}

/// A built application: connected, migrated, listening, not yet serving.
pub struct Application {
    /// The port actually bound (differs from the setting when that was 0).
    port: u16,
    /// The bound listener, handed to axum in `run_until_stopped`.
    listener: TcpListener,
    /// Routes with their middleware and state.
    router: Router,
    /// State shared with the background workers.
    state: AppState,
    /// The inbox consumers, one per partition.
    consumers: Vec<jetstream::consumer::Consumer<pull::Config>>,
    /// The consumer of alerts published on NATS.
    alert_consumer: jetstream::consumer::Consumer<pull::Config>,
    /// Upper bound on graceful shutdown.
    shutdown_timeout: Duration,
}

impl Application {
    /// Connects to PostgreSQL (migrating when configured) and NATS, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = db::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            db::migrate(&db).await?;
        }
        let nats = connect_nats(&settings.nats).await?;
        let js = jetstream::new(nats.clone());
        let stream = relay::ensure_stream(&js, &settings.inbox).await?;
        let consumers = consumer::ensure_consumers(&stream, &settings.inbox).await?;
        let alert_consumer = alerts::intake::ensure_consumer(&js, &settings.alerts).await?;
        let transport = Transport::from_settings(&settings.whatsapp, nats.clone());
        if settings.whatsapp.is_local() {
            tracing::info!("no Graph API token: replies go to the local sink (sentient-hub chat)");
        } else if settings.whatsapp.window_template.is_empty() {
            tracing::warn!(
                "whatsapp.window_template is empty: alerts and late answers to users who have not written in 24 hours cannot be delivered"
            );
        }
        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let port = listener.local_addr()?.port();
        let shutdown_timeout = Duration::from_secs(settings.server.shutdown_timeout_secs);
        let ingestor = Ingestor::start(db.clone(), INGEST_COMMITTERS, INGEST_BATCH);
        let catalog =
            crate::brain::SharedCatalog::new(crate::brain::catalog::Catalog::load(&db).await?);
        let state = AppState {
            db,
            nats,
            js,
            transport,
            ingestor,
            mailer: Mailer::new(&settings.smtp)?,
            catalog,
            breaker: Arc::new(Breaker::new(
                settings.brain.circuit_failures,
                Duration::from_secs(settings.brain.circuit_open_secs),
            )),
            wake: Arc::new(Wake::default()),
            auth: crate::admin::Auth::new(&settings.auth)?,
            metrics: telemetry::metrics_handle(),
            settings: Arc::new(settings),
        };
        Ok(Self {
            port,
            listener,
            router: build_router(state.clone()),
            state,
            consumers,
            alert_consumer,
            shutdown_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves and runs the pipeline workers until `shutdown` resolves, then stops accepting,
    /// lets in-flight requests and messages finish and returns — after
    /// `server.shutdown_timeout_secs` at the latest.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "listening");
        let stop_workers = CancellationToken::new();
        let mut workers = JoinSet::new();
        let state = self.state;
        workers.spawn(relay::run(state.clone(), stop_workers.clone()));
        for c in self.consumers {
            workers.spawn(consumer::run(state.clone(), c, stop_workers.clone()));
        }
        workers.spawn(sender::run(state.clone(), stop_workers.clone()));
        workers.spawn(alerts::intake::run(
            state.clone(),
            self.alert_consumer,
            stop_workers.clone(),
        ));
        workers.spawn(alerts::dispatch::run(state.clone(), stop_workers.clone()));
        workers.spawn(alerts::detect::run(state.clone(), stop_workers.clone()));
        workers.spawn(mail_retries(state.clone(), stop_workers.clone()));
        workers.spawn(telemetry::upkeep(
            state.metrics.clone(),
            stop_workers.clone(),
        ));
        workers.spawn(crate::brain::refresh_catalog(
            state.clone(),
            stop_workers.clone(),
        ));

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .into_future();
        let mut server = std::pin::pin!(server);
        tokio::select! {
            result = &mut server => {
            stop_workers.cancel();
            return result.context("HTTP server failed");
        }
            () = shutdown => {}
        }
        tracing::info!(
            grace_secs = self.shutdown_timeout.as_secs(),
            "shutdown requested; draining in-flight requests"
        );
        let _ = stop_tx.send(());
        match tokio::time::timeout(self.shutdown_timeout, server).await {
            Ok(result) => result.context("HTTP server failed while draining")?,
            Err(_) => {
                tracing::warn!("graceful shutdown timed out; exiting with requests in flight")
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// All routes, with request ids, tracing, metrics and a time limit. Separate from serving so it
/// can be exercised on its own.
pub fn build_router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = Duration::from_secs(state.settings.server.request_timeout_secs);
    Router::new()
        .merge(http::health::router())
        .merge(crate::admin::router())
        .merge(whatsapp::webhook::router(
            state.settings.whatsapp.max_body_bytes,
        ))
        .with_state(state)
        .layer(axum::middleware::from_fn(telemetry::track_http))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "http",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %id,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Connects to NATS once; afterwards the client reconnects by itself. Fails with the target
/// (without credentials) when the server cannot be reached in time.
pub async fn connect_nats(settings: &NatsSettings) -> anyhow::Result<async_nats::Client> {
    let timeout = Duration::from_secs(settings.connect_timeout_secs);
    let target = settings.display_target();
    let options = async_nats::ConnectOptions::new()
        .name("sentient-hub")
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

/// Retries one-time-code mails that could not be sent, every two seconds.
async fn mail_retries(state: AppState, shutdown: CancellationToken) {
    loop {
        if let Err(e) = crate::identity::gate::retry_unsent(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "cannot retry code mails");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
