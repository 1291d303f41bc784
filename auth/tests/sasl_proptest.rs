//! Arbitrary bytes into every step of every SASL mechanism here never panic, and a server
//! never succeeds for a client that does not know the password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, OnceLock};

use proptest::prelude::*;

use portcullis_auth::plain::PlainServer;
use portcullis_auth::scram::{ScramClient, ScramServer};
use portcullis_auth::store::{Password, UserRecord, UserStore};
use portcullis_auth::{Mechanism, Step};

fn store() -> Arc<UserStore> {
    static STORE: OnceLock<Arc<UserStore>> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let mut store = UserStore::empty();
            store
                .add(
                    UserRecord::with_password("alice", vec![], &Password::new("pw"), 4096).unwrap(),
                )
                .unwrap();
            Arc::new(store)
        })
        .clone()
}

/// Bytes that look a little like SCRAM messages more often than uniform noise does.
fn scramish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[nyp]=?[a-z]*,(a=[a-z=,0-9A-Z]*)?,(m=x,)?n=[a-z=0-9A-Z]*,r=[ -~]{0,20}(,[a-z]+=[ -~]*){0,3}"
            .prop_map(String::into_bytes),
        "c=[A-Za-z0-9+/=]{0,8},r=[ -~]{0,40}(,[a-z]=[ -~]*)?,p=[A-Za-z0-9+/=]{0,90}"
            .prop_map(String::into_bytes),
        "(r|s|i|v|e|m)=[ -~]{0,60}(,(r|s|i)=[ -~]{0,30}){0,3}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn plain_server_never_panics(a in proptest::collection::vec(any::<u8>(), 0..200), b in proptest::collection::vec(any::<u8>(), 0..20)) {
        let mut server = PlainServer::new(store());
        let first = server.step(&a);
        prop_assert!(!matches!(first, Step::Challenge(_)));
        prop_assert!(matches!(server.step(&b), Step::Failure(_)));
    }

    #[test]
    fn scram_server_never_panics(m in prop::sample::select(vec![Mechanism::ScramSha256, Mechanism::ScramSha512]), a in scramish(), b in scramish(), c in scramish()) {
        let mut server = ScramServer::new(m, store());
        for msg in [a, b, c] {
            let step = server.step(&msg);
            prop_assert!(!matches!(step, Step::Success(_)));
        }
    }

    #[test]
    fn scram_server_final_step_never_panics(final_message in scramish()) {
        let mut server = ScramServer::new(Mechanism::ScramSha256, store());
        let Step::Challenge(_) = server.step(b"n,,n=alice,r=abc") else { panic!("no challenge") };
        prop_assert!(!matches!(server.step(&final_message), Step::Success(_)));
    }

    #[test]
    fn scram_client_never_panics(first in scramish(), last in scramish()) {
        let mut client = ScramClient::new(Mechanism::ScramSha512, "alice", Password::new("pw")).unwrap();
        client.client_first();
        let _ = client.handle_server_first(&first);
        prop_assert!(client.handle_server_final(&last).is_err());
    }
}
