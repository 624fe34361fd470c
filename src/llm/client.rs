//! A minimal requester of `ai.llm.chat`: one request, one reply, one deadline. The brain calls it
//! inside its circuit breaker, with the deterministic answer as fallback; the tests, the
//! benchmark and `sentient-hub llm-ask` call it as is.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use super::{ChatMessage, ChatReply, ChatRequest};

/// Why no reply could be read.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// No worker subscribes to the subject.
    #[error("no llm-worker is listening on {0}")]
    NoResponders(String),
    /// A worker took the request but did not answer in time.
    #[error("no reply within {0:?}")]
    TimedOut(Duration),
    /// The request could not be sent, or the reply is not of the contract's shape.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A request with one user message, a fresh id and the worker's defaults for the rest.
pub fn user_prompt(prompt: &str) -> ChatRequest {
    ChatRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        messages: vec![ChatMessage::new("user", prompt)],
        max_tokens: None,
        temperature: None,
        meta: serde_json::Map::new(),
    }
}

/// Sends `request` on `subject` and waits at most `timeout` for its reply.
pub async fn ask(
    nats: &async_nats::Client,
    subject: &str,
    request: &ChatRequest,
    timeout: Duration,
) -> Result<ChatReply, AskError> {
    let payload = Bytes::from(serde_json::to_vec(request).context("serialising the request")?);
    let message = nats
        .send_request(
            subject.to_owned(),
            async_nats::Request::new()
                .payload(payload)
                .timeout(Some(timeout)),
        )
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => AskError::NoResponders(subject.into()),
            async_nats::RequestErrorKind::TimedOut => AskError::TimedOut(timeout),
            _ => AskError::Other(anyhow::Error::new(e).context("sending the request")),
        })?;
    let reply: ChatReply = serde_json::from_slice(&message.payload).context("reading the reply")?;
    // Anyone who may publish on the reply subject could answer first: an answer must name the
    // request it answers (a failure may name none when the worker could not read the request).
    let answers_it = match &reply {
        ChatReply::Answer(a) => a.request_id == request.request_id,
        ChatReply::Failure(f) => f
            .request_id
            .as_ref()
            .is_none_or(|id| *id == request.request_id),
    };
    if !answers_it {
        return Err(AskError::Other(anyhow::anyhow!(
            "the reply names another request than {}",
            request.request_id
        )));
    }
    Ok(reply)
}
