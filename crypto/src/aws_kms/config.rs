//! What the AWS KMS provider is told in configuration: the region, the key, and where to
//! reach KMS; credentials come from the standard environment variables.
//!
//! Plain `http://` endpoints are accepted only on loopback (a local KMS emulator such as
//! moto in tests); anything else must be `https://`, so a wrapped key and the request
//! signature never cross a network in clear.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

use super::AwsKmsError;

/// Configuration of an AWS KMS root key (`kind = "aws-kms"` in `[encryption.root_key]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsKmsConfig {
    /// The AWS region (`eu-west-1`); also part of every request signature.
    pub region: String,
    /// The KMS key: key id, key ARN, alias name (`alias/portcullis`) or alias ARN. It must be
    /// a symmetric encryption key (`SYMMETRIC_DEFAULT`, `ENCRYPT_DECRYPT`).
    pub key_id: String,
    /// Overrides the endpoint (default `https://kms.<region>.amazonaws.com`): a VPC endpoint,
    /// a FIPS endpoint, or a loopback emulator (`http://127.0.0.1:4566`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Time limit for one KMS call, in milliseconds (default 10000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// A PEM file of CA certificates to trust for the endpoint instead of the platform's
    /// store (a private endpoint, or a TLS-inspecting proxy with its own CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

fn default_timeout_ms() -> u64 {
    10_000
}

impl AwsKmsConfig {
    /// A configuration with the default endpoint and timeout.
    #[must_use]
    pub fn new(region: &str, key_id: &str) -> Self {
        Self {
            region: region.to_owned(),
            key_id: key_id.to_owned(),
            endpoint: None,
            timeout_ms: default_timeout_ms(),
            ca_file: None,
        }
    }

