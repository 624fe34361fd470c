//! `GET /api/v1/audit` lists the audit trail (`ADMIN.AUDIT.VIEW`); [`crate::audit`] writes it.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{perm, Authorized};
use super::AdminState;
use super::{ApiQuery, ApiRouter, Page, PageParams};
use crate::error::Result;
use axum::extract::FromRef;

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new().routes(routes!(list))
}

/// Filters of the audit log; all optional, combined with AND.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// The actor: a user's uuid or username.
    pub user: Option<String>,
    /// Exact action, e.g. `LOGIN`, `UPDATE`.
    pub action: Option<String>,
    /// Entity table, e.g. `adm_user`.
    pub entity_type: Option<String>,
    /// The entity's uuid.
    pub entity: Option<Uuid>,
    /// From this instant (inclusive, RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Up to this instant (exclusive, RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

/// One audit row. Internal ids are not shown; entities are named by uuid.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditOut {
    pub at: DateTime<Utc>,
    /// The actor's uuid (null: command line or anonymous).
    pub user: Option<Uuid>,
    pub username: Option<String>,
    pub action: String,
    pub entity_type: Option<String>,
    pub entity_uuid: Option<Uuid>,
    /// Snapshot before the change (secrets removed).
    pub old_value: Option<Value>,
    /// Snapshot after the change (secrets removed).
    pub new_value: Option<Value>,
    pub ip_address: Option<String>,
}

const FILTER: &str = "
    from log_audit a
    left join adm_user u on u.id = a.user_id
    where ($1::text is null or u.uuid::text = $1 or u.username = lower($1))
      and ($2::text is null or a.action = upper($2))
      and ($3::text is null or a.entity_type = $3)
      and ($4::uuid is null or a.entity_uuid = $4)
      and ($5::timestamptz is null or a.created_at >= $5)
      and ($6::timestamptz is null or a.created_at < $6)";

/// The audit log, newest first.
#[utoipa::path(
    get, path = "/api/v1/audit", tag = "audit",
    params(PageParams, AuditFilter),
    responses((status = 200, body = Page<AuditOut>)),
    security(("bearer" = ["ADMIN.AUDIT.VIEW"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn list(
    caller: Authorized<perm::AuditView>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<AuditFilter>,
) -> Result<Json<Page<AuditOut>>> {
    let (limit, offset) = page.limits()?;
    let total: i64 = sqlx::query_scalar(&format!("select count(*) {FILTER}"))
        .bind(&f.user)
        .bind(&f.action)
        .bind(&f.entity_type)
        .bind(f.entity)
        .bind(f.from)
        .bind(f.to)
        .fetch_one(&state.db)
        .await?;
    let items = sqlx::query_as::<_, AuditOut>(&format!(
        "select a.created_at as at, u.uuid as user, u.username, a.action, a.entity_type,
                a.entity_uuid, a.old_value, a.new_value, a.ip_address
         {FILTER}
         order by a.created_at desc, a.id desc
         limit $7 offset $8"
    ))
    .bind(&f.user)
    .bind(&f.action)
    .bind(&f.entity_type)
    .bind(f.entity)
    .bind(f.from)
    .bind(f.to)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}
