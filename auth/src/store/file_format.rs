//! Reading and writing the store file (format in the [`crate::store`] docs).
//!
//! The TOML is walked by hand rather than deserialized with serde: serde's messages quote
//! offending values, and the parser's quote the offending line, while errors about this file
//! must name the user and field without repeating key material.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use toml::{Table, Value};

use super::{validate_name, ScramCredential, StoreError, UserRecord, UserStore};
use crate::sasl::Mechanism;

const HEADER: &str = "# Portcullis credential store. Edit with `portcullis users`.\n\
# Holds salted SCRAM credentials only (no passwords). Keep it private (mode 0600).\n";

pub(super) fn parse(text: &str) -> Result<UserStore, StoreError> {
    let table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| StoreError::Syntax {
            path: None,
            line: e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0),
            message: e.message().trim().to_owned(),
        })?;
    let mut users = None;
    for (key, value) in &table {
        match key.as_str() {
            "version" => {
                if value.as_integer() != Some(1) {
                    return Err(StoreError::invalid_value("version", "must be 1"));
                }
            }
            "users" => users = Some(value),
            other => return Err(unknown_key(other)),
        }
    }
    let mut store = UserStore::empty();
    let Some(users) = users else {
        return Ok(store);
    };
    let entries = users.as_array().ok_or_else(|| {
        StoreError::invalid_value("users", "must be an array of tables ([[users]])")
    })?;
    for (i, entry) in entries.iter().enumerate() {
        let index_label = format!("users[{i}]");
        let Some(entry) = entry.as_table() else {
            return Err(StoreError::invalid_value(index_label, "must be a table"));
        };
        // Name errors by the user's name when it is usable, else by position.
        let label = match entry.get("name").and_then(Value::as_str) {
            Some(name) if validate_name(name).is_ok() => name.to_owned(),
            _ => index_label,
        };
        let record = parse_user(entry).map_err(|e| e.within(&label, ""))?;
        store.add(record).map_err(|e| match e {
            StoreError::UserExists(name) => StoreError::Invalid {
                path: None,
                user: Some(name),
                field: "name".into(),
                problem: "is listed twice".into(),
            },
            other => other,
        })?;
    }
    Ok(store)
}

fn parse_user(entry: &Table) -> Result<UserRecord, StoreError> {
    let mut name = None;
    let mut roles = Vec::new();
    let mut sha256 = None;
    let mut sha512 = None;
    for (key, value) in entry {
        match key.as_str() {
            "name" => {
                name = Some(
                    value
                        .as_str()
                        .ok_or_else(|| StoreError::invalid_value("name", "must be a string"))?,
                )
            }
            "roles" => {
                let list = value.as_array().ok_or_else(|| {
                    StoreError::invalid_value("roles", "must be a list of strings")
                })?;
                for (i, role) in list.iter().enumerate() {
                    let role = role.as_str().ok_or_else(|| {
                        StoreError::invalid_value(format!("roles[{i}]"), "must be a string")
                    })?;
                    roles.push(role.to_owned());
                }
            }
            "scram-sha-256" => {
                sha256 = Some(
                    parse_credential(Mechanism::ScramSha256, value)
                        .map_err(|e| e.within("", "scram-sha-256."))?,
                )
            }
            "scram-sha-512" => {
                sha512 = Some(
                    parse_credential(Mechanism::ScramSha512, value)
                        .map_err(|e| e.within("", "scram-sha-512."))?,
                )
            }
            other => return Err(unknown_key(other)),
        }
    }
    let name = name.ok_or_else(|| StoreError::invalid_value("name", "is missing"))?;
    UserRecord::new(name, roles, sha256, sha512)
}

fn parse_credential(mechanism: Mechanism, value: &Value) -> Result<ScramCredential, StoreError> {
    let table = value
        .as_table()
        .ok_or_else(|| StoreError::invalid_value("", "must be a table"))?;
    let mut salt = None;
    let mut iterations = None;
    let mut stored_key = None;
    let mut server_key = None;
    for (key, value) in table {
        match key.as_str() {
            "salt" => salt = Some(base64_field("salt", value)?),
            "stored_key" => stored_key = Some(base64_field("stored_key", value)?),
            "server_key" => server_key = Some(base64_field("server_key", value)?),
            "iterations" => {
                let n = value
                    .as_integer()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        StoreError::invalid_value("iterations", "must be a positive integer")
                    })?;
                iterations = Some(n);
            }
            other => return Err(unknown_key(other)),
        }
    }
    let missing = |field: &str| StoreError::invalid_value(field, "is missing");
    ScramCredential::from_parts(
        mechanism,
        salt.ok_or_else(|| missing("salt"))?,
        iterations.ok_or_else(|| missing("iterations"))?,
        stored_key.ok_or_else(|| missing("stored_key"))?,
        server_key.ok_or_else(|| missing("server_key"))?,
    )
}

fn base64_field(field: &str, value: &Value) -> Result<Vec<u8>, StoreError> {
    let text = value
        .as_str()
        .ok_or_else(|| StoreError::invalid_value(field, "must be a base64 string"))?;
    STANDARD
        .decode(text)
        .map_err(|_| StoreError::invalid_value(field, "is not valid base64"))
}

fn unknown_key(key: &str) -> StoreError {
    // Key names are short identifiers; quote at most a prefix of an absurd one.
    let shown: String = key.chars().take(64).collect();
    StoreError::invalid_value(shown, "unknown key")
}

pub(super) fn render(store: &UserStore) -> String {
    let mut out = String::from(HEADER);
    out.push_str("version = 1\n");
    for user in store.users() {
        // Names and roles are restricted to [A-Za-z0-9._@-] and base64 uses [A-Za-z0-9+/=],
        // so none of them needs TOML escaping.
        out.push_str("\n[[users]]\n");
        out.push_str(&format!("name = \"{}\"\n", user.name()));
        let roles: Vec<String> = user.roles().iter().map(|r| format!("\"{r}\"")).collect();
        out.push_str(&format!("roles = [{}]\n", roles.join(", ")));
        for (key, mechanism) in [
            ("scram-sha-256", Mechanism::ScramSha256),
            ("scram-sha-512", Mechanism::ScramSha512),
        ] {
            if let Some(c) = user.credential(mechanism) {
                out.push_str(&format!("\n[users.{key}]\n"));
                out.push_str(&format!("salt = \"{}\"\n", STANDARD.encode(c.salt())));
                out.push_str(&format!("iterations = {}\n", c.iterations()));
                out.push_str(&format!(
                    "stored_key = \"{}\"\n",
                    STANDARD.encode(c.stored_key())
                ));
                out.push_str(&format!(
                    "server_key = \"{}\"\n",
                    STANDARD.encode(c.server_key())
                ));
            }
        }
    }
    out
}
