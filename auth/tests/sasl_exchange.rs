//! PLAIN and SCRAM exchanges between the crate's own clients and servers, and the ways they
//! must fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use portcullis_auth::plain::{PlainClient, PlainServer};
use portcullis_auth::scram::{ClientError, ScramClient, ScramServer};
use portcullis_auth::store::{Password, ScramCredential, UserRecord, UserStore};
use portcullis_auth::{AuthFailure, AuthSource, Authenticated, FailureKind, Mechanism, Step};

const SCRAMS: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

fn store() -> Arc<UserStore> {
    let mut store = UserStore::empty();
    store
        .add(
            UserRecord::with_password(
                "alice",
                vec!["admin".into(), "producer".into()],
                &Password::new("wonderland"),
                4096,
            )
            .unwrap(),
        )
        .unwrap();
    // bob only has a SCRAM-SHA-512 credential.
    let only512 =
        ScramCredential::generate(Mechanism::ScramSha512, &Password::new("builder"), 4096).unwrap();
    store
        .add(UserRecord::new("bob", vec![], None, Some(only512)).unwrap())
        .unwrap();
    Arc::new(store)
}

fn success(step: Step) -> Authenticated {
    match step {
        Step::Success(a) => a,
        other => panic!("expected success, got {other:?}"),
    }
}

fn failure(step: Step) -> AuthFailure {
    match step {
        Step::Failure(f) => f,
        other => panic!("expected failure, got {other:?}"),
    }
}

fn challenge(step: Step) -> Vec<u8> {
    match step {
        Step::Challenge(c) => c,
        other => panic!("expected a challenge, got {other:?}"),
    }
}

/// Runs a SCRAM exchange; returns the server's result of client-final and the client.
fn scram(mechanism: Mechanism, user: &str, password: &str) -> (Step, ScramClient) {
    let mut client = ScramClient::new(mechanism, user, Password::new(password)).unwrap();
    let mut server = ScramServer::new(mechanism, store());
    let server_first = challenge(server.step(&client.client_first()));
    let client_final = client.handle_server_first(&server_first).unwrap();
    (server.step(&client_final), client)
}

#[test]
fn plain_round_trip() {
    let client = PlainClient::new("alice", "wonderland");
    assert!(client.is_sendable());
    let ok = success(PlainServer::new(store()).step(&client.message()));
    assert_eq!(ok.principal.name, "alice");
    assert_eq!(ok.principal.roles, vec!["admin", "producer"]);
    assert_eq!(ok.principal.source, AuthSource::Sasl(Mechanism::Plain));
    assert!(ok.final_message.is_empty());
    assert!(ok.expires_at.is_none());
}

#[test]
fn plain_uses_the_sha512_credential_when_it_is_the_only_one() {
    let ok = success(PlainServer::new(store()).step(b"\0bob\0builder"));
    assert_eq!(ok.principal.name, "bob");
}

#[test]
fn plain_authzid_must_match() {
    success(PlainServer::new(store()).step(b"alice\0alice\0wonderland"));
    let f = failure(PlainServer::new(store()).step(b"bob\0alice\0wonderland"));
    assert_eq!(f.kind, FailureKind::BadCredentials);
}

#[test]
fn plain_wrong_password_and_unknown_user_look_alike() {
    let wrong = failure(PlainServer::new(store()).step(b"\0alice\0wonderlan"));
    let unknown = failure(PlainServer::new(store()).step(b"\0mallory\0wonderland"));
    assert_eq!(wrong.kind, FailureKind::BadCredentials);
    assert_eq!(unknown.kind, FailureKind::UnknownUser);
    assert_eq!(wrong.client_message(), unknown.client_message());
    assert_eq!(wrong.attempted_user.as_deref(), Some("alice"));
    assert_eq!(unknown.attempted_user.as_deref(), Some("mallory"));
    for f in [&wrong, &unknown] {
        assert!(!f.detail.contains("wonderlan"));
        assert!(!format!("{f:?}").contains("wonderlan"));
    }
}

