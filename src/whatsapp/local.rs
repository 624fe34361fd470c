//! Local use without Meta: `sentient-hub chat` signs and posts webhook deliveries exactly as
//! Meta does and prints what the hub sends to the local sink (NATS `wa.local.out.<wa_id>`), and
//! the code mails of the local mailbox (`wa.local.mail.<wa_id>`) when no mail server is set.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::Settings;
use crate::queue::connect_nats;
use crate::whatsapp::signature;

/// The subject the local sink publishes replies for `wa_id` on.
pub fn sink_subject(wa_id: &str) -> String {
    format!("wa.local.out.{wa_id}")
}

/// The subject the local mailbox (no mail server, `identity::mailer`) publishes the code mails
/// for `wa_id` on.
pub fn mailbox_subject(wa_id: &str) -> String {
    format!("wa.local.mail.{wa_id}")
}

/// Meta's delivery of one text message from `wa_id`.
pub fn text_delivery(
    phone_number_id: &str,
    wa_id: &str,
    profile_name: &str,
    wamid: &str,
    text: &str,
    sent_at: i64,
) -> String {
    let message = json!({
        "from": wa_id, "id": wamid, "timestamp": sent_at.to_string(),
        "type": "text", "text": { "body": text }
    });
    delivery(phone_number_id, wa_id, profile_name, message)
}

/// Meta's delivery of a tap on the reply button `(id, title)` of one of our messages.
pub fn button_delivery(
    phone_number_id: &str,
    wa_id: &str,
    profile_name: &str,
    wamid: &str,
    (id, title): (&str, &str),
    sent_at: i64,
) -> String {
    let message = json!({
        "from": wa_id, "id": wamid, "timestamp": sent_at.to_string(), "type": "interactive",
        "interactive": { "type": "button_reply", "button_reply": { "id": id, "title": title } }
    });
    delivery(phone_number_id, wa_id, profile_name, message)
}

/// The webhook envelope around one inbound `message` from `wa_id`.
fn delivery(phone_number_id: &str, wa_id: &str, profile_name: &str, message: Value) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "0",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "0", "phone_number_id": phone_number_id },
                    "contacts": [{ "profile": { "name": profile_name }, "wa_id": wa_id }],
                    "messages": [message]
                }
            }]
        }]
    })
    .to_string()
}

/// `+62 811-0000-0001` → `628110000001`, as WhatsApp writes ids.
pub fn wa_id_of(phone: &str) -> anyhow::Result<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let digits = match digits.strip_prefix('0') {
        Some(rest) => format!("62{rest}"), // Indonesian local form 08…
        None => digits,
    };
    if !(8..=15).contains(&digits.len()) {
        anyhow::bail!("{phone:?} is not a phone number (8 to 15 digits, e.g. +6281100000001)");
    }
    Ok(digits)
}

/// After the last reply, how long `chat` waits for more parts before it ends.
const QUIET: Duration = Duration::from_millis(1500);

