//! One call to an OpenAI-compatible server: `POST {base_url}/v1/chat/completions`, not
//! streamed. vLLM, Ollama and llama.cpp's llama-server all speak it; only the fields they share
//! are used.

use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ChatMessage, ErrorCode};
use crate::config::LlmSettings;

/// Largest upstream body read; a chat completion is a few kilobytes, anything far bigger is
/// garbage that should not be buffered whole.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How much of an upstream error text goes into the reply's message.
const MAX_ERROR_EXCERPT: usize = 200;

/// The upstream server and how to reach it. Cheap to share: the HTTP client pools connections.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    /// Keeps connections to the upstream open between calls.
    http: reqwest::Client,
    /// The full `/v1/chat/completions` URL, parsed once rather than on every call.
    url: reqwest::Url,
    /// Sent as `model`.
    model: String,
    /// Sent as a bearer token when present.
    api_key: Option<SecretString>,
}

/// What the worker needs from a completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The first choice's text, as the model wrote it (reasoning not yet removed).
    pub content: String,
    /// The model that answered (the upstream's name for it, else the configured one).
    pub model: String,
    /// From `usage`; 0 when the upstream does not report it.
    pub prompt_tokens: u64,
    /// From `usage`; 0 when the upstream does not report it.
    pub completion_tokens: u64,
}

/// A failed call, sorted into the reply's error codes.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the LLM server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the LLM server cannot be reached: {0}")]
    Unavailable(String),
    #[error("the LLM server answered HTTP {status}: {excerpt}")]
    Http { status: u16, excerpt: String },
    #[error("the LLM server's answer is not a chat completion: {0}")]
    Body(String),
}

impl UpstreamError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Timeout(_) => ErrorCode::Timeout,
            Self::Unavailable(_) => ErrorCode::UpstreamUnavailable,
            Self::Http { .. } => ErrorCode::UpstreamHttp,
            Self::Body(_) => ErrorCode::UpstreamBody,
        }
    }
}

/// The request body; borrows the messages so nothing is copied.
#[derive(Serialize)]
struct CompletionRequest<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    stream: bool,
}

#[derive(Deserialize)]
struct CompletionResponse {
    #[serde(default)]
    model: Option<String>,
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    /// `null` when a model answers only with tool calls; treated as empty text.
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl OpenAiClient {
    pub fn from_settings(settings: &LlmSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
            .timeout(Duration::from_secs(settings.request_timeout_secs))
            // One connection per call in flight is all the worker ever uses.
            .pool_max_idle_per_host(settings.max_concurrency)
            .tcp_nodelay(true)
            .user_agent(concat!(
                "sentient-hub-llm-worker/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .context("building the HTTP client for the LLM server")?;
        let api_key = Some(settings.api_key.clone()).filter(|k| !k.expose_secret().is_empty());
        Ok(Self {
            http,
            url: reqwest::Url::parse(&settings.chat_completions_url())
                .context("llm.base_url does not make a valid URL")?,
            model: settings.model.clone(),
            api_key,
        })
    }

    /// The endpoint called, for logs (carries no secret: the key travels in a header).
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// One non-streamed chat completion. `timeout` bounds the whole call, body included.
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        max_tokens: u32,
        temperature: Option<f32>,
        timeout: Duration,
    ) -> Result<Completion, UpstreamError> {
        let body = CompletionRequest {
            model: &self.model,
            messages,
            max_tokens,
            temperature,
            stream: false,
        };
        // reqwest's timeout runs from connecting until the last byte of the body: a server that
        // trickles its answer is cut off too.
        let mut request = self
            .http
            .post(self.url.clone())
            .json(&body)
            .timeout(timeout);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let mut response = request.send().await.map_err(|e| transport(e, timeout))?;
        let status = response.status();
        let bytes = read_capped(&mut response)
            .await
            .map_err(|e| transport(e, timeout))?;
        if !status.is_success() {
            return Err(UpstreamError::Http {
                status: status.as_u16(),
                excerpt: error_excerpt(bytes.as_deref().unwrap_or(b"")),
            });
        }
        let bytes = bytes
            .ok_or_else(|| UpstreamError::Body(format!("larger than {MAX_BODY_BYTES} bytes")))?;
        parse_completion(&bytes, &self.model)
    }
}

/// Reads the body, or `None` when it is larger than [`MAX_BODY_BYTES`].
async fn read_capped(response: &mut reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(1024) as usize);
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn transport(e: reqwest::Error, timeout: Duration) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout(timeout)
    } else {
        // The chain names the cause (refused, reset, DNS) without the request body.
        UpstreamError::Unavailable(format!("{:#}", anyhow::Error::new(e)))
    }
}

fn parse_completion(bytes: &[u8], configured_model: &str) -> Result<Completion, UpstreamError> {
    let parsed: CompletionResponse =
        serde_json::from_slice(bytes).map_err(|e| UpstreamError::Body(e.to_string()))?;
    let choice = parsed
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| UpstreamError::Body("no choices".to_owned()))?;
    let usage = parsed.usage.unwrap_or(Usage {
        prompt_tokens: 0,
        completion_tokens: 0,
    });
    Ok(Completion {
        content: choice.message.content.unwrap_or_default(),
        model: parsed
            .model
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| configured_model.to_owned()),
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
    })
}

/// The upstream's own words about an error: OpenAI's `{"error":{"message"}}`, Ollama's
/// `{"error":"…"}`, or the start of the text; short, on one line.
fn error_excerpt(bytes: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => match &v["error"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string()),
            _ => v.to_string(),
        },
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    };
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX_ERROR_EXCERPT) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None if one_line.is_empty() => "(empty body)".to_owned(),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_is_read_from_the_first_choice_with_usage() {
        let body = br#"{"id":"x","object":"chat.completion","model":"qwen","choices":[
            {"index":0,"message":{"role":"assistant","content":"Halo"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        let c = parse_completion(body, "configured").unwrap();
        assert_eq!(c.content, "Halo");
        assert_eq!(c.model, "qwen");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (12, 3));
    }

    #[test]
    fn missing_usage_and_model_fall_back() {
        let body = br#"{"choices":[{"message":{"content":null}}]}"#;
        let c = parse_completion(body, "configured").unwrap();
        assert_eq!(c.content, "");
        assert_eq!(c.model, "configured");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (0, 0));
    }

    #[test]
    fn bodies_that_are_not_completions_are_body_errors() {
        for body in [
            &b"<html>502</html>"[..],
            br#"{"choices":[]}"#,
            br#"{"x":1}"#,
        ] {
            let e = parse_completion(body, "m").unwrap_err();
            assert_eq!(e.code(), ErrorCode::UpstreamBody, "{e}");
        }
    }

    #[test]
    fn error_excerpts_take_the_servers_message() {
        assert_eq!(
            error_excerpt(br#"{"error":{"message":"model not found","type":"x"}}"#),
            "model not found"
        );
        assert_eq!(error_excerpt(br#"{"error":"busy"}"#), "busy");
        assert_eq!(error_excerpt(b"  Bad\n gateway "), "Bad gateway");
        assert_eq!(error_excerpt(b""), "(empty body)");
        assert_eq!(error_excerpt(&[b'x'; 500]).chars().count(), 201);
    }
}
