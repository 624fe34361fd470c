//! The audit trail: [`record`] writes one `log_audit` row (inside the caller's transaction), and
//! `GET /api/v1/audit` lists them (`ADMIN.AUDIT.VIEW`).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{perm, Authorized};
use super::{ApiQuery, ApiRouter, Page, PageParams};
use crate::error::Result;
use crate::startup::AppState;

pub(crate) fn router() -> ApiRouter {
    ApiRouter::new().routes(routes!(list))
}

/// What changed, on which entity.
pub struct Entry<'a> {
    /// Upper-case verb: CREATE, UPDATE, DELETE, LOGIN, LOGOUT, RESET_PWD, …
    pub action: &'a str,
    /// Table of the entity (`adm_user`, `adm_role`, …).
    pub entity_type: &'a str,
    /// Internal id of the entity (for joins; never shown).
    pub entity_id: Option<i64>,
    /// Exposed id of the entity (shown and filterable).
    pub entity_uuid: Option<Uuid>,
    /// Snapshot before the change.
    pub old: Option<Value>,
    /// Snapshot after the change.
    pub new: Option<Value>,
}

/// Keys never written to the audit log, whatever snapshot they come in.
const SECRET_KEYS: &[&str] = &[
    "password",
    "password_hash",
    "refresh_hash",
    "token_hash",
    "refresh_token",
    "access_token",
    "code_hash",
];

/// Removes secrets from a snapshot, at any depth.
pub fn scrub(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !SECRET_KEYS.contains(&k.as_str()));
            map.values_mut().for_each(scrub);
        }
        Value::Array(items) => items.iter_mut().for_each(scrub),
        _ => {}
    }
}

/// Writes one audit row. `user_id` is the actor (None for the command line or an anonymous
/// event); `ip` the actor's address.
pub async fn record(
    conn: &mut PgConnection,
    user_id: Option<i64>,
    ip: Option<&str>,
    mut entry: Entry<'_>,
) -> Result<()> {
    entry.old.as_mut().map(scrub);
    entry.new.as_mut().map(scrub);
    sqlx::query(
        "insert into log_audit
             (user_id, action, entity_type, entity_id, entity_uuid, old_value, new_value, ip_address)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(user_id)
    .bind(entry.action)
    .bind(entry.entity_type)
    .bind(entry.entity_id)
    .bind(entry.entity_uuid)
    .bind(entry.old)
    .bind(entry.new)
    .bind(ip)
    .execute(conn)
    .await?;
    Ok(())
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
    State(state): State<AppState>,
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
