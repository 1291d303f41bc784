//! Record values a batch at a time, sealed and opened where they lie.
//!
//! Why this exists: the data path encrypts and decrypts whole record batches of
//! kilobyte-sized values. Doing that one value at a time through
//! [`Keyring::encrypt_value_with`] and [`Keyring::decrypt_value_with`] costs, per value, a
//! clock read, a lock and a map lookup for the DEK, an associated-data buffer and two
//! copies of the value; together more than AES-GCM itself. A [`ValueSealer`] reserves the
//! batch's DEK uses once and keeps the associated data; a [`ValueOpener`] keeps the last DEK
//! it looked up; both seal and open in the caller's output buffer. The bytes are exactly
//! those of the one-value functions (a test checks it).

use std::sync::Arc;

use super::{ActiveDek, KeyAccess, Keyring};
use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::dek_id::{DekId, DEK_ID_LEN};
use crate::error::CryptoError;
use crate::format::{
    self, Part, SealedValue, CIPHER_AES_256_GCM, FORMAT_VERSION, OVERHEAD, PREFIX_LEN,
};
use crate::topic_name;

/// Seals a given number of record values of one topic: the DEK uses are reserved in as few
/// reservations as the DEK limits allow (one, unless the batch holds more values than a DEK
/// may seal, or the current DEK runs out), a new DEK taken as
/// [`Keyring::encrypt_value_with`] would.
pub struct ValueSealer<'k> {
    keyring: &'k Keyring,
    topic: &'k str,
    access: KeyAccess,
    dek: Arc<ActiveDek>,
    aad: Vec<u8>,
    /// Seals left on the current reservation.
    reserved: u64,
    /// Seals left after those.
    unreserved: u64,
}

impl std::fmt::Debug for ValueSealer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueSealer")
            .field("dek_id", &self.dek.id)
            .field("reserved", &self.reserved)
            .field("unreserved", &self.unreserved)
            .finish_non_exhaustive()
    }
}

impl ValueSealer<'_> {
    /// The length of the sealed form of a `plaintext_len`-byte value.
    #[must_use]
    pub const fn sealed_len(plaintext_len: usize) -> usize {
        plaintext_len + OVERHEAD
    }

    /// Seals one value in place. `buf` is [`format::PREFIX_LEN`] bytes of any content, the
    /// plaintext, then [`crate::aead::TAG_LEN`] bytes of any content; on return it holds the
    /// v1 encrypted value (the same bytes as [`Keyring::encrypt_value`] with this nonce).
    ///
    /// # Errors
    ///
    /// [`CryptoError::TooManyParts`] once the announced number of values is sealed, a
    /// key failure where a new DEK is needed (as [`Keyring::encrypt_value_with`]),
    /// [`CryptoError::BadFormat`] if `buf` is shorter than the overhead.
    pub fn seal_in_place(&mut self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let len = buf.len();
        let plain_end = len
            .checked_sub(TAG_LEN)
            .filter(|end| *end >= PREFIX_LEN)
            .ok_or(format::FormatError::TooShort { len })?;
        if self.reserved == 0 {
            self.reserve_more()?;
        }
        self.reserved -= 1;
        let nonce = self.dek.nonce();
        let (prefix, rest) = buf.split_at_mut(PREFIX_LEN);
        write_prefix(prefix, self.dek.id, &nonce);
        let (plain, tag_out) = rest.split_at_mut(plain_end - PREFIX_LEN);
        let tag = self
            .dek
            .key
            .seal_in_place_separate_tag(&nonce, &self.aad, plain)?;
        tag_out.copy_from_slice(&tag);
        Ok(())
    }
}

impl ValueSealer<'_> {
    /// The next reservation, on the current DEK or a new one.
    fn reserve_more(&mut self) -> Result<(), CryptoError> {
        if self.unreserved == 0 {
            return Err(CryptoError::TooManyParts { parts: 1, limit: 0 });
        }
        let (dek, uses) = self
            .keyring
            .reserve_up_to(self.topic, self.unreserved, self.access)?;
        if dek.id != self.dek.id {
            self.aad = format::aad(self.topic, dek.id, Part::Value);
            self.dek = dek;
        }
        self.reserved = uses;
        self.unreserved -= uses;
        Ok(())
    }
}

fn write_prefix(prefix: &mut [u8], id: DekId, nonce: &[u8; NONCE_LEN]) {
    prefix[0] = FORMAT_VERSION;
    prefix[1] = CIPHER_AES_256_GCM;
    prefix[2..2 + DEK_ID_LEN].copy_from_slice(&id.0);
    prefix[2 + DEK_ID_LEN..PREFIX_LEN].copy_from_slice(nonce);
}

