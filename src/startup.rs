//! Building and running the application: `Application::build(settings)` connects to its
//! dependencies and binds its listener; `run_until_stopped(shutdown)` serves until the shutdown
//! future resolves, then drains in-flight requests for at most `server.shutdown_timeout_secs`.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderName, Request, StatusCode};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use async_nats::jetstream::{self, consumer::pull};
use axum::extract::FromRef;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::second_factor::{self, Channels, SecondFactor};
use crate::admin::AdminState;
use crate::alerts::detect::Detector;
use crate::alerts::dispatch::{DispatchSettings, Dispatcher};
use crate::alerts::intake::AlertIntake;
use crate::brain::{catalog::Catalog, Brain, Preparer, SharedCatalog};
use crate::config::{Settings, WhatsAppSettings};
use crate::executive::digest::Digests;
use crate::http::health::HealthState;
use crate::identity::gate::Gate;
use crate::identity::mailer;
use crate::inbox::consumer::{Consumer, ConsumerSettings};
use crate::inbox::relay::Relay;
use crate::inbox::store::Ingestor;
use crate::inbox::webhook::WebhookState;
use crate::outbox::sender::SenderSettings;
use crate::outbox::{Purpose, Sender};
use crate::queue::{connect_nats, Ensure};
use crate::whatsapp::graph::Transport;
use crate::{alerts, brain, db, http, inbox, telemetry};

/// Concurrent ingest transactions: enough to overlap one batch's fsync with the next batch's
/// inserts, few enough to leave pool connections for the workers.
const INGEST_COMMITTERS: usize = 3;
/// Deliveries per ingest transaction at most.
const INGEST_BATCH: usize = 256;
/// How often the queues' depth is counted for `/metrics` (Prometheus scrapes every 15 s).
const QUEUE_SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// The HTTP router's state: one substate per module that serves routes, each taken by its
/// handlers through `FromRef`.
#[derive(Clone, FromRef)]
pub struct HttpState {
    admin: AdminState,
    webhook: WebhookState,
    health: HealthState,
}

/// The pipeline's stages, each holding only what it uses; the test suite drives their steps
/// directly.
#[derive(Clone)]
pub struct Stages {
    pub relay: Relay,
    pub consumer: Consumer,
    pub sender: Sender,
    pub dispatcher: Dispatcher,
    pub gate: Gate,
    /// Admin sign-in codes and their mailer.
    pub second_factor: SecondFactor,
    /// The masters' names the brain matches against, refreshed in the background.
    pub catalog: SharedCatalog,
    /// The morning digest's scheduler.
    pub digests: Digests,
}

/// A built application: connected, migrated, listening, not yet serving.
pub struct Application {
    /// The port actually bound (differs from the setting when that was 0).
    port: u16,
    /// The bound listener, handed to axum in `run_until_stopped`.
    listener: TcpListener,
    /// Routes with their middleware and state.
    router: Router,
    /// The internal listener (metrics, docs) and its routes, when configured.
    internal: Option<(TcpListener, Router)>,
    /// The pipeline's stages.
    stages: Stages,
    /// The inbox consumers, one per partition, each with what sets it up again.
    consumers: Vec<(jetstream::consumer::Consumer<pull::Config>, Ensure)>,
    /// Stores alerts published on NATS.
    intake: AlertIntake,
    /// Raises alerts from the warehouse's own data.
    detector: Detector,
    /// The pool, for the background tasks that only read and write through it.
    db: PgPool,
    /// Renders `/metrics`; its upkeep runs in the background.
    metrics: PrometheusHandle,
    /// Upper bound on graceful shutdown.
    shutdown_timeout: Duration,
    /// The archive job's settings.
    retention: crate::config::RetentionSettings,
}

impl Application {
    /// Connects to PostgreSQL (migrating when configured) and NATS, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.refuse_public_secrets()?;
        let db = db::connect(&settings.database).await?;
        if settings.database.migrate_on_start {
            db::migrate(&db).await?;
        }
        let nats = connect_nats(&settings.nats).await?;
        let js = jetstream::new(nats.clone());
        let stream = inbox::relay::ensure_stream(&js, &settings.inbox).await?;
        let consumers = inbox::consumer::ensure_consumers(&stream, &settings.inbox)
            .await?
            .into_iter()
            .zip(0..)
            .map(|(c, partition)| {
                let again =
                    inbox::consumer::ensure_again(js.clone(), settings.inbox.clone(), partition);
                (c, again)
            })
            .collect();
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
        crate::archive::check(&settings.retention)?;
        let metrics = telemetry::metrics_handle();
        telemetry::describe_hub();
        let ingestor = Ingestor::start(db.clone(), INGEST_COMMITTERS, INGEST_BATCH);
        let catalog = SharedCatalog::new(Catalog::load(&db).await?);

