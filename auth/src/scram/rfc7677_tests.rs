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

/// Builds the RFC's client-final for an arbitrary gs2 header, computing the proof by hand.
fn client_final_for(gs2_header: &str, server_first: &str) -> String {
    use super::hash::{xor, ScramHash};
    let hash = ScramHash::Sha256;
    let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    let salted = hash.salted_password(b"pencil", &salt, 4096);
    let client_key = hash.client_key(&salted);
    let stored_key = hash.stored_key(&client_key);
    let nonce = server_first.split(',').next().unwrap();
    let without_proof = format!("c={},{nonce}", STANDARD.encode(gs2_header));
    let auth_message = format!("n=user,r=rOprNGfwEbeRWgbNEkqO,{server_first},{without_proof}");
    let signature = hash.hmac(&stored_key, auth_message.as_bytes());
    let proof = xor(&client_key, &signature).unwrap();
    format!("{without_proof},p={}", STANDARD.encode(proof.as_slice()))
}

#[test]
fn y_flag_and_authzid_are_bound_by_their_exact_header() {
    for gs2 in ["y,,", "n,a=user,", "y,a=user,"] {
        let mut server = ScramServer::with_nonce(
            Mechanism::ScramSha256,
            rfc_store(),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        );
        let first = format!("{gs2}n=user,r=rOprNGfwEbeRWgbNEkqO");
        let Step::Challenge(server_first) = server.step(first.as_bytes()) else {
            panic!("expected a challenge for {gs2}");
        };
        let server_first = String::from_utf8(server_first).unwrap();
        assert_eq!(server_first, SERVER_FIRST);
        let last = client_final_for(gs2, &server_first);
        let Step::Success(done) = server.step(last.as_bytes()) else {
            panic!("expected success for {gs2}");
        };
        assert_eq!(done.principal.name, "user");
    }
}