#[test]
fn plain_malformed_and_oversized() {
    for message in [
        &b""[..],
        b"alice",
        b"\0alice",
        b"\0alice\0pw\0extra",
        b"\0\0pw",
        b"\0alice\0",
        b"\0al\xffice\0pw",
    ] {
        let f = failure(PlainServer::new(store()).step(message));
        assert_eq!(f.kind, FailureKind::Malformed, "{message:?}");
    }
    let mut big = b"\0alice\0".to_vec();
    big.resize(5000, b'x');
    assert_eq!(
        failure(PlainServer::new(store()).step(&big)).kind,
        FailureKind::Malformed
    );
}

#[test]
fn plain_message_after_completion_is_illegal() {
    let mut server = PlainServer::new(store());
    success(server.step(b"\0alice\0wonderland"));
    assert_eq!(
        failure(server.step(b"\0alice\0wonderland")).kind,
        FailureKind::IllegalState
    );
    let mut server = PlainServer::new(store());
    failure(server.step(b"\0alice\0nope"));
    assert_eq!(failure(server.step(b"x")).kind, FailureKind::IllegalState);
}

#[test]
fn plain_client_flags_unsendable_credentials() {
    assert!(!PlainClient::new("al\0ice", "x").is_sendable());
    assert!(!PlainClient::new("alice", "").is_sendable());
    let client = PlainClient::new("alice", Password::new("secret"));
    assert_eq!(client.message(), b"\0alice\0secret");
    assert!(!format!("{client:?}").contains("secret"));
}

#[test]
fn scram_round_trip_both_hashes() {
    for mechanism in SCRAMS {
        let (step, mut client) = scram(mechanism, "alice", "wonderland");
        let ok = success(step);
        assert_eq!(ok.principal.name, "alice");
        assert_eq!(ok.principal.roles, vec!["admin", "producer"]);
        assert_eq!(ok.principal.source, AuthSource::Sasl(mechanism));
        assert!(ok.final_message.starts_with(b"v="));
        client.handle_server_final(&ok.final_message).unwrap();
    }
}

#[test]
fn scram_wrong_password_and_unknown_user_look_alike() {
    for mechanism in SCRAMS {
        let wrong = failure(scram(mechanism, "alice", "wonderlan").0);
        let unknown = failure(scram(mechanism, "mallory", "wonderland").0);
        assert_eq!(wrong.kind, FailureKind::BadCredentials);
        assert_eq!(unknown.kind, FailureKind::UnknownUser);
        assert_eq!(wrong.client_message(), unknown.client_message());
        assert_eq!(unknown.attempted_user.as_deref(), Some("mallory"));
    }
}

#[test]
fn scram_unknown_user_gets_a_normal_looking_stable_challenge() {
    for mechanism in SCRAMS {
        let first = |user: &str| {
            let mut server = ScramServer::new(mechanism, store());
            let msg = format!("n,,n={user},r=clientnonce");
            String::from_utf8(challenge(server.step(msg.as_bytes()))).unwrap()
        };
        let salt_of = |s: &str| s.split(',').nth(1).unwrap().to_owned();
        let (a, b) = (first("mallory"), first("mallory"));
        assert_eq!(salt_of(&a), salt_of(&b), "fake salt is deterministic");
        assert_ne!(salt_of(&a), salt_of(&first("eve")));
        assert!(a.starts_with("r=clientnonce"));
        // The iteration count most users have (all have 4096 here), not a tell-tale default.
        assert!(a.ends_with(",i=4096"), "{a}");
    }
}

#[test]
fn scram_user_without_that_variant_behaves_like_unknown() {
    let f = failure(scram(Mechanism::ScramSha256, "bob", "builder").0);
    assert_eq!(f.kind, FailureKind::UnknownUser);
    success(scram(Mechanism::ScramSha512, "bob", "builder").0);
}

#[test]
fn scram_tokenauth_is_rejected_other_extensions_ignored() {
    for mechanism in SCRAMS {
        let mut server = ScramServer::new(mechanism, store());
        let f = failure(server.step(b"n,,n=alice,r=abc,tokenauth=true"));
        assert_eq!(f.kind, FailureKind::UnsupportedExtension);
        let mut server = ScramServer::new(mechanism, store());
        challenge(server.step(b"n,,n=alice,r=abc,someext=value"));
    }
}

