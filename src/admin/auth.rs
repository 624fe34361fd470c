//! Sign-in (blueprint 1.7 flow 1 and section 3) and the per-request access check (flow 2).
//!
//! - `POST /api/v1/auth/login`: per-IP throttle → user by username or email → one argon2 verify
//!   (a dummy one when there is nothing real to check) → inactive, locked or wrong: the same 401;
//!   a wrong password counts towards the lockout → success: an `adm_session` row, `last_login`,
//!   a `LOGIN` audit row, an access token and a refresh token.
//! - `POST /api/v1/auth/refresh`: rotates the refresh token; presenting a rotated one again
//!   revokes its whole session family.
//! - `POST /api/v1/auth/logout`: revokes the caller's session family.
//! - Every authenticated request: bearer JWT → the session row it names must be unrevoked and
//!   unexpired, its user active and not deleted → the role's permissions. So logout, force
//!   logout, deactivation and password resets take effect on the next request.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::routes;
use uuid::Uuid;

use super::password::{Hasher, Owner, MAX_PASSWORD_BYTES};
use super::second_factor::{void_open, ChallengeResponse, Challenged};
use super::throttle::Throttle;
use super::token::{hash_token, new_refresh_token, Tokens};
use super::AdminState;
use super::{mask, ApiJson, ApiRouter};
use crate::audit::{self, Entry};
use crate::config::AuthSettings;
use crate::error::{Error, Result};

pub(crate) fn router<S>() -> ApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AdminState: FromRef<S>,
{
    ApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

/// What sign-in needs at hand: token keys, the bounded hasher, the throttle and the policy.
/// Cheap to clone; lives in [`AdminState`].
#[derive(Clone)]
pub struct Auth(Arc<AuthInner>);

pub struct AuthInner {
    pub tokens: Tokens,
    pub hasher: Hasher,
    pub throttle: Throttle,
    pub settings: AuthSettings,
}

impl Deref for Auth {
    type Target = AuthInner;
    fn deref(&self) -> &AuthInner {
        &self.0
    }
}

impl Auth {
    pub fn new(settings: &AuthSettings) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(AuthInner {
            tokens: Tokens::new(settings),
            hasher: Hasher::new(settings)?,
            throttle: Throttle::new(settings.login_burst, settings.login_per_minute),
            settings: settings.clone(),
        })))
    }
}

/// A permission code as a type, so a handler's signature states what it needs and the check
/// runs before the body is even read.
pub trait Permission {
    const CODE: &'static str;
}

/// The permission codes the API checks (seeded by migration).
pub mod perm {
    use super::Permission;

    macro_rules! permissions {
        ($($name:ident = $code:literal),* $(,)?) => {
            $(
                #[doc = concat!("`", $code, "`")]
                pub struct $name;
                impl Permission for $name {
                    const CODE: &'static str = $code;
                }
            )*
        };
    }

    permissions! {
        UserCreate = "ADMIN.USER.CREATE",
        UserRead = "ADMIN.USER.READ",
        UserUpdate = "ADMIN.USER.UPDATE",
        UserDelete = "ADMIN.USER.DELETE",
        UserResetPwd = "ADMIN.USER.RESET_PWD",
        RoleManage = "ADMIN.ROLE.MANAGE",
        AuditView = "ADMIN.AUDIT.VIEW",
        SessionManage = "ADMIN.SESSION.MANAGE",
        AlertRead = "ALERT.READ",
        AlertAck = "ALERT.ACK",
        AlertManage = "ALERT.MANAGE",
    }
}

/// The authenticated caller of a request, with a live session.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: i64,
    pub user_uuid: Uuid,
    pub username: String,
    pub role_id: i64,
    pub role_code: String,
    /// 1 = highest authority.
    pub role_level: i32,
    /// The session row the token names.
    pub session_id: i64,
    /// The login this session belongs to (stable across refreshes).
    pub family_id: Uuid,
    /// Permission codes of the role, sorted.
    pub permissions: Vec<String>,
    /// The caller's address, for the audit log.
    pub ip: Option<String>,
    /// The session may only change the password (expired, or reset by an admin).
    pub password_only: bool,
}

