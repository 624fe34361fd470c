//! Permissions on every route (driven by the OpenAPI document), roles, menus, and the docs.

use reqwest::Method;
use serde_json::{json, Value};

use crate::admin_support::{call, get, role_with, signed_in, status_json, tokens, user_with_role};
use crate::helpers::spawn_app;

/// Every operation of the document: (method, path with placeholders filled, required scopes).
fn operations(doc: &Value) -> Vec<(Method, String, Option<Vec<String>>)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let scopes = op["security"][0]["bearer"].as_array().map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            });
            let filled = path
                .replace("{uuid}", &uuid::Uuid::new_v4().to_string())
                .replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{code}", "NO_SUCH_ROLE");
            out.push((method, filled, scopes));
        }
    }
    out
}

#[tokio::test]
async fn every_route_refuses_a_caller_without_its_permission() {
    let app = spawn_app().await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let ops = operations(&doc);
    let guarded: Vec<_> = ops
        .iter()
        .filter(|(_, _, s)| s.as_ref().is_some_and(|s| !s.is_empty()))
        .collect();
    assert!(
        guarded.len() >= 25,
        "only {} guarded operations",
        guarded.len()
    );
    // Nothing under /api/v1 is left open by mistake: only sign-in (both steps) and refresh need
    // no token.
    for (method, path, scopes) in &ops {
        if scopes.is_none() {
            assert!(
                [
                    "/api/v1/auth/login",
                    "/api/v1/auth/login/verify",
                    "/api/v1/auth/refresh"
                ]
                .contains(&path.as_str()),
                "{method} {path} has no security requirement"
            );
        }
    }

    let all: Vec<String> = sqlx::query_scalar("select code from adm_permission")
        .fetch_all(&app.db)
        .await
        .unwrap();
    for (i, (method, path, scopes)) in guarded.iter().enumerate() {
        let needed = &scopes.as_ref().unwrap()[0];
        let without: Vec<&str> = all
            .iter()
            .map(String::as_str)
            .filter(|c| c != needed)
            .collect();
        let (lacking, holding) = (format!("LACKS_{i}"), format!("HOLDS_{i}"));
        role_with(&app, &lacking, &without).await;
        role_with(&app, &holding, &[needed]).await;
        let lacks = signed_in(&app, &format!("lacks{i}"), &lacking).await;
        let holds = signed_in(&app, &format!("holds{i}"), &holding).await;
        let body = matches!(*method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));

        let (status, problem) = status_json(
            call(
                &app,
                method.clone(),
                path,
                Some(&lacks.access),
                body.clone(),
            )
            .await,
        )
        .await;
        assert_eq!(status, 403, "{method} {path} without {needed}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains(needed.as_str()),
            "{problem}"
        );
        let anonymous = call(&app, method.clone(), path, None, body.clone()).await;
        assert_eq!(anonymous.status(), 401, "{method} {path} anonymous");
        let (status, answer) =
            status_json(call(&app, method.clone(), path, Some(&holds.access), body).await).await;
        assert_ne!(status, 403, "{method} {path} with only {needed}: {answer}");
        assert_ne!(status, 401, "{method} {path} with only {needed}: {answer}");
    }
}

#[tokio::test]
async fn the_openapi_document_and_the_docs_page_are_served_from_the_binary() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let login = &doc["paths"]["/api/v1/auth/login"]["post"];
    assert!(login["responses"]["401"].is_object());
    let users = &doc["paths"]["/api/v1/users"]["get"];
    assert_eq!(users["security"][0]["bearer"][0], "ADMIN.USER.READ");
    let params: Vec<&str> = users["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"page") && params.contains(&"per_page") && params.contains(&"q"));

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    assert!(!html.contains("https://"), "no CDN: {html}");
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/api/v1/openapi.json"), "{init}");
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.text().await.unwrap().len() > 100_000);
}

