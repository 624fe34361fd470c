//! Roles and permissions (`ADMIN.ROLE.MANAGE`), and the caller's menu tree (blueprint 1.7
//! flow 3, any signed-in user).
//!
//! Roles are named by their code. System roles cannot be deleted; SYSADMIN always holds every
//! permission. A caller cannot create a role that outranks theirs nor grant a permission they do
//! not hold themselves. Changing a role's permissions recomputes its menus the way the seed does.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use super::auth::{perm, Authorized, Caller};
use super::AdminState;
use super::{field_error, ApiJson, ApiQuery, ApiRouter, Page, PageParams};
use crate::audit::{self, Entry};
use crate::error::{Error, Result};
use axum::extract::FromRef;

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(set_permissions))
        .routes(routes!(permissions))
        .routes(routes!(menus))
}

/// The role that always holds every permission.
const SUPER_ROLE: &str = "SYSADMIN";

/// Why SYSADMIN's sign-in may not skip the code.
const REMEMBER_REFUSED: &str =
    "SYSADMIN always gives the code: a known address never skips it for this role";

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct RoleOut {
    /// e.g. `MANAGER_SALES`.
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    /// 1 = highest authority, 99 = lowest.
    pub level: i32,
    /// System roles cannot be deleted.
    pub is_system: bool,
    /// Sign-in needs a one-time code after the password (by WhatsApp or email).
    pub mfa_required: bool,
    /// A login from an address that completed a sign-in to the account within
    /// `auth.mfa_remember_days` skips the code.
    pub mfa_remember_address: bool,
    /// Live users holding the role.
    pub user_count: i64,
    /// Permission codes, sorted.
    pub permissions: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const ROLE_SELECT: &str = "
    select r.code, r.name, r.description, r.level, r.is_system, r.mfa_required,
           r.mfa_remember_address,
           (select count(*) from adm_user u where u.role_id = r.id and u.deleted_at is null)
               as user_count,
           array(select p.code::text from adm_role_permission rp
                 join adm_permission p on p.id = rp.permission_id
                 where rp.role_id = r.id order by p.code collate \"C\") as permissions,
           r.created_at, r.updated_at
    from adm_role r";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RoleFilter {
    /// Part of the code or name (case-insensitive).
    pub q: Option<String>,
}

/// Lists live roles, highest authority first.
#[utoipa::path(
    get, path = "/api/v1/roles", tag = "roles",
    params(PageParams, RoleFilter),
    responses((status = 200, body = Page<RoleOut>)),
    security(("bearer" = ["ADMIN.ROLE.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn list(
    caller: Authorized<perm::RoleManage>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<RoleFilter>,
) -> Result<Json<Page<RoleOut>>> {
    let (limit, offset) = page.limits()?;
    let q = f.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let filter = "where r.deleted_at is null
                    and ($1::text is null or strpos(lower(r.code || ' ' || r.name), lower($1)) > 0)";
    let total: i64 = sqlx::query_scalar(&format!("select count(*) from adm_role r {filter}"))
        .bind(q)
        .fetch_one(&state.db)
        .await?;
    let items = sqlx::query_as::<_, RoleOut>(&format!(
        "{ROLE_SELECT} {filter} order by r.level, r.code limit $2 offset $3"
    ))
    .bind(q)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}

/// One role by code.
#[utoipa::path(
    get, path = "/api/v1/roles/{code}", tag = "roles",
    params(("code" = String, Path, description = "Role code")),
    responses((status = 200, body = RoleOut), (status = 404, description = "No such role")),
    security(("bearer" = ["ADMIN.ROLE.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, role = %code))]
async fn get_one(
    caller: Authorized<perm::RoleManage>,
    State(state): State<AdminState>,
    Path(code): Path<String>,
) -> Result<Json<RoleOut>> {
    Ok(Json(fetch(&state.db, &code).await?))
}

/// A role code from the path: one PostgreSQL cannot even compare (a NUL character) names no
/// role.
fn path_code(code: &str) -> Result<&str> {
    if code.contains('\0') {
        return Err(Error::NotFound);
    }
    Ok(code)
}

async fn fetch<'e>(db: impl sqlx::PgExecutor<'e>, code: &str) -> Result<RoleOut> {
    let code = path_code(code)?;
    sqlx::query_as::<_, RoleOut>(&format!(
        "{ROLE_SELECT} where r.code = upper($1) and r.deleted_at is null"
    ))
    .bind(code)
    .fetch_optional(db)
    .await?
    .ok_or(Error::NotFound)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    /// Upper-case letters, digits and `_`, e.g. `QC_LEAD`.
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    /// 1 = highest authority, 99 = lowest; not above the caller's own.
    pub level: i32,
    /// Permission codes to grant (default none).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Sign-in needs a one-time code after the password (default false).
    #[serde(default)]
    pub mfa_required: bool,
    /// A recently used address skips the code (default false).
    #[serde(default)]
    pub mfa_remember_address: bool,
}

/// Creates a role.
#[utoipa::path(
    post, path = "/api/v1/roles", tag = "roles",
    request_body = CreateRole,
    responses(
        (status = 201, body = RoleOut),
        (status = 409, description = "The code exists", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ADMIN.ROLE.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, role = %req.code))]
async fn create(
    caller: Authorized<perm::RoleManage>,
    State(state): State<AdminState>,
    ApiJson(req): ApiJson<CreateRole>,
) -> Result<(StatusCode, Json<RoleOut>)> {
    let code = req.code.trim().to_owned();
    let mut errors = Vec::new();
    let valid_code = (2..=30).contains(&code.len())
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if !valid_code {
        errors.push(field_error(
            "code",
            "2-30 upper-case letters, digits and '_', starting with a letter",
        ));
    }
    check_texts(&mut errors, Some(&req.name), req.description.as_deref());
    if !(1..=99).contains(&req.level) {
        errors.push(field_error("level", "between 1 and 99"));
    }
    if code == SUPER_ROLE && req.mfa_remember_address {
        errors.push(field_error("mfa_remember_address", REMEMBER_REFUSED));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    caller.may_manage_level(req.level)?;
    let mut tx = state.db.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "insert into adm_role (code, name, description, level, created_by, updated_by,
                               mfa_required, mfa_remember_address)
         values ($1, $2, $3, $4, $5, $5, $6, $7) returning id",
    )
    .bind(&code)
    .bind(req.name.trim())
    .bind(req.description.as_deref().map(str::trim))
    .bind(req.level)
    .bind(caller.user_id)
    .bind(req.mfa_required)
    .bind(req.mfa_remember_address)
    .fetch_one(&mut *tx)
    .await?;
    grant(&mut tx, &caller, id, &req.permissions).await?;
    let new = snapshot(&mut tx, id).await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "CREATE",
            entity_type: "adm_role",
            entity_id: Some(id),
            entity_uuid: None,
            old: None,
            new: Some(new),
        },
    )
    .await?;
    let out = fetch(&mut *tx, &code).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRole {
    pub name: Option<String>,
    pub description: Option<String>,
    /// 1 = highest authority, 99 = lowest; not above the caller's own.
    pub level: Option<i32>,
    /// Sign-in needs a one-time code after the password.
    pub mfa_required: Option<bool>,
    /// A recently used address skips the code.
    pub mfa_remember_address: Option<bool>,
}

/// Renames a role, changes its level or its sign-in rules (second factor).
#[utoipa::path(
    patch, path = "/api/v1/roles/{code}", tag = "roles",
    params(("code" = String, Path, description = "Role code")),
    request_body = UpdateRole,
    responses((status = 200, body = RoleOut), (status = 404, description = "No such role")),
    security(("bearer" = ["ADMIN.ROLE.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, role = %code))]
async fn update(
    caller: Authorized<perm::RoleManage>,
    State(state): State<AdminState>,
    Path(code): Path<String>,
    ApiJson(req): ApiJson<UpdateRole>,
) -> Result<Json<RoleOut>> {
    let mut errors = Vec::new();
    check_texts(&mut errors, req.name.as_deref(), req.description.as_deref());
    if req.level.is_some_and(|l| !(1..=99).contains(&l)) {
        errors.push(field_error("level", "between 1 and 99"));
    }
    if code.eq_ignore_ascii_case(SUPER_ROLE) && req.mfa_remember_address == Some(true) {
        errors.push(field_error("mfa_remember_address", REMEMBER_REFUSED));
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if let Some(level) = req.level {
        caller.may_manage_level(level)?;
    }
    let mut tx = state.db.begin().await?;
    let (id, _) = lock(&mut tx, &caller, &code).await?;
    let old = snapshot(&mut tx, id).await?;
    sqlx::query(
        "update adm_role set name = coalesce($2, name), description = coalesce($3, description),
                level = coalesce($4, level), updated_by = $5,
                mfa_required = coalesce($6, mfa_required),
                mfa_remember_address = coalesce($7, mfa_remember_address)
         where id = $1",
    )
    .bind(id)
    .bind(req.name.as_deref().map(str::trim))
    .bind(req.description.as_deref().map(str::trim))
    .bind(req.level)
    .bind(caller.user_id)
    .bind(req.mfa_required)
    .bind(req.mfa_remember_address)
    .execute(&mut *tx)
    .await?;
    let new = snapshot(&mut tx, id).await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "UPDATE",
            entity_type: "adm_role",
            entity_id: Some(id),
            entity_uuid: None,
            old: Some(old),
            new: Some(new),
        },
    )
    .await?;
    let out = fetch(&mut *tx, &code).await?;
    tx.commit().await?;
    Ok(Json(out))
}

/// Deletes a role (soft). System roles and roles still held by users cannot be deleted.
#[utoipa::path(
    delete, path = "/api/v1/roles/{code}", tag = "roles",
    params(("code" = String, Path, description = "Role code")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such role"),
        (status = 409, description = "A system role, or users still hold it", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["ADMIN.ROLE.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, role = %code))]
async fn delete(
    caller: Authorized<perm::RoleManage>,
    State(state): State<AdminState>,
    Path(code): Path<String>,
) -> Result<StatusCode> {
    let mut tx = state.db.begin().await?;
    let (id, is_system) = lock(&mut tx, &caller, &code).await?;
    if is_system {
        return Err(Error::conflict("code", "system roles cannot be deleted"));
    }
    let users: i64 = sqlx::query_scalar(
        "select count(*) from adm_user where role_id = $1 and deleted_at is null",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if users > 0 {
        return Err(Error::conflict(
            "code",
            format!("{users} user(s) still hold this role; move them to another role first"),
        ));
    }
    let old = snapshot(&mut tx, id).await?;
    sqlx::query("update adm_role set deleted_at = now(), deleted_by = $2 where id = $1")
        .bind(id)
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "DELETE",
            entity_type: "adm_role",
            entity_id: Some(id),
            entity_uuid: None,
            old: Some(old),
            new: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPermissions {
    /// The complete set of permission codes the role holds from now on.
    pub permissions: Vec<String>,
}

/// Replaces a role's permissions (and recomputes its menus). SYSADMIN's cannot be changed.
#[utoipa::path(
    put, path = "/api/v1/roles/{code}/permissions", tag = "roles",
    params(("code" = String, Path, description = "Role code")),
    request_body = SetPermissions,
    responses((status = 200, body = RoleOut), (status = 404, description = "No such role")),
    security(("bearer" = ["ADMIN.ROLE.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid, role = %code))]
async fn set_permissions(
    caller: Authorized<perm::RoleManage>,
    State(state): State<AdminState>,
    Path(code): Path<String>,
    ApiJson(req): ApiJson<SetPermissions>,
) -> Result<Json<RoleOut>> {
    let mut tx = state.db.begin().await?;
    let (id, _) = lock(&mut tx, &caller, &code).await?;
    if code.eq_ignore_ascii_case(SUPER_ROLE) {
        return Err(Error::conflict(
            "code",
            "SYSADMIN always holds every permission",
        ));
    }
    let old = snapshot(&mut tx, id).await?;
    sqlx::query("delete from adm_role_permission where role_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    grant(&mut tx, &caller, id, &req.permissions).await?;
    let new = snapshot(&mut tx, id).await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "SET_PERMISSIONS",
            entity_type: "adm_role",
            entity_id: Some(id),
            entity_uuid: None,
            old: Some(old),
            new: Some(new),
        },
    )
    .await?;
    let out = fetch(&mut *tx, &code).await?;
    tx.commit().await?;
    Ok(Json(out))
}

/// Grants `codes` to role `id` (after checking each exists and the caller holds it) and
/// recomputes the role's menus.
async fn grant(conn: &mut PgConnection, caller: &Caller, id: i64, codes: &[String]) -> Result<()> {
    let known: Vec<String> = sqlx::query_scalar("select code from adm_permission")
        .fetch_all(&mut *conn)
        .await?;
    let mut errors = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        if !known.contains(code) {
            errors.push(field_error(
                &format!("permissions[{i}]"),
                &format!("unknown permission {code:?}"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    if let Some(code) = codes.iter().find(|c| !caller.has(c)) {
        return Err(Error::refused(format!(
            "You cannot grant {code}: your own role does not hold it."
        )));
    }
    sqlx::query(
        "insert into adm_role_permission (role_id, permission_id, created_by)
         select $1, p.id, $3 from adm_permission p where p.code = any($2)
         on conflict (role_id, permission_id) do nothing",
    )
    .bind(id)
    .bind(codes)
    .bind(caller.user_id)
    .execute(&mut *conn)
    .await?;
    // Same rule as the seed: menus whose permission the role holds, permission-free leaves,
    // and the ancestors of those.
    sqlx::query("delete from adm_role_menu where role_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "insert into adm_role_menu (role_id, menu_id)
         with recursive granted (menu_id, parent_id) as (
             select m.id, m.parent_id
             from adm_menu m
             join adm_permission p on p.code = m.permission_code
             join adm_role_permission rp on rp.permission_id = p.id and rp.role_id = $1
             union
             select m.id, m.parent_id
             from adm_menu m
             where m.permission_code is null
               and not exists (select 1 from adm_menu c where c.parent_id = m.id)
             union
             select m.id, m.parent_id
             from granted g
             join adm_menu m on m.id = g.parent_id
         )
         select distinct $1::bigint, menu_id from granted",
    )
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Locks a live role row; `(id, is_system)`. The caller may not change a role above theirs.
async fn lock(conn: &mut PgConnection, caller: &Caller, code: &str) -> Result<(i64, bool)> {
    let code = path_code(code)?;
    let (id, level, is_system): (i64, i32, bool) = sqlx::query_as(
        "select id, level, is_system from adm_role
         where code = upper($1) and deleted_at is null for update",
    )
    .bind(code)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound)?;
    caller.may_manage_level(level)?;
    Ok((id, is_system))
}

async fn snapshot(conn: &mut PgConnection, id: i64) -> Result<Value> {
    let (mut role, permissions): (Value, Vec<String>) = sqlx::query_as(
        "select to_jsonb(r),
                array(select p.code::text from adm_role_permission rp
                      join adm_permission p on p.id = rp.permission_id
                      where rp.role_id = r.id order by p.code collate \"C\")
         from adm_role r where r.id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    if let Value::Object(map) = &mut role {
        map.insert("permissions".to_owned(), json!(permissions));
    }
    Ok(role)
}

fn check_texts(
    errors: &mut Vec<crate::error::FieldError>,
    name: Option<&str>,
    description: Option<&str>,
) {
    if name.is_some_and(|n| n.trim().is_empty() || n.chars().count() > 100) {
        errors.push(field_error("name", "1 to 100 characters"));
    }
    if description.is_some_and(|d| d.chars().count() > 255) {
        errors.push(field_error("description", "at most 255 characters"));
    }
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct PermissionOut {
    /// e.g. `SO.READ`.
    pub code: String,
    pub module: String,
    pub action: String,
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PermissionFilter {
    /// Module, e.g. `SO`, `ADMIN`.
    pub module: Option<String>,
}

/// The permission catalogue.
#[utoipa::path(
    get, path = "/api/v1/permissions", tag = "roles",
    params(PageParams, PermissionFilter),
    responses((status = 200, body = Page<PermissionOut>)),
    security(("bearer" = ["ADMIN.ROLE.MANAGE"]))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn permissions(
    caller: Authorized<perm::RoleManage>,
    State(state): State<AdminState>,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(f): ApiQuery<PermissionFilter>,
) -> Result<Json<Page<PermissionOut>>> {
    let (limit, offset) = page.limits()?;
    let filter = "where ($1::text is null or module = upper($1))";
    let total: i64 = sqlx::query_scalar(&format!("select count(*) from adm_permission {filter}"))
        .bind(&f.module)
        .fetch_one(&state.db)
        .await?;
    let items = sqlx::query_as::<_, PermissionOut>(&format!(
        "select code, module, action, name, description from adm_permission {filter}
         order by module, code limit $2 offset $3"
    ))
    .bind(&f.module)
    .bind(i64::from(limit))
    .bind(i64::from(offset))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.page(items, total)))
}

/// A node of the sidebar menu.
#[derive(Debug, Serialize, ToSchema)]
pub struct MenuNode {
    /// e.g. `MENU_SO`.
    pub code: String,
    pub name: String,
    pub icon: Option<String>,
    /// Front-end route; null for a group.
    pub path: Option<String>,
    #[schema(no_recursion)]
    pub children: Vec<MenuNode>,
}

#[derive(sqlx::FromRow)]
struct MenuRow {
    id: i64,
    parent_id: Option<i64>,
    code: String,
    name: String,
    icon: Option<String>,
    path: Option<String>,
}

/// The caller's sidebar: active menus of their role whose permission they hold, nested and in
/// order; groups left without a visible child are dropped.
#[utoipa::path(
    get, path = "/api/v1/menus", tag = "menus",
    responses((status = 200, body = Vec<MenuNode>)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(caller = %caller.user_uuid))]
async fn menus(caller: Caller, State(state): State<AdminState>) -> Result<Json<Vec<MenuNode>>> {
    let rows: Vec<MenuRow> = sqlx::query_as(
        "select m.id, m.parent_id, m.code, m.name, m.icon, m.path
         from adm_role_menu rm
         join adm_menu m on m.id = rm.menu_id
         where rm.role_id = $1 and m.is_active
           and (m.permission_code is null or m.permission_code = any($2))
         order by m.parent_id nulls first, m.sort_order, m.code",
    )
    .bind(caller.role_id)
    .bind(&caller.permissions)
    .fetch_all(&state.db)
    .await?;
    Ok(Json(tree(&rows)))
}

fn tree(rows: &[MenuRow]) -> Vec<MenuNode> {
    let mut children: BTreeMap<Option<i64>, Vec<&MenuRow>> = BTreeMap::new();
    for row in rows {
        children.entry(row.parent_id).or_default().push(row);
    }
    fn build(
        parent: Option<i64>,
        children: &BTreeMap<Option<i64>, Vec<&MenuRow>>,
    ) -> Vec<MenuNode> {
        children
            .get(&parent)
            .map(|rows| {
                rows.iter()
                    .map(|r| MenuNode {
                        code: r.code.clone(),
                        name: r.name.clone(),
                        icon: r.icon.clone(),
                        path: r.path.clone(),
                        children: build(Some(r.id), children),
                    })
                    // A group (no path) with nothing visible under it is noise.
                    .filter(|n| n.path.is_some() || !n.children.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
    build(None, &children)
}
