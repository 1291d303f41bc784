//! One signed KMS JSON call over a small blocking HTTP client.
//!
//! KMS speaks the AWS JSON 1.1 protocol: `POST /` with `X-Amz-Target: TrentService.<Action>`
//! and a JSON body, signed with SigV4. ureq (blocking, rustls with the workspace's aws-lc-rs
//! provider, the platform's root certificates or the configured CA file) carries it; redirects are refused and the
//! response is read up to [`MAX_RESPONSE`] bytes into a buffer that is zeroized afterwards
//! (a Decrypt response holds a plaintext KEK).

use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use super::config::{Credentials, Endpoint};
use super::sigv4;

/// The largest response read; KMS responses are a few hundred bytes.
pub(crate) const MAX_RESPONSE: usize = 64 * 1024;
/// The longest KMS error message passed on.
const MAX_MESSAGE: usize = 300;

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// KMS answered with an error code.
    Kms {
        /// The error code (`NotFoundException`).
        code: String,
        /// Its message, bounded and cleaned.
        message: String,
    },
    /// No answer (connect, TLS, timeout, or a response too large).
    Transport(String),
}

/// A signed KMS client for one endpoint and one set of credentials.
pub(crate) struct KmsClient {
    agent: ureq::Agent,
    endpoint: Endpoint,
    credentials: Credentials,
}

impl KmsClient {
    /// A client posting to `endpoint` with `credentials`, verifying TLS against `roots`,
    /// each call bounded by `timeout`.
    pub(crate) fn new(
        endpoint: Endpoint,
        credentials: Credentials,
        roots: ureq::tls::RootCerts,
        timeout: Duration,
    ) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots)
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent("portcullis")
            .tls_config(tls);
        if endpoint.loopback {
            // Never send a loopback emulator's traffic to an HTTP(S)_PROXY.
            config = config.proxy(None);
        }
        Self {
            agent: config.build().into(),
            endpoint,
            credentials,
        }
    }

    /// Posts `body` as `TrentService.<action>` and returns the response body of a 200.
    pub(crate) fn call(&self, action: &str, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, CallError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let amz_date = sigv4::amz_date(now);
        let target = format!("TrentService.{action}");
        let content_type = "application/x-amz-json-1.1";
        let mut headers = vec![
            ("content-type", content_type),
            ("host", self.endpoint.host.as_str()),
            ("x-amz-date", amz_date.as_str()),
            ("x-amz-target", target.as_str()),
        ];
        if let Some(token) = &self.credentials.session_token {
            headers.push(("x-amz-security-token", token.as_str()));
        }
        let signer = sigv4::Signer {
            access_key_id: &self.credentials.access_key_id,
            secret_access_key: &self.credentials.secret_access_key,
            region: &self.endpoint.region,
            service: "kms",
        };
        let authorization = signer.authorization(
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: body,
            },
            &amz_date,
        );
        let mut request = self
            .agent
            .post(&self.endpoint.url)
            .header("authorization", &authorization);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        let mut response = request
            .send(body)
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_RESPONSE + 1));
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| CallError::Transport(format!("reading the response: {e}")))?;
        if buf.len() > MAX_RESPONSE {
            return Err(CallError::Transport(format!(
                "response larger than {MAX_RESPONSE} bytes"
            )));
        }
        if status == 200 {
            return Ok(buf);
        }
        Err(kms_error(status, &buf))
    }
}

/// The error of a non-200 response: `{"__type": "...#Code", "message": "..."}`.
fn kms_error(status: u16, body: &[u8]) -> CallError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "__type")]
        kind: Option<String>,
        #[serde(alias = "Message")]
        message: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|b| b.kind.as_deref())
        .map(|k| k.rsplit('#').next().unwrap_or(k))
        .map_or_else(|| format!("HTTP {status}"), clean);
    let message = parsed
        .and_then(|b| b.message)
        .map_or_else(|| format!("HTTP status {status}"), |m| clean(&m));
    CallError::Kms { code, message }
}

/// `text` without control characters, cut to [`MAX_MESSAGE`] characters.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies() {
        let e = kms_error(
            400,
            br#"{"__type":"com.amazonaws.kms#NotFoundException","message":"Key 'x' does not exist"}"#,
        );
        assert!(
            matches!(&e, CallError::Kms { code, message } if code == "NotFoundException" && message == "Key 'x' does not exist"),
            "{e:?}"
        );
        let e = kms_error(502, b"<html>bad gateway</html>");
        assert!(
            matches!(&e, CallError::Kms { code, .. } if code == "HTTP 502"),
            "{e:?}"
        );
        let long = format!(r#"{{"__type":"X","Message":"{}\u0007"}}"#, "m".repeat(1000));
        let CallError::Kms { message, .. } = kms_error(400, long.as_bytes()) else {
            panic!()
        };
        assert_eq!(message.len(), MAX_MESSAGE);
    }
}
