//! The WhatsApp edge of the pipeline: the webhook (handshake, signature, ingest), Meta's payload
//! types, and the Graph API client that sends.

pub mod graph;
pub mod local;
pub mod payload;
pub mod signature;
pub mod webhook;
