//! `portcullis users ...` flows through `users::run`, with in-memory stdin and stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use portcullis_auth::plain::PlainServer;
use portcullis_auth::store::{StoreError, UserStore};
use portcullis_auth::users::{run, PasswordSource, UsersCommand, UsersError};
use portcullis_auth::{Mechanism, Step};

/// How the binary will embed the subcommands.
#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: UsersCommand,
}

fn parse(args: &[&str]) -> UsersCommand {
    Cli::try_parse_from([&["users"], args].concat())
        .unwrap()
        .cmd
}

fn exec(path: &Path, args: &[&str], stdin: &str) -> Result<String, UsersError> {
    let mut out = Vec::new();
    run(
        path,
        parse(args),
        &mut Cursor::new(stdin.as_bytes()),
        &mut out,
    )?;
    Ok(String::from_utf8(out).unwrap())
}

fn can_login(path: &Path, user: &str, password: &str) -> bool {
    let store = Arc::new(UserStore::load(path).unwrap());
    let message = format!("\0{user}\0{password}");
    matches!(
        PlainServer::new(store).step(message.as_bytes()),
        Step::Success(_)
    )
}

#[test]
fn add_list_passwd_remove() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");

    let out = exec(
        &path,
        &[
            "add",
            "alice",
            "--password-stdin",
            "--roles",
            "admin,producer",
            "--iterations",
            "4096",
        ],
        "s3cret pass\n",
    )
    .unwrap();
    assert!(out.contains("alice"));
    assert!(!out.contains("s3cret"));
    assert!(can_login(&path, "alice", "s3cret pass"));
    let store = UserStore::load(&path).unwrap();
    let alice = store.lookup("alice").unwrap();
    assert_eq!(alice.roles(), ["admin", "producer"]);
    assert_eq!(
        alice
            .credential(Mechanism::ScramSha512)
            .unwrap()
            .iterations(),
        4096
    );

    let out = exec(&path, &["add", "bob", "--generate"], "").unwrap();
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("generated password (shown once): "))
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 32);
    assert!(generated.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(can_login(&path, "bob", &generated));
    assert_eq!(
        UserStore::load(&path)
            .unwrap()
            .lookup("bob")
            .unwrap()
            .credential(Mechanism::ScramSha256)
            .unwrap()
            .iterations(),
        8192
    );

    let list = exec(&path, &["list"], "").unwrap();
    assert_eq!(list, "alice\troles: admin,producer\nbob\troles: -\n");

    exec(
        &path,
        &["passwd", "alice", "--password-stdin"],
        "new one\r\n",
    )
    .unwrap();
    assert!(can_login(&path, "alice", "new one"));
    assert!(!can_login(&path, "alice", "s3cret pass"));
    let store = UserStore::load(&path).unwrap();
    let alice = store.lookup("alice").unwrap();
    assert_eq!(alice.roles(), ["admin", "producer"], "passwd keeps roles");
    assert_eq!(
        alice
            .credential(Mechanism::ScramSha256)
            .unwrap()
            .iterations(),
        4096,
        "and iterations"
    );

    let out = exec(
        &path,
        &["passwd", "bob", "--generate", "--iterations", "10000"],
        "",
    )
    .unwrap();
    assert!(out.contains("generated password (shown once): "));

    exec(&path, &["remove", "alice"], "").unwrap();
    assert_eq!(exec(&path, &["list"], "").unwrap(), "bob\troles: -\n");
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    exec(&path, &["add", "alice", "--password-stdin"], "pw\n").unwrap();
    let before = std::fs::read(&path).unwrap();

    assert!(matches!(
        exec(&path, &["add", "alice", "--password-stdin"], "pw\n"),
        Err(UsersError::Store(StoreError::UserExists(_)))
    ));
    assert!(matches!(
        exec(&path, &["remove", "nobody"], ""),
        Err(UsersError::Store(StoreError::NoSuchUser(_)))
    ));
    assert!(matches!(
        exec(&path, &["passwd", "nobody", "--generate"], ""),
        Err(UsersError::Store(StoreError::NoSuchUser(_)))
    ));
    assert!(matches!(
        exec(&path, &["add", "carol"], ""),
        Err(UsersError::NoPasswordSource)
    ));
    assert!(matches!(
        exec(&path, &["add", "carol", "--password-stdin"], "\n"),
        Err(UsersError::EmptyPassword)
    ));
    assert!(matches!(
        exec(&path, &["add", "carol", "--password-stdin"], ""),
        Err(UsersError::EmptyPassword)
    ));
    assert!(matches!(
        exec(
            &path,
            &["add", "carol", "--password-stdin"],
            &"x".repeat(2000)
        ),
        Err(UsersError::PasswordTooLong)
    ));
    assert!(matches!(
        exec(&path, &["add", "car,ol", "--generate"], ""),
        Err(UsersError::InvalidName(_))
    ));
    let err = exec(
        &path,
        &["add", "carol", "--generate", "--roles", "ok,not ok"],
        "",
    )
    .unwrap_err();
    assert!(err.to_string().contains("roles[1]"), "{err}");
    let err = exec(
        &path,
        &["add", "carol", "--generate", "--iterations", "1000"],
        "",
    )
    .unwrap_err();
    assert!(err.to_string().contains("iterations"), "{err}");
    // Nothing above changed the file.
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // The CLI refuses both sources at once.
    assert!(Cli::try_parse_from(["users", "add", "x", "--generate", "--password-stdin"]).is_err());
}

#[test]
fn list_of_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = exec(&dir.path().join("nope.toml"), &["list"], "").unwrap_err();
    assert!(err.to_string().contains("nope.toml"));
}

#[test]
fn command_values() {
    assert_eq!(
        parse(&["passwd", "a", "--generate"]),
        UsersCommand::Passwd {
            name: "a".into(),
            password: PasswordSource {
                password_stdin: false,
                generate: true
            },
            iterations: None,
        }
    );
}
