//! RFC 7677 section 3's SCRAM-SHA-256 exchange, reproduced byte for byte by both sides.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{ScramClient, ScramServer};
use crate::sasl::{Mechanism, Step};
use crate::store::{Password, ScramCredential, UserRecord, UserStore};

const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_store() -> Arc<UserStore> {
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let credential = ScramCredential::derive(
        Mechanism::ScramSha256,
        &Password::new("pencil"),
        &salt,
        4096,
    )
    .unwrap();
    let mut store = UserStore::empty();
    store
        .add(UserRecord::new("user", vec!["reader".into()], Some(credential), None).unwrap())
        .unwrap();
    Arc::new(store)
}

#[test]
fn server_reproduces_rfc7677() {
    let mut server = ScramServer::with_nonce(
        Mechanism::ScramSha256,
        rfc_store(),
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    let Step::Challenge(first) = server.step(CLIENT_FIRST.as_bytes()) else {
        panic!("expected a challenge");
    };
    assert_eq!(String::from_utf8(first).unwrap(), SERVER_FIRST);
    let Step::Success(done) = server.step(CLIENT_FINAL.as_bytes()) else {
        panic!("expected success");
    };
    assert_eq!(String::from_utf8(done.final_message).unwrap(), SERVER_FINAL);
    assert_eq!(done.principal.name, "user");
    assert_eq!(done.principal.roles, vec!["reader".to_owned()]);
}

#[test]
fn client_reproduces_rfc7677() {
    let mut client = ScramClient::with_nonce(
        Mechanism::ScramSha256,
        "user",
        "pencil",
        "rOprNGfwEbeRWgbNEkqO",
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(client.client_first()).unwrap(),
        CLIENT_FIRST
    );
    let last = client.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(last).unwrap(), CLIENT_FINAL);
    client.handle_server_final(SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn client_rejects_a_wrong_server_signature() {
    let mut client = ScramClient::with_nonce(
        Mechanism::ScramSha256,
        "user",
        "pencil",
        "rOprNGfwEbeRWgbNEkqO",
    )
    .unwrap();
    client.client_first();
    client.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
    let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert!(matches!(
        client.handle_server_final(forged.as_bytes()),
        Err(super::ClientError::ServerSignatureMismatch)
    ));
}

#[test]
fn rfc_nonce_changed_by_client_fails() {
    let mut server = ScramServer::with_nonce(
        Mechanism::ScramSha256,
        rfc_store(),
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    );
    server.step(CLIENT_FIRST.as_bytes());
    let tampered = CLIENT_FINAL.replace("k0,p=", "k1,p=");
    let Step::Failure(f) = server.step(tampered.as_bytes()) else {
        panic!("expected failure");
    };
    assert_eq!(f.kind, crate::sasl::FailureKind::BadCredentials);
    assert_eq!(f.detail, "nonce does not match");
}
