use sentient_hub::db::MIGRATOR;
use sqlx::migrate::Migrator;

use crate::helpers::{empty_database, fresh_database, spawn_app, start};

/// Every table of the blueprint (section 1: admin, masters, transactions, logs, AI).
const BLUEPRINT_TABLES: &[&str] = &[
    "adm_user",
    "adm_role",
    "adm_permission",
    "adm_role_permission",
    "adm_menu",
    "adm_role_menu",
    "adm_session",
    "log_audit",
    "m_cust",
    "m_item",
    "m_vendor",
    "m_machine",
    "m_emp",
    "m_wh",
    "t_so",
    "t_so_detail",
    "t_do",
    "t_po",
    "t_po_detail",
    "t_wo",
    "t_inv",
    "t_inv_move",
    "t_ar",
    "t_ap",
    "t_maint",
    "t_qc",
    "t_shift_log",
    "log_status",
    "log_sla",
    "ai_insight",
    "ai_chat",
    "ai_alert",
    "ai_rfm",
    "ai_vendor_score",
];

async fn public_tables(db: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "select table_name::text from information_schema.tables
         where table_schema = 'public' and table_type = 'BASE TABLE' order by 1",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrations_create_the_whole_blueprint_schema_and_rerun_as_a_no_op() {
    let app = start(empty_database().await, None).await; // the app migrates at start
    let tables = public_tables(&app.db).await;
    for table in BLUEPRINT_TABLES {
        assert!(tables.iter().any(|t| t == table), "missing table {table}");
    }
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count());

    MIGRATOR.run(&app.db).await.expect("second run succeeds");

    let again: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(again, applied);
    assert_eq!(public_tables(&app.db).await, tables);
}

#[tokio::test]
async fn audited_tables_keep_updated_at_current_through_the_trigger() {
    let app = spawn_app().await;
    sqlx::query(
        "insert into m_wh (code, name, zone, capacity_m3) values ('WH-T1', 'Test', 'A', 10)",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let (created, updated_before): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("select created_at, updated_at from m_wh where code = 'WH-T1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(created, updated_before);
    // A separate transaction, so now() moves on.
    sqlx::query("update m_wh set name = 'Renamed' where code = 'WH-T1'")
        .execute(&app.db)
        .await
        .unwrap();
    let (created_after, updated_after): (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as("select created_at, updated_at from m_wh where code = 'WH-T1'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(created_after, created, "created_at never changes");
    assert!(updated_after > updated_before);
}

#[tokio::test]
async fn a_failing_migration_leaves_the_schema_as_it_was() {
    let test_db = fresh_database().await;
    let pool = sqlx::PgPool::connect_with(test_db.settings.database.connect_options())
        .await
        .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let tables_before = public_tables(&pool).await;

    // The real migrations plus one that creates a table and then fails.
    let dir = std::env::temp_dir().join(format!("sentient-mig-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        dir.join("29991231000000_broken.sql"),
        "create table wa_broken (id int);\nselect 1 / 0;\n",
    )
    .unwrap();
    let broken = Migrator::new(dir.as_path()).await.unwrap();
    let result = broken.run(&pool).await;
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(result.is_err(), "the broken migration must fail");
    assert_eq!(
        public_tables(&pool).await,
        tables_before,
        "no half-applied table"
    );
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from _sqlx_migrations where version = 29991231000000")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, 0);
    pool.close().await;
}