        let dispatch_settings = DispatchSettings {
            poll: Duration::from_secs(settings.alerts.poll_secs),
            max_age_mins: settings.alerts.max_age_mins,
            trust_days: settings.identity.trust_days,
            timezone: settings.app.timezone,
        };
        let sender = Sender::new(
            db.clone(),
            transport.clone(),
            SenderSettings::from(&settings.whatsapp),
        );
        let dispatcher = Dispatcher::new(db.clone(), dispatch_settings, sender.doorbell());
        let mailer = mailer::from_settings(&settings.smtp, nats.clone())?;
        let mail_timeout = Duration::from_secs(settings.smtp.timeout_secs + 1);
        let second_factor = SecondFactor::new(
            &settings.auth,
            Channels {
                mailer: mailer.clone(),
                otp_secret: settings.identity.otp_secret.clone(),
                trust_days: settings.identity.trust_days,
                window_template: !settings.whatsapp.window_template.is_empty(),
                timezone: settings.app.timezone,
                mail_timeout,
                sender: sender.doorbell(),
            },
        );
        let digests = Digests::new(
            db.clone(),
            settings.digest.clone(),
            settings.identity.trust_days,
            settings.app.timezone,
            Duration::from_millis(settings.brain.metrics_timeout_ms),
            sender.doorbell(),
        );
        let sender = sender
            .veto(Purpose::Alert, dispatcher.veto())
            .veto(Purpose::Digest, digests.veto())
            .veto(Purpose::Login, second_factor.veto(db.clone()))
            .after_sent(Purpose::Answer, brain::record_sent_answer)
            .after_sent(Purpose::Login, second_factor::record_sent);
        let gate = Gate::new(
            mailer,
            settings.identity.clone(),
            settings.app.timezone,
            mail_timeout,
            sender.doorbell(),
        );
        let brain = Brain::new(
            Preparer::from_settings(db.clone(), catalog.clone(), &settings),
            nats.clone(),
            settings.llm.subject.clone(),
        );
        let consumer = Consumer::new(
            db.clone(),
            gate.clone(),
            brain,
            transport,
            ConsumerSettings {
                max_deliver: settings.inbox.max_deliver,
                max_per_sender_per_minute: settings.inbox.max_per_sender_per_minute,
                stale_after_secs: settings.whatsapp.stale_after_secs,
                stale_policy: settings.whatsapp.stale_policy,
                timezone: settings.app.timezone,
            },
            sender.doorbell(),
            ingestor.relay_doorbell(),
        );
        let relay = Relay::new(
            db.clone(),
            js.clone(),
            settings.inbox.clone(),
            ingestor.relay_doorbell(),
        );
        let intake = AlertIntake::new(
            db.clone(),
            alert_consumer,
            alerts::intake::ensure_again(js.clone(), settings.alerts.clone()),
            dispatcher.doorbell(),
        );
        let detector = Detector::new(
            db.clone(),
            settings.alerts.detect_every_mins,
            settings.app.timezone,
            dispatcher.doorbell(),
        );
        let http_state = HttpState {
            admin: AdminState {
                db: db.clone(),
                auth: crate::admin::Auth::new(&settings.auth)?,
                second_factor: second_factor.clone(),
                timezone: settings.app.timezone,
                metrics_timeout: std::time::Duration::from_millis(
                    settings.brain.metrics_timeout_ms,
                ),
                digest: settings.digest.clone(),
            },
            webhook: WebhookState {
                db: db.clone(),
                ingestor,
                verify_token: settings.whatsapp.verify_token.clone(),
                app_secret: settings.whatsapp.app_secret.clone(),
            },
            health: HealthState {
                db: db.clone(),
                nats,
                metrics: metrics.clone(),
            },
        };
        let split = settings.server.internal_port.is_some();
        let (router, internal_router) = build_routers(
            http_state,
            &settings.whatsapp,
            Duration::from_secs(settings.server.request_timeout_secs),
            split,
        );
        let internal = match (settings.server.internal_port, internal_router) {
            (Some(port), Some(router)) => {
                let address = format!("{}:{port}", settings.server.internal_host);
                let listener = TcpListener::bind(&address)
                    .await
                    .with_context(|| format!("cannot listen on {address}"))?;
                Some((listener, router))
            }
            _ => None,
        };
        Ok(Self {
            port,
            listener,
            router,
            internal,
            stages: Stages {
                relay,
                consumer,
                sender,
                dispatcher,
                gate,
                second_factor,
                catalog,
                digests,
            },
            consumers,
            intake,
            detector,
            db,
            metrics,
            shutdown_timeout,
            retention: settings.retention.clone(),
        })
    }

    /// The pipeline's stages, to drive their steps by hand (tests, benchmarks).
    pub fn stages(&self) -> Stages {
        self.stages.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The internal listener's port, when there is one.
    pub fn internal_port(&self) -> Option<u16> {
        self.internal
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
            .map(|a| a.port())
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
        let stages = self.stages;
        workers.spawn(stages.relay.clone().run(stop_workers.clone()));
        for (c, ensure) in self.consumers {
            workers.spawn(stages.consumer.clone().run(c, ensure, stop_workers.clone()));
        }
        workers.spawn(stages.sender.clone().run(stop_workers.clone()));
        workers.spawn(self.intake.run(stop_workers.clone()));
        workers.spawn(stages.dispatcher.clone().run(stop_workers.clone()));
        workers.spawn(self.detector.run(stop_workers.clone()));
        workers.spawn(stages.digests.clone().run(stop_workers.clone()));
        workers.spawn(
            stages
                .gate
                .clone()
                .run_mailer(self.db.clone(), stop_workers.clone()),
        );
        workers.spawn(
            stages
                .second_factor
                .clone()
                .run_mailer(self.db.clone(), stop_workers.clone()),
        );
        workers.spawn(telemetry::upkeep(self.metrics, stop_workers.clone()));
        workers.spawn(crate::archive::run_every(
            self.db.clone(),
            self.retention,
            stop_workers.clone(),
        ));
        workers.spawn(telemetry::sample_queues(
            self.db.clone(),
            QUEUE_SAMPLE_EVERY,
            stop_workers.clone(),
        ));
        workers.spawn(
            stages
                .catalog
                .clone()
                .refresh(self.db, stop_workers.clone()),
        );

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stop_internal = CancellationToken::new();
        if let Some((listener, router)) = self.internal {
            let stop = stop_internal.clone();
            tokio::spawn(async move {
                let served = axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "internal listener failed");
                }
            });
        }
        let _stop_internal = stop_internal.drop_guard();
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

