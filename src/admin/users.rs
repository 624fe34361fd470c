//! Users (`adm_user`) and their WhatsApp identity: list, get, create, update, activate and
//! deactivate, soft delete, password reset, unlock, phone, email, revoke the WhatsApp device.
//!
//! A caller cannot act on a user whose role outranks theirs, nor hand out such a role, nor
//! deactivate or delete themselves. Deactivation, deletion and password resets revoke the
//! user's sessions in the same transaction.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgConnection, Postgres, Transaction};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{perm, revoke_user_sessions, Authorized, Caller};
use super::password;
use super::AdminState;
use super::{field_error, parse_uuid, ApiJson, ApiQuery, ApiRouter, Page, PageParams};
use crate::audit::{self, Entry};
use crate::domain::phone::PhoneE164;
use crate::error::{Error, FieldError, Result};
use axum::extract::FromRef;

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(activate))
        .routes(routes!(deactivate))
        .routes(routes!(reset_password))
        .routes(routes!(unlock))
        .routes(routes!(set_phone))
        .routes(routes!(set_email))
        .routes(routes!(revoke_device))
}

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct UserOut {
    pub uuid: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub full_name: String,
    /// WhatsApp phone, E.164.
    pub phone: Option<String>,
    /// Meta's business-scoped user id, when known.
    pub bsuid: Option<String>,
    /// Role code.
    pub role: String,
    pub role_name: String,
    /// Language of the bot's answers: `id` or `en`.
    pub lang: String,
    pub is_active: bool,
    /// Whether the account is locked after failed logins right now.
    pub is_locked: bool,
    pub locked_until: Option<DateTime<Utc>>,
    pub failed_login_count: i32,
    /// Whether a password is set (users who only chat on WhatsApp need none).
    pub has_password: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub password_changed_at: Option<DateTime<Utc>>,
    /// The next login may only change the password (set by an admin's reset).
    pub must_change_password: bool,
    /// When an admin last revoked the WhatsApp device (a new email OTP is required after it).
    pub wa_revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const USER_SELECT: &str = "
    select u.uuid, u.username, u.email, u.full_name, u.phone, u.bsuid, r.code as role,
           r.name as role_name, u.lang, u.is_active,
           coalesce(u.locked_until > now() or u.known_unlock_at > now(), false) as is_locked, u.locked_until,
           u.failed_login_count, u.password_hash is not null as has_password, u.last_login,
           u.password_changed_at, u.must_change_password, u.wa_revoked_at, u.created_at,
           u.updated_at
    from adm_user u join adm_role r on r.id = u.role_id";

/// Filters of the user list; all optional, combined with AND.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Part of the username, email, full name or phone (case-insensitive).
    pub q: Option<String>,
    /// Role code.
    pub role: Option<String>,
    /// Active or inactive users only.
    pub is_active: Option<bool>,
}

const LIST_FILTER: &str = "
    where u.deleted_at is null
      and ($1::text is null or u.username ilike $1 or u.email ilike $1
           or u.full_name ilike $1 or u.phone ilike $1)
      and ($2::text is null or r.code = upper($2))
      and ($3::bool is null or u.is_active = $3)";

