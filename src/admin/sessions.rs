//! Active sessions and force logout (`ADMIN.SESSION.MANAGE`). A session is one login: its id is
//! the family id that stays the same while its refresh token rotates.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{perm, revoke_family, Authorized};
use super::AdminState;
use super::{parse_uuid, ApiQuery, ApiRouter, Page, PageParams};
use crate::audit::{self, Entry};
use crate::error::{Error, Result};
use axum::extract::FromRef;

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(force_logout))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SessionOut {
    /// The session (login) id.
    pub id: Uuid,
    /// The user's uuid.
    pub user: Uuid,
    pub username: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub login_at: DateTime<Utc>,
    pub last_activity_at: Option<DateTime<Utc>>,
    /// When the current refresh token expires.
    pub expires_at: DateTime<Utc>,
    /// Whether this is the caller's own session.
    pub current: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilter {
    /// Only this user's sessions (uuid).
    pub user: Option<Uuid>,
}

const FILTER: &str = "
    from adm_session s join adm_user u on u.id = s.user_id
    where not s.is_revoked and s.expires_at > now() and u.deleted_at is null
      and ($1::uuid is null or u.uuid = $1)";

/// Sessions that are signed in now, most recent activity first.
#[utoipa::path(
    get, path = "/api/v1/sessions", tag = "sessions",
    params(PageParams, SessionFilter),
    responses((status = 200, body = Page<SessionOut>)),
    security(("bearer" = ["ADMIN.SESSION.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn list(
    caller: Authorized<perm::SessionManage>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<SessionFilter>,
) -> Result<Json<Page<SessionOut>>> {
    let (limit, offset) = page.limits()?;
    let total: i64 = sqlx::query_scalar(&format!("select count(*) {FILTER}"))
        .bind(f.user)
        .fetch_one(&state.db)
        .await?;
    let items = sqlx::query_as::<_, SessionOut>(&format!(
        "select s.family_id as id, u.uuid as user, u.username, s.ip_address, s.user_agent,
                s.login_at, s.last_activity_at, s.expires_at, s.family_id = $2 as current
         {FILTER}
         order by s.last_activity_at desc nulls last, s.id desc
         limit $3 offset $4"
    ))
    .bind(f.user)
    .bind(caller.family_id)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}

/// Ends a session at once: its access and refresh tokens stop working.
#[utoipa::path(
    delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 204, description = "Ended"), (status = 404, description = "No such active session")),
    security(("bearer" = ["ADMIN.SESSION.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, session = %id))]
async fn force_logout(
    caller: Authorized<perm::SessionManage>,
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let family = parse_uuid(&id)?;
    let mut tx = state.db.begin().await?;
    let owner: Option<(i64, Uuid, i32)> = sqlx::query_as(
        "select u.id, u.uuid, r.level from adm_session s
         join adm_user u on u.id = s.user_id join adm_role r on r.id = u.role_id
         where s.family_id = $1 and not s.is_revoked and s.expires_at > now()
         limit 1",
    )
    .bind(family)
    .fetch_optional(&mut *tx)
    .await?;
    let (user_id, user_uuid, level) = owner.ok_or(Error::NotFound)?;
    if user_id != caller.user_id {
        caller.may_manage_level(level)?;
    }
    let revoked = revoke_family(&mut tx, family, "forced").await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "FORCE_LOGOUT",
            entity_type: "adm_session",
            entity_id: None,
            entity_uuid: Some(family),
            old: None,
            new: Some(json!({ "user": user_uuid, "revoked_sessions": revoked })),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