/// Opens record values of one topic, keeping the DEK (and its associated data) of the last
/// value: the values of a batch almost always share one.
pub struct ValueOpener<'k> {
    keyring: &'k Keyring,
    topic: &'k str,
    last: Option<(DekId, Arc<AeadKey>, Vec<u8>)>,
}

impl std::fmt::Debug for ValueOpener<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueOpener")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl ValueOpener<'_> {
    /// The v1 value `sealed`, parsed: the caller copies its
    /// [`SealedValue::ciphertext`] to where the plaintext belongs (it is as long) and opens
    /// it there with [`ValueOpener::open_in_place`].
    ///
    /// # Errors
    ///
    /// [`CryptoError::BadFormat`] for bytes that are not a v1 value.
    pub fn parse(sealed: &[u8]) -> Result<SealedValue<'_>, CryptoError> {
        Ok(format::parse(sealed)?)
    }

    /// Verifies `value` and decrypts `buf`, a copy of its ciphertext, in place. On failure
    /// `buf` holds no plaintext (and is untouched when the DEK is not available).
    ///
    /// # Errors
    ///
    /// As [`Keyring::decrypt_value_with`]; [`CryptoError::BadFormat`] if `buf` has another
    /// length than the ciphertext.
    pub fn open_in_place(
        &mut self,
        value: &SealedValue<'_>,
        buf: &mut [u8],
        access: KeyAccess,
    ) -> Result<(), CryptoError> {
        if buf.len() != value.ciphertext().len() {
            return Err(format::FormatError::TooShort { len: buf.len() }.into());
        }
        let (key, aad) = self.key(value.dek_id, access)?;
        key.open_in_place_separate_tag(&value.nonce, aad, value.tag(), buf)
            .map_err(|_| CryptoError::Tampered {
                topic: self.topic.to_owned(),
                dek_id: value.dek_id,
            })
    }

    fn key(&mut self, id: DekId, access: KeyAccess) -> Result<(&AeadKey, &[u8]), CryptoError> {
        let cached = matches!(&self.last, Some((last, _, _)) if *last == id);
        if !cached {
            let key = self.keyring.dek_for_decrypt(self.topic, id, access)?;
            let aad = format::aad(self.topic, id, Part::Value);
            self.last = Some((id, key, aad));
        }
        match &self.last {
            Some((_, key, aad)) => Ok((key, aad)),
            None => Err(CryptoError::KeyNotCached {
                topic: self.topic.to_owned(),
            }),
        }
    }
}

