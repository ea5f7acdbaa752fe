//! `dth`, the Data Transfer Hub command line: wires the engine crates to flags, progress and output.
//! No transfer logic lives here.

mod cli;
mod progress;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc returns the 16 MiB part buffers to the system as they are freed; glibc's allocator kept
/// ~120 MiB of fragments above the `--max-buffer` budget in a 3 GiB copy.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
