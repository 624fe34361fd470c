//! Typed settings: `config/default.toml`, then `config/<env>.toml`, then `SENTIENT__SECTION__KEY`
//! environment variables, then `DATABASE_URL` / `NATS_URL`. Secrets are wrapped so that `Debug`
//! prints `[REDACTED]` instead of them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;

/// Everything the service can be told, one struct per section of `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Application-wide behaviour (time zone).
    pub app: AppSettings,
    /// The HTTP listener.
    pub server: ServerSettings,
    /// PostgreSQL, the system of record.
    pub database: DatabaseSettings,
    /// NATS with JetStream, the work distributor.
    pub nats: NatsSettings,
    /// Meta's WhatsApp Cloud API: webhook secrets, Graph API, sending policy.
    pub whatsapp: WhatsAppSettings,
    /// Who may chat: one-time codes and device trust.
    pub identity: IdentitySettings,
    /// Answers: LLM use, fallback, grounding, tone.
    pub brain: BrainSettings,
    /// Outgoing mail (one-time codes).
    pub smtp: SmtpSettings,
    /// The inbound pipeline on JetStream.
    pub inbox: InboxSettings,
    /// Logs.
    pub telemetry: TelemetrySettings,
    /// Admin API authentication: tokens, lockout, throttling, password hashing.
    pub auth: AuthSettings,
    /// The llm-worker: the OpenAI-compatible server it calls and the NATS subject it serves.
    pub llm: LlmSettings,
    /// Proactive alerts: where they come in and how they go out to phones.
    pub alerts: AlertSettings,
    /// The morning digest: the executive summary pushed once a day.
    pub digest: DigestSettings,
    /// Approving POs and sales orders from the chat.
    pub approvals: ApprovalSettings,
    /// How long logs stay in the database before they move to the archive.
    pub retention: RetentionSettings,
    /// The public values that the committed profiles (`local.toml`, `test.toml`) give the
    /// secrets, by key: fine on one machine, never on a network
    /// ([`Settings::refuse_public_secrets`]).
    #[serde(skip)]
    pub committed_secrets: Vec<(&'static str, SecretString)>,
}

/// An address block (`10.0.0.0/8`, `2001:db8::/32`) or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Cidr::parse(&text).ok_or_else(|| format!("{text:?} is not an address or a CIDR block"))
    }
}

/// The secrets a committed development profile gives a public value.
const SECRET_KEYS: [&str; 4] = [
    "whatsapp.verify_token",
    "whatsapp.app_secret",
    "auth.jwt_secret",
    "identity.otp_secret",
];

