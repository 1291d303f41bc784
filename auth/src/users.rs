//! `portcullis users ...`: edits the credential store file.
//!
//! The logic behind the CLI lives here, apart from the binary, so every flow can be tested
//! with in-memory stdin and stdout. Each successful change rewrites the store atomically
//! ([`UserStore::save`]); the running proxy picks it up through its watcher.
//!
//! Passwords come from stdin (`--password-stdin`, one line) or are generated
//! (`--generate`, printed once); there is no interactive prompt and no password argument,
//! so passwords never land in shell history or process listings.

use std::io::{BufRead, Read, Write};
use std::path::Path;

use rand::distr::{Alphanumeric, SampleString};

use crate::store::{
    validate_name, Password, StoreError, UserRecord, UserStore, DEFAULT_ITERATIONS,
};

/// The length of a generated password, in characters (alphanumeric, about 190 bits).
pub const GENERATED_PASSWORD_LEN: usize = 32;

/// The longest password accepted on stdin, in bytes.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// `portcullis users` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum UsersCommand {
    /// Add a user with SCRAM-SHA-256 and SCRAM-SHA-512 credentials.
    Add {
        /// The user name (letters, digits and `._@-`, at most 255 characters).
        name: String,
        /// Where the password comes from.
        #[command(flatten)]
        password: PasswordSource,
        /// Comma-separated roles.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// PBKDF2 iterations (4096 or more).
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// List users and their roles (never credentials).
    List,
    /// Remove a user.
    Remove {
        /// The user name.
        name: String,
    },
    /// Set a new password for a user (new salts, same roles).
    Passwd {
        /// The user name.
        name: String,
        /// Where the password comes from.
        #[command(flatten)]
        password: PasswordSource,
        /// PBKDF2 iterations; default: keep the user's current count.
        #[arg(long)]
        iterations: Option<u32>,
    },
}

/// How a new password is obtained.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[group(multiple = false)]
pub struct PasswordSource {
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Generate a random password and print it once.
    #[arg(long)]
    pub generate: bool,
}

/// Why a `users` command failed. Never contains a password.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Reading, validating or writing the store failed (including "user exists" and
    /// "no such user").
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Neither `--password-stdin` nor `--generate` was given.
    #[error("choose where the password comes from: --password-stdin or --generate")]
    NoPasswordSource,
    /// The password read from stdin is empty.
    #[error("the password read from stdin is empty")]
    EmptyPassword,
    /// The password read from stdin is too long.
    #[error("the password read from stdin is longer than {MAX_PASSWORD_LEN} bytes")]
    PasswordTooLong,
    /// The user name is not valid.
    #[error("invalid user name: {0}")]
    InvalidName(String),
    /// Reading stdin or writing output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs one `users` command against the store file at `store_path`, reading a password
/// from `stdin` when asked to and writing human-readable output to `out`.
///
/// `add` creates the file when it does not exist; the other commands need it.
pub fn run(
    store_path: &Path,
    cmd: UsersCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), UsersError> {
    match cmd {
        UsersCommand::Add {
            name,
            password,
            roles,
            iterations,
        } => {
            validate_name(&name).map_err(UsersError::InvalidName)?;
            let mut store = if store_path.exists() {
                UserStore::load(store_path)?
            } else {
                UserStore::empty()
            };
            if store.contains(&name) {
                return Err(StoreError::UserExists(name).into());
            }
            let (secret, generated) = obtain_password(&password, stdin)?;
            let record = UserRecord::with_password(&name, roles, &secret, iterations)?;
            store.add(record)?;
            store.save(store_path)?;
            writeln!(out, "added user {name}")?;
            if generated {
                writeln!(
                    out,
                    "generated password (shown once): {}",
                    secret.expose_secret()
                )?;
            }
        }
        UsersCommand::List => {
            let store = UserStore::load(store_path)?;
            for user in store.users() {
                let roles = if user.roles().is_empty() {
                    "-".to_owned()
                } else {
                    user.roles().join(",")
                };
                writeln!(out, "{}\troles: {roles}", user.name())?;
            }
        }
        UsersCommand::Remove { name } => {
            let mut store = UserStore::load(store_path)?;
            store.remove(&name)?;
            store.save(store_path)?;
            writeln!(out, "removed user {name}")?;
        }
        UsersCommand::Passwd {
            name,
            password,
            iterations,
        } => {
            let mut store = UserStore::load(store_path)?;
            let mut record = store
                .lookup(&name)
                .cloned()
                .ok_or_else(|| StoreError::NoSuchUser(name.clone()))?;
            let (secret, generated) = obtain_password(&password, stdin)?;
            let iterations = iterations
                .or_else(|| record.plain_credential().map(|c| c.iterations()))
                .unwrap_or(DEFAULT_ITERATIONS);
            record.set_password(&secret, iterations)?;
            store.replace(record)?;
            store.save(store_path)?;
            writeln!(out, "changed the password of user {name}")?;
            if generated {
                writeln!(
                    out,
                    "generated password (shown once): {}",
                    secret.expose_secret()
                )?;
            }
        }
    }
    Ok(())
}

/// The new password and whether it was generated (and so must be shown).
fn obtain_password(
    source: &PasswordSource,
    stdin: &mut dyn BufRead,
) -> Result<(Password, bool), UsersError> {
    if source.generate {
        let password = Alphanumeric.sample_string(&mut rand::rng(), GENERATED_PASSWORD_LEN);
        return Ok((Password::new(password), true));
    }
    if !source.password_stdin {
        return Err(UsersError::NoPasswordSource);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    Read::take(&mut *stdin, MAX_PASSWORD_LEN as u64 + 2).read_line(&mut line)?;
    let password = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if password.len() > MAX_PASSWORD_LEN {
        return Err(UsersError::PasswordTooLong);
    }
    if password.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    Ok((Password::new(password), false))
}
