//! Development certificates: a throw-away CA, a server certificate and client certificates.
//!
//! `portcullis certs init` uses this to give a fresh checkout working TLS and mTLS without
//! openssl incantations. Everything here is for development and tests only: the CA key is
//! written next to the certificates, unencrypted (mode 0600).
//!
//! Files written into the output directory:
//!
//! | file                 | content                                                      |
//! |----------------------|--------------------------------------------------------------|
//! | `ca.pem`, `ca.key`   | self-signed CA "Portcullis Development CA" (path length 0)  |
//! | `server.pem`         | the server **leaf only** (no chain: clients trust `ca.pem`)  |
//! | `server.key`         | its key                                                      |
//! | `client-NAME.pem`    | client leaf, CN=NAME, O=Portcullis Dev, OU=dev, EKU clientAuth |
//! | `client-NAME.key`    | its key                                                      |
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM. Serial numbers are derived from the public keys, so
//! every run produces new serials.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Common name of the development CA.
pub const DEV_CA_COMMON_NAME: &str = "Portcullis Development CA";
/// Organization written into every development certificate.
pub const DEV_ORGANIZATION: &str = "Portcullis Dev";

/// What `init_dev_certs` should produce.
#[derive(Debug, Clone)]
pub struct DevCertsRequest {
    /// Directory the files are written into; created if missing.
    pub out_dir: PathBuf,
    /// Extra server names besides `localhost`, `127.0.0.1` and `::1`. IP addresses become IP
    /// SANs, everything else DNS SANs (`*.example.com` wildcards are accepted).
    pub hosts: Vec<String>,
    /// Client certificate names (the CN, and the `NAME` in `client-NAME.pem`).
    pub clients: Vec<String>,
    /// Overwrite existing files instead of refusing.
    pub force: bool,
    /// Validity of every certificate, in days from now (must be at least 1).
    pub valid_days: u32,
}

/// Why development certificates could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A target file exists and `force` was not given; nothing was written.
    #[error("{path} already exists; refusing to overwrite it without --force")]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The output directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be written (files listed before it in the run may exist already).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `hosts` entry is neither an IP address nor a valid DNS name.
    #[error("invalid host {host:?}: not an IP address or DNS name")]
    InvalidHost {
        /// The offending entry.
        host: String,
    },
    /// A client name cannot be used as a common name and file name.
    #[error(
        "invalid client name {name:?}: use 1-64 characters from A-Z a-z 0-9 . _ - @, \
         not starting with '.'"
    )]
    InvalidClientName {
        /// The offending name.
        name: String,
    },
    /// `valid_days` is zero or too large to represent.
    #[error("invalid validity of {days} days")]
    InvalidValidity {
        /// The requested number of days.
        days: u32,
    },
    /// rcgen failed to generate a key or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// One file to write: its name in `out_dir`, content, and whether it holds a private key.
struct PendingFile {
    name: String,
    content: String,
    secret: bool,
}

