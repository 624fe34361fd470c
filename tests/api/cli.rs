//! The binary itself: bad environments give one clear line and a non-zero exit, never a panic.

use std::process::Command;

fn hub() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentient-hub"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

#[test]
fn unreachable_database_gives_one_line_and_exit_code_1() {
    let output = hub()
        .arg("migrate")
        .env("DATABASE_URL", "postgres://hub:topsecret@127.0.0.1:1/hub")
        .env("SENTIENT__DATABASE__ACQUIRE_TIMEOUT_SECS", "2")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sentient-hub: error: cannot reach PostgreSQL at 127.0.0.1:1/hub"),
        "{stderr}"
    );
    assert!(!stderr.contains("topsecret"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn invalid_configuration_names_the_key() {
    let output = hub()
        .arg("migrate")
        .env("SENTIENT__SERVER__PORT", "not-a-port")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.port"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn prompt_prints_the_exact_messages_for_a_users_question() {
    let app = crate::helpers::spawn_app().await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    let url = secrecy::ExposeSecret::expose_secret(&app.test_db.settings.database.url).to_owned();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SENTIENT_ENV", "test")
        .env("DATABASE_URL", url)
        .args([
            "prompt",
            "--phone",
            "0811-000-0004",
            "reject rate MCH-003 this week?",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    assert_eq!(printed["tone"], "operator", "operator1 is an operator");
    assert_eq!(printed["messages"][0]["role"], "system");
    let last = printed["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        last.contains("MCH-003") && last.contains("<question>"),
        "{last}"
    );
}

// Several threads: the app serves while this test waits for the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_for_a_ready_hub_and_1_with_the_reason_otherwise() {
    let app = crate::helpers::spawn_app().await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    let ready = hub()
        .args(["healthcheck"])
        .env("SENTIENT__SERVER__PORT", &port)
        .output()
        .unwrap();
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );

    app.kill_database().await;
    let not_ready = hub()
        .args(["healthcheck"])
        .env("SENTIENT__SERVER__PORT", &port)
        .output()
        .unwrap();
    assert_eq!(not_ready.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&not_ready.stderr);
    assert!(stderr.contains("not ready (503"), "{stderr}");

    let nobody = hub()
        .args(["healthcheck", "--timeout", "1"])
        .env(
            "SENTIENT__SERVER__PORT",
            crate::helpers::free_port().to_string(),
        )
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("does not answer"));
}
