//! `portcullis policy ...` without the proxy: `cargo run -p portcullis-policy --example
//! policy_cli -- check policies` or `... -- explain --principal User:alice --resource
//! topic:orders --operation Write`.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use portcullis_policy::{run, PolicyCommand};

/// Validate policies and explain decisions.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: PolicyCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout();
    match run(cli.cmd, Path::new("policies"), &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