impl Caller {
    pub fn has(&self, code: &str) -> bool {
        self.permissions
            .binary_search_by(|p| p.as_str().cmp(code))
            .is_ok()
    }

    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }

    /// Refuses acting on (or handing out) a role that outranks the caller's.
    /// Whether the caller may give someone (themselves included) the role of `level` holding
    /// `permissions`: not above their own, and nothing in it they do not hold themselves — the
    /// rule of granting permissions to a role.
    pub fn may_assign(&self, level: i32, permissions: &[String]) -> Result<()> {
        self.may_manage_level(level)?;
        if let Some(code) = permissions.iter().find(|p| !self.has(p)) {
            return Err(Error::refused(format!(
                "You cannot assign this role: it holds {code}, which your own role does not."
            )));
        }
        Ok(())
    }

    pub fn may_manage_level(&self, level: i32) -> Result<()> {
        if level < self.role_level {
            return Err(Error::refused(
                "That role outranks yours: only a user of an equal or higher role may do this.",
            ));
        }
        Ok(())
    }
}

/// The client's address: the peer; or, when `auth.trust_forwarded_for` is on, the right-most
/// `X-Forwarded-For` address that is not a trusted proxy (the left part of the header is
/// whatever the client wrote). With proxies listed, only a peer that is one of them is believed;
/// an unreadable hop ends the walk at the last address known good.
pub fn client_ip(parts: &Parts, settings: &AuthSettings) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !settings.trust_forwarded_for {
        return peer;
    }
    let proxies = &settings.trusted_proxies;
    let trusted = |ip: IpAddr| proxies.iter().any(|c| c.contains(ip));
    if !proxies.is_empty() && !peer.is_some_and(trusted) {
        return peer;
    }
    let hops: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = Some(ip);
        if !trusted(ip) {
            break;
        }
    }
    client
}

/// The caller's address as an extractor (login and refresh have no [`Caller`] yet).
pub struct ClientIp(pub Option<IpAddr>);

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    AdminState: FromRef<S>,
{
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let state = AdminState::from_ref(state);
        Ok(ClientIp(client_ip(parts, &state.auth.settings)))
    }
}

/// The session check of every request, one query.
const SESSION_QUERY: &str = "
    select s.id as session_id, s.family_id, s.scope = 'password' as password_only,
           s.last_activity_at is null or s.last_activity_at < now() - interval '1 minute' as stale,
           u.id as user_id, u.uuid as user_uuid, u.username, u.role_id, r.code as role_code,
           r.level as role_level,
           array(select p.code::text from adm_role_permission rp
                 join adm_permission p on p.id = rp.permission_id
                 where rp.role_id = u.role_id order by p.code) as permissions
    from adm_session s
    join adm_user u on u.id = s.user_id
    join adm_role r on r.id = u.role_id
    where s.uuid = $1 and u.uuid = $2
      and not s.is_revoked and s.expires_at > now()
      and u.is_active and u.deleted_at is null and r.deleted_at is null";

#[derive(sqlx::FromRow)]
struct SessionRow {
    session_id: i64,
    family_id: Uuid,
    password_only: bool,
    stale: bool,
    user_id: i64,
    user_uuid: Uuid,
    username: String,
    role_id: i64,
    role_code: String,
    role_level: i32,
    permissions: Vec<String>,
}

/// What a session that may only change its password is told elsewhere.
const PASSWORD_FIRST: &str =
    "Your password has expired or was reset: change it first (POST /api/v1/auth/password).";

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AdminState: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let caller = signed_in(parts, state).await?;
        if caller.password_only {
            return Err(Error::refused(PASSWORD_FIRST));
        }
        Ok(caller)
    }
}

/// Any caller with a live session, also one that may only change its password: for logout,
/// `me` and the password change.
pub struct SignedIn(pub Caller);

impl<S> FromRequestParts<S> for SignedIn
where
    S: Send + Sync,
    AdminState: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Ok(SignedIn(signed_in(parts, state).await?))
    }
}

