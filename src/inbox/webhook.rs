//! The inbox's front door: `GET /webhook` (Meta's verification handshake) and `POST /webhook`
//! (signed deliveries).
//!
//! What POST does with each kind of input:
//! - missing or malformed `X-Hub-Signature-256`: 401 before the body is read, nothing stored;
//! - more than `whatsapp.max_concurrent_webhooks` POSTs at once: 503 before the body is read
//!   (Meta retries), so bodies in flight stay bounded;
//! - wrong `X-Hub-Signature-256`: 401, nothing stored;
//! - body over `whatsapp.max_body_bytes`: 413, nothing stored;
//! - signed but unparseable (not JSON, unknown shape): stored raw in `wa_dead_letter`, 200;
//! - signed and parsed: messages committed to `wa_inbox` (duplicates add nothing), statuses
//!   applied to `wa_outbox`, then 200; non-message fields are logged and acknowledged. NUL
//!   characters are removed by the parser; a delivery the database refuses anyway (a value too
//!   long) is stored message by message, and only the refused message becomes a dead letter;
//! - database down: 503, so Meta retries later — nothing is acknowledged that is not stored.
//!   NATS being down does not matter here: the relay hands rows on when it returns.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::inbox::store::{IngestError, Ingestor};
use crate::whatsapp::payload::{self, Delivery};
use crate::whatsapp::signature;

/// What the webhook handlers use.
#[derive(Clone)]
pub struct WebhookState {
    /// For dead letters.
    pub db: PgPool,
    /// Commits deliveries (and tells the relay).
    pub ingestor: Ingestor,
    /// Compared with `hub.verify_token` in the handshake.
    pub verify_token: SecretString,
    /// Key of `X-Hub-Signature-256`.
    pub app_secret: SecretString,
}

