//! DNS-rebinding defence for the admin API: every request's `Host` must name the admin
//! listener itself.
//!
//! A web page can make a browser on the proxy's host send requests to a loopback admin API
//! under a name the attacker controls (DNS rebinding: `evil.example` first resolves to the
//! attacker, then to 127.0.0.1). The browser then treats the admin API as same-origin with
//! the page and lets it read the answers. What the browser cannot change is the `Host` header:
//! it carries the attacker's name. So a request is answered only when its `Host` (and the
//! authority of an absolute request target, if any) is
//!
//! - an IP address literal (`127.0.0.1:9190`, `[::1]:9190`, `10.0.0.5:9190`): rebinding
//!   needs a name, and orchestrator probes and Prometheus scrapes by address keep working;
//! - `localhost`;
//! - or one of the names in `admin.allowed_hosts` (for a DNS name the admin API is reached
//!   under, such as `proxy-1.internal`).
//!
//! Names compare case-insensitively, without the port and without a trailing dot. Anything
//! else (including a missing `Host`) is answered 403 and not served.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The `Host` names the admin API answers besides IP literals and `localhost`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    names: Vec<String>,
}

impl AllowedHosts {
    /// IP literals and `localhost`, plus `names` (host names without port).
    pub fn new(names: &[String]) -> AllowedHosts {
        AllowedHosts {
            names: names.iter().map(|n| normalize(n)).collect(),
        }
    }

    /// Whether a request whose `Host` header is `host` (`name[:port]`) may be answered.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if name.parse::<IpAddr>().is_ok() || name == "localhost" {
            return true;
        }
        self.names.contains(&name)
    }
}

/// Why `name` cannot be an entry of `admin.allowed_hosts`, if it cannot.
pub fn check_allowed_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a host name (letters, digits, '-' and '.'; no port, no scheme, no wildcard)"
        ))
    }
}

/// Lower case, without one trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The name part of `name[:port]`, `[v6]` or `[v6]:port`, normalized; `None` if malformed.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        return (port_ok && inside.parse::<std::net::Ipv6Addr>().is_ok())
            .then(|| inside.to_ascii_lowercase());
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return None,
        None => host,
    };
    (!name.is_empty()).then(|| normalize(name))
}

/// Middleware: answers 403 unless the request's `Host` (and absolute target) is allowed.
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let header_ok = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| allowed.allows(h));
    let target_ok = request
        .uri()
        .authority()
        .is_none_or(|a| allowed.allows(a.as_str()));
    if header_ok && target_ok {
        return next.run(request).await;
    }
    tracing::debug!(path = %request.uri().path(), "admin request refused: Host not allowed");
    (
        StatusCode::FORBIDDEN,
        "the Host header does not name this admin listener (an IP address, localhost, or a name in admin.allowed_hosts)\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_localhost_and_configured_names_only() {
        let hosts = AllowedHosts::new(&["Proxy-1.Internal.".to_string()]);
        for ok in [
            "127.0.0.1:9190",
            "127.0.0.1",
            "[::1]:9190",
            "[::1]",
            "10.1.2.3:80",
            "localhost:9190",
            "LOCALHOST",
            "localhost.",
            "proxy-1.internal:9190",
            "PROXY-1.internal",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:9190",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io:9190",
            "",
            ":9190",
            "[::1",
            "[evil]:9190",
            "localhost:http",
            "proxy-1.internal.evil:9190",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    #[test]
    fn configured_names_are_plain_host_names() {
        assert!(check_allowed_name("proxy-1.internal").is_ok());
        for bad in ["", "proxy:9190", "http://proxy", "*.internal", "a b"] {
            assert!(check_allowed_name(bad).is_err(), "{bad}");
        }
    }
}
