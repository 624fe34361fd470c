use std::process::ExitCode;

use clap::Parser;
use sentient_hub::cli::{run, Cli};

/// mimalloc rather than glibc's malloc: the llm-worker and the hub allocate small buffers on one
/// thread and free them on another all day; `cargo bench --bench llm_roundtrip` measured 20–25%
/// less CPU per request through the worker with it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
