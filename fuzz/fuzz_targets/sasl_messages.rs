//! Every SASL message the proxy parses from a client before it is authenticated, and the
//! server messages it parses as a client of the cluster.
//!
//! The input's first byte picks the parser; the rest is the message. Covered: PLAIN and
//! SCRAM-SHA-256/512 server steps (two steps, so the client-final parser runs after a real
//! server-first), the OAUTHBEARER client-first grammar, JWKS documents, and the SCRAM client
//! parsing a server-first message. Checked: no panic, and nothing authenticates against an
//! empty credential store.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use portcullis_auth::jwks::KeySet;
use portcullis_auth::oauthbearer::message;
use portcullis_auth::plain::PlainServer;
use portcullis_auth::scram::{ScramClient, ScramServer};
use portcullis_auth::store::UserStore;
use portcullis_auth::{Mechanism, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let users = Arc::new(UserStore::empty());
    match selector % 5 {
        0 => {
            let step = PlainServer::new(users).step(body);
            assert!(!matches!(step, Step::Success(_)));
        }
        1 | 2 => {
            let mechanism = if selector % 5 == 1 {
                Mechanism::ScramSha256
            } else {
                Mechanism::ScramSha512
            };
            let mut server = ScramServer::new(mechanism, users);
            let half = body.len() / 2;
            let first = server.step(&body[..half]);
            assert!(!matches!(first, Step::Success(_)));
            let second = server.step(&body[half..]);
            assert!(!matches!(second, Step::Success(_)));
        }
        3 => {
            let _ = message::parse(body);
        }
        _ => {
            let _ = KeySet::parse(body);
            if let Ok(mut client) = ScramClient::new(Mechanism::ScramSha256, "user", "pencil") {
                let _ = client.client_first();
                let _ = client.handle_server_first(body);
            }
        }
    }
});
