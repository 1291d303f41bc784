//! rustls set-up for both sides of the proxy: the client-facing server and the upstream
//! client.
//!
//! Why a module of its own:
//!
//! - **One crypto provider, no panics.** rustls' `ServerConfig::builder()` panics when it cannot
//!   pick a process-wide provider (for instance when another crate pulls in `ring`). Every
//!   config here is built with `builder_with_provider` and aws-lc-rs explicitly, and
//!   [`install_crypto_provider`] makes aws-lc-rs the process default for any other code.
//! - **Certificate rotation without restarts.** The server certificate is served through
//!   [`ReloadingCertResolver`], which rustls consults on every handshake. [`ServerTls::reload`]
//!   swaps in new files only once they parse and the key matches the certificate; a bad
//!   replacement leaves the old certificate in use. Established connections keep the
//!   certificate they were handshaken with, by construction.
//! - **Precise errors.** [`TlsError`] says which file is wrong and how, and never carries key
//!   material.

use crate::config::{ServerTlsConfig, UpstreamTlsConfig};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Protocol versions offered on both sides.
static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Installs aws-lc-rs as the process-wide rustls crypto provider.
///
/// Idempotent: if a provider is already installed (by an earlier call or by someone else),
/// it stays and this does nothing. Configs built in this module do not depend on it; it is
/// for other code that calls rustls' default builders.
pub fn install_crypto_provider() {
    // Err means "already installed", which is what we want either way.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Why TLS material could not be loaded or a TLS config built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("{path}: malformed PEM: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's content).
        reason: &'static str,
    },
    /// A certificate file holds no `CERTIFICATE` section.
    #[error("no certificate in {path}")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key section (PKCS#8, PKCS#1 or SEC1).
    #[error("no private key in {path}")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key could not be used (unsupported algorithm or corrupt encoding).
    #[error("unusable private key in {path}: {reason}")]
    InvalidPrivateKey {
        /// The file.
        path: PathBuf,
        /// rustls' reason (never key material).
        reason: rustls::Error,
    },
    /// The leaf certificate could not be parsed.
    #[error("invalid certificate in {path}: {reason}")]
    InvalidCertificate {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        reason: rustls::Error,
    },
    /// The private key does not belong to the leaf certificate.
    #[error("private key {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A client certificate was configured without its key, or the other way round.
    #[error("upstream TLS client certificate and key must be configured together")]
    IncompleteClientAuth,
    /// The client CA bundle cannot be used to verify client certificates.
    #[error("cannot verify client certificates with {path}: {reason}")]
    Verifier {
        /// The CA bundle.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration error: {0}")]
    Rustls(#[from] rustls::Error),
    /// A name is neither a DNS name nor an IP address.
    #[error("invalid TLS server name {name:?}")]
    InvalidServerName {
        /// The offending name.
        name: String,
    },
}

/// Serves the current server certificate to every handshake and lets it be swapped.
///
/// rustls asks the resolver once per handshake, so a swap affects new connections only.
#[derive(Debug)]
pub struct ReloadingCertResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCertResolver {
    /// A resolver serving `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(key),
        }
    }

    /// The certificate and key new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Makes `key` the certificate for new handshakes.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = key;
    }
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What identifies a version of a file on disk: replacing it by rename changes the inode,
/// rewriting it in place changes the modification time (and usually the length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Result<Self, TlsError> {
        let meta = std::fs::metadata(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            device: meta.dev(),
        })
    }
}

/// The client-facing TLS server: config, acceptor and hot certificate reload.
#[derive(Debug)]
pub struct ServerTls {
    cert_path: PathBuf,
    key_path: PathBuf,
    resolver: Arc<ReloadingCertResolver>,
    config: Arc<ServerConfig>,
    /// Stamps of (cert, key) as of the loaded certificate. The mutex also serializes reloads.
    loaded: Mutex<(FileStamp, FileStamp)>,
}