#[tokio::test]
async fn the_menu_tree_follows_the_callers_role_and_its_permissions() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let operator = signed_in(&app, "operator1", "OPERATOR").await;

    let codes = |tree: &Value| -> Vec<String> {
        fn walk(nodes: &Value, out: &mut Vec<String>) {
            for n in nodes.as_array().unwrap() {
                out.push(n["code"].as_str().unwrap().to_owned());
                walk(&n["children"], out);
            }
        }
        let mut out = Vec::new();
        walk(tree, &mut out);
        out
    };
    let (status, tree) = status_json(get(&app, "/api/v1/menus", &operator.access).await).await;
    assert_eq!(status, 200);
    let op = codes(&tree);
    assert_eq!(tree[0]["code"], "MENU_DASHBOARD", "sorted by sort_order");
    assert!(op.contains(&"MENU_WO".to_owned()), "{op:?}");
    assert!(!op.iter().any(|c| c.starts_with("MENU_ADM")), "{op:?}");
    assert!(
        !op.contains(&"MENU_SALES".to_owned()),
        "empty groups are dropped: {op:?}"
    );
    let production = tree
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["code"] == "MENU_PRODUCTION")
        .unwrap();
    assert_eq!(production["children"][0]["code"], "MENU_WO", "nested");

    let (_, tree) = status_json(get(&app, "/api/v1/menus", &admin.access).await).await;
    assert!(codes(&tree).contains(&"MENU_ADM_AUDIT".to_owned()));

    // Taking WO.READ away from operators removes their Work Order menu at once.
    let (status, body) = status_json(
        call(
            &app,
            Method::PUT,
            "/api/v1/roles/OPERATOR/permissions",
            Some(&admin.access),
            Some(json!({ "permissions": ["QC.READ", "AI.CHAT"] })),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["permissions"], json!(["AI.CHAT", "QC.READ"]));
    let (_, tree) = status_json(get(&app, "/api/v1/menus", &operator.access).await).await;
    let op = codes(&tree);
    assert!(!op.contains(&"MENU_WO".to_owned()), "{op:?}");
    assert!(op.contains(&"MENU_QC".to_owned()), "{op:?}");
}

#[tokio::test]
async fn roles_can_be_managed_but_system_and_used_roles_not_deleted() {
    let app = spawn_app().await;
    let admin = signed_in(&app, "admin", "SYSADMIN").await;
    let send = |method: Method, path: &str, body: Option<Value>| {
        let app = &app;
        let token = admin.access.clone();
        let path = path.to_owned();
        async move { status_json(call(app, method, &path, Some(&token), body).await).await }
    };

    let (status, role) = send(
        Method::POST,
        "/api/v1/roles",
        Some(json!({ "code": "QC_LEAD", "name": "QC Lead", "level": 40,
                     "permissions": ["QC.READ", "QC.UPDATE"] })),
    )
    .await;
    assert_eq!(status, 201, "{role}");
    assert_eq!(role["permissions"], json!(["QC.READ", "QC.UPDATE"]));
    let (status, _) = send(
        Method::POST,
        "/api/v1/roles",
        Some(json!({ "code": "QC_LEAD", "name": "Again", "level": 40 })),
    )
    .await;
    assert_eq!(status, 409);
    let (status, problem) = send(
        Method::POST,
        "/api/v1/roles",
        Some(json!({ "code": "bad code", "name": "", "level": 0 })),
    )
    .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["code", "name", "level"]);

    let (status, problem) = send(
        Method::PUT,
        "/api/v1/roles/QC_LEAD/permissions",
        Some(json!({ "permissions": ["QC.READ", "NOPE.READ"] })),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "permissions[1]");

    let (status, role) = send(
        Method::PATCH,
        "/api/v1/roles/qc_lead",
        Some(json!({ "name": "Quality Lead" })),
    )
    .await;
    assert_eq!(status, 200, "{role}");
    assert_eq!(role["name"], "Quality Lead");

    let (status, list) = send(Method::GET, "/api/v1/roles?q=quality", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    let (status, catalogue) = send(Method::GET, "/api/v1/permissions?module=admin", None).await;
    assert_eq!(status, 200);
    assert_eq!(catalogue["total"], 8);

    let (status, problem) = send(Method::DELETE, "/api/v1/roles/DIRECTOR", None).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("system"));
    user_with_role(&app, "qc1", "QC_LEAD").await;
    let (status, _) = send(Method::DELETE, "/api/v1/roles/QC_LEAD", None).await;
    assert_eq!(status, 409, "a role in use");
    sqlx::query("update adm_user set deleted_at = now() where username = 'qc1'")
        .execute(&app.db)
        .await
        .unwrap();
    let (status, _) = send(Method::DELETE, "/api/v1/roles/QC_LEAD", None).await;
    assert_eq!(status, 204);
    let (status, _) = send(Method::GET, "/api/v1/roles/QC_LEAD", None).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        Method::PUT,
        "/api/v1/roles/SYSADMIN/permissions",
        Some(json!({ "permissions": [] })),
    )
    .await;
    assert_eq!(status, 409, "SYSADMIN keeps every permission");
}

