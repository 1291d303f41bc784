//! A minimal HTTP/1.1 client for the proxy's admin listener (`/readyz`, `/healthz`,
//! `/metrics`, `/audit/...`). Three endpoints on loopback do not justify an HTTP client crate and its
//! build time; a raw request with `Connection: close` and bounded timeouts is enough.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// A parsed response: status code and body (headers are dropped).
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Everything after the blank line (chunked encoding is not decoded).
    pub body: String,
}

/// `GET path` on `addr`, with `timeout` for connect, each read and each write.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "GET", path, timeout)
}

/// `POST path` with an empty body on `addr`, timeouts as [`get`].
pub fn post(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "POST", path, timeout)
}

/// `POST path` with an empty body and `Authorization: Bearer <token>`.
pub fn post_with_token(
    addr: SocketAddr,
    path: &str,
    token: &str,
    timeout: Duration,
) -> io::Result<Response> {
    send(
        addr,
        "POST",
        path,
        &addr.to_string(),
        &format!("Authorization: Bearer {token}\r\n"),
        timeout,
    )
}

/// `GET path` sending `Host: host` (a browser reaching the admin API under another name).
pub fn get_with_host(
    addr: SocketAddr,
    path: &str,
    host: &str,
    timeout: Duration,
) -> io::Result<Response> {
    send(addr, "GET", path, host, "", timeout)
}

fn request(addr: SocketAddr, method: &str, path: &str, timeout: Duration) -> io::Result<Response> {
    send(addr, method, path, &addr.to_string(), "", timeout)
}

/// One request; `headers` are extra header lines, each ending in `\r\n`.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &str,
    timeout: Duration,
) -> io::Result<Response> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n{headers}{body}\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP response: {status_line:?}"),
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok(Response { status, body })
}
