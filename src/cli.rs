//! The command line: `serve`, `migrate`, `demo`, `chat`.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::startup::{shutdown_signal, Application};
use crate::{db, telemetry, whatsapp};

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
    /// Run the HTTP server (webhook, admin API, health, metrics).
    Serve {
        /// Load the demo data before serving (idempotent).
        #[arg(long)]
        demo: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Load the demo data (blueprint samples plus twelve months of history) and exit.
    Demo,
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
}

/// Runs the parsed command. Errors bubble up to `main`, which prints them on one line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    telemetry::init_tracing(&settings.telemetry);
    match cli.command {
        Command::Serve { demo } => {
            if demo {
                prepare_database(&settings, true).await?;
            }
            let app = Application::build(settings).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate => prepare_database(&settings, false).await,
        Command::Demo => prepare_database(&settings, true).await,
        Command::Chat {
            phone,
            url,
            name,
            wait,
        } => {
            let url = url.unwrap_or_else(|| format!("http://127.0.0.1:{}", settings.server.port));
            whatsapp::local::chat(&settings, &phone, &url, &name, Duration::from_secs(wait)).await
        }
    }
}

/// Migrates, and loads the demo data when asked.
async fn prepare_database(settings: &Settings, demo: bool) -> anyhow::Result<()> {
    let pool = db::connect(&settings.database).await?;
    db::migrate(&pool).await?;
    if demo {
        db::demo::load(&pool).await?;
    }
    pool.close().await;
    Ok(())
}
