//! The admin router over a running log, through a real HTTP/1 connection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use portcullis_audit::{AuditLog, AuditLogConfig, AuditSink, Category, Event, Outcome};

async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8(buf).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(dir.path(), &AuditLogConfig::default()).unwrap();
    for i in 0..10 {
        log.emit(
            Event::new(Category::Authz, "kafka.Produce", Outcome::Deny)
                .principal(format!("u{}", i % 2)),
        );
    }
    log.checkpoint_now().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = portcullis_audit::admin_api::router(log.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (status, body) = get(addr, "GET", "/audit/query?principal=u1&outcome=deny").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"principal\":\"u1\"") && !body.contains("\"u0\""),
        "{body}"
    );
    let (status, body) = get(addr, "GET", "/audit/checkpoint").await;
    assert_eq!(status, 200);
    assert!(body.contains("\n11\n"), "{body}");
    let (status, body) = get(addr, "GET", "/audit/prove/3").await;
    assert_eq!(status, 200, "{body}");
    let (_, keys) = get(addr, "GET", "/audit/pubkey").await;
    let key = portcullis_audit::note::VerifierKey::parse(keys.trim()).unwrap();
    portcullis_audit::read::verify_proof(&body, &[key]).unwrap();
    let (status, _) = get(addr, "GET", "/audit/tail?n=3").await;
    assert_eq!(status, 200);
    let (status, _) = get(addr, "GET", "/audit/query?bogus=1").await;
    assert_eq!(status, 400);
    let (status, body) = get(addr, "POST", "/audit/rotate-key").await;
    assert_eq!(status, 200, "{body}");
    log.shutdown().await;
}
