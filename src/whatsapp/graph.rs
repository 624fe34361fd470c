//! Sending to WhatsApp: Meta's Graph API (`POST /{version}/{phone_number_id}/messages`) or, when
//! no token is configured, a local sink on NATS that `sentient-hub chat` reads.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::WhatsAppSettings;

/// WhatsApp's limit for one text body, in characters.
pub const TEXT_LIMIT: usize = 4096;

/// Who a message goes to: the phone's WhatsApp id when known, else the business-scoped user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub wa_id: Option<String>,
    pub bsuid: Option<String>,
}

impl Recipient {
    /// The identifier used for the local sink subject and logs (masked by callers).
    pub fn key(&self) -> &str {
        self.wa_id
            .as_deref()
            .or(self.bsuid.as_deref())
            .unwrap_or("unknown")
    }
}

/// Why a send failed, classified the way the retry policy needs it.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Meta answered with its error object.
    #[error("Graph API error {code} (HTTP {http_status}): {message}")]
    Api {
        http_status: u16,
        code: i64,
        message: String,
    },
    /// An HTTP error without Meta's error object (a proxy, an outage page).
    #[error("HTTP {status} from the Graph API")]
    Http { status: u16 },
    /// No answer in time: the message may or may not have been accepted.
    #[error("Graph API call timed out")]
    Timeout,
    /// Could not reach the Graph API at all.
    #[error("cannot reach the Graph API: {0}")]
    Network(String),
    /// A 2xx answer we could not read (no message id).
    #[error("unreadable Graph API answer: {0}")]
    BadResponse(String),
    /// The local sink could not publish (or write an image).
    #[error("local sink: {0}")]
    Local(String),
    /// The row cannot be sent at all (its image is gone).
    #[error("cannot be sent: {0}")]
    Unsendable(String),
}

/// Meta's codes that are worth another try: throughput (130429), pair rate (131056), generic
/// (131000), service unavailable (131016).
const RETRYABLE_CODES: &[i64] = &[130429, 131056, 131000, 131016];

/// The 24-hour customer-service window is closed: only templates may be sent.
pub const WINDOW_CLOSED: i64 = 131047;
/// Pair rate limit: too many messages to one user; wait at least six seconds.
pub const PAIR_RATE: i64 = 131056;

