//! Users, phones, validation, lists, the audit trail of every mutation, chats and alerts, and the
//! bootstrap command.

use std::process::Command;

use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::admin_support::{call, get, login, signed_in, status_json, Tokens};
use crate::helpers::{spawn_app, TestApp};

async fn send(
    app: &TestApp,
    t: &Tokens,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    status_json(call(app, method, path, Some(&t.access), body).await).await
}

async fn create_user(app: &TestApp, t: &Tokens, body: Value) -> (u16, Value) {
    send(app, t, Method::POST, "/api/v1/users", Some(body)).await
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn phones_are_normalised_validated_and_unique_among_live_users() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let (status, dirut) = create_user(
        &app,
        &admin,
        json!({ "username": "dirut", "full_name": "Direktur Utama", "role": "DIRECTOR",
                "phone": "0812-3456-7890", "email": "dirut@factory.local" }),
    )
    .await;
    assert_eq!(status, 201, "{dirut}");
    assert_eq!(dirut["phone"], "+6281234567890");
    assert_eq!(dirut["has_password"], false);

    let (_, other) = create_user(
        &app,
        &admin,
        json!({ "username": "wakil", "full_name": "Wakil", "role": "DIRECTOR" }),
    )
    .await;
    let other_path = format!("/api/v1/users/{}/phone", other["uuid"].as_str().unwrap());
    for taken in ["+62 812 3456 7890", "6281234567890", "081234567890"] {
        let (status, problem) = send(
            &app,
            &admin,
            Method::PUT,
            &other_path,
            Some(json!({ "phone": taken })),
        )
        .await;
        assert_eq!(status, 409, "{taken}: {problem}");
        assert_eq!(fields(&problem), ["phone"]);
    }
    for bad in ["12345", "0812-abc", "+0812345678", ""] {
        let (status, problem) = send(
            &app,
            &admin,
            Method::PUT,
            &other_path,
            Some(json!({ "phone": bad })),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(fields(&problem), ["phone"]);
    }
    let (status, problem) = create_user(
        &app,
        &admin,
        json!({ "username": "third", "full_name": "T", "role": "OPERATOR", "phone": "+6281234567890" }),
    )
    .await;
    assert_eq!(status, 409, "{problem}");

    // A deleted user frees the number.
    let dirut_uuid = dirut["uuid"].as_str().unwrap();
    let (status, _) = send(
        &app,
        &admin,
        Method::DELETE,
        &format!("/api/v1/users/{dirut_uuid}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = send(
        &app,
        &admin,
        Method::PUT,
        &other_path,
        Some(json!({ "phone": "+62 812-3456-7890" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["phone"], "+6281234567890");
    assert!(
        body["wa_revoked_at"].is_string(),
        "a new number needs a new OTP"
    );
    let (status, body) = send(
        &app,
        &admin,
        Method::PUT,
        &other_path,
        Some(json!({ "phone": null })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["phone"], Value::Null);
}

#[tokio::test]
async fn validation_errors_name_the_fields() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let (status, problem) = create_user(
        &app,
        &admin,
        json!({ "username": "Bad Name!", "email": "nope", "full_name": "", "role": "KING",
                "lang": "fr", "password": "short" }),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        fields(&problem),
        ["username", "email", "full_name", "lang", "password", "role"]
    );
    assert_eq!(problem["type"], "urn:sentient-hub:problem:validation");
    assert_eq!(problem["status"], 422);

    let (status, problem) = create_user(&app, &admin, json!({ "username": "x1" })).await;
    assert_eq!(status, 422);
    assert_eq!(fields(&problem), ["full_name"], "{problem}");
    let (status, problem) = create_user(
        &app,
        &admin,
        json!({ "username": "x1", "full_name": "X", "role": "OPERATOR", "salary": 1 }),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(fields(&problem), ["salary"], "{problem}");
    let (status, problem) = create_user(
        &app,
        &admin,
        json!({ "username": 5, "full_name": "X", "role": "OPERATOR" }),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(fields(&problem), ["username"], "{problem}");

    let response = app
        .client
        .post(format!("{}/api/v1/users", app.address))
        .bearer_auth(&admin.access)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    let (status, problem) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/users?per_page=1000",
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(fields(&problem), ["per_page"]);
    let (status, problem) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/users?is_active=maybe",
        None,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(fields(&problem), ["is_active"]);
    let (status, _) = send(&app, &admin, Method::GET, "/api/v1/users/not-a-uuid", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn user_lists_filter_and_paginate() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    for (name, role) in [
        ("andi", "OPERATOR"),
        ("budi", "OPERATOR"),
        ("citra", "OPERATOR"),
        ("dewi", "STAFF_SALES"),
    ] {
        let (status, _) = create_user(
            &app,
            &admin,
            json!({ "username": name, "full_name": name, "role": role }),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/users?role=operator&per_page=2&page=2",
        None,
    )
    .await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["page"], 2);
    assert_eq!(page["per_page"], 2);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["username"], "citra");
    let (_, page) = send(&app, &admin, Method::GET, "/api/v1/users?q=DEW", None).await;
    assert_eq!(page["total"], 1);
    let (_, page) = send(&app, &admin, Method::GET, "/api/v1/users?q=%25", None).await;
    assert_eq!(page["total"], 0, "wildcards are searched literally");
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/users?is_active=true",
        None,
    )
    .await;
    assert_eq!(page["total"], 5);
    assert!(page["items"][0].get("id").is_none(), "no internal ids");
    assert!(page["items"][0].get("password_hash").is_none());
}

#[tokio::test]
async fn every_mutation_writes_an_audit_row_with_old_and_new_values_and_the_address() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let (status, user) = create_user(
        &app,
        &admin,
        json!({ "username": "andi", "full_name": "Andi", "role": "OPERATOR",
                "password": "Sangat-Rahasia-99" }),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let u = user["uuid"].as_str().unwrap().to_owned();
    let alert: String = sqlx::query_scalar(
        "insert into ai_alert (module, alert_type, severity, message)
         values ('WO', 'ANOMALY', 'High', 'Reject rate MCH-003 = 8.5%') returning uuid::text",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let (status, andi) = status_json(login(&app, "andi", "Sangat-Rahasia-99").await).await;
    assert_eq!(status, 200, "{andi}");
    let andi_session = andi["session"].as_str().unwrap().to_owned();

    let steps: Vec<(Method, String, Option<Value>, &str)> = vec![
        (
            Method::PATCH,
            format!("/api/v1/users/{u}"),
            Some(json!({ "full_name": "Andi S." })),
            "UPDATE",
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{u}/phone"),
            Some(json!({ "phone": "081199990000" })),
            "UPDATE",
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{u}/email"),
            Some(json!({ "email": "andi@factory.local" })),
            "UPDATE",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{u}/revoke-device"),
            None,
            "REVOKE_DEVICE",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{u}/unlock"),
            None,
            "UNLOCK",
        ),
        (
            Method::DELETE,
            format!("/api/v1/sessions/{andi_session}"),
            None,
            "FORCE_LOGOUT",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{u}/deactivate"),
            None,
            "DEACTIVATE",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{u}/activate"),
            None,
            "ACTIVATE",
        ),
        (
            Method::POST,
            format!("/api/v1/users/{u}/reset-password"),
            Some(json!({ "password": "Baru-Sekali-2025" })),
            "RESET_PWD",
        ),
        (
            Method::POST,
            "/api/v1/roles".to_owned(),
            Some(json!({ "code": "AUDITOR", "name": "Auditor", "level": 30 })),
            "CREATE",
        ),
        (
            Method::PATCH,
            "/api/v1/roles/AUDITOR".to_owned(),
            Some(json!({ "description": "Reads the log" })),
            "UPDATE",
        ),
        (
            Method::PUT,
            "/api/v1/roles/AUDITOR/permissions".to_owned(),
            Some(json!({ "permissions": ["ADMIN.AUDIT.VIEW"] })),
            "SET_PERMISSIONS",
        ),
        (
            Method::DELETE,
            "/api/v1/roles/AUDITOR".to_owned(),
            None,
            "DELETE",
        ),
        (
            Method::POST,
            format!("/api/v1/alerts/{alert}/ack"),
            None,
            "ACK",
        ),
        (
            Method::POST,
            "/api/v1/alert-rules".to_owned(),
            Some(json!({ "module": "QC", "min_severity": "high", "role": "DIRECTOR" })),
            "CREATE",
        ),
        (Method::DELETE, format!("/api/v1/users/{u}"), None, "DELETE"),
    ];
    for (method, path, body, action) in steps {
        let before: i64 = app.count("select count(*) from log_audit").await;
        let (status, answer) = send(&app, &admin, method.clone(), &path, body).await;
        assert!(status < 300, "{method} {path}: {status} {answer}");
        let row: (String, Option<String>, Option<Value>, Option<Value>, i64) = sqlx::query_as(
            "select a.action, a.ip_address, a.old_value, a.new_value,
                    (select count(*) from log_audit) from log_audit a order by a.id desc limit 1",
        )
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(row.4, before + 1, "{method} {path}: one audit row");
        assert_eq!(row.0, action, "{method} {path}");
        assert_eq!(row.1.as_deref(), Some("127.0.0.1"), "{method} {path}");
        if action != "CREATE" && action != "FORCE_LOGOUT" {
            assert!(row.2.is_some(), "{method} {path}: old value");
        }
        if action != "DELETE" {
            assert!(row.3.is_some(), "{method} {path}: new value");
        }
    }
    // The rule created above, deleted again.
    let (_, rules) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/alert-rules?per_page=100",
        None,
    )
    .await;
    let rule = rules["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["module"] == "QC" && r["role"] == "DIRECTOR")
        .unwrap()["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = send(
        &app,
        &admin,
        Method::DELETE,
        &format!("/api/v1/alert-rules/{rule}"),
        None,
    )
    .await;
    assert_eq!(status, 204);

    let leaked: i64 = app
        .count("select count(*) from log_audit where coalesce(old_value::text, '') || coalesce(new_value::text, '') ~ 'argon2|password_hash|Sangat-Rahasia|Baru-Sekali'")
        .await;
    assert_eq!(leaked, 0, "no password or hash in the audit log");

    // The audit log itself: filter by user, action and entity.
    let (status, page) = send(
        &app,
        &admin,
        Method::GET,
        &format!("/api/v1/audit?user=admin&entity={u}&per_page=100"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 10, "{page}");
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/audit?action=reset_pwd",
        None,
    )
    .await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["username"], "admin");
    assert_eq!(page["items"][0]["entity_uuid"], u);
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/audit?action=LOGIN&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(page["total"], 2, "{page}");
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/audit?to=2000-01-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(page["total"], 0);
}

#[tokio::test]
async fn alerts_and_chats_can_be_listed_filtered_and_acknowledged() {
    let app = spawn_app().await;
    let manager = signed_in(&app, "jane", "MANAGER_PROD").await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    sqlx::raw_sql(
        "insert into ai_alert (module, alert_type, severity, message, created_at) values
            ('WO', 'ANOMALY', 'High', 'Reject rate MCH-003 = 8.5%', now() - interval '1 hour'),
            ('FIN', 'CASHFLOW', 'Critical', 'Saldo kas negatif dalam 7 hari', now()),
            ('INV', 'STOCK', 'Medium', 'ITM-005 oversold (-200)', now());
         insert into ai_chat (user_id, phone, user_role, msg_in, msg_out, intent, outcome)
         select id, '+628110000003', 'MANAGER_PROD', 'status WO-1?', 'On track', 'wo_status', 'llm'
         from adm_user where username = 'jane';
         insert into ai_chat (phone, msg_in, outcome) values ('+628999999999', 'halo', 'refused');",
    )
    .execute(&app.db)
    .await
    .unwrap();

    let (status, page) = send(
        &app,
        &manager,
        Method::GET,
        "/api/v1/alerts?open=true",
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["total"], 2,
        "production may not read finance data, finance alerts included: {page}"
    );
    assert_eq!(page["items"][1]["module"], "WO", "newest first");
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/alerts?severity=critical",
        None,
    )
    .await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["module"], "FIN");
    let fin = page["items"][0]["uuid"].as_str().unwrap().to_owned();
    let (status, _) = send(
        &app,
        &manager,
        Method::POST,
        &format!("/api/v1/alerts/{fin}/ack"),
        None,
    )
    .await;
    assert_eq!(status, 404, "an alert the caller may not read is not found");
    let (_, page) = send(
        &app,
        &manager,
        Method::GET,
        "/api/v1/alerts?severity=high",
        None,
    )
    .await;
    assert_eq!(page["total"], 1);
    let wo = page["items"][0]["uuid"].as_str().unwrap().to_owned();
    let (status, acked) = send(
        &app,
        &manager,
        Method::POST,
        &format!("/api/v1/alerts/{wo}/ack"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["acked_by"], "jane");
    assert_eq!(acked["is_read"], true);
    let (status, again) = send(
        &app,
        &manager,
        Method::POST,
        &format!("/api/v1/alerts/{wo}/ack"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        again["acked_at"], acked["acked_at"],
        "acknowledging twice changes nothing"
    );
    let (_, page) = send(
        &app,
        &manager,
        Method::GET,
        "/api/v1/alerts?open=true",
        None,
    )
    .await;
    assert_eq!(page["total"], 1);

    let (status, _) = send(&app, &manager, Method::GET, "/api/v1/chats", None).await;
    assert_eq!(status, 403, "chat logs are audit material");
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/chats?phone=08110000003",
        None,
    )
    .await;
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(page["items"][0]["username"], "jane");
    let (_, page) = send(
        &app,
        &admin,
        Method::GET,
        "/api/v1/chats?outcome=refused",
        None,
    )
    .await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["user"], Value::Null);
}

#[tokio::test]
async fn the_first_admin_is_created_from_the_command_line() {
    let app = spawn_app().await;
    let output = Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "admin",
            "create-user",
            "--username",
            "root",
            "--email",
            "root@factory.local",
            "--role",
            "SYSADMIN",
            "--phone",
            "0811-0000-0005",
        ])
        .env("SENTIENT_ENV", "test")
        .env(
            "DATABASE_URL",
            app.test_db.settings.database.url.expose_secret(),
        )
        .env("SENTIENT_ADMIN_PASSWORD", "Pertama-Kali-2024")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("created user root"), "{stdout}");
    assert!(
        !stdout.contains("Pertama") && !stderr.contains("Pertama"),
        "never echoed"
    );
    // A SYSADMIN signs in with a second factor (tests/api/admin_mfa.rs); this test is about the
    // account the command made, so it signs in with the password alone.
    let (status, body) =
        status_json(login(&app, "root@factory.local", "Pertama-Kali-2024").await).await;
    assert_eq!(status, 202, "a SYSADMIN gets a challenge: {body}");
    sqlx::query("update adm_role set mfa_required = false where code = 'SYSADMIN'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, body) =
        status_json(login(&app, "root@factory.local", "Pertama-Kali-2024").await).await;
    assert_eq!(status, 200, "{body}");
    let me = get(
        &app,
        "/api/v1/auth/me",
        body["access_token"].as_str().unwrap(),
    )
    .await;
    let (_, me) = status_json(me).await;
    assert_eq!(me["role"], "SYSADMIN");
    let phone: String = sqlx::query_scalar("select phone from adm_user where username = 'root'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(phone, "+6281100000005");

    // The same username again is refused with a clear line.
    let again = Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "admin",
            "create-user",
            "--username",
            "root",
            "--email",
            "other@factory.local",
        ])
        .env("SENTIENT_ENV", "test")
        .env(
            "DATABASE_URL",
            app.test_db.settings.database.url.expose_secret(),
        )
        .env("SENTIENT_ADMIN_PASSWORD", "Pertama-Kali-2024")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("adm_user_username_live_uq"));
}

