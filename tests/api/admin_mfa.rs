//! Admin sign-in with a second factor (code by WhatsApp through the fake Graph, by email through
//! a real SMTP server), the password policy, changing one's own password, forced changes after a
//! reset or an expiry, and `sentient-hub admin reset-password`.

use std::time::Duration;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::admin_support::{
    audit_count, call, get, login, mfa_user, signed_in, status_json, user_with_role, PASSWORD,
};
use crate::helpers::{eventually, new_sender, spawn_app_with, SmtpSink, TestApp};

async fn app_with_mail(
    tweak: impl FnOnce(&mut sentient_hub::config::Settings),
) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = spawn_app_with(move |s| {
        s.smtp.port = port;
        tweak(s);
    })
    .await;
    (app, sink)
}

async fn verify(app: &TestApp, challenge: &str, code: &str) -> (u16, Value) {
    status_json(
        call(
            app,
            Method::POST,
            "/api/v1/auth/login/verify",
            None,
            Some(json!({ "challenge_id": challenge, "code": code })),
        )
        .await,
    )
    .await
}

/// Logs in with `PASSWORD` and expects a challenge; returns its body.
async fn challenged(app: &TestApp, username: &str) -> Value {
    let (status, body) = status_json(login(app, username, PASSWORD).await).await;
    assert_eq!(status, 202, "{body}");
    body
}

/// A code that is not `code`.
fn other_than(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn a_sysadmin_signs_in_with_the_code_mailed_to_them_once() {
    let (app, sink) = app_with_mail(|_| {}).await;
    mfa_user(&app, "root", "SYSADMIN").await;
    let body = challenged(&app, "root").await;
    assert_eq!(body["channel"], "email", "no WhatsApp device: email");
    assert_eq!(body["sent_to"], "r***@factory.local", "{body}");
    assert!(body.get("access_token").is_none());
    let challenge = body["challenge_id"].as_str().unwrap().to_owned();

    let code = sink.code(1).await;
    assert!(sink.mails()[0].contains("admin API"), "the admin mail");
    let stored: Option<String> =
        sqlx::query_scalar("select code_hash from adm_login_challenge where uuid = $1::uuid")
            .bind(&challenge)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let stored = stored.expect("a hash is stored");
    assert_eq!(stored.len(), 64);
    assert!(!stored.contains(&code), "only a keyed hash of the code");

    let (status, _) = verify(&app, &challenge, &other_than(&code)).await;
    assert_eq!(status, 401);
    let (status, tokens) =
        verify(&app, &challenge, &format!("{} {}", &code[..3], &code[3..])).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["password_change_required"], false);
    let access = tokens["access_token"].as_str().unwrap();
    let (status, me) = status_json(get(&app, "/api/v1/auth/me", access).await).await;
    assert_eq!((status, me["username"].as_str()), (200, Some("root")));
    let (status, _) = status_json(get(&app, "/api/v1/users", access).await).await;
    assert_eq!(status, 200, "a full session");

    // Used once: the same code again, like an expired or unknown challenge, is the same 401.
    let (replayed, replay_body) = verify(&app, &challenge, &code).await;
    let (unknown, unknown_body) = verify(&app, &uuid::Uuid::new_v4().to_string(), &code).await;
    let (garbage, _) = verify(&app, "not-a-uuid", "abc").await;
    assert_eq!((replayed, unknown, garbage), (401, 401, 401));
    assert_eq!(replay_body, unknown_body);

    for action in [
        "LOGIN_CHALLENGE",
        "LOGIN_CODE_WRONG",
        "LOGIN",
        "LOGIN_CODE_REFUSED",
    ] {
        assert_eq!(audit_count(&app, action).await, 1, "{action}");
    }
    let login_row: Value =
        sqlx::query_scalar("select new_value from log_audit where action = 'LOGIN'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(login_row["second_factor"], "email");
}

/// A user of `role` with a confirmed WhatsApp device who wrote within the last day.
async fn whatsapp_user(app: &TestApp, username: &str, role: &str) -> String {
    let uuid = mfa_user(app, username, role).await;
    let wa_id = new_sender();
    sqlx::query("update adm_user set phone = '+' || $2 where uuid = $1")
        .bind(uuid)
        .bind(&wa_id)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "insert into wa_trust (user_id, wa_id, confirmed_at, reason)
         select id, $2, now(), 'confirmed' from adm_user where uuid = $1",
    )
    .bind(uuid)
    .bind(&wa_id)
    .execute(&app.db)
    .await
    .unwrap();
    sqlx::query("insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now())")
        .bind(&wa_id)
        .execute(&app.db)
        .await
        .unwrap();
    wa_id
}

