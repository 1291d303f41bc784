//! The admin API against a real proxy process (issue 13, item 7): requests under a `Host`
//! that does not name the listener are refused (DNS rebinding); without `admin.token_file`
//! the proxy creates a private token at first start, which every mutating request needs
//! (on loopback too) and which `portcullis audit --config` finds; exports land in private
//! directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use portcullis_tests::audit_proxy::{audit_cli, AuditProxy};
use portcullis_tests::{http, Broker};

const T: Duration = Duration::from_secs(30);

#[test]
fn host_header_token_at_first_start_and_private_exports() {
    let broker = Broker::start();
    let mut proxy = AuditProxy::new(&broker, "checkpoint_interval_ms = 200");
    proxy.start();
    let admin = proxy.admin();

    // DNS rebinding: a browser sends the attacker's name as Host.
    let rebound = http::get_with_host(admin, "/metrics", "rebind.evil.example:9190", T).unwrap();
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    let audit = http::get_with_host(admin, "/audit/tail", "evil.example", T).unwrap();
    assert_eq!(audit.status, 403, "{}", audit.body);
    let by_name =
        http::get_with_host(admin, "/healthz", &format!("localhost:{}", admin.port()), T).unwrap();
    assert_eq!(by_name.status, 200, "{}", by_name.body);
    assert_eq!(http::get(admin, "/readyz", T).unwrap().status, 200);

    // The token the proxy created: private, logged by path only.
    let token_path = proxy.data_dir().join("admin.token");
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = std::fs::read_to_string(&token_path).unwrap();
    let token = token.trim();
    assert!(token.len() >= 64, "{token}");
    let log = proxy.log();
    assert!(
        log.contains("admin.token"),
        "the token's path is logged:\n{log}"
    );
    assert!(!log.contains(token), "the token itself was logged");

    // Mutating requests need it on loopback; reads do not.
    let refused = http::post(admin, "/audit/rotate-key", T).unwrap();
    assert_eq!(refused.status, 401, "{}", refused.body);
    let refused = http::post(admin, "/audit/checkpoint", T).unwrap();
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(http::get(admin, "/audit/pubkey", T).unwrap().status, 200);
    let rotated = http::post_with_token(admin, "/audit/rotate-key", token, T).unwrap();
    assert_eq!(rotated.status, 200, "{}", rotated.body);

    // The CLI: --config finds the created token; --admin alone has none.
    let config = proxy.config().to_string_lossy().into_owned();
    let url = proxy.admin_url();
    let without = audit_cli(&["--admin", &url, "verify"]);
    assert_eq!(without.status.code(), Some(2), "{}", without.stdout);
    assert!(without.stderr.contains("401"), "{}", without.stderr);
    let with = audit_cli(&["--config", &config, "verify"]);
    assert!(
        with.status.success(),
        "audit --config verify against the running proxy:\n{}\n{}",
        with.stdout,
        with.stderr
    );
    assert!(
        with.stdout.contains("OK: the log verifies"),
        "{}",
        with.stdout
    );

    // Exports: a private directory; an existing non-empty one is refused.
    std::thread::sleep(Duration::from_millis(500));
    let out = proxy.scratch().join("export");
    let export = audit_cli(&["--admin", &url, "export", "--out", &out.to_string_lossy()]);
    assert!(
        export.status.success(),
        "{}\n{}",
        export.stdout,
        export.stderr
    );
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let again = audit_cli(&["--admin", &url, "export", "--out", &out.to_string_lossy()]);
    assert!(
        !again.status.success(),
        "exported into a non-empty directory"
    );
    proxy.stop();
}