/// The webhook's routes: bodies up to `max_body_bytes`, at most `max_in_flight` POSTs at once.
pub fn router<S>(max_body_bytes: usize, max_in_flight: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    WebhookState: FromRef<S>,
{
    Router::new()
        .route(
            "/webhook",
            get(handshake)
                .post(receive)
                .route_layer(axum::middleware::from_fn_with_state(
                    Arc::new(Semaphore::new(max_in_flight)),
                    guard,
                )),
        )
        .layer(DefaultBodyLimit::max(max_body_bytes))
}

/// Before the body is read: no well-formed signature header, 401; no permit of `in_flight`
/// left, 503.
async fn guard(
    State(in_flight): State<Arc<Semaphore>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !signature::well_formed(header) {
        metrics::counter!("webhook_deliveries_total", "outcome" => "bad_signature").increment(1);
        tracing::warn!(
            has_header = header.is_some(),
            "webhook signature missing or malformed"
        );
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(_permit) = in_flight.try_acquire_owned() else {
        metrics::counter!("webhook_deliveries_total", "outcome" => "shed").increment(1);
        tracing::warn!("too many webhook deliveries at once; 503, Meta retries");
        return (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")]).into_response();
    };
    next.run(req).await
}

/// Answers `hub.challenge` when `hub.mode=subscribe` and the token matches; 403 otherwise.
async fn handshake(
    State(state): State<WebhookState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let expected = state.verify_token.expose_secret().as_bytes();
    let mode_ok = query.get("hub.mode").map(String::as_str) == Some("subscribe");
    let token_ok = query
        .get("hub.verify_token")
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected)));
    match (mode_ok && token_ok, query.get("hub.challenge")) {
        (true, Some(challenge)) => {
            tracing::info!("webhook verification handshake accepted");
            challenge.clone().into_response()
        }
        _ => {
            tracing::warn!("webhook verification handshake refused");
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

#[tracing::instrument(skip_all, fields(bytes = body.len()))]
async fn receive(State(state): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    let secret = state.app_secret.expose_secret().as_bytes();
    if !signature::verify(secret, &body, header) {
        metrics::counter!("webhook_deliveries_total", "outcome" => "bad_signature").increment(1);
        tracing::warn!(
            has_header = header.is_some(),
            "webhook signature missing or wrong"
        );
        return StatusCode::UNAUTHORIZED.into_response();
    }

    let delivery = match payload::parse(&body) {
        Ok(delivery) => delivery,
        Err(e) => return dead_letter(&state, &body, &e.to_string()).await,
    };

    for other in &delivery.other_fields {
        tracing::info!(field = %other.field, "non-message webhook acknowledged");
    }
    for error in &delivery.errors {
        tracing::warn!(code = error.code, title = ?error.title, "webhook carried an error");
    }

    match state.ingestor.ingest(delivery).await {
        Ok(ingested) => {
            metrics::counter!("webhook_deliveries_total", "outcome" => "stored").increment(1);
            metrics::counter!("inbox_messages_total", "kind" => "new")
                .increment(ingested.new as u64);
            metrics::counter!("inbox_messages_total", "kind" => "duplicate")
                .increment(ingested.duplicates as u64);
            tracing::debug!(
                new = ingested.new,
                duplicates = ingested.duplicates,
                statuses = ingested.statuses,
                "delivery stored"
            );
            StatusCode::OK.into_response()
        }
        Err(e @ IngestError::Invalid(_)) => {
            // The parse succeeded a moment ago; parsing again is cheaper than cloning every
            // delivery for this rare path.
            let parts = payload::parse(&body)
                .map(Delivery::split)
                .unwrap_or_default();
            if parts.len() < 2 {
                return dead_letter(&state, &body, &e.to_string()).await;
            }
            store_one_by_one(&state, &body, parts).await
        }
        Err(IngestError::Unavailable(e)) => {
            metrics::counter!("webhook_deliveries_total", "outcome" => "db_error").increment(1);
            tracing::error!(error = %format!("{e:#}"), "cannot store delivery; Meta will retry");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// A delivery the database refused as a whole, stored message by message: what it refuses is
/// kept as a dead letter (the message's own JSON), the rest goes on as usual.
async fn store_one_by_one(state: &WebhookState, body: &[u8], parts: Vec<Delivery>) -> Response {
    for part in parts {
        let raw = part.messages.first().map(|m| m.raw.to_string());
        match state.ingestor.ingest(part).await {
            Ok(_) => {}
            Err(e @ IngestError::Invalid(_)) => {
                let kept = raw.as_deref().map_or(body, str::as_bytes);
                let response = dead_letter(state, kept, &e.to_string()).await;
                if response.status() != StatusCode::OK {
                    return response;
                }
            }
            Err(IngestError::Unavailable(e)) => {
                // Meta retries the whole delivery; what was stored is a duplicate then.
                metrics::counter!("webhook_deliveries_total", "outcome" => "db_error").increment(1);
                tracing::error!(error = %format!("{e:#}"), "cannot store delivery; Meta will retry");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    metrics::counter!("webhook_deliveries_total", "outcome" => "stored_in_parts").increment(1);
    StatusCode::OK.into_response()
}

/// Keeps a signed but unreadable body and acknowledges it, so Meta stops retrying something
/// that will never parse. If even that cannot be stored, 503 asks Meta to retry.
async fn dead_letter(state: &WebhookState, body: &[u8], reason: &str) -> Response {
    let stored = crate::dead_letter::keep(&state.db, "webhook", reason, body, None).await;
    match stored {
        Ok(_) => {
            metrics::counter!("webhook_deliveries_total", "outcome" => "dead_letter").increment(1);
            tracing::warn!(%reason, "unparseable delivery stored as dead letter");
            StatusCode::OK.into_response()
        }
        Err(e) => {
            metrics::counter!("webhook_deliveries_total", "outcome" => "db_error").increment(1);
            tracing::error!(error = %e, %reason, "cannot store dead letter; Meta will retry");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}
