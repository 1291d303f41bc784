//! Policy directories for authorization tests: the repository's casbin model plus policy
//! files the test writes, replaced atomically (rename) the way editors and Kubernetes do.

use std::path::{Path, PathBuf};

use crate::auth::toml_str;
use crate::workspace_root;

/// A policy directory in a temporary directory.
pub struct PolicyDir {
    dir: tempfile::TempDir,
}

impl PolicyDir {
    /// The repository's `policies/model.conf` plus `policy.csv` holding `rules`.
    pub fn new(rules: &str) -> PolicyDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let model = workspace_root().join("policies").join("model.conf");
        std::fs::copy(&model, dir.path().join("model.conf"))
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", model.display()));
        let policies = PolicyDir { dir };
        policies.write("policy.csv", rules);
        policies
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces (or creates) `name` with `content` by writing a temporary file and renaming
    /// it over the old one.
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let target = self.dir.path().join(name);
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write policy");
        std::fs::rename(&tmp, &target).expect("rename policy");
        target
    }

    /// `[authorization]` for the proxy configuration.
    pub fn proxy_toml(&self, extra: &str) -> String {
        format!(
            "\n[authorization]\npolicy_dir = {}\nreload_ms = 200\n{extra}\n",
            toml_str(&self.path().to_string_lossy())
        )
    }
}
