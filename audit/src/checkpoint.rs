//! C2SP tlog checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed statement "the log
//! named `origin` had `size` entries with this root hash".
//!
//! The body is three lines, `<origin>\n<size>\n<base64 root>\n`, signed as a note
//! ([`crate::note`]). Checkpoints are kept forever: each one pins a prefix of the log, so
//! removing or changing an old entry breaks every later checkpoint.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::merkle::Hash;
use crate::note::{NoteError, SignedNote, Signer, VerifierKey};

/// An unsigned checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (a unique name for the log).
    pub origin: String,
    /// Number of entries covered.
    pub size: u64,
    /// Root hash of the tree of the first `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The body text, `<origin>\n<size>\n<base64 root>\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a checkpoint body (extension lines after the root are allowed and ignored).
    ///
    /// # Errors
    ///
    /// [`NoteError::Malformed`] naming the bad line.
    pub fn parse_body(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or(NoteError::Malformed("checkpoint has no origin line"))?;
        let size_line = lines
            .next()
            .ok_or(NoteError::Malformed("checkpoint has no size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(NoteError::Malformed(
                "checkpoint size is not a decimal number",
            ));
        }
        let size: u64 = size_line
            .parse()
            .map_err(|_| NoteError::Malformed("checkpoint size is out of range"))?;
        let root_line = lines
            .next()
            .ok_or(NoteError::Malformed("checkpoint has no root line"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(NoteError::Malformed(
                "checkpoint root is not 32 bytes of base64",
            ))?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Signs the checkpoint; returns the complete signed note.
    pub fn sign(&self, signer: &Signer) -> String {
        signer.sign_note(&self.body())
    }
}

/// A signed checkpoint as stored and exported: the note text and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The parsed note (text and signatures).
    pub note: SignedNote,
    /// The full note as stored.
    pub raw: String,
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint without checking signatures.
    ///
    /// # Errors
    ///
    /// [`NoteError::Malformed`].
    pub fn parse(raw: &str) -> Result<SignedCheckpoint, NoteError> {
        let note = SignedNote::parse(raw)?;
        let checkpoint = Checkpoint::parse_body(&note.text)?;
        Ok(SignedCheckpoint {
            checkpoint,
            note,
            raw: raw.to_owned(),
        })
    }

    /// Checks the signatures against trusted keys.
    ///
    /// # Errors
    ///
    /// See [`SignedNote::verify`].
    pub fn verify<'k>(
        &self,
        trusted: &'k [VerifierKey],
    ) -> Result<Vec<&'k VerifierKey>, NoteError> {
        self.note.verify(trusted)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trip_and_signature() {
        let cp = Checkpoint {
            origin: "portcullis-audit/test".into(),
            size: 8,
            root: [7; 32],
        };
        assert_eq!(
            cp.body(),
            "portcullis-audit/test\n8\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
        );
        let signer = Signer::generate("portcullis-audit/test").unwrap();
        let raw = cp.sign(&signer);
        let parsed = SignedCheckpoint::parse(&raw).unwrap();
        assert_eq!(parsed.checkpoint, cp);
        parsed.verify(&[signer.verifier().clone()]).unwrap();
    }

    #[test]
    fn bad_bodies() {
        for bad in [
            "",
            "o\n",
            "o\nx\n",
            "o\n01\nAA==\n",
            "o\n1\nAA==\n",
            "\n1\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
    }
}
