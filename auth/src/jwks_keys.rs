//! A parsed JWKS document: the public keys a token may be signed with, and the rule that
//! picks one for a token.
//!
//! Parsing is ours rather than `jsonwebtoken::jwk::JwkSet` because one unusual entry (an
//! encryption key, an unknown `kty`) must not make the whole set unusable: unsupported
//! entries are skipped. Symmetric (`oct`) keys are always skipped: a proxy validating tokens
//! issued by someone else never holds a shared secret, and building an HMAC key from a JWK is
//! exactly what a key-confusion attack needs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::jwt::TokenError;

/// The smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// The public key type of one JWK, with its curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `kty: RSA`.
    Rsa,
    /// `kty: EC`, `crv: P-256`.
    EcP256,
    /// `kty: EC`, `crv: P-384`.
    EcP384,
    /// `kty: OKP`, `crv: Ed25519`.
    Ed25519,
}

impl KeyType {
    /// Whether a signature made with `alg` can come from a key of this type.
    pub fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyType::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyType::EcP256 => alg == ES256,
            KeyType::EcP384 => alg == ES384,
            KeyType::Ed25519 => alg == EdDSA,
        }
    }
}

/// One usable signing key.
#[derive(Clone)]
pub struct Jwk {
    /// `kid`, if the entry has one.
    pub kid: Option<String>,
    /// The key type.
    pub key_type: KeyType,
    /// `alg`, if the entry pins one.
    pub alg: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Jwk {
    /// Whether this key may verify a signature made with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.key_type.fits(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// The usable keys of one JWKS document.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). Entries that are not public signature
    /// keys of a supported type are skipped; the number skipped is returned alongside. An
    /// error means the document itself is not a JWKS.
    pub fn parse(json: &[u8]) -> Result<(KeySet, usize), String> {
        let raw: RawSet =
            serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        let mut skipped = 0;
        for entry in raw.keys {
            match serde_json::from_value::<RawKey>(entry)
                .ok()
                .and_then(|k| parse_key(&k))
            {
                Some(k) => keys.push(k),
                None => skipped += 1,
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Picks the key for a token with this `kid` and `alg`: the key with that `kid`, or
    /// without a `kid` the only key that fits `alg`. `UnknownKey` means a refreshed set
    /// might have it; other errors are final.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Jwk, TokenError> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                let Some(first) = named.next() else {
                    return Err(TokenError::unknown_key(Some(kid)));
                };
                std::iter::once(first)
                    .chain(named)
                    .find(|k| k.accepts(alg))
                    .ok_or_else(|| TokenError::KeyAlgorithmMismatch {
                        kid: crate::jwt::echo(kid),
                        alg: format!("{alg:?}"),
                    })
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Ok(k),
                    (None, _) => Err(TokenError::unknown_key(None)),
                    (Some(_), Some(_)) => Err(TokenError::AmbiguousKey),
                }
            }
        }
    }
}

fn b64(s: &Option<String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(s.as_deref()?.trim_end_matches('='))
        .ok()
}

fn parse_key(raw: &RawKey) -> Option<Jwk> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => Some(crate::jwt::config::parse_algorithm(name).ok()?),
    };
    let (key_type, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = b64(&raw.n)?;
            let e = b64(&raw.e)?;
            let n_bits = significant_bits(&n);
            if n_bits < MIN_RSA_BITS || e.is_empty() || e.len() > 8 {
                return None;
            }
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (key_type, len) = if crv == "P-256" {
                (KeyType::EcP256, 32)
            } else {
                (KeyType::EcP384, 48)
            };
            let x = b64(&raw.x)?;
            let y = b64(&raw.y)?;
            if x.len() != len || y.len() != len {
                return None;
            }
            let key = DecodingKey::from_ec_components(raw.x.as_deref()?, raw.y.as_deref()?).ok()?;
            (key_type, key)
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64(&raw.x)?;
            if x.len() != 32 {
                return None;
            }
            (
                KeyType::Ed25519,
                DecodingKey::from_ed_components(raw.x.as_deref()?).ok()?,
            )
        }
        _ => return None,
    };
    let jwk = Jwk {
        kid: raw.kid.clone(),
        key_type,
        alg,
        key,
    };
    // A key pinned to an algorithm it cannot do is a broken entry.
    if let Some(a) = alg {
        if !key_type.fits(a) {
            return None;
        }
    }
    Some(jwk)
}

fn significant_bits(big_endian: &[u8]) -> usize {
    let mut bytes = big_endian.iter().skip_while(|b| **b == 0);
    match bytes.next() {
        None => 0,
        Some(first) => (8 - first.leading_zeros() as usize) + 8 * bytes.count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P256_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const P256_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn set(json: &str) -> (KeySet, usize) {
        KeySet::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn skips_what_it_cannot_use() {
        let json = format!(
            r#"{{"keys":[
              {{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
              {{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}","kid":"enc","use":"enc"}},
              {{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}","kid":"pinned-rs","alg":"RS256"}},
              {{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}","kid":"hs","alg":"HS256"}},
              {{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"}},
              {{"kty":"XYZ"}},
              {{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}","kid":"good","use":"sig"}}
            ]}}"#
        );
        let (keys, skipped) = set(&json);
        assert_eq!(keys.len(), 1);
        assert_eq!(skipped, 6);
        assert!(keys.select(Some("good"), Algorithm::ES256).is_ok());
        assert!(matches!(
            keys.select(Some("good"), Algorithm::RS256),
            Err(TokenError::KeyAlgorithmMismatch { .. })
        ));
        assert!(matches!(
            keys.select(Some("hmac"), Algorithm::ES256),
            Err(TokenError::UnknownKey(_))
        ));
    }

    #[test]
    fn without_kid_only_a_single_fitting_key_is_used() {
        let one =
            format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}"}}]}}"#);
        let (keys, _) = set(&one);
        assert!(keys.select(None, Algorithm::ES256).is_ok());
        assert!(matches!(
            keys.select(None, Algorithm::ES384),
            Err(TokenError::UnknownKey(None))
        ));
        let two = format!(
            r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}","kid":"a"}},
                         {{"kty":"EC","crv":"P-256","x":"{P256_X}","y":"{P256_Y}","kid":"b"}}]}}"#
        );
        let (keys, _) = set(&two);
        assert_eq!(
            keys.select(None, Algorithm::ES256).unwrap_err(),
            TokenError::AmbiguousKey
        );
    }

    #[test]
    fn not_a_jwks_is_an_error() {
        assert!(KeySet::parse(b"[]").is_err());
        assert!(KeySet::parse(b"{\"keys\": 3}").is_err());
        assert!(KeySet::parse(b"\xff").is_err());
    }

    #[test]
    fn counts_bits() {
        assert_eq!(significant_bits(&[0, 0, 1]), 1);
        assert_eq!(significant_bits(&[0x80, 0]), 16);
        assert_eq!(significant_bits(&[]), 0);
    }
}
