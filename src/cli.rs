//! The command line: `serve`, `migrate`, `demo`, `chat`, `llm-worker`, `llm-ask`, `intent`,
//! `ask`.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::startup::{shutdown_signal, Application};
use crate::{db, llm, telemetry, whatsapp};

/// Sentient Hub: the WhatsApp Executive Hub of the Sentient Factory data warehouse.
///
/// Settings come from config/default.toml, config/$SENTIENT_ENV.toml and SENTIENT__SECTION__KEY
/// environment variables (DATABASE_URL and NATS_URL are honoured too).
#[derive(Debug, Parser)]
#[command(name = "sentient-hub", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the admin API's users from the command line (bootstrap the first admin).
    Admin {
        #[command(subcommand)]
        command: crate::admin::cli::AdminCommand,
    },
    /// Run the HTTP server (webhook, admin API, health, metrics).
    Serve {
        /// Load the demo data before serving (idempotent).
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Move rows older than retention.days to the archive files now, and print what moved.
    Archive,
    /// Bring the rows of an archive file back (rows already present are left alone).
    Restore {
        /// An archive file, `<table>-YYYY-MM.jsonl.gz`.
        file: std::path::PathBuf,
    },
    /// Ask this machine's hub (or, with --worker, llm-worker) whether it is ready (`/readyz`):
    /// exit 0 when it is, 1 with the reason when not. For container healthchecks.
    Healthcheck {
        /// Check the llm-worker on `llm.metrics_port` instead of the hub.
        #[arg(long)]
        worker: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Load the demo data (blueprint samples plus twelve months of history) and exit.
    Demo {
        /// Generate this many times the history (more customers, items, machines, orders,
        /// lines, shift logs), deterministically; for benchmarks.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
        scale: u32,
    },
    /// Print the exact messages the LLM would get for a question from this phone's user.
    Prompt {
        /// The asker's phone (E.164 or Indonesian local form).
        #[arg(long)]
        phone: String,
        /// The question.
        text: String,
    },
    /// Talk to a running hub from the terminal, as a WhatsApp user would (local mode: the hub
    /// must run without a Graph API token).
    Chat {
        /// The phone to chat as (E.164 or Indonesian local form), e.g. +6281100000001.
        #[arg(long)]
        phone: String,
        /// The hub's base URL; default: this machine at the configured port.
        #[arg(long)]
        url: Option<String>,
        /// WhatsApp profile name to send.
        #[arg(long, default_value = "Local Tester")]
        name: String,
        /// After stdin ends, how long to wait for outstanding replies, in seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Run an LLM worker: answer `llm.subject` requests over NATS with the OpenAI-compatible
    /// server at `llm.base_url`. Run as many as needed; they share the requests.
    LlmWorker,
    /// Send one prompt to the llm-workers over NATS and print the reply as JSON (a check that
    /// the worker and its LLM server answer).
    LlmAsk {
        /// The user message.
        prompt: String,
        /// System message put before it.
        #[arg(long)]
        system: Option<String>,
        /// Upper bound of generated tokens (default: the worker's llm.default_max_tokens).
        #[arg(long)]
        max_tokens: Option<u32>,
        /// Seconds to wait for the reply (default: llm.request_timeout_secs + 5).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Raise an alert as another service would: publish it on `alerts.subject` and wait until
    /// JetStream has kept it. A running hub stores it and pushes it to the phones its rules name.
    Alert {
        /// Module, 2-10 letters: SO, PO, WO, DO, INV, FIN, QC, MAINT, SYS …
        #[arg(long)]
        module: String,
        /// Alert type, e.g. MACHINE_DOWN, STOCK, ANOMALY.
        #[arg(long = "type")]
        alert_type: String,
        /// Low, Medium, High or Critical.
        #[arg(long, default_value = "Medium")]
        severity: String,
        /// An alert with a key already seen is stored only once.
        #[arg(long)]
        dedup_key: Option<String>,
        /// What people read (several words are joined with spaces).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true)]
        message: Vec<String>,
    },
    /// Ask a figure question and show the workings: the spec, the SQL with its parameters, the
    /// rows and the answer. As the user with `--phone` (their permissions apply), or else with
    /// every read permission. No LLM is asked.
    Ask {
        /// The asker's phone (E.164 or Indonesian local form).
        #[arg(long)]
        phone: Option<String>,
        /// The question (several words are joined with spaces).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// Show how the brain understands a question: intent, entities (documents, masters,
    /// period …) and confidence, as JSON. Reads the masters' names from the database.
    Intent {
        /// The question, e.g. "stok motor dc brp?" (several words are joined with spaces).
        #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
}

/// Runs the parsed command. Errors bubble up to `main`, which prints them on one line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init_tracing(&settings.telemetry);
    match cli.command {
        Command::Admin { command } => crate::admin::cli::run(&settings, command).await,
        Command::Serve { demo } => {
            if demo {
                prepare_database(&settings, Some(1)).await?;
            }
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate => prepare_database(&settings, None).await,
        Command::Archive => {
            let pool = db::connect(&settings.database).await?;
            let report = crate::archive::run(&pool, &settings.retention).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Restore { file } => {
            let pool = db::connect(&settings.database).await?;
            let report = crate::archive::restore(&pool, &file).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Healthcheck { worker, timeout } => {
            healthcheck(&settings, worker, Duration::from_secs(timeout)).await
        }
        Command::Prompt { phone, text } => {
            println!("{}", preview(&settings, &phone, &text).await?);
            Ok(())
        }
        Command::Demo { scale } => prepare_database(&settings, Some(scale)).await,
        Command::Chat {
            phone,
            url,
            name,
            wait,
        } => {
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}", settings.server.port));
            whatsapp::local::chat(&settings, &phone, &url, &name, Duration::from_secs(wait)).await
        }
        Command::LlmWorker => {
            let worker = llm::worker::Worker::build(&settings).await?;
            worker.run_until_stopped(shutdown_signal()).await
        }
        Command::LlmAsk {
            prompt,
            system,
            max_tokens,
            wait,
        } => llm_ask(&settings, &prompt, system, max_tokens, wait).await,
        Command::Intent { text } => intent(&settings, &text.join(" ")).await,
        Command::Ask { phone, text } => {
            println!(
                "{}",
                ask(&settings, phone.as_deref(), &text.join(" ")).await?
            );
            Ok(())
        }
        Command::Alert {
            module,
            alert_type,
            severity,
            dedup_key,
            message,
        } => {
            let body = serde_json::json!({
                "module": module,
                "alert_type": alert_type,
                "severity": severity,
                "message": message.join(" "),
                "dedup_key": dedup_key,
            });
            raise_alert(&settings, &body).await
        }
    }
}

/// `healthcheck`: GET `/readyz` of the hub (its internal listener when one is configured, where
/// the health routes then live) or of the llm-worker, on this machine.
async fn healthcheck(settings: &Settings, worker: bool, timeout: Duration) -> anyhow::Result<()> {
    let port = if worker {
        settings.llm.metrics_port
    } else {
        settings
            .server
            .internal_port
            .unwrap_or(settings.server.port)
    };
    let what = if worker { "llm-worker" } else { "hub" };
    let url = format!("http://127.0.0.1:{port}/readyz");
    let response = reqwest::Client::builder()
        .timeout(timeout)
        .build()?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("the {what} does not answer at {url}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "the {what} is not ready ({status}): {}",
        body.trim()
    );
    Ok(())
}

/// `alert`: checks the alert as the hub will, publishes it and waits for JetStream's ack.
async fn raise_alert(settings: &Settings, body: &serde_json::Value) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(body)?;
    crate::alerts::intake::parse(&bytes).map_err(|reason| anyhow::anyhow!("{reason}"))?;
    let nats = crate::queue::connect_nats(&settings.nats).await?;
    let js = async_nats::jetstream::new(nats);
    let subject = settings.alerts.subject.clone();
    let pending = js
        .publish(subject.clone(), bytes.into())
        .await
        .context("publishing the alert")?;
    let ack = pending.await.map_err(|e| match e.kind() {
        async_nats::jetstream::context::PublishErrorKind::StreamNotFound => anyhow::anyhow!(
            "no JetStream stream keeps {subject}; start the hub once (sentient-hub serve) to create it"
        ),
        _ => anyhow::anyhow!("JetStream did not confirm the alert: {e}"),
    })?;
    println!(
        "alert kept in stream {} (sequence {}); the hub pushes it to the phones its rules name",
        ack.stream, ack.sequence
    );
    Ok(())
}

/// `intent`: the classification of one question, as pretty JSON on stdout. Never creates
/// the database: an unreachable or empty one is an error on one line.
async fn intent(settings: &Settings, text: &str) -> anyhow::Result<()> {
    let mut database = settings.database.clone();
    database.create_if_missing = false;
    let pool = db::connect(&database).await?;
    let catalog = crate::brain::catalog::Catalog::load(&pool).await;
    pool.close().await;
    let classification = crate::brain::intent::classify(text, &catalog?);
    println!("{}", serde_json::to_string_pretty(&classification)?);
    Ok(())
}

/// `prompt --phone … "<text>"`: the exact messages the LLM would get, or the direct answer
/// when none would be sent.
async fn preview(settings: &Settings, phone: &str, text: &str) -> anyhow::Result<String> {
    use crate::brain::Prepared;
    let db = db::connect(&settings.database).await?;
    let caller = caller_of(&db, phone).await?;
    let lang = crate::texts::Lang::detect(text);
    let prep = preparer(settings, &db).await?;
    let out = match prep.prepare(&caller, text, lang).await? {
        Prepared::Direct {
            text,
            intent,
            outcome,
        } => serde_json::to_string_pretty(&serde_json::json!({
            "intent": intent, "outcome": outcome.as_str(), "answer": text, "llm": false
        }))?,
        Prepared::Rich {
            text,
            messages,
            intent,
            outcome,
        } => serde_json::to_string_pretty(&serde_json::json!({
            "intent": intent, "outcome": outcome.as_str(), "answer": text, "llm": false,
            "whatsapp": messages
        }))?,
        Prepared::Unmapped { not_yet, .. } => serde_json::to_string_pretty(&serde_json::json!({
            "intent": "metric", "outcome": "clarify", "answer": not_yet,
            "llm": "asked for a spec first (brain.llm_specs)"
        }))?,
        Prepared::Ask {
            intent,
            messages,
            data_only,
            snapshot,
            worked: _,
            chart,
        } => serde_json::to_string_pretty(&serde_json::json!({
            "intent": intent, "tone": prep.tone_of(&caller.role), "as_of": snapshot.as_of,
            "llm": !data_only, "messages": messages,
            "chart": chart.map(|c| serde_json::json!({"png_bytes": c.png.len(), "caption": c.caption}))
        }))?,
    };
    db.close().await;
    Ok(out)
}

/// The active user holding `phone` (`--phone`), as the brain sees them.
async fn caller_of(db: &sqlx::PgPool, phone: &str) -> anyhow::Result<crate::domain::Caller> {
    let phone = crate::domain::phone::PhoneE164::parse(phone)
        .map_err(|e| anyhow::anyhow!("--phone: {e}"))?;
    crate::identity::gate::caller_by_phone(db, &phone)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no active user holds {}", phone.masked()))
}

/// The brain's preparer on `db`, with the masters read now.
async fn preparer(
    settings: &Settings,
    db: &sqlx::PgPool,
) -> anyhow::Result<crate::brain::Preparer> {
    use crate::brain::{catalog::Catalog, Preparer, SharedCatalog};
    Ok(Preparer::from_settings(
        db.clone(),
        SharedCatalog::new(Catalog::load(db).await?),
        settings,
    ))
}

/// `ask [--phone …] "<text>"`: how a figure question is answered, step by step.
async fn ask(settings: &Settings, phone: Option<&str>, text: &str) -> anyhow::Result<String> {
    use crate::brain::Prepared;
    use crate::metrics::compile::Bind;
    use std::fmt::Write as _;
    let db = db::connect(&settings.database).await?;
    let caller = match phone {
        Some(phone) => caller_of(&db, phone).await?,
        None => {
            let permissions: Vec<String> =
                sqlx::query_scalar("select code from adm_permission where action = 'READ'")
                    .fetch_all(&db)
                    .await?;
            crate::domain::Caller {
                user_id: 0,
                full_name: "sentient-hub ask".into(),
                role: "DIRECTOR".into(),
                permissions: permissions.into_iter().collect(),
                lang: crate::texts::Lang::Id,
            }
        }
    };
    let lang = crate::texts::Lang::detect(text);
    let prep = preparer(settings, &db).await?;
    let mut out = String::new();
    match prep.prepare(&caller, text, lang).await? {
        Prepared::Direct {
            text,
            intent,
            outcome,
        } => {
            writeln!(out, "intent: {intent}, outcome: {}", outcome.as_str())?;
            writeln!(out, "\n{text}")?;
        }
        Prepared::Rich {
            text,
            messages,
            intent,
            outcome,
        } => {
            writeln!(out, "intent: {intent}, outcome: {}", outcome.as_str())?;
            writeln!(out, "\n{text}")?;
            writeln!(
                out,
                "\nas WhatsApp messages:\n{}",
                serde_json::to_string_pretty(&messages)?
            )?;
        }
        Prepared::Unmapped { not_yet, .. } => {
            writeln!(out, "intent: metric, the rules cannot read it")?;
            writeln!(
                out,
                "(a running hub asks the LLM for a spec first: brain.llm_specs)\n\n{not_yet}"
            )?;
        }
        Prepared::Ask {
            intent,
            snapshot,
            worked,
            chart,
            ..
        } => {
            writeln!(out, "intent: {intent}")?;
            if let Some(w) = worked {
                writeln!(out, "\nspec:\n{}", serde_json::to_string_pretty(&w.spec)?)?;
                writeln!(out, "\nsql:\n{}", w.sql)?;
                writeln!(out, "\nparameters:")?;
                for (i, b) in w.binds.iter().enumerate() {
                    let v = match b {
                        Bind::Date(d) => d.to_string(),
                        Bind::Texts(t) => format!("{t:?}"),
                        Bind::Number(n) => n.to_string(),
                    };
                    writeln!(out, "  ${} = {v}", i + 1)?;
                }
                writeln!(out, "\nrows:")?;
                for r in &w.rows.rows {
                    let values: Vec<String> = r
                        .values
                        .iter()
                        .map(|v| v.map_or("null".into(), |v| v.to_string()))
                        .collect();
                    writeln!(
                        out,
                        "  {} | {} | {} | {}",
                        r.key.as_deref().unwrap_or("-"),
                        r.label.as_deref().unwrap_or("-"),
                        if r.current { "current" } else { "compared" },
                        values.join(" | ")
                    )?;
                }
                if w.rows.truncated {
                    writeln!(out, "  … cut at brain.metrics_row_cap")?;
                }
            }
            writeln!(out, "\nanswer:\n{}", snapshot.answer.get(lang))?;
            if let Some(chart) = chart {
                let dir = &settings.whatsapp.local_media_dir;
                std::fs::create_dir_all(dir)?;
                let path = dir.join("ask-chart.png");
                std::fs::write(&path, &chart.png)?;
                writeln!(
                    out,
                    "\nchart ({} bytes): {}\n{}",
                    chart.png.len(),
                    path.display(),
                    chart.caption
                )?;
            }
        }
    }
    db.close().await;
    Ok(out.trim_end().to_owned())
}

/// Migrates, and loads the demo data when asked.
async fn prepare_database(settings: &Settings, demo: Option<u32>) -> anyhow::Result<()> {
    let pool = db::connect(&settings.database).await?;
    db::migrate(&pool).await?;
    if let Some(scale) = demo {
        db::demo::load_scaled(&pool, scale).await?;
    }
    pool.close().await;
    Ok(())
}

/// `llm-ask`: one request to the llm-workers, the reply printed as JSON on stdout.
async fn llm_ask(
    settings: &Settings,
    prompt: &str,
    system: Option<String>,
    max_tokens: Option<u32>,
    wait: Option<u64>,
) -> anyhow::Result<()> {
    let nats = crate::queue::connect_nats(&settings.nats).await?;
    let mut request = llm::client::user_prompt(prompt);
    if let Some(system) = system {
        request
            .messages
            .insert(0, llm::ChatMessage::new("system", system));
    }
    request.max_tokens = max_tokens;
    let wait = Duration::from_secs(wait.unwrap_or(settings.llm.request_timeout_secs + 5));
    let reply = llm::client::ask(&nats, &settings.llm.subject, &request, wait).await?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    match reply.error_code() {
        None => Ok(()),
        Some(code) => anyhow::bail!("the worker answered {}", code.as_str()),
    }
}
