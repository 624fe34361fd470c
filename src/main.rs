use std::process::ExitCode;

use clap::Parser;
use sentient_hub::cli::{run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole cause chain, no backtrace.
            eprintln!("sentient-hub: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
