use std::collections::BTreeSet;

use crate::helpers::spawn_app;

async fn permissions_of(db: &sqlx::PgPool, role: &str) -> BTreeSet<String> {
    sqlx::query_scalar(
        "select p.code from adm_role r
         join adm_role_permission rp on rp.role_id = r.id
         join adm_permission p on p.id = rp.permission_id
         where r.code = $1",
    )
    .bind(role)
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

#[tokio::test]
async fn a_fresh_database_holds_the_blueprint_roles() {
    let app = spawn_app().await;
    let roles: Vec<(String, i32, bool)> =
        sqlx::query_as("select code, level, is_system from adm_role order by level, code")
            .fetch_all(&app.db)
            .await
            .unwrap();
    let expected = [
        ("SYSADMIN", 1, true),
        ("DIRECTOR", 5, true),
        ("MANAGER_PROD", 10, false),
        ("MANAGER_SALES", 10, false),
        ("STAFF_SALES", 50, false),
        ("STAFF_WH", 50, false),
        ("OPERATOR", 80, false),
        ("READONLY", 99, true),
    ];
    let roles: Vec<(&str, i32, bool)> =
        roles.iter().map(|(c, l, s)| (c.as_str(), *l, *s)).collect();
    assert_eq!(roles, expected);
}

#[tokio::test]
async fn the_seeded_roles_hold_the_blueprint_permissions() {
    let app = spawn_app().await;
    let all: BTreeSet<String> = sqlx::query_scalar("select code from adm_permission")
        .fetch_all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    for code in [
        "SO.CREATE",
        "SO.READ",
        "SO.UPDATE",
        "SO.DELETE",
        "SO.APPROVE",
        "SO.EXPORT",
        "PO.CREATE",
        "PO.APPROVE",
        "ADMIN.USER.CREATE",
        "ADMIN.USER.RESET_PWD",
        "ADMIN.ROLE.MANAGE",
        "ADMIN.AUDIT.VIEW",
        "INV.READ",
        "FIN.READ",
        "WO.READ",
        "ALERT.READ",
        "AI.CHAT",
    ] {
        assert!(all.contains(code), "catalogue lacks {code}");
    }

    // SYSADMIN: full access.
    assert_eq!(permissions_of(&app.db, "SYSADMIN").await, all);

    // DIRECTOR: read all, approve all, no administration.
    let director = permissions_of(&app.db, "DIRECTOR").await;
    for code in all
        .iter()
        .filter(|c| c.ends_with(".READ") && !c.starts_with("ADMIN."))
    {
        assert!(director.contains(code), "DIRECTOR lacks {code}");
    }
    for code in all.iter().filter(|c| c.ends_with(".APPROVE")) {
        assert!(director.contains(code), "DIRECTOR lacks {code}");
    }
    assert!(
        director.iter().all(|c| !c.starts_with("ADMIN.")),
        "{director:?}"
    );

    // MANAGER_SALES: full SO, read PO/WO.
    let sales = permissions_of(&app.db, "MANAGER_SALES").await;
    for code in [
        "SO.CREATE",
        "SO.READ",
        "SO.UPDATE",
        "SO.DELETE",
        "SO.APPROVE",
        "SO.EXPORT",
        "PO.READ",
        "WO.READ",
    ] {
        assert!(sales.contains(code), "MANAGER_SALES lacks {code}");
    }
    assert!(!sales.contains("WO.UPDATE") && !sales.contains("PO.APPROVE"));

    // MANAGER_PROD: full WO, read SO.
    let prod = permissions_of(&app.db, "MANAGER_PROD").await;
    for code in ["WO.CREATE", "WO.READ", "WO.UPDATE", "WO.DELETE", "SO.READ"] {
        assert!(prod.contains(code), "MANAGER_PROD lacks {code}");
    }
    assert!(!prod.contains("SO.CREATE"));

    // STAFF_SALES: create/read SO only among SO rights.
    let staff = permissions_of(&app.db, "STAFF_SALES").await;
    assert!(staff.contains("SO.CREATE") && staff.contains("SO.READ"));
    assert!(!staff.contains("SO.APPROVE") && !staff.contains("SO.DELETE"));

    // STAFF_WH: read/update inventory.
    let wh = permissions_of(&app.db, "STAFF_WH").await;
    assert!(wh.contains("INV.READ") && wh.contains("INV.UPDATE"));
    assert!(!wh.contains("FIN.READ"));

    // OPERATOR: read WO, input shift log, never finance.
    let operator = permissions_of(&app.db, "OPERATOR").await;
    assert!(operator.contains("WO.READ") && operator.contains("WO.SHIFT_LOG"));
    assert!(!operator.contains("FIN.READ") && !operator.contains("WO.UPDATE"));

    // READONLY: every read, nothing else but chatting.
    let readonly = permissions_of(&app.db, "READONLY").await;
    assert!(
        readonly
            .iter()
            .all(|c| c.ends_with(".READ") || c == "AI.CHAT"),
        "{readonly:?}"
    );
    assert!(readonly.contains("FIN.READ") && readonly.contains("SO.READ"));
}

#[tokio::test]
async fn every_role_sees_the_menus_of_its_permissions() {
    let app = spawn_app().await;
    // A role may only be mapped to menus whose permission it holds (or that need none).
    let leaks: i64 = sqlx::query_scalar(
        "select count(*) from adm_role_menu rm
         join adm_menu m on m.id = rm.menu_id
         join adm_role r on r.id = rm.role_id
         where m.permission_code is not null
           and not exists (
             select 1 from adm_role_permission rp
             join adm_permission p on p.id = rp.permission_id
             where rp.role_id = r.id and p.code = m.permission_code)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(leaks, 0);
    let operator_menus: Vec<String> = sqlx::query_scalar(
        "select m.code from adm_role_menu rm join adm_menu m on m.id = rm.menu_id
         join adm_role r on r.id = rm.role_id where r.code = 'OPERATOR'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(
        operator_menus.iter().any(|c| c == "MENU_WO"),
        "{operator_menus:?}"
    );
    for hidden in [
        "MENU_FINANCE",
        "MENU_AR",
        "MENU_AP",
        "MENU_ADMIN",
        "MENU_ADM_USER",
    ] {
        assert!(
            !operator_menus.iter().any(|c| c == hidden),
            "{operator_menus:?}"
        );
    }
}