/// Generates the development CA, server and client certificates and writes them to
/// `req.out_dir`. Returns the paths written, in order.
///
/// Every input is validated and every target checked before anything is written: with
/// `force == false` an existing target fails the whole run with [`CertsError::Exists`]. Each
/// file is written to a temporary name and renamed into place; key files are created with
/// mode 0600.
pub fn init_dev_certs(req: &DevCertsRequest) -> Result<Vec<PathBuf>, CertsError> {
    let files = generate(req)?;

    if !req.force {
        for file in &files {
            let path = req.out_dir.join(&file.name);
            // symlink_metadata: a dangling symlink is "existing" too.
            if path.symlink_metadata().is_ok() {
                return Err(CertsError::Exists { path });
            }
        }
    }

    std::fs::create_dir_all(&req.out_dir).map_err(|source| CertsError::CreateDir {
        path: req.out_dir.clone(),
        source,
    })?;

    let mut written = Vec::with_capacity(files.len());
    for file in &files {
        let path = req.out_dir.join(&file.name);
        write_file(
            &req.out_dir,
            &file.name,
            file.content.as_bytes(),
            file.secret,
        )
        .map_err(|source| CertsError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Builds every certificate and key in memory.
fn generate(req: &DevCertsRequest) -> Result<Vec<PendingFile>, CertsError> {
    let not_before = OffsetDateTime::now_utc() - Duration::hours(1);
    let not_after = OffsetDateTime::now_utc()
        .checked_add(Duration::days(i64::from(req.valid_days)))
        .filter(|_| req.valid_days > 0)
        .ok_or(CertsError::InvalidValidity {
            days: req.valid_days,
        })?;

    let sans = server_sans(&req.hosts)?;
    let clients = client_names(&req.clients)?;

    // CA
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = dn(DEV_CA_COMMON_NAME, None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_params = |cn: &str, ou: Option<&str>, eku: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn, ou);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        params
    };

    let mut files = vec![
        PendingFile {
            name: "ca.pem".into(),
            content: ca_cert.pem(),
            secret: false,
        },
        PendingFile {
            name: "ca.key".into(),
            content: ca_key_pem,
            secret: true,
        },
    ];

    // Server
    let mut server_params = leaf_params(
        "Portcullis Development Server",
        None,
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    server_params.subject_alt_names = sans;
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;
    files.push(PendingFile {
        name: "server.pem".into(),
        content: server_cert.pem(),
        secret: false,
    });
    files.push(PendingFile {
        name: "server.key".into(),
        content: server_key.serialize_pem(),
        secret: true,
    });

    // Clients
    for name in clients {
        let params = leaf_params(name, Some("dev"), ExtendedKeyUsagePurpose::ClientAuth);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        files.push(PendingFile {
            name: format!("client-{name}.pem"),
            content: cert.pem(),
            secret: false,
        });
        files.push(PendingFile {
            name: format!("client-{name}.key"),
            content: key.serialize_pem(),
            secret: true,
        });
    }
    Ok(files)
}

fn dn(common_name: &str, unit: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, DEV_ORGANIZATION);
    if let Some(unit) = unit {
        dn.push(DnType::OrganizationalUnitName, unit);
    }
    dn
}

/// `localhost`, `127.0.0.1`, `::1` and `hosts`, deduplicated, as SANs.
fn server_sans(hosts: &[String]) -> Result<Vec<SanType>, CertsError> {
    let defaults = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let mut sans: Vec<SanType> = Vec::new();
    for host in defaults.iter().chain(hosts) {
        let trimmed = host.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(trimmed);
        let san = if let Ok(ip) = bare.parse::<IpAddr>() {
            SanType::IpAddress(ip)
        } else {
            let name_part = bare.strip_prefix("*.").unwrap_or(bare);
            if rustls_pki_types::DnsName::try_from(name_part).is_err() {
                return Err(CertsError::InvalidHost { host: host.clone() });
            }
            let ia5 = bare
                .to_string()
                .try_into()
                .map_err(|_| CertsError::InvalidHost { host: host.clone() })?;
            SanType::DnsName(ia5)
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// Validated, deduplicated client names (they end up in file names).
fn client_names(clients: &[String]) -> Result<Vec<&str>, CertsError> {
    let mut names: Vec<&str> = Vec::new();
    for name in clients {
        let valid = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
        if !valid {
            return Err(CertsError::InvalidClientName { name: name.clone() });
        }
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Writes `dir/name` via a temporary file and a rename, so a reader never sees half a file
/// and a secret is never readable by others, even for an instant.
fn write_file(dir: &Path, name: &str, content: &[u8], secret: bool) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask can only narrow the mode; make it exact.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::server::WebPkiClientVerifier;
    use rustls::RootCertStore;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    fn request(dir: &Path) -> DevCertsRequest {
        DevCertsRequest {
            out_dir: dir.join("certs"),
            hosts: vec!["proxy.example.test".into(), "10.1.2.3".into()],
            clients: vec!["alice".into(), "svc-orders".into()],
            force: false,
            valid_days: 30,
        }
    }

    fn cert(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    fn roots(dir: &Path) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(cert(&dir.join("ca.pem"))).unwrap();
        Arc::new(roots)
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    #[test]
    fn writes_all_files_with_private_keys_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let req = request(tmp.path());
        let written = init_dev_certs(&req).unwrap();
        let names: Vec<_> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca.key",
                "server.pem",
                "server.key",
                "client-alice.pem",
                "client-alice.key",
                "client-svc-orders.pem",
                "client-svc-orders.key",
            ]
        );
        for path in &written {
            let meta = std::fs::metadata(path).unwrap();
            assert!(meta.len() > 0, "{}", path.display());
            let mode = meta.permissions().mode() & 0o777;
            if path.extension().unwrap() == "key" {
                assert_eq!(mode, 0o600, "{}", path.display());
            } else {
                assert_eq!(mode, 0o644, "{}", path.display());
            }
        }
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(&req.out_dir).unwrap().count(), 8);
    }

    #[test]
    fn second_run_without_force_fails_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut req = request(tmp.path());
        init_dev_certs(&req).unwrap();
        let before: Vec<_> = ["ca.pem", "ca.key", "server.pem", "client-alice.key"]
            .iter()
            .map(|f| std::fs::read(req.out_dir.join(f)).unwrap())
            .collect();

        // Even a run that would only add a new client must not touch anything.
        req.clients.push("bob".into());
        let err = init_dev_certs(&req).unwrap_err();
        match &err {
            CertsError::Exists { path } => assert_eq!(path, &req.out_dir.join("ca.pem")),
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains("ca.pem"));
        assert!(!req.out_dir.join("client-bob.pem").exists());
        let after: Vec<_> = ["ca.pem", "ca.key", "server.pem", "client-alice.key"]
            .iter()
            .map(|f| std::fs::read(req.out_dir.join(f)).unwrap())
            .collect();
        assert_eq!(before, after);

        req.force = true;
        init_dev_certs(&req).unwrap();
        assert_ne!(
            std::fs::read(req.out_dir.join("ca.pem")).unwrap(),
            before[0]
        );
        assert!(req.out_dir.join("client-bob.pem").exists());
    }

    #[test]
    fn force_tightens_permissions_of_an_existing_key_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut req = request(tmp.path());
        req.force = true;
        std::fs::create_dir_all(&req.out_dir).unwrap();
        let key = req.out_dir.join("server.key");
        std::fs::write(&key, "old").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        init_dev_certs(&req).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn server_cert_chains_to_the_ca_for_every_name() {
        let tmp = tempfile::tempdir().unwrap();
        let req = request(tmp.path());
        init_dev_certs(&req).unwrap();
        let dir = &req.out_dir;
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(dir), provider())
            .build()
            .unwrap();
        let server = cert(&dir.join("server.pem"));
        for name in [
            "localhost",
            "127.0.0.1",
            "::1",
            "proxy.example.test",
            "10.1.2.3",
        ] {
            let name = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&server, &[], &name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        let other = ServerName::try_from("other.example.test").unwrap();
        assert!(verifier
            .verify_server_cert(&server, &[], &other, &[], UnixTime::now())
            .is_err());
        // A client certificate is not accepted as a server certificate (EKU).
        let client = cert(&dir.join("client-alice.pem"));
        let localhost = ServerName::try_from("localhost").unwrap();
        assert!(verifier
            .verify_server_cert(&client, &[], &localhost, &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn client_cert_verifies_against_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let req = request(tmp.path());
        init_dev_certs(&req).unwrap();
        let dir = &req.out_dir;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(dir), provider())
            .build()
            .unwrap();
        for name in ["alice", "svc-orders"] {
            let client = cert(&dir.join(format!("client-{name}.pem")));
            verifier
                .verify_client_cert(&client, &[], UnixTime::now())
                .unwrap();
        }
        let server = cert(&dir.join("server.pem"));
        assert!(verifier
            .verify_client_cert(&server, &[], UnixTime::now())
            .is_err());

        // A CA from another run does not vouch for these clients.
        let other = tmp.path().join("other");
        init_dev_certs(&DevCertsRequest {
            out_dir: other.clone(),
            ..req.clone()
        })
        .unwrap();
        let other_verifier = WebPkiClientVerifier::builder_with_provider(roots(&other), provider())
            .build()
            .unwrap();
        let alice = cert(&dir.join("client-alice.pem"));
        assert!(other_verifier
            .verify_client_cert(&alice, &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn keys_load_through_pki_types() {
        let tmp = tempfile::tempdir().unwrap();
        let req = request(tmp.path());
        init_dev_certs(&req).unwrap();
        for key in ["ca.key", "server.key", "client-alice.key"] {
            let der =
                rustls_pki_types::PrivateKeyDer::from_pem_file(req.out_dir.join(key)).unwrap();
            provider().key_provider.load_private_key(der).unwrap();
        }
    }

    #[test]
    fn rejects_bad_input_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut req = request(tmp.path());
        req.clients = vec!["../evil".into()];
        assert!(matches!(
            init_dev_certs(&req),
            Err(CertsError::InvalidClientName { .. })
        ));
        let mut req = request(tmp.path());
        req.hosts = vec!["not a host".into()];
        assert!(matches!(
            init_dev_certs(&req),
            Err(CertsError::InvalidHost { .. })
        ));
        let mut req = request(tmp.path());
        req.valid_days = 0;
        assert!(matches!(
            init_dev_certs(&req),
            Err(CertsError::InvalidValidity { days: 0 })
        ));
        assert!(!req.out_dir.exists());
    }
}
