//! The credential store: users, their roles, and salted SCRAM credentials, in a TOML file.
//!
//! PLAIN and SCRAM clients are checked against this store. It holds nothing reversible:
//! for each hash it keeps only what RFC 5802 calls the server's credential (salt,
//! iteration count, `StoredKey`, `ServerKey`), from which neither the password nor a
//! working client proof can be recovered. PLAIN logins are verified by deriving `StoredKey`
//! from the offered password and comparing it in constant time.
//!
//! The file is edited with `portcullis users ...` ([`crate::users`]) and reloaded by the
//! running proxy ([`SharedUserStore`]), which keeps the last good store when the file
//! becomes invalid.
//!
//! # File format
//!
//! ```toml
//! # Portcullis credential store. Edit with `portcullis users`.
//! version = 1
//!
//! [[users]]
//! name = "alice"
//! roles = ["admin", "producer"]
//!
//! [users.scram-sha-256]
//! salt = "base64 of 16..=1024 random bytes (32 when generated)"
//! iterations = 8192
//! stored_key = "base64 of 32 bytes"
//! server_key = "base64 of 32 bytes"
//!
//! [users.scram-sha-512]
//! salt = "..."
//! iterations = 8192
//! stored_key = "base64 of 64 bytes"
//! server_key = "base64 of 64 bytes"
//! ```
//!
//! Rules, all checked on load (errors name the user and the field, never key material):
//!
//! - `version` is optional and must be `1` when present; `users` is optional.
//! - `name` and every role match `[A-Za-z0-9._@-]{1,255}` (nothing SCRAM would have to
//!   escape, nothing a principal string could be confused by); names are unique.
//! - `roles` is optional (no roles); a role appears once.
//! - each user has at least one of `scram-sha-256` and `scram-sha-512`. A user without the
//!   credential of a SCRAM variant cannot log in with that variant; PLAIN uses the
//!   SCRAM-SHA-256 credential when present, otherwise the SCRAM-SHA-512 one.
//! - `iterations` is within [`MIN_ITERATIONS`]`..=`[`MAX_ITERATIONS`]; keys have the length
//!   of the hash output.
//! - any key not listed above is an error (a typo must not silently drop a credential).
//!
//! The file is written atomically (temporary file with mode 0600 in the same directory,
//! fsync, rename), so a reader sees either the old or the new store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::sasl::Mechanism;

mod atomic_write;
mod credential;
mod file_format;
mod password;
mod watch;

pub use credential::ScramCredential;
pub use password::Password;
pub use watch::{SharedUserStore, StoreChange};

/// The smallest PBKDF2 iteration count accepted anywhere (RFC 7677's minimum, Kafka's too).
pub const MIN_ITERATIONS: u32 = 4096;
/// The largest iteration count accepted: more would let a file (or an upstream server) make
/// each login burn seconds of CPU.
pub const MAX_ITERATIONS: u32 = 1_000_000;
/// The iteration count used when none is given.
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// The salt length of generated credentials, in bytes.
pub const SALT_LEN: usize = 32;
/// The shortest salt accepted from a file, in bytes.
pub const MIN_SALT_LEN: usize = 16;
/// The longest user or role name.
pub const MAX_NAME_LEN: usize = 255;

/// Users and their salted credentials.
///
/// `Debug` lists user names, roles and credential parameters, never keys.
#[derive(Default, Clone)]
pub struct UserStore {
    users: BTreeMap<String, UserRecord>,
    /// The most common iteration count of each SCRAM hash, computed on first use and reset by
    /// every change: what unknown users are shown, so they do not stand out.
    typical_iterations: OnceLock<[u32; 2]>,
}

impl PartialEq for UserStore {
    fn eq(&self, other: &Self) -> bool {
        self.users == other.users
    }
}

impl Eq for UserStore {}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("users", &self.users)
            .finish()
    }
}

/// One user: name, roles, and a SCRAM credential per hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    name: String,
    roles: Vec<String>,
    scram_sha256: Option<ScramCredential>,
    scram_sha512: Option<ScramCredential>,
}

impl UserStore {
    /// A store without users.
    pub fn empty() -> UserStore {
        UserStore::default()
    }

