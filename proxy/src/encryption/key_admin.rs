//! The operator's key commands (`portcullis keys list|status|rotate|rewrap|retire|shred`),
//! run on a keyring: the running proxy's (through the admin API) or one opened offline on a
//! stopped proxy's registry (or on the fleet's registry topic).
//!
//! One implementation for both ways in, so the admin API and the offline command answer the
//! same JSON and change keys in the same order. Each command that changes keys is audited
//! ([`audit_event`], category `key`, durable): by the proxy on the admin API, by the command
//! itself in the stopped proxy's audit log offline.

use portcullis_audit::{Category, Event, Outcome};
use portcullis_crypto::registry::{DekState, TopicState};
use portcullis_crypto::{CryptoError, Keyring};
use serde_json::{json, Value};

/// One key command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCommand {
    /// Every topic with keys: state, current KEK version, KEK versions and DEK counts.
    List,
    /// One topic's keys in detail (ids and versions, never key material).
    Status {
        /// The topic.
        topic: String,
    },
    /// New KEK version, every DEK rewrapped under it, older versions destroyed.
    Rotate {
        /// The topic.
        topic: String,
    },
    /// DEKs not under the current KEK version rewrapped, unused versions destroyed.
    Rewrap {
        /// The topic.
        topic: String,
    },
    /// The topic's active DEKs retired: new records get a new DEK.
    Retire {
        /// The topic.
        topic: String,
    },
    /// Crypto-shredding: every DEK and KEK of the topic destroyed; its records unreadable.
    Shred {
        /// The topic.
        topic: String,
    },
}

impl KeyCommand {
    /// The command's name (`rotate`, …), as in the CLI and the admin API path.
    pub fn name(&self) -> &'static str {
        match self {
            KeyCommand::List => "list",
            KeyCommand::Status { .. } => "status",
            KeyCommand::Rotate { .. } => "rotate",
            KeyCommand::Rewrap { .. } => "rewrap",
            KeyCommand::Retire { .. } => "retire",
            KeyCommand::Shred { .. } => "shred",
        }
    }

    /// The topic it acts on (`None` for `list`).
    pub fn topic(&self) -> Option<&str> {
        match self {
            KeyCommand::List => None,
            KeyCommand::Status { topic }
            | KeyCommand::Rotate { topic }
            | KeyCommand::Rewrap { topic }
            | KeyCommand::Retire { topic }
            | KeyCommand::Shred { topic } => Some(topic),
        }
    }

    /// Whether it changes keys (and so needs the admin token and an audit event).
    pub fn mutates(&self) -> bool {
        !matches!(self, KeyCommand::List | KeyCommand::Status { .. })
    }

    /// The command named `name` on `topic`.
    ///
    /// # Errors
    ///
    /// A message for an unknown name or a missing topic.
    pub fn parse(name: &str, topic: Option<String>) -> Result<KeyCommand, String> {
        let need = |topic: Option<String>| {
            topic.ok_or_else(|| format!("keys {name} needs a topic (--topic NAME)"))
        };
        Ok(match name {
            "list" => KeyCommand::List,
            "status" => KeyCommand::Status {
                topic: need(topic)?,
            },
            "rotate" => KeyCommand::Rotate {
                topic: need(topic)?,
            },
            "rewrap" => KeyCommand::Rewrap {
                topic: need(topic)?,
            },
            "retire" => KeyCommand::Retire {
                topic: need(topic)?,
            },
            "shred" => KeyCommand::Shred {
                topic: need(topic)?,
            },
            other => return Err(format!("unknown key command {other:?}")),
        })
    }
}

/// The audit event of a key command: action `key.<command>`, the topic as resource, `phase`
/// (`requested` before anything changes, `done` with the outcome) and who ran it
/// (`admin-api`, or `cli` offline).
pub fn audit_event(command: &KeyCommand, outcome: Outcome, phase: &str, by: &str) -> Event {
    let mut event = Event::new(Category::Key, format!("key.{}", command.name()), outcome)
        .principal(by)
        .detail("phase", phase.to_owned());
    if let Some(topic) = command.topic() {
        event = event.resource("topic", topic);
    }
    event
}

/// Runs `command` on `keyring` (blocking: registry and root-key provider I/O) and returns
/// what it found or did, as JSON.
///
/// # Errors
///
/// The keyring's [`CryptoError`] (unknown topic, shredded topic, registry or provider
/// failure). A failed rotation or shred leaves every key readable or destroyed as the crypto
/// crate's write order guarantees; running the command again completes it.
pub fn run(keyring: &Keyring, command: &KeyCommand) -> Result<Value, CryptoError> {
    let answer = match command {
        KeyCommand::List => list(keyring)?,
        KeyCommand::Status { topic } => status(keyring, topic)?,
        KeyCommand::Rotate { topic } => {
            let report = keyring.rotate_and_rewrap(topic)?;
            json!({
                "topic": topic,
                "new_kek_version": report.new_version,
                "rewrapped_deks": report.rewrapped,
                "destroyed_kek_versions": report.destroyed,
            })
        }
        KeyCommand::Rewrap { topic } => {
            let rewrapped = keyring.rewrap_deks(topic)?;
            let destroyed = keyring.destroy_unused_keks(topic)?;
            json!({
                "topic": topic,
                "rewrapped_deks": rewrapped,
                "destroyed_kek_versions": destroyed,
            })
        }
        KeyCommand::Retire { topic } => {
            let mut retired = Vec::new();
            for dek in keyring.registry().deks(topic)? {
                if dek.state == DekState::Active {
                    keyring.retire_dek(topic, dek.id)?;
                    retired.push(dek.id.to_hex());
                }
            }
            keyring.refresh_topic(topic)?;
            json!({ "topic": topic, "retired_deks": retired })
        }
        KeyCommand::Shred { topic } => {
            let (deks, keks) = keyring.shred_topic(topic)?;
            json!({ "topic": topic, "destroyed_deks": deks, "destroyed_kek_versions": keks })
        }
    };
    Ok(answer)
}