/// The session check (cached in the request's extensions).
async fn signed_in<S>(parts: &mut Parts, state: &S) -> Result<Caller>
where
    S: Send + Sync,
    AdminState: FromRef<S>,
{
    if let Some(caller) = parts.extensions.get::<Caller>() {
        return Ok(caller.clone());
    }
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or(Error::Unauthorized)?;
    let state = AdminState::from_ref(state);
    let claims = state
        .auth
        .tokens
        .verify(token.trim())
        .ok_or(Error::Unauthorized)?;
    let row: SessionRow = sqlx::query_as(SESSION_QUERY)
        .bind(claims.sid)
        .bind(claims.sub)
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| {
            tracing::debug!("session revoked, expired or user gone");
            Error::Unauthorized
        })?;
    if row.stale {
        // Activity is kept to the minute: one write per session per minute, not per request,
        // and off the request's path.
        let db = state.db.clone();
        tokio::spawn(async move {
            let _ = sqlx::query("update adm_session set last_activity_at = now() where id = $1")
                .bind(row.session_id)
                .execute(&db)
                .await;
        });
    }
    let mut permissions = row.permissions;
    // The database's collation may not sort like `binary_search` expects.
    permissions.sort_unstable();
    let caller = Caller {
        user_id: row.user_id,
        user_uuid: row.user_uuid,
        username: row.username,
        role_id: row.role_id,
        role_code: row.role_code,
        role_level: row.role_level,
        session_id: row.session_id,
        family_id: row.family_id,
        permissions,
        ip: client_ip(parts, &state.auth.settings).map(|ip| ip.to_string()),
        password_only: row.password_only,
    };
    parts.extensions.insert(caller.clone());
    Ok(caller)
}

/// A caller whose role holds permission `P`; 401 without a valid session, 403 without `P`.
pub struct Authorized<P>(pub Caller, PhantomData<P>);

impl<P> Deref for Authorized<P> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<P, S> FromRequestParts<S> for Authorized<P>
where
    P: Permission,
    S: Send + Sync,
    AdminState: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.has(P::CODE) {
            tracing::info!(user = %caller.user_uuid, permission = P::CODE, "permission refused");
            return Err(Error::Forbidden(P::CODE));
        }
        Ok(Authorized(caller, PhantomData))
    }
}

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Username or email (`username` and `email` are accepted as names of this field too).
    #[serde(alias = "username", alias = "email")]
    pub login: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

/// Tokens for a session.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque; exchange it at `/api/v1/auth/refresh` for new tokens. Single use.
    pub refresh_token: String,
    /// When the refresh token expires.
    pub refresh_expires_at: DateTime<Utc>,
    /// The session (stable across refreshes; the id shown in the session list).
    pub session: Uuid,
    /// The password has expired or was reset: this session may only change it
    /// (`POST /api/v1/auth/password`), sign out and ask `/api/v1/auth/me`.
    pub password_change_required: bool,
}

#[derive(sqlx::FromRow)]
struct LoginCandidate {
    id: i64,
    uuid: Uuid,
    password_hash: Option<String>,
    is_active: bool,
    /// Locked for this attempt's kind of address.
    locked: bool,
    /// This address signed in to the account within 30 days.
    known: bool,
    /// The role signs in with a second factor.
    mfa_required: bool,
    /// ... which this address may skip: the role allows it (never SYSADMIN), and it completed a
    /// sign-in recently, since the last password change, in a session not ended for cause
    /// (forced, reuse, reset, deactivation).
    remembered: bool,
    /// `full`, or `password` when the password has expired or was reset.
    scope: String,
}

/// Signs in with a username or email and a password.
///
/// Roles that sign in with a second factor (SYSADMIN and DIRECTOR by default) get 202 and a
/// challenge instead of tokens: a 6-digit code went to the user's confirmed WhatsApp device or
/// email, and `POST /api/v1/auth/login/verify` exchanges it for the tokens.
///
/// Any failure (unknown user, wrong password, inactive or locked account) gets the same 401.
/// Five wrong passwords in a row lock the account for 30 minutes (configurable); an admin can
/// unlock it. Too many attempts from one address get 429.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 202, description = "Password right; now the one-time code (second factor)", body = ChallengeResponse),
        (status = 401, description = "Wrong credentials, or the account may not sign in", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "A second factor is required but there is nowhere to send the code", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address, or too many codes for this user", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is saturated; retry shortly", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all, fields(login = %mask(&req.login)))]