/// What a reply looks like on a terminal.
fn render(message: &Value) -> String {
    match message["type"].as_str() {
        Some("text") => message["text"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        Some("interactive") => {
            let body = message["interactive"]["body"]["text"]
                .as_str()
                .unwrap_or_default();
            let options: Vec<String> = buttons(message)
                .iter()
                .enumerate()
                .map(|(n, (_, title))| format!("[{}] {title}", n + 1))
                .collect();
            format!("{body}\n{}", options.join("  "))
        }
        // Local mode writes the chart to a file (whatsapp.local_media_dir) and links it.
        Some("image") => format!(
            "[chart] {}\n{}",
            message["image"]["link"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("file://"),
            message["image"]["caption"].as_str().unwrap_or_default()
        ),
        Some("template") => format!(
            "(template {}) {}",
            message["template"]["name"].as_str().unwrap_or("?"),
            message["template"]["components"][0]["parameters"][0]["text"]
                .as_str()
                .unwrap_or_default()
        ),
        _ => message.to_string(),
    }
}

/// The reply buttons `(id, title)` of an interactive message.
fn buttons(message: &Value) -> Vec<(String, String)> {
    message["interactive"]["action"]["buttons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            let reply = &b["reply"];
            Some((
                reply["id"].as_str()?.to_owned(),
                reply["title"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Reads lines from stdin, posts each as a signed delivery to `url`/webhook, and prints the
/// hub's replies until stdin ends and the replies have come (or `wait` passes without one).
/// After a reply with buttons, a line holding just a button's number taps it.
pub async fn chat(
    settings: &Settings,
    phone: &str,
    url: &str,
    name: &str,
    wait: Duration,
) -> anyhow::Result<()> {
    let wa_id = wa_id_of(phone)?;
    let nats = connect_nats(&settings.nats).await?;
    let mut replies = nats
        .subscribe(sink_subject(&wa_id))
        .await
        .context("subscribing to the local sink")?;
    // The local mailbox (no mail server configured): the code mails for this number.
    let mut mails = nats
        .subscribe(mailbox_subject(&wa_id))
        .await
        .context("subscribing to the local mailbox")?;
    nats.flush()
        .await
        .context("subscribing to the local sink")?;
    let http = reqwest::Client::new();
    let endpoint = format!("{}/webhook", url.trim_end_matches('/'));
    let secret = settings
        .whatsapp
        .app_secret
        .expose_secret()
        .as_bytes()
        .to_vec();
    eprintln!("chatting as +{wa_id} with {url}; type a message and press Enter (Ctrl-D ends)");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut pending = 0usize;
    // The buttons of the last reply, which a line with their number taps.
    let mut offered: Vec<(String, String)> = Vec::new();
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => {
                match line.context("reading stdin")? {
                    Some(text) if text.trim().is_empty() => {}
                    Some(text) => {
                        let wamid = format!("wamid.local.in.{}", uuid::Uuid::new_v4().simple());
                        let now = chrono::Utc::now().timestamp();
                        let phone_number_id = &settings.whatsapp.phone_number_id;
                        let tapped = text
                            .trim()
                            .parse::<usize>()
                            .ok()
                            .and_then(|n| n.checked_sub(1))
                            .and_then(|n| offered.get(n));
                        let body = match tapped {
                            Some((id, title)) => button_delivery(
                                phone_number_id, &wa_id, name, &wamid, (id, title), now,
                            ),
                            None => text_delivery(phone_number_id, &wa_id, name, &wamid, &text, now),
                        };
                        let response = http
                            .post(&endpoint)
                            .header("content-type", "application/json")
                            .header("x-hub-signature-256", signature::sign(&secret, body.as_bytes()))
                            .body(body)
                            .send()
                            .await
                            .with_context(|| format!("cannot reach the hub at {endpoint}"))?;
                        if response.status().is_success() {
                            pending += 1;
                        } else {
                            eprintln!("hub answered HTTP {}", response.status());
                        }
                    }
                    None => stdin_open = false,
                }
            }
            reply = replies.next() => {
                let Some(reply) = reply else { break };
                let message: Value = serde_json::from_slice(&reply.payload).unwrap_or(Value::Null);
                println!("hub> {}", render(&message));
                offered = buttons(&message);
                // A chart always comes before its answer's text: only the text counts.
                if message["type"] != "image" {
                    pending = pending.saturating_sub(1);
                }
            }
            Some(mail) = mails.next() => {
                for line in String::from_utf8_lossy(&mail.payload).lines() {
                    println!("mail> {line}");
                }
            }
            // Once every message has had a reply, a short quiet spell ends the chat (an
            // answer may come in parts: a chart, then the text).
            () = tokio::time::sleep(if pending == 0 { QUIET } else { wait }), if !stdin_open => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_forms_become_wa_ids() {
        assert_eq!(wa_id_of("+62 811-000-0001").unwrap(), "628110000001");
        assert_eq!(wa_id_of("08110000001").unwrap(), "628110000001");
        assert_eq!(wa_id_of("628110000001").unwrap(), "628110000001");
        assert!(wa_id_of("12").is_err());
        assert!(wa_id_of("halo").is_err());
    }

    #[test]
    fn a_local_delivery_parses_like_metas() {
        let body = text_delivery(
            "1",
            "628110000001",
            "Budi",
            "wamid.x",
            "stok?",
            1_700_000_000,
        );
        let delivery = crate::whatsapp::payload::parse(body.as_bytes()).unwrap();
        assert_eq!(delivery.messages.len(), 1);
        assert_eq!(delivery.messages[0].from.as_deref(), Some("628110000001"));
        assert_eq!(delivery.messages[0].kind.text(), Some("stok?"));
        assert_eq!(delivery.messages[0].profile_name.as_deref(), Some("Budi"));
    }
}