/// The non-empty values `local.toml` and `test.toml` in `dir` give the [`SECRET_KEYS`].
fn committed_secrets(dir: &Path) -> Vec<(&'static str, SecretString)> {
    let mut out = Vec::new();
    for file in ["local.toml", "test.toml"] {
        let Ok(profile) = config::Config::builder()
            .add_source(config::File::from(dir.join(file)).required(false))
            .build()
        else {
            continue;
        };
        for key in SECRET_KEYS {
            if let Ok(value) = profile.get_string(key).map(|v| v.trim().to_owned()) {
                if !value.is_empty() {
                    out.push((key, SecretString::from(value)));
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSettings {
    /// IANA time zone in which dates are shown to people.
    pub timezone: chrono_tz::Tz,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 lets the OS pick (tests).
    pub port: u16,
    /// Per-request time limit.
    pub request_timeout_secs: u64,
    /// Upper bound on graceful shutdown.
    pub shutdown_timeout_secs: u64,
    /// A second listener for `/metrics`, `/docs` and the OpenAPI document (and the probes), so
    /// the public one carries only `/webhook`, `/api` and the probes; none when absent.
    pub internal_port: Option<u16>,
    /// Address of that listener.
    pub internal_host: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection string; secret because it may carry a password.
    pub url: SecretString,
    /// Pool size.
    pub max_connections: u32,
    /// Connection and pool-acquire timeout.
    pub acquire_timeout_secs: u64,
    /// Create the database at start when it is missing.
    pub create_if_missing: bool,
    /// Apply migrations at start.
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// Server URL; may carry credentials, so it is secret.
    pub url: SecretString,
    /// Time limit for the first connection.
    pub connect_timeout_secs: u64,
    /// User name; empty = no user and password.
    pub user: String,
    /// Password of `user`.
    pub password: SecretString,
    /// Path of a `.creds` file (JWT and NKey seed); empty = none.
    pub creds_file: String,
    /// Prefix of this connection's reply subjects. A party of its own (e.g. `_INBOX_hub`) lets
    /// the server keep everyone else off the replies to it.
    pub inbox_prefix: String,
    /// This deployment's name on a shared NATS, appended to the stream names and the inbox
    /// subjects; empty = the database's name ([`Settings::apply_deployment`]).
    pub deployment: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppSettings {
    /// Compared (in constant time) with `hub.verify_token` in the handshake.
    pub verify_token: SecretString,
    /// HMAC-SHA256 key of `X-Hub-Signature-256`.
    pub app_secret: SecretString,
    /// Bearer token of the Graph API; empty selects the local sink.
    pub access_token: SecretString,
    /// The sending business number.
    pub phone_number_id: String,
    /// Graph API base URL (tests point it at a fake).
    pub graph_base_url: String,
    /// Graph API version path segment, e.g. `v23.0`.
    pub graph_api_version: String,
    /// Time limit of one Graph API call.
    pub graph_timeout_secs: u64,
    /// Largest webhook body accepted.
    pub max_body_bytes: usize,
    /// Webhook POSTs handled at once; more get 503.
    pub max_concurrent_webhooks: usize,
    /// Global send rate of this instance.
    pub messages_per_second: u32,
    /// Attempts per outbound message for retryable errors.
    pub send_max_attempts: u32,
    /// Backoff base delay.
    pub retry_base_ms: u64,
    /// Backoff ceiling.
    pub retry_max_ms: u64,
    /// Age after which an inbound message is stale.
    pub stale_after_secs: u64,
    /// What a stale message gets.
    pub stale_policy: StalePolicy,
    /// Template used when the 24-hour window is closed; empty = none.
    pub window_template: String,
    /// Language code of `window_template`.
    pub window_template_lang: String,
    /// How long a send interrupted by a crash waits for Meta's status before it is sent again.
    pub unknown_grace_secs: u64,
    /// Local mode: the folder charts are written to.
    pub local_media_dir: std::path::PathBuf,
}

/// What the hub does with a message that was processed too late to answer it as new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StalePolicy {
    /// A short note asking the person to send the question again.
    Notice,
    /// No answer at all.
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// Key of the keyed hash of stored codes.
    pub otp_secret: SecretString,
    /// Validity of a code.
    pub otp_ttl_secs: u64,
    /// Wrong tries that void a code.
    pub otp_max_attempts: i32,
    /// Codes per user per hour.
    pub otp_max_per_hour: i64,
    /// Messages held for an unconfirmed device at most.
    pub max_held: i64,
    /// Days a confirmation lasts.
    pub trust_days: i64,
}

/// When the data answer replaces an LLM answer whose figures the data does not support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroundingFallback {
    /// Only when an unsupported figure is money.
    Money,
    /// For any unsupported figure.
    Any,
    /// Never; unsupported figures are only logged.
    Off,
}

/// How an answer sounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Directors: money and impact first.
    Executive,
    /// Managers: detail.
    Manager,
    /// Operators and staff: technical, short.
    Operator,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrainSettings {
    /// Wait for the LLM before answering from the data.
    pub llm_timeout_secs: u64,
    /// Failures that open the breaker.
    pub circuit_failures: u32,
    /// How long the breaker stays open.
    pub circuit_open_secs: u64,
    /// Mask personal data before the LLM sees it.
    pub llm_external: bool,
    /// Longest question answered, in characters.
    pub max_question_chars: usize,
    /// Most rows one metrics query returns (more are cut, and the answer says so).
    pub metrics_row_cap: usize,
    /// Statement timeout of one metrics query.
    pub metrics_timeout_ms: u64,
    /// Ask the LLM for a spec when the rules cannot read a figure question.
    pub llm_specs: bool,
    /// Draw trends (and breakdowns asked for as a chart) as PNG charts too.
    pub charts: bool,
    /// Turns of history in the prompt.
    pub history_turns: i64,
    /// Age limit of those turns.
    pub history_minutes: i64,
    /// When unsupported figures send the answer back to the data.
    pub grounding_fallback: GroundingFallback,
    /// Intents never sent to the LLM.
    pub data_only_intents: Vec<String>,
    /// Token limit per answer.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Tone of roles not in `tones`.
    pub default_tone: Tone,
    /// Role code → tone.
    pub tones: HashMap<String, Tone>,
}

impl BrainSettings {
    /// The tone for a role code (keys compared without case: config files may lower-case them).
    pub fn tone_of(&self, role: &str) -> Tone {
        self.tones
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(role))
            .map(|(_, t)| *t)
            .unwrap_or(self.default_tone)
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (local catchers only).
    None,
    /// STARTTLS upgrade.
    Starttls,
    /// TLS from the first byte.
    Tls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Server host; empty = the local mailbox (local mode only).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connection security.
    pub tls: SmtpTls,
    /// Login; empty = none.
    pub username: String,
    /// Password for `username`.
    pub password: SecretString,
    /// The From header.
    pub from: String,
    /// Time limit of one delivery.
    pub timeout_secs: u64,
    /// The local mailbox's folder, when `host` is empty.
    pub mailbox_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// How often the hub archives (0 = never on its own; `sentient-hub archive` still works).
    pub every_hours: u64,
    /// Where the archive files go (`<dir>/<table>/<table>-YYYY-MM.jsonl.gz`).
    pub dir: std::path::PathBuf,
    /// Age in days after which a table's rows are archived, by table.
    pub days: std::collections::BTreeMap<String, u32>,
}

impl RetentionSettings {
    /// The age of `table`, when it is configured.
    pub fn days_for(&self, table: &str) -> Option<u32> {
        self.days.get(table).copied()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxSettings {
    /// JetStream stream name.
    pub stream: String,
    /// Subject prefix; partition n publishes on `<prefix>.<n>`.
    pub subject_prefix: String,
    /// Number of sender partitions (one in-flight message each).
    pub partitions: u16,
    /// JetStream ack wait.
    pub ack_wait_secs: u64,
    /// Deliveries before a message is poison.
    pub max_deliver: i64,
    /// Relay batch size.
    pub relay_batch: i64,
    /// Relay poll interval when idle.
    pub relay_idle_ms: u64,
    /// Questions per sender per minute answered.
    pub max_per_sender_per_minute: i64,
    /// Margin after `ack_wait_secs × max_deliver` after which a relayed row that is not done
    /// is relayed again (its job was lost by JetStream).
    pub rerelay_margin_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// NATS subject other services publish alerts on.
    pub subject: String,
    /// JetStream stream that keeps those alerts until the hub has stored them.
    pub stream: String,
    /// Poll interval for alert rows written straight into `ai_alert`.
    pub poll_secs: u64,
    /// Alerts older than this when first seen are kept but not pushed to phones.
    pub max_age_mins: u64,
    /// How often the detectors look at the factory's data; 0 = never.
    pub detect_every_mins: u64,
    /// `stream` as configured, without the deployment's name: the stream a release before
    /// deployment names used, taken over when it still captures `subject`.
    #[serde(skip)]
    pub legacy_stream: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSettings {
    /// Roles whose users get the digest unless they turned it off (or chose another time).
    pub default_roles: Vec<String>,
    /// Their time, in `app.timezone`.
    pub default_time: chrono::NaiveTime,
    /// A digest not sent by this many minutes after its time (the hub was down) is skipped
    /// for the day.
    pub catch_up_mins: u32,
    /// How often the scheduler looks for digests due; 0 = never.
    pub poll_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSettings {
    /// A document worth more than this (rupiah) needs a fresh code by email before approval.
    pub step_up_above: i64,
    /// So does any document when the approver's device was confirmed longer ago than this.
    pub step_up_after_hours: u32,
    /// How long a started approval (a confirmation, a code, a reason) waits for the user.
    pub step_ttl_mins: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Output format of logs.
    pub format: LogFormat,
    /// Default EnvFilter directive (RUST_LOG wins).
    pub filter: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC-SHA256 key of the access tokens (the only algorithm accepted). Secret, >= 32 bytes.
    pub jwt_secret: SecretString,
    /// `iss` written into and required from every access token.
    pub jwt_issuer: String,
    /// `aud` written into and required from every access token.
    pub jwt_audience: String,
    /// Lifetime of an access token (the blueprint's 15 minutes).
    pub access_ttl_secs: u64,
    /// Lifetime of a refresh token; each use rotates it and starts a new period.
    pub refresh_ttl_secs: u64,
    /// Clock skew tolerated on `exp`; a few seconds at most.
    pub leeway_secs: u64,
    /// Wrong passwords in a row that lock an account.
    pub max_failed_logins: i32,
    /// How long a locked account stays locked.
    pub lockout_secs: u64,
    /// Login attempts one IP address may make in a burst.
    pub login_burst: u32,
    /// Sustained login attempts per minute per IP address.
    pub login_per_minute: u32,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted reverse proxy).
    pub trust_forwarded_for: bool,
    /// The reverse proxies (addresses or CIDR blocks) skipped from the right of
    /// `X-Forwarded-For`.
    pub trusted_proxies: Vec<Cidr>,
    /// Argon2id memory cost in KiB (OWASP: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP: 2).
    pub argon2_iterations: u32,
    /// Argon2id lanes (OWASP: 1).
    pub argon2_parallelism: u32,
    /// Password hashes computed at once; bounds the CPU a login flood can take.
    pub max_concurrent_hashes: usize,
    /// How long a login waits for a hashing slot before it is answered 503.
    pub hash_wait_ms: u64,
    /// Shortest password accepted when one is set.
    pub password_min_length: usize,
    /// Least zxcvbn strength score (0 to 4) of a new password.
    pub password_min_strength: u8,
    /// Words no password may contain (the company's name), besides the user's own names.
    pub password_forbidden_words: Vec<String>,
    /// Days a password lasts; after them a login may only change it. 0 = never expires.
    pub password_max_age_days: u32,
    /// How many of the user's last passwords a new one may not repeat (the current one included).
    pub password_history: u32,
    /// Lifetime of a sign-in code.
    pub mfa_code_ttl_secs: u64,
    /// Wrong codes that void a challenge.
    pub mfa_max_attempts: i32,
    /// Challenges (codes) a user may be sent per hour.
    pub mfa_codes_per_hour: i64,
    /// A login from an address that completed a sign-in to the account within this many days
    /// skips the code, when the role allows it (`mfa_remember_address`). 0 = never skips.
    pub mfa_remember_days: u32,
    /// Code checks one IP address may make in a burst.
    pub mfa_verify_burst: u32,
    /// Sustained code checks per minute per IP address.
    pub mfa_verify_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Where the OpenAI-compatible server is (vLLM, Ollama, llama.cpp); the worker POSTs to
    /// `{base_url}/v1/chat/completions`. A trailing `/v1` is accepted as well.
    pub base_url: String,
    /// Model name sent upstream: vLLM and Ollama pick the model by it.
    pub model: String,
    /// Bearer token for the upstream. Secret; empty = no `Authorization` header (local servers).
    pub api_key: SecretString,
    /// Limit of one upstream call, body included; the requester gets `timeout` after it.
    pub request_timeout_secs: u64,
    /// Limit of opening the upstream connection, so a dead server fails fast.
    pub connect_timeout_secs: u64,
    /// Upstream calls one worker has in flight; requests beyond it are answered `overloaded`.
    pub max_concurrency: usize,
    /// `max_tokens` sent upstream when a request has none, so no call generates unbounded text.
    pub default_max_tokens: u32,
    /// Grace given to in-flight calls at shutdown before they are answered `shutting_down`.
    pub shutdown_timeout_secs: u64,
    /// NATS subject of the requests (queue subscription).
    pub subject: String,
    /// NATS queue group: workers in one group share the requests.
    pub queue_group: String,
    /// Address of the worker's own `/metrics` and `/healthz` listener.
    pub metrics_host: String,
    /// Port of that listener; 0 lets the OS pick (tests).
    pub metrics_port: u16,
}

impl Settings {
    /// Loads settings from `config/` in the current directory (or `SENTIENT_CONFIG_DIR`) for the
    /// environment named by `SENTIENT_ENV` (default `local`).
    pub fn load() -> anyhow::Result<Self> {
        let dir = std::env::var_os("SENTIENT_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let env = std::env::var("SENTIENT_ENV").unwrap_or_else(|_| "local".to_owned());
        Self::load_from(&dir, &env, &std::env::vars().collect())
    }

    /// Loads settings from `dir` for environment `env` with the process environment `vars`, so
    /// tests can supply their own.
    pub fn load_from(
        dir: &Path,
        env: &str,
        vars: &HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let default = dir.join("default.toml");
        if !default.exists() {
            bail!(
                "configuration file {} not found (run from the project folder or set SENTIENT_CONFIG_DIR)",
                default.display()
            );
        }
        let mut builder = config::Config::builder()
            .add_source(config::File::from(default))
            .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false))
            .add_source(
                config::Environment::with_prefix("SENTIENT")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(
                        vars.iter()
                            .filter(|(k, _)| k.starts_with("SENTIENT__"))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    )),
            );
        for (name, key) in [("DATABASE_URL", "database.url"), ("NATS_URL", "nats.url")] {
            if let Some(value) = vars.get(name).filter(|v| !v.is_empty()) {
                builder = builder.set_override(key, value.as_str())?;
            }
        }
        let mut settings: Settings = builder
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.validate()?;
        settings.apply_deployment()?;
        settings.committed_secrets = committed_secrets(dir);
        Ok(settings)
    }

    /// Gives the JetStream streams and the inbox subjects this deployment's name
    /// (`nats.deployment`, or else the database's name), so two hubs with different databases
    /// on one NATS never share a stream: a job of another deployment points at a row of another
    /// database. The alerts' subject is the contract other services publish on and stays as
    /// configured; two deployments on one NATS need their own (the second stream over the same
    /// subject is refused at start).
    fn apply_deployment(&mut self) -> anyhow::Result<()> {
        let name = if self.nats.deployment.is_empty() {
            let database = self.database.connect_options();
            let database = database.get_database().unwrap_or("postgres");
            database
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        } else {
            self.nats.deployment.clone()
        };
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("invalid configuration: nats.deployment must be 1 to 64 letters, digits, '-' or '_'");
        }
        self.inbox.stream = format!("{}_{name}", self.inbox.stream);
        self.inbox.subject_prefix = format!("{}.{name}", self.inbox.subject_prefix);
        self.alerts.legacy_stream = self.alerts.stream.clone();
        self.alerts.stream = format!("{}_{name}", self.alerts.stream);
        self.nats.deployment = name;
        Ok(())
    }

    /// The [`SECRET_KEYS`] whose value is one a committed profile gives.
    pub fn public_secrets(&self) -> Vec<&'static str> {
        let value_of = |key: &str| match key {
            "whatsapp.verify_token" => self.whatsapp.verify_token.expose_secret(),
            "whatsapp.app_secret" => self.whatsapp.app_secret.expose_secret(),
            "auth.jwt_secret" => self.auth.jwt_secret.expose_secret(),
            _ => self.identity.otp_secret.expose_secret(),
        };
        let mut keys: Vec<&'static str> = self
            .committed_secrets
            .iter()
            .filter(|(key, value)| value.expose_secret() == value_of(key))
            .map(|(key, _)| *key)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Refuses a start with a public development secret unless nothing leaves the machine: the
    /// listener is on loopback and replies go to the local sink or a Graph API on loopback.
    pub fn refuse_public_secrets(&self) -> anyhow::Result<()> {
        let public = self.public_secrets();
        if public.is_empty() {
            return Ok(());
        }
        let loopback_host = |host: &str| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        };
        let listener_ok = loopback_host(&self.server.host);
        let graph_ok = self.whatsapp.is_local()
            || url::Url::parse(&self.whatsapp.graph_base_url)
                .ok()
                .and_then(|u| u.host_str().map(loopback_host))
                .unwrap_or(false);
        if listener_ok && graph_ok {
            return Ok(());
        }
        let keys = public.join(", ");
        let vars = public
            .iter()
            .map(|k| format!("SENTIENT__{}", k.replace('.', "__").to_uppercase()))
            .collect::<Vec<_>>()
            .join(", ");
        let why = if listener_ok {
            "the Graph API token sends to a real Graph API"
        } else {
            "the listener is not on loopback"
        };
        bail!(
            "refusing to start: {keys} hold the public development values of config/local.toml or config/test.toml and {why}; set {vars} (and SENTIENT_ENV=production)"
        )
    }

    /// Checks what serde cannot: ranges and well-formed URLs. Each message names its key.
    fn validate(&self) -> anyhow::Result<()> {
        PgConnectOptions::from_str(self.database.url.expose_secret())
            .map_err(|e| anyhow::anyhow!("invalid configuration: database.url: {e}"))?;
        let nats = self.nats.url.expose_secret();
        if !(nats.starts_with("nats://")
            || nats.starts_with("tls://")
            || nats.starts_with("ws://")
            || nats.starts_with("wss://"))
        {
            bail!(
                "invalid configuration: nats.url must start with nats://, tls://, ws:// or wss://"
            );
        }
        for (key, value) in [
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
            (
                "server.shutdown_timeout_secs",
                self.server.shutdown_timeout_secs,
            ),
            (
                "database.acquire_timeout_secs",
                self.database.acquire_timeout_secs,
            ),
            ("nats.connect_timeout_secs", self.nats.connect_timeout_secs),
        ] {
            if value == 0 {
                bail!("invalid configuration: {key} must be at least 1");
            }
        }
        if self.database.max_connections == 0 {
            bail!("invalid configuration: database.max_connections must be at least 1");
        }
        let wa = &self.whatsapp;
        if wa.app_secret.expose_secret().is_empty() {
            bail!("invalid configuration: whatsapp.app_secret must be set (SENTIENT__WHATSAPP__APP_SECRET)");
        }
        if wa.verify_token.expose_secret().is_empty() {
            bail!("invalid configuration: whatsapp.verify_token must be set (SENTIENT__WHATSAPP__VERIFY_TOKEN)");
        }
        url::Url::parse(&wa.graph_base_url)
            .map_err(|e| anyhow::anyhow!("invalid configuration: whatsapp.graph_base_url: {e}"))?;
        for (key, value) in [
            ("whatsapp.graph_timeout_secs", wa.graph_timeout_secs),
            (
                "whatsapp.messages_per_second",
                u64::from(wa.messages_per_second),
            ),
            (
                "whatsapp.send_max_attempts",
                u64::from(wa.send_max_attempts),
            ),
            ("whatsapp.retry_base_ms", wa.retry_base_ms),
            ("whatsapp.max_body_bytes", wa.max_body_bytes as u64),
            (
                "whatsapp.max_concurrent_webhooks",
                wa.max_concurrent_webhooks as u64,
            ),
            ("inbox.partitions", u64::from(self.inbox.partitions)),
            ("inbox.ack_wait_secs", self.inbox.ack_wait_secs),
            ("inbox.relay_idle_ms", self.inbox.relay_idle_ms),
            ("alerts.poll_secs", self.alerts.poll_secs),
            ("alerts.max_age_mins", self.alerts.max_age_mins),
        ] {
            if value == 0 {
                bail!("invalid configuration: {key} must be at least 1");
            }
        }
        let id = &self.identity;
        if id.otp_secret.expose_secret().is_empty() {
            bail!("invalid configuration: identity.otp_secret must be set (SENTIENT__IDENTITY__OTP_SECRET)");
        }
        // Which tables retention.days may name, and for how long, is archive::check's to say.
        if self.smtp.host.trim().is_empty() && !self.whatsapp.is_local() {
            bail!("invalid configuration: smtp.host must be set (SENTIENT__SMTP__HOST): with a WhatsApp token the one-time codes need a real mail server");
        }
        if !(60..=600).contains(&id.otp_ttl_secs) {
            bail!("invalid configuration: identity.otp_ttl_secs must be between 60 and 600");
        }
        if id.otp_max_attempts < 1
            || id.otp_max_per_hour < 1
            || id.trust_days < 1
            || id.max_held < 1
            || self.inbox.max_per_sender_per_minute < 1
        {
            bail!("invalid configuration: identity.otp_max_attempts, identity.otp_max_per_hour, identity.trust_days, identity.max_held and inbox.max_per_sender_per_minute must be at least 1");
        }
        if self.approvals.step_up_above < 0
            || self.approvals.step_up_after_hours == 0
            || !(1..=60).contains(&self.approvals.step_ttl_mins)
        {
            bail!("invalid configuration: approvals.step_up_above must be at least 0, approvals.step_up_after_hours at least 1 and approvals.step_ttl_mins between 1 and 60");
        }
        if !(1..=720).contains(&self.digest.catch_up_mins) {
            bail!("invalid configuration: digest.catch_up_mins must be between 1 and 720");
        }
        if self.smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            bail!("invalid configuration: smtp.from is not a mail address");
        }
        if self.brain.llm_timeout_secs == 0
            || self.brain.circuit_failures == 0
            || self.brain.circuit_open_secs == 0
            || self.brain.max_question_chars == 0
            || self.brain.metrics_row_cap == 0
            || self.brain.metrics_timeout_ms == 0
        {
            bail!("invalid configuration: brain.llm_timeout_secs, brain.circuit_failures, brain.circuit_open_secs, brain.max_question_chars, brain.metrics_row_cap and brain.metrics_timeout_ms must be at least 1");
        }
        if self.smtp.timeout_secs == 0 {
            bail!("invalid configuration: smtp.timeout_secs must be at least 1");
        }
        if wa.retry_max_ms < wa.retry_base_ms {
            bail!("invalid configuration: whatsapp.retry_max_ms must not be below whatsapp.retry_base_ms");
        }
        self.auth.validate()?;
        self.llm.validate()?;
        for (key, value) in [
            ("alerts.subject", &self.alerts.subject),
            ("alerts.stream", &self.alerts.stream),
            ("nats.inbox_prefix", &self.nats.inbox_prefix),
        ] {
            if value.is_empty()
                || value.contains(|c: char| c.is_whitespace() || c == '*' || c == '>')
            {
                bail!("invalid configuration: {key} must be set, without spaces or wildcards");
            }
        }
        if self.alerts.max_age_mins > 7 * 24 * 60 {
            bail!("invalid configuration: alerts.max_age_mins must be at most 10080 (7 days, how long the stream keeps alerts)");
        }
        if self.inbox.max_deliver < 1 || self.inbox.relay_batch < 1 {
            bail!(
                "invalid configuration: inbox.max_deliver and inbox.relay_batch must be at least 1"
            );
        }
        Ok(())
    }
}

impl AuthSettings {
    /// Each message names its key.
    fn validate(&self) -> anyhow::Result<()> {
        if self.jwt_secret.expose_secret().len() < 32 {
            bail!("invalid configuration: auth.jwt_secret must be at least 32 bytes (SENTIENT__AUTH__JWT_SECRET)");
        }
        if self.leeway_secs > 5 {
            bail!("invalid configuration: auth.leeway_secs must be at most 5");
        }
        if self.access_ttl_secs < 60 || self.access_ttl_secs > 3600 {
            bail!("invalid configuration: auth.access_ttl_secs must be between 60 and 3600");
        }
        if self.refresh_ttl_secs < self.access_ttl_secs {
            bail!("invalid configuration: auth.refresh_ttl_secs must not be below auth.access_ttl_secs");
        }
        if self.max_failed_logins < 1 {
            bail!("invalid configuration: auth.max_failed_logins must be at least 1");
        }
        for (key, value) in [
            ("auth.lockout_secs", self.lockout_secs),
            ("auth.login_burst", u64::from(self.login_burst)),
            ("auth.login_per_minute", u64::from(self.login_per_minute)),
            (
                "auth.max_concurrent_hashes",
                self.max_concurrent_hashes as u64,
            ),
            ("auth.hash_wait_ms", self.hash_wait_ms),
            ("auth.password_min_length", self.password_min_length as u64),
            ("auth.password_history", u64::from(self.password_history)),
            ("auth.mfa_code_ttl_secs", self.mfa_code_ttl_secs),
            ("auth.mfa_max_attempts", self.mfa_max_attempts.max(0) as u64),
            (
                "auth.mfa_codes_per_hour",
                self.mfa_codes_per_hour.max(0) as u64,
            ),
            ("auth.mfa_verify_burst", u64::from(self.mfa_verify_burst)),
            (
                "auth.mfa_verify_per_minute",
                u64::from(self.mfa_verify_per_minute),
            ),
        ] {
            if value == 0 {
                bail!("invalid configuration: {key} must be at least 1");
            }
        }
        if self.password_min_strength > 4 {
            bail!(
                "invalid configuration: auth.password_min_strength must be 0 to 4 (zxcvbn's score)"
            );
        }
        if self.password_max_age_days > 36_500 || self.mfa_remember_days > 36_500 {
            bail!("invalid configuration: auth.password_max_age_days and auth.mfa_remember_days must be at most 36500");
        }
        if self.mfa_code_ttl_secs > 900 {
            bail!("invalid configuration: auth.mfa_code_ttl_secs must be at most 900");
        }
        if self.jwt_issuer.is_empty() || self.jwt_audience.is_empty() {
            bail!("invalid configuration: auth.jwt_issuer and auth.jwt_audience must be set");
        }
        argon2::Params::new(
            self.argon2_memory_kib,
            self.argon2_iterations,
            self.argon2_parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("invalid configuration: auth.argon2_*: {e}"))?;
        Ok(())
    }
}

impl LlmSettings {
    /// Each message names its key.
    fn validate(&self) -> anyhow::Result<()> {
        let url = url::Url::parse(&self.base_url)
            .map_err(|e| anyhow::anyhow!("invalid configuration: llm.base_url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            bail!("invalid configuration: llm.base_url must start with http:// or https://");
        }
        for (key, value) in [
            ("llm.request_timeout_secs", self.request_timeout_secs),
            ("llm.connect_timeout_secs", self.connect_timeout_secs),
            ("llm.max_concurrency", self.max_concurrency as u64),
            ("llm.default_max_tokens", u64::from(self.default_max_tokens)),
            ("llm.shutdown_timeout_secs", self.shutdown_timeout_secs),
        ] {
            if value == 0 {
                bail!("invalid configuration: {key} must be at least 1");
            }
        }
        for (key, value) in [
            ("llm.subject", &self.subject),
            ("llm.queue_group", &self.queue_group),
        ] {
            if value.is_empty() || value.contains(char::is_whitespace) {
                bail!("invalid configuration: {key} must be a NATS subject without spaces");
            }
        }
        if self.model.is_empty() {
            bail!("invalid configuration: llm.model must be set (SENTIENT__LLM__MODEL)");
        }
        Ok(())
    }

    /// The chat completions endpoint under `base_url`.
    pub fn chat_completions_url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        format!("{base}/v1/chat/completions")
    }
}

impl DatabaseSettings {
    /// Connection options parsed from the URL (validated at load time).
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(self.url.expose_secret())
            .expect("database.url was validated when settings were loaded")
    }

    /// `host:port/database` for messages: never the user or password.
    pub fn display_target(&self) -> String {
        let o = self.connect_options();
        format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("(default)")
        )
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.acquire_timeout_secs)
    }
}