#[tokio::test]
async fn a_user_administrator_cannot_hand_out_a_role_holding_more_than_their_own() {
    let app = spawn_app().await;
    crate::admin_support::role_with(
        &app,
        "USER_ADMIN",
        &["ADMIN.USER.CREATE", "ADMIN.USER.READ", "ADMIN.USER.UPDATE"],
    )
    .await;
    crate::admin_support::role_with(&app, "HELPDESK", &["ADMIN.USER.READ"]).await;
    let t = signed_in(&app, "useradmin", "USER_ADMIN").await;
    let me = crate::admin_support::user_with_role(&app, "spare", "HELPDESK").await;
    let own: String =
        sqlx::query_scalar("select uuid::text from adm_user where username = 'useradmin'")
            .fetch_one(&app.db)
            .await
            .unwrap();

    // READONLY (level 99, every business READ, FIN.READ among them): not theirs to give.
    let (status, problem) = create_user(
        &app,
        &t,
        json!({ "username": "reader", "email": "reader@factory.local", "full_name": "Reader",
                "role": "READONLY" }),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cannot assign"),
        "{problem}"
    );
    for target in [own.as_str(), &me.to_string()] {
        let (status, problem) = send(
            &app,
            &t,
            Method::PATCH,
            &format!("/api/v1/users/{target}"),
            Some(json!({ "role": "READONLY" })),
        )
        .await;
        assert_eq!(status, 403, "{problem}");
    }
    assert_eq!(
        app.count("select count(*) from adm_user u join adm_role r on r.id = u.role_id where r.code = 'READONLY'")
            .await,
        0
    );

    // A role whose every permission they hold is theirs to give.
    let (status, created) = create_user(
        &app,
        &t,
        json!({ "username": "helper", "email": "helper@factory.local", "full_name": "Helper",
                "role": "HELPDESK" }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
}

#[tokio::test]
async fn a_nul_character_anywhere_gets_422_naming_the_field_not_a_server_error() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let (status, problem) = create_user(
        &app,
        &admin,
        json!({ "username": "nul1", "full_name": "A\u{0}B", "role": "OPERATOR" }),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["full_name"], "{problem}");

    let (status, problem) = send(
        &app,
        &admin,
        Method::PUT,
        "/api/v1/roles/OPERATOR/permissions",
        Some(json!({ "permissions": ["AI.CHAT", "WO\u{0}READ"] })),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["permissions[1]"], "{problem}");

    let (status, problem) =
        status_json(get(&app, "/api/v1/users?q=a%00b", &admin.access).await).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["q"], "{problem}");

    let (status, _) =
        status_json(get(&app, "/api/v1/roles/OP%00ERATOR", &admin.access).await).await;
    assert_eq!(
        status, 404,
        "a code PostgreSQL cannot compare names no role"
    );
    assert_eq!(
        app.count("select count(*) from adm_user where username = 'nul1'")
            .await,
        0
    );
}
