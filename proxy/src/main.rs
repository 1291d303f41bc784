//! The `portcullis` command line: `serve`, `check` and `certs init`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::certs::{init_dev_certs, DevCertsRequest};
use portcullis::config::{Config, LogFormat};

/// Portcullis: a security and governance proxy for Apache Kafka.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and the files it references; print every problem.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Development certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Write a development CA, a server certificate and client certificates.
    Init {
        /// Output directory.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// Extra server host names or IP addresses (localhost, 127.0.0.1 and ::1 are always
        /// included). Repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Client certificate names (CN). Repeatable.
        #[arg(long = "client", default_values_t = ["alice".to_string(), "bob".to_string()])]
        clients: Vec<String>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(&config),
        Command::Certs {
            command:
                CertsCommand::Init {
                    out,
                    hosts,
                    clients,
                    force,
                    days,
                },
        } => {
            let request = DevCertsRequest {
                out_dir: out,
                hosts,
                clients,
                force,
                valid_days: days,
            };
            match init_dev_certs(&request) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("certs init failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `portcullis check`: the configuration, then the TLS material it names (parsed, and the
/// key checked against the certificate), each problem with its key.
fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    portcullis::tls::install_crypto_provider();
    let mut problems = Vec::new();
    if let Some(tls) = &config.listener.tls {
        if let Err(e) = portcullis::tls::ServerTls::load(tls) {
            problems.push(format!("listener.tls: {e}"));
        }
    }
    if let Some(tls) = &config.upstream.tls {
        if let Err(e) = portcullis::tls::upstream_connector(tls) {
            problems.push(format!("upstream.tls: {e}"));
        }
    }
    if problems.is_empty() {
        println!("{}: OK", path.display());
        ExitCode::SUCCESS
    } else {
        eprintln!("{}: {} problem(s):", path.display(), problems.len());
        for p in problems {
            eprintln!("  - {p}");
        }
        ExitCode::FAILURE
    }
}

fn serve(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(config.log.format, &config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(portcullis::server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("portcullis: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
