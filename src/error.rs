//! The one error type at the HTTP edge: every handler of the REST API returns [`Result`], and
//! every error leaves as an RFC 9457 `application/problem+json` document.
//!
//! Internal causes (database, I/O, bugs) are logged with their chain and answered with a bare
//! 500: the client never sees them. Constraint violations are recognised by constraint name and
//! become 409 (a unique value already taken) or 422 (a value the schema refuses), naming the field.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials, bad credentials, an expired or revoked session: always the same answer,
    /// so a caller cannot tell which part was wrong.
    #[error("authentication required")]
    Unauthorized,
    /// Authenticated, but the role lacks the permission.
    #[error("permission {0} required")]
    Forbidden(&'static str),
    /// Authenticated and permitted, but the action is refused for a reason stated in the text.
    #[error("{0}")]
    Refused(Cow<'static, str>),
    #[error("not found")]
    NotFound,
    /// The request conflicts with the current state (a taken phone, a system role …).
    #[error("{detail}")]
    Conflict {
        /// The request field at fault, if one is.
        field: Option<&'static str>,
        detail: Cow<'static, str>,
    },
    /// The request is well-formed JSON but some values are not acceptable.
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// The body is not JSON, or not an object of the expected shape.
    #[error("{0}")]
    BadRequest(String),
    /// Too many attempts from one place; retry after the given seconds.
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// A bounded resource (the password hasher) is saturated; retry shortly.
    #[error("busy")]
    Busy,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// One field that failed validation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's name as sent (dotted path for nested values).
    pub field: String,
    /// What is wrong with it, in English.
    pub message: String,
}

/// RFC 9457 problem details, as every error of the API is answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The fields at fault (validation and conflicts).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Error {
    /// A single-field validation error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn conflict(field: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Conflict {
            field: Some(field),
            detail: detail.into(),
        }
    }

    pub fn refused(detail: impl Into<Cow<'static, str>>) -> Self {
        Error::Refused(detail.into())
    }

    fn problem(&self) -> (StatusCode, Problem) {
        let blank = |status: StatusCode, detail: Option<String>| {
            (
                status,
                Problem {
                    kind: "about:blank".to_owned(),
                    title: status.canonical_reason().unwrap_or("Error").to_owned(),
                    status: status.as_u16(),
                    detail,
                    errors: Vec::new(),
                },
            )
        };
        match self {
            Error::Unauthorized => blank(
                StatusCode::UNAUTHORIZED,
                Some("Missing, invalid or expired credentials.".to_owned()),
            ),
            Error::Forbidden(code) => blank(
                StatusCode::FORBIDDEN,
                Some(format!("This action needs the permission {code}.")),
            ),
            Error::Refused(detail) => blank(StatusCode::FORBIDDEN, Some(detail.to_string())),
            Error::NotFound => blank(StatusCode::NOT_FOUND, None),
            Error::Conflict { field, detail } => {
                let (status, mut p) = blank(StatusCode::CONFLICT, Some(detail.to_string()));
                p.kind = "urn:sentient-hub:problem:conflict".to_owned();
                if let Some(field) = field {
                    p.errors.push(FieldError {
                        field: (*field).to_owned(),
                        message: detail.to_string(),
                    });
                }
                (status, p)
            }
            Error::Validation(errors) => {
                let (status, mut p) = blank(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(format!(
                        "Invalid value for {}.",
                        errors
                            .iter()
                            .map(|e| e.field.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                p.kind = "urn:sentient-hub:problem:validation".to_owned();
                p.errors = errors.clone();
                (status, p)
            }
            Error::BadRequest(detail) => blank(StatusCode::BAD_REQUEST, Some(detail.clone())),
            Error::TooManyRequests { .. } => blank(
                StatusCode::TOO_MANY_REQUESTS,
                Some("Too many attempts; try again later.".to_owned()),
            ),
            Error::Busy => blank(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("The server is busy; try again shortly.".to_owned()),
            ),
            Error::Database(e) => match constraint_problem(e) {
                Some(mapped) => mapped.problem(),
                None => blank(StatusCode::INTERNAL_SERVER_ERROR, None),
            },
            Error::Internal(_) => blank(StatusCode::INTERNAL_SERVER_ERROR, None),
        }
    }
}

/// Unique and check constraints the API can run into, by name: (constraint, field, 409?, text).
const CONSTRAINTS: &[(&str, &str, bool, &str)] = &[
    (
        "adm_user_username_live_uq",
        "username",
        true,
        "username is already taken",
    ),
    (
        "adm_user_email_live_uq",
        "email",
        true,
        "email is already used by another user",
    ),
    (
        "adm_user_phone_live_uq",
        "phone",
        true,
        "phone is already registered to another user",
    ),
    (
        "adm_user_bsuid_live_uq",
        "bsuid",
        true,
        "bsuid is already registered to another user",
    ),
    (
        "adm_role_code_key",
        "code",
        true,
        "role code already exists",
    ),
    (
        "ai_alert_rule_uq",
        "role",
        true,
        "the same rule already exists",
    ),
    (
        "adm_user_username_chk",
        "username",
        false,
        "2-50 characters: lower-case letters, digits, '.', '_', '-'",
    ),
    ("adm_user_email_chk", "email", false, "not an email address"),
    (
        "adm_user_phone_chk",
        "phone",
        false,
        "not an E.164 phone number",
    ),
    (
        "adm_role_code_chk",
        "code",
        false,
        "upper-case letters, digits and '_', starting with a letter",
    ),
    ("adm_role_level_chk", "level", false, "between 1 and 99"),
];

/// The 409/422 a constraint violation stands for, when the constraint is one the API expects.
fn constraint_problem(e: &sqlx::Error) -> Option<Error> {
    let db = e.as_database_error()?;
    let name = db.constraint()?;
    let (_, field, conflict, text) = CONSTRAINTS.iter().find(|(c, ..)| *c == name)?;
    Some(if *conflict {
        Error::conflict(field, *text)
    } else {
        Error::invalid(*field, *text)
    })
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, problem) = self.problem();
        match &self {
            Error::Database(e) if status.is_server_error() => {
                tracing::error!(error = %e, "database error");
            }
            Error::Internal(e) => tracing::error!(error = %format!("{e:#}"), "internal error"),
            _ => tracing::debug!(status = status.as_u16(), "request refused"),
        }
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match self {
            Error::TooManyRequests { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Error::Busy => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
