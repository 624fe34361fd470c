//! Helpers of the admin API tests: users with passwords, sign-in, authenticated calls.

use reqwest::{Method, Response};
use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::TestApp;

/// A password that satisfies the policy.
pub const PASSWORD: &str = "Rahasia-Pabrik-2024";

/// Inserts an active user with `PASSWORD` and role `role`; returns the user's uuid. The role
/// signs in with the password alone from then on: these helpers serve the tests of everything
/// else, and `admin_mfa.rs` tests the second factor with [`mfa_user`].
pub async fn user_with_role(app: &TestApp, username: &str, role: &str) -> Uuid {
    sqlx::query("update adm_role set mfa_required = false where code = $1")
        .bind(role)
        .execute(&app.db)
        .await
        .expect("second factor off");
    mfa_user(app, username, role).await
}

/// Inserts an active user with `PASSWORD` and role `role`, leaving the role's sign-in rules as
/// they are; returns the user's uuid.
pub async fn mfa_user(app: &TestApp, username: &str, role: &str) -> Uuid {
    let hasher =
        sentient_hub::admin::password::Hasher::new(&app.test_db.settings.auth).expect("hasher");
    let hash = hasher
        .hash(SecretString::from(PASSWORD))
        .await
        .expect("hash");
    sqlx::query_scalar(
        "insert into adm_user (username, email, full_name, role_id, password_hash)
         select $1, $1 || '@factory.local', initcap($1), id, $3 from adm_role where code = $2
         returning uuid",
    )
    .bind(username)
    .bind(role)
    .bind(hash)
    .fetch_one(&app.db)
    .await
    .expect("user inserted")
}

/// A role holding exactly `permissions` (level 1 so level checks never get in the way).
pub async fn role_with(app: &TestApp, code: &str, permissions: &[&str]) {
    sqlx::query("insert into adm_role (code, name, level) values ($1, $1, 1)")
        .bind(code)
        .execute(&app.db)
        .await
        .expect("role inserted");
    sqlx::query(
        "insert into adm_role_permission (role_id, permission_id)
         select r.id, p.id from adm_role r, adm_permission p
         where r.code = $1 and p.code = any($2)",
    )
    .bind(code)
    .bind(permissions)
    .execute(&app.db)
    .await
    .expect("permissions granted");
}

pub async fn login(app: &TestApp, login: &str, password: &str) -> Response {
    app.client
        .post(format!("{}/api/v1/auth/login", app.address))
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .expect("login request")
}

/// Tokens of a successful login.
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session: Uuid,
}

pub async fn tokens(app: &TestApp, username: &str) -> Tokens {
    let response = login(app, username, PASSWORD).await;
    assert_eq!(response.status(), 200, "login of {username}");
    let body: Value = response.json().await.unwrap();
    Tokens {
        access: body["access_token"].as_str().unwrap().to_owned(),
        refresh: body["refresh_token"].as_str().unwrap().to_owned(),
        session: body["session"].as_str().unwrap().parse().unwrap(),
    }
}

/// A signed-in user of `role`: creates the user and logs in.
pub async fn signed_in(app: &TestApp, username: &str, role: &str) -> Tokens {
    user_with_role(app, username, role).await;
    tokens(app, username).await
}

/// Calls the API as `token` (None: anonymous) with an optional JSON body.
pub async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request is sent")
}

pub async fn get(app: &TestApp, path: &str, token: &str) -> Response {
    call(app, Method::GET, path, Some(token), None).await
}

/// Status and JSON body (Null when there is none).
pub async fn status_json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn audit_count(app: &TestApp, action: &str) -> i64 {
    sqlx::query_scalar("select count(*) from log_audit where action = $1")
        .bind(action)
        .fetch_one(&app.db)
        .await
        .unwrap()
}