impl ServerTls {
    /// Loads the certificate chain and key named in `cfg` and builds the server config
    /// (TLS 1.3 and 1.2, no ALPN, no client certificates).
    pub fn load(cfg: &ServerTlsConfig) -> Result<Self, TlsError> {
        Self::load_with_client_certs(cfg, None)
    }

    /// Like [`load`](Self::load), and with `client_certs` requests client certificates and
    /// verifies them against the CA bundle (chain, validity period, client-auth usage).
    /// Clients without a certificate are refused unless the policy makes them optional.
    pub fn load_with_client_certs(
        cfg: &ServerTlsConfig,
        client_certs: Option<&ClientCertPolicy>,
    ) -> Result<Self, TlsError> {
        let stamps = (FileStamp::of(&cfg.cert)?, FileStamp::of(&cfg.key)?);
        let key = load_certified_key(&cfg.cert, &cfg.key)?;
        tracing::info!(
            cert = %cfg.cert.display(),
            key = %cfg.key.display(),
            certificate = %CertSummary::of(&key),
            "loaded TLS server certificate"
        );
        let resolver = Arc::new(ReloadingCertResolver::new(Arc::new(key)));
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)?;
        let config = match client_certs {
            None => builder.with_no_client_auth(),
            Some(policy) => builder.with_client_cert_verifier(client_verifier(policy)?),
        }
        .with_cert_resolver(resolver.clone());
        Ok(Self {
            cert_path: cfg.cert.clone(),
            key_path: cfg.key.clone(),
            resolver,
            config: Arc::new(config),
            loaded: Mutex::new(stamps),
        })
    }

    /// An acceptor for incoming connections; cheap, and it always serves the current
    /// certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// The rustls server config (shared; its certificate follows reloads).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// The resolver that holds the current certificate.
    pub fn resolver(&self) -> &Arc<ReloadingCertResolver> {
        &self.resolver
    }

    /// Re-reads the certificate and key if either file changed (length, modification time,
    /// or replaced by rename) since the last successful load.
    ///
    /// Returns `Ok(true)` when a new certificate is now served, `Ok(false)` when nothing
    /// changed. On error the previous certificate stays in use; the error is returned on
    /// every call until the files are fixed. Blocking file I/O: call it from a blocking
    /// context.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        // Stamp before reading: a write racing with the read shows up as a change next time.
        let stamps = (
            FileStamp::of(&self.cert_path)?,
            FileStamp::of(&self.key_path)?,
        );
        if stamps == *loaded {
            return Ok(false);
        }
        let key = load_certified_key(&self.cert_path, &self.key_path)?;
        self.resolver.replace(Arc::new(key));
        *loaded = stamps;
        Ok(true)
    }

    /// Polls [`reload`](Self::reload) every `interval` (at least 10 ms) until the task is
    /// aborted, logging each reload and each new failure (a failure that persists is logged
    /// once at error level, then at debug). File reads run on tokio's blocking pool. Must be
    /// called from within a tokio runtime.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; the files were just loaded
            let mut last_error: Option<String> = None;
            loop {
                ticker.tick().await;
                let worker = Arc::clone(&this);
                let result = match tokio::task::spawn_blocking(move || worker.reload()).await {
                    Ok(result) => result,
                    Err(join_error) => {
                        tracing::error!(error = %join_error, "TLS certificate reload task failed");
                        continue;
                    }
                };
                match result {
                    Ok(true) => {
                        last_error = None;
                        tracing::info!(
                            cert = %this.cert_path.display(),
                            key = %this.key_path.display(),
                            certificate = %CertSummary::of(&this.resolver.current()),
                            "reloaded TLS server certificate; new connections use it"
                        );
                    }
                    Ok(false) => last_error = None,
                    Err(error) => {
                        let message = error.to_string();
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::error!(
                                error = %message,
                                "TLS certificate reload failed; the old certificate stays in use"
                            );
                        } else {
                            tracing::debug!(error = %message, "TLS certificate still invalid");
                        }
                        last_error = Some(message);
                    }
                }
            }
        })
    }
}

