use sentient_hub::db::demo;

use crate::helpers::spawn_app;

/// Row counts of every table in the public schema.
async fn row_counts(db: &sqlx::PgPool) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
         where table_schema = 'public' and table_type = 'BASE TABLE' and table_name <> '_sqlx_migrations'
         order by 1",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(db)
            .await
            .unwrap();
        counts.push((table, n));
    }
    counts
}

#[tokio::test]
async fn the_demo_load_is_idempotent_and_answers_real_questions() {
    let app = spawn_app().await;
    demo::load(&app.db).await.unwrap();
    let first = row_counts(&app.db).await;
    demo::load(&app.db).await.unwrap();
    assert_eq!(row_counts(&app.db).await, first, "a second load added rows");

    // At least twelve months of history.
    let months: i64 = app
        .count("select count(distinct date_trunc('month', order_dt)) from t_so where order_dt > current_date - 400")
        .await;
    assert!(months >= 12, "{months} months of orders");

    // Revenue this month vs last month: both real, and different.
    let (this_month, last_month): (rust_decimal::Decimal, rust_decimal::Decimal) = sqlx::query_as(
        "with today as (select (now() at time zone 'Asia/Jakarta')::date d)
         select
           coalesce(sum(total_amt) filter (where date_trunc('month', order_dt) = date_trunc('month', d)), 0),
           coalesce(sum(total_amt) filter (where date_trunc('month', order_dt) = date_trunc('month', d) - interval '1 month'), 0)
         from t_so, today where status not in ('Cancel', 'Draft') and deleted_at is null",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(this_month > rust_decimal::Decimal::ZERO && last_month > rust_decimal::Decimal::ZERO);
    assert_ne!(this_month, last_month);

    // Which customers are overdue: several.
    let overdue = app
        .count("select count(distinct cust_id) from t_ar where status = 'Overdue'")
        .await;
    assert!(overdue >= 3, "{overdue} overdue customers");

    // Reject rate of MCH-003 this week: elevated above its own history and the 5% threshold.
    let (week, before): (f64, f64) = sqlx::query_as(
        "select
           (sum(s.reject_qty) filter (where s.log_dt > current_date - 7) / sum(s.output_qty) filter (where s.log_dt > current_date - 7))::float8,
           (sum(s.reject_qty) filter (where s.log_dt <= current_date - 14) / sum(s.output_qty) filter (where s.log_dt <= current_date - 14))::float8
         from t_shift_log s join m_machine m on m.id = s.machine_id where m.code = 'MCH-003'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        week > 0.05 && week > 2.0 * before,
        "this week {week}, before {before}"
    );

    // The blueprint's samples are there verbatim.
    assert_eq!(
        app.count("select count(*) from t_so where doc_no in ('SO-202412-0001','SO-202412-0002','SO-202412-0003','SO-202412-0004')").await,
        4
    );
    assert_eq!(
        app.count("select count(*) from adm_user where phone is not null and is_active")
            .await,
        5
    );
}
