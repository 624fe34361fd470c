//! Sentient Hub: the WhatsApp "Executive Hub" of the Sentient Factory data warehouse.
//!
//! # Layout
//!
//! Top to bottom; a module uses only modules below it (`tests/api/architecture.rs` holds this
//! order as data and fails on an import that runs back up).
//!
//! The composition root:
//! - [`cli`]: the command line (`serve`, `migrate`, `demo`, `chat`, `prompt` …); `main.rs` only
//!   calls it.
//! - [`startup`]: `Application::build` builds each stage with only the parts it uses, the HTTP
//!   router over its `FromRef` substates, `run_until_stopped`, graceful shutdown. Nothing below
//!   imports it.
//!
//! Beside the road, at the HTTP edge:
//! - [`http`]: health, readiness and metrics endpoints (`HealthState`).
//! - [`admin`]: the admin REST API (`/api/v1`, `AdminState`): login (with a second factor by
//!   WhatsApp or email), users, roles, sessions,
//!   audit, chats, alerts; OpenAPI at `/api/v1/openapi.json`, Swagger UI at `/docs`.
//!
//! The road, in the order a message travels it:
//! - [`inbox`]: the webhook (its front door, `WebhookState`), the durable inbox, the relay to
//!   JetStream and the per-sender ordered consumer, which sends each admitted message to the
//!   brain, or a tapped alert button to the alert acknowledgement.
//! - [`alerts`]: proactive alerts: detectors, intake from NATS `alerts.new`, routing by rule and
//!   role, the acknowledgement; delivered through the outbox, which asks them "still wanted?".
//! - [`identity`]: the gate: whitelist, device trust by email OTP, role and permissions.
//! - [`brain`]: understanding (intents, entities, periods, a question read into a metrics
//!   spec), live context for lookups, the prompt, grounding and the answer.
//! - [`executive`]: for the people at the top: the executive summary (chat and
//!   `/api/v1/dashboard/summary`) and the 7-day cash outlook with its detector, each figure a
//!   spec run by the metrics layer for the asker's permissions.
//! - [`metrics`]: the governed metrics layer: the catalogue of measures and dimensions
//!   (`metrics/catalogue.toml`), the typed spec, its compiler to one read-only statement,
//!   execution and rendering. Knows nothing of questions.
//! - [`llm`]: the `ai.llm.chat` contract over NATS and the llm-worker that bridges it to any
//!   OpenAI-compatible server (`sentient-hub llm-worker`).
//! - [`outbox`]: the only writer of `wa_outbox`: enqueue, status webhooks, the sender loop,
//!   retries, rate limit and the 24-hour window; features register their send hooks with it.
//! - [`whatsapp`]: Meta's protocol only: payload types, signature, Graph API client, local sink
//!   and chat.
//!
//! At the road's end:
//! - [`archive`]: retention: old log rows to compressed monthly files, and back.
//!
//! Ground, used by every stage:
//! - [`audit`]: the only writer of `log_audit`.
//! - [`dead_letter`]: the only writer of `wa_dead_letter`.
//! - [`queue`]: the NATS connection, JetStream work queues and the in-process doorbells between
//!   stages.
//! - [`telemetry`]: tracing and Prometheus metrics.
//! - [`db`]: the PostgreSQL pool, the embedded migrations (`migrations/`) and the demo data.
//! - [`domain`]: types parsed at the boundary (E.164 phones, the admitted caller) and the rules
//!   and figures several stages share (which module's data a permission reads, the reject-rate
//!   threshold).
//! - [`texts`]: everything the bot says, in Indonesian and English.
//! - [`error`]: the one error type at the HTTP edge (RFC 9457 problem+json).
//! - [`config`]: typed settings from `config/*.toml` and `SENTIENT__SECTION__KEY`.
//!
//! Data flows one way: whatsapp → inbox → identity → brain → llm → outbox → whatsapp; alerts
//! and admin sit beside that road and use it. Each stage is a value holding its own pool,
//! clients and settings; stages wake each other with doorbells owned by the stage that waits.

pub mod admin;
pub mod alerts;
pub mod archive;
pub mod audit;
pub mod brain;
pub mod cli;
pub mod config;
pub mod db;
pub mod dead_letter;
pub mod domain;
pub mod error;
pub mod executive;
pub mod http;
pub mod identity;
pub mod inbox;
pub mod llm;
pub mod metrics;
pub mod outbox;
pub mod queue;
pub mod startup;
pub mod telemetry;
pub mod texts;
pub mod whatsapp;
