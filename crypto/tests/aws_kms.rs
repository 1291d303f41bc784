//! The AWS KMS root-key provider against moto's KMS, started on loopback by each test.
//!
//! moto implements Encrypt/Decrypt with AES-GCM and the encryption context as associated
//! data, and answers unknown keys with `NotFoundException`, so context binding and error
//! paths are exercised for real; it does not check SigV4 signatures (the signer is checked
//! against AWS's published vectors in `aws_kms::sigv4`'s unit tests).

#![cfg(feature = "aws-kms")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_crypto::aws_kms::{AwsKmsConfig, AwsKmsError, AwsKmsRoot, Credentials};
use portcullis_crypto::{
    DekLimits, Keyring, MemoryStore, ProviderError, RegistryStore as _, RootKeyProvider, SecretKey,
    WrapContext, WrappedKey,
};

const INSTALL: &str =
    "run `bash scripts/install-test-deps.sh` (installs moto[server] into the test virtualenv)";
const REGION: &str = "us-east-1";

/// A moto server on an ephemeral loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    let venv = std::env::var_os("PORTCULLIS_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
                .join("portcullis/venv")
        });
    let server = venv.join("bin/moto_server");
    assert!(
        server.is_file(),
        "moto_server not found at {}: {INSTALL}",
        server.display()
    );
    server
}

impl Moto {
    fn start() -> Self {
        let server = moto_server();
        for _ in 0..3 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(&server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{} could not be started ({e}): {INSTALL}", server.display())
                });
            let mut moto = Moto { child, port };
            if moto.wait_ready() {
                return moto;
            }
        }
        panic!("moto_server did not start on loopback after 3 tries");
    }

    /// Waits until the port accepts connections; false if the server exited (port taken).
    fn wait_ready(&mut self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                eprintln!("moto_server exited ({status}): {err}");
                return false;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "moto_server did not accept connections on port {} within 60 s",
            self.port
        );
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn credentials() -> Credentials {
        Credentials::new("AKIDPORTCULLISTEST", "portcullis-test-secret", None)
    }

    fn create_key(&self) -> String {
        AwsKmsRoot::create_key(
            REGION,
            Some(&self.endpoint()),
            Self::credentials(),
            "portcullis test",
        )
        .unwrap()
    }

    fn config(&self, key_id: &str) -> AwsKmsConfig {
        let mut config = AwsKmsConfig::new(REGION, key_id);
        config.endpoint = Some(self.endpoint());
        config.timeout_ms = 20_000;
        config
    }

    fn provider(&self, key_id: &str) -> AwsKmsRoot {
        AwsKmsRoot::with_credentials(&self.config(key_id), Self::credentials()).unwrap()
    }
}

fn ctx(topic: &str, kek_version: u32) -> WrapContext<'_> {
    WrapContext { topic, kek_version }
}

