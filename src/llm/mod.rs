//! The LLM, reached only over NATS: the wire contract of `ai.llm.chat` (DESIGN.md, "LLM over
//! NATS"), the worker that bridges it to any OpenAI-compatible server, and a minimal requester.
//!
//! - [`worker`]: `sentient-hub llm-worker`: queue subscription, concurrency limit, one reply per
//!   request, metrics listener, graceful shutdown.
//! - [`openai`]: one `POST {base_url}/v1/chat/completions` call, its errors sorted into codes.
//! - [`client`]: send one request and read its reply (the brain, tests, benchmark, `llm-ask`).
//! - [`breaker`]: the hub's circuit breaker around those requests.

pub mod breaker;
pub mod client;
pub mod openai;
pub mod worker;

use serde::{Deserialize, Serialize};

/// One request on `ai.llm.chat`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Echoed in the reply so the requester can match it and logs can follow it.
    pub request_id: String,
    /// The conversation, oldest first, in OpenAI's roles (`system`, `user`, `assistant`).
    pub messages: Vec<ChatMessage>,
    /// Upper bound of generated tokens; the worker's `llm.default_max_tokens` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature; the upstream server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Free-form context from the requester (intent, asker's role …); never sent upstream, so
    /// it cannot leak into a prompt.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`; passed through, the upstream judges it.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatAnswer {
    /// The request's id.
    pub request_id: String,
    /// The model's answer with reasoning blocks removed.
    pub content: String,
    /// The model that answered, as the upstream names it.
    pub model: String,
    /// Tokens in the prompt, as counted by the upstream (0 when it does not say).
    pub prompt_tokens: u64,
    /// Tokens generated, as counted by the upstream (0 when it does not say).
    pub completion_tokens: u64,
}

/// A failed request: every request that cannot be answered gets one of these, never silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatFailure {
    /// The request's id; `null` when the request was too broken to carry one.
    pub request_id: Option<String>,
    /// What went wrong.
    pub error: ErrorBody,
}

/// The `error` object of a failed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable kind; the requester decides on it (retry, fall back, give up).
    pub code: ErrorCode,
    /// For logs; never shown to a WhatsApp user.
    pub message: String,
}

/// The kinds of failure a requester must tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is not valid JSON of the contract's shape, or has no messages. Do not retry.
    BadRequest,
    /// This worker already has `llm.max_concurrency` calls in flight; answered at once so the
    /// requester can retry (another worker may take it) or fall back before its own deadline.
    Overloaded,
    /// The upstream did not answer within `llm.request_timeout_secs`.
    Timeout,
    /// The upstream could not be reached (refused, reset, DNS).
    UpstreamUnavailable,
    /// The upstream answered with a non-2xx status.
    UpstreamHttp,
    /// The upstream answered 2xx with a body that is not a chat completion.
    UpstreamBody,
    /// The worker was stopped before the upstream answered (after `llm.shutdown_timeout_secs`
    /// of grace). Retrying reaches another worker of the group.
    ShuttingDown,
    /// A bug in the worker; the request was still answered.
    Internal,
}

impl ErrorCode {
    /// Every code, so the metrics can show each at zero before it first happens.
    pub const ALL: [ErrorCode; 8] = [
        Self::BadRequest,
        Self::Overloaded,
        Self::Timeout,
        Self::UpstreamUnavailable,
        Self::UpstreamHttp,
        Self::UpstreamBody,
        Self::ShuttingDown,
        Self::Internal,
    ];

    /// The wire name, also the `code` label of `llm_errors_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Overloaded => "overloaded",
            Self::Timeout => "timeout",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamHttp => "upstream_http",
            Self::UpstreamBody => "upstream_body",
            Self::ShuttingDown => "shutting_down",
            Self::Internal => "internal",
        }
    }
}

/// A reply on the wire: an answer or a failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChatReply {
    /// Has `content`.
    Answer(ChatAnswer),
    /// Has `error`.
    Failure(ChatFailure),
}

impl ChatReply {
    pub fn failure(
        request_id: Option<String>,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Self {
        Self::Failure(ChatFailure {
            request_id,
            error: ErrorBody {
                code,
                message: message.into(),
            },
        })
    }

    /// The failure's code, if it is one.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Answer(_) => None,
            Self::Failure(f) => Some(f.error.code),
        }
    }
}

/// Removes the reasoning that some models (DeepSeek-R1, Qwen3, QwQ) write before their answer:
/// every `<think>…</think>` block; an opening part that ends in `</think>` without its `<think>`
/// (chat templates that put the opening tag into the prompt); and an unclosed `<think>` with
/// everything after it (generation cut by `max_tokens` mid-thought: no answer was written).
/// The tags are matched without regard to case; the result is trimmed.
pub fn strip_reasoning(text: &str) -> String {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    // ASCII lowercasing keeps every byte offset, so positions found in `lower` slice `text`.
    let lower = text.to_ascii_lowercase();
    let mut pos = 0;
    if let Some(close) = lower.find(CLOSE) {
        if !lower[..close].contains(OPEN) {
            pos = close + CLOSE.len();
        }
    }
    let mut out = String::with_capacity(text.len() - pos);
    while let Some(open) = lower[pos..].find(OPEN).map(|i| pos + i) {
        out.push_str(&text[pos..open]);
        match lower[open..].find(CLOSE) {
            Some(close) => pos = open + close + CLOSE.len(),
            None => {
                pos = text.len();
                break;
            }
        }
    }
    out.push_str(&text[pos..]);
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_reasoning_is_only_trimmed() {
        assert_eq!(strip_reasoning("  Omzet naik 5%.\n"), "Omzet naik 5%.");
    }

    #[test]
    fn reasoning_blocks_are_removed_wherever_they_are() {
        assert_eq!(
            strip_reasoning("<think>\nuser wants stock\n</think>\n\nStok: 12 unit."),
            "Stok: 12 unit."
        );
        assert_eq!(
            strip_reasoning("A <THINK>x</Think>B<think>y\nz</think> C"),
            "A B C"
        );
    }

    #[test]
    fn a_closing_tag_without_its_opening_ends_the_reasoning() {
        assert_eq!(
            strip_reasoning("hmm, the user…</think>Jawaban."),
            "Jawaban."
        );
    }

    #[test]
    fn an_unclosed_block_is_cut_off() {
        assert_eq!(strip_reasoning("Answer.<think>and then"), "Answer.");
        assert_eq!(strip_reasoning("<think>never finished"), "");
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(
            strip_reasoning("<think>é</think>Rp 1.250.000 — naik ↑"),
            "Rp 1.250.000 — naik ↑"
        );
    }

    #[test]
    fn replies_round_trip_through_the_wire_format() {
        let answer = r#"{"request_id":"r1","content":"hi","model":"m","prompt_tokens":3,"completion_tokens":1}"#;
        let reply: ChatReply = serde_json::from_str(answer).unwrap();
        assert!(matches!(reply, ChatReply::Answer(ref a) if a.content == "hi"));
        let failure = ChatReply::failure(None, ErrorCode::UpstreamHttp, "503");
        let json = serde_json::to_value(&failure).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"request_id": null, "error": {"code": "upstream_http", "message": "503"}})
        );
        let back: ChatReply = serde_json::from_value(json).unwrap();
        assert_eq!(back.error_code(), Some(ErrorCode::UpstreamHttp));
    }
}
