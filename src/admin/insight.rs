//! What the hub said and raised: the chat log (`ai_chat`, audit material: `ADMIN.AUDIT.VIEW`),
//! alerts (`ai_alert`: list with `ALERT.READ`, acknowledge with `ALERT.ACK`) and the alert
//! routing rules (`ai_alert_rule`, `ALERT.MANAGE`): module and minimum severity → role.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{perm, Authorized};
use super::AdminState;
use super::{field_error, parse_uuid, ApiJson, ApiQuery, ApiRouter, Page, PageParams};
use crate::alerts::Severity;
use crate::audit::{self, Entry};
use crate::domain::access::module_readable;
use crate::error::{Error, Result};
use axum::extract::FromRef;

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new()
        .routes(routes!(chats))
        .routes(routes!(alerts))
        .routes(routes!(ack))
        .routes(routes!(rules, create_rule))
        .routes(routes!(delete_rule))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ChatOut {
    pub uuid: Uuid,
    /// The sender's user uuid (null: unknown sender).
    pub user: Option<Uuid>,
    pub username: Option<String>,
    pub phone: Option<String>,
    /// Role code of the sender at the time.
    pub user_role: Option<String>,
    pub msg_in: Option<String>,
    pub msg_out: Option<String>,
    pub intent: Option<String>,
    /// `llm`, `fallback`, `denied`, `clarify`, `refused` or `error`.
    pub outcome: Option<String>,
    pub tokens_used: i32,
    pub latency_ms: Option<i32>,
    pub ts: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatFilter {
    /// The sender: user uuid or username.
    pub user: Option<String>,
    /// The sender's phone (E.164 or Indonesian local form).
    pub phone: Option<String>,
    pub intent: Option<String>,
    pub outcome: Option<String>,
    /// From this instant (inclusive, RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Up to this instant (exclusive, RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

const CHAT_FILTER: &str = "
    from ai_chat c left join adm_user u on u.id = c.user_id
    where ($1::text is null or u.uuid::text = $1 or u.username = lower($1))
      and ($2::text is null or c.phone = $2)
      and ($3::text is null or c.intent = $3)
      and ($4::text is null or c.outcome = $4)
      and ($5::timestamptz is null or c.ts >= $5)
      and ($6::timestamptz is null or c.ts < $6)";

/// The WhatsApp chat log, newest first.
#[utoipa::path(
    get, path = "/api/v1/chats", tag = "insight",
    params(PageParams, ChatFilter),
    responses((status = 200, body = Page<ChatOut>)),
    security(("bearer" = ["ADMIN.AUDIT.VIEW"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn chats(
    caller: Authorized<perm::AuditView>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<ChatFilter>,
) -> Result<Json<Page<ChatOut>>> {
    let (limit, offset) = page.limits()?;
    let phone = match f.phone.as_deref() {
        Some(p) => Some(
            super::users::parse_phone(p)
                .map_err(|m| Error::invalid("phone", m))?
                .to_string(),
        ),
        None => None,
    };
    let total: i64 = sqlx::query_scalar(&format!("select count(*) {CHAT_FILTER}"))
        .bind(&f.user)
        .bind(&phone)
        .bind(&f.intent)
        .bind(&f.outcome)
        .bind(f.from)
        .bind(f.to)
        .fetch_one(&state.db)
        .await?;
    let items = sqlx::query_as::<_, ChatOut>(&format!(
        "select c.uuid, u.uuid as user, u.username, c.phone, c.user_role, c.msg_in, c.msg_out,
                c.intent, c.outcome, c.tokens_used, c.latency_ms, c.ts
         {CHAT_FILTER}
         order by c.ts desc, c.id desc limit $7 offset $8"
    ))
    .bind(&f.user)
    .bind(&phone)
    .bind(&f.intent)
    .bind(&f.outcome)
    .bind(f.from)
    .bind(f.to)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AlertOut {
    pub uuid: Uuid,
    pub module: String,
    pub alert_type: String,
    /// `Low`, `Medium`, `High` or `Critical`.
    pub severity: String,
    pub message: String,
    pub channel: String,
    pub is_sent: bool,
    pub sent_at: Option<DateTime<Utc>>,
    pub is_read: bool,
    pub acked_at: Option<DateTime<Utc>>,
    /// Username of whoever acknowledged it.
    pub acked_by: Option<String>,
    pub payload: Value,
    pub created_at: DateTime<Utc>,
    /// Users it was routed to on WhatsApp (0 until dispatched, or when no routing rule named a
    /// user who may read it on a confirmed device); some copies may still wait out a mute.
    pub recipients: i64,
    /// Of those messages, how many WhatsApp reported delivered or read.
    pub delivered: i64,
    /// Of those messages, how many could not be sent.
    pub failed: i64,
    /// Of those messages, how many were not sent because the alert was acknowledged while they
    /// waited, or the user lost the device trust or the permission.
    pub withdrawn: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertFilter {
    /// e.g. `WO`, `FIN`.
    pub module: Option<String>,
    /// Exact severity.
    pub severity: Option<String>,
    /// e.g. `ANOMALY`, `STOCK`.
    pub alert_type: Option<String>,
    /// true: not yet acknowledged; false: acknowledged.
    pub open: Option<bool>,
    /// From this instant (inclusive, RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Up to this instant (exclusive, RFC 3339).
    pub to: Option<DateTime<Utc>>,
}

const ALERT_SELECT: &str = "
    select a.uuid, a.module, a.alert_type, a.severity, a.message, a.channel, a.is_sent,
           a.sent_at, a.is_read, a.acked_at, u.username as acked_by, a.payload, a.created_at,
           d.recipients, d.delivered, d.failed, d.withdrawn
    from ai_alert a left join adm_user u on u.id = a.acked_by
    cross join lateral (
        select count(*) as recipients,
               count(*) filter (where o.status in ('delivered', 'read')) as delivered,
               count(*) filter (where o.status = 'failed') as failed,
               count(*) filter (where o.status = 'withdrawn') as withdrawn
        from ai_alert_recipient ar join wa_outbox o on o.id = ar.outbox_id
        where ar.alert_id = a.id) d";

const ALERT_FILTER: &str = "
    where ($1::text is null or a.module = upper($1))
      and ($2::text is null or lower(a.severity) = lower($2))
      and ($3::text is null or a.alert_type = upper($3))
      and ($4::bool is null or (a.acked_at is null) = $4)
      and ($5::timestamptz is null or a.created_at >= $5)
      and ($6::timestamptz is null or a.created_at < $6)";

/// Alerts of the modules the caller may read (`FIN.READ` for finance alerts, …), newest first.
#[utoipa::path(
    get, path = "/api/v1/alerts", tag = "insight",
    params(PageParams, AlertFilter),
    responses((status = 200, body = Page<AlertOut>)),
    security(("bearer" = ["ALERT.READ"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn alerts(
    caller: Authorized<perm::AlertRead>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<AlertFilter>,
) -> Result<Json<Page<AlertOut>>> {
    let (limit, offset) = page.limits()?;
    // Only alerts of modules the caller may read: a finance alert is finance data.
    let readable = module_readable("a.module", "$7");
    let total: i64 = sqlx::query_scalar(&format!(
        "select count(*) from ai_alert a {ALERT_FILTER} and {readable}"
    ))
    .bind(&f.module)
    .bind(&f.severity)
    .bind(&f.alert_type)
    .bind(f.open)
    .bind(f.from)
    .bind(f.to)
    .bind(&caller.permissions)
    .fetch_one(&state.db)
    .await?;
    let items = sqlx::query_as::<_, AlertOut>(&format!(
        "{ALERT_SELECT} {ALERT_FILTER} and {readable}
         order by a.created_at desc, a.id desc limit $8 offset $9"
    ))
    .bind(&f.module)
    .bind(&f.severity)
    .bind(&f.alert_type)
    .bind(f.open)
    .bind(f.from)
    .bind(f.to)
    .bind(&caller.permissions)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}

/// Acknowledges an alert (marks it handled). Acknowledging it again changes nothing. An alert of
/// a module the caller may not read is not found.
#[utoipa::path(
    post, path = "/api/v1/alerts/{uuid}/ack", tag = "insight",
    params(("uuid" = Uuid, Path, description = "The alert's uuid")),
    responses((status = 200, body = AlertOut), (status = 404, description = "No such alert")),
    security(("bearer" = ["ALERT.ACK"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, alert = %uuid))]
async fn ack(
    caller: Authorized<perm::AlertAck>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<Json<AlertOut>> {
    let uuid = parse_uuid(&uuid)?;
    let mut tx = state.db.begin().await?;
    let (id, old): (i64, Value) = sqlx::query_as(&format!(
        "select id, to_jsonb(a) from ai_alert a where uuid = $1 and {} for update",
        module_readable("a.module", "$2")
    ))
    .bind(uuid)
    .bind(&caller.permissions)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound)?;
    crate::alerts::ack::record(&mut tx, id, uuid, caller.user_id, caller.ip(), old, "api").await?;
    let out = sqlx::query_as::<_, AlertOut>(&format!("{ALERT_SELECT} where a.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(out))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct RuleOut {
    pub uuid: Uuid,
    /// Module the rule applies to; null = every module.
    pub module: Option<String>,
    /// Alerts of this severity or higher match.
    pub min_severity: String,
    /// Role code whose active users receive the matching alerts.
    pub role: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

const RULE_SELECT: &str = "
    select a.uuid, a.module, a.min_severity, r.code as role, a.is_active, a.created_at
    from ai_alert_rule a join adm_role r on r.id = a.role_id";

/// Alert routing rules.
#[utoipa::path(
    get, path = "/api/v1/alert-rules", tag = "insight",
    params(PageParams),
    responses((status = 200, body = Page<RuleOut>)),
    security(("bearer" = ["ALERT.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn rules(
    caller: Authorized<perm::AlertManage>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Page<RuleOut>>> {
    let (limit, offset) = page.limits()?;
    let total: i64 = sqlx::query_scalar("select count(*) from ai_alert_rule")
        .fetch_one(&state.db)
        .await?;
    let items = sqlx::query_as::<_, RuleOut>(&format!(
        "{RULE_SELECT} order by a.module nulls first, r.level, a.id limit $1 offset $2"
    ))
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRule {
    /// Module (e.g. `WO`); absent or null = every module.
    pub module: Option<String>,
    /// `Low` (default), `Medium`, `High` or `Critical`.
    pub min_severity: Option<String>,
    /// Role code.
    pub role: String,
}

/// Adds a routing rule.
#[utoipa::path(
    post, path = "/api/v1/alert-rules", tag = "insight",
    request_body = CreateRule,
    responses(
        (status = 201, body = RuleOut),
        (status = 409, description = "The same rule exists", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ALERT.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn create_rule(
    caller: Authorized<perm::AlertManage>,
    State(state): State<AdminState>,
    ApiJson(req): ApiJson<CreateRule>,
) -> Result<(StatusCode, Json<RuleOut>)> {
    let mut errors = Vec::new();
    let module = req.module.as_deref().map(|m| m.trim().to_uppercase());
    if module
        .as_deref()
        .is_some_and(|m| !(2..=10).contains(&m.len()) || !m.chars().all(|c| c.is_ascii_uppercase()))
    {
        errors.push(field_error("module", "2-10 letters, e.g. WO"));
    }
    let severity = req.min_severity.as_deref().unwrap_or("Low");
    let severity = Severity::parse(severity).map(Severity::as_str);
    if severity.is_none() {
        errors.push(field_error("min_severity", "Low, Medium, High or Critical"));
    }
    let role: Option<i64> =
        sqlx::query_scalar("select id from adm_role where code = upper($1) and deleted_at is null")
            .bind(req.role.trim())
            .fetch_optional(&state.db)
            .await?;
    if role.is_none() {
        errors.push(field_error("role", "no such role"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let mut tx = state.db.begin().await?;
    let (id, uuid): (i64, Uuid) = sqlx::query_as(
        "insert into ai_alert_rule (module, min_severity, role_id, created_by, updated_by)
         values ($1, $2, $3, $4, $4) returning id, uuid",
    )
    .bind(module)
    .bind(severity)
    .bind(role)
    .bind(caller.user_id)
    .fetch_one(&mut *tx)
    .await?;
    let new = rule_snapshot(&mut tx, id).await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "CREATE",
            entity_type: "ai_alert_rule",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: None,
            new: Some(new),
        },
    )
    .await?;
    let out = sqlx::query_as::<_, RuleOut>(&format!("{RULE_SELECT} where a.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Removes a routing rule.
#[utoipa::path(
    delete, path = "/api/v1/alert-rules/{uuid}", tag = "insight",
    params(("uuid" = Uuid, Path, description = "The rule's uuid")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such rule")),
    security(("bearer" = ["ALERT.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, rule = %uuid))]
async fn delete_rule(
    caller: Authorized<perm::AlertManage>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<StatusCode> {
    let uuid = parse_uuid(&uuid)?;
    let mut tx = state.db.begin().await?;
    let id: i64 = sqlx::query_scalar("select id from ai_alert_rule where uuid = $1 for update")
        .bind(uuid)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
    let old = rule_snapshot(&mut tx, id).await?;
    sqlx::query("delete from ai_alert_rule where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "DELETE",
            entity_type: "ai_alert_rule",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: Some(old),
            new: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rule_snapshot(conn: &mut PgConnection, id: i64) -> Result<Value> {
    Ok(sqlx::query_scalar(
        "select to_jsonb(a) || jsonb_build_object('role', r.code)
         from ai_alert_rule a join adm_role r on r.id = a.role_id where a.id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}
