//! The credential store file: round trips, validation messages, permissions, and the
//! reloading watcher.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_auth::plain::PlainServer;
use portcullis_auth::store::{
    Password, ScramCredential, SharedUserStore, StoreError, UserRecord, UserStore,
};
use portcullis_auth::{Mechanism, Step};

fn sample() -> UserStore {
    let mut store = UserStore::empty();
    store
        .add(
            UserRecord::with_password(
                "alice",
                vec!["admin".into(), "ops.team".into()],
                &Password::new("wonderland"),
                4096,
            )
            .unwrap(),
        )
        .unwrap();
    let only512 =
        ScramCredential::generate(Mechanism::ScramSha512, &Password::new("builder"), 5000).unwrap();
    store
        .add(UserRecord::new("bob@example.com", vec![], None, Some(only512)).unwrap())
        .unwrap();
    store
}

/// A valid file with one user whose fields are then edited by the tests.
fn one_user_file() -> String {
    let mut store = UserStore::empty();
    store
        .add(
            UserRecord::with_password("carol", vec!["r1".into()], &Password::new("pw"), 4096)
                .unwrap(),
        )
        .unwrap();
    store.to_toml()
}

fn parse_err(text: &str) -> String {
    match UserStore::parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn plain_ok(store: Arc<UserStore>, user: &str, password: &str) -> bool {
    let message = format!("\0{user}\0{password}");
    matches!(
        PlainServer::new(store).step(message.as_bytes()),
        Step::Success(_)
    )
}

#[test]
fn save_and_load_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    let store = sample();
    store.save(&path).unwrap();
    let loaded = UserStore::load(&path).unwrap();
    assert_eq!(loaded, store);
    assert_eq!(
        loaded.names().collect::<Vec<_>>(),
        ["alice", "bob@example.com"]
    );
    assert!(loaded.contains("alice"));
    assert!(!loaded.contains("mallory"));
    let alice = loaded.lookup("alice").unwrap();
    assert_eq!(alice.roles(), ["admin", "ops.team"]);
    assert_eq!(
        alice
            .credential(Mechanism::ScramSha256)
            .unwrap()
            .iterations(),
        4096
    );
    assert_eq!(
        alice
            .credential(Mechanism::ScramSha256)
            .unwrap()
            .salt()
            .len(),
        32
    );
    let bob = loaded.lookup("bob@example.com").unwrap();
    assert!(bob.credential(Mechanism::ScramSha256).is_none());
    assert_eq!(
        bob.credential(Mechanism::ScramSha512).unwrap().iterations(),
        5000
    );
    // The loaded material still verifies passwords.
    let loaded = Arc::new(loaded);
    assert!(plain_ok(loaded.clone(), "alice", "wonderland"));
    assert!(plain_ok(loaded.clone(), "bob@example.com", "builder"));
    assert!(!plain_ok(loaded, "alice", "builder"));
    // No leftover temporary files.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn file_holds_no_password_and_debug_no_keys() {
    let store = sample();
    let text = store.to_toml();
    assert!(!text.contains("wonderland"));
    assert!(text.contains("[users.scram-sha-256]"));
    let debug = format!("{store:?}");
    assert!(debug.contains("alice"));
    assert!(!debug.contains("stored_key:"));
    let key = text
        .lines()
        .find_map(|l| l.strip_prefix("stored_key = \""))
        .unwrap()
        .trim_end_matches('"');
    assert!(!debug.contains(key));
}

#[cfg(unix)]
#[test]
fn saved_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    sample().save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Overwriting keeps it private.
    UserStore::empty().save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn empty_and_minimal_files() {
    assert!(UserStore::parse("").unwrap().is_empty());
    assert!(UserStore::parse("version = 1\n").unwrap().is_empty());
    assert!(UserStore::parse(&UserStore::empty().to_toml())
        .unwrap()
        .is_empty());
}

#[test]
fn validation_errors_name_user_and_field() {
    let good = one_user_file();
    UserStore::parse(&good).unwrap();
    let cases: Vec<(String, &[&str])> = vec![
        (
            good.replace("iterations = 4096", "iterations = 100"),
            &["carol", "scram-sha-256.iterations", "4096"],
        ),
        (
            good.replace("iterations = 4096", "iterations = \"many\""),
            &["carol", "iterations"],
        ),
        (
            good.replacen("stored_key = \"", "stored_key = \"AAAA", 1),
            &["carol", "scram-sha-256.stored_key", "32 bytes"],
        ),
        (
            good.replacen("server_key = \"", "server_key = \"!!", 1),
            &["carol", "scram-sha-256.server_key", "base64"],
        ),
        (
            good.replacen("salt = \"", "salt = \"x", 1),
            &["carol", "salt"],
        ),
        (
            good.replacen("salt = ", "pepper = ", 1),
            &["carol", "scram-sha-256.pepper", "unknown key"],
        ),
        (
            good.replace("roles = [\"r1\"]", "roles = [\"r1\", \"bad role\"]"),
            &["carol", "roles[1]"],
        ),
        (
            good.replace("roles = [\"r1\"]", "roles = [\"r1\", \"r1\"]"),
            &["carol", "roles[1]", "twice"],
        ),
        (
            good.replace("roles = [\"r1\"]", "roles = [\"r1\"]\ncomment = \"x\""),
            &["carol", "comment", "unknown key"],
        ),
        (
            good.replace("name = \"carol\"", "name = \"car,ol\""),
            &["users[0]", "name"],
        ),
        (
            good.replace("name = \"carol\"", "name = \"\""),
            &["users[0]", "name"],
        ),
        (good.replace("version = 1", "version = 2"), &["version"]),
        (
            good.replace("version = 1", "verzion = 1"),
            &["verzion", "unknown key"],
        ),
        (
            format!("{good}\n{}", good.replace("version = 1\n", "")),
            &["carol", "name", "twice"],
        ),
    ];
    for (text, needles) in cases {
        let message = parse_err(&text);
        for needle in needles {
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
        }
    }
}