#[tokio::test]
async fn a_caller_cannot_reach_above_their_own_role() {
    let app = spawn_app().await;
    let target = user_with_role(&app, "root", "SYSADMIN").await;
    let peer = user_with_role(&app, "staff", "STAFF_SALES").await;
    sqlx::raw_sql(
        "insert into adm_role (code, name, level) values ('HR_ADMIN', 'HR admin', 20);
         insert into adm_role_permission (role_id, permission_id)
         select r.id, p.id from adm_role r, adm_permission p
         where r.code = 'HR_ADMIN' and p.code in ('ADMIN.USER.UPDATE', 'ADMIN.USER.READ',
                                                  'ADMIN.ROLE.MANAGE');
         insert into adm_role (code, name, level) values ('HR_CLERK', 'HR clerk', 30);
         insert into adm_role_permission (role_id, permission_id)
         select r.id, p.id from adm_role r, adm_permission p
         where r.code = 'HR_CLERK' and p.code = 'ADMIN.USER.READ'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    user_with_role(&app, "hr", "HR_ADMIN").await;
    let hr = tokens(&app, "hr").await;
    let post = |path: String, body: Option<Value>, method: Method| {
        let app = &app;
        let token = hr.access.clone();
        async move { status_json(call(app, method, &path, Some(&token), body).await).await }
    };
    let (status, _) = post(
        format!("/api/v1/users/{target}/deactivate"),
        None,
        Method::POST,
    )
    .await;
    assert_eq!(status, 403, "cannot deactivate a SYSADMIN");
    let (status, _) = post(
        format!("/api/v1/users/{peer}"),
        Some(json!({ "role": "SYSADMIN" })),
        Method::PATCH,
    )
    .await;
    assert_eq!(status, 403, "cannot hand out SYSADMIN");
    let (status, body) = post(
        format!("/api/v1/users/{peer}"),
        Some(json!({ "role": "MANAGER_SALES" })),
        Method::PATCH,
    )
    .await;
    assert_eq!(
        status, 403,
        "cannot hand out a role above its own (10 < 20): {body}"
    );
    let (status, body) = post(
        format!("/api/v1/users/{peer}"),
        Some(json!({ "role": "OPERATOR" })),
        Method::PATCH,
    )
    .await;
    assert_eq!(
        status, 403,
        "cannot hand out a lower role holding what its own does not (AI.CHAT, WO.READ …): {body}"
    );
    let (status, body) = post(
        format!("/api/v1/users/{peer}"),
        Some(json!({ "role": "HR_CLERK" })),
        Method::PATCH,
    )
    .await;
    assert_eq!(
        status, 200,
        "a lower role within its own permissions: {body}"
    );
    let (status, _) = post(
        "/api/v1/roles".to_owned(),
        Some(json!({ "code": "XR", "name": "x", "level": 50, "permissions": ["FIN.APPROVE"] })),
        Method::POST,
    )
    .await;
    assert_eq!(status, 403, "cannot grant a permission it does not hold");
}