    /// Checks the key id and timeout, and parses the region and endpoint.
    ///
    /// # Errors
    ///
    /// [`AwsKmsError::Config`] naming the field.
    pub fn validate(&self) -> Result<Endpoint, AwsKmsError> {
        if self.key_id.is_empty() || self.key_id.len() > 2048 {
            return Err(AwsKmsError::Config(format!(
                "key_id must be 1 to 2048 characters, found {}",
                self.key_id.len()
            )));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 300_000 {
            return Err(AwsKmsError::Config(format!(
                "timeout_ms must be 1 to 300000, found {}",
                self.timeout_ms
            )));
        }
        Endpoint::parse(&self.region, self.endpoint.as_deref())
    }

    /// The time limit of one call.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The certificates TLS connections are verified against: the platform's store, or the
    /// certificates of `ca_file`.
    pub(crate) fn root_certs(&self) -> Result<ureq::tls::RootCerts, AwsKmsError> {
        match &self.ca_file {
            None => Ok(ureq::tls::RootCerts::PlatformVerifier),
            Some(path) => read_ca_file(path),
        }
    }
}

/// The CA certificates in a PEM file (at least one; anything else in the file is ignored).
fn read_ca_file(path: &Path) -> Result<ureq::tls::RootCerts, AwsKmsError> {
    let bad = |what: String| AwsKmsError::Config(format!("ca_file {}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut pem = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut pem)
        .map_err(|e| bad(e.to_string()))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(bad(format!("larger than {MAX_CA_FILE} bytes")));
    }
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        let item = item.map_err(|e| bad(format!("not valid PEM: {e}")))?;
        if let ureq::tls::PemItem::Certificate(cert) = item {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(bad("holds no certificate".to_owned()));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

/// Where KMS requests go, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The region requests are signed for.
    pub region: String,
    /// The URL requests are posted to (`https://host[:port]/`).
    pub url: String,
    /// The `Host` header value (port included when not the scheme's default).
    pub host: String,
    /// Whether the host is a loopback address (plain HTTP allowed, no proxy used).
    pub loopback: bool,
}

impl Endpoint {
    /// Parses `endpoint` (or the default for `region`).
    ///
    /// # Errors
    ///
    /// [`AwsKmsError::Config`] for a bad region, a malformed URL, a path, query or user
    /// info in it, or plain HTTP to anything but loopback.
    pub fn parse(region: &str, endpoint: Option<&str>) -> Result<Self, AwsKmsError> {
        let bad = |what: String| Err(AwsKmsError::Config(what));
        if region.is_empty()
            || region.len() > 32
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(format!(
                "region {region:?} is not an AWS region name (like eu-west-1)"
            ));
        }
        let default = format!("https://kms.{region}.amazonaws.com");
        let text = endpoint.unwrap_or(&default);
        let (scheme, rest) = match text.split_once("://") {
            Some(("https", rest)) => ("https", rest),
            Some(("http", rest)) => ("http", rest),
            _ => return bad(format!("endpoint {text:?} must start with https://")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty()
            || authority.contains(['/', '?', '#', '@'])
            || !authority.is_ascii()
            || authority
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return bad(format!(
                "endpoint {text:?} must be scheme://host[:port] with no path, query or user info"
            ));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| {
            AwsKmsError::Config(format!("endpoint {text:?} has a malformed host or port"))
        })?;
        let loopback = is_loopback(host);
        if scheme == "http" && !loopback {
            return bad(format!(
                "endpoint {text:?} is plain http to a non-loopback host; use https"
            ));
        }
        let default_port = if scheme == "https" { 443 } else { 80 };
        let host_header = match port {
            Some(p) if p != default_port => format!("{}:{p}", host.to_ascii_lowercase()),
            _ => host.to_ascii_lowercase(),
        };
        Ok(Self {
            region: region.to_owned(),
            url: format!("{scheme}://{host_header}/"),
            host: host_header,
            loopback,
        })
    }
}

/// `host` and optional port of an authority (`[::1]:80`, `a.b:443`, `a.b`).
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let host = &authority[..inside.len() + 2];
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(':')) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

/// Whether `host` names this machine (`localhost`, 127.0.0.0/8, `[::1]`).
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// AWS credentials: an access key, its secret, and a session token for temporary ones.
pub struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: Zeroizing<String>,
    pub(crate) session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("session_token", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials from their parts.
    #[must_use]
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Self {
            access_key_id: access_key_id.to_owned(),
            secret_access_key: Zeroizing::new(secret_access_key.to_owned()),
            session_token: session_token.map(|t| Zeroizing::new(t.to_owned())),
        }
    }

    /// Credentials from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and (when set)
    /// `AWS_SESSION_TOKEN`.
    ///
    /// # Errors
    ///
    /// [`AwsKmsError::Credentials`] naming the missing variable.
    pub fn from_env() -> Result<Self, AwsKmsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`Credentials::from_env`], reading variables through `lookup`.
    ///
    /// # Errors
    ///
    /// [`AwsKmsError::Credentials`] naming the missing variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AwsKmsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let access_key_id = get("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| AwsKmsError::Credentials("AWS_ACCESS_KEY_ID is not set".to_owned()))?;
        let secret = Zeroizing::new(get("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
            AwsKmsError::Credentials("AWS_SECRET_ACCESS_KEY is not set".to_owned())
        })?);
        let valid = |v: &str| v.bytes().all(|b| b.is_ascii_graphic());
        if !valid(&access_key_id) || !valid(&secret) {
            return Err(AwsKmsError::Credentials(
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be printable ASCII without spaces"
                    .to_owned(),
            ));
        }
        let session_token = get("AWS_SESSION_TOKEN").map(Zeroizing::new);
        if session_token.as_deref().is_some_and(|t| !valid(t)) {
            return Err(AwsKmsError::Credentials(
                "AWS_SESSION_TOKEN must be printable ASCII without spaces".to_owned(),
            ));
        }
        Ok(Self {
            access_key_id,
            secret_access_key: secret,
            session_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("eu-west-1", None).unwrap();
        assert_eq!(e.url, "https://kms.eu-west-1.amazonaws.com/");
        assert_eq!(e.host, "kms.eu-west-1.amazonaws.com");
        assert!(!e.loopback);
        let e = Endpoint::parse("us-east-1", Some("http://127.0.0.1:4566")).unwrap();
        assert_eq!(
            (e.url.as_str(), e.host.as_str()),
            ("http://127.0.0.1:4566/", "127.0.0.1:4566")
        );
        assert!(e.loopback);
        let e = Endpoint::parse("us-east-1", Some("http://[::1]:80/")).unwrap();
        assert_eq!(e.host, "[::1]");
        let e = Endpoint::parse("us-east-1", Some("https://VPCE.example:443")).unwrap();
        assert_eq!(e.host, "vpce.example");
        for bad in [
            "http://kms.example.com",
            "ftp://x",
            "kms.example.com",
            "https://x/path",
            "https://u@x",
            "https://x?q",
            "https://x:0",
            "https://x:99999",
            "https://",
            "https://a:b:c",
        ] {
            assert!(Endpoint::parse("us-east-1", Some(bad)).is_err(), "{bad}");
        }
        for region in ["", "EU-WEST-1", "eu west", &"a".repeat(33)] {
            assert!(Endpoint::parse(region, None).is_err(), "{region:?}");
        }
    }

    #[test]
    fn credentials() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let c = Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
        ]))
        .unwrap();
        assert!(c.session_token.is_none());
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let e = Credentials::from_lookup(env(&[("AWS_ACCESS_KEY_ID", "AKID")])).unwrap_err();
        assert!(e.to_string().contains("AWS_SECRET_ACCESS_KEY"), "{e}");
        let e = Credentials::from_lookup(env(&[])).unwrap_err();
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        let e = Credentials::from_lookup(env(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "bad secret"),
        ]))
        .unwrap_err();
        assert!(!e.to_string().contains("bad secret"));
    }

    #[test]
    fn config_deserializes() {
        let c: AwsKmsConfig =
            serde_json::from_str(r#"{"region":"us-east-1","key_id":"alias/p"}"#).unwrap();
        assert_eq!(c, AwsKmsConfig::new("us-east-1", "alias/p"));
        assert!(serde_json::from_str::<AwsKmsConfig>(
            r#"{"region":"us-east-1","key_id":"k","secret_access_key":"x"}"#
        )
        .is_err());
        let mut c = AwsKmsConfig::new("us-east-1", "");
        assert!(c.validate().is_err());
        c.key_id = "k".into();
        c.timeout_ms = 0;
        assert!(c.validate().is_err());
    }
}
