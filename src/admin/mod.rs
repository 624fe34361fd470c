//! The admin REST API (`/api/v1/...`): sign-in with JWT access tokens and rotating refresh
//! tokens, users and their WhatsApp identity, roles and permissions, menus, sessions, the audit
//! log, chats and alerts; the OpenAPI document and the `/docs` page.
//!
//! - [`auth`]: login, refresh, logout; the [`auth::Caller`] extractor that checks the session of
//!   every request and [`auth::Authorized`], which refuses a caller without a permission.
//! - [`second_factor`]: the one-time code after the password, by WhatsApp or email.
//! - [`password`]: argon2id hashing off the async executor, bounded by a semaphore; the password
//!   policy (length, zxcvbn strength, names, history).
//! - [`token`]: access tokens (HS256 JWT) and refresh tokens (opaque, stored hashed).
//! - [`throttle`]: per-IP login throttle.
//! - [`users`], [`roles`], [`sessions`], [`audit`], [`insight`]: the resources.
//! - [`dashboard`]: the executive summary as the blueprint's dashboard JSON.
//! - [`digest`]: a user's morning digest: its setting and what became of the recent ones.
//! - [`docs`]: the OpenAPI document and the Swagger UI page.
//! - [`cli`]: `sentient-hub admin create-user`, to bootstrap the first admin.
//!
//! Every mutation writes a `log_audit` row in the same transaction as the change.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod dashboard;
pub mod digest;
pub mod docs;
pub mod insight;
pub mod measures;
pub mod password;
pub mod roles;
pub mod second_factor;
pub mod sessions;
pub mod throttle;
pub mod token;
pub mod users;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

pub use auth::Auth;

use crate::error::{Error, FieldError, Result};

/// What the admin API's handlers and extractors use; a substate of the HTTP router's state.
#[derive(Clone)]
pub struct AdminState {
    /// Users, roles, sessions, the audit log, chats and alerts.
    pub db: sqlx::PgPool,
    /// Token keys, the bounded password hasher, the login throttle.
    pub auth: Auth,
    /// Sign-in codes (second factor) and their delivery.
    pub second_factor: second_factor::SecondFactor,
    /// `app.timezone`: whose "today" the dashboard summary reads.
    pub timezone: chrono_tz::Tz,
    /// `brain.metrics_timeout_ms`: how long one of the summary's reads may take.
    pub metrics_timeout: std::time::Duration,
    /// The morning digest's defaults.
    pub digest: crate::config::DigestSettings,
}

/// Every admin route, and apart from them the OpenAPI document at `/api/v1/openapi.json` with
/// the docs at `/docs` (served on the internal listener when there is one), in any router
/// state that holds an [`AdminState`].
pub fn routers<S>() -> (Router<S>, Router<S>)
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    let (router, api) = OpenApiRouter::with_openapi(docs::base())
        .merge(auth::router())
        .merge(second_factor::router())
        .merge(users::router())
        .merge(roles::router())
        .merge(sessions::router())
        .merge(audit::router())
        .merge(insight::router())
        .merge(dashboard::router())
        .merge(digest::router())
        .merge(measures::router())
        .split_for_parts();
    (router, docs::router(docs::finish(api)))
}

/// Largest page a list returns.
pub const MAX_PER_PAGE: u32 = 100;
const DEFAULT_PER_PAGE: u32 = 20;

/// Pagination of every list: `page` (from 1) and `per_page` (1 to 100, default 20).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page number, from 1.
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub per_page: Option<u32>,
}

/// A page of a list, with the total count of matching items.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// This page's number, from 1.
    pub page: u32,
    /// Items per page.
    pub per_page: u32,
    /// Items matching the filters, over all pages.
    pub total: i64,
}

impl PageParams {
    /// `(limit, offset)` for SQL, after checking the values.
    pub fn limits(&self) -> Result<(u32, u32)> {
        let page = self.page.unwrap_or(1);
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        let mut errors = Vec::new();
        if page == 0 {
            errors.push(field_error("page", "must be at least 1"));
        }
        if per_page == 0 || per_page > MAX_PER_PAGE {
            errors.push(field_error(
                "per_page",
                &format!("must be between 1 and {MAX_PER_PAGE}"),
            ));
        }
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        Ok((per_page, (page - 1).saturating_mul(per_page)))
    }

    pub fn page<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            page: self.page.unwrap_or(1),
            per_page: self.per_page.unwrap_or(DEFAULT_PER_PAGE),
            total,
        }
    }
}

pub(crate) fn field_error(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

/// A JSON body whose deserialisation errors become 422 problems naming the field (or 400 when
/// the body is not JSON at all).
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("application/json")
                    || (v.starts_with("application/") && v.contains("+json"))
            });
        if !is_json {
            return Err(Error::BadRequest(
                "expected a JSON body (Content-Type: application/json)".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Error::BadRequest(e.body_text()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| Error::BadRequest("the body is not valid JSON".to_owned()))?;
        if let Some(field) = refused_text(&value, "") {
            return Err(Error::invalid(field, NUL_MESSAGE));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| {
                let path = e.path().to_string();
                deserialize_error(&path, &e.into_inner().to_string())
            })
    }
}

/// A query string whose errors become 422 problems naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        let query = parts.uri.query().unwrap_or_default();
        if let Some((key, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(Error::invalid(key.replace('\0', ""), NUL_MESSAGE));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                deserialize_error(&path, &e.into_inner().to_string())
            })
    }
}

/// What a text with a character PostgreSQL cannot store gets.
const NUL_MESSAGE: &str = "must not contain NUL characters (U+0000)";

/// The path (`a.b[2]`) of the first string or key in `value` holding a NUL character, which
/// PostgreSQL refuses in text and JSON.
fn refused_text(value: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => Some(if at.is_empty() {
            "body".to_owned()
        } else {
            at.to_owned()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| refused_text(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            let path = if at.is_empty() {
                key.replace('\0', "")
            } else {
                format!("{at}.{}", key.replace('\0', ""))
            };
            if key.contains('\0') {
                Some(path)
            } else {
                refused_text(item, &path)
            }
        }),
        _ => None,
    }
}

/// Turns serde's message into a field error: the path when serde knows it, else the field named
/// in "missing field `x`" / "unknown field `x`".
fn deserialize_error(path: &str, message: &str) -> Error {
    // serde_json appends " at line L column C": position is noise for a field error.
    let message = message
        .rfind(" at line ")
        .map_or(message, |i| &message[..i])
        .to_owned();
    let field = if path.is_empty() || path == "." {
        message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field `"))
            .unwrap_or("body")
            .to_owned()
    } else {
        path.to_owned()
    };
    Error::invalid(field, message)
}

/// Parses a path segment that should be a uuid; anything else cannot name a resource: 404.
pub(crate) fn parse_uuid(raw: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(raw).map_err(|_| Error::NotFound)
}

/// A router for one feature, with its OpenAPI paths.
pub(crate) type ApiRouter<S> = OpenApiRouter<S>;

/// Masks personal data for logs: keeps the first and the last two characters.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 4 {
        return "***".to_owned();
    }
    format!(
        "{}***{}",
        chars[0],
        chars[chars.len() - 2..].iter().collect::<String>()
    )
}
