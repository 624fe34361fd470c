//! `sentient-hub llm-worker`: answers `ai.llm.chat` requests by calling an OpenAI-compatible
//! server.
//!
//! Any number of workers share the subject through a NATS queue group; NATS hands each request to
//! one of them. A worker runs at most `llm.max_concurrency` upstream calls at once and answers
//! requests beyond that `overloaded` at once: queueing them would only make them miss the
//! requester's deadline, while an immediate answer lets it retry or fall back to its deterministic
//! answer. Every request that carries a reply subject gets exactly one reply — an answer or a
//! structured error — even when the upstream misbehaves, the handler panics or the worker is
//! stopped mid-call.
//!
//! Shutdown (SIGINT/SIGTERM): unsubscribe (requests already delivered are still served), let the
//! calls in flight finish for `llm.shutdown_timeout_secs`, answer the rest `shutting_down`, flush
//! and drain the NATS connection.

use std::future::{Future, IntoFuture};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::{Message, Subject};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::openai::OpenAiClient;
use super::{strip_reasoning, ChatAnswer, ChatReply, ChatRequest, ErrorCode};
use crate::config::{LlmSettings, Settings};
use crate::{queue, telemetry};

/// After the grace period, how long the aborted calls, and requests still arriving, get to
/// publish their `shutting_down`.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// How often histogram samples are folded into their summaries (the exporter's own default).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A built worker: connected, subscribed, listening, not yet serving.
pub struct Worker {
    /// The NATS connection the requests come in on and the replies go out on.
    nats: async_nats::Client,
    /// The queue subscription on `llm.subject`.
    requests: async_nats::Subscriber,
    /// The bound `/metrics` listener, served in `run_until_stopped`.
    listener: TcpListener,
    /// The port actually bound (differs from the setting when that was 0).
    port: u16,
    /// What each request handler shares.
    handler: Handler,
    /// Calls in flight get this long at shutdown.
    grace: Duration,
    /// Renders `/metrics`.
    metrics: PrometheusHandle,
}

/// Everything a request needs, cheap to clone into its task.
#[derive(Clone)]
struct Handler {
    /// For publishing replies.
    nats: async_nats::Client,
    /// The upstream.
    upstream: Arc<OpenAiClient>,
    /// One permit per upstream call in flight; an empty semaphore means `overloaded`. A permit
    /// is returned as soon as its call ends, before the reply goes out: a requester that sends
    /// its next request the moment it has its answer must find the slot free.
    slots: Arc<Semaphore>,
    /// Every request task, until its reply is handed to the NATS client: shutdown waits on it.
    tasks: TaskTracker,
    /// `max_concurrency`, to read the in-flight count off `slots`.
    max_concurrency: usize,
    /// Applied when a request has no `max_tokens`.
    default_max_tokens: u32,
    /// Limit of one upstream call.
    timeout: Duration,
    /// Cancelled when the shutdown grace is over: calls still running answer `shutting_down`.
    abort: CancellationToken,
    /// Metric handles, looked up once rather than on every request.
    metrics: Arc<Metrics>,
}

/// The worker's metrics (the Grafana panels: requests, errors by kind, latency, tokens, tokens
/// per second). Errors are counted by code through the registry, on the error path only.
struct Metrics {
    /// `llm_requests_total`: load, and the denominator of the error rate.
    requests: metrics::Counter,
    /// `llm_in_flight`: how close the worker is to answering `overloaded`.
    in_flight: metrics::Gauge,
    /// `llm_request_duration_seconds{outcome="answer"}`: what the hub waits for an answer.
    answered: metrics::Histogram,
    /// `llm_request_duration_seconds{outcome="error"}`: how fast failures come back.
    failed: metrics::Histogram,
    /// `llm_prompt_tokens_total`: prompt size over time (cost, context growth).
    prompt_tokens: metrics::Counter,
    /// `llm_completion_tokens_total`: its rate is the worker's total tokens per second.
    completion_tokens: metrics::Counter,
    /// `llm_tokens_per_second`: generation speed of each call, the blueprint's panel.
    tokens_per_second: metrics::Histogram,
}