/// The code in the sign-in message the fake Graph received for `wa_id`.
async fn whatsapp_code(app: &TestApp, wa_id: &str) -> String {
    let graph = app.graph.as_ref().unwrap();
    let found = || {
        graph.sends().into_iter().find_map(|r| {
            let body = &r.body;
            (body["to"] == wa_id).then(|| body["text"]["body"].as_str().unwrap_or("").to_owned())
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || async { found().is_some() }).await,
        "the code reaches WhatsApp"
    );
    let text = found().unwrap();
    let at = text.find('*').expect("code in bold") + 1;
    text[at..at + 6].to_owned()
}

#[tokio::test]
async fn a_director_with_a_confirmed_device_gets_the_code_on_whatsapp() {
    let (app, sink) = app_with_mail(|_| {}).await;
    let wa_id = whatsapp_user(&app, "dir", "DIRECTOR").await;
    let body = challenged(&app, "dir").await;
    assert_eq!(body["channel"], "whatsapp", "{body}");
    let code = whatsapp_code(&app, &wa_id).await;
    let (status, tokens) = verify(&app, body["challenge_id"].as_str().unwrap(), &code).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(
        sink.mails().is_empty(),
        "no mail when WhatsApp reached them"
    );

    // Once sent, the code is gone from the outbox row; the challenge knows it was sent.
    let (payload, status, sent): (Value, String, bool) = sqlx::query_as(
        "select o.payload, o.status, c.sent_at is not null
         from wa_outbox o join adm_login_challenge c on c.outbox_id = o.id",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(status, "sent");
    assert!(sent);
    assert!(!payload.to_string().contains(&code), "{payload}");
}

#[tokio::test]
async fn a_whatsapp_code_meta_refuses_follows_by_email_and_only_that_one_works() {
    let (app, sink) = app_with_mail(|_| {}).await;
    let wa_id = whatsapp_user(&app, "dir", "DIRECTOR").await;
    // A permanent error (the number is not on WhatsApp any more).
    app.graph.as_ref().unwrap().fail_next(400, 131026);
    let body = challenged(&app, "dir").await;
    assert_eq!(body["channel"], "whatsapp");
    let code = sink.code(1).await;
    let sent = app.graph.as_ref().unwrap().sends();
    assert!(
        sent.iter().any(|r| r.body["to"] == wa_id),
        "WhatsApp was tried"
    );
    let (failed_payload,): (Value,) =
        sqlx::query_as("select payload from wa_outbox where purpose = 'login'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        failed_payload["text"]["body"], "(sign-in code removed)",
        "the failed row keeps no code"
    );
    let (status, _) = verify(&app, body["challenge_id"].as_str().unwrap(), &code).await;
    assert_eq!(status, 200);
    assert_eq!(audit_count(&app, "LOGIN_CODE_FALLBACK").await, 1);
}

#[tokio::test]
async fn without_an_open_window_or_a_template_the_code_goes_by_email() {
    let (app, sink) = app_with_mail(|_| {}).await;
    let wa_id = whatsapp_user(&app, "dir", "DIRECTOR").await;
    sqlx::query("update wa_contact set last_in_at = now() - interval '25 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let body = challenged(&app, "dir").await;
    assert_eq!(body["channel"], "email");
    let code = sink.code(1).await;
    let (status, _) = verify(&app, body["challenge_id"].as_str().unwrap(), &code).await;
    assert_eq!(status, 200);
    assert!(
        !app.graph
            .as_ref()
            .unwrap()
            .sends()
            .iter()
            .any(|r| r.body["to"] == wa_id),
        "nothing sent to a closed window"
    );
}

#[tokio::test]
async fn five_wrong_codes_void_the_challenge_and_an_expired_one_is_refused() {
    let (app, sink) = app_with_mail(|_| {}).await;
    mfa_user(&app, "root", "SYSADMIN").await;
    let body = challenged(&app, "root").await;
    let challenge = body["challenge_id"].as_str().unwrap();
    let code = sink.code(1).await;
    for _ in 0..5 {
        assert_eq!(verify(&app, challenge, &other_than(&code)).await.0, 401);
    }
    assert_eq!(verify(&app, challenge, &code).await.0, 401, "void after 5");
    assert_eq!(audit_count(&app, "LOGIN_CODE_LOCKED").await, 1);

    let body = challenged(&app, "root").await;
    let challenge = body["challenge_id"].as_str().unwrap();
    let code = sink.code(2).await;
    sqlx::query("update adm_login_challenge set expires_at = now() - interval '1 second' where uuid = $1::uuid")
        .bind(challenge)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(verify(&app, challenge, &code).await.0, 401, "expired");
    let reasons: Vec<String> = sqlx::query_scalar(
        "select new_value->>'reason' from log_audit where action = 'LOGIN_CODE_REFUSED' order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(reasons, ["void", "expired"]);
}

#[tokio::test]
async fn a_code_works_only_with_its_own_challenge_and_a_new_login_voids_the_old_one() {
    let (app, sink) = app_with_mail(|_| {}).await;
    mfa_user(&app, "alice", "SYSADMIN").await;
    mfa_user(&app, "bob", "SYSADMIN").await;
    let alice = challenged(&app, "alice").await;
    let alice_code = sink.code(1).await;
    let bob = challenged(&app, "bob").await;
    let bob_code = sink.code(2).await;
    let bob_challenge = bob["challenge_id"].as_str().unwrap();
    // Even with Alice's very hash stored on Bob's challenge, Alice's code does not open it: the
    // hash is keyed by the user too.
    let hash_of = |uuid: String| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "select code_hash from adm_login_challenge where uuid = $1::uuid",
            )
            .bind(uuid)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let set_hash = |uuid: String, hash: String| {
        let db = app.db.clone();
        async move {
            sqlx::query("update adm_login_challenge set code_hash = $2 where uuid = $1::uuid")
                .bind(uuid)
                .bind(hash)
                .execute(&db)
                .await
                .unwrap();
        }
    };
    let bobs_hash = hash_of(bob_challenge.to_owned()).await;
    let alices_hash = hash_of(alice["challenge_id"].as_str().unwrap().to_owned()).await;
    set_hash(bob_challenge.to_owned(), alices_hash).await;
    assert_eq!(
        verify(&app, bob_challenge, &alice_code).await.0,
        401,
        "Alice's code on Bob's challenge"
    );
    set_hash(bob_challenge.to_owned(), bobs_hash).await;
    // A second login of Alice: only the newest code counts.
    let again = challenged(&app, "alice").await;
    let newest = sink.code(3).await;
    assert_eq!(
        verify(&app, alice["challenge_id"].as_str().unwrap(), &alice_code)
            .await
            .0,
        401
    );
    assert_eq!(
        verify(&app, again["challenge_id"].as_str().unwrap(), &newest)
            .await
            .0,
        200
    );
    assert_eq!(verify(&app, bob_challenge, &bob_code).await.0, 200);
}

#[tokio::test]
async fn codes_per_hour_and_the_verify_throttle_are_bounded() {
    let (app, sink) = app_with_mail(|s| {
        s.auth.mfa_codes_per_hour = 3;
        s.auth.mfa_verify_burst = 4;
        s.auth.mfa_verify_per_minute = 1;
    })
    .await;
    mfa_user(&app, "root", "SYSADMIN").await;
    for _ in 0..3 {
        challenged(&app, "root").await;
    }
    let response = login(&app, "root", PASSWORD).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(audit_count(&app, "LOGIN_CODE_LIMIT").await, 1);
    let sent: i64 = sqlx::query_scalar("select count(*) from adm_login_challenge")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sent, 3);
    assert!(
        eventually(Duration::from_secs(20), || async {
            !sink.mails().is_empty()
        })
        .await,
        "the newest code is mailed"
    );

    let challenge = uuid::Uuid::new_v4().to_string();
    let statuses: Vec<u16> = futures::future::join_all(
        (0..6).map(|_| async { verify(&app, &challenge, "123456").await.0 }),
    )
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        4,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_recent_address_skips_the_code_for_a_director_but_never_for_a_sysadmin() {
    let (app, sink) = app_with_mail(|_| {}).await;
    mfa_user(&app, "dir", "DIRECTOR").await;
    mfa_user(&app, "root", "SYSADMIN").await;
    for (n, username) in [(1, "dir"), (2, "root")] {
        let body = challenged(&app, username).await;
        let code = sink.code(n).await;
        assert_eq!(
            verify(&app, body["challenge_id"].as_str().unwrap(), &code)
                .await
                .0,
            200
        );
    }
    // Both signed in from 127.0.0.1 just now.
    let (status, body) = status_json(login(&app, "dir", PASSWORD).await).await;
    assert_eq!(status, 200, "the director's known address: {body}");
    challenged(&app, "root").await;

    // Older than auth.mfa_remember_days (30): asked again.
    sqlx::query("update adm_session set login_at = now() - interval '31 days'")
        .execute(&app.db)
        .await
        .unwrap();
    challenged(&app, "dir").await;

    // The roles API turns it off for a role, audited.
    let admin = signed_in(&app, "roles.admin", "SYSADMIN").await;
    let (status, role) = status_json(
        call(
            &app,
            Method::PATCH,
            "/api/v1/roles/DIRECTOR",
            Some(&admin.access),
            Some(json!({ "mfa_required": false })),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{role}");
    assert_eq!(role["mfa_required"], false);
    assert_eq!(role["mfa_remember_address"], true);
    assert_eq!(login(&app, "dir", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn a_user_without_a_device_or_email_is_told_there_is_nowhere_to_send_the_code() {
    let (app, _sink) = app_with_mail(|_| {}).await;
    let uuid = mfa_user(&app, "root", "SYSADMIN").await;
    sqlx::query("update adm_user set email = null where uuid = $1")
        .bind(uuid)
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) = status_json(login(&app, "root", PASSWORD).await).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("email"));
    assert_eq!(audit_count(&app, "LOGIN_CODE_UNREACHABLE").await, 1);
}

async fn change(app: &TestApp, token: &str, current: &str, new: &str) -> (u16, Value) {
    status_json(
        call(
            app,
            Method::POST,
            "/api/v1/auth/password",
            Some(token),
            Some(json!({ "current": current, "new": new })),
        )
        .await,
    )
    .await
}

#[tokio::test]
async fn changing_ones_password_checks_the_policy_and_ends_the_other_sessions() {
    let (app, _sink) = app_with_mail(|_| {}).await;
    let first = signed_in(&app, "budi.santoso", "MANAGER_SALES").await;
    let second = crate::admin_support::tokens(&app, "budi.santoso").await;

    let cases = [
        (
            "Wrong-current-pass",
            "kopi tubruk gerimis jendela",
            "current",
        ),
        (PASSWORD, "short", "new"),
        (PASSWORD, "Password1234!", "new"),
        (PASSWORD, "santoso-kopi-gerimis-77", "new"),
        (PASSWORD, "sentient kopi gerimis 77", "new"),
        (PASSWORD, PASSWORD, "new"),
    ];
    for (current, new, field) in cases {
        let (status, body) = change(&app, &first.access, current, new).await;
        assert_eq!(status, 422, "{new}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{new}: {body}");
    }
    assert_eq!(audit_count(&app, "PASSWORD_CHANGE_FAILED").await, 1);

    let (status, body) = change(&app, &first.access, PASSWORD, "kopi tubruk gerimis jendela").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        get(&app, "/api/v1/auth/me", &first.access).await.status(),
        200,
        "this session stays"
    );
    assert_eq!(
        get(&app, "/api/v1/auth/me", &second.access).await.status(),
        401,
        "the other ends"
    );
    assert_eq!(login(&app, "budi.santoso", PASSWORD).await.status(), 401);
    assert_eq!(
        login(&app, "budi.santoso", "kopi tubruk gerimis jendela")
            .await
            .status(),
        200
    );
    let revoked: Value = sqlx::query_scalar(
        "select new_value->'revoked_sessions' from log_audit where action = 'PASSWORD_CHANGE'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(revoked, 1);

    // Back to the previous password: within the last five, refused.
    let (status, body) = change(&app, &first.access, "kopi tubruk gerimis jendela", PASSWORD).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("last 5"));
}

#[tokio::test]
async fn after_an_admins_reset_the_next_login_may_only_change_the_password() {
    let (app, _sink) = app_with_mail(|_| {}).await;
    let admin = signed_in(&app, "helpdesk", "SYSADMIN").await;
    let user = user_with_role(&app, "siti", "MANAGER_SALES").await;
    let (status, reset) = status_json(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/users/{user}/reset-password"),
            Some(&admin.access),
            Some(json!({})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["user"]["must_change_password"], true);
    let temporary = reset["temporary_password"].as_str().unwrap().to_owned();

    let (status, tokens) = status_json(login(&app, "siti", &temporary).await).await;
    assert_eq!(status, 200);
    assert_eq!(tokens["password_change_required"], true);
    let access = tokens["access_token"].as_str().unwrap();
    let (status, body) = status_json(get(&app, "/api/v1/menus", access).await).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["detail"]
        .as_str()
        .unwrap()
        .contains("/api/v1/auth/password"));
    let (status, me) = status_json(get(&app, "/api/v1/auth/me", access).await).await;
    assert_eq!(
        (status, &me["password_change_required"]),
        (200, &json!(true))
    );
    // A refresh keeps the restriction.
    let (status, refreshed) = status_json(
        call(
            &app,
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": tokens["refresh_token"] })),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &refreshed["password_change_required"]),
        (200, &json!(true))
    );
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(get(&app, "/api/v1/menus", access).await.status(), 403);
    // The temporary password itself is refused as the new one.
    assert_eq!(change(&app, access, &temporary, &temporary).await.0, 422);

    let (status, _) = change(&app, access, &temporary, "kopi tubruk gerimis jendela").await;
    assert_eq!(status, 204);
    assert_eq!(
        get(&app, "/api/v1/menus", access).await.status(),
        200,
        "now a full session"
    );
    // A password an admin gives at creation is the admin's too.
    let (status, created) = status_json(
        call(
            &app,
            Method::POST,
            "/api/v1/users",
            Some(&admin.access),
            Some(
                json!({ "username": "rina", "full_name": "Rina", "role": "OPERATOR",
                         "email": "rina@factory.local", "password": "jendela gerimis kopi" }),
            ),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, &created["must_change_password"]),
        (201, &json!(true)),
        "{created}"
    );
    let (_, tokens) = status_json(login(&app, "rina", "jendela gerimis kopi").await).await;
    assert_eq!(tokens["password_change_required"], true);

    let must: bool =
        sqlx::query_scalar("select must_change_password from adm_user where uuid = $1")
            .bind(user)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(!must);
}

#[tokio::test]
async fn an_expired_password_gets_a_session_that_may_only_change_it() {
    let (app, _sink) = app_with_mail(|s| s.auth.password_max_age_days = 90).await;
    let user = user_with_role(&app, "siti", "MANAGER_SALES").await;
    let fresh = crate::admin_support::tokens(&app, "siti").await;
    assert_eq!(
        get(&app, "/api/v1/menus", &fresh.access).await.status(),
        200
    );
    sqlx::query(
        "update adm_user set password_changed_at = now() - interval '91 days' where uuid = $1",
    )
    .bind(user)
    .execute(&app.db)
    .await
    .unwrap();
    let (status, tokens) = status_json(login(&app, "siti", PASSWORD).await).await;
    assert_eq!(
        (status, &tokens["password_change_required"]),
        (200, &json!(true))
    );
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(get(&app, "/api/v1/menus", access).await.status(), 403);
    assert_eq!(
        change(&app, access, PASSWORD, "kopi tubruk gerimis jendela")
            .await
            .0,
        204
    );
    assert_eq!(get(&app, "/api/v1/menus", access).await.status(), 200);
}

#[tokio::test]
async fn the_cli_sets_a_lost_password_and_ends_the_sessions() {
    let (app, _sink) = app_with_mail(|_| {}).await;
    let old = signed_in(&app, "root", "SYSADMIN").await;
    let run = |password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["admin", "reset-password", "--username", "root"])
            .env("SENTIENT_ENV", "test")
            .env(
                "DATABASE_URL",
                app.test_db.settings.database.url.expose_secret(),
            )
            .env("SENTIENT_ADMIN_PASSWORD", password)
            .output()
            .unwrap()
    };
    let weak = run("password1234");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("too easy"));
    let reused = run(PASSWORD);
    assert!(!reused.status.success());
    assert!(String::from_utf8_lossy(&reused.stderr).contains("last 5"));

    let ok = run("kopi tubruk gerimis jendela");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        get(&app, "/api/v1/auth/me", &old.access).await.status(),
        401
    );
    let (status, tokens) =
        status_json(login(&app, "root", "kopi tubruk gerimis jendela").await).await;
    assert_eq!(
        (status, &tokens["password_change_required"]),
        (200, &json!(false))
    );
    assert_eq!(audit_count(&app, "RESET_PWD").await, 1);
}

// Several threads: the hub runs as a child process while the test talks to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_binary_mails_the_code_in_local_mode_and_logs_no_code() {
    let db = crate::helpers::fresh_database().await;
    let s = db.settings.clone();
    let mailbox = std::env::temp_dir().join(format!("sentient-mailbox-{}", uuid::Uuid::new_v4()));
    let log = std::env::temp_dir().join(format!("sentient-hub-{}.log", uuid::Uuid::new_v4()));
    let pool = sqlx::PgPool::connect_with(s.database.connect_options())
        .await
        .unwrap();
    let hash = sentient_hub::admin::password::Hasher::new(&s.auth)
        .unwrap()
        .hash(secrecy::SecretString::from(PASSWORD))
        .await
        .unwrap();
    sqlx::query(
        "insert into adm_user (username, email, full_name, role_id, password_hash)
         select 'root', 'root@factory.local', 'Root', id, $1 from adm_role where code = 'SYSADMIN'",
    )
    .bind(hash)
    .execute(&pool)
    .await
    .unwrap();
    let port = crate::helpers::free_port();
    let mut hub = tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("serve")
        // Local mode: no WhatsApp token, no mail server (the local mailbox).
        .env("SENTIENT_ENV", "local")
        .env("DATABASE_URL", s.database.url.expose_secret())
        .env("SENTIENT__SERVER__PORT", port.to_string())
        .env("SENTIENT__SMTP__MAILBOX_DIR", &mailbox)
        .env("SENTIENT__TELEMETRY__FILTER", "debug")
        .env("SENTIENT__INBOX__STREAM", &s.inbox.stream)
        .env("SENTIENT__INBOX__SUBJECT_PREFIX", &s.inbox.subject_prefix)
        .env("SENTIENT__LLM__SUBJECT", &s.llm.subject)
        .env("SENTIENT__ALERTS__STREAM", &s.alerts.stream)
        .env("SENTIENT__ALERTS__SUBJECT", &s.alerts.subject)
        .env("SENTIENT__ALERTS__DETECT_EVERY_MINS", "0")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    assert!(
        eventually(Duration::from_secs(60), || async {
            client.get(format!("{base}/healthz")).send().await.is_ok()
        })
        .await,
        "the hub never listened"
    );
    let challenge: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({ "login": "root", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let read_code = || {
        std::fs::read_dir(&mailbox).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .find_map(|m| {
                    let at = m.find("verification code: ")? + "verification code: ".len();
                    Some(m[at..at + 6].to_owned())
                })
        })
    };
    assert!(
        eventually(Duration::from_secs(20), || async { read_code().is_some() }).await,
        "the code mail reaches the local mailbox: {challenge}"
    );
    let code = read_code().unwrap();
    let wrong = other_than(&code);
    let verify = |code: String| {
        let client = client.clone();
        let url = format!("{base}/api/v1/auth/login/verify");
        let id = challenge["challenge_id"].clone();
        async move {
            client
                .post(url)
                .json(&json!({ "challenge_id": id, "code": code }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(verify(wrong.clone()).await, 401);
    assert_eq!(verify(code.clone()).await, 200);
    hub.kill().await.unwrap();

    let logs = std::fs::read_to_string(&log).unwrap()
        + &std::fs::read_to_string(log.with_extension("err")).unwrap();
    assert!(
        logs.contains("login needs a code"),
        "the logs were captured"
    );
    for c in [&code, &wrong] {
        let exact = regex::Regex::new(&format!(r"\b{c}\b")).unwrap();
        assert!(!exact.is_match(&logs), "a code in the logs");
    }
    let _ = std::fs::remove_dir_all(&mailbox);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(log.with_extension("err"));
}

#[tokio::test]
async fn a_failed_status_after_the_send_moves_the_code_to_email() {
    let (app, sink) = app_with_mail(|_| {}).await;
    let wa_id = whatsapp_user(&app, "dir", "DIRECTOR").await;
    let body = challenged(&app, "dir").await;
    let whatsapp = whatsapp_code(&app, &wa_id).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.count("select count(*) from wa_outbox where purpose = 'login' and status = 'sent'")
                .await
                == 1
        })
        .await
    );
    let wamid: String = sqlx::query_scalar("select wamid from wa_outbox where purpose = 'login'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    // Meta accepted it, then reports it undeliverable.
    let response = app
        .post_webhook(&crate::helpers::status_delivery(
            &wamid, "failed", &wa_id, None,
        ))
        .await;
    assert_eq!(response.status(), 200);
    let code = sink.code(1).await;
    let challenge = body["challenge_id"].as_str().unwrap();
    if code != whatsapp {
        assert_eq!(
            verify(&app, challenge, &whatsapp).await.0,
            401,
            "the WhatsApp code is void"
        );
    }
    assert_eq!(verify(&app, challenge, &code).await.0, 200);
    assert_eq!(audit_count(&app, "LOGIN_CODE_FALLBACK").await, 1);
}

#[tokio::test]
async fn changing_the_password_voids_a_challenge_started_with_the_old_one() {
    let (app, sink) = app_with_mail(|_| {}).await;
    mfa_user(&app, "dir", "DIRECTOR").await;
    // Someone who knows the password starts a sign-in from elsewhere.
    let stolen = challenged(&app, "dir").await;
    let code = sink.code(1).await;
    // The owner, signed in already (the role's second factor off for this step), changes it.
    sqlx::query("update adm_role set mfa_required = false where code = 'DIRECTOR'")
        .execute(&app.db)
        .await
        .unwrap();
    let owner = crate::admin_support::tokens(&app, "dir").await;
    assert_eq!(
        change(&app, &owner.access, PASSWORD, "kopi tubruk gerimis jendela")
            .await
            .0,
        204
    );
    assert_eq!(
        verify(&app, stolen["challenge_id"].as_str().unwrap(), &code)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn an_address_whose_session_was_ended_for_cause_is_asked_again_and_sysadmin_never_skips() {
    let (app, sink) = app_with_mail(|_| {}).await;
    mfa_user(&app, "dir", "DIRECTOR").await;
    let body = challenged(&app, "dir").await;
    let code = sink.code(1).await;
    let (_, tokens) = verify(&app, body["challenge_id"].as_str().unwrap(), &code).await;
    let (status, again) = status_json(login(&app, "dir", PASSWORD).await).await;
    assert_eq!(status, 200, "remembered");
    // An admin forces both sessions out (say, the laptop was stolen): the address is no longer
    // one the owner vouched for.
    let admin = signed_in(&app, "roles.admin", "SYSADMIN").await;
    for tokens in [&tokens, &again] {
        let session = tokens["session"].as_str().unwrap();
        let forced = call(
            &app,
            Method::DELETE,
            &format!("/api/v1/sessions/{session}"),
            Some(&admin.access),
            None,
        )
        .await;
        assert_eq!(forced.status(), 204);
    }
    challenged(&app, "dir").await;

    let (status, body) = status_json(
        call(
            &app,
            Method::PATCH,
            "/api/v1/roles/SYSADMIN",
            Some(&admin.access),
            Some(json!({ "mfa_remember_address": true })),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "mfa_remember_address");
}