fn list(keyring: &Keyring) -> Result<Value, CryptoError> {
    let registry = keyring.registry();
    let mut topics = Vec::new();
    for topic in registry.topic_names()? {
        topics.push(summary(keyring, &topic)?);
    }
    Ok(json!({ "topics": topics }))
}

fn summary(keyring: &Keyring, topic: &str) -> Result<Value, CryptoError> {
    let registry = keyring.registry();
    let record = registry.topic(topic)?;
    let keks: Vec<u32> = registry.keks(topic)?.iter().map(|k| k.version).collect();
    let deks = registry.deks(topic)?;
    let active = deks.iter().filter(|d| d.state == DekState::Active).count();
    Ok(json!({
        "topic": topic,
        "state": match record.as_ref().map(|r| r.state) {
            Some(TopicState::Active) => "active",
            Some(TopicState::Shredded) => "shredded",
            None => "none",
        },
        "current_kek_version": record.map(|r| r.current_kek_version),
        "kek_versions": keks,
        "deks": deks.len(),
        "active_deks": active,
    }))
}

fn status(keyring: &Keyring, topic: &str) -> Result<Value, CryptoError> {
    let mut answer = summary(keyring, topic)?;
    let deks: Vec<Value> = keyring
        .registry()
        .deks(topic)?
        .iter()
        .map(|d| {
            json!({
                "id": d.id.to_hex(),
                "kek_version": d.kek_version,
                "state": match d.state { DekState::Active => "active", DekState::Retired => "retired" },
                "created_at": d.created_at,
            })
        })
        .collect();
    if let Some(map) = answer.as_object_mut() {
        map.insert("dek_list".into(), Value::Array(deks));
        map.insert(
            "encrypting_with".into(),
            json!(keyring.active_dek_id(topic).map(|d| d.to_hex())),
        );
    }
    Ok(answer)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn keyring() -> Keyring {
        let root = portcullis_crypto::LocalKeyFile::from_key(
            &portcullis_crypto::SecretKey::from_bytes([7; 32]),
        )
        .unwrap();
        Keyring::new(
            Arc::new(root),
            Arc::new(portcullis_crypto::MemoryStore::new()),
            portcullis_crypto::DekLimits::default(),
        )
    }

    #[test]
    fn commands_parse_and_need_topics() {
        assert_eq!(KeyCommand::parse("list", None).unwrap(), KeyCommand::List);
        assert!(KeyCommand::parse("rotate", None)
            .unwrap_err()
            .contains("--topic"));
        assert!(KeyCommand::parse("explode", Some("t".into())).is_err());
        assert!(KeyCommand::parse("shred", Some("t".into()))
            .unwrap()
            .mutates());
        assert!(!KeyCommand::parse("status", Some("t".into()))
            .unwrap()
            .mutates());
    }

    #[test]
    fn rotate_retire_and_shred_report_what_they_did() {
        let ring = keyring();
        let sealed = ring.encrypt_value("orders", b"x").unwrap();
        ring.encrypt_value("audit.trail", b"y").unwrap();
        let listed = run(&ring, &KeyCommand::List).unwrap();
        assert_eq!(listed["topics"].as_array().unwrap().len(), 2, "{listed}");

        let rotated = run(
            &ring,
            &KeyCommand::Rotate {
                topic: "orders".into(),
            },
        )
        .unwrap();
        assert_eq!(rotated["new_kek_version"], 2, "{rotated}");
        assert_eq!(rotated["destroyed_kek_versions"], json!([1]), "{rotated}");
        let status = run(
            &ring,
            &KeyCommand::Status {
                topic: "orders".into(),
            },
        )
        .unwrap();
        assert_eq!(status["kek_versions"], json!([2]), "{status}");
        assert_eq!(ring.decrypt_value("orders", &sealed).unwrap(), b"x");

        let retired = run(
            &ring,
            &KeyCommand::Retire {
                topic: "orders".into(),
            },
        )
        .unwrap();
        assert_eq!(
            retired["retired_deks"].as_array().unwrap().len(),
            1,
            "{retired}"
        );
        let again = ring.encrypt_value("orders", b"z").unwrap();
        assert_ne!(
            again[2..18],
            sealed[2..18],
            "a retired DEK must not encrypt again"
        );

        run(
            &ring,
            &KeyCommand::Shred {
                topic: "orders".into(),
            },
        )
        .unwrap();
        assert!(ring.decrypt_value("orders", &sealed).is_err());
        let listed = run(&ring, &KeyCommand::List).unwrap();
        let states: Vec<&str> = listed["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["state"].as_str().unwrap())
            .collect();
        assert!(
            states.contains(&"shredded") && states.contains(&"active"),
            "{listed}"
        );
    }
}