impl Metrics {
    /// Describes and registers every metric, so `/metrics` lists them from the start.
    fn register() -> Self {
        use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
        describe_counter!("llm_requests_total", "Requests taken off NATS.");
        describe_counter!(
            "llm_errors_total",
            "Requests answered with an error, by code."
        );
        describe_histogram!(
            "llm_request_duration_seconds",
            Unit::Seconds,
            "From receipt to reply, by outcome (answer or error)."
        );
        describe_counter!(
            "llm_prompt_tokens_total",
            "Prompt tokens reported by the LLM server."
        );
        describe_counter!(
            "llm_completion_tokens_total",
            "Completion tokens reported by the LLM server."
        );
        describe_histogram!(
            "llm_tokens_per_second",
            "Completion tokens per second of each answered call (generation speed)."
        );
        describe_gauge!("llm_in_flight", "Upstream calls in flight.");
        // A series that exists at zero lets dashboards and alerts compute rates from the start.
        for code in ErrorCode::ALL {
            metrics::counter!("llm_errors_total", "code" => code.as_str()).increment(0);
        }
        Self {
            requests: metrics::counter!("llm_requests_total"),
            in_flight: metrics::gauge!("llm_in_flight"),
            answered: metrics::histogram!("llm_request_duration_seconds", "outcome" => "answer"),
            failed: metrics::histogram!("llm_request_duration_seconds", "outcome" => "error"),
            prompt_tokens: metrics::counter!("llm_prompt_tokens_total"),
            completion_tokens: metrics::counter!("llm_completion_tokens_total"),
            tokens_per_second: metrics::histogram!("llm_tokens_per_second"),
        }
    }
}

/// State of the metrics listener.
#[derive(Clone)]
struct HttpState {
    /// Renders `/metrics` (the process-wide recorder).
    metrics: PrometheusHandle,
    /// `/readyz` reports whether NATS is connected.
    nats: async_nats::Client,
}

impl Worker {
    /// Connects to NATS, subscribes to `llm.subject` in `llm.queue_group` and binds the metrics
    /// listener. Fails with the cause when any of them cannot be had.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let llm = &settings.llm;
        // The recorder must exist before the metric handles are taken, or they record nothing.
        let metrics = telemetry::metrics_handle();
        let upstream = OpenAiClient::from_settings(llm)?;
        let nats = queue::connect_nats(&settings.nats).await?;
        let requests = nats
            .queue_subscribe(llm.subject.clone(), llm.queue_group.clone())
            .await
            .with_context(|| format!("cannot subscribe to {}", llm.subject))?;
        // The subscription must be known to the server before `build` returns, or a request sent
        // right after it could find no responder.
        nats.flush()
            .await
            .context("cannot confirm the subscription with NATS")?;
        let address = format!("{}:{}", llm.metrics_host, llm.metrics_port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address} (llm.metrics_port)"))?;
        let port = listener.local_addr()?.port();
        tracing::info!(
            subject = %llm.subject,
            queue_group = %llm.queue_group,
            upstream = %upstream.url(),
            model = %llm.model,
            max_concurrency = llm.max_concurrency,
            "llm-worker subscribed"
        );
        Ok(Self {
            handler: Handler::new(nats.clone(), upstream, llm),
            metrics,
            nats,
            requests,
            listener,
            port,
            grace: Duration::from_secs(llm.shutdown_timeout_secs),
        })
    }

    /// The port of `/metrics`, `/healthz` and `/readyz`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves requests until `shutdown` resolves (or the NATS connection is closed), then shuts
    /// down gracefully as the module documentation describes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Worker {
            nats,
            mut requests,
            listener,
            port,
            handler,
            grace,
            metrics,
        } = self;
        let stop_http = CancellationToken::new();
        let http = tokio::spawn(
            axum::serve(
                listener,
                router(HttpState {
                    metrics: metrics.clone(),
                    nats: nats.clone(),
                }),
            )
            .with_graceful_shutdown(stop_http.clone().cancelled_owned())
            .into_future(),
        );
        tracing::info!(port, "llm-worker metrics listening");
        // The recorder keeps every histogram sample until upkeep folds it in; without a scrape
        // nothing else would, and memory would grow with every request.
        let upkeep = tokio::spawn({
            let (metrics, stop) = (metrics.clone(), stop_http.clone());
            async move {
                while tokio::time::timeout(UPKEEP_EVERY, stop.cancelled())
                    .await
                    .is_err()
                {
                    metrics.run_upkeep();
                }
            }
        });

        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                message = requests.next() => match message {
                    Some(message) => handler.accept(message).await,
                    None => {
                        tracing::warn!("the NATS subscription ended; stopping");
                        break;
                    }
                },
                () = &mut shutdown => {
                    tracing::info!("shutdown requested: no new requests, finishing those in flight");
                    break;
                }
            }
        }

        // Unsubscribe, then serve what the server had already sent before it saw that.
        if let Err(e) = requests.drain().await {
            tracing::warn!(error = %e, "cannot unsubscribe from NATS");
        }
        if tokio::time::timeout(grace, handler.finish(&mut requests))
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = handler.in_flight(),
                replies_pending = handler.tasks.len(),
                "shutdown grace is over: answering the calls still running shutting_down"
            );
            // From here on every call and every request still coming off the subscription is
            // answered `shutting_down`.
            handler.abort.cancel();
            if tokio::time::timeout(ABORT_GRACE, handler.finish(&mut requests))
                .await
                .is_err()
            {
                tracing::error!(
                    replies_pending = handler.tasks.len(),
                    "some requests could not be answered before exit"
                );
            }
        }
        // Replies are buffered in the client: push them out, then close.
        if let Err(e) = nats.flush().await {
            tracing::warn!(error = %e, "cannot flush replies to NATS");
        }
        if let Err(e) = nats.drain().await {
            tracing::warn!(error = %e, "cannot drain the NATS connection");
        }
        stop_http.cancel();
        upkeep.abort();
        http.await
            .context("metrics listener task failed")?
            .context("metrics listener failed")?;
        tracing::info!("llm-worker stopped");
        Ok(())
    }
}

