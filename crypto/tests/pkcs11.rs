//! The PKCS#11 root-key provider against a real token: SoftHSM2 from Debian's packages.
//!
//! The test process gets its own SoftHSM2 configuration and token directory (SOFTHSM2_CONF is
//! read once, when the module is initialized, and a module is initialized once per process),
//! with tokens made by `softhsm2-util --init-token` before any test opens the module. Each
//! test uses its own token or key label, so tests may run in parallel.

#![cfg(feature = "pkcs11")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use portcullis_crypto::pkcs11::{Pkcs11Config, Pkcs11Error, Pkcs11Root, BLOB_LEN};
use portcullis_crypto::{
    DekLimits, Keyring, MemoryStore, ProviderError, RegistryStore as _, RootKeyProvider, SecretKey,
    WrapContext, WrappedKey,
};

const INSTALL: &str = "run `bash scripts/install-test-deps.sh` (installs Debian's softhsm2)";
const USER_PIN: &str = "20261204";
const SO_PIN: &str = "55667788";
/// Tokens made up front: the main one, one whose PIN is only ever given wrong, an empty one,
/// one that is logged out under a provider's feet, one whose key is replaced.
const TOKENS: [&str; 5] = [
    "portcullis-main",
    "portcullis-pin",
    "portcullis-empty",
    "portcullis-reset",
    "portcullis-replace",
];

struct Hsm {
    _dir: tempfile::TempDir,
    module: PathBuf,
    pin_file: PathBuf,
    wrong_pin_file: PathBuf,
    open_pin_file: PathBuf,
}