    /// Reads and validates the store file at `path`.
    pub fn load(path: &Path) -> Result<UserStore, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        UserStore::parse(&text).map_err(|e| e.with_path(path))
    }

    /// Parses and validates the contents of a store file.
    pub fn parse(text: &str) -> Result<UserStore, StoreError> {
        file_format::parse(text)
    }

    /// The file contents for this store (the format in the module docs).
    pub fn to_toml(&self) -> String {
        file_format::render(self)
    }

    /// Writes the store to `path` atomically, readable and writable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        atomic_write::write_private(path, self.to_toml().as_bytes()).map_err(|source| {
            StoreError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// The user called `name`.
    pub fn lookup(&self, name: &str) -> Option<&UserRecord> {
        self.users.get(name)
    }

    /// Whether a user called `name` exists (open connections use this to notice removals).
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// User names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.users.keys().map(String::as_str)
    }

    /// Users in name order.
    pub fn users(&self) -> impl Iterator<Item = &UserRecord> + '_ {
        self.users.values()
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the store has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds a user; an existing user of that name is an error.
    pub fn add(&mut self, record: UserRecord) -> Result<(), StoreError> {
        if self.users.contains_key(&record.name) {
            return Err(StoreError::UserExists(record.name));
        }
        self.typical_iterations = OnceLock::new();
        self.users.insert(record.name.clone(), record);
        Ok(())
    }

    /// Replaces the user of the same name; a missing user is an error.
    pub fn replace(&mut self, record: UserRecord) -> Result<UserRecord, StoreError> {
        self.typical_iterations = OnceLock::new();
        match self.users.get_mut(&record.name) {
            Some(existing) => Ok(std::mem::replace(existing, record)),
            None => Err(StoreError::NoSuchUser(record.name)),
        }
    }

    /// Removes and returns the user called `name`; a missing user is an error.
    pub fn remove(&mut self, name: &str) -> Result<UserRecord, StoreError> {
        self.typical_iterations = OnceLock::new();
        self.users
            .remove(name)
            .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
    }

    /// The most common iteration count among the users' credentials for a SCRAM mechanism
    /// ([`DEFAULT_ITERATIONS`] when there are none): the count shown for unknown users.
    pub(crate) fn typical_iterations(&self, mechanism: Mechanism) -> u32 {
        let [sha256, sha512] = *self.typical_iterations.get_or_init(|| {
            [Mechanism::ScramSha256, Mechanism::ScramSha512].map(|m| {
                let mut counts: HashMap<u32, usize> = HashMap::new();
                for user in self.users.values() {
                    if let Some(c) = user.credential(m) {
                        *counts.entry(c.iterations()).or_default() += 1;
                    }
                }
                counts
                    .into_iter()
                    .max_by_key(|&(iterations, n)| (n, iterations))
                    .map_or(DEFAULT_ITERATIONS, |(iterations, _)| iterations)
            })
        });
        match mechanism {
            Mechanism::ScramSha512 => sha512,
            _ => sha256,
        }
    }
}

impl UserRecord {
    /// A user with SCRAM-SHA-256 and SCRAM-SHA-512 credentials derived from `password`
    /// (fresh random salts, `iterations` rounds).
    pub fn with_password(
        name: &str,
        roles: Vec<String>,
        password: &Password,
        iterations: u32,
    ) -> Result<UserRecord, StoreError> {
        let mut record = UserRecord::from_credentials(name, roles, None, None, true)?;
        record.set_password(password, iterations)?;
        Ok(record)
    }

    /// A user from existing credentials (at least one is required).
    pub fn new(
        name: &str,
        roles: Vec<String>,
        scram_sha256: Option<ScramCredential>,
        scram_sha512: Option<ScramCredential>,
    ) -> Result<UserRecord, StoreError> {
        UserRecord::from_credentials(name, roles, scram_sha256, scram_sha512, false)
    }

    fn from_credentials(
        name: &str,
        roles: Vec<String>,
        scram_sha256: Option<ScramCredential>,
        scram_sha512: Option<ScramCredential>,
        credentials_follow: bool,
    ) -> Result<UserRecord, StoreError> {
        validate_name(name).map_err(|problem| StoreError::invalid_value("name", problem))?;
        validate_roles(&roles)?;
        for (credential, mechanism) in [
            (&scram_sha256, Mechanism::ScramSha256),
            (&scram_sha512, Mechanism::ScramSha512),
        ] {
            if let Some(c) = credential {
                if c.mechanism() != mechanism {
                    return Err(StoreError::invalid_value(
                        mechanism_key(mechanism),
                        format!("holds a {} credential", c.mechanism()),
                    ));
                }
            }
        }
        if !credentials_follow && scram_sha256.is_none() && scram_sha512.is_none() {
            return Err(StoreError::invalid_value(
                "scram-sha-256",
                "a user needs at least one of scram-sha-256 and scram-sha-512",
            ));
        }
        Ok(UserRecord {
            name: name.to_owned(),
            roles,
            scram_sha256,
            scram_sha512,
        })
    }

    /// Replaces both credentials with ones derived from `password` (fresh salts).
    pub fn set_password(&mut self, password: &Password, iterations: u32) -> Result<(), StoreError> {
        self.scram_sha256 = Some(ScramCredential::generate(
            Mechanism::ScramSha256,
            password,
            iterations,
        )?);
        self.scram_sha512 = Some(ScramCredential::generate(
            Mechanism::ScramSha512,
            password,
            iterations,
        )?);
        Ok(())
    }