#[test]
fn user_without_credentials_is_rejected() {
    let text = "[[users]]\nname = \"dave\"\nroles = []\n";
    let message = parse_err(text);
    assert!(message.contains("dave"), "{message}");
    assert!(message.contains("scram-sha-256"), "{message}");
}

#[test]
fn errors_never_quote_key_material() {
    let good = one_user_file();
    let key = good
        .lines()
        .find_map(|l| l.strip_prefix("stored_key = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_owned();
    // Wrong type, wrong length, and a syntax error on the line with the key.
    for text in [
        good.replacen(&format!("\"{key}\""), &format!("[\"{key}\"]"), 1),
        good.replacen(&key, &format!("{key}{key}"), 1),
        good.replacen(&format!("\"{key}\""), &format!("\"{key}"), 1),
    ] {
        let message = parse_err(&text);
        assert!(!message.contains(&key[..20]), "{message}");
    }
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    let err = UserStore::load(&path).unwrap_err();
    assert!(matches!(err, StoreError::Read { .. }));
    assert!(err.to_string().contains("users.toml"));
    std::fs::write(&path, "[[users]\n").unwrap();
    let err = UserStore::load(&path).unwrap_err();
    assert!(matches!(err, StoreError::Syntax { line: 1, .. }), "{err}");
    assert!(err.to_string().contains("users.toml"));
}

#[test]
fn store_editing() {
    let mut store = sample();
    let dup = UserRecord::with_password("alice", vec![], &Password::new("x"), 4096).unwrap();
    assert!(matches!(
        store.add(dup.clone()),
        Err(StoreError::UserExists(_))
    ));
    store.replace(dup).unwrap();
    assert!(store.lookup("alice").unwrap().roles().is_empty());
    store.remove("alice").unwrap();
    assert!(matches!(
        store.remove("alice"),
        Err(StoreError::NoSuchUser(_))
    ));
    assert!(UserRecord::with_password("x", vec![], &Password::new("p"), 4095).is_err());
    assert!(UserRecord::with_password("a b", vec![], &Password::new("p"), 4096).is_err());
    assert!(
        UserRecord::with_password(&"a".repeat(256), vec![], &Password::new("p"), 4096).is_err()
    );
    assert!(UserRecord::with_password(&"a".repeat(255), vec![], &Password::new("p"), 4096).is_ok());
}

fn write(path: &Path, store: &UserStore) {
    store.save(path).unwrap();
}

#[test]
fn reload_if_changed_swaps_and_keeps_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    write(&path, &sample());
    let shared = SharedUserStore::load(&path).unwrap();
    assert!(!shared.reload_if_changed().unwrap());
    assert!(shared.current().contains("alice"));

    let mut changed = sample();
    changed.remove("alice").unwrap();
    write(&path, &changed);
    assert!(shared.reload_if_changed().unwrap());
    assert!(!shared.current().contains("alice"));

    // Broken file: error once, the last good store stays.
    std::fs::write(&path, "this is not toml [").unwrap();
    let err = shared.reload_if_changed().unwrap_err();
    assert!(err.to_string().contains("users.toml"));
    assert!(!shared.reload_if_changed().unwrap());
    assert!(shared.current().contains("bob@example.com"));

    // Missing file: error once, the last good store stays.
    std::fs::remove_file(&path).unwrap();
    assert!(shared.reload_if_changed().is_err());
    assert!(!shared.reload_if_changed().unwrap());
    assert!(shared.current().contains("bob@example.com"));

    write(&path, &sample());
    assert!(shared.reload_if_changed().unwrap());
    assert!(shared.current().contains("alice"));
}

#[tokio::test]
async fn watcher_picks_up_changes_and_survives_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    write(&path, &UserStore::empty());
    let shared = Arc::new(SharedUserStore::load(&path).unwrap());
    let handle = shared
        .clone()
        .spawn_watcher(Duration::from_millis(20), |_| {});

    async fn wait_for(shared: &SharedUserStore, want: impl Fn(&UserStore) -> bool) {
        for _ in 0..250 {
            if want(&shared.current()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the watcher did not pick up the change");
    }

    write(&path, &sample());
    wait_for(&shared, |s| s.contains("alice")).await;

    std::fs::write(&path, "[[users]]\nname = 5\n").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(shared.current().contains("alice"), "last good store kept");

    let mut changed = sample();
    changed.remove("alice").unwrap();
    write(&path, &changed);
    wait_for(&shared, |s| {
        !s.contains("alice") && s.contains("bob@example.com")
    })
    .await;
    handle.abort();
}
