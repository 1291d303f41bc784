//! Which signing keys a verifier trusts, and how trust passes from one key to the next.
//!
//! Trust starts at keys the auditor pins (`--key`), or, when verifying a local data directory
//! without one, at the first key the log ever used. A later key becomes trusted only through a
//! `key` / `audit.key.rotate` entry naming it, once a checkpoint signed by an already trusted
//! key covers that entry. Adding a key to the store, or replacing the key file, therefore never
//! makes forged checkpoints verify.

use crate::event::{Category, Event};
use crate::note::VerifierKey;
use crate::sequencer::{KEY_ROTATE_ACTION, NEW_KEY_DETAIL};

/// The set of trusted keys plus rotations waiting for a covering checkpoint.
#[derive(Debug, Clone, Default)]
pub struct KeyChain {
    trusted: Vec<VerifierKey>,
    pending: Vec<(u64, VerifierKey)>,
}

impl KeyChain {
    /// Trust starts at `roots`.
    pub fn new(roots: Vec<VerifierKey>) -> KeyChain {
        KeyChain {
            trusted: roots,
            pending: Vec::new(),
        }
    }

    /// The keys trusted so far.
    pub fn trusted(&self) -> &[VerifierKey] {
        &self.trusted
    }

    /// Looks at entry `seq`; remembers the new key if it is a rotation entry.
    pub fn observe(&mut self, seq: u64, event: &Event) {
        if event.category != Category::Key || event.action != KEY_ROTATE_ACTION {
            return;
        }
        let key = event
            .details
            .as_ref()
            .and_then(|d| d.get(NEW_KEY_DETAIL))
            .and_then(|v| v.as_str())
            .and_then(|s| VerifierKey::parse(s).ok());
        if let Some(key) = key {
            self.pending.push((seq, key));
        }
    }

    /// A checkpoint of `size` verified with a trusted key: rotations it covers become trusted.
    pub fn covered(&mut self, size: u64) {
        let (now, later): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(seq, _)| *seq < size);
        self.pending = later;
        for (_, key) in now {
            if !self.trusted.contains(&key) {
                self.trusted.push(key);
            }
        }
    }
}