    /// Replaces the roles (validated like names).
    pub fn set_roles(&mut self, roles: Vec<String>) -> Result<(), StoreError> {
        validate_roles(&roles)?;
        self.roles = roles;
        Ok(())
    }

    /// The user name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The credential for SCRAM-SHA-256 or SCRAM-SHA-512, if the user has one.
    pub fn credential(&self, mechanism: Mechanism) -> Option<&ScramCredential> {
        match mechanism {
            Mechanism::ScramSha256 => self.scram_sha256.as_ref(),
            Mechanism::ScramSha512 => self.scram_sha512.as_ref(),
            Mechanism::Plain | Mechanism::OAuthBearer => None,
        }
    }

    /// The credential PLAIN logins are checked against: SCRAM-SHA-256 if present, else
    /// SCRAM-SHA-512.
    pub fn plain_credential(&self) -> Option<&ScramCredential> {
        self.scram_sha256.as_ref().or(self.scram_sha512.as_ref())
    }
}

/// The TOML table key of a SCRAM variant's credential.
fn mechanism_key(mechanism: Mechanism) -> &'static str {
    match mechanism {
        Mechanism::ScramSha512 => "scram-sha-512",
        _ => "scram-sha-256",
    }
}

/// Checks a user or role name: `[A-Za-z0-9._@-]{1,255}`. The error says why (it repeats
/// nothing of the input but its length).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
    {
        return Err("may only contain A-Z a-z 0-9 . _ @ -".into());
    }
    Ok(())
}

fn validate_roles(roles: &[String]) -> Result<(), StoreError> {
    for (i, role) in roles.iter().enumerate() {
        validate_name(role)
            .map_err(|problem| StoreError::invalid_value(format!("roles[{i}]"), problem))?;
        if roles[..i].contains(role) {
            return Err(StoreError::invalid_value(
                format!("roles[{i}]"),
                format!("role {role:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Why the store could not be read, validated or written. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be read.
    #[error("cannot read user store {}: {source}", .path.display())]
    Read {
        /// The store file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write user store {}: {source}", .path.display())]
    Write {
        /// The store file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}not valid TOML (line {line}): {message}", describe_path(.path.as_deref()))]
    Syntax {
        /// The store file, when known.
        path: Option<PathBuf>,
        /// The 1-based line of the error.
        line: usize,
        /// The parser's message (the offending text is not quoted).
        message: String,
    },
    /// A value is missing, of the wrong type, or out of range.
    #[error(
        "{}{}{field}: {problem}",
        describe_path(.path.as_deref()),
        describe_user(.user.as_deref())
    )]
    Invalid {
        /// The store file, when known.
        path: Option<PathBuf>,
        /// The user the field belongs to (name, or `users[i]` when the name is unusable).
        user: Option<String>,
        /// The field (`scram-sha-256.iterations`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A user of that name already exists.
    #[error("user {0:?} already exists")]
    UserExists(String),
    /// No user of that name exists.
    #[error("no user named {0:?}")]
    NoSuchUser(String),
}

impl StoreError {
    pub(crate) fn invalid_value(field: impl Into<String>, problem: impl Into<String>) -> Self {
        StoreError::Invalid {
            path: None,
            user: None,
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn with_path(self, file: &Path) -> Self {
        match self {
            StoreError::Syntax { line, message, .. } => StoreError::Syntax {
                path: Some(file.to_path_buf()),
                line,
                message,
            },
            StoreError::Invalid {
                user,
                field,
                problem,
                ..
            } => StoreError::Invalid {
                path: Some(file.to_path_buf()),
                user,
                field,
                problem,
            },
            other => other,
        }
    }

    /// Sets the user (unless `user_label` is empty or a user is already set) and prefixes
    /// the field of an [`StoreError::Invalid`].
    fn within(self, user_label: &str, field_prefix: &str) -> Self {
        match self {
            StoreError::Invalid {
                path,
                user,
                field,
                problem,
            } => StoreError::Invalid {
                path,
                user: user.or_else(|| (!user_label.is_empty()).then(|| user_label.to_owned())),
                field: format!("{field_prefix}{field}"),
                problem,
            },
            other => other,
        }
    }
}

fn describe_path(path: Option<&Path>) -> String {
    match path {
        Some(p) => format!("user store {}: ", p.display()),
        None => "user store: ".to_owned(),
    }
}

fn describe_user(user: Option<&str>) -> String {
    match user {
        Some(u) => format!("user {u}: "),
        None => String::new(),
    }
}