async fn login(
    State(state): State<AdminState>,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response> {
    let auth = &state.auth;
    if let Some(ip) = ip {
        if let Err(retry_after_secs) = auth.throttle.check(ip) {
            metrics::counter!("admin_logins_total", "outcome" => "throttled").increment(1);
            tracing::warn!(%ip, "login throttled");
            return Err(Error::TooManyRequests { retry_after_secs });
        }
    }
    let login = req.login.trim().to_lowercase();
    if login.is_empty() || login.len() > 255 {
        return Err(Error::invalid("login", "must be a username or an email"));
    }
    if secrecy::ExposeSecret::expose_secret(&req.password).len() > MAX_PASSWORD_BYTES {
        return Err(Error::Unauthorized);
    }
    let ip_text = ip.map(|ip| ip.to_string());
    let candidate: Option<LoginCandidate> = sqlx::query_as(&format!(
        "select id, uuid, password_hash, is_active, known, mfa_required, remembered, scope,
                coalesce(case when known then known_unlock_at else locked_until end > now(),
                         false) as locked
         from (select u.*, r.mfa_required,
                      exists (
                          select 1 from adm_session s
                          where s.user_id = u.id and s.ip_address = $2
                            and s.login_at > now() - interval '30 days') as known,
                      r.mfa_remember_address and r.code <> 'SYSADMIN' and $3 > 0 and exists (
                          select 1 from adm_session s
                          where s.user_id = u.id and s.ip_address = $2
                            and s.login_at > now() - make_interval(days => $3)
                            and s.login_at > coalesce(u.password_changed_at, u.created_at)
                            and not exists (
                                select 1 from adm_session f
                                where f.family_id = s.family_id and f.is_revoked
                                  and f.revoke_reason not in ('rotated', 'logout')))
                          as remembered,
                      {} as scope
               from adm_user u join adm_role r on r.id = u.role_id
               where u.deleted_at is null and (u.username = $1 or lower(u.email) = $1)
               limit 1) u",
        scope_sql("$4")
    ))
    .bind(&login)
    .bind(&ip_text)
    .bind(i32::try_from(auth.settings.mfa_remember_days).unwrap_or(i32::MAX))
    .bind(i32::try_from(auth.settings.password_max_age_days).unwrap_or(i32::MAX))
    .fetch_optional(&state.db)
    .await?;
    // The attempt is counted as a failure before its password is hashed, in one statement that
    // refuses it once the account is locked: however many attempts run at once, at most
    // `auth.max_failed_logins` of them are evaluated per lockout. A success resets the count.
    let mut reserved_lock = false;
    // The hash this attempt is checked against: only a reserved attempt's.
    let mut evaluated: Option<String> = None;
    if let Some(c) = candidate
        .as_ref()
        .filter(|c| c.is_active && !c.locked && c.password_hash.is_some())
    {
        // Known addresses count and lock apart from strangers' (see the migration): the same
        // rule on the other pair of columns.
        let (count, until) = if c.known {
            ("known_fails", "known_unlock_at")
        } else {
            ("failed_login_count", "locked_until")
        };
        let reservation: Option<bool> = sqlx::query_scalar(&format!(
            "update adm_user set
                 {count} = case when {count} + 1 >= $2 then 0 else {count} + 1 end,
                 {until} = case when {count} + 1 >= $2
                                then now() + make_interval(secs => $3)
                                else {until} end
             where id = $1 and not coalesce({until} > now(), false)
             returning coalesce({until} > now(), false)"
        ))
        .bind(c.id)
        .bind(auth.settings.max_failed_logins)
        .bind(auth.settings.lockout_secs as f64)
        .fetch_optional(&state.db)
        .await?;
        if let Some(locks) = reservation {
            reserved_lock = locks;
            evaluated = c.password_hash.clone();
        }
    }
    // One hash per attempt whatever the case, so timing tells nothing.
    let checked = evaluated.is_some();
    let matched = auth.hasher.verify(req.password, evaluated).await?;
    let Some(user) = candidate else {
        metrics::counter!("admin_logins_total", "outcome" => "unknown").increment(1);
        tracing::info!("login refused: no such user");
        return Err(Error::Unauthorized);
    };
    if !matched {
        let reason = if !user.is_active {
            "inactive"
        } else if user.password_hash.is_none() {
            "no_password"
        } else if !checked {
            // Locked before, or by the attempts running beside this one.
            "locked"
        } else {
            "password"
        };
        let now_locked = reason == "password" && reserved_lock;
        let mut tx = state.db.begin().await?;
        audit::record(
            &mut tx,
            Some(user.id),
            ip_text.as_deref(),
            Entry {
                action: if now_locked { "LOCK" } else { "LOGIN_FAILED" },
                entity_type: "adm_user",
                entity_id: Some(user.id),
                entity_uuid: Some(user.uuid),
                old: None,
                new: Some(json!({ "reason": reason })),
            },
        )
        .await?;
        tx.commit().await?;
        metrics::counter!("admin_logins_total", "outcome" => reason).increment(1);
        tracing::info!(reason, locked = now_locked, "login refused");
        return Err(Error::Unauthorized);
    }

    let user_agent = user_agent(&headers);
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "update adm_user set
             failed_login_count = case when $2 then failed_login_count else 0 end,
             locked_until = case when $2 then locked_until end,
             known_fails = 0, known_unlock_at = null
         where id = $1",
    )
    .bind(user.id)
    .bind(user.known)
    .execute(&mut *tx)
    .await?;
    if user.mfa_required && !user.remembered {
        let challenged = Challenged {
            id: user.id,
            uuid: user.uuid,
            ip: ip_text.as_deref(),
            user_agent: user_agent.as_deref(),
        };
        let challenge = match state.second_factor.issue(&mut tx, &challenged).await {
            Ok(challenge) => challenge,
            Err(e @ (Error::TooManyRequests { .. } | Error::Refused(_))) => {
                // Keep the audit row of the refusal.
                tx.commit().await?;
                metrics::counter!("admin_logins_total", "outcome" => "no_code").increment(1);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        state.second_factor.ring();
        metrics::counter!("admin_logins_total", "outcome" => "challenge").increment(1);
        tracing::info!(user = %user.uuid, channel = challenge.channel, "login needs a code");
        return Ok((StatusCode::ACCEPTED, Json(challenge)).into_response());
    }
    let tokens = open_session(
        &state,
        &mut tx,
        (user.id, user.uuid),
        ip_text.as_deref(),
        user_agent.as_deref(),
        &user.scope,
        (user.mfa_required && user.remembered).then_some("remembered_address"),
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("admin_logins_total", "outcome" => "ok").increment(1);
    tracing::info!(user = %user.uuid, "login");
    Ok(Json(tokens).into_response())
}

/// The client's `User-Agent`, as a session row keeps it (at most 512 characters).
pub(crate) fn user_agent(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(512).collect())
}

/// The SQL of a session's scope for the user `u`: `password` when an admin reset the password
/// or it is older than `days_param` days (0 = never expires), `full` otherwise.
pub(crate) fn scope_sql(days_param: &str) -> String {
    format!(
        "case when u.must_change_password
                   or ({days_param} > 0 and coalesce(u.password_changed_at, u.created_at)
                                            < now() - make_interval(days => {days_param}))
              then 'password' else 'full' end"
    )
}

/// Opens a session (one login) for `user` in `tx`: the session row, `last_login`, the `LOGIN`
/// audit row; returns its tokens. `second_factor` names the channel of the code given, if any.
pub(crate) async fn open_session(
    state: &AdminState,
    tx: &mut sqlx::PgConnection,
    (user_id, user_uuid): (i64, Uuid),
    ip: Option<&str>,
    user_agent: Option<&str>,
    scope: &str,
    second_factor: Option<&str>,
) -> Result<TokenResponse> {
    let auth = &state.auth;
    let refresh = new_refresh_token();
    sqlx::query("update adm_user set last_login = now() where id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let (sid, family, expires_at): (Uuid, Uuid, DateTime<Utc>) = sqlx::query_as(
        "insert into adm_session
             (user_id, refresh_hash, ip_address, user_agent, expires_at, last_activity_at, scope)
         values ($1, $2, $3, $4, now() + make_interval(secs => $5), now(), $6)
         returning uuid, family_id, expires_at",
    )
    .bind(user_id)
    .bind(hash_token(&refresh))
    .bind(ip)
    .bind(user_agent)
    .bind(auth.settings.refresh_ttl_secs as f64)
    .bind(scope)
    .fetch_one(&mut *tx)
    .await?;
    let password_change_required = scope == "password";
    audit::record(
        &mut *tx,
        Some(user_id),
        ip,
        Entry {
            action: "LOGIN",
            entity_type: "adm_session",
            entity_id: None,
            entity_uuid: Some(family),
            old: None,
            new: Some(json!({
                "session": family,
                "user_agent": user_agent,
                "second_factor": second_factor,
                "password_change_required": password_change_required,
            })),
        },
    )
    .await?;
    Ok(TokenResponse {
        access_token: auth.tokens.issue(user_uuid, sid)?,
        token_type: "Bearer",
        expires_in: auth.tokens.access_ttl,
        refresh_token: refresh,
        refresh_expires_at: expires_at,
        session: family,
        password_change_required,
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    #[schema(value_type = String, format = Password)]
    pub refresh_token: SecretString,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: i64,
    family_id: Uuid,
    user_id: i64,
    user_uuid: Uuid,
    is_revoked: bool,
    revoke_reason: Option<String>,
    live: bool,
    user_ok: bool,
    login_at: DateTime<Utc>,
    user_agent: Option<String>,
    scope: String,
}

/// Exchanges a refresh token for new tokens. The refresh token is single use: presenting one
/// that was already exchanged revokes the whole session (someone else holds a copy).
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(state): State<AdminState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>> {
    let presented = hash_token(secrecy::ExposeSecret::expose_secret(&req.refresh_token));
    let ip_text = ip.map(|ip| ip.to_string());
    let row: RefreshRow = sqlx::query_as(
        "select s.id, s.family_id, s.user_id, u.uuid as user_uuid, s.is_revoked, s.revoke_reason,
                s.expires_at > now() as live, s.login_at, s.user_agent, s.scope,
                u.is_active and u.deleted_at is null as user_ok
         from adm_session s join adm_user u on u.id = s.user_id
         where s.refresh_hash = $1",
    )
    .bind(&presented)
    .fetch_optional(&state.db)
    .await?
    .ok_or(Error::Unauthorized)?;
    if row.is_revoked {
        if row.revoke_reason.as_deref() == Some("rotated") {
            revoke_reused(&state, &row, ip_text.as_deref()).await?;
        }
        return Err(Error::Unauthorized);
    }
    if !row.live || !row.user_ok {
        return Err(Error::Unauthorized);
    }
    let refresh = new_refresh_token();
    let mut tx = state.db.begin().await?;
    let rotated = sqlx::query(
        "update adm_session set is_revoked = true, revoked_at = now(), revoke_reason = 'rotated'
         where id = $1 and not is_revoked",
    )
    .bind(row.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if rotated == 0 {
        // Another request rotated it first: two holders of one token, treat as reuse.
        drop(tx);
        revoke_reused(&state, &row, ip_text.as_deref()).await?;
        return Err(Error::Unauthorized);
    }
    let (sid, expires_at): (Uuid, DateTime<Utc>) = sqlx::query_as(
        "insert into adm_session (user_id, family_id, refresh_hash, ip_address, user_agent,
                                  login_at, expires_at, last_activity_at, scope)
         values ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), now(), $8)
         returning uuid, expires_at",
    )
    .bind(row.user_id)
    .bind(row.family_id)
    .bind(hash_token(&refresh))
    .bind(ip_text.as_deref())
    .bind(row.user_agent.as_deref())
    .bind(row.login_at)
    .bind(state.auth.settings.refresh_ttl_secs as f64)
    .bind(&row.scope)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Some(row.user_id),
        ip_text.as_deref(),
        Entry {
            action: "TOKEN_REFRESH",
            entity_type: "adm_session",
            entity_id: None,
            entity_uuid: Some(row.family_id),
            old: None,
            new: None,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Json(TokenResponse {
        access_token: state.auth.tokens.issue(row.user_uuid, sid)?,
        token_type: "Bearer",
        expires_in: state.auth.tokens.access_ttl,
        refresh_token: refresh,
        refresh_expires_at: expires_at,
        session: row.family_id,
        password_change_required: row.scope == "password",
    }))
}

/// A rotated refresh token came back: revoke the family and record it.
async fn revoke_reused(state: &AdminState, row: &RefreshRow, ip: Option<&str>) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let revoked = revoke_family(&mut tx, row.family_id, "reuse").await?;
    audit::record(
        &mut tx,
        Some(row.user_id),
        ip,
        Entry {
            action: "TOKEN_REUSE",
            entity_type: "adm_session",
            entity_id: None,
            entity_uuid: Some(row.family_id),
            old: None,
            new: Some(json!({ "revoked_sessions": revoked })),
        },
    )
    .await?;
    tx.commit().await?;
    metrics::counter!("admin_refresh_reuse_total").increment(1);
    tracing::warn!(session = %row.family_id, "refresh token reused: session revoked");
    Ok(())
}

/// Revokes every live row of a session family; returns how many.
pub(crate) async fn revoke_family(
    conn: &mut sqlx::PgConnection,
    family: Uuid,
    reason: &str,
) -> Result<u64> {
    Ok(sqlx::query(
        "update adm_session set is_revoked = true, revoked_at = now(), revoke_reason = $2
         where family_id = $1 and not is_revoked",
    )
    .bind(family)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Revokes every live session of a user, and voids their open sign-in challenges (a code sent
/// for the old password must not open a session after a reset or a deactivation); returns how
/// many sessions.
pub(crate) async fn revoke_user_sessions(
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    reason: &str,
) -> Result<u64> {
    void_open(&mut *conn, user_id).await?;
    Ok(sqlx::query(
        "update adm_session set is_revoked = true, revoked_at = now(), revoke_reason = $2
         where user_id = $1 and not is_revoked",
    )
    .bind(user_id)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Ends the caller's session (every token of this login stops working at once).
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out")),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.user_uuid))]
async fn logout(SignedIn(caller): SignedIn, State(state): State<AdminState>) -> Result<StatusCode> {
    let mut tx = state.db.begin().await?;
    revoke_family(&mut tx, caller.family_id, "logout").await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "LOGOUT",
            entity_type: "adm_session",
            entity_id: None,
            entity_uuid: Some(caller.family_id),
            old: None,
            new: None,
        },
    )
    .await?;
    tx.commit().await.context("logout commit")?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user, their role and permissions.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub uuid: Uuid,
    pub username: String,
    pub role: String,
    pub permissions: Vec<String>,
    /// The current session.
    pub session: Uuid,
    /// This session may only change the password.
    pub password_change_required: bool,
}

/// Who am I: the caller's identity, role and permission codes.
#[utoipa::path(
    get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me)),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.user_uuid))]