impl Handler {
    fn new(nats: async_nats::Client, upstream: OpenAiClient, llm: &LlmSettings) -> Self {
        Self {
            nats,
            upstream: Arc::new(upstream),
            slots: Arc::new(Semaphore::new(llm.max_concurrency)),
            tasks: TaskTracker::new(),
            max_concurrency: llm.max_concurrency,
            default_max_tokens: llm.default_max_tokens,
            timeout: Duration::from_secs(llm.request_timeout_secs),
            abort: CancellationToken::new(),
            metrics: Arc::new(Metrics::register()),
        }
    }

    /// Takes one message off the subscription: starts its call when a slot is free, answers
    /// `overloaded` at once when none is. Never waits for the upstream, so the subscription is
    /// read as fast as requests arrive.
    async fn accept(&self, message: Message) {
        let received = Instant::now();
        self.metrics.requests.increment(1);
        let Some(reply_to) = message.reply else {
            // A plain publish: there is nobody to answer, so there is nothing to compute.
            tracing::warn!(subject = %message.subject, "request without a reply subject dropped");
            count_error(ErrorCode::BadRequest);
            return;
        };
        if self.abort.is_cancelled() {
            let reply = ChatReply::failure(
                peek_request_id(&message.payload),
                ErrorCode::ShuttingDown,
                "the worker is stopping; retry",
            );
            self.answer(reply_to, &reply, received).await;
            return;
        }
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.in_flight.set(self.in_flight() as f64);
                self.tasks.spawn(
                    self.clone()
                        .serve(message.payload, reply_to, received, permit),
                );
            }
            Err(_) => {
                let reply = ChatReply::failure(
                    peek_request_id(&message.payload),
                    ErrorCode::Overloaded,
                    format!(
                        "this worker already runs {} calls; retry or fall back",
                        self.max_concurrency
                    ),
                );
                self.answer(reply_to, &reply, received).await;
            }
        }
    }

    /// One request from payload to reply, holding a slot until its upstream call ends.
    #[tracing::instrument(skip_all, fields(request_id))]
    async fn serve(
        self,
        payload: Bytes,
        reply_to: Subject,
        received: Instant,
        permit: OwnedSemaphorePermit,
    ) {
        let reply = match serde_json::from_slice::<ChatRequest>(&payload) {
            Err(e) => ChatReply::failure(
                peek_request_id(&payload),
                ErrorCode::BadRequest,
                format!("not a chat request: {e}"),
            ),
            Ok(request) if request.messages.is_empty() => ChatReply::failure(
                Some(request.request_id),
                ErrorCode::BadRequest,
                "messages is empty",
            ),
            Ok(request) => {
                tracing::Span::current().record("request_id", request.request_id.as_str());
                let id = request.request_id.clone();
                // A panic below must still produce a reply, and must not take the worker down.
                AssertUnwindSafe(self.call(request))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        tracing::error!("request handler panicked");
                        ChatReply::failure(Some(id), ErrorCode::Internal, "the worker failed")
                    })
            }
        };
        drop(permit);
        self.metrics.in_flight.set(self.in_flight() as f64);
        self.answer(reply_to, &reply, received).await;
    }

    /// The upstream call, cut short by the end of the shutdown grace.
    async fn call(&self, request: ChatRequest) -> ChatReply {
        let started = Instant::now();
        let call = self.upstream.complete(
            &request.messages,
            request.max_tokens.unwrap_or(self.default_max_tokens),
            request.temperature,
            self.timeout,
        );
        let result = tokio::select! {
            result = call => result,
            () = self.abort.cancelled() => {
                return ChatReply::failure(
                    Some(request.request_id),
                    ErrorCode::ShuttingDown,
                    "the worker stopped before the LLM answered; retry",
                );
            }
        };
        match result {
            Ok(completion) => {
                let seconds = started.elapsed().as_secs_f64();
                let m = &self.metrics;
                m.prompt_tokens.increment(completion.prompt_tokens);
                m.completion_tokens.increment(completion.completion_tokens);
                if completion.completion_tokens > 0 && seconds > 0.0 {
                    m.tokens_per_second
                        .record(completion.completion_tokens as f64 / seconds);
                }
                ChatReply::Answer(ChatAnswer {
                    request_id: request.request_id,
                    content: strip_reasoning(&completion.content),
                    model: completion.model,
                    prompt_tokens: completion.prompt_tokens,
                    completion_tokens: completion.completion_tokens,
                })
            }
            Err(e) => {
                tracing::warn!(code = e.code().as_str(), error = %e, "LLM call failed");
                ChatReply::failure(Some(request.request_id), e.code(), e.to_string())
            }
        }
    }

    /// Publishes the reply and records its outcome.
    async fn answer(&self, reply_to: Subject, reply: &ChatReply, received: Instant) {
        let latency = match reply.error_code() {
            None => &self.metrics.answered,
            Some(code) => {
                count_error(code);
                &self.metrics.failed
            }
        };
        latency.record(received.elapsed().as_secs_f64());
        let payload = match serde_json::to_vec(reply) {
            Ok(p) => Bytes::from(p),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise a reply");
                Bytes::from_static(
                    br#"{"request_id":null,"error":{"code":"internal","message":"unserialisable reply"}}"#,
                )
            }
        };
        if let Err(e) = self.nats.publish(reply_to, payload).await {
            tracing::error!(error = %e, "cannot publish a reply");
        }
    }

    fn in_flight(&self) -> usize {
        self.max_concurrency - self.slots.available_permits()
    }

    /// Serves what is left on the drained subscription, then waits until every request taken
    /// has had its reply handed to the NATS client. Only for shutdown.
    async fn finish(&self, requests: &mut async_nats::Subscriber) {
        while let Some(message) = requests.next().await {
            self.accept(message).await;
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The request id of a payload that may not be a valid request, for error replies.
fn peek_request_id(payload: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        request_id: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Id>(payload).ok()?.request_id? {
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

fn count_error(code: ErrorCode) {
    metrics::counter!("llm_errors_total", "code" => code.as_str()).increment(1);
}

fn router(state: HttpState) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// 200 while NATS is connected: a worker that cannot receive requests is not ready.
async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.nats.connection_state() == async_nats::connection::State::Connected {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "checks": { "nats": "unavailable" } })),
        )
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(&state.metrics),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_recovered_from_partial_payloads() {
        assert_eq!(
            peek_request_id(br#"{"request_id":"r-1","messages":"oops"}"#),
            Some("r-1".to_owned())
        );
        assert_eq!(
            peek_request_id(br#"{"request_id":42}"#),
            Some("42".to_owned())
        );
        assert_eq!(peek_request_id(b"not json"), None);
        assert_eq!(peek_request_id(br#"{"messages":[]}"#), None);
    }
}
