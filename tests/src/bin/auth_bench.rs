//! `auth_bench`: what authentication costs per connection.
//!
//! Opens `--connections` (default 300) connections one after another for each path and
//! reports connections per second and the ratio to the direct path, all against one broker
//! in one run. Every connection does what a client does before its first real request:
//! ApiVersions, the SASL exchange (or TLS handshake with a client certificate), then one
//! Metadata request answered by the broker, and closes. Paths: direct to the broker
//! (plaintext), through the proxy without authentication, and through the proxy with PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER. Run it through `scripts/bench.sh --auth`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use portcullis_tests::auth::{start, Auth};
use portcullis_tests::proxy::{Proxy, ProxyOptions};
use portcullis_tests::sasl_wire::{RawClient, SaslResult};

fn main() {
    let mut connections = 300usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--connections" => {
                connections = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--connections needs a number")
            }
            other => panic!("unknown flag {other}; flags: --connections N"),
        }
    }
    let setup = start(Auth::default());
    let open = Proxy::start_with(&setup.broker, ProxyOptions::default());
    let token = setup.issuer.token("bench", &[], Duration::from_secs(3600));
    let proxied = setup.proxy.bootstrap();

    type Login<'a> = Box<dyn Fn(&mut RawClient) + 'a>;
    let password = |mechanism: &'static str| -> Login<'_> {
        Box::new(move |c: &mut RawClient| {
            let r = c
                .login_password(mechanism, "alice", "alice-secret")
                .unwrap();
            assert!(matches!(r, SaslResult::Ok { .. }), "{mechanism}: {r:?}");
        })
    };
    let paths: Vec<(&str, String, Login<'_>)> = vec![
        (
            "direct (plaintext)",
            setup.broker.bootstrap(),
            Box::new(|_| {}),
        ),
        (
            "proxy, no authentication",
            open.bootstrap(),
            Box::new(|_| {}),
        ),
        ("proxy, PLAIN", proxied.clone(), password("PLAIN")),
        (
            "proxy, SCRAM-SHA-256",
            proxied.clone(),
            password("SCRAM-SHA-256"),
        ),
        (
            "proxy, SCRAM-SHA-512",
            proxied.clone(),
            password("SCRAM-SHA-512"),
        ),
        (
            "proxy, OAUTHBEARER",
            proxied.clone(),
            Box::new(|c: &mut RawClient| {
                let r = c.login_oauth(&token).unwrap();
                assert!(matches!(r, SaslResult::Ok { .. }), "OAUTHBEARER: {r:?}");
            }),
        ),
    ];
    println!("| path | connections/s | ratio to direct | mean setup |");
    println!("| --- | --- | --- | --- |");
    let mut direct_rate = None;
    for (name, addr, login) in &paths {
        // Warm-up, then the measured run.
        for _ in 0..10 {
            one_connection(addr, login);
        }
        let started = Instant::now();
        for _ in 0..connections {
            one_connection(addr, login);
        }
        let elapsed = started.elapsed();
        let rate = connections as f64 / elapsed.as_secs_f64();
        let base = *direct_rate.get_or_insert(rate);
        println!(
            "| {name} | {rate:.0} | {:.2} | {:.2} ms |",
            rate / base,
            elapsed.as_secs_f64() * 1000.0 / connections as f64
        );
    }
}

fn one_connection(addr: &str, login: &dyn Fn(&mut RawClient)) {
    let mut c = RawClient::connect(addr).unwrap();
    let versions: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .unwrap();
    assert_eq!(versions.error_code, 0);
    login(&mut c);
    c.metadata().unwrap();
}
