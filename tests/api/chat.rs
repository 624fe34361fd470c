//! Local use without Meta: `sentient-hub chat` against a hub with no Graph API token.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::helpers::{eventually, spawn_app_with};

#[tokio::test]
async fn chat_posts_signed_messages_and_prints_the_hubs_replies() {
    let app = spawn_app_with(|s| s.whatsapp.access_token = secrecy::SecretString::from("")).await;
    let phone = format!("+{}", app.trusted_sender().await);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SENTIENT_ENV", "test")
        .args([
            "chat",
            "--phone",
            &phone,
            "--url",
            &app.address,
            "--wait",
            "20",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"stok motor dc berapa?\nWhat is the revenue this month?\n")
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chat ends once its replies arrived")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let replies: Vec<&str> = stdout.lines().filter(|l| l.starts_with("hub> ")).collect();
    assert_eq!(replies.len(), 2, "{stdout}");
    assert!(replies.iter().any(|r| r.contains("stok")), "{stdout}");
    assert!(
        replies.iter().any(|r| r.contains("Revenue this month")),
        "{stdout}"
    );
    // Both went through the real inbox and outbox. The reply reaches the chat before the
    // sender records it as sent, so the row may lag the printed line by a moment.
    let recorded = eventually(Duration::from_secs(10), || async {
        app.count("select count(*) from wa_inbox where status = 'done'")
            .await
            == 2
            && app
                .count(
                    "select count(*) from wa_outbox where status = 'sent' and wamid like 'wamid.local.%'",
                )
                .await
                == 2
    })
    .await;
    assert!(
        recorded,
        "two inbound messages done and two replies recorded as sent"
    );
}
