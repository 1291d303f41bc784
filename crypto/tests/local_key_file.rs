//! The local root-key file: creation, refusal of unsafe or malformed files, wrapping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;

use portcullis_crypto::local_key_file::FILE_HEADER;
use portcullis_crypto::{
    KeyFileError, LocalKeyFile, ProviderError, RootKeyProvider, SecretKey, WrapContext,
};

const CTX: WrapContext<'static> = WrapContext {
    topic: "payments",
    kek_version: 1,
};

#[test]
fn init_creates_0600_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let created = LocalKeyFile::init(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        LocalKeyFile::init(&path),
        Err(KeyFileError::Exists { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before, "file untouched");
    let loaded = LocalKeyFile::load(&path).unwrap();
    assert_eq!(created.root_key_id(), loaded.root_key_id());
    let kek = SecretKey::random().unwrap();
    let wrapped = created.wrap(&kek, CTX).unwrap();
    assert_eq!(loaded.unwrap(&wrapped, CTX).unwrap(), kek);
}

#[test]
fn load_refuses_group_or_other_access() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    LocalKeyFile::init(&path).unwrap();
    for mode in [0o640, 0o604, 0o660, 0o644] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        match LocalKeyFile::load(&path) {
            Err(KeyFileError::TooOpen { mode: m, .. }) => assert_eq!(m, mode),
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(LocalKeyFile::load(&path).is_ok());
}

fn write_0600(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn load_refuses_malformed_files_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    let good = "ab".repeat(32);

    write_0600(&path, &format!("{FILE_HEADER}\n{}\n", &good[..62]));
    assert!(matches!(
        LocalKeyFile::load(&path),
        Err(KeyFileError::WrongLength { found: 62, .. })
    ));
    write_0600(&path, &format!("{FILE_HEADER}\n{good}00\n"));
    assert!(matches!(
        LocalKeyFile::load(&path),
        Err(KeyFileError::WrongLength { found: 66, .. })
    ));
    write_0600(&path, &format!("something else\n{good}\n"));
    assert!(matches!(
        LocalKeyFile::load(&path),
        Err(KeyFileError::BadHeader { .. })
    ));
    write_0600(&path, &format!("{FILE_HEADER}\n{}zz\n", &good[..62]));
    let err = LocalKeyFile::load(&path).unwrap_err();
    assert!(matches!(err, KeyFileError::Malformed { .. }), "{err:?}");
    write_0600(&path, &format!("{FILE_HEADER}\n{good}\nextra\n"));
    assert!(matches!(
        LocalKeyFile::load(&path),
        Err(KeyFileError::Malformed { .. })
    ));
    write_0600(&path, "");
    assert!(matches!(
        LocalKeyFile::load(&path),
        Err(KeyFileError::BadHeader { .. })
    ));
    assert!(matches!(
        LocalKeyFile::load(&dir.path().join("missing")),
        Err(KeyFileError::Io { .. })
    ));
    assert!(matches!(
        LocalKeyFile::load(dir.path()),
        Err(KeyFileError::NotAFile { .. })
    ));
    // The valid form loads, and no error message above contained the key.
    write_0600(&path, &format!("{FILE_HEADER}\n{good}\n"));
    let loaded = LocalKeyFile::load(&path).unwrap();
    assert!(!format!("{loaded:?}").contains(&good));
}

#[test]
fn errors_and_debug_never_contain_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("root.key");
    LocalKeyFile::init(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let key_hex = text.lines().nth(1).unwrap().to_owned();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalKeyFile::load(&path).unwrap_err().to_string();
    assert!(!err.contains(&key_hex));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let provider = LocalKeyFile::load(&path).unwrap();
    assert!(!format!("{provider:?}").contains(&key_hex));
    let wrapped = provider.wrap(&SecretKey::random().unwrap(), CTX).unwrap();
    assert!(format!("{wrapped:?}").contains("blob_len"));
}

#[test]
fn unwrap_binds_context_root_key_and_provider() {
    let a = LocalKeyFile::from_key(&SecretKey::from_bytes([1; 32])).unwrap();
    let b = LocalKeyFile::from_key(&SecretKey::from_bytes([2; 32])).unwrap();
    assert_ne!(a.root_key_id(), b.root_key_id());
    let kek = SecretKey::random().unwrap();
    let wrapped = a.wrap(&kek, CTX).unwrap();
    assert_eq!(wrapped.provider, "local-file");

    let other_topic = WrapContext {
        topic: "audit",
        kek_version: 1,
    };
    let other_version = WrapContext {
        topic: "payments",
        kek_version: 2,
    };
    for ctx in [other_topic, other_version] {
        assert!(matches!(
            a.unwrap(&wrapped, ctx),
            Err(ProviderError::Unwrap { .. })
        ));
    }
    assert!(matches!(
        b.unwrap(&wrapped, CTX),
        Err(ProviderError::WrongRootKey { .. })
    ));
    let mut foreign = wrapped.clone();
    foreign.provider = "aws-kms".to_owned();
    assert!(matches!(
        a.unwrap(&foreign, CTX),
        Err(ProviderError::WrongProvider { .. })
    ));
    let mut flipped = wrapped.clone();
    flipped.blob[20] ^= 1;
    assert!(matches!(
        a.unwrap(&flipped, CTX),
        Err(ProviderError::Unwrap { .. })
    ));
    let mut short = wrapped;
    short.blob.pop();
    assert!(matches!(
        a.unwrap(&short, CTX),
        Err(ProviderError::Malformed(_))
    ));
}
