//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations, served at
//! `/api/v1/openapi.json`, and Swagger UI at `/docs`. Swagger UI's files are compiled into the
//! binary (vendored from crates.io), so the page works without a CDN or network access.
//!
//! Each operation's required permission is its security requirement's scope list
//! (`"security": [{"bearer": ["ADMIN.USER.READ"]}]`, as OpenAPI 3.1 allows for non-OAuth
//! schemes); the tests walk the document to check every route refuses a caller without it.

use axum::Router;
use serde_json::{json, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{FieldError, Problem};

pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sentient Hub admin API",
        description = "Users, roles and permissions, sessions, the audit log, chats and alerts of \
the Sentient Hub WhatsApp Executive Hub.\n\nSign in at `POST /api/v1/auth/login`. Roles with a \
second factor (SYSADMIN and DIRECTOR by default) get `202` and a `challenge_id` instead of tokens: a \
6-digit code went to the user's confirmed WhatsApp device or email; send both to \
`POST /api/v1/auth/login/verify` for the tokens. A token with `password_change_required` may only \
change the password (`POST /api/v1/auth/password`). Send the access \
token as `Authorization: Bearer <token>`, renew it at `POST /api/v1/auth/refresh` before it expires \
(15 minutes). Each operation lists the permission it needs as the scope of its `bearer` security \
requirement. Errors are RFC 9457 `application/problem+json`; lists take `page` and `per_page` \
(max 100) and answer `{items, page, per_page, total}`."
    ),
    modifiers(&BearerScheme),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "auth", description = "Sign-in (password, then a one-time code where the role requires it), token refresh, sign-out, password change"),
        (name = "users", description = "Users and their WhatsApp identity"),
        (name = "roles", description = "Roles and the permission catalogue"),
        (name = "menus", description = "The caller's sidebar"),
        (name = "sessions", description = "Who is signed in; force logout"),
        (name = "audit", description = "The audit trail"),
        (name = "insight", description = "Chats, alerts and alert routing, the metrics catalogue, the executive dashboard summary")
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from /api/v1/auth/login (15 minutes)."))
                    .build(),
            ),
        );
    }
}

/// The document before the routes add their paths.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The finished document: every operation also lists the problem answers it can give (401, 403,
/// 400 and 422 for a body, 422 for query parameters, 404 for a resource in the path) and, in its
/// description, the permission it needs.
pub(crate) fn finish(api: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(&api).expect("the OpenAPI document serialises");
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": { "application/problem+json": {
                "schema": { "$ref": "#/components/schemas/Problem" }
            }}
        })
    };
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut().filter_map(Value::as_object_mut) {
                let scopes: Option<Vec<String>> = op
                    .get("security")
                    .and_then(|s| s.get(0))
                    .and_then(|s| s.get("bearer"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    });
                let has_body = op.contains_key("requestBody");
                let takes = |place: &str| {
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .is_some_and(|ps| ps.iter().any(|p| p["in"] == place))
                };
                let (has_query, has_path) = (takes("query"), takes("path"));
                if let Some(scopes) = &scopes {
                    if !scopes.is_empty() {
                        let note =
                            format!("\n\nRequires the permission `{}`.", scopes.join("`, `"));
                        let text = op
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        op.insert("description".to_owned(), json!(text + &note));
                    }
                }
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                if let Some(scopes) = scopes {
                    responses
                        .entry("401")
                        .or_insert_with(|| problem("Missing, invalid or expired credentials"));
                    if !scopes.is_empty() {
                        responses
                            .entry("403")
                            .or_insert_with(|| problem("The caller's role lacks the permission"));
                    }
                }
                if has_body {
                    responses
                        .entry("400")
                        .or_insert_with(|| problem("The body is not JSON"));
                }
                if has_body || has_query {
                    responses
                        .entry("422")
                        .or_insert_with(|| problem("Invalid values; `errors` names the fields"));
                }
                if has_path {
                    responses
                        .entry("404")
                        .or_insert_with(|| problem("No such resource"));
                }
            }
        }
    }
    doc
}

/// `/api/v1/openapi.json` and the Swagger UI at `/docs`.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(doc: Value) -> Router<S> {
    SwaggerUi::new("/docs")
        .external_url_unchecked(OPENAPI_PATH, doc)
        .into()
}
