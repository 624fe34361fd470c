//! Sentient Hub: the WhatsApp "Executive Hub" of the Sentient Factory data warehouse.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`serve`, `migrate`, `demo`); `main.rs` only calls it.
//! - [`config`]: typed settings from `config/*.toml` and `SENTIENT__SECTION__KEY`.
//! - [`startup`]: `Application::build` / `run_until_stopped`, the router, graceful shutdown.
//! - [`telemetry`]: tracing and Prometheus metrics.
//! - [`http`]: health, readiness and metrics endpoints.
//! - [`db`]: the PostgreSQL pool, the embedded migrations (`migrations/`) and the demo data.
//!
//! Data flows one way: whatsapp → inbox → identity → brain → llm → outbox → whatsapp; alerts
//! and admin sit beside that road.

pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod startup;
pub mod telemetry;
