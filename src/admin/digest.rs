//! A user's morning digest ([`crate::executive::digest`]): `GET /api/v1/users/{uuid}/digest`
//! shows the setting and the last two weeks of digests with what became of each (sent,
//! delivered, read, failed — 131047 when the 24-hour window was closed and no template is
//! configured — or withdrawn); `PUT` changes it, audited.

use axum::extract::{FromRef, Path, State};
use axum::Json;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{perm, Authorized};
use super::users::target;
use super::{parse_uuid, AdminState, ApiJson, ApiRouter};
use crate::audit::{self, Entry};
use crate::error::{Error, Result};
use crate::executive::digest;

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new().routes(routes!(get_digest, set_digest))
}

/// One day's digest and what became of it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DigestSend {
    pub day: NaiveDate,
    /// `pending`, `sending`, `sent`, `delivered`, `read`, `failed`, `unknown` or `withdrawn`.
    pub status: String,
    /// Sent as the window template (the 24-hour window was closed).
    pub as_template: bool,
    /// Meta's (or the hub's) error code of a failed digest: 131047 = the 24-hour window was
    /// closed and `whatsapp.window_template` is not set.
    pub error_code: Option<i32>,
    pub error_text: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DigestOut {
    /// Whether a digest goes out each day.
    pub enabled: bool,
    /// Its time, `HH:MM` in the hub's zone (`app.timezone`); null when off.
    pub send_at: Option<String>,
    /// `user`: chosen by the user (in the chat) or an admin; `default`: the role's default
    /// (`digest.default_roles` at `digest.default_time`).
    pub source: String,
    /// The last 14 days' digests, newest first.
    pub recent: Vec<DigestSend>,
}

/// A digest setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDigest {
    pub enabled: bool,
    /// `HH:MM` in the hub's zone; without it an enabled digest keeps its time (or takes the
    /// default).
    #[serde(default)]
    pub send_at: Option<String>,
}

async fn user_id(state: &AdminState, uuid: Uuid) -> Result<i64> {
    sqlx::query_scalar("select id from adm_user where uuid = $1 and deleted_at is null")
        .bind(uuid)
        .fetch_optional(&state.db)
        .await?
        .ok_or(Error::NotFound)
}

async fn out(state: &AdminState, uuid: Uuid, id: i64) -> Result<DigestOut> {
    let s = digest::setting(&state.db, &state.digest, id).await?;
    let recent: Vec<DigestSend> = sqlx::query_as(
        "select split_part(inbound_wamid, ':', 3)::date as day, status, kind = 'template' as as_template,
                error_code, error_text, created_at, sent_at
         from wa_outbox
         where purpose = 'digest' and part_no = 1 and inbound_wamid like $1
           and created_at > now() - interval '14 days'
         order by created_at desc",
    )
    .bind(format!("digest:{uuid}:%"))
    .fetch_all(&state.db)
    .await?;
    Ok(DigestOut {
        enabled: s.send_at.is_some(),
        send_at: s.send_at.map(|t| t.format("%H:%M").to_string()),
        source: if s.chosen { "user" } else { "default" }.to_owned(),
        recent,
    })
}

/// The user's morning digest and what became of the recent ones.
#[utoipa::path(
    get, path = "/api/v1/users/{uuid}/digest", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    responses((status = 200, body = DigestOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.READ"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn get_digest(
    caller: Authorized<perm::UserRead>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<Json<DigestOut>> {
    let uuid = parse_uuid(&uuid)?;
    let id = user_id(&state, uuid).await?;
    Ok(Json(out(&state, uuid, id).await?))
}

/// Turns the user's morning digest on (at a time) or off.
#[utoipa::path(
    put, path = "/api/v1/users/{uuid}/digest", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    request_body = SetDigest,
    responses(
        (status = 200, body = DigestOut),
        (status = 404, description = "No such user"),
        (status = 422, description = "`send_at` is not a time", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn set_digest(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
    ApiJson(req): ApiJson<SetDigest>,
) -> Result<Json<DigestOut>> {
    let uuid = parse_uuid(&uuid)?;
    let at = match req.send_at.as_deref() {
        Some(t) => Some(
            NaiveTime::parse_from_str(t, "%H:%M")
                .map_err(|_| Error::invalid("send_at", "a time as HH:MM (00:00 to 23:59)"))?,
        ),
        None => None,
    };
    target(&state.db, &caller, uuid).await?;
    let id = user_id(&state, uuid).await?;
    let before = digest::setting(&state.db, &state.digest, id).await?;
    let send_at = match (req.enabled, at) {
        (false, _) => None,
        (true, Some(t)) => Some(t),
        (true, None) => Some(before.send_at.unwrap_or(state.digest.default_time)),
    };
    let mut tx = state.db.begin().await?;
    digest::choose(&mut tx, id, send_at, caller.user_id).await?;
    let shown = |t: Option<NaiveTime>| t.map(|t| t.format("%H:%M").to_string());
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "DIGEST_SET",
            entity_type: "adm_user",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: Some(json!({ "send_at": shown(before.send_at), "chosen": before.chosen })),
            new: Some(json!({ "send_at": shown(send_at), "chosen": true })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(out(&state, uuid, id).await?))
}