/// The public routes and, when `split`, the internal ones (metrics, docs, OpenAPI and the
/// probes) apart; each with request ids, tracing, metrics and a time limit of `timeout`.
/// Separate from serving so they can be exercised on their own.
pub fn build_routers(
    state: HttpState,
    whatsapp: &WhatsAppSettings,
    timeout: Duration,
    split: bool,
) -> (Router, Option<Router>) {
    let (api, docs) = crate::admin::routers();
    let public = Router::new()
        .merge(http::health::router())
        .merge(api)
        .merge(inbox::webhook::router(
            whatsapp.max_body_bytes,
            whatsapp.max_concurrent_webhooks,
        ));
    let internal = Router::new()
        .merge(http::health::metrics_router())
        .merge(docs);
    if split {
        let internal = internal.merge(http::health::router());
        (
            layered(public.with_state(state.clone()), timeout),
            Some(layered(internal.with_state(state), timeout)),
        )
    } else {
        (
            layered(public.merge(internal).with_state(state), timeout),
            None,
        )
    }
}

/// Request ids, tracing, HTTP metrics and the time limit around `router`.
fn layered(router: Router, timeout: Duration) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    router
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
        .layer(axum::middleware::map_request(drop_unfit_request_id))
}

/// Longest `x-request-id` a caller may choose.
const MAX_REQUEST_ID: usize = 64;

/// A caller's `x-request-id` goes into every log line of the request: one that is too long or
/// holds anything but letters, digits and `-_.:` is dropped (a fresh UUID takes its place).
async fn drop_unfit_request_id<B>(mut req: Request<B>) -> Request<B> {
    let fit = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
    };
    if req.headers().get("x-request-id").is_some_and(|v| !fit(v)) {
        req.headers_mut().remove("x-request-id");
    }
    req
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