impl Keyring {
    /// A sealer for `values` record values of `topic`: the topic's active DEK with as many
    /// of them reserved as a DEK may seal (a new DEK where the current one cannot take
    /// them), the rest reserved as the sealer needs them.
    ///
    /// # Errors
    ///
    /// As [`Keyring::encrypt_value_with`].
    pub fn value_sealer<'k>(
        &'k self,
        topic: &'k str,
        values: u64,
        access: KeyAccess,
    ) -> Result<ValueSealer<'k>, CryptoError> {
        let (dek, reserved) = self.reserve_up_to(topic, values.max(1), access)?;
        let aad = format::aad(topic, dek.id, Part::Value);
        Ok(ValueSealer {
            keyring: self,
            topic,
            access,
            dek,
            aad,
            reserved: reserved.min(values),
            unreserved: values.saturating_sub(reserved),
        })
    }

    /// Reserves `wanted` uses, at most a DEK's limit, on the topic's active DEK (or a new
    /// one); returns it and how many were reserved.
    fn reserve_up_to(
        &self,
        topic: &str,
        wanted: u64,
        access: KeyAccess,
    ) -> Result<(Arc<ActiveDek>, u64), CryptoError> {
        let uses = wanted.min(self.limits.max_records());
        Ok((self.reserve(topic, uses, access)?, uses))
    }

    /// An opener for record values read from `topic`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidTopic`].
    pub fn value_opener<'k>(&'k self, topic: &'k str) -> Result<ValueOpener<'k>, CryptoError> {
        topic_name::check(topic)?;
        Ok(ValueOpener {
            keyring: self,
            topic,
            last: None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{DekLimits, LocalKeyFile, MemoryStore, SecretKey};

    fn ring() -> Keyring {
        Keyring::new(
            Arc::new(LocalKeyFile::from_key(&SecretKey::from_bytes([5; 32])).unwrap()),
            Arc::new(MemoryStore::new()),
            DekLimits::default(),
        )
    }

    fn seal(sealer: &mut ValueSealer<'_>, plain: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; PREFIX_LEN];
        buf.extend_from_slice(plain);
        buf.extend_from_slice(&[0u8; TAG_LEN]);
        sealer.seal_in_place(&mut buf).unwrap();
        buf
    }

    #[test]
    fn sealed_in_place_opens_both_ways() {
        let ring = ring();
        let mut sealer = ring.value_sealer("orders", 3, KeyAccess::Load).unwrap();
        let mut opener = ring.value_opener("orders").unwrap();
        for plain in [&b""[..], b"a", &[7u8; 1500]] {
            let sealed = seal(&mut sealer, plain);
            assert_eq!(sealed.len(), ValueSealer::sealed_len(plain.len()));
            assert_eq!(ring.decrypt_value("orders", &sealed).unwrap(), plain);
            let one_at_a_time = ring.encrypt_value("orders", plain).unwrap();
            let one_at_a_time = ValueOpener::parse(&one_at_a_time).unwrap();
            let mut out = one_at_a_time.ciphertext().to_vec();
            opener
                .open_in_place(&one_at_a_time, &mut out, KeyAccess::CachedOnly)
                .unwrap();
            assert_eq!(out, plain);
        }
        let mut buf = vec![0u8; OVERHEAD];
        assert!(matches!(
            sealer.seal_in_place(&mut buf),
            Err(CryptoError::TooManyParts { .. })
        ));
    }

    #[test]
    fn opener_refuses_other_topics_and_tampering() {
        let ring = ring();
        let mut sealer = ring.value_sealer("orders", 1, KeyAccess::Load).unwrap();
        ring.ensure_topic("payments").unwrap();
        let mut sealed = seal(&mut sealer, b"secret value");
        fn parsed(sealed: &[u8]) -> (SealedValue<'_>, Vec<u8>) {
            let value = ValueOpener::parse(sealed).unwrap();
            (value, value.ciphertext().to_vec())
        }
        let mut other = ring.value_opener("payments").unwrap();
        let (value, mut out) = parsed(&sealed);
        assert!(other
            .open_in_place(&value, &mut out, KeyAccess::Load)
            .is_err());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let mut opener = ring.value_opener("orders").unwrap();
        let (value, mut out) = parsed(&sealed);
        assert!(matches!(
            opener.open_in_place(&value, &mut out, KeyAccess::Load),
            Err(CryptoError::Tampered { .. })
        ));
        assert!(
            out.iter().all(|b| *b == 0),
            "no plaintext left after a failure"
        );
        sealed[last] ^= 1;
        let (value, mut out) = parsed(&sealed);
        let mut short = vec![0u8; 3];
        assert!(opener
            .open_in_place(&value, &mut short, KeyAccess::Load)
            .is_err());
        opener
            .open_in_place(&value, &mut out, KeyAccess::Load)
            .unwrap();
        assert_eq!(out, b"secret value");
    }

    #[test]
    fn a_batch_larger_than_a_dek_limit_spans_several_deks() {
        let ring = Keyring::new(
            Arc::new(LocalKeyFile::from_key(&SecretKey::from_bytes([5; 32])).unwrap()),
            Arc::new(MemoryStore::new()),
            DekLimits::new(4, 3600).unwrap(),
        );
        let mut sealer = ring.value_sealer("t", 10, KeyAccess::Load).unwrap();
        let sealed: Vec<Vec<u8>> = (0..10u8).map(|i| seal(&mut sealer, &[i; 8])).collect();
        let mut ids: Vec<DekId> = sealed
            .iter()
            .map(|s| format::parse(s).unwrap().dek_id)
            .collect();
        for (i, s) in sealed.iter().enumerate() {
            assert_eq!(ring.decrypt_value("t", s).unwrap(), vec![i as u8; 8]);
        }
        assert!(ids[..4].iter().all(|id| *id == ids[0]));
        ids.dedup();
        assert_eq!(ids.len(), 3, "4 + 4 + 2 values under a limit of 4");
        let mut buf = vec![0u8; OVERHEAD];
        assert!(matches!(
            sealer.seal_in_place(&mut buf),
            Err(CryptoError::TooManyParts { .. })
        ));
        // A new sealer goes on with the DEK that still has room (2 of 4 used), and the
        // reservation that does not fit takes a new one.
        let next = ring.value_sealer("t", 2, KeyAccess::Load).unwrap();
        assert_eq!(next.dek.id, ids[2]);
        let another = ring.value_sealer("t", 1, KeyAccess::Load).unwrap();
        assert_ne!(another.dek.id, ids[2], "that DEK is spent");
    }
}
