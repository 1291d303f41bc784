//! The `portcullis` command line: `serve`, `check`, `certs`, `audit`, `users`, `keys`,
//! `decrypt` and `policy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use portcullis::cli::certs::{init_dev_certs, DevCertsRequest};
use portcullis::config::{Config, LogFormat};
use portcullis_auth::users::UsersCommand;

/// mimalloc instead of glibc malloc: glibc returned the freed megabyte-sized request
/// buffers to the kernel and faulted them back in on the next Produce or Fetch (a third of
/// the encrypting proxy's CPU; `scripts/bench.sh`, README "Record encryption").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Query, verify, prove and export the tamper-evident audit log: on a stopped proxy's
    /// data directory, or on a running proxy through its admin API (`--admin URL`, or
    /// automatically with `--config` when a running proxy holds the data directory).
    Audit {
        /// The log's data directory (default: `audit.data_dir` of `--config`).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        /// Configuration file whose `audit.data_dir` (and, when a running proxy holds it,
        /// `admin.bind`) to use.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// A running proxy's admin API (`http://127.0.0.1:9190`): the commands are served by
        /// the proxy instead of reading a data directory.
        #[arg(long, global = true, conflicts_with = "data_dir")]
        admin: Option<String>,
        /// The admin API's bearer token file (default: `admin.token_file` of `--config`, else
        /// the token the proxy created in its `audit.data_dir`).
        #[arg(long, global = true, value_name = "FILE")]
        admin_token_file: Option<PathBuf>,
        #[command(subcommand)]
        command: portcullis_audit::cli::AuditCommand,
    },
    /// Manage the PLAIN/SCRAM credential store. A running proxy picks up changes within
    /// `auth.users_reload_ms`.
    Users {
        /// The credential store file (default: `auth.users_file` of `--config`).
        #[arg(long, global = true)]
        store: Option<PathBuf>,
        /// Configuration file whose `auth.users_file` to edit.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Encryption keys: `init` creates the root key; `list`, `status`, `rotate`, `rewrap`,
    /// `retire` and `shred` run on a running proxy (`--admin URL`, audited there) or offline
    /// on the registry `--config` names (a stopped proxy's key store, or the fleet's
    /// registry topic).
    Keys {
        /// Configuration file (its `[encryption]`).
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        /// A running proxy's admin API (`http://127.0.0.1:9190`).
        #[arg(long, global = true)]
        admin: Option<String>,
        /// The admin API's bearer token file (default: `admin.token_file` of `--config`,
        /// else the token the proxy created in its `audit.data_dir`).
        #[arg(long, global = true, value_name = "FILE")]
        admin_token_file: Option<PathBuf>,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Print records of an encrypted topic in clear, read from the cluster or from a file of
    /// record batches (a broker's `.log` segment), with the keys `--config` names: for
    /// recovery. One JSON line per record; exit status 1 if any record could not be read.
    Decrypt {
        /// Configuration file (its `[encryption]` and `[upstream]`).
        #[arg(long, short)]
        config: PathBuf,
        /// The topic the records belong to (bound into every ciphertext).
        #[arg(long)]
        topic: String,
        /// Partition to read from the cluster.
        #[arg(long, default_value_t = 0)]
        partition: i32,
        /// First offset to read (default: the earliest).
        #[arg(long, default_value_t = -2)]
        from: i64,
        /// Records to print at most.
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// Read record batches from this file instead of the cluster.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Validate policy files offline, or explain a decision. A running proxy reloads
    /// edited policies within `authorization.reload_ms` (or on SIGHUP).
    Policy {
        /// Configuration file whose `authorization.policy_dir` is the default directory.
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: portcullis_policy::PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the root key: the local key file (back it up: without it nothing encrypted
    /// under it can be read), or the key on the PKCS#11 token; for AWS KMS, check the key.
    Init {
        /// A local key file to create (default: the root key of `--config`).
        #[arg(long, value_name = "FILE")]
        root_key: Option<PathBuf>,
    },
    /// Every topic with keys: state, KEK versions, DEK counts.
    List,
    /// One topic's keys (ids and versions, never key material).
    Status {
        /// The topic.
        #[arg(long)]
        topic: String,
    },
    /// New KEK version, every DEK rewrapped under it, the old versions destroyed.
    Rotate {
        /// The topic.
        #[arg(long)]
        topic: String,
    },
    /// DEKs not under the current KEK version rewrapped; unused versions destroyed.
    Rewrap {
        /// The topic.
        #[arg(long)]
        topic: String,
    },
    /// Retire the topic's active DEKs: new records get a new DEK.
    Retire {
        /// The topic.
        #[arg(long)]
        topic: String,
    },
    /// Crypto-shred the topic: destroy its DEKs and KEKs; its records become unreadable.
    Shred {
        /// The topic.
        #[arg(long)]
        topic: String,
    },
}

impl KeysCommand {
    fn into_key_command(self) -> Option<portcullis::encryption::key_admin::KeyCommand> {
        use portcullis::encryption::key_admin::KeyCommand as K;
        Some(match self {
            KeysCommand::Init { .. } => return None,
            KeysCommand::List => K::List,
            KeysCommand::Status { topic } => K::Status { topic },
            KeysCommand::Rotate { topic } => K::Rotate { topic },
            KeysCommand::Rewrap { topic } => K::Rewrap { topic },
            KeysCommand::Retire { topic } => K::Retire { topic },
            KeysCommand::Shred { topic } => K::Shred { topic },
        })
    }
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
        Command::Users {
            store,
            config,
            command,
        } => users(store, config, command),
        Command::Audit {
            data_dir,
            config,
            admin,
            admin_token_file,
            command,
        } => audit(data_dir, config, admin, admin_token_file, command),
        Command::Policy { config, command } => policy(config, command),
        Command::Keys {
            config,
            admin,
            admin_token_file,
            command,
        } => keys(config, admin, admin_token_file, command),
        Command::Decrypt {
            config,
            topic,
            partition,
            from,
            max,
            file,
        } => decrypt(&config, &topic, partition, from, max, file),
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

/// `portcullis audit ...` on the data directory named directly or by the configuration, or
/// through a running proxy's admin API: named with `--admin`, or taken from the
/// configuration's `admin.bind` when that proxy holds the data directory's lock.
fn audit(
    data_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    admin: Option<String>,
    admin_token_file: Option<PathBuf>,
    mut command: portcullis_audit::cli::AuditCommand,
) -> ExitCode {
    if let Err(e) = read_anchor_topic(config.as_deref(), &mut command) {
        eprintln!("portcullis audit: {e}");
        return ExitCode::from(2);
    }
    let token = match admin_token(admin_token_file, config.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("portcullis audit: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    let finish =
        |result: Result<portcullis_audit::cli::ExitCodeLike, portcullis_audit::cli::CliError>| {
            match result {
                Ok(code) => ExitCode::from(u8::try_from(code.code()).unwrap_or(1)),
                Err(e) => {
                    eprintln!("portcullis audit: {e}");
                    ExitCode::from(2)
                }
            }
        };
    if command.is_offline() {
        return finish(portcullis_audit::cli::run(Path::new(""), command, &mut out));
    }
    if let Some(url) = admin {
        return finish(portcullis_audit::remote::run_remote(
            &url, token, command, &mut out,
        ));
    }
    let (dir, admin_of_config) = match (data_dir, config) {
        (Some(dir), _) => (dir, None),
        (None, Some(config)) => match Config::load_unvalidated(&config) {
            Ok(c) => {
                let admin = c.admin.enabled.then(|| format!("http://{}", c.admin.bind));
                (c.audit.data_dir, admin)
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => {
            eprintln!("name the audit log with --data-dir DIR, --config FILE or --admin URL");
            return ExitCode::from(2);
        }
    };
    match portcullis_audit::cli::run(&dir, command.clone(), &mut out) {
        Err(e) if e.is_locked() => match admin_of_config {
            Some(url) => {
                eprintln!(
                    "portcullis audit: {} is in use by a running proxy; asking it at {url}",
                    dir.display()
                );
                finish(portcullis_audit::remote::run_remote(
                    &url, token, command, &mut out,
                ))
            }
            None => finish(Err(e)),
        },
        result => finish(result),
    }
}

/// The admin API token for `portcullis audit` against a running proxy: `--admin-token-file`,
/// else the configuration's `admin.token_file`, else the token the proxy created in its
/// `audit.data_dir` (if it has started once), else none.
fn admin_token(file: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<Option<String>> {
    let file = match (file, config) {
        (Some(file), _) => Some(file),
        (None, Some(config)) => {
            let config = Config::load_unvalidated(config)?;
            let path = config.admin_token_path();
            (config.admin.token_file.is_some() || path.exists()).then_some(path)
        }
        (None, None) => None,
    };
    let Some(file) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| anyhow::anyhow!("admin token file {}: {e}", file.display()))?;
    Ok(Some(text.trim().to_string()))
}

/// For `audit verify --anchor-topic TOPIC`: reads the topic from the upstream cluster of
/// `--config` (with the proxy's upstream TLS and SASL settings) into the command.
fn read_anchor_topic(
    config: Option<&Path>,
    command: &mut portcullis_audit::cli::AuditCommand,
) -> anyhow::Result<()> {
    let portcullis_audit::cli::AuditCommand::Verify {
        anchor_topic: Some(topic),
        shared_anchor,
        ..
    } = command
    else {
        return Ok(());
    };
    let config = config.ok_or_else(|| {
        anyhow::anyhow!("--anchor-topic needs --config FILE (the proxy's upstream settings)")
    })?;
    let config = Config::load_unvalidated(config)?;
    portcullis::net::tls::install_crypto_provider();
    let connector = portcullis::net::upstream::Connector::new(&config.upstream)?;
    let timeout = Duration::from_secs(30);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let notes = runtime
        .block_on(portcullis::audit::kafka_anchor::read_topic(
            &connector, topic, timeout,
        ))
        .map_err(|e| anyhow::anyhow!("anchor topic {topic}: {e}"))?;
    *shared_anchor = Some(portcullis_audit::anchor::SharedAnchor {
        source: format!("anchor topic {topic}"),
        notes: notes
            .into_iter()
            .map(|n| (format!("offset {}", n.offset), n.note))
            .collect(),
    });
    Ok(())
}

/// `portcullis keys ...`: `init` here; the other commands through `--admin` or offline on
/// the registry `--config` names. Prints the command's JSON answer.
fn keys(
    config: Option<PathBuf>,
    admin: Option<String>,
    admin_token_file: Option<PathBuf>,
    command: KeysCommand,
) -> ExitCode {
    use portcullis::cli::keys::{
        init_configured_root_key, init_root_key, run_offline, run_remote, KeysError,
    };
    let result: Result<String, KeysError> = match command {
        KeysCommand::Init {
            root_key: Some(path),
        } => init_root_key(&path).map(|id| {
            format!(
                "wrote root key {} (id {id}); back it up: records encrypted under it cannot be read without it",
                path.display()
            )
        }),
        KeysCommand::Init { root_key: None } => match config.as_deref() {
            Some(config) => init_configured_root_key(config),
            None => Err(KeysError::NothingNamed),
        },
        other => {
            let Some(command) = other.into_key_command() else {
                return ExitCode::FAILURE;
            };
            let answer = match (admin, config) {
                (Some(url), config) => admin_token(admin_token_file, config.as_deref())
                    .map_err(|e| KeysError::Remote(e.to_string()))
                    .and_then(|token| run_remote(&url, token, &command)),
                (None, Some(config)) => run_offline(&config, &command),
                (None, None) => Err(KeysError::Open(
                    "name the proxy with --admin URL or the registry with --config FILE".into(),
                )),
            };
            answer.map(|a| serde_json::to_string_pretty(&a).unwrap_or_default())
        }
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portcullis keys: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `portcullis decrypt`: records in clear, one JSON line each.
fn decrypt(
    config: &Path,
    topic: &str,
    partition: i32,
    from: i64,
    max: usize,
    file: Option<PathBuf>,
) -> ExitCode {
    use portcullis::cli::decrypt::{run, Source};
    let source = match file {
        Some(path) => Source::File(path),
        None => Source::Cluster {
            partition,
            from,
            max,
        },
    };
    match run(config, topic, &source, &mut std::io::stdout()) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("portcullis decrypt: {failed} record(s) could not be decrypted");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("portcullis decrypt: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `portcullis users ...` on the store named directly or by the configuration.
fn users(store: Option<PathBuf>, config: Option<PathBuf>, command: UsersCommand) -> ExitCode {
    let path = match (store, config) {
        (Some(store), _) => store,
        (None, Some(config)) => match Config::load_unvalidated(&config) {
            Ok(c) => match c.auth.users_file {
                Some(path) => path,
                None => {
                    eprintln!("{}: auth.users_file is not set", config.display());
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            eprintln!("name the credential store with --store FILE or --config FILE");
            return ExitCode::FAILURE;
        }
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    match portcullis_auth::users::run(&path, command, &mut input, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis users: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `portcullis policy`: the directory is the command's own argument, else
/// `authorization.policy_dir` of `--config`, else `policies/`.
fn policy(config: Option<PathBuf>, command: portcullis_policy::PolicyCommand) -> ExitCode {
    let default_dir = match config {
        Some(config) => match Config::load_unvalidated(&config) {
            Ok(c) => match c.authorization {
                Some(a) => a.policy_dir,
                None => {
                    eprintln!("{}: [authorization] is not configured", config.display());
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => PathBuf::from("policies"),
    };
    let mut out = std::io::stdout();
    match portcullis_policy::run(command, &default_dir, &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("portcullis policy: {e}");
            ExitCode::from(2)
        }
    }
}

/// `portcullis check`: the configuration (credential store, token and certificate-mapping
/// settings included), then the TLS material it names (parsed, and the key checked against
/// the certificate) and the upstream credentials, each problem with its key.
fn check(path: &std::path::Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    portcullis::net::tls::install_crypto_provider();
    let mut problems = Vec::new();
    if let Some(tls) = &config.listener.tls {
        let client_certs = portcullis::server::client_cert_policy(&config.listener.auth);
        if let Err(e) =
            portcullis::net::tls::ServerTls::load_with_client_certs(tls, client_certs.as_ref())
        {
            problems.push(format!("listener.tls: {e}"));
        }
    }
    if let Some(sasl) = &config.upstream.sasl {
        if let Err(e) = portcullis::net::upstream_sasl::UpstreamCredentials::from_config(sasl) {
            problems.push(format!("{e:#}"));
        }
    }
    if let Some(tls) = &config.upstream.tls {
        if let Err(e) = portcullis::net::tls::upstream_connector(tls) {
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