#[test]
fn scram_channel_binding_flags() {
    let mut server = ScramServer::new(Mechanism::ScramSha256, store());
    let f = failure(server.step(b"p=tls-unique,,n=alice,r=abc"));
    assert_eq!(f.kind, FailureKind::UnsupportedExtension);
    // `y` is accepted; its own header must then be echoed in c=.
    let mut client =
        ScramClient::new(Mechanism::ScramSha256, "alice", Password::new("wonderland")).unwrap();
    let mut server = ScramServer::new(Mechanism::ScramSha256, store());
    let first = client.client_first();
    let y_first = [b"y".as_slice(), &first[1..]].concat();
    let server_first = challenge(server.step(&y_first));
    let last = client.handle_server_first(&server_first).unwrap();
    // The client echoed `n,,` (biws) but sent `y,,`: the binding does not match.
    let f = failure(server.step(&last));
    assert_eq!(f.kind, FailureKind::BadCredentials);
    assert!(f.detail.contains("channel binding"));
}

#[test]
fn scram_authzid_must_equal_the_user() {
    let mut server = ScramServer::new(Mechanism::ScramSha256, store());
    challenge(server.step(b"n,a=alice,n=alice,r=abc"));
    let mut server = ScramServer::new(Mechanism::ScramSha256, store());
    let f = failure(server.step(b"n,a=bob,n=alice,r=abc"));
    assert_eq!(f.kind, FailureKind::BadCredentials);
}

/// Runs client-first/server-first, then lets `tamper` edit client-final before the server
/// sees it.
fn scram_tampered(tamper: impl Fn(&str) -> String) -> AuthFailure {
    let mut client =
        ScramClient::new(Mechanism::ScramSha256, "alice", Password::new("wonderland")).unwrap();
    let mut server = ScramServer::new(Mechanism::ScramSha256, store());
    let server_first = challenge(server.step(&client.client_first()));
    let last = String::from_utf8(client.handle_server_first(&server_first).unwrap()).unwrap();
    failure(server.step(tamper(&last).as_bytes()))
}

#[test]
fn scram_nonce_mismatch() {
    let f = scram_tampered(|m| m.replacen(",r=", ",r=X", 1));
    assert_eq!(f.kind, FailureKind::BadCredentials);
    assert!(f.detail.contains("nonce"));
}

#[test]
fn scram_tampered_channel_binding() {
    let f = scram_tampered(|m| m.replacen("c=biws", "c=eSws", 1));
    assert_eq!(f.kind, FailureKind::BadCredentials);
    assert!(f.detail.contains("channel binding"));
}

#[test]
fn scram_tampered_proof() {
    let f = scram_tampered(|m| {
        let (head, proof) = m.rsplit_once(",p=").unwrap();
        let flipped = if proof.starts_with('A') { "B" } else { "A" };
        format!("{head},p={flipped}{}", &proof[1..])
    });
    assert_eq!(f.kind, FailureKind::BadCredentials);
    let f = scram_tampered(|m| format!("{m}garbage"));
    assert!(matches!(
        f.kind,
        FailureKind::BadCredentials | FailureKind::Malformed
    ));
}

#[test]
fn scram_messages_after_completion_are_illegal() {
    for (user, password) in [("alice", "wonderland"), ("alice", "nope")] {
        let mut client =
            ScramClient::new(Mechanism::ScramSha512, user, Password::new(password)).unwrap();
        let mut server = ScramServer::new(Mechanism::ScramSha512, store());
        let server_first = challenge(server.step(&client.client_first()));
        let last = client.handle_server_first(&server_first).unwrap();
        let _ = server.step(&last);
        assert_eq!(failure(server.step(&last)).kind, FailureKind::IllegalState);
        assert_eq!(failure(server.step(b"")).kind, FailureKind::IllegalState);
    }
    let mut server = ScramServer::new(Mechanism::ScramSha256, store());
    failure(server.step(b"garbage"));
    assert_eq!(
        failure(server.step(b"n,,n=alice,r=abc")).kind,
        FailureKind::IllegalState
    );
}