impl SendError {
    /// Retry with backoff: the listed codes, 5xx and timeouts. Never 131047, 131026, 100, 132xxx
    /// or any other 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::Api {
                code, http_status, ..
            } => RETRYABLE_CODES.contains(code) || (*http_status >= 500 && !is_never_retry(*code)),
            SendError::Http { status } => *status >= 500 || *status == 429,
            SendError::Timeout | SendError::Network(_) | SendError::Local(_) => true,
            SendError::BadResponse(_) | SendError::Unsendable(_) => false,
        }
    }

    /// Meta's error code, when there is one.
    pub fn code(&self) -> Option<i64> {
        match self {
            SendError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

fn is_never_retry(code: i64) -> bool {
    code == WINDOW_CLOSED || code == 131026 || code == 100 || (132000..133000).contains(&code)
}

/// Builders of the message content stored in the outbox; recipient fields are added at send
/// time by [`Transport::send`].
pub mod content {
    use serde_json::{json, Value};

    pub fn text(body: &str) -> Value {
        json!({ "type": "text", "text": { "preview_url": false, "body": body } })
    }

    /// `body` as text messages, cut where WhatsApp's limit needs it ([`super::split_text`]).
    pub fn text_parts(body: &str) -> Vec<Value> {
        super::split_text(body)
            .iter()
            .map(|part| text(part))
            .collect()
    }

    /// Up to three reply buttons `(id, title)`.
    pub fn buttons(body: &str, buttons: &[(&str, &str)]) -> Value {
        let buttons: Vec<Value> = buttons
            .iter()
            .take(3)
            .map(|(id, title)| json!({ "type": "reply", "reply": { "id": id, "title": title } }))
            .collect();
        json!({
            "type": "interactive",
            "interactive": { "type": "button", "body": { "text": body }, "action": { "buttons": buttons } }
        })
    }

    /// A chart: the image stored in `wa_media` under `media` (the sender uploads it and sends
    /// it by Meta's media id) with its caption.
    pub fn chart(media: uuid::Uuid, caption: &str) -> Value {
        json!({ "type": "image", "image": { "hub_media": media, "caption": caption } })
    }

    /// A list message: one section of rows `(id, title, description)`.
    pub fn list(body: &str, button: &str, section: &str, rows: &[(&str, &str, &str)]) -> Value {
        let rows: Vec<Value> = rows
            .iter()
            .map(|(id, title, description)| json!({ "id": id, "title": title, "description": description }))
            .collect();
        json!({
            "type": "interactive",
            "interactive": {
                "type": "list",
                "body": { "text": body },
                "action": { "button": button, "sections": [ { "title": section, "rows": rows } ] }
            }
        })
    }

    /// Longest template body parameter sent, in characters (Meta's limit is 1,024).
    pub const TEMPLATE_PARAM_LIMIT: usize = 1000;

    /// An approved template with positional body parameters. Meta refuses a parameter holding a
    /// line break, a tab or more than four spaces in a row (error 132018), so each is flattened
    /// to one paragraph and cut to [`TEMPLATE_PARAM_LIMIT`] characters.
    pub fn template(name: &str, lang: &str, body_params: &[&str]) -> Value {
        let parameters: Vec<Value> = body_params
            .iter()
            .map(|p| json!({ "type": "text", "text": template_param(p) }))
            .collect();
        let components = if parameters.is_empty() {
            json!([])
        } else {
            json!([{ "type": "body", "parameters": parameters }])
        };
        json!({
            "type": "template",
            "template": { "name": name, "language": { "code": lang }, "components": components }
        })
    }

    /// `text` as one paragraph (every run of whitespace a single space), at most
    /// [`TEMPLATE_PARAM_LIMIT`] characters, a cut marked with an ellipsis.
    fn template_param(text: &str) -> String {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match flat.char_indices().nth(TEMPLATE_PARAM_LIMIT - 1) {
            Some((cut, _)) => format!("{}…", &flat[..cut]),
            None => flat,
        }
    }
}

/// Splits `text` into parts of at most [`TEXT_LIMIT`] characters, at whitespace where possible
/// (a single word longer than the limit is cut, since it cannot be sent otherwise).
pub fn split_text(text: &str) -> Vec<String> {
    split_at(text, TEXT_LIMIT)
}

fn split_at(text: &str, limit: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > limit {
        let cut = rest
            .char_indices()
            .nth(limit)
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let head = &rest[..cut];
        let at = head
            .rfind(char::is_whitespace)
            .filter(|&i| i > 0)
            .unwrap_or(cut);
        parts.push(rest[..at].trim_end().to_owned());
        rest = rest[at..].trim_start();
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_owned());
    }
    parts
}

/// Meta's success answer: `{"messages":[{"id":"wamid..."}]}`.
#[derive(Deserialize)]
struct SendResponse {
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

/// Meta's answer to an upload: `{"id":"<media id>"}`.
#[derive(Deserialize)]
struct MediaResponse {
    id: String,
}

/// Meta's error answer: `{"error":{"message","type","code","error_data":{"details"}}}`.
#[derive(Deserialize)]
struct ErrorResponse {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    #[serde(default)]
    details: Option<String>,
}

/// Where outbound messages go.
#[derive(Clone)]
pub enum Transport {
    /// Meta's Graph API.
    Graph(GraphClient),
    /// Local mode: NATS subject `wa.local.out.<recipient>`, images as files in `media_dir`.
    Local {
        nats: async_nats::Client,
        media_dir: std::path::PathBuf,
    },
}

impl Transport {
    pub fn from_settings(settings: &WhatsAppSettings, nats: async_nats::Client) -> Self {
        if settings.is_local() {
            Transport::Local {
                nats,
                media_dir: settings.local_media_dir.clone(),
            }
        } else {
            Transport::Graph(GraphClient::new(settings))
        }
    }

    /// Sends `content` (from [`content`]) to `to`; `callback` is echoed back by Meta in status
    /// webhooks (`biz_opaque_callback_data`), which lets the hub match a status to a send whose
    /// answer it never recorded. Returns the new message's wamid.
    pub async fn send(
        &self,
        to: &Recipient,
        content: &Value,
        callback: &str,
    ) -> Result<String, SendError> {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "biz_opaque_callback_data": callback,
        });
        match (&to.wa_id, &to.bsuid) {
            (Some(wa_id), _) => body["to"] = json!(wa_id),
            (None, Some(bsuid)) => body["recipient"] = json!(bsuid),
            (None, None) => return Err(SendError::BadResponse("no recipient".into())),
        }
        if let (Some(target), Some(source)) = (body.as_object_mut(), content.as_object()) {
            for (k, v) in source {
                target.insert(k.clone(), v.clone());
            }
        }
        match self {
            Transport::Graph(client) => client.post(&body).await,
            Transport::Local { nats, .. } => {
                let wamid = format!("wamid.local.{}", uuid::Uuid::new_v4().simple());
                body["id"] = json!(wamid);
                let subject = super::local::sink_subject(to.key());
                nats.publish(subject, body.to_string().into())
                    .await
                    .map_err(|e| SendError::Local(e.to_string()))?;
                Ok(wamid)
            }
        }
    }

    /// Marks an inbound message read and shows the typing indicator (best effort: the caller
    /// logs a failure and carries on).
    pub async fn mark_read_typing(&self, wamid: &str) -> Result<(), SendError> {
        let body = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
            "typing_indicator": { "type": "text" },
        });
        match self {
            Transport::Graph(client) => client.post(&body).await.map(drop).or_else(|e| match e {
                // The read receipt answers {"success":true}, without a message id.
                SendError::BadResponse(_) => Ok(()),
                other => Err(other),
            }),
            Transport::Local { .. } => Ok(()),
        }
    }

    /// Stores an image where messages can name it: uploaded to Meta (its media id), or in local
    /// mode written to `media_dir` (the file's path). `name` is the file name, unique per image.
    pub async fn upload(&self, bytes: &[u8], mime: &str, name: &str) -> Result<String, SendError> {
        match self {
            Transport::Graph(client) => client.upload(bytes, mime, name).await,
            Transport::Local { media_dir, .. } => {
                let local = |e: std::io::Error| SendError::Local(format!("writing the image: {e}"));
                tokio::fs::create_dir_all(media_dir).await.map_err(local)?;
                let path = std::path::absolute(media_dir.join(name)).map_err(local)?;
                tokio::fs::write(&path, bytes).await.map_err(local)?;
                Ok(path.display().to_string())
            }
        }
    }

    /// The image message for what [`Transport::upload`] returned: by Meta's media id, or in
    /// local mode by the file's path.
    pub fn image(&self, media: &str, caption: &str) -> Value {
        let image = match self {
            Transport::Graph(_) => json!({ "id": media, "caption": caption }),
            Transport::Local { .. } => {
                json!({ "link": format!("file://{media}"), "caption": caption })
            }
        };
        json!({ "type": "image", "image": image })
    }
}

