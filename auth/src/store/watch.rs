//! The store as the running proxy sees it: swapped atomically when the file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use super::{StoreError, UserStore};

/// What the watcher last saw at the path, so an unchanged (or unchanged broken) file is
/// neither re-parsed nor re-reported.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Contents([u8; 32]),
    Unreadable(std::io::ErrorKind),
}

/// The current user store plus the file it came from.
///
/// New authentications take [`SharedUserStore::current`]; [`SharedUserStore::spawn_watcher`]
/// polls the file and swaps in a new store when its contents change and validate. A file
/// that is broken or missing leaves the last good store in place.
#[derive(Debug)]
pub struct SharedUserStore {
    path: PathBuf,
    current: ArcSwap<UserStore>,
    seen: Mutex<Option<Seen>>,
}

impl SharedUserStore {
    /// Loads the store at `path` (an error when it is missing or invalid: the proxy should not
    /// start without its users).
    pub fn load(path: &Path) -> Result<SharedUserStore, StoreError> {
        let bytes = std::fs::read(path).map_err(|source| StoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let store = parse_bytes(path, &bytes)?;
        warn_if_shared(path);
        Ok(SharedUserStore {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(store),
            seen: Mutex::new(Some(Seen::Contents(Sha256::digest(&bytes).into()))),
        })
    }

    /// Starts from `store`, watching `path` (which need not exist yet).
    pub fn new(path: &Path, store: UserStore) -> SharedUserStore {
        SharedUserStore {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(store),
            seen: Mutex::new(None),
        }
    }

    /// The file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store as of now. Cheap; hold the `Arc` for the duration of one authentication.
    pub fn current(&self) -> Arc<UserStore> {
        self.current.load_full()
    }

    /// Re-reads the file and swaps in the new store if the contents changed.
    ///
    /// `Ok(true)` when a new store was installed, `Ok(false)` when nothing changed (including
    /// a broken, missing or unreadable file that was already reported). An error (the file
    /// became missing, unreadable or invalid) leaves the current store in place and is
    /// returned once per distinct problem, so the watcher warns once, not every poll.
    pub fn reload_if_changed(&self) -> Result<bool, StoreError> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(source) => {
                let now = Some(Seen::Unreadable(source.kind()));
                if *seen == now {
                    return Ok(false);
                }
                *seen = now;
                return Err(StoreError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let now = Some(Seen::Contents(Sha256::digest(&bytes).into()));
        if *seen == now {
            return Ok(false);
        }
        *seen = now;
        let store = parse_bytes(&self.path, &bytes)?;
        self.current.store(Arc::new(store));
        Ok(true)
    }

    /// Polls the file every `interval` on the tokio runtime, installing valid changes and
    /// logging (without secrets) changes that cannot be used; `on_change` hears of every
    /// installed or refused change (for the audit log).
    pub fn spawn_watcher(
        self: Arc<Self>,
        interval: Duration,
        on_change: impl Fn(StoreChange) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let this = self.clone();
                let before = self.current();
                match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                    Ok(Ok(true)) => {
                        let after = self.current();
                        tracing::info!(
                            file = %self.path.display(),
                            users = after.len(),
                            "user store reloaded"
                        );
                        on_change(StoreChange::between(&before, &after));
                    }
                    Ok(Ok(false)) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(
                            file = %self.path.display(),
                            %error,
                            "user store not reloaded; keeping the last good one"
                        );
                        on_change(StoreChange::Refused(error.to_string()));
                    }
                    Err(error) => tracing::warn!(
                        file = %self.path.display(),
                        %error,
                        "user store reload task failed; keeping the last good one"
                    ),
                }
            }
        })
    }
}

/// Warns when the store file can be read by other users: it holds no passwords, but its keys
/// allow offline guessing and impersonating the server to clients.
#[cfg(unix)]
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "user store is accessible to group or others; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &Path) {}

fn parse_bytes(path: &Path, bytes: &[u8]) -> Result<UserStore, StoreError> {
    let text = std::str::from_utf8(bytes).map_err(|_| StoreError::Syntax {
        path: Some(path.to_path_buf()),
        line: 0,
        message: "the file is not UTF-8".into(),
    })?;
    UserStore::parse(text).map_err(|e| e.with_path(path))
}

/// A change of the credential store seen by the watcher. Names and roles only: never
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChange {
    /// A new store is in force.
    Installed {
        /// Users in the new store.
        users: usize,
        /// Users that were added.
        added: Vec<String>,
        /// Users that were removed.
        removed: Vec<String>,
        /// Users whose roles or credentials changed.
        changed: Vec<String>,
    },
    /// The file changed but cannot be used; the last good store stays.
    Refused(String),
}

impl StoreChange {
    /// What changed from `before` to `after`.
    pub fn between(before: &UserStore, after: &UserStore) -> StoreChange {
        let old: std::collections::BTreeMap<&str, &crate::store::UserRecord> =
            before.users().map(|u| (u.name(), u)).collect();
        let new: std::collections::BTreeMap<&str, &crate::store::UserRecord> =
            after.users().map(|u| (u.name(), u)).collect();
        let added = new
            .keys()
            .filter(|n| !old.contains_key(*n))
            .map(|n| n.to_string())
            .collect();
        let removed = old
            .keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| n.to_string())
            .collect();
        let changed = new
            .iter()
            .filter(|(n, u)| old.get(*n).is_some_and(|o| o != *u))
            .map(|(n, _)| n.to_string())
            .collect();
        StoreChange::Installed {
            users: after.len(),
            added,
            removed,
            changed,
        }
    }
}