#[test]
fn scram_oversized_messages_are_malformed() {
    let mut server = ScramServer::new(Mechanism::ScramSha256, store());
    let mut big = b"n,,n=alice,r=".to_vec();
    big.resize(5000, b'a');
    assert_eq!(failure(server.step(&big)).kind, FailureKind::Malformed);
}

#[test]
fn scram_client_enforces_the_minimum_iteration_count() {
    let mut client =
        ScramClient::new(Mechanism::ScramSha256, "alice", Password::new("wonderland")).unwrap();
    let first = String::from_utf8(client.client_first()).unwrap();
    let nonce = first.rsplit_once("r=").unwrap().1;
    let server_first = format!("r={nonce}srv,s=c2FsdHNhbHRzYWx0,i=4095");
    assert!(matches!(
        client.handle_server_first(server_first.as_bytes()),
        Err(ClientError::Iterations(4095))
    ));
}

#[test]
fn scram_client_rejects_a_foreign_nonce_and_server_errors() {
    let mut client =
        ScramClient::new(Mechanism::ScramSha256, "alice", Password::new("wonderland")).unwrap();
    client.client_first();
    assert!(matches!(
        client.handle_server_first(b"r=someoneelse,s=c2FsdA==,i=4096"),
        Err(ClientError::NonceMismatch)
    ));

    let (step, mut client) = scram(Mechanism::ScramSha256, "alice", "nope");
    failure(step);
    assert!(matches!(
        client.handle_server_final(b"e=invalid-proof"),
        Err(ClientError::ServerError(e)) if e == "invalid-proof"
    ));
}

#[test]
fn scram_client_detects_a_server_without_the_credential() {
    // The server knows a different password for alice: its signature cannot verify.
    let mut other = UserStore::empty();
    other
        .add(UserRecord::with_password("alice", vec![], &Password::new("other"), 4096).unwrap())
        .unwrap();
    let mut client =
        ScramClient::new(Mechanism::ScramSha256, "alice", Password::new("other")).unwrap();
    let mut server = ScramServer::new(Mechanism::ScramSha256, Arc::new(other));
    let server_first = challenge(server.step(&client.client_first()));
    let last = client.handle_server_first(&server_first).unwrap();
    let ok = success(server.step(&last));
    // Replay that server's signature to a client with alice's real password.
    let (step, mut real) = scram(Mechanism::ScramSha256, "alice", "wonderland");
    success(step);
    assert!(matches!(
        real.handle_server_final(&ok.final_message),
        Err(ClientError::ServerSignatureMismatch)
    ));
}

#[test]
fn scram_client_debug_hides_the_password() {
    let client =
        ScramClient::new(Mechanism::ScramSha256, "alice", Password::new("wonderland")).unwrap();
    assert!(!format!("{client:?}").contains("wonderland"));
    assert!(ScramClient::new(Mechanism::Plain, "alice", Password::new("x")).is_err());
}

#[test]
fn scram_usernames_with_comma_and_equals_are_escaped() {
    // Store names cannot hold them, but the client must still encode them.
    let mut client =
        ScramClient::new(Mechanism::ScramSha256, "a,b=c", Password::new("pw")).unwrap();
    let first = String::from_utf8(client.client_first()).unwrap();
    assert!(first.starts_with("n,,n=a=2Cb=3Dc,r="));
}

#[test]
fn unknown_users_see_the_most_common_iteration_count() {
    let mut store = UserStore::empty();
    for (name, iterations) in [("a", 5000), ("b", 5000), ("c", 6000)] {
        store
            .add(UserRecord::with_password(name, vec![], &Password::new("pw"), iterations).unwrap())
            .unwrap();
    }
    let store = Arc::new(store);
    for mechanism in SCRAMS {
        let mut server = ScramServer::new(mechanism, store.clone());
        let first = String::from_utf8(challenge(server.step(b"n,,n=nobody,r=abc"))).unwrap();
        assert!(first.ends_with(",i=5000"), "{first}");
    }
    let mut server = ScramServer::new(Mechanism::ScramSha256, Arc::new(UserStore::empty()));
    let first = String::from_utf8(challenge(server.step(b"n,,n=nobody,r=abc"))).unwrap();
    assert!(first.ends_with(",i=8192"), "{first}");
}