/// reqwest client for `POST {base}/{version}/{phone_number_id}/messages`.
#[derive(Clone)]
pub struct GraphClient {
    /// Shared connection pool.
    http: reqwest::Client,
    /// The full messages endpoint.
    messages_url: String,
    /// The phone number's media endpoint.
    media_url: String,
    /// Bearer token.
    token: SecretString,
}

impl GraphClient {
    pub fn new(settings: &WhatsAppSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.graph_timeout_secs))
            .build()
            .expect("reqwest client builds with static settings");
        let base = settings.graph_base_url.trim_end_matches('/');
        Self {
            http,
            messages_url: format!(
                "{base}/{}/{}/messages",
                settings.graph_api_version, settings.phone_number_id
            ),
            media_url: format!(
                "{base}/{}/{}/media",
                settings.graph_api_version, settings.phone_number_id
            ),
            token: settings.access_token.clone(),
        }
    }

    async fn post(&self, body: &Value) -> Result<String, SendError> {
        let request = self
            .http
            .post(&self.messages_url)
            .bearer_auth(self.token.expose_secret())
            .json(body);
        let bytes = call(request).await?;
        let parsed: SendResponse =
            serde_json::from_slice(&bytes).map_err(|e| SendError::BadResponse(e.to_string()))?;
        parsed
            .messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| SendError::BadResponse("no message id".into()))
    }

    /// `POST /{phone_number_id}/media` (multipart: `messaging_product`, `type`, `file`): the id
    /// Meta keeps the file under for 30 days.
    async fn upload(&self, bytes: &[u8], mime: &str, name: &str) -> Result<String, SendError> {
        let file = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name(name.to_owned())
            .mime_str(mime)
            .map_err(|e| SendError::BadResponse(e.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime.to_owned())
            .part("file", file);
        let request = self
            .http
            .post(&self.media_url)
            .bearer_auth(self.token.expose_secret())
            .multipart(form);
        let bytes = call(request).await?;
        let parsed: MediaResponse =
            serde_json::from_slice(&bytes).map_err(|e| SendError::BadResponse(e.to_string()))?;
        Ok(parsed.id)
    }
}