/// How a TLS listener treats client certificates.
#[derive(Debug, Clone)]
pub struct ClientCertPolicy {
    /// PEM bundle of the CAs that sign client certificates.
    pub ca: PathBuf,
    /// Whether a client without a certificate may still connect.
    pub optional: bool,
}

fn client_verifier(
    policy: &ClientCertPolicy,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let roots = root_store(&policy.ca, "client CA bundle")?;
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let builder = if policy.optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map_err(|e| TlsError::Verifier {
        path: policy.ca.clone(),
        reason: e.to_string(),
    })
}

fn root_store(path: &Path, what: &str) -> Result<RootCertStore, TlsError> {
    let cas = read_certificates(path)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(cas);
    if added == 0 {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    if ignored > 0 {
        tracing::warn!(
            file = %path.display(),
            ignored,
            "some certificates in the {what} are unusable and were skipped"
        );
    }
    Ok(roots)
}

/// A connector for the proxy's connections to the brokers: trusts the CA bundle in
/// `cfg.ca`, presents the client certificate if one is configured, TLS 1.3 and 1.2.
pub fn upstream_connector(cfg: &UpstreamTlsConfig) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let roots = root_store(&cfg.ca, "upstream CA bundle")?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_root_certificates(roots);
    let config = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let (chain, key_der) = read_matching_pair(cert, key)?;
            builder.with_client_auth_cert(chain, key_der)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(TlsError::IncompleteClientAuth),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The name a broker's certificate is verified against: `cfg.server_name` if set, else the
/// broker's host (a DNS name or an IP address, IPv6 with or without brackets).
pub fn upstream_server_name(
    cfg: &UpstreamTlsConfig,
    broker_host: &str,
) -> Result<ServerName<'static>, TlsError> {
    let name = cfg.server_name.as_deref().unwrap_or(broker_host);
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::InvalidServerName {
        name: name.to_owned(),
    })
}

/// Reads a PEM certificate chain and key and checks that they belong together.
fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(cert)?;
    let key_der = read_private_key(key)?;
    certified_key(chain, key_der, cert, key)
}

/// Like [`load_certified_key`], returning the DER pieces (for `with_client_auth_cert`).
fn read_matching_pair(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let chain = read_certificates(cert)?;
    let key_der = read_private_key(key)?;
    certified_key(chain.clone(), key_der.clone_key(), cert, key)?;
    Ok((chain, key_der))
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert: &Path,
    key: &Path,
) -> Result<CertifiedKey, TlsError> {
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|reason| TlsError::InvalidPrivateKey {
            path: key.to_owned(),
            reason,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
        }),
        Err(reason) => Err(TlsError::InvalidCertificate {
            path: cert.to_owned(),
            reason,
        }),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every `CERTIFICATE` section of a PEM file, in order; an error if there is none.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        other => pem_error(path, other),
    })
}

/// Maps a PEM error to a reason that cannot echo file content (the parser's own messages
/// quote lines and bytes, which for a key file would be key material).
fn pem_error(path: &Path, error: rustls_pki_types::pem::Error) -> TlsError {
    use rustls_pki_types::pem::Error;
    let reason = match error {
        Error::Io(source) => {
            return TlsError::Read {
                path: path.to_owned(),
                source,
            }
        }
        Error::NoItemsFound => "no PEM sections",
        Error::MissingSectionEnd { .. } => "a section has no END line",
        Error::IllegalSectionStart { .. } => "malformed BEGIN line",
        Error::Base64Decode(_) => "invalid base64 in a section",
        _ => "unreadable PEM",
    };
    TlsError::Pem {
        path: path.to_owned(),
        reason,
    }
}

/// Subject CN, serial and expiry of a leaf certificate, for log lines. A certificate
/// x509-parser cannot read just yields less detail.
struct CertSummary {
    common_name: Option<String>,
    serial: Option<String>,
    not_after: Option<String>,
    chain_len: usize,
}

