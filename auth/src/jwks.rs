//! The signing keys of the identity provider, kept fresh without trusting the network more
//! than necessary.
//!
//! Tokens are validated locally, so the proxy needs the IdP's public keys (a JWKS). They
//! come from a local file (read at construction, re-read when it changes) or from an HTTPS
//! URL (fetched on first use, then refreshed in the background every `jwks_refresh_secs`).
//! A token with an unknown `kid` triggers one early fetch (the IdP may have rotated keys),
//! but at most once per `jwks_min_refetch_secs`, so a flood of tokens with random `kid`s
//! cannot turn the proxy into an amplifier against the IdP. A failed fetch keeps the last
//! good key set and logs a warning: an IdP outage must not lock out clients whose keys are
//! already known.

#[path = "jwks_keys.rs"]
mod keys;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::Algorithm;

pub use keys::{Jwk, KeySet, KeyType};

use crate::jwt::{OAuthBearerConfig, TokenError};
use crate::oauth_client::http;

/// The largest JWKS document accepted, from a file or the network.
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// How often a JWKS file's modification time is checked while tokens arrive.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Where the key set comes from.
enum Source {
    File(PathBuf),
    Url {
        url: reqwest::Url,
        client: reqwest::Client,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Url { url, .. } => write!(f, "url {url}"),
        }
    }
}

/// What the fetch bookkeeping remembers (guarded by one async lock, which also makes
/// concurrent fetches wait for each other instead of running twice).
#[derive(Default)]
struct FetchState {
    /// The last fetch attempt of any kind (success or not): retries of a first load
    /// that failed wait for the minimum refetch interval.
    last_attempt: Option<Instant>,
    /// The last fetch caused by an unknown `kid`, for that rate limit.
    last_unknown_kid: Option<Instant>,
    /// The file's modification time and length when it was last read.
    file_stamp: Option<(SystemTime, u64)>,
    /// When the file's stamp was last checked.
    last_file_check: Option<Instant>,
}

struct Inner {
    source: Source,
    keys: RwLock<Arc<KeySet>>,
    /// Bumped on every successful load; 0 means nothing was ever loaded.
    generation: AtomicU64,
    refresh_every: Duration,
    min_refetch: Duration,
    state: tokio::sync::Mutex<FetchState>,
    refresher_started: AtomicBool,
}

/// A cached JWKS with the refresh rules described in the module documentation.
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.inner.source)
            .field("keys", &self.inner.current().len())
            .finish()
    }
}

/// Why the key set could not be (re)loaded. Carries no key material.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct JwksError(String);

impl JwksCache {
    /// Builds the cache the configuration asks for. A file is read now (an unreadable or
    /// empty file is an error); a URL is only checked now and fetched on first use, so no
    /// async runtime is needed here.
    pub fn new(config: &OAuthBearerConfig) -> Result<JwksCache, JwksError> {
        let refresh = Duration::from_secs(config.jwks_refresh_secs.max(1));
        let min_refetch = Duration::from_secs(config.jwks_min_refetch_secs.max(1));
        match (&config.jwks_url, &config.jwks_file) {
            (Some(url), None) => JwksCache::from_url(
                url,
                config.allow_insecure_loopback_jwks,
                refresh,
                min_refetch,
            ),
            (None, Some(path)) => JwksCache::from_file(path, min_refetch),
            _ => Err(JwksError(
                "set exactly one of jwks_url and jwks_file".into(),
            )),
        }
    }

    /// A cache over a local JWKS file, read now.
    pub fn from_file(path: &Path, min_refetch: Duration) -> Result<JwksCache, JwksError> {
        let cache = JwksCache::build(Source::File(path.to_path_buf()), Duration::MAX, min_refetch);
        let (set, stamp) = read_file(path)?;
        cache.inner.store(set);
        if let Ok(mut state) = cache.inner.state.try_lock() {
            state.file_stamp = stamp;
            state.last_file_check = Some(Instant::now());
        }
        Ok(cache)
    }

    /// A cache over a JWKS URL: `https`, or `http` to a loopback host when
    /// `allow_insecure_loopback` is set. Nothing is fetched until the first lookup.
    pub fn from_url(
        url: &str,
        allow_insecure_loopback: bool,
        refresh_every: Duration,
        min_refetch: Duration,
    ) -> Result<JwksCache, JwksError> {
        let url = crate::jwt::config::check_url(url, allow_insecure_loopback)
            .map_err(|e| JwksError(format!("jwks_url: {e}")))?;
        let client = http::build_client(&url).map_err(|e| JwksError(e.to_string()))?;
        Ok(JwksCache::build(
            Source::Url { url, client },
            refresh_every,
            min_refetch,
        ))
    }

    fn build(source: Source, refresh_every: Duration, min_refetch: Duration) -> JwksCache {
        JwksCache {
            inner: Arc::new(Inner {
                source,
                keys: RwLock::new(Arc::new(KeySet::default())),
                generation: AtomicU64::new(0),
                refresh_every,
                min_refetch,
                state: tokio::sync::Mutex::new(FetchState::default()),
                refresher_started: AtomicBool::new(false),
            }),
        }
    }

    /// The key set as currently cached.
    pub fn current(&self) -> Arc<KeySet> {
        self.inner.current()
    }