/// Sends `request` and returns the body of a 2xx answer; any other answer as Meta's error.
async fn call(request: reqwest::RequestBuilder) -> Result<bytes::Bytes, SendError> {
    let lost = |e: reqwest::Error| {
        if e.is_timeout() {
            SendError::Timeout
        } else {
            SendError::Network(e.without_url().to_string())
        }
    };
    let response = request.send().await.map_err(lost)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(lost)?;
    if status.is_success() {
        return Ok(bytes);
    }
    match serde_json::from_slice::<ErrorResponse>(&bytes) {
        Ok(err) => Err(SendError::Api {
            http_status: status.as_u16(),
            code: err.error.code,
            message: err
                .error
                .error_data
                .and_then(|d| d.details)
                .unwrap_or(err.error.message),
        }),
        Err(_) => Err(SendError::Http {
            status: status.as_u16(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("halo"), vec!["halo"]);
    }

    #[test]
    fn long_text_splits_at_spaces_within_the_limit() {
        let parts = split_at("aaa bbb ccc ddd", 8);
        assert_eq!(parts, vec!["aaa bbb", "ccc ddd"]);
        let text = "kata ".repeat(2000);
        let parts = split_text(&text);
        assert!(parts.len() >= 3);
        assert!(parts.iter().all(|p| p.chars().count() <= TEXT_LIMIT));
        assert!(parts
            .iter()
            .all(|p| !p.ends_with(' ') && p.ends_with("kata")));
        assert_eq!(parts.join(" "), text.trim());
    }

    #[test]
    fn multibyte_text_is_counted_in_characters() {
        let text = "é".repeat(10);
        let parts = split_at(&text, 4);
        assert_eq!(parts, vec!["éééé", "éééé", "éé"]);
    }

    #[test]
    fn retry_policy_follows_meta_codes() {
        let api = |code, http_status| SendError::Api {
            http_status,
            code,
            message: String::new(),
        };
        for code in [130429, 131056, 131000, 131016] {
            assert!(api(code, 400).is_retryable(), "{code}");
        }
        for code in [131047, 131026, 100, 132000, 132012] {
            assert!(!api(code, 400).is_retryable(), "{code}");
        }
        assert!(api(1, 503).is_retryable());
        assert!(SendError::Timeout.is_retryable());
        assert!(SendError::Http { status: 502 }.is_retryable());
        assert!(!SendError::Http { status: 404 }.is_retryable());
    }

    #[test]
    fn template_content_carries_its_parameters() {
        let t = content::template("hub_reply", "id", &["Halo"]);
        assert_eq!(t["template"]["name"], "hub_reply");
        assert_eq!(
            t["template"]["components"][0]["parameters"][0]["text"],
            "Halo"
        );
    }

    #[test]
    fn template_parameters_are_one_paragraph_within_metas_limit() {
        let t = content::template("hub_reply", "id", &["Omzet:\n\n- Rp 1 M\t(naik)     5%"]);
        assert_eq!(
            t["template"]["components"][0]["parameters"][0]["text"],
            "Omzet: - Rp 1 M (naik) 5%"
        );
        let long = "kata ".repeat(400);
        let t = content::template("hub_reply", "id", &[&long]);
        let param = t["template"]["components"][0]["parameters"][0]["text"]
            .as_str()
            .unwrap();
        assert_eq!(param.chars().count(), content::TEMPLATE_PARAM_LIMIT);
        assert!(param.ends_with('…'));
    }
}