#[test]
fn wrap_unwrap_binds_the_encryption_context() {
    let moto = Moto::start();
    let arn = moto.create_key();
    assert!(arn.starts_with("arn:aws:kms:us-east-1:"), "{arn}");
    // Configured by bare key id: the provider resolves and pins the ARN.
    let key_id = arn.rsplit('/').next().unwrap();
    let root = moto.provider(key_id);
    assert_eq!(root.kind(), "aws-kms");
    assert_eq!(root.root_key_id(), arn);

    let kek = SecretKey::random().unwrap();
    let wrapped = root.wrap(&kek, ctx("payments", 1)).unwrap();
    assert_eq!(wrapped.provider, "aws-kms");
    assert_eq!(wrapped.root_key_id, arn);
    assert!(wrapped.blob.len() > 32, "{}", wrapped.blob.len());
    assert_eq!(root.unwrap(&wrapped, ctx("payments", 1)).unwrap(), kek);

    for other in [ctx("orders", 1), ctx("payments", 2)] {
        match root.unwrap(&wrapped, other) {
            Err(ProviderError::Unwrap { topic, kek_version }) => {
                assert_eq!(
                    (topic.as_str(), kek_version),
                    (other.topic, other.kek_version)
                );
            }
            r => panic!("{other:?}: {r:?}"),
        }
    }
    let mut tampered = wrapped.clone();
    let last = tampered.blob.len() - 1;
    tampered.blob[last] ^= 0x01;
    assert!(matches!(
        root.unwrap(&tampered, ctx("payments", 1)),
        Err(ProviderError::Unwrap { .. })
    ));
    let foreign = WrappedKey {
        provider: "pkcs11".into(),
        ..wrapped.clone()
    };
    assert!(matches!(
        root.unwrap(&foreign, ctx("payments", 1)),
        Err(ProviderError::WrongProvider { .. })
    ));

    // A blob made under another KMS key: refused before KMS is asked, and refused by KMS
    // if the record is forged to name this key.
    let other = moto.provider(&moto.create_key());
    let elsewhere = other.wrap(&kek, ctx("payments", 1)).unwrap();
    assert!(matches!(
        root.unwrap(&elsewhere, ctx("payments", 1)),
        Err(ProviderError::WrongRootKey { .. })
    ));
    let forged = WrappedKey {
        root_key_id: arn.clone(),
        ..elsewhere
    };
    // AWS answers IncorrectKeyException (an unwrap failure); moto answers
    // AccessDeniedException. Either way, no key comes back.
    match root.unwrap(&forged, ctx("payments", 1)) {
        Err(ProviderError::Unwrap { .. }) => {}
        Err(ProviderError::Backend(m)) if m.contains("AccessDeniedException") => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn keyring_round_trip_through_kms() {
    let moto = Moto::start();
    let arn = moto.create_key();
    let store = Arc::new(MemoryStore::new());
    let ring = Keyring::new(
        Arc::new(moto.provider(&arn)),
        store.clone(),
        DekLimits::default(),
    );
    let before = ring.encrypt_value("orders", b"order 1").unwrap();
    assert_eq!(ring.rotate_kek("orders").unwrap(), 2);
    ring.rewrap_deks("orders").unwrap();
    ring.destroy_kek_version("orders", 1).unwrap();
    let after = ring.encrypt_value("orders", b"order 2").unwrap();
    let keks = store.scan_prefix(b"kek/").unwrap();
    assert_eq!(keks.len(), 1);
    for (_, value) in &keks {
        let text = String::from_utf8(value.clone()).unwrap();
        assert!(
            text.contains("\"aws-kms\"") && text.contains(&arn),
            "{text}"
        );
    }
    drop(ring);
    let root: Arc<dyn RootKeyProvider> = Arc::new(moto.provider(&arn));
    let ring = Keyring::new(root, store, DekLimits::default());
    assert_eq!(ring.decrypt_value("orders", &before).unwrap(), b"order 1");
    assert_eq!(ring.decrypt_value("orders", &after).unwrap(), b"order 2");
}

#[test]
fn unknown_key_and_unreachable_kms_are_clear_errors() {
    let moto = Moto::start();
    let missing = "11111111-2222-3333-4444-555555555555";
    match AwsKmsRoot::with_credentials(&moto.config(missing), Moto::credentials()) {
        Err(e @ AwsKmsError::Kms { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains("DescribeKey") && shown.contains("NotFoundException"),
                "{shown}"
            );
            assert!(!shown.contains("portcullis-test-secret"), "{shown}");
        }
        other => panic!("{other:?}"),
    }

    // A blob that names another root key is refused before KMS is asked.
    let arn = moto.create_key();
    let root = moto.provider(&arn);
    let kek = SecretKey::random().unwrap();
    let wrapped = root.wrap(&kek, ctx("t", 1)).unwrap();
    let renamed = WrappedKey {
        root_key_id: "arn:aws:kms:us-east-1:123456789012:key/other".into(),
        ..wrapped
    };
    assert!(matches!(
        root.unwrap(&renamed, ctx("t", 1)),
        Err(ProviderError::WrongRootKey { .. })
    ));

    // Nothing listens: a transport error naming the operation.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = AwsKmsConfig::new(REGION, &arn);
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    config.timeout_ms = 2_000;
    match AwsKmsRoot::with_credentials(&config, Moto::credentials()) {
        Err(e @ AwsKmsError::Transport { .. }) => {
            assert!(e.to_string().contains("DescribeKey"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Plain HTTP off loopback is refused before any request.
    config.endpoint = Some("http://kms.example.com".into());
    assert!(matches!(
        AwsKmsRoot::with_credentials(&config, Moto::credentials()),
        Err(AwsKmsError::Config(_))
    ));
}
