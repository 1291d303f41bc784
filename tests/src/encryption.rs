//! Record encryption in the end-to-end tests: a root key made with the real
//! `portcullis keys init`, the `[encryption]` table for a test proxy, and records carrying a
//! random marker in every value and header value, so "no plaintext at the broker" is a
//! search for the marker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::kafka::{sample_records, Rec};
use crate::process::run_with_timeout;
use crate::proxy::proxy_binary;

/// A directory holding a fresh root key (and, by default, the key registry).
#[derive(Debug)]
pub struct KeyDir {
    dir: tempfile::TempDir,
}

impl KeyDir {
    /// Creates the directory and a root key in it with `portcullis keys init`.
    pub fn new() -> KeyDir {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-keys-")
            .tempdir()
            .expect("create key dir");
        let root = dir.path().join("root.key");
        let done = run_with_timeout(
            Command::new(proxy_binary())
                .args(["keys", "init", "--root-key"])
                .arg(&root),
            Duration::from_secs(30),
            dir.path(),
        );
        assert!(
            done.status.success() && root.is_file(),
            "`portcullis keys init` failed ({}):\n{}\n{}",
            done.status,
            done.stdout,
            done.stderr
        );
        KeyDir { dir }
    }

    /// The root key file.
    pub fn root_key(&self) -> PathBuf {
        self.dir.path().join("root.key")
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An `[encryption]` table encrypting `topics` (exact) and `prefixes`, followed by
    /// `extra` lines inside the table (e.g. `encrypt_headers = true`).
    pub fn proxy_toml(&self, topics: &[&str], prefixes: &[&str], extra: &str) -> String {
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "[encryption]\ntopics = [{}]\nprefixes = [{}]\nkey_store = {:?}\nroot_key = {{ kind = \"local-file\", path = {:?} }}\n{extra}\n",
            list(topics),
            list(prefixes),
            self.dir.path().join("registry").to_string_lossy(),
            self.root_key().to_string_lossy(),
        )
    }
}

impl Default for KeyDir {
    fn default() -> Self {
        Self::new()
    }
}

/// 32 random bytes (never repeated between runs).
pub fn random_marker() -> Vec<u8> {
    let mut marker = Vec::with_capacity(32);
    while marker.len() < 32 {
        marker.extend_from_slice(&crate::ports::random_u64().to_le_bytes());
    }
    marker
}

/// `n` awkward sample records (see [`sample_records`]) with `marker` inside every non-null
/// value and every non-null header value, and one more header holding the marker.
pub fn marked_records(n: usize, partitions: i32, seed: u64, marker: &[u8]) -> Vec<Rec> {
    let mut recs = sample_records(n, partitions, seed);
    for r in &mut recs {
        if let Some(v) = &mut r.value {
            v.extend_from_slice(marker);
        }
        for (_, value) in &mut r.headers {
            if let Some(v) = value {
                v.extend_from_slice(marker);
            }
        }
        r.headers.push(("secret".into(), Some(marker.to_vec())));
    }
    recs
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