fn module_path() -> PathBuf {
    std::env::var_os("PORTCULLIS_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

fn pin_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// The process's SoftHSM2 setup, made on first use.
fn hsm() -> &'static Hsm {
    static HSM: OnceLock<Hsm> = OnceLock::new();
    HSM.get_or_init(|| {
        let module = module_path();
        assert!(
            module.is_file(),
            "SoftHSM2 PKCS#11 module not found at {}: {INSTALL}",
            module.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        for label in TOKENS {
            let out = Command::new("softhsm2-util")
                .env("SOFTHSM2_CONF", &conf)
                .args(["--init-token", "--free", "--label", label])
                .args(["--pin", USER_PIN, "--so-pin", SO_PIN])
                .output()
                .unwrap_or_else(|e| panic!("softhsm2-util could not be run ({e}): {INSTALL}"));
            assert!(
                out.status.success(),
                "softhsm2-util --init-token {label}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Read by SoftHSM2 when the module is first initialized, after this point.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        Hsm {
            module,
            pin_file: pin_file(dir.path(), "pin", &format!("{USER_PIN}\n"), 0o600),
            wrong_pin_file: pin_file(dir.path(), "wrong-pin", "11112222\n", 0o600),
            open_pin_file: pin_file(dir.path(), "open-pin", USER_PIN, 0o644),
            _dir: dir,
        }
    })
}

fn config(token: &str, key: &str) -> Pkcs11Config {
    let hsm = hsm();
    Pkcs11Config {
        module: hsm.module.clone(),
        token_label: token.to_owned(),
        key_label: key.to_owned(),
        pin_file: Some(hsm.pin_file.clone()),
        pin_env: None,
    }
}

fn ctx(topic: &str, kek_version: u32) -> WrapContext<'_> {
    WrapContext { topic, kek_version }
}

#[test]
fn wrap_unwrap_binds_the_context() {
    let root = Pkcs11Root::create(&config(TOKENS[0], "root-binding")).unwrap();
    assert_eq!(root.kind(), "pkcs11");
    assert!(
        root.root_key_id()
            .starts_with("portcullis-main/root-binding#"),
        "{}",
        root.root_key_id()
    );
    let kek = SecretKey::random().unwrap();
    let wrapped = root.wrap(&kek, ctx("payments", 1)).unwrap();
    assert_eq!(wrapped.provider, "pkcs11");
    assert_eq!(wrapped.root_key_id, root.root_key_id());
    assert_eq!(wrapped.blob.len(), BLOB_LEN);
    assert!(!wrapped
        .blob
        .windows(8)
        .any(|w| kek.expose().windows(8).any(|k| k == w)));
    assert_eq!(root.unwrap(&wrapped, ctx("payments", 1)).unwrap(), kek);
    // Fresh IV per wrap.
    let again = root.wrap(&kek, ctx("payments", 1)).unwrap();
    assert_ne!(again.blob, wrapped.blob);
    assert_eq!(root.unwrap(&again, ctx("payments", 1)).unwrap(), kek);

    // Another topic or version: the token's GCM tag check fails.
    for other in [ctx("orders", 1), ctx("payments", 2), ctx("payments.x", 1)] {
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
    // Every tampered byte past the version is refused.
    for i in 1..wrapped.blob.len() {
        let mut bad = wrapped.clone();
        bad.blob[i] ^= 0x01;
        assert!(
            matches!(
                root.unwrap(&bad, ctx("payments", 1)),
                Err(ProviderError::Unwrap { .. })
            ),
            "byte {i}"
        );
    }
    let mut bad = wrapped.clone();
    bad.blob[0] = 2;
    assert!(matches!(
        root.unwrap(&bad, ctx("payments", 1)),
        Err(ProviderError::Malformed(_))
    ));
    bad.blob = wrapped.blob[..BLOB_LEN - 1].to_vec();
    assert!(matches!(
        root.unwrap(&bad, ctx("payments", 1)),
        Err(ProviderError::Malformed(_))
    ));
    let foreign = WrappedKey {
        provider: "local-file".into(),
        ..wrapped.clone()
    };
    assert!(matches!(
        root.unwrap(&foreign, ctx("payments", 1)),
        Err(ProviderError::WrongProvider { .. })
    ));
    let other_root = WrappedKey {
        root_key_id: "portcullis-main/root-binding#00".into(),
        ..wrapped.clone()
    };
    assert!(matches!(
        root.unwrap(&other_root, ctx("payments", 1)),
        Err(ProviderError::WrongRootKey { .. })
    ));

    // The key lives on the token: a provider opened later unwraps the same blob.
    let reopened = Pkcs11Root::open(&config(TOKENS[0], "root-binding")).unwrap();
    assert_eq!(reopened.root_key_id(), root.root_key_id());
    assert_eq!(reopened.unwrap(&wrapped, ctx("payments", 1)).unwrap(), kek);
}

#[test]
fn created_key_is_sensitive_and_never_extractable_and_never_replaced() {
    use cryptoki::object::{Attribute, AttributeType, ObjectClass};
    let cfg = config(TOKENS[0], "root-attributes");
    let root = Pkcs11Root::create(&cfg).unwrap();
    match Pkcs11Root::create(&cfg) {
        Err(Pkcs11Error::KeyExists { token, label }) => {
            assert_eq!(
                (token.as_str(), label.as_str()),
                (TOKENS[0], "root-attributes")
            );
        }
        other => panic!("{other:?}"),
    }
    // The first key is still the one in use.
    assert_eq!(
        Pkcs11Root::open(&cfg).unwrap().root_key_id(),
        root.root_key_id()
    );

    // Look at the key with cryptoki directly.
    let session = own_session(TOKENS[0]);
    let pin = cryptoki::types::AuthPin::new(USER_PIN.into());
    let _ = session.login(cryptoki::session::UserType::User, Some(&pin));
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"root-attributes".to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    let attributes = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Private,
                AttributeType::Wrap,
            ],
        )
        .unwrap();
    for attribute in attributes {
        match attribute {
            Attribute::Token(v)
            | Attribute::Sensitive(v)
            | Attribute::NeverExtractable(v)
            | Attribute::Private(v) => {
                assert!(v, "{attribute:?}");
            }
            Attribute::Extractable(v) | Attribute::Wrap(v) => assert!(!v, "{attribute:?}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A session of this process on `token`, opened with cryptoki directly (the module is
/// already initialized by a provider, so `C_Initialize` answers "already initialized").
fn own_session(token: &str) -> cryptoki::session::Session {
    own_session_rw(token, false)
}

fn own_session_rw(token: &str, rw: bool) -> cryptoki::session::Session {
    let ctx = cryptoki::context::Pkcs11::new(&hsm().module).unwrap();
    let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == token)
        .unwrap();
    if rw {
        ctx.open_rw_session(slot).unwrap()
    } else {
        ctx.open_ro_session(slot).unwrap()
    }
}

#[test]
fn a_key_replaced_under_the_same_label_is_not_used() {
    use cryptoki::object::{Attribute, ObjectClass};
    let cfg = config(TOKENS[4], "root");
    let root = Pkcs11Root::create(&cfg).unwrap();
    let kek = SecretKey::random().unwrap();
    let wrapped = root.wrap(&kek, ctx("t", 1)).unwrap();
    // Destroy the key behind the provider's back and make another with the same label.
    let session = own_session_rw(TOKENS[4], true);
    let pin = cryptoki::types::AuthPin::new(USER_PIN.into());
    let _ = session.login(cryptoki::session::UserType::User, Some(&pin));
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"root".to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    session.destroy_object(found[0]).unwrap();
    let replacement = Pkcs11Root::create(&cfg).unwrap();
    assert_ne!(replacement.root_key_id(), root.root_key_id());
    // The old provider refuses to go on with the new key under the old id...
    for result in [
        root.wrap(&kek, ctx("t", 1)).map(|_| ()),
        root.unwrap(&wrapped, ctx("t", 1)).map(|_| ()),
    ] {
        match result {
            Err(ProviderError::Backend(m)) => assert!(m.contains("replaced"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // ...and the new key reports old blobs as another root key's.
    assert!(matches!(
        replacement.unwrap(&wrapped, ctx("t", 1)),
        Err(ProviderError::WrongRootKey { .. })
    ));
}

#[test]
fn provider_logs_in_again_after_the_token_logged_it_out() {
    let root = Pkcs11Root::create(&config(TOKENS[3], "root")).unwrap();
    let kek = SecretKey::random().unwrap();
    let wrapped = root.wrap(&kek, ctx("t", 1)).unwrap();
    for _ in 0..2 {
        // Login state is per process and token: this logs the provider's session out too.
        own_session(TOKENS[3]).logout().unwrap();
        assert_eq!(root.unwrap(&wrapped, ctx("t", 1)).unwrap(), kek);
        own_session(TOKENS[3]).logout().unwrap();
        let again = root.wrap(&kek, ctx("t", 2)).unwrap();
        assert_eq!(root.unwrap(&again, ctx("t", 2)).unwrap(), kek);
    }
}

#[test]
fn keyring_round_trip_through_the_token() {
    let cfg = config(TOKENS[0], "root-keyring");
    let root: Arc<dyn RootKeyProvider> = Arc::new(Pkcs11Root::create(&cfg).unwrap());
    let store = Arc::new(MemoryStore::new());
    let ring = Keyring::new(root, store.clone(), DekLimits::default());
    let before = ring.encrypt_value("orders", b"order 1").unwrap();
    assert_eq!(ring.rotate_kek("orders").unwrap(), 2);
    ring.rewrap_deks("orders").unwrap();
    ring.destroy_kek_version("orders", 1).unwrap();
    let after = ring.encrypt_value("orders", b"order 2").unwrap();
    // Every KEK in the registry was wrapped by the token.
    let keks = store.scan_prefix(b"kek/").unwrap();
    assert_eq!(keks.len(), 1);
    for (_, value) in &keks {
        let text = String::from_utf8(value.clone()).unwrap();
        assert!(text.contains("\"pkcs11\""), "{text}");
    }
    // A new process (new provider, new keyring, same registry) reads both records: the KEK
    // unwraps on the token.
    drop(ring);
    let root: Arc<dyn RootKeyProvider> = Arc::new(Pkcs11Root::open(&cfg).unwrap());
    let ring = Keyring::new(root, store, DekLimits::default());
    assert_eq!(ring.decrypt_value("orders", &before).unwrap(), b"order 1");
    assert_eq!(ring.decrypt_value("orders", &after).unwrap(), b"order 2");
}

#[test]
fn wrong_pin_is_refused_without_showing_it() {
    let mut cfg = config(TOKENS[1], "root");
    cfg.pin_file = Some(hsm().wrong_pin_file.clone());
    let err = Pkcs11Root::open(&cfg).unwrap_err();
    assert!(
        matches!(err, Pkcs11Error::WrongPin { ref token } if token == TOKENS[1]),
        "{err:?}"
    );
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("wrong PIN"), "{shown}");
    assert!(
        !shown.contains("11112222") && !shown.contains(USER_PIN),
        "{shown}"
    );
    // Same for create.
    assert!(matches!(
        Pkcs11Root::create(&cfg),
        Err(Pkcs11Error::WrongPin { .. })
    ));
}

#[test]
fn missing_module_token_key_and_unsafe_pin_file() {
    let mut cfg = config(TOKENS[2], "absent-key");
    match Pkcs11Root::open(&cfg) {
        Err(Pkcs11Error::KeyNotFound { token, label }) => {
            assert_eq!((token.as_str(), label.as_str()), (TOKENS[2], "absent-key"));
        }
        other => panic!("{other:?}"),
    }
    cfg.token_label = "no-such-token".into();
    match Pkcs11Root::open(&cfg) {
        Err(e @ Pkcs11Error::TokenNotFound { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains("no-such-token") && shown.contains(TOKENS[0]),
                "{shown}"
            );
        }
        other => panic!("{other:?}"),
    }
    cfg.module = PathBuf::from("/nonexistent/libpkcs11.so");
    match Pkcs11Root::open(&cfg) {
        Err(e @ Pkcs11Error::ModuleNotFound { .. }) => {
            assert!(e.to_string().contains("/nonexistent/libpkcs11.so"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // A file that is not a PKCS#11 module.
    cfg.module = hsm().pin_file.clone();
    assert!(matches!(
        Pkcs11Root::open(&cfg),
        Err(Pkcs11Error::ModuleLoad { .. })
    ));

    let mut cfg = config(TOKENS[0], "root-binding");
    cfg.pin_file = Some(hsm().open_pin_file.clone());
    let err = Pkcs11Root::open(&cfg).unwrap_err();
    assert!(matches!(err, Pkcs11Error::Pin(_)), "{err:?}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert!(!err.to_string().contains(USER_PIN));
    cfg.pin_file = None;
    cfg.pin_env = Some("PORTCULLIS_TEST_PIN_THAT_IS_NOT_SET".into());
    let err = Pkcs11Root::open(&cfg).unwrap_err();
    assert!(
        err.to_string()
            .contains("PORTCULLIS_TEST_PIN_THAT_IS_NOT_SET"),
        "{err}"
    );
}
