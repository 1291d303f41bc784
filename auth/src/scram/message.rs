//! The SCRAM message grammar (RFC 5802 section 7) as Kafka speaks it: parsing and building.
//!
//! Parsers take the raw message and return borrowed pieces; they never panic and report
//! errors as short static strings that are safe to log.

/// Why a client-first message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFirstError {
    /// Not the grammar.
    Malformed(&'static str),
    /// Something the proxy does not support (channel binding, a mandatory extension,
    /// delegation tokens).
    Unsupported(&'static str),
}

/// A parsed client-first message.
#[derive(Debug)]
pub(crate) struct ClientFirst<'a> {
    /// The gs2 header exactly as sent (`n,,`), which `c=` must repeat in base64.
    pub gs2_header: &'a str,
    /// The decoded authorization id, if any.
    pub authzid: Option<String>,
    /// client-first-message-bare, part of the AuthMessage.
    pub bare: &'a str,
    /// The decoded user name.
    pub username: String,
    /// The client nonce.
    pub nonce: &'a str,
}

/// A parsed client-final message.
#[derive(Debug)]
pub(crate) struct ClientFinal<'a> {
    /// The `c=` value (base64 of the gs2 header).
    pub channel_binding: &'a str,
    /// The combined nonce.
    pub nonce: &'a str,
    /// client-final-message-without-proof, part of the AuthMessage.
    pub without_proof: &'a str,
    /// The base64 proof.
    pub proof: &'a str,
}

/// A parsed server-first message.
#[derive(Debug)]
pub(crate) struct ServerFirst<'a> {
    /// The combined nonce.
    pub nonce: &'a str,
    /// The base64 salt.
    pub salt: &'a str,
    /// The iteration count.
    pub iterations: u32,
}