async fn me(SignedIn(caller): SignedIn) -> Json<Me> {
    Json(Me {
        uuid: caller.user_uuid,
        username: caller.username,
        role: caller.role_code,
        permissions: caller.permissions,
        session: caller.family_id,
        password_change_required: caller.password_only,
    })
}

/// A password change by its owner.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password now.
    #[schema(value_type = String, format = Password)]
    pub current: SecretString,
    /// The new one: the policy's length and strength, none of the user's names or the
    /// company's, not one of the last few passwords.
    #[schema(value_type = String, format = Password)]
    pub new: SecretString,
}

/// Changes the caller's own password and ends their other sessions. Also the only thing a
/// session with an expired or reset password may do, and afterwards that session is a full one.
#[utoipa::path(
    post, path = "/api/v1/auth/password", tag = "auth",
    request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed; the other sessions are signed out"),
        (status = 409, description = "The password was changed meanwhile", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The current password is wrong, or the new one does not meet the policy", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address", body = crate::error::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(user = %caller.user_uuid))]
async fn change_password(
    SignedIn(caller): SignedIn,
    State(state): State<AdminState>,
    ApiJson(req): ApiJson<ChangePassword>,
) -> Result<StatusCode> {
    let auth = &state.auth;
    // The current password is a password guess like a login's: the same throttle.
    if let Some(ip) = caller.ip().and_then(|ip| ip.parse::<IpAddr>().ok()) {
        if let Err(retry_after_secs) = auth.throttle.check(ip) {
            return Err(Error::TooManyRequests { retry_after_secs });
        }
    }
    let (hash, username, full_name, email): (Option<String>, String, String, Option<String>) =
        sqlx::query_as(
            "select password_hash, username, full_name, email from adm_user where id = $1",
        )
        .bind(caller.user_id)
        .fetch_one(&state.db)
        .await?;
    if secrecy::ExposeSecret::expose_secret(&req.current).len() > MAX_PASSWORD_BYTES
        || !auth.hasher.verify(req.current, hash.clone()).await?
    {
        let mut tx = state.db.begin().await?;
        audit::record(
            &mut tx,
            Some(caller.user_id),
            caller.ip(),
            Entry {
                action: "PASSWORD_CHANGE_FAILED",
                entity_type: "adm_user",
                entity_id: Some(caller.user_id),
                entity_uuid: Some(caller.user_uuid),
                old: None,
                new: Some(json!({ "reason": "current_password" })),
            },
        )
        .await?;
        tx.commit().await?;
        return Err(Error::invalid("current", "is not your current password"));
    }
    let owner = Owner {
        username: &username,
        full_name: &full_name,
        email: email.as_deref(),
    };
    auth.hasher
        .check_policy(&req.new, &owner)
        .map_err(|m| Error::invalid("new", m))?;
    let mut conn = state.db.acquire().await?;
    if auth
        .hasher
        .reused(&mut conn, caller.user_id, &req.new)
        .await?
    {
        return Err(Error::invalid(
            "new",
            format!(
                "must differ from your last {} passwords",
                auth.settings.password_history
            ),
        ));
    }
    drop(conn);
    let new_hash = auth.hasher.hash(req.new).await?;
    let mut tx = state.db.begin().await?;
    auth.hasher
        .remember(&mut tx, caller.user_id, &new_hash)
        .await?;
    let changed = sqlx::query(
        "update adm_user set password_hash = $2, password_changed_at = now(),
             must_change_password = false, updated_by = $1
         where id = $1 and password_hash is not distinct from $3",
    )
    .bind(caller.user_id)
    .bind(&new_hash)
    .bind(hash.as_deref())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(Error::Conflict {
            field: None,
            detail: "The password was changed meanwhile; sign in again.".into(),
        });
    }
    // A sign-in started with the old password (by whoever knew it) ends here too.
    void_open(&mut tx, caller.user_id).await?;
    let revoked = sqlx::query(
        "update adm_session set is_revoked = true, revoked_at = now(),
             revoke_reason = 'password_changed'
         where user_id = $1 and family_id <> $2 and not is_revoked",
    )
    .bind(caller.user_id)
    .bind(caller.family_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("update adm_session set scope = 'full' where family_id = $1 and not is_revoked")
        .bind(caller.family_id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        Some(caller.user_id),
        caller.ip(),
        Entry {
            action: "PASSWORD_CHANGE",
            entity_type: "adm_user",
            entity_id: Some(caller.user_id),
            entity_uuid: Some(caller.user_uuid),
            old: None,
            new: Some(json!({ "revoked_sessions": revoked, "was_required": caller.password_only })),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(revoked, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn settings(trust: bool, proxies: &[&str]) -> AuthSettings {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut auth = crate::config::Settings::load_from(&dir, "test", &Default::default())
            .unwrap()
            .auth;
        auth.trust_forwarded_for = trust;
        auth.trusted_proxies = proxies.iter().map(|p| Cidr::parse(p).unwrap()).collect();
        auth
    }

    fn parts(peer: &str, forwarded: &[&str]) -> Parts {
        let mut request = axum::http::Request::builder();
        for f in forwarded {
            request = request.header("x-forwarded-for", *f);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectInfo::<SocketAddr>(
            format!("{peer}:5000").parse().unwrap(),
        ));
        parts
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_client_is_the_right_most_forwarded_address_that_is_not_a_trusted_proxy() {
        // The client wrote 6.6.6.6 itself; the proxy at 10.0.0.5 appended the real peer.
        let p = parts("10.0.0.5", &["6.6.6.6, 203.0.113.9"]);
        assert_eq!(client_ip(&p, &settings(false, &[])), ip("10.0.0.5"));
        assert_eq!(client_ip(&p, &settings(true, &[])), ip("203.0.113.9"));
        // Two proxies: the inner one's hop is skipped.
        let p = parts("10.0.0.5", &["6.6.6.6, 203.0.113.9", "10.0.0.7"]);
        assert_eq!(
            client_ip(&p, &settings(true, &["10.0.0.0/8"])),
            ip("203.0.113.9")
        );
        // A peer that is not a listed proxy is not believed.
        let p = parts("198.51.100.1", &["6.6.6.6"]);
        assert_eq!(
            client_ip(&p, &settings(true, &["10.0.0.0/8"])),
            ip("198.51.100.1")
        );
        // Garbage ends the walk at the last good address.
        let p = parts("10.0.0.5", &["203.0.113.9, not-an-ip, 10.0.0.7"]);
        assert_eq!(
            client_ip(&p, &settings(true, &["10.0.0.0/8"])),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn address_blocks_hold_what_they_should() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("garbage").is_none());
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }
}