impl WhatsAppSettings {
    /// Local mode: no Graph API token, replies go to the local sink.
    pub fn is_local(&self) -> bool {
        self.access_token.expose_secret().is_empty()
    }
}

impl NatsSettings {
    /// The server address without credentials, for messages.
    pub fn display_target(&self) -> String {
        let url = self.url.expose_secret();
        match url::Url::parse(url) {
            Ok(u) => format!(
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or("?"),
                u.port().unwrap_or(4222)
            ),
            Err(_) => "(unparseable nats.url)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
    }

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(&config_dir(), "local", &vars)
    }

    #[test]
    fn defaults_load_and_are_valid() {
        let s = load(&[]).unwrap();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.app.timezone, chrono_tz::Asia::Jakarta);
        assert_eq!(s.telemetry.format, LogFormat::Pretty);
    }

    #[test]
    fn streams_and_inbox_subjects_carry_the_deployment_so_two_databases_never_share_one() {
        let a = load(&[("DATABASE_URL", "postgres://db/hub.plant-a")]).unwrap();
        let b = load(&[("DATABASE_URL", "postgres://db/hub_b")]).unwrap();
        assert_eq!(a.nats.deployment, "hub_plant-a");
        assert_eq!(a.inbox.stream, "WA_INBOX_hub_plant-a");
        assert_eq!(a.inbox.subject_prefix, "wa.inbox.hub_plant-a");
        assert_eq!(a.alerts.stream, "AI_ALERTS_hub_plant-a");
        assert_eq!(b.inbox.stream, "WA_INBOX_hub_b");
        assert_eq!(
            a.alerts.subject, "alerts.new",
            "the contract other services publish on"
        );

        let named = load(&[("SENTIENT__NATS__DEPLOYMENT", "plant1")]).unwrap();
        assert_eq!(named.inbox.stream, "WA_INBOX_plant1");
        let bad = load(&[("SENTIENT__NATS__DEPLOYMENT", "a.b")]).unwrap_err();
        assert!(bad.to_string().contains("nats.deployment"), "{bad}");
    }

    #[test]
    fn database_url_and_nats_url_are_honoured() {
        let s = load(&[
            ("DATABASE_URL", "postgres://u:pw@db.example:6543/hub"),
            ("NATS_URL", "nats://nats.example:4333"),
        ])
        .unwrap();
        assert_eq!(s.database.display_target(), "db.example:6543/hub");
        assert_eq!(s.nats.display_target(), "nats://nats.example:4333");
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let s = load(&[("DATABASE_URL", "postgres://u:hunter2@db/hub")]).unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("REDACTED"));
    }

    #[test]
    fn invalid_values_name_their_key() {
        let dir = tempdir_with("[server]\nport = \"eighty\"\n");
        let err = Settings::load_from(dir.path(), "bad", &HashMap::new()).unwrap_err();
        assert!(format!("{err:#}").contains("server.port"), "{err:#}");

        let dir = tempdir_with("[nats]\nurl = \"http://localhost\"\n");
        let err = Settings::load_from(dir.path(), "bad", &HashMap::new()).unwrap_err();
        assert!(format!("{err:#}").contains("nats.url"), "{err:#}");

        let dir = tempdir_with("[server]\nshutdown_timeout_secs = 0\n");
        let err = Settings::load_from(dir.path(), "bad", &HashMap::new()).unwrap_err();
        assert!(
            format!("{err:#}").contains("server.shutdown_timeout_secs"),
            "{err:#}"
        );
    }

    #[test]
    fn section_key_variables_override_files() {
        let s = load(&[
            ("SENTIENT__SERVER__PORT", "9191"),
            ("SENTIENT__TELEMETRY__FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(s.server.port, 9191);
        assert_eq!(s.telemetry.format, LogFormat::Json);
    }

    #[test]
    fn a_whatsapp_token_needs_a_mail_server_and_local_mode_does_not() {
        let token = ("SENTIENT__WHATSAPP__ACCESS_TOKEN", "EAAG-token");
        let err = load(&[token]).unwrap_err();
        assert!(format!("{err:#}").contains("smtp.host"), "{err:#}");
        assert!(load(&[token, ("SENTIENT__SMTP__HOST", "mail.factory.local")]).is_ok());
        let local = load(&[]).unwrap();
        assert!(local.smtp.host.is_empty() && local.whatsapp.is_local());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let dir = tempdir_with("[server]\nprot = 1\n");
        let err = Settings::load_from(dir.path(), "bad", &HashMap::new()).unwrap_err();
        assert!(format!("{err:#}").contains("prot"), "{err:#}");
    }

    /// A config folder holding the real default.toml plus `bad.toml` with `overlay`.
    fn tempdir_with(overlay: &str) -> TempDir {
        let dir = TempDir::new();
        std::fs::copy(
            config_dir().join("default.toml"),
            dir.path().join("default.toml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.toml"), overlay).unwrap();
        dir
    }

    /// Minimal self-deleting temporary folder (keeps dev-dependencies small).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!("sentient-cfg-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
