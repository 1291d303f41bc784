//! Why a bearer token was refused.
//!
//! Kept apart from the validator because the OAUTHBEARER mechanism, the audit events and the
//! tests all match on it. No variant ever holds the token or key material: the `Display`
//! text goes to logs and audit events as it is. The only client-chosen strings kept are a
//! truncated `kid` and algorithm name, printed with `{:?}` so they cannot forge log lines.

use crate::sasl::FailureKind;

/// The longest client-chosen string (a `kid`, an algorithm name) kept in an error.
const MAX_ECHO: usize = 64;

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS (three base64url parts with a JSON header and claims).
    #[error("not a well-formed JWT: {0}")]
    Malformed(String),
    /// The header names an algorithm that is not configured (HMAC and `none` never are).
    #[error("algorithm {0:?} is not accepted")]
    AlgorithmNotAllowed(String),
    /// No key in the key set has this `kid` (or, without a `kid`, no single key fits).
    #[error("no signing key matches kid {0:?}")]
    UnknownKey(Option<String>),
    /// The token has no `kid` and several keys could have signed it.
    #[error("the token has no kid and several keys fit its algorithm")]
    AmbiguousKey,
    /// The key named by `kid` is of another type (or declares another `alg`) than the
    /// token's algorithm.
    #[error("key {kid:?} cannot verify {alg} signatures")]
    KeyAlgorithmMismatch {
        /// The key id.
        kid: String,
        /// The token's algorithm.
        alg: String,
    },
    /// The signature does not verify with the selected key.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (beyond the allowed clock skew).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is missing or not the configured issuer.
    #[error("wrong or missing issuer")]
    WrongIssuer,
    /// `aud` is missing or names none of the configured audiences.
    #[error("wrong or missing audience")]
    WrongAudience,
    /// A required claim is missing or has the wrong type.
    #[error("claim {0:?} is missing or invalid")]
    BadClaim(String),
    /// No key set could be loaded yet (the identity provider is unreachable).
    #[error("no signing keys available: {0}")]
    KeysUnavailable(String),
}

impl TokenError {
    /// The failure category for audit and the client message: expiry and `nbf` are
    /// [`FailureKind::ExpiredToken`], everything else [`FailureKind::InvalidToken`].
    pub fn kind(&self) -> FailureKind {
        match self {
            TokenError::Expired | TokenError::NotYetValid => FailureKind::ExpiredToken,
            _ => FailureKind::InvalidToken,
        }
    }

    pub(crate) fn unknown_key(kid: Option<&str>) -> TokenError {
        TokenError::UnknownKey(kid.map(echo))
    }
}

/// A client-chosen string cut to a loggable length.
pub(crate) fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO).collect()
}

/// Maps a `jsonwebtoken` error to ours without carrying any of its payload (which could
/// quote the token).
pub(crate) fn from_jsonwebtoken(e: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => TokenError::Expired,
        K::ImmatureSignature => TokenError::NotYetValid,
        K::InvalidIssuer => TokenError::WrongIssuer,
        K::InvalidAudience => TokenError::WrongAudience,
        K::InvalidSignature => TokenError::BadSignature,
        K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) => match c.as_str() {
            "iss" => TokenError::WrongIssuer,
            "aud" => TokenError::WrongAudience,
            other => TokenError::BadClaim(echo(other)),
        },
        K::InvalidAlgorithm | K::MissingAlgorithm | K::InvalidAlgorithmName => {
            TokenError::AlgorithmNotAllowed("(mismatch)".into())
        }
        K::InvalidEcdsaKey | K::InvalidEddsaKey | K::InvalidRsaKey(_) | K::InvalidKeyFormat => {
            TokenError::BadSignature
        }
        K::Base64(_) | K::Json(_) | K::Utf8(_) | K::InvalidToken => {
            TokenError::Malformed("bad encoding".into())
        }
        _ => TokenError::Malformed("rejected".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_its_own_kind() {
        assert_eq!(TokenError::Expired.kind(), FailureKind::ExpiredToken);
        assert_eq!(TokenError::NotYetValid.kind(), FailureKind::ExpiredToken);
        assert_eq!(TokenError::BadSignature.kind(), FailureKind::InvalidToken);
        assert_eq!(TokenError::WrongIssuer.kind(), FailureKind::InvalidToken);
    }

    #[test]
    fn echoed_kids_are_bounded() {
        let e = TokenError::unknown_key(Some(&"k".repeat(1000)));
        assert!(e.to_string().len() < 120);
    }
}
