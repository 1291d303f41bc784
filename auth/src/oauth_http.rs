//! The one HTTP client setup used to talk to identity providers (JWKS downloads and the
//! client-credentials token endpoint).
//!
//! Both fetch small documents from a configured URL, and both must be safe against a slow,
//! huge or redirecting answer: every request has a timeout, redirects are not followed (a
//! redirect could downgrade `https` to `http` or point somewhere else entirely), and bodies
//! are read only up to a limit. TLS is rustls with aws-lc-rs (reqwest's `rustls` feature)
//! and the platform's trust store; no OpenSSL.

use std::time::Duration;

use oauth2::http;

/// Timeout for connecting to an identity provider.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout for a whole request, body included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an HTTP exchange with an identity provider failed. Carries no credentials: request
/// bodies and headers are never part of it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The client could not be built (TLS setup).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// Connecting, sending or receiving failed (includes timeouts).
    #[error("request failed: {0}")]
    Transport(String),
    /// The server answered with a status other than 2xx (only for [`get_bounded`]).
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The body exceeded the size limit.
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    /// The request could not be converted (a bug, not a network condition).
    #[error("invalid request: {0}")]
    Request(String),
}

/// Builds a client for `url` (already checked by `check_url`). Loopback URLs bypass any
/// configured HTTP proxy, because a proxy cannot reach the proxy host's loopback interface.
pub(crate) fn build_client(url: &reqwest::Url) -> Result<reqwest::Client, HttpError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
    if crate::jwt::config::is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| HttpError::Client(e.without_url().to_string()))
}

/// GETs `url` and returns the body if the status is 2xx and the body is at most `limit`
/// bytes.
pub(crate) async fn get_bounded(
    client: &reqwest::Client,
    url: &reqwest::Url,
    limit: usize,
) -> Result<Vec<u8>, HttpError> {
    let response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(HttpError::Status(status.as_u16()));
    }
    read_bounded(response, limit).await
}

/// Executes an `oauth2` request with `client` and returns the response whatever its status
/// (the `oauth2` crate parses OAuth error bodies itself).
pub(crate) async fn execute(
    client: &reqwest::Client,
    request: http::Request<Vec<u8>>,
    limit: usize,
) -> Result<http::Response<Vec<u8>>, HttpError> {
    let (parts, body) = request.into_parts();
    let url = reqwest::Url::parse(&parts.uri.to_string())
        .map_err(|e| HttpError::Request(e.to_string()))?;
    let response = client
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = read_bounded(response, limit).await?;
    let mut builder = http::Response::builder().status(status);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    builder
        .body(body)
        .map_err(|e| HttpError::Request(e.to_string()))
}

async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, HttpError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(HttpError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport(e: reqwest::Error) -> HttpError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        ""
    };
    let e = e.without_url();
    if kind.is_empty() {
        HttpError::Transport(e.to_string())
    } else {
        HttpError::Transport(format!("{kind}: {e}"))
    }
}