/// A parsed server-final message.
#[derive(Debug)]
pub(crate) enum ServerFinal<'a> {
    /// `v=`: the base64 server signature.
    Verifier(&'a str),
    /// `e=`: the server's error.
    Error(&'a str),
}

/// Encodes a user name as a saslname (`,` -> `=2C`, `=` -> `=3D`).
pub(crate) fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// Decodes a saslname; `None` when it has an `=` that is not `=2C` or `=3D`.
pub(crate) fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3)?;
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `printable` from RFC 5802: `%x21-2B / %x2D-7E` (no comma), at least one character.
pub(crate) fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Whether `s` is a `key=value` extension as Kafka accepts them.
fn is_extension(s: &str) -> bool {
    match s.split_once('=') {
        Some((key, value)) => {
            !key.is_empty() && !value.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

pub(crate) fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, ClientFirstError> {
    use ClientFirstError::{Malformed, Unsupported};
    let (flag, rest) = msg.split_once(',').ok_or(Malformed("no gs2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(Unsupported("channel binding is not supported")),
        _ => return Err(Malformed("bad channel binding flag")),
    }
    let (authzid_field, bare) = rest.split_once(',').ok_or(Malformed("no gs2 header"))?;
    let authzid = if authzid_field.is_empty() {
        None
    } else {
        let encoded = authzid_field
            .strip_prefix("a=")
            .ok_or(Malformed("bad authorization id"))?;
        Some(decode_saslname(encoded).ok_or(Malformed("bad authorization id"))?)
    };
    let gs2_header = &msg[..msg.len() - bare.len()];

    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or("");
    if first.starts_with("m=") {
        return Err(Unsupported("mandatory extension is not supported"));
    }
    let username = first.strip_prefix("n=").ok_or(Malformed("no user name"))?;
    let username = decode_saslname(username).ok_or(Malformed("bad user name encoding"))?;
    if username.is_empty() {
        return Err(Malformed("empty user name"));
    }
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(Malformed("no nonce"))?;
    if !is_printable(nonce) {
        return Err(Malformed("bad nonce"));
    }
    for extension in attrs {
        if !is_extension(extension) {
            return Err(Malformed("bad extension"));
        }
        if let Some(value) = extension.strip_prefix("tokenauth=") {
            if value.eq_ignore_ascii_case("true") {
                return Err(Unsupported(
                    "delegation tokens (tokenauth) are not supported",
                ));
            }
        }
    }
    Ok(ClientFirst {
        gs2_header,
        authzid,
        bare,
        username,
        nonce,
    })
}

pub(crate) fn parse_client_final(msg: &str) -> Result<ClientFinal<'_>, &'static str> {
    let proof_at = msg.rfind(",p=").ok_or("no proof")?;
    let without_proof = &msg[..proof_at];
    let proof = &msg[proof_at + 3..];
    if proof.is_empty() || proof.contains(',') {
        return Err("bad proof");
    }
    let mut attrs = without_proof.split(',');
    let channel_binding = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or("no channel binding")?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or("no nonce")?;
    if !is_printable(nonce) {
        return Err("bad nonce");
    }
    for extension in attrs {
        if !is_extension(extension) {
            return Err("bad extension");
        }
    }
    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof,
    })
}

pub(crate) fn parse_server_first(msg: &str) -> Result<ServerFirst<'_>, &'static str> {
    let mut attrs = msg.split(',');
    let first = attrs.next().unwrap_or("");
    if first.starts_with("m=") {
        return Err("server requires an unsupported mandatory extension");
    }
    if first.starts_with("e=") {
        return Err("server sent an error instead of a challenge");
    }
    let nonce = first.strip_prefix("r=").ok_or("no nonce")?;
    if !is_printable(nonce) {
        return Err("bad nonce");
    }
    let salt = attrs
        .next()
        .and_then(|a| a.strip_prefix("s="))
        .ok_or("no salt")?;
    if salt.is_empty() {
        return Err("empty salt");
    }
    let iterations = attrs
        .next()
        .and_then(|a| a.strip_prefix("i="))
        .ok_or("no iteration count")?;
    if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad iteration count");
    }
    let iterations = iterations.parse().map_err(|_| "bad iteration count")?;
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

pub(crate) fn parse_server_final(msg: &str) -> Result<ServerFinal<'_>, &'static str> {
    let first = msg.split(',').next().unwrap_or("");
    if let Some(v) = first.strip_prefix("v=") {
        if v.is_empty() {
            return Err("empty verifier");
        }
        Ok(ServerFinal::Verifier(v))
    } else if let Some(e) = first.strip_prefix("e=") {
        Ok(ServerFinal::Error(e))
    } else {
        Err("neither verifier nor error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saslname_round_trip() {
        assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_saslname("a=2"), None);
        assert_eq!(decode_saslname("a=41"), None);
        assert_eq!(decode_saslname("="), None);
    }

    #[test]
    fn client_first_variants() {
        let m = parse_client_first("n,,n=user,r=abc").unwrap();
        assert_eq!(m.gs2_header, "n,,");
        assert_eq!(m.bare, "n=user,r=abc");
        assert_eq!(m.username, "user");
        assert_eq!(m.nonce, "abc");
        let m = parse_client_first("y,a=us=2Cer,n=us=2Cer,r=abc,ext=1").unwrap();
        assert_eq!(m.gs2_header, "y,a=us=2Cer,");
        assert_eq!(m.authzid.as_deref(), Some("us,er"));
        assert!(matches!(
            parse_client_first("p=tls-unique,,n=user,r=abc"),
            Err(ClientFirstError::Unsupported(_))
        ));
        assert!(matches!(
            parse_client_first("n,,n=user,r=abc,tokenauth=true"),
            Err(ClientFirstError::Unsupported(_))
        ));
        assert!(matches!(
            parse_client_first("n,,m=x,n=user,r=abc"),
            Err(ClientFirstError::Unsupported(_))
        ));
        assert!(parse_client_first("n,,n=,r=abc").is_err());
        assert!(parse_client_first("n,,n=u,r=").is_err());
        assert!(parse_client_first("x,,n=u,r=a").is_err());
        assert!(parse_client_first("n,,r=a,n=u").is_err());
    }

    #[test]
    fn client_final_split() {
        let m = parse_client_final("c=biws,r=abc,p=cHJvb2Y=").unwrap();
        assert_eq!(m.channel_binding, "biws");
        assert_eq!(m.nonce, "abc");
        assert_eq!(m.without_proof, "c=biws,r=abc");
        assert_eq!(m.proof, "cHJvb2Y=");
        assert!(parse_client_final("c=biws,r=abc").is_err());
        assert!(parse_client_final("r=abc,c=biws,p=x").is_err());
    }

    #[test]
    fn server_messages() {
        let m = parse_server_first("r=abc,s=c2FsdA==,i=4096").unwrap();
        assert_eq!((m.nonce, m.salt, m.iterations), ("abc", "c2FsdA==", 4096));
        assert!(parse_server_first("r=abc,s=c2FsdA==,i=-1").is_err());
        assert!(parse_server_first("r=abc,s=c2FsdA==,i=99999999999").is_err());
        assert!(matches!(
            parse_server_final("e=invalid-proof"),
            Ok(ServerFinal::Error("invalid-proof"))
        ));
        assert!(matches!(
            parse_server_final("v=abc"),
            Ok(ServerFinal::Verifier("abc"))
        ));
    }
}
