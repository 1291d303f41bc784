//! The OAUTHBEARER client initial response (RFC 7628 §3.1), as Kafka writes it.
//!
//! `gs2-header kvsep *(key "=" value kvsep) kvsep`, where the GS2 header is `n,` or
//! `n,a=<authzid>,` and kvsep is `\x01`. The `auth` pair carries `Bearer <token>`; any
//! other pair is a SASL extension (KIP-342), accepted and ignored when well-formed. Both
//! the parser (server side) and the writer (the proxy's own upstream login) live here so
//! the two can never disagree.

use std::collections::BTreeMap;

/// The largest client message accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

const KVSEP: u8 = 0x01;

/// A parsed client initial response.
pub struct ClientFirst {
    /// The `a=` authorization identity, unescaped.
    pub authzid: Option<String>,
    /// The bearer token.
    pub token: String,
    /// Extensions other than `auth`, by key.
    pub extensions: BTreeMap<String, String>,
}

impl std::fmt::Debug for ClientFirst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFirst")
            .field("authzid", &self.authzid)
            .field("token", &"[redacted]")
            .field("extensions", &self.extensions.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Parses a client initial response. The error says what is wrong, never quoting the token.
pub fn parse(message: &[u8]) -> Result<ClientFirst, &'static str> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err("message too large");
    }
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8")?;
    let rest = text
        .strip_prefix("n,")
        .or_else(|| text.strip_prefix("y,"))
        .ok_or("GS2 header must start with n, (channel binding is not supported)")?;
    let (authzid, rest) = rest.split_once(',').ok_or("GS2 header is not terminated")?;
    let authzid = match authzid {
        "" => None,
        a => Some(unescape_saslname(
            a.strip_prefix("a=").ok_or("bad GS2 authzid")?,
        )?),
    };
    let body = rest
        .strip_prefix('\x01')
        .and_then(|r| r.strip_suffix("\x01\x01"))
        .ok_or("key/value pairs are not framed by \\x01")?;
    let mut token = None;
    let mut extensions = BTreeMap::new();
    for pair in body.split('\x01') {
        let (key, value) = pair.split_once('=').ok_or("a key/value pair has no '='")?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err("bad extension key");
        }
        if !value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) || matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        {
            return Err("bad extension value");
        }
        if key == "auth" {
            if token.is_some() {
                return Err("duplicate auth");
            }
            token = Some(bearer_token(value)?);
        } else if extensions
            .insert(key.to_string(), value.to_string())
            .is_some()
        {
            return Err("duplicate extension");
        }
    }
    Ok(ClientFirst {
        authzid,
        token: token.ok_or("no auth pair")?,
        extensions,
    })
}

/// `Bearer <b64token>`: the scheme is case-insensitive (RFC 6750), the token is the
/// b64token alphabet.
fn bearer_token(value: &str) -> Result<String, &'static str> {
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("auth is not 'Bearer <token>'")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("auth scheme is not Bearer");
    }
    let token = token.trim_start_matches(' ');
    let b64token = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if token.is_empty() || !token.bytes().all(b64token) {
        return Err("bearer token has characters outside b64token");
    }
    Ok(token.to_string())
}

fn unescape_saslname(s: &str) -> Result<String, &'static str> {
    if s.is_empty() {
        return Err("empty authzid");
    }
    if s.chars().any(char::is_control) {
        return Err("control character in authzid");
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3).ok_or("bad escape in authzid")?;
        out.push(match code {
            "2C" => ',',
            "3D" => '=',
            _ => return Err("bad escape in authzid"),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn escape_saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// Writes a client initial response for `token`.
pub fn write(token: &str, authzid: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len() + 32);
    out.extend_from_slice(b"n,");
    if let Some(a) = authzid {
        out.extend_from_slice(b"a=");
        out.extend_from_slice(escape_saslname(a).as_bytes());
    }
    out.push(b',');
    out.push(KVSEP);
    out.extend_from_slice(b"auth=Bearer ");
    out.extend_from_slice(token.as_bytes());
    out.push(KVSEP);
    out.push(KVSEP);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_messages() {
        let m = parse(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01").unwrap();
        assert_eq!(m.token, "abc.def.ghi");
        assert_eq!(m.authzid, None);
        let m = parse(b"n,a=al=2Cice=3D,\x01auth=bearer t\x01traceId=42\x01\x01").unwrap();
        assert_eq!(m.authzid.as_deref(), Some("al,ice="));
        assert_eq!(m.extensions["traceId"], "42");
        assert!(!format!("{m:?}").contains("bearer t"));
    }

    #[test]
    fn round_trip() {
        let m = parse(&write("x.y.z", Some("a,b=c"))).unwrap();
        assert_eq!(m.token, "x.y.z");
        assert_eq!(m.authzid.as_deref(), Some("a,b=c"));
    }

    #[test]
    fn malformed() {
        for bad in [
            &b""[..],
            b"p=tls-unique,,\x01auth=Bearer t\x01\x01",
            b"n,,auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01x1=y\x01auth=Bearer t\x01\x01",
            b"n,,\x01\x01",
            b"n,a=x=zz,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Bearer t t\x01\x01",
            b"n,a=x\x01auth=Bearer t\x01e=,\x01auth=Bearer u\x01\x01",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(parse(&vec![b'a'; MAX_MESSAGE_BYTES + 1]).is_err());
    }
}
