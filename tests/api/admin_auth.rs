//! Sign-in, tokens, refresh rotation, logout and the per-request session check.

use std::net::{IpAddr, Ipv4Addr};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::admin_support::{
    audit_count, call, get, login, signed_in, status_json, tokens, user_with_role, PASSWORD,
};
use crate::helpers::{spawn_app, spawn_app_with, TestApp};

#[tokio::test]
async fn login_by_username_or_email_opens_a_session_and_records_it() {
    let app = spawn_app().await;
    let uuid = user_with_role(&app, "john.doe", "MANAGER_SALES").await;

    for name in ["john.doe", "JOHN.DOE@factory.local"] {
        let (status, body) = status_json(login(&app, name, PASSWORD).await).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert!(body["refresh_token"].as_str().unwrap().len() >= 32);
        let me = get(
            &app,
            "/api/v1/auth/me",
            body["access_token"].as_str().unwrap(),
        )
        .await;
        let (status, me) = status_json(me).await;
        assert_eq!(status, 200);
        assert_eq!(me["uuid"], uuid.to_string());
        assert_eq!(me["role"], "MANAGER_SALES");
        assert!(me["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("SO.READ")));
    }
    let sessions: i64 = app
        .count("select count(*) from adm_session where not is_revoked and ip_address = '127.0.0.1'")
        .await;
    assert_eq!(sessions, 2);
    assert_eq!(audit_count(&app, "LOGIN").await, 2);
    let stored: Option<String> = sqlx::query_scalar("select refresh_hash from adm_session limit 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(
        stored.unwrap().len(),
        64,
        "refresh tokens are stored as SHA-256"
    );
    let last_login: i64 = app
        .count("select count(*) from adm_user where last_login > now() - interval '1 minute'")
        .await;
    assert_eq!(last_login, 1);
}

#[tokio::test]
async fn every_failed_login_gets_the_same_answer_whatever_was_wrong() {
    let app = spawn_app().await;
    user_with_role(&app, "active", "OPERATOR").await;
    user_with_role(&app, "inactive", "OPERATOR").await;
    user_with_role(&app, "locked", "OPERATOR").await;
    sqlx::query("update adm_user set is_active = false where username = 'inactive'")
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "update adm_user set locked_until = now() + interval '10 minutes' where username = 'locked'",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let mut answers = Vec::new();
    for (name, password) in [
        ("active", "Wrong-password-123"),
        ("nobody", PASSWORD),
        ("inactive", PASSWORD),
        ("locked", PASSWORD),
    ] {
        let response = login(&app, name, password).await;
        assert_eq!(response.status(), 401, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        answers.push(response.text().await.unwrap());
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "answers differ: {answers:#?}"
    );
    assert!(!answers[0].to_lowercase().contains("lock"));
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_account_until_an_admin_unlocks_it() {
    let app = spawn_app().await;
    let victim = user_with_role(&app, "operator1", "OPERATOR").await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;

    for _ in 0..4 {
        assert_eq!(
            login(&app, "operator1", "Wrong-password-1").await.status(),
            401
        );
    }
    let count: i32 = sqlx::query_scalar("select failed_login_count from adm_user where uuid = $1")
        .bind(victim)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 4);
    assert_eq!(
        login(&app, "operator1", "Wrong-password-1").await.status(),
        401
    );
    let locked: bool = sqlx::query_scalar(
        "select locked_until > now() + interval '29 minutes' from adm_user where uuid = $1",
    )
    .bind(victim)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(locked, "locked for 30 minutes");
    assert_eq!(audit_count(&app, "LOCK").await, 1);
    // The right password does not help while locked.
    assert_eq!(login(&app, "operator1", PASSWORD).await.status(), 401);

    let (status, body) = status_json(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/users/{victim}/unlock"),
            Some(&admin.access),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["is_locked"], false);
    assert_eq!(login(&app, "operator1", PASSWORD).await.status(), 200);
    assert_eq!(audit_count(&app, "UNLOCK").await, 1);
}

#[tokio::test]
async fn a_lock_ends_by_itself_after_its_time() {
    let app = spawn_app_with(|s| s.auth.max_failed_logins = 2).await;
    user_with_role(&app, "operator1", "OPERATOR").await;
    for _ in 0..2 {
        login(&app, "operator1", "Wrong-password-1").await;
    }
    assert_eq!(login(&app, "operator1", PASSWORD).await.status(), 401);
    sqlx::query("update adm_user set locked_until = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(login(&app, "operator1", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn one_address_is_throttled_without_affecting_others() {
    let app = spawn_app_with(|s| {
        s.auth.login_burst = 3;
        s.auth.login_per_minute = 1;
    })
    .await;
    user_with_role(&app, "admin", "SYSADMIN").await;
    for _ in 0..3 {
        assert_eq!(login(&app, "admin", "Wrong-password-1").await.status(), 401);
    }
    let throttled = login(&app, "admin", PASSWORD).await;
    assert_eq!(throttled.status(), 429);
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Throttled attempts never reach the account: it is not locked by them.
    let count: i32 = sqlx::query_scalar("select failed_login_count from adm_user")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 3);

    // Another address on this machine (127.0.0.2) still gets in.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let response = other
        .post(format!("{}/api/v1/auth/login", app.address))
        .json(&json!({ "username": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Signs `claims` with the test secret (or `secret`) and algorithm `alg`.
fn forge(alg: Algorithm, claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

#[tokio::test]
async fn tokens_that_are_expired_or_signed_or_addressed_otherwise_are_refused() {
    let app = spawn_app().await;
    let t = signed_in(&app, "admin", "SYSADMIN").await;
    let auth = &app.test_db.settings.auth;
    let secret = auth.jwt_secret.expose_secret().as_bytes().to_vec();
    let user: String = sqlx::query_scalar("select uuid::text from adm_user")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let sid: String = sqlx::query_scalar("select uuid::text from adm_session")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = |iss: &str, aud: &str, exp: i64| json!({ "iss": iss, "aud": aud, "sub": user, "sid": sid, "iat": now - 10, "exp": exp });
    let (iss, aud) = (auth.jwt_issuer.as_str(), auth.jwt_audience.as_str());

    // The control: a correctly forged token works, so the refusals below are for the one change.
    let good = forge(Algorithm::HS256, &claims(iss, aud, now + 60), &secret);
    assert_eq!(get(&app, "/api/v1/auth/me", &good).await.status(), 200);

    // {"alg":"none","typ":"JWT"} with the good token's claims and no signature.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        good.split('.').nth(1).unwrap()
    );
    let refused = [
        (
            "expired",
            forge(Algorithm::HS256, &claims(iss, aud, now - 30), &secret),
        ),
        (
            "HS384",
            forge(Algorithm::HS384, &claims(iss, aud, now + 60), &secret),
        ),
        (
            "HS512",
            forge(Algorithm::HS512, &claims(iss, aud, now + 60), &secret),
        ),
        ("alg none", unsigned),
        (
            "audience",
            forge(
                Algorithm::HS256,
                &claims(iss, "someone-else", now + 60),
                &secret,
            ),
        ),
        (
            "issuer",
            forge(Algorithm::HS256, &claims("evil", aud, now + 60), &secret),
        ),
        (
            "key",
            forge(
                Algorithm::HS256,
                &claims(iss, aud, now + 60),
                b"another-secret-another-secret-00",
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    for (what, token) in refused {
        let response = get(&app, "/api/v1/auth/me", &token).await;
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    assert_eq!(get(&app, "/api/v1/auth/me", &t.access).await.status(), 200);
    assert_eq!(
        call(&app, Method::GET, "/api/v1/auth/me", None, None)
            .await
            .status(),
        401
    );
}

async fn refresh(app: &crate::helpers::TestApp, token: &str) -> (u16, Value) {
    status_json(
        call(
            app,
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": token })),
        )
        .await,
    )
    .await
}

#[tokio::test]
async fn refresh_rotates_the_token_and_a_reused_one_revokes_the_session() {
    let app = spawn_app().await;
    let first = signed_in(&app, "admin", "SYSADMIN").await;

    let (status, second) = refresh(&app, &first.refresh).await;
    assert_eq!(status, 200, "{second}");
    let second_access = second["access_token"].as_str().unwrap();
    let second_refresh = second["refresh_token"].as_str().unwrap();
    assert_ne!(second_refresh, first.refresh);
    assert_eq!(second["session"], first.session.to_string(), "same session");
    assert_eq!(
        get(&app, "/api/v1/auth/me", second_access).await.status(),
        200
    );
    assert_eq!(
        get(&app, "/api/v1/auth/me", &first.access).await.status(),
        401,
        "the access token of a rotated refresh token is retired with it"
    );

    // Someone replays the first refresh token: the whole session ends.
    let (status, _) = refresh(&app, &first.refresh).await;
    assert_eq!(status, 401);
    assert_eq!(
        get(&app, "/api/v1/auth/me", second_access).await.status(),
        401
    );
    let (status, _) = refresh(&app, second_refresh).await;
    assert_eq!(status, 401, "the newest refresh token is revoked too");
    assert_eq!(audit_count(&app, "TOKEN_REUSE").await, 1);
    let reasons: Vec<String> =
        sqlx::query_scalar("select revoke_reason from adm_session order by id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(reasons, ["rotated", "reuse"]);

    let (status, _) = refresh(&app, "0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let app = spawn_app().await;
    let t = signed_in(&app, "admin", "SYSADMIN").await;
    sqlx::query(
        "update adm_session
         set login_at = login_at - interval '2 hours', expires_at = login_at - interval '1 hour'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(refresh(&app, &t.refresh).await.0, 401);
    assert_eq!(get(&app, "/api/v1/auth/me", &t.access).await.status(), 401);
}

#[tokio::test]
async fn logout_ends_the_session_on_the_next_request() {
    let app = spawn_app().await;
    let t = signed_in(&app, "admin", "SYSADMIN").await;
    let other = tokens(&app, "admin").await;
    let response = call(
        &app,
        Method::POST,
        "/api/v1/auth/logout",
        Some(&t.access),
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(get(&app, "/api/v1/auth/me", &t.access).await.status(), 401);
    assert_eq!(refresh(&app, &t.refresh).await.0, 401);
    assert_eq!(
        get(&app, "/api/v1/auth/me", &other.access).await.status(),
        200,
        "other sessions of the same user go on"
    );
    assert_eq!(audit_count(&app, "LOGOUT").await, 1);
}

#[tokio::test]
async fn deactivation_force_logout_and_password_reset_take_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let user = user_with_role(&app, "jane.smith", "MANAGER_PROD").await;
    let jane = tokens(&app, "jane.smith").await;
    let post = |path: String, body: Option<Value>| {
        let app = &app;
        let token = admin.access.clone();
        async move { call(app, Method::POST, &path, Some(&token), body).await }
    };

    // Deactivation.
    assert_eq!(
        get(&app, "/api/v1/auth/me", &jane.access).await.status(),
        200
    );
    assert_eq!(
        post(format!("/api/v1/users/{user}/deactivate"), None)
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&app, "/api/v1/auth/me", &jane.access).await.status(),
        401
    );
    assert_eq!(refresh(&app, &jane.refresh).await.0, 401);
    assert_eq!(login(&app, "jane.smith", PASSWORD).await.status(), 401);
    assert_eq!(
        post(format!("/api/v1/users/{user}/activate"), None)
            .await
            .status(),
        200
    );

    // Force logout from the session list.
    let jane = tokens(&app, "jane.smith").await;
    let (status, list) = status_json(
        get(
            &app,
            &format!("/api/v1/sessions?user={user}"),
            &admin.access,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], jane.session.to_string());
    let response = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/sessions/{}", jane.session),
        Some(&admin.access),
        None,
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        get(&app, "/api/v1/auth/me", &jane.access).await.status(),
        401
    );

    // Password reset.
    let jane = tokens(&app, "jane.smith").await;
    let (status, body) = status_json(
        post(
            format!("/api/v1/users/{user}/reset-password"),
            Some(json!({})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let temporary = body["temporary_password"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&app, "/api/v1/auth/me", &jane.access).await.status(),
        401
    );
    assert_eq!(login(&app, "jane.smith", PASSWORD).await.status(), 401);
    assert_eq!(login(&app, "jane.smith", &temporary).await.status(), 200);
    assert!(
        !body.to_string().contains("argon2"),
        "no hash in the answer"
    );
    let in_audit: i64 = app
        .count("select count(*) from log_audit where old_value::text like '%argon2%' or new_value::text like '%argon2%'")
        .await;
    assert_eq!(in_audit, 0, "no hash in the audit log");
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_from_many_addresses_gets_only_the_allowed_tries() {
    let app = spawn_app().await;
    user_with_role(&app, "target", "OPERATOR").await;
    let allowed = app.test_db.settings.auth.max_failed_logins as i64;
    // Six loopback addresses, five attempts each, all at once.
    let attempts = (2..8u8).flat_map(|host| {
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, host]))
            .build()
            .unwrap();
        let url = format!("{}/api/v1/auth/login", app.address);
        (0..5).map(move |n| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .post(url)
                    .json(&json!({ "login": "target", "password": format!("Wrong-guess-{n}") }))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(statuses.len(), 30);
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let evaluated: i64 = sqlx::query_scalar(
        "select count(*) from log_audit
         where action in ('LOGIN_FAILED', 'LOCK') and new_value->>'reason' = 'password'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(evaluated, allowed, "passwords checked in the burst");
    assert_eq!(audit_count(&app, "LOCK").await, 1);
    // Locked: the right password is not even checked.
    assert_eq!(login(&app, "target", PASSWORD).await.status(), 401);
}

/// Logs in as `login` from the loopback address 127.0.0.`host`; the status.
async fn login_from(app: &TestApp, host: u8, login: &str, password: &str) -> u16 {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, host]))
        .build()
        .unwrap()
        .post(format!("{}/api/v1/auth/login", app.address))
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_strangers_wrong_passwords_do_not_lock_the_owner_out_and_the_cli_unlocks() {
    let app = spawn_app().await;
    user_with_role(&app, "owner", "DIRECTOR").await;
    // The owner signs in from their usual address.
    assert_eq!(login_from(&app, 2, "owner", PASSWORD).await, 200);
    // A stranger's five wrong guesses lock the account for strangers.
    for n in 0..5 {
        assert_eq!(
            login_from(&app, 3, "owner", &format!("Wrong-{n}")).await,
            401
        );
    }
    assert_eq!(audit_count(&app, "LOCK").await, 1);
    assert_eq!(
        login_from(&app, 3, "owner", PASSWORD).await,
        401,
        "strangers stay locked out"
    );
    assert_eq!(
        login_from(&app, 2, "owner", PASSWORD).await,
        200,
        "the owner's known address is not"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["admin", "unlock", "--username", "owner"])
        .env("SENTIENT_ENV", "test")
        .env(
            "DATABASE_URL",
            app.test_db.settings.database.url.expose_secret(),
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(audit_count(&app, "UNLOCK").await, 1);
    assert_eq!(login_from(&app, 3, "owner", PASSWORD).await, 200);
}
