//! Sentient Hub: the WhatsApp "Executive Hub" of the Sentient Factory data warehouse.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `migrate`, `demo`); `main.rs` only calls it.
//! - [`config`]: typed settings from `config/*.toml` and `SENTIENT__SECTION__KEY`.
//! - [`startup`]: `Application::build` / `run_until_stopped`, the router, graceful shutdown.
//! - [`telemetry`]: tracing and Prometheus metrics.
//! - [`http`]: health, readiness and metrics endpoints.
//! - [`domain`]: types parsed at the boundary (E.164 phones, masking for logs).
//! - [`db`]: the PostgreSQL pool, the embedded migrations (`migrations/`) and the demo data.
//! - [`whatsapp`]: Meta's side: webhook (handshake, signature, ingest), payload types, Graph API.
//! - [`inbox`]: the durable inbox, the relay to JetStream and the per-sender ordered workers.
//! - [`identity`]: who may chat: whitelist, device trust by email OTP, role and permissions.
//! - [`brain`]: intents, the permission each needs, and the answer.
//! - [`llm`]: the `ai.llm.chat` contract over NATS and the llm-worker that bridges it to any
//!   OpenAI-compatible server (`sentient-hub llm-worker`).
//! - [`outbox`]: reply rows, the sender loop, retries, rate limit and the 24-hour window.
//! - [`queue`]: the JetStream work-queue stream and pull loop the inbox and the alerts share.
//! - [`alerts`]: proactive alerts: detectors, intake from NATS `alerts.new`, routing by rule
//!   and role, delivery through the outbox.
//! - [`texts`]: everything the bot says, in Indonesian and English.
//! - [`admin`]: the admin REST API (`/api/v1`): login, users, roles, sessions, audit, chats,
//!   alerts; OpenAPI at `/api/v1/openapi.json`, Swagger UI at `/docs`.
//! - [`error`]: the one error type at the HTTP edge (RFC 9457 problem+json).
//!
//! Data flows one way: whatsapp → inbox → identity → brain → llm → outbox → whatsapp; alerts
//! and admin sit beside that road.

pub mod admin;
pub mod alerts;
pub mod brain;
pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod identity;
pub mod inbox;
pub mod llm;
pub mod outbox;
pub mod queue;
pub mod startup;
pub mod telemetry;
pub mod texts;
pub mod whatsapp;
