//! Local use without Meta: `sentient-hub chat` against a hub with no Graph API token.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::helpers::{eventually, spawn_app_with, TestApp};

/// `sentient-hub chat` as `phone` against `app`, every stream piped.
fn chat(app: &TestApp, phone: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_sentient-hub"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SENTIENT_ENV", "test")
        .args([
            "chat",
            "--phone",
            phone,
            "--url",
            &app.address,
            "--wait",
            "20",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

#[tokio::test]
async fn chat_posts_signed_messages_and_prints_the_hubs_replies() {
    let app = spawn_app_with(|s| s.whatsapp.access_token = secrecy::SecretString::from("")).await;
    let phone = format!("+{}", app.trusted_sender().await);
    let mut child = chat(&app, &phone).spawn().unwrap();
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
        replies.iter().any(|r| r.contains("Revenue, this month")),
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

#[tokio::test]
async fn chat_shows_an_alerts_button_and_a_number_taps_it() {
    use tokio::io::AsyncBufReadExt;

    let app = spawn_app_with(|s| s.whatsapp.access_token = secrecy::SecretString::from("")).await;
    let wa_id = app.trusted_sender().await;
    sqlx::query("insert into wa_contact (sender_key, wa_id, last_in_at) values ($1, $1, now())")
        .bind(&wa_id)
        .execute(&app.db)
        .await
        .unwrap();
    let mut child = chat(&app, &format!("+{wa_id}"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read_until = async |needle: &str| -> Vec<String> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(found, Ok(true)), "no {needle:?} in {seen:?}");
        seen
    };

    // The chat says "chatting as" once it listens for replies; an alert raised then reaches it.
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let greeted = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.starts_with("chatting as") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(greeted, Ok(true)),
        "the chat never said it listens"
    );
    sqlx::raw_sql(
        "insert into ai_alert (module, alert_type, severity, message)
         values ('MAINT', 'MACHINE_DOWN', 'Critical', 'MCH-003 berhenti')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let shown = read_until("[1] ✅ Saya tangani").await;
    assert!(
        shown.iter().any(|l| l.contains("MCH-003 berhenti")),
        "{shown:?}"
    );
    stdin.write_all(b"1\n").await.unwrap();
    read_until("Dicatat: Anda menangani alert MAINT · MACHINE_DOWN").await;
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("chat ends")
        .unwrap();
    assert!(status.success());
    assert_eq!(
        app.count("select count(*) from ai_alert where acked_at is not null")
            .await,
        1
    );
}

#[tokio::test]
async fn with_no_mail_server_the_code_mail_appears_in_the_chat_and_opens_it() {
    use tokio::io::AsyncBufReadExt;

    let mailbox = std::env::temp_dir().join(format!("sentient-mailbox-{}", uuid::Uuid::new_v4()));
    let dir = mailbox.clone();
    let app = spawn_app_with(move |s| {
        s.whatsapp.access_token = secrecy::SecretString::from("");
        s.smtp.host = String::new();
        s.smtp.mailbox_dir = dir;
    })
    .await;
    let wa_id = app.user_with_role("DIRECTOR", false).await;
    let mut child = chat(&app, &format!("+{wa_id}"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.starts_with("chatting as") {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(listening, Ok(true)), "the chat never listened");

    stdin.write_all(b"omzet bulan ini?\n").await.unwrap();
    // The mail comes inline: its lines start with "mail> ", one of them holds the code.
    let code_line = regex::Regex::new(r"^mail> Kode verifikasi .*: (\d{6})$").unwrap();
    let mut seen = Vec::new();
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let code = code_line.captures(&line).map(|c| c[1].to_owned());
            seen.push(line);
            if code.is_some() {
                return code;
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("no code mail in the chat: {seen:?}"));
    assert!(
        seen.iter().any(|l| l.starts_with("mail> To: Test User <u")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l == "mail> Subject: Kode verifikasi Sentient Hub / Verification code"),
        "{seen:?}"
    );
    // The mailbox keeps the mail as a file too.
    let files: Vec<_> = std::fs::read_dir(&mailbox).unwrap().collect();
    assert_eq!(files.len(), 1, "one mail in {}", mailbox.display());

    // The code opens the chat, and the held question is answered.
    stdin
        .write_all(format!("{code}\n").as_bytes())
        .await
        .unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let hit = line.starts_with("hub> ") && line.contains("Omzet");
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(answered, Ok(true)), "{seen:?}");
    drop(stdin);
    let _ = std::fs::remove_dir_all(&mailbox);
    assert_eq!(
        app.count("select count(*) from wa_trust where confirmed_at is not null")
            .await,
        1
    );
}

#[tokio::test]
async fn in_local_mode_a_chart_is_written_to_a_file_and_the_chat_prints_its_path() {
    let media = std::env::temp_dir().join(format!("sentient-media-{}", uuid::Uuid::new_v4()));
    let dir = media.clone();
    let app = spawn_app_with(move |s| {
        s.whatsapp.access_token = secrecy::SecretString::from("");
        s.whatsapp.local_media_dir = dir;
    })
    .await;
    sentient_hub::db::demo::load(&app.db).await.unwrap();
    app.stages.catalog.reload(&app.db).await.unwrap();
    let phone = format!("+{}", app.trusted_sender().await);
    let mut child = chat(&app, &phone).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"grafik omzet 6 bulan\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chat ends once the chart and the text arrived")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    // The chart first (its path, then its caption), then the text: both parts are printed.
    let path = stdout
        .lines()
        .find_map(|l| l.strip_prefix("hub> [chart] "))
        .unwrap_or_else(|| panic!("no chart in {stdout}"));
    let path = std::path::Path::new(path);
    assert!(
        path.starts_with(&media),
        "{} not in {}",
        path.display(),
        media.display()
    );
    let png = std::fs::read(path).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
    let stored: Vec<u8> = sqlx::query_scalar("select bytes from wa_media")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, png, "the file holds the stored chart");
    let chart_at = stdout.find("hub> [chart]").unwrap();
    let text_at = stdout
        .find("hub> 📊 Omzet per bulan")
        .unwrap_or_else(|| panic!("no text answer in {stdout}"));
    assert!(chart_at < text_at, "{stdout}");
    assert!(
        stdout.contains("📈 Omzet per bulan"),
        "the caption: {stdout}"
    );
    std::fs::remove_dir_all(&media).unwrap();
}