    /// The key for a token with this `kid` and `alg` (see [`KeySet::select`]). Loads the set
    /// on first use, notices file changes, and on an unknown key refetches once if the rate
    /// limit allows.
    pub async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, TokenError> {
        let inner = &self.inner;
        self.start_refresher();
        if inner.generation.load(Ordering::Acquire) == 0 {
            inner.refetch_if_allowed(false).await;
        } else if matches!(inner.source, Source::File(_)) {
            inner.check_file(false).await;
        }
        if inner.generation.load(Ordering::Acquire) == 0 {
            return Err(TokenError::KeysUnavailable(
                "the key set could not be loaded yet".into(),
            ));
        }
        match inner.current().select(kid, alg) {
            Err(TokenError::UnknownKey(_)) => {
                let changed = match inner.source {
                    Source::File(_) => inner.check_file(true).await,
                    Source::Url { .. } => inner.refetch_if_allowed(true).await,
                };
                if !changed {
                    return Err(TokenError::unknown_key(kid));
                }
                inner.current().select(kid, alg).cloned()
            }
            other => other.cloned(),
        }
    }

    /// Fetches (or re-reads) the key set now, regardless of the rate limit. Returns the
    /// number of usable keys; on error the previous set stays.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let mut state = self.inner.state.lock().await;
        self.inner.load(&mut state).await
    }

    /// Starts the background refresh of a URL source, once, if a runtime is running. The
    /// task holds only a weak reference and ends when the cache is dropped.
    fn start_refresher(&self) {
        if !matches!(self.inner.source, Source::Url { .. })
            || self.inner.refresher_started.load(Ordering::Relaxed)
        {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.refresher_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.refresh_every;
        handle.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { break };
                let mut state = inner.state.lock().await;
                // Failures are logged inside and keep the last good set.
                let _ = inner.load(&mut state).await;
            }
        });
    }
}

impl Inner {
    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn store(&self, set: KeySet) {
        let set = Arc::new(set);
        match self.keys.write() {
            Ok(mut k) => *k = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Fetches unless another task just did (then its result is used) or the previous
    /// fetch of the same cause (an unknown `kid`, or any attempt for a first load) is more
    /// recent than the minimum refetch interval. True when the set changed.
    async fn refetch_if_allowed(&self, unknown_kid: bool) -> bool {
        let before = self.generation.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if self.generation.load(Ordering::Acquire) != before {
            return true;
        }
        let last = if unknown_kid {
            state.last_unknown_kid
        } else {
            state.last_attempt
        };
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return false;
        }
        if unknown_kid {
            state.last_unknown_kid = Some(Instant::now());
        }
        self.load(&mut state).await.is_ok()
    }

    /// Re-reads the file if its stamp changed. Without `force` the stamp is checked at
    /// most every [`FILE_CHECK_INTERVAL`]. True when the set changed.
    async fn check_file(&self, force: bool) -> bool {
        let Source::File(path) = &self.source else {
            return false;
        };
        let before = self.generation.load(Ordering::Acquire);
        let mut state = self.state.lock().await;
        if self.generation.load(Ordering::Acquire) != before {
            return true;
        }
        if !force
            && state
                .last_file_check
                .is_some_and(|t| t.elapsed() < FILE_CHECK_INTERVAL)
        {
            return false;
        }
        state.last_file_check = Some(Instant::now());
        let now = stamp(path);
        if now == state.file_stamp {
            return false;
        }
        // Recorded before reading: a broken or missing file is tried (and warned about)
        // once per change, not once per token.
        state.file_stamp = now;
        self.load(&mut state).await.is_ok()
    }

    /// Loads the set from the source and stores it; on failure warns and keeps the old one.
    async fn load(&self, state: &mut FetchState) -> Result<usize, JwksError> {
        state.last_attempt = Some(Instant::now());
        let result = match &self.source {
            Source::File(path) => read_file(path).map(|(set, st)| {
                state.file_stamp = st;
                set
            }),
            Source::Url { url, client } => fetch(client, url).await,
        };
        match result {
            Ok(set) => {
                let n = set.len();
                self.store(set);
                tracing::debug!(source = ?self.source, keys = n, "JWKS loaded");
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(source = ?self.source, error = %e, "JWKS refresh failed; keeping the previous key set");
                Err(e)
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_file(path: &Path) -> Result<(KeySet, Option<(SystemTime, u64)>), JwksError> {
    let stamp = stamp(path);
    let file = std::fs::File::open(path)
        .map_err(|e| JwksError(format!("cannot read {}: {e}", path.display())))?;
    let mut body = Vec::new();
    file.take(MAX_JWKS_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| JwksError(format!("cannot read {}: {e}", path.display())))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(JwksError(format!(
            "{} is larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        )));
    }
    let set = parse(&body).map_err(|e| JwksError(format!("{}: {e}", path.display())))?;
    Ok((set, stamp))
}

async fn fetch(client: &reqwest::Client, url: &reqwest::Url) -> Result<KeySet, JwksError> {
    let body = http::get_bounded(client, url, MAX_JWKS_BYTES)
        .await
        .map_err(|e| JwksError(format!("fetching {url}: {e}")))?;
    parse(&body).map_err(|e| JwksError(format!("{url}: {e}")))
}

fn parse(body: &[u8]) -> Result<KeySet, String> {
    let (set, skipped) = KeySet::parse(body)?;
    if skipped > 0 {
        tracing::debug!(
            skipped,
            "JWKS entries skipped (not a supported public signature key)"
        );
    }
    if set.is_empty() {
        return Err("no usable signature key in the set".into());
    }
    Ok(set)
}
