//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys.
//!
//! A checkpoint is only worth something if an auditor can check who vouched for it with
//! nothing but a public key. The signed-note format is the one transparency logs use, so
//! existing tooling (for example Go's `golang.org/x/mod/sumdb/note`) can read our checkpoints
//! and verifier keys too.
//!
//! Notes come from files an attacker may have written, so parsing bounds sizes and never
//! panics.

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// Ed25519's algorithm identifier in signed-note keys.
const ALG_ED25519: u8 = 0x01;

/// Longest note accepted by [`SignedNote::parse`].
pub const MAX_NOTE_LEN: usize = 64 * 1024;

/// Most signature lines accepted on one note.
const MAX_SIGNATURES: usize = 16;

/// Why a note, a key or a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The text is not a well-formed signed note.
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    /// A key string is not well-formed.
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    /// No signature on the note was made by one of the trusted keys.
    #[error("no signature by a trusted key (signed by: {0})")]
    NoTrustedSignature(String),
    /// A signature line names a trusted key but the signature does not verify.
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

/// A public key that verifies signed notes: `<name>+<hex key hash>+<base64(0x01 || key)>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerifierKey {
    /// The key's name (the log origin, for audit keys).
    pub name: String,
    /// First four bytes of SHA-256(name || "\n" || 0x01 || public key).
    pub key_hash: [u8; 4],
    /// The Ed25519 public key.
    pub public: [u8; 32],
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('+')
        && name.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

fn key_hash(name: &str, public: &[u8; 32]) -> [u8; 4] {
    use aws_lc_rs::digest;
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[ALG_ED25519]);
    ctx.update(public);
    let d = ctx.finish();
    let mut out = [0u8; 4];
    out.copy_from_slice(&d.as_ref()[..4]);
    out
}

fn hex4(b: &[u8; 4]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl VerifierKey {
    /// Builds the verifier for an Ed25519 public key.
    ///
    /// # Errors
    ///
    /// [`NoteError::BadKey`] if the name is empty or contains `+`, whitespace or control
    /// characters.
    pub fn new(name: &str, public: [u8; 32]) -> Result<VerifierKey, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("invalid key name"));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_hash: key_hash(name, &public),
            public,
        })
    }

    /// Parses `<name>+<hex key hash>+<base64 key>`, checking the hash against the key.
    ///
    /// # Errors
    ///
    /// [`NoteError::BadKey`] naming what is wrong.
    pub fn parse(s: &str) -> Result<VerifierKey, NoteError> {
        let s = s.trim();
        // Names never contain '+', but base64 may: split from the left.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadKey("expected <name>+<hash>+<key>"));
        };
        let raw = B64
            .decode(key_b64)
            .map_err(|_| NoteError::BadKey("key is not base64"))?;
        let [alg, rest @ ..] = raw.as_slice() else {
            return Err(NoteError::BadKey("empty key"));
        };
        if *alg != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let public: [u8; 32] = rest
            .try_into()
            .map_err(|_| NoteError::BadKey("Ed25519 key must be 32 bytes"))?;
        let key = VerifierKey::new(name, public)?;
        if hash_hex != hex4(&key.key_hash) {
            return Err(NoteError::BadKey("key hash does not match the key"));
        }
        Ok(key)
    }

    /// Whether `sig` is this key's Ed25519 signature of `msg`.
    pub fn verifies(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        UnparsedPublicKey::new(&signature::ED25519, &self.public)
            .verify(msg, sig)
            .is_ok()
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex4(&self.key_hash),
            B64.encode(raw)
        )
    }
}

/// An Ed25519 private key that signs notes.
///
/// Its string form is the one Go's note package uses,
/// `PRIVATE+KEY+<name>+<hex key hash>+<base64(0x01 || seed)>`; it is a secret and is only ever
/// written to the owner-only key file.
pub struct Signer {
    verifier: VerifierKey,
    seed: [u8; 32],
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("verifier", &self.verifier.to_string())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Generates a fresh key named `name`.
    ///
    /// # Errors
    ///
    /// [`NoteError::BadKey`] for an invalid name or if the system random generator fails.
    pub fn generate(name: &str) -> Result<Signer, NoteError> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| NoteError::BadKey("no randomness"))?;
        Signer::from_seed(name, seed)
    }

    /// The key with this name and 32-byte Ed25519 seed.
    ///
    /// # Errors
    ///
    /// [`NoteError::BadKey`] for an invalid name or seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer, NoteError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| NoteError::BadKey("invalid Ed25519 seed"))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::BadKey("unexpected public key length"))?;
        let verifier = VerifierKey::new(name, public)?;
        Ok(Signer {
            verifier,
            seed,
            pair,
        })
    }

    /// Parses the private-key string form.
    ///
    /// # Errors
    ///
    /// [`NoteError::BadKey`] if it is malformed or its hash does not match.
    pub fn parse(s: &str) -> Result<Signer, NoteError> {
        let rest = s
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("expected PRIVATE+KEY+..."))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::BadKey(
                "expected PRIVATE+KEY+<name>+<hash>+<key>",
            ));
        };
        let raw = B64
            .decode(key_b64)
            .map_err(|_| NoteError::BadKey("key is not base64"))?;
        let [alg, rest @ ..] = raw.as_slice() else {
            return Err(NoteError::BadKey("empty key"));
        };
        if *alg != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let seed: [u8; 32] = rest
            .try_into()
            .map_err(|_| NoteError::BadKey("Ed25519 seed must be 32 bytes"))?;
        let signer = Signer::from_seed(name, seed)?;
        if hash_hex != hex4(&signer.verifier.key_hash) {
            return Err(NoteError::BadKey("key hash does not match the key"));
        }
        Ok(signer)
    }

    /// The private-key string form (a secret).
    pub fn to_private_string(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.verifier.name,
            hex4(&self.verifier.key_hash),
            B64.encode(raw)
        )
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// Signs `text` (which must end in a newline) and returns the complete signed note.
    pub fn sign_note(&self, text: &str) -> String {
        let sig = self.pair.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.verifier.key_hash);
        blob.extend_from_slice(sig.as_ref());
        format!(
            "{text}\n\u{2014} {} {}\n",
            self.verifier.name,
            B64.encode(blob)
        )
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name on the line.
    pub name: String,
    /// The key hash the signature claims.
    pub key_hash: [u8; 4],
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