/// Lists live (not deleted) users, by username.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "users",
    params(PageParams, UserFilter),
    responses((status = 200, body = Page<UserOut>)),
    security(("bearer" = ["ADMIN.USER.READ"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn list(
    caller: Authorized<perm::UserRead>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<UserFilter>,
) -> Result<Json<Page<UserOut>>> {
    let (limit, offset) = page.limits()?;
    let q = f.q.as_deref().and_then(like_pattern);
    let total: i64 = sqlx::query_scalar(&format!(
        "select count(*) from adm_user u join adm_role r on r.id = u.role_id {LIST_FILTER}"
    ))
    .bind(&q)
    .bind(&f.role)
    .bind(f.is_active)
    .fetch_one(&state.db)
    .await?;
    let items = sqlx::query_as::<_, UserOut>(&format!(
        "{USER_SELECT} {LIST_FILTER} order by u.username limit $4 offset $5"
    ))
    .bind(&q)
    .bind(&f.role)
    .bind(f.is_active)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}

/// `%text%` for ILIKE with the wildcards in `text` escaped; None for an empty search.
fn like_pattern(q: &str) -> Option<String> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(q.len() + 2);
    out.push('%');
    for c in q.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    Some(out)
}

/// One user by uuid.
#[utoipa::path(
    get, path = "/api/v1/users/{uuid}", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    responses((status = 200, body = UserOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.READ"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn get_one(
    caller: Authorized<perm::UserRead>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    Ok(Json(fetch(&state.db, uuid).await?))
}

async fn fetch<'e>(db: impl sqlx::PgExecutor<'e>, uuid: Uuid) -> Result<UserOut> {
    sqlx::query_as::<_, UserOut>(&format!(
        "{USER_SELECT} where u.uuid = $1 and u.deleted_at is null"
    ))
    .bind(uuid)
    .fetch_optional(db)
    .await?
    .ok_or(Error::NotFound)
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// 2-50 characters: lower-case letters, digits, `.`, `_`, `-` (stored lower-case).
    pub username: String,
    pub email: Option<String>,
    pub full_name: String,
    /// Role code, e.g. `MANAGER_SALES`.
    pub role: String,
    /// WhatsApp phone: E.164, or Indonesian `08…` / `62…`; stored as `+62…`.
    pub phone: Option<String>,
    /// `id` (default) or `en`.
    pub lang: Option<String>,
    /// Optional: users who only chat on WhatsApp need no password. The user must change it at
    /// the first login (the admin knows it).
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
}

/// Creates a user. Needs `ADMIN.USER.CREATE`; the role may not outrank the caller's.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, body = UserOut),
        (status = 409, description = "Username, email or phone already used", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ADMIN.USER.CREATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn create(
    caller: Authorized<perm::UserCreate>,
    State(state): State<AdminState>,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserOut>)> {
    let mut errors = Vec::new();
    let username = req.username.trim().to_lowercase();
    if !valid_username(&username) {
        errors.push(field_error(
            "username",
            "2-50 characters: lower-case letters, digits, '.', '_', '-', starting with a letter or digit",
        ));
    }
    let email = collect(&mut errors, "email", req.email.as_deref().map(parse_email));
    let full_name = req.full_name.trim().to_owned();
    if full_name.is_empty() || full_name.chars().count() > 100 {
        errors.push(field_error("full_name", "1 to 100 characters"));
    }
    let phone = collect(&mut errors, "phone", req.phone.as_deref().map(parse_phone));
    let lang = req.lang.as_deref().unwrap_or("id");
    if !matches!(lang, "id" | "en") {
        errors.push(field_error("lang", "must be 'id' or 'en'"));
    }
    if let Some(p) = &req.password {
        let owner = password::Owner {
            username: &username,
            full_name: &full_name,
            email: email.as_ref().and_then(|e| e.as_deref()),
        };
        if let Err(m) = state.auth.hasher.check_policy(p, &owner) {
            errors.push(field_error("password", &m));
        }
    }
    let role = role_by_code(&state.db, &req.role).await?;
    if role.is_none() {
        errors.push(field_error("role", "no such role"));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let (role_id, role_level, role_permissions) = role.expect("checked above");
    caller.may_assign(role_level, &role_permissions)?;
    let hash = match req.password {
        Some(p) => Some(state.auth.hasher.hash(p).await?),
        None => None,
    };
    let mut tx = state.db.begin().await?;
    let (id, uuid): (i64, Uuid) = sqlx::query_as(
        "insert into adm_user (username, email, full_name, phone, role_id, lang, password_hash,
                               password_changed_at, must_change_password, created_by, updated_by)
         values ($1, $2, $3, $4, $5, $6, $7, case when $7 is null then null else now() end,
                 $7 is not null, $8, $8)
         returning id, uuid",
    )
    .bind(&username)
    .bind(email.flatten())
    .bind(&full_name)
    .bind(phone.flatten().map(|p| p.to_string()))
    .bind(role_id)
    .bind(lang)
    .bind(hash.as_deref())
    .bind(caller.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if let Some(hash) = &hash {
        state.auth.hasher.remember(&mut tx, id, hash).await?;
    }
    let new = snapshot(&mut tx, id).await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "CREATE",
            entity_type: "adm_user",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: None,
            new: Some(new),
        },
    )
    .await?;
    let out = fetch(&mut *tx, uuid).await?;
    tx.commit().await?;
    tracing::info!(user = %uuid, "user created");
    Ok((StatusCode::CREATED, Json(out)))
}

/// Changes to a user; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub full_name: Option<String>,
    /// Role code.
    pub role: Option<String>,
    /// `id` or `en`.
    pub lang: Option<String>,
}

/// Updates a user's name, role or language.
#[utoipa::path(
    patch, path = "/api/v1/users/{uuid}", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    request_body = UpdateUser,
    responses((status = 200, body = UserOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn update(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    let mut errors = Vec::new();
    let full_name = req.full_name.as_deref().map(str::trim);
    if full_name.is_some_and(|n| n.is_empty() || n.chars().count() > 100) {
        errors.push(field_error("full_name", "1 to 100 characters"));
    }
    if req
        .lang
        .as_deref()
        .is_some_and(|l| !matches!(l, "id" | "en"))
    {
        errors.push(field_error("lang", "must be 'id' or 'en'"));
    }
    let role = match &req.role {
        Some(code) => match role_by_code(&state.db, code).await? {
            Some(r) => Some(r),
            None => {
                errors.push(field_error("role", "no such role"));
                None
            }
        },
        None => None,
    };
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if let Some((_, level, permissions)) = &role {
        caller.may_assign(*level, permissions)?;
    }
    let full_name = full_name.map(str::to_owned);
    let lang = req.lang;
    let by = caller.user_id;
    mutate(&state, &caller, uuid, "UPDATE", |tx, id| {
        Box::pin(async move {
            sqlx::query(
                "update adm_user set full_name = coalesce($2, full_name),
                        role_id = coalesce($3, role_id), lang = coalesce($4, lang),
                        updated_by = $5
                 where id = $1",
            )
            .bind(id)
            .bind(full_name)
            .bind(role.map(|(id, _, _)| id))
            .bind(lang)
            .bind(by)
            .execute(&mut **tx)
            .await?;
            Ok(None)
        })
    })
    .await
    .map(Json)
}

/// Allows the user to sign in and to chat again.
#[utoipa::path(
    post, path = "/api/v1/users/{uuid}/activate", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    responses((status = 200, body = UserOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn activate(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    set_active(&state, &caller, uuid, true).await.map(Json)
}

/// Stops the user from signing in and chatting; their sessions end at once.
#[utoipa::path(
    post, path = "/api/v1/users/{uuid}/deactivate", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    responses((status = 200, body = UserOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn deactivate(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    if uuid == caller.user_uuid {
        return Err(Error::conflict("uuid", "you cannot deactivate yourself"));
    }
    set_active(&state, &caller, uuid, false).await.map(Json)
}

async fn set_active(
    state: &AdminState,
    caller: &Caller,
    uuid: Uuid,
    active: bool,
) -> Result<UserOut> {
    let action = if active { "ACTIVATE" } else { "DEACTIVATE" };
    mutate(state, caller, uuid, action, |tx, id| {
        let by = caller.user_id;
        Box::pin(async move {
            sqlx::query("update adm_user set is_active = $2, updated_by = $3 where id = $1")
                .bind(id)
                .bind(active)
                .bind(by)
                .execute(&mut **tx)
                .await?;
            if !active {
                let revoked = revoke_user_sessions(tx, id, "deactivated").await?;
                return Ok(Some(json!({ "revoked_sessions": revoked })));
            }
            Ok(None)
        })
    })
    .await
}

/// Soft-deletes a user: gone from lists and sign-in, their username, email and phone freed;
/// sessions end at once. The audit trail keeps them.
#[utoipa::path(
    delete, path = "/api/v1/users/{uuid}", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.DELETE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn delete(
    caller: Authorized<perm::UserDelete>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<StatusCode> {
    let uuid = parse_uuid(&uuid)?;
    if uuid == caller.user_uuid {
        return Err(Error::conflict("uuid", "you cannot delete yourself"));
    }
    let by = caller.user_id;
    mutate(&state, &caller, uuid, "DELETE", |tx, id| {
        Box::pin(async move {
            sqlx::query(
                "update adm_user set deleted_at = now(), deleted_by = $2, is_active = false,
                        updated_by = $2
                 where id = $1",
            )
            .bind(id)
            .bind(by)
            .execute(&mut **tx)
            .await?;
            revoke_user_sessions(tx, id, "deleted").await?;
            Ok(None)
        })
    })
    .await
    .map(|_| StatusCode::NO_CONTENT)
}

/// A password reset.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    /// The new password; when absent a random one is generated and returned once.
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<SecretString>,
}

#[derive(Serialize, ToSchema)]
pub struct ResetPasswordOut {
    pub user: UserOut,
    /// The generated password, shown this once (absent when the caller chose one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_password: Option<String>,
}

/// Sets a new password, unlocks the account and ends its sessions; the user must change it at
/// the next login. Needs `ADMIN.USER.RESET_PWD`.
#[utoipa::path(
    post, path = "/api/v1/users/{uuid}/reset-password", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    request_body = ResetPassword,
    responses((status = 200, body = ResetPasswordOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.RESET_PWD"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn reset_password(
    caller: Authorized<perm::UserResetPwd>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
    ApiJson(req): ApiJson<ResetPassword>,
) -> Result<Json<ResetPasswordOut>> {
    let uuid = parse_uuid(&uuid)?;
    // Refuse before paying for a hash.
    target(&state.db, &caller, uuid).await?;
    let (password, generated) = match req.password {
        Some(p) => {
            let (username, full_name, email): (String, String, Option<String>) =
                sqlx::query_as("select username, full_name, email from adm_user where uuid = $1")
                    .bind(uuid)
                    .fetch_one(&state.db)
                    .await?;
            let owner = password::Owner {
                username: &username,
                full_name: &full_name,
                email: email.as_deref(),
            };
            state
                .auth
                .hasher
                .check_policy(&p, &owner)
                .map_err(|m| Error::invalid("password", m))?;
            (p, false)
        }
        None => (password::generate(), true),
    };
    let shown = generated.then(|| secrecy::ExposeSecret::expose_secret(&password).to_owned());
    let hash = state.auth.hasher.hash(password).await?;
    let hasher = state.auth.hasher.clone();
    let by = caller.user_id;
    let user = mutate(&state, &caller, uuid, "RESET_PWD", |tx, id| {
        Box::pin(async move {
            hasher.remember(tx, id, &hash).await?;
            sqlx::query(&format!(
                "update adm_user set password_hash = $2, password_changed_at = now(),
                        must_change_password = true, {CLEAR_LOCKS}, updated_by = $3
                 where id = $1"
            ))
            .bind(id)
            .bind(&hash)
            .bind(by)
            .execute(&mut **tx)
            .await?;
            let revoked = revoke_user_sessions(tx, id, "password_reset").await?;
            Ok(Some(json!({ "revoked_sessions": revoked })))
        })
    })
    .await?;
    Ok(Json(ResetPasswordOut {
        user,
        temporary_password: shown,
    }))
}

/// Lifts a lockout after failed logins.
#[utoipa::path(
    post, path = "/api/v1/users/{uuid}/unlock", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    responses((status = 200, body = UserOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn unlock(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    let by = caller.user_id;
    mutate(&state, &caller, uuid, "UNLOCK", |tx, id| {
        Box::pin(async move {
            sqlx::query(&format!(
                "update adm_user set {CLEAR_LOCKS}, updated_by = $2 where id = $1"
            ))
            .bind(id)
            .bind(by)
            .execute(&mut **tx)
            .await?;
            Ok(None)
        })
    })
    .await
    .map(Json)
}

/// The WhatsApp phone of a user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPhone {
    /// E.164 or Indonesian `08…` / `62…` / `+62…`; null removes the phone.
    pub phone: Option<String>,
}

/// Sets (or removes) the phone the user chats from. A new number must be confirmed again by
/// email OTP: the known BSUID is dropped and the device revoked.
#[utoipa::path(
    put, path = "/api/v1/users/{uuid}/phone", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    request_body = SetPhone,
    responses(
        (status = 200, body = UserOut),
        (status = 409, description = "Another live user has this phone", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn set_phone(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
    ApiJson(req): ApiJson<SetPhone>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    let phone = match req.phone.as_deref() {
        Some(p) => Some(parse_phone(p).map_err(|m| Error::invalid("phone", m))?),
        None => None,
    };
    let by = caller.user_id;
    mutate(&state, &caller, uuid, "UPDATE", |tx, id| {
        Box::pin(async move {
            sqlx::query(
                "update adm_user set
                     bsuid = case when phone is distinct from $2 then null else bsuid end,
                     wa_revoked_at = case when phone is distinct from $2 then now()
                                          else wa_revoked_at end,
                     phone = $2, updated_by = $3
                 where id = $1",
            )
            .bind(id)
            .bind(phone.map(|p| p.to_string()))
            .bind(by)
            .execute(&mut **tx)
            .await?;
            Ok(None)
        })
    })
    .await
    .map(Json)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetEmail {
    /// The company email (OTP codes go there); null removes it.
    pub email: Option<String>,
}

/// Sets (or removes) the user's email.
#[utoipa::path(
    put, path = "/api/v1/users/{uuid}/email", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    request_body = SetEmail,
    responses(
        (status = 200, body = UserOut),
        (status = 409, description = "Another live user has this email", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn set_email(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
    ApiJson(req): ApiJson<SetEmail>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    let email = match req.email.as_deref() {
        Some(e) => Some(parse_email(e).map_err(|m| Error::invalid("email", m))?),
        None => None,
    };
    let by = caller.user_id;
    mutate(&state, &caller, uuid, "UPDATE", |tx, id| {
        Box::pin(async move {
            sqlx::query("update adm_user set email = $2, updated_by = $3 where id = $1")
                .bind(id)
                .bind(email)
                .bind(by)
                .execute(&mut **tx)
                .await?;
            Ok(None)
        })
    })
    .await
    .map(Json)
}

/// Revokes the user's trusted WhatsApp device: their next message asks for a new email OTP.
#[utoipa::path(
    post, path = "/api/v1/users/{uuid}/revoke-device", tag = "users",
    params(("uuid" = Uuid, Path, description = "The user's uuid")),
    responses((status = 200, body = UserOut), (status = 404, description = "No such user")),
    security(("bearer" = ["ADMIN.USER.UPDATE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, user = %uuid))]
async fn revoke_device(
    caller: Authorized<perm::UserUpdate>,
    State(state): State<AdminState>,
    Path(uuid): Path<String>,
) -> Result<Json<UserOut>> {
    let uuid = parse_uuid(&uuid)?;
    let by = caller.user_id;
    mutate(&state, &caller, uuid, "REVOKE_DEVICE", |tx, id| {
        Box::pin(async move {
            sqlx::query("update adm_user set wa_revoked_at = now(), updated_by = $2 where id = $1")
                .bind(id)
                .bind(by)
                .execute(&mut **tx)
                .await?;
            Ok(None)
        })
    })
    .await
    .map(Json)
}

type Change<'t> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<Value>>> + Send + 't>>;

/// The shape of every change to a user: lock the row, check the caller may manage it, snapshot,
/// change, snapshot, audit (with any extra facts the change returns), commit, answer.
async fn mutate<F>(
    state: &AdminState,
    caller: &Caller,
    uuid: Uuid,
    action: &str,
    change: F,
) -> Result<UserOut>
where
    F: for<'t> FnOnce(&'t mut Transaction<'static, Postgres>, i64) -> Change<'t>,
{
    let mut tx = state.db.begin().await?;
    let (id, level): (i64, i32) = sqlx::query_as(
        "select u.id, r.level from adm_user u join adm_role r on r.id = u.role_id
         where u.uuid = $1 and u.deleted_at is null
         for update of u",
    )
    .bind(uuid)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(Error::NotFound)?;
    if uuid != caller.user_uuid {
        caller.may_manage_level(level)?;
    }
    let old = snapshot(&mut tx, id).await?;
    let extra = change(&mut tx, id).await?;
    let mut new = snapshot(&mut tx, id).await?;
    if let (Some(Value::Object(extra)), Value::Object(new)) = (extra, &mut new) {
        new.extend(extra);
    }
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action,
            entity_type: "adm_user",
            entity_id: Some(id),
            entity_uuid: Some(uuid),
            old: Some(old),
            new: Some(new),
        },
    )
    .await?;
    // A deleted user is no longer shown; answer with what they were.
    let out = sqlx::query_as::<_, UserOut>(&format!("{USER_SELECT} where u.id = $1"))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(action, user = %uuid, "user changed");
    Ok(out)
}

/// Checks the user exists and the caller may manage them, without changing anything.
pub(crate) async fn target(db: &sqlx::PgPool, caller: &Caller, uuid: Uuid) -> Result<()> {
    let level: i32 = sqlx::query_scalar(
        "select r.level from adm_user u join adm_role r on r.id = u.role_id
         where u.uuid = $1 and u.deleted_at is null",
    )
    .bind(uuid)
    .fetch_optional(db)
    .await?
    .ok_or(Error::NotFound)?;
    if uuid != caller.user_uuid {
        caller.may_manage_level(level)?;
    }
    Ok(())
}

/// The row as JSON for the audit log, without the password hash.
async fn snapshot(conn: &mut PgConnection, id: i64) -> Result<Value> {
    Ok(
        sqlx::query_scalar("select to_jsonb(u) - 'password_hash' from adm_user u where id = $1")
            .bind(id)
            .fetch_one(conn)
            .await?,
    )
}

/// The SQL assignments that lift every login lock of a user: strangers' addresses' count and
/// lock, and those of the addresses the user signed in from (see `admin::auth::login`).
pub(crate) const CLEAR_LOCKS: &str =
    "failed_login_count = 0, locked_until = null, known_fails = 0, known_unlock_at = null";

/// `(id, level, permission codes)` of a live role by code.
async fn role_by_code(db: &sqlx::PgPool, code: &str) -> Result<Option<(i64, i32, Vec<String>)>> {
    Ok(sqlx::query_as(
        "select r.id, r.level,
                array(select p.code::text from adm_role_permission rp
                      join adm_permission p on p.id = rp.permission_id
                      where rp.role_id = r.id order by p.code)
         from adm_role r where r.code = upper($1) and r.deleted_at is null",
    )
    .bind(code.trim())
    .fetch_optional(db)
    .await?)
}

fn valid_username(u: &str) -> bool {
    let len = u.chars().count();
    (2..=50).contains(&len)
        && u.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && u.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// A plausible email, trimmed; the mailer is the real test.
pub(crate) fn parse_email(e: &str) -> Result<String, &'static str> {
    let e = e.trim();
    let valid = e.len() <= 255
        && !e.chars().any(char::is_whitespace)
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(e.to_owned())
    } else {
        Err("not an email address")
    }
}

pub(crate) fn parse_phone(p: &str) -> Result<PhoneE164, &'static str> {
    PhoneE164::parse(p).map_err(|_| {
        "not a phone number: use E.164 (+6281234567890) or an Indonesian form (0812…, 62812…)"
    })
}

/// Collects a field's parse error, keeping the parsed value.
fn collect<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    parsed: Option<Result<T, &'static str>>,
) -> Option<Option<T>> {
    match parsed {
        None => Some(None),
        Some(Ok(v)) => Some(Some(v)),
        Some(Err(m)) => {
            errors.push(field_error(field, m));
            None
        }
    }
}