impl CertSummary {
    fn of(key: &CertifiedKey) -> Self {
        let mut summary = Self {
            common_name: None,
            serial: None,
            not_after: None,
            chain_len: key.cert.len(),
        };
        if let Some(leaf) = key.cert.first() {
            summary.fill(leaf);
        }
        summary
    }

    fn fill(&mut self, der: &[u8]) {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return;
        };
        self.serial = Some(
            cert.raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        );
        self.not_after = Some(utc_timestamp(cert.validity().not_after.to_datetime()));
        self.common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .map(|cn| String::from_utf8_lossy(cn.attr_value().data).into_owned());
    }
}

impl std::fmt::Display for CertSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = "?";
        write!(
            f,
            "CN={} serial={} not_after={} chain_len={}",
            self.common_name.as_deref().unwrap_or(unknown),
            self.serial.as_deref().unwrap_or(unknown),
            self.not_after.as_deref().unwrap_or(unknown),
            self.chain_len
        )
    }
}

/// A certificate time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_timestamp(time: time::OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::cli::certs::{init_dev_certs, DevCertsRequest};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A development certificate set in `dir` (CA, server, client "alice").
    fn dev_certs(dir: &Path) -> PathBuf {
        init_dev_certs(&DevCertsRequest {
            out_dir: dir.to_owned(),
            hosts: vec![],
            clients: vec!["alice".into()],
            force: false,
            valid_days: 2,
        })
        .unwrap();
        dir.to_owned()
    }

    fn server_cfg(dir: &Path) -> ServerTlsConfig {
        ServerTlsConfig {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            reload_interval_ms: 50,
        }
    }

    fn upstream_cfg(ca: &Path) -> UpstreamTlsConfig {
        UpstreamTlsConfig {
            ca: ca.to_owned(),
            cert: None,
            key: None,
            server_name: None,
        }
    }

    /// Replaces `to` with `from`'s content the way cert managers do: write aside, rename.
    fn replace_by_rename(from: &Path, to: &Path) {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }

    fn leaf(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    /// One TLS connection: the client sends "ping", the server answers "pong". Returns the
    /// leaf certificate the client saw. Every call builds a fresh connector: a shared one
    /// would resume the previous session, and a resumed session reports the certificate of
    /// the original handshake.
    async fn handshake(
        server: &ServerTls,
        client: &UpstreamTlsConfig,
        name: ServerName<'static>,
    ) -> CertificateDer<'static> {
        let connector = upstream_connector(client).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = server.acceptor();
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            tls.write_all(b"pong").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        let seen = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        server_task.await.unwrap();
        seen
    }

    #[tokio::test]
    async fn handshake_with_dev_certs_over_loopback() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dev_certs(tmp.path());
        let server = ServerTls::load(&server_cfg(&dir)).unwrap();
        let client = upstream_cfg(&dir.join("ca.pem"));
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let name = upstream_server_name(&client, host).unwrap();
            let seen = handshake(&server, &client, name).await;
            assert_eq!(seen, leaf(&dir.join("server.pem")));
        }
    }

    #[tokio::test]
    async fn upstream_connector_presents_a_client_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dev_certs(tmp.path());
        let mut cfg = upstream_cfg(&dir.join("ca.pem"));
        cfg.cert = Some(dir.join("client-alice.pem"));
        cfg.key = Some(dir.join("client-alice.key"));
        let connector = upstream_connector(&cfg).unwrap();

        // A broker that requires client certificates from the dev CA.
        let mut roots = RootCertStore::empty();
        roots.add(leaf(&dir.join("ca.pem"))).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let (chain, key) =
            read_matching_pair(&dir.join("server.pem"), &dir.join("server.key")).unwrap();
        let broker = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(broker));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let broker_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.unwrap();
            tls.get_ref().1.peer_certificates().unwrap()[0].clone()
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = upstream_server_name(&cfg, "localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
        let presented = broker_task.await.unwrap();
        assert_eq!(presented, leaf(&dir.join("client-alice.pem")));

        cfg.key = Some(dir.join("server.key"));
        assert!(matches!(
            upstream_connector(&cfg),
            Err(TlsError::KeyMismatch { .. })
        ));
        cfg.key = None;
        assert!(matches!(
            upstream_connector(&cfg),
            Err(TlsError::IncompleteClientAuth)
        ));
    }

    #[tokio::test]
    async fn reload_picks_up_a_replaced_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let old = dev_certs(&tmp.path().join("old"));
        let new = dev_certs(&tmp.path().join("new"));
        let live = tmp.path().join("live");
        std::fs::create_dir(&live).unwrap();
        for f in ["server.pem", "server.key"] {
            std::fs::copy(old.join(f), live.join(f)).unwrap();
        }
        // The client trusts both CAs (a multi-certificate bundle).
        let bundle = tmp.path().join("bundle.pem");
        let mut pem = std::fs::read(old.join("ca.pem")).unwrap();
        pem.extend(std::fs::read(new.join("ca.pem")).unwrap());
        std::fs::write(&bundle, pem).unwrap();
        let client = upstream_cfg(&bundle);
        let name = || ServerName::try_from("localhost").unwrap();

        let server = ServerTls::load(&server_cfg(&live)).unwrap();
        assert!(!server.reload().unwrap(), "nothing changed yet");
        let old_leaf = leaf(&old.join("server.pem"));
        assert_eq!(handshake(&server, &client, name()).await, old_leaf);

        // Key first, then certificate: the half-replaced state is refused...
        replace_by_rename(&new.join("server.key"), &live.join("server.key"));
        assert!(matches!(server.reload(), Err(TlsError::KeyMismatch { .. })));
        assert_eq!(handshake(&server, &client, name()).await, old_leaf);
        // ...and the complete replacement is served.
        replace_by_rename(&new.join("server.pem"), &live.join("server.pem"));
        assert!(server.reload().unwrap());
        assert!(!server.reload().unwrap());
        let new_leaf = leaf(&new.join("server.pem"));
        assert_ne!(new_leaf, old_leaf);
        assert_eq!(handshake(&server, &client, name()).await, new_leaf);
        assert_eq!(server.resolver().current().cert[0], new_leaf);
    }

    #[tokio::test]
    async fn broken_replacement_keeps_the_old_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dev_certs(tmp.path());
        let server = ServerTls::load(&server_cfg(&dir)).unwrap();
        let client = upstream_cfg(&dir.join("ca.pem"));
        let name = || ServerName::try_from("localhost").unwrap();
        let good = leaf(&dir.join("server.pem"));
        let saved = tmp.path().join("saved.pem");
        std::fs::copy(dir.join("server.pem"), &saved).unwrap();

        let garbage = tmp.path().join("garbage.pem");
        std::fs::write(&garbage, "this is not a certificate\n").unwrap();
        replace_by_rename(&garbage, &dir.join("server.pem"));
        let err = server.reload().unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        // Still failing on the next poll, still serving the old certificate.
        assert!(server.reload().is_err());
        assert_eq!(handshake(&server, &client, name()).await, good);

        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        replace_by_rename(&garbage, &dir.join("server.pem"));
        assert!(matches!(server.reload(), Err(TlsError::Pem { .. })));

        std::fs::remove_file(dir.join("server.pem")).unwrap();
        assert!(matches!(server.reload(), Err(TlsError::Read { .. })));
        assert_eq!(handshake(&server, &client, name()).await, good);

        // Restoring good files recovers.
        replace_by_rename(&saved, &dir.join("server.pem"));
        assert!(server.reload().unwrap());
        assert_eq!(handshake(&server, &client, name()).await, good);
    }

    #[tokio::test]
    async fn spawned_reloader_swaps_the_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let old = dev_certs(&tmp.path().join("old"));
        let new = dev_certs(&tmp.path().join("new"));
        let server = Arc::new(ServerTls::load(&server_cfg(&old)).unwrap());
        let task = server.spawn_reloader(Duration::from_millis(20));
        replace_by_rename(&new.join("server.key"), &old.join("server.key"));
        replace_by_rename(&new.join("server.pem"), &old.join("server.pem"));
        let new_leaf = leaf(&new.join("server.pem"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while server.resolver().current().cert[0] != new_leaf {
            assert!(tokio::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
    }

    #[test]
    fn key_not_matching_the_certificate_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let a = dev_certs(&tmp.path().join("a"));
        let b = dev_certs(&tmp.path().join("b"));
        let cfg = ServerTlsConfig {
            cert: a.join("server.pem"),
            key: b.join("server.key"),
            reload_interval_ms: 50,
        };
        let err = ServerTls::load(&cfg).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("does not match"), "{message}");
        assert!(!message.contains("PRIVATE KEY"), "{message}");
    }

    #[test]
    fn missing_or_empty_key_is_reported_precisely() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dev_certs(tmp.path());
        let mut cfg = server_cfg(&dir);
        cfg.key = dir.join("server.pem");
        assert!(matches!(
            ServerTls::load(&cfg),
            Err(TlsError::NoPrivateKey { .. })
        ));
        cfg.key = dir.join("absent.key");
        assert!(matches!(ServerTls::load(&cfg), Err(TlsError::Read { .. })));
    }

    #[test]
    fn empty_ca_bundle_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = tmp.path().join("empty.pem");
        std::fs::write(&ca, "").unwrap();
        let Err(err) = upstream_connector(&upstream_cfg(&ca)) else {
            panic!("an empty CA bundle was accepted");
        };
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"));
    }

    #[test]
    fn server_name_prefers_configured_name() {
        let mut cfg = upstream_cfg(Path::new("ca.pem"));
        assert_eq!(
            upstream_server_name(&cfg, "broker-1.kafka").unwrap(),
            ServerName::try_from("broker-1.kafka").unwrap()
        );
        assert!(matches!(
            upstream_server_name(&cfg, "10.0.0.7").unwrap(),
            ServerName::IpAddress(_)
        ));
        cfg.server_name = Some("kafka.internal".into());
        assert_eq!(
            upstream_server_name(&cfg, "10.0.0.7").unwrap(),
            ServerName::try_from("kafka.internal").unwrap()
        );
        cfg.server_name = Some("not a name".into());
        assert!(matches!(
            upstream_server_name(&cfg, "x"),
            Err(TlsError::InvalidServerName { .. })
        ));
    }

    #[test]
    fn summary_reads_subject_serial_and_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = dev_certs(tmp.path());
        let key = load_certified_key(&dir.join("server.pem"), &dir.join("server.key")).unwrap();
        let summary = CertSummary::of(&key);
        assert_eq!(
            summary.common_name.as_deref(),
            Some("Portcullis Development Server")
        );
        let serial = summary.serial.unwrap();
        assert!((2..=42).contains(&serial.len()), "{serial}");
        let year = time::OffsetDateTime::now_utc().year();
        let not_after = summary.not_after.unwrap();
        assert!(
            not_after.starts_with(&year.to_string())
                || not_after.starts_with(&(year + 1).to_string()),
            "{not_after}"
        );
        for garbage in [&[0x30, 0x85, 0, 0, 0, 0, 1][..], &[0x30, 0x05, 1][..]] {
            let mut summary = CertSummary {
                common_name: None,
                serial: None,
                not_after: None,
                chain_len: 1,
            };
            summary.fill(garbage);
            assert!(summary.common_name.is_none() && summary.serial.is_none());
            assert!(summary.not_after.is_none());
        }
    }

    #[test]
    fn install_crypto_provider_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
    }
}