/// A parsed signed note: the signed text and its signature lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The signed text, ending in a newline.
    pub text: String,
    /// The signature lines (including ones by keys unknown to the reader).
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Parses a signed note.
    ///
    /// # Errors
    ///
    /// [`NoteError::Malformed`] naming what is wrong.
    pub fn parse(note: &str) -> Result<SignedNote, NoteError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(NoteError::Malformed("note too long"));
        }
        if !note.ends_with('\n') {
            return Err(NoteError::Malformed("note does not end in a newline"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let text = &note[..=split];
        let sig_block = &note[split + 2..];
        let mut signatures = Vec::new();
        for line in sig_block.lines() {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs a name and a signature",
            ))?;
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if blob.len() != 68 {
                // Not an Ed25519 signature; keep the note readable but ignore the line.
                continue;
            }
            let mut key_hash = [0u8; 4];
            key_hash.copy_from_slice(&blob[..4]);
            let mut signature = [0u8; 64];
            signature.copy_from_slice(&blob[4..]);
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_hash,
                signature,
            });
        }
        if signatures.is_empty() {
            return Err(NoteError::Malformed("no signatures"));
        }
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Checks the note against trusted keys; returns the trusted keys that signed it.
    ///
    /// A signature line naming a trusted key (same name and key hash) that does not verify is
    /// an error, not something to skip: it is a forgery or a corruption.
    ///
    /// # Errors
    ///
    /// [`NoteError::BadSignature`] or [`NoteError::NoTrustedSignature`].
    pub fn verify<'k>(
        &self,
        trusted: &'k [VerifierKey],
    ) -> Result<Vec<&'k VerifierKey>, NoteError> {
        let mut ok = Vec::new();
        for sig in &self.signatures {
            let Some(key) = trusted
                .iter()
                .find(|k| k.name == sig.name && k.key_hash == sig.key_hash)
            else {
                continue;
            };
            if !key.verifies(self.text.as_bytes(), &sig.signature) {
                return Err(NoteError::BadSignature(key.to_string()));
            }
            ok.push(key);
        }
        if ok.is_empty() {
            let who: Vec<String> = self
                .signatures
                .iter()
                .map(|s| format!("{}+{}", s.name, hex4(&s.key_hash)))
                .collect();
            return Err(NoteError::NoTrustedSignature(who.join(", ")));
        }
        Ok(ok)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_parse_verify_round_trip() {
        let signer = Signer::generate("example.com/log").unwrap();
        let note = signer.sign_note("example.com/log\n3\nAAAA\n");
        assert!(note.contains("\n\n\u{2014} example.com/log "));
        let parsed = SignedNote::parse(&note).unwrap();
        assert_eq!(parsed.text, "example.com/log\n3\nAAAA\n");
        let trusted = [signer.verifier().clone()];
        assert_eq!(parsed.verify(&trusted).unwrap().len(), 1);

        let vk = VerifierKey::parse(&signer.verifier().to_string()).unwrap();
        assert_eq!(&vk, signer.verifier());
        let again = Signer::parse(&signer.to_private_string()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());

        let other = Signer::generate("example.com/log").unwrap();
        assert!(matches!(
            parsed.verify(&[other.verifier().clone()]),
            Err(NoteError::NoTrustedSignature(_))
        ));
        let tampered = note.replace("\n3\n", "\n4\n");
        let parsed = SignedNote::parse(&tampered).unwrap();
        assert!(matches!(
            parsed.verify(&trusted),
            Err(NoteError::BadSignature(_))
        ));
    }

    /// The example verifier key and note from the signed-note specification
    /// (c2sp.org/signed-note, also golang.org/x/mod/sumdb/note).
    #[test]
    fn spec_example_key_and_hash() {
        let vk = VerifierKey::parse(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        )
        .unwrap();
        assert_eq!(vk.name, "PeterNeumann");
        assert!(VerifierKey::parse(
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        )
        .is_err());
        let note = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let parsed = SignedNote::parse(note).unwrap();
        parsed.verify(std::slice::from_ref(&vk)).unwrap();
        // Ed25519 is deterministic: the published private key reproduces the published note.
        let signer = Signer::parse(
            "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        )
        .unwrap();
        assert_eq!(signer.verifier(), &vk);
        assert_eq!(signer.sign_note(&parsed.text), note);
    }

    #[test]
    fn hostile_notes_do_not_panic() {
        for bad in [
            "",
            "\n",
            "\n\n",
            "text\n\n\u{2014}\n",
            "text\n\n\u{2014} a\n",
            "text\n\n\u{2014} a !!!\n",
            "text\n\n- a AAAA\n",
            "text\n\n\u{2014} a AAAA\n",
        ] {
            assert!(SignedNote::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "+",
            "a+b+c",
            "a+00000000+",
            "a+00000000+AQ==",
            "+00000000+AQ==",
        ] {
            assert!(VerifierKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
