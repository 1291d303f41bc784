//! Whole records: the value, the header values, and the `portcullis.enc` marker header.
//!
//! A record is encrypted in place of its parts: the value (unless null: tombstones stay
//! tombstones so compaction keeps working) and, when the topic's setting asks for it, every
//! non-null header value. Record keys stay in clear (partitioning and compaction need them).
//! The marker header is appended last; its value is ASCII:
//!
//! - `1`  — format v1, value encrypted (if not null), header values in clear;
//! - `1h` — format v1, value and every non-null header value encrypted.
//!
//! Each encrypted header value uses the same layout as a value (own nonce, same DEK), with
//! associated data that also binds the header key and its occurrence number among headers
//! with that key, so header values cannot be swapped between keys or reordered within a key.
//! Under `1h`, the encrypted header values are exactly the non-null ones *before* the marker:
//! a tool that appends headers after the proxy wrote the record (the usual `Headers.add`)
//! does not break decryption, and those appended headers are passed through in clear; a
//! header inserted before the marker fails authentication (fail closed).

use std::collections::HashMap;

use crate::error::CryptoError;
use crate::format::{FormatError, Part, FORMAT_VERSION, MARKER_HEADER};
use crate::keyring::{KeyAccess, Keyring};

/// Marker value: value encrypted, headers in clear.
pub const MARKER_VALUE_ONLY: &[u8] = b"1";
/// Marker value: value and header values encrypted.
pub const MARKER_WITH_HEADERS: &[u8] = b"1h";

/// One record header as Kafka carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header key (always in clear).
    pub key: String,
    /// The header value (`None` is Kafka's null header value).
    pub value: Option<Vec<u8>>,
}

/// The parts of a record this crate transforms (the key and everything else pass through).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordPayload {
    /// The record value (`None` is a tombstone).
    pub value: Option<Vec<u8>>,
    /// The record headers, in order.
    pub headers: Vec<Header>,
}

/// Per-topic record encryption settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordOptions {
    /// Encrypt header values too.
    pub encrypt_headers: bool,
}

fn occurrences<'a>(headers: &'a [Header]) -> impl Iterator<Item = (&'a Header, u32)> + 'a {
    let mut seen: HashMap<&'a str, u32> = HashMap::new();
    headers.iter().map(move |h| {
        let n = seen.entry(h.key.as_str()).or_insert(0);
        let occurrence = *n;
        *n = n.saturating_add(1);
        (h, occurrence)
    })
}

/// What a marker header's value says: `Ok(false)` for `1` (the value is encrypted),
/// `Ok(true)` for `1h` (header values too).
///
/// # Errors
///
/// [`FormatError::UnsupportedVersion`] for another format version's marker,
/// [`FormatError::BadMarker`] for anything else.
pub fn marker_covers_headers(marker: Option<&[u8]>) -> Result<bool, CryptoError> {
    match marker {
        Some(MARKER_VALUE_ONLY) => Ok(false),
        Some(MARKER_WITH_HEADERS) => Ok(true),
        Some([v, ..]) if *v != b'0' + FORMAT_VERSION && v.is_ascii_digit() => {
            Err(FormatError::UnsupportedVersion(v - b'0').into())
        }
        _ => Err(FormatError::BadMarker.into()),
    }
}

impl Keyring {
    /// Encrypts `record` for `topic` in place: the value (if not null), the header values if
    /// `options.encrypt_headers`, then appends the marker header. A record with nothing to
    /// encrypt (null value, and no header values to encrypt) is left unchanged and unmarked.
    /// On error the record is unchanged.
    ///
    /// # Errors
    ///
    /// [`CryptoError::AlreadyEncrypted`] if it already carries a marker header, otherwise as
    /// [`Keyring::encrypt_value`].
    pub fn encrypt_record(
        &self,
        topic: &str,
        record: &mut RecordPayload,
        options: RecordOptions,
    ) -> Result<(), CryptoError> {
        self.encrypt_record_with(topic, record, options, KeyAccess::Load)
    }

    /// [`Keyring::encrypt_record`] with a choice of whether a new DEK may be created here
    /// ([`KeyAccess::CachedOnly`] fails with [`CryptoError::KeyNotCached`] instead).
    ///
    /// # Errors
    ///
    /// As [`Keyring::encrypt_record`], and [`CryptoError::KeyNotCached`].
    pub fn encrypt_record_with(
        &self,
        topic: &str,
        record: &mut RecordPayload,
        options: RecordOptions,
        access: KeyAccess,
    ) -> Result<(), CryptoError> {
        if record.headers.iter().any(|h| h.key == MARKER_HEADER) {
            return Err(CryptoError::AlreadyEncrypted);
        }
        let header_parts = if options.encrypt_headers {
            record.headers.iter().filter(|h| h.value.is_some()).count()
        } else {
            0
        };
        let uses =
            u64::from(record.value.is_some()) + u64::try_from(header_parts).unwrap_or(u64::MAX);
        if uses == 0 {
            return Ok(());
        }
        let dek = self.reserve(topic, uses, access)?;
        let value = match &record.value {
            Some(v) => Some(self.seal(&dek, topic, Part::Value, v)?),
            None => None,
        };
        let mut headers = Vec::with_capacity(record.headers.len() + 1);
        for (h, occurrence) in occurrences(&record.headers) {
            let value = match (&h.value, options.encrypt_headers) {
                (Some(v), true) => Some(self.seal(
                    &dek,
                    topic,
                    Part::HeaderValue {
                        key: &h.key,
                        occurrence,
                    },
                    v,
                )?),
                (v, _) => v.clone(),
            };
            headers.push(Header {
                key: h.key.clone(),
                value,
            });
        }
        headers.push(Header {
            key: MARKER_HEADER.to_owned(),
            value: Some(if options.encrypt_headers {
                MARKER_WITH_HEADERS.to_vec()
            } else {
                MARKER_VALUE_ONLY.to_vec()
            }),
        });
        record.value = value;
        record.headers = headers;
        Ok(())
    }

    /// Decrypts `record` read from `topic` in place and removes the marker header. On error
    /// the record is unchanged.
    ///
    /// # Errors
    ///
    /// [`CryptoError::NotEncrypted`] without a marker header, [`CryptoError::BadFormat`] for
    /// an unknown or duplicated marker, otherwise as [`Keyring::decrypt_value`].
    pub fn decrypt_record(
        &self,
        topic: &str,
        record: &mut RecordPayload,
    ) -> Result<(), CryptoError> {
        self.decrypt_record_with(topic, record, KeyAccess::Load)
    }

    /// [`Keyring::decrypt_record`] with a choice of whether a DEK missing from memory may be
    /// loaded here ([`KeyAccess::CachedOnly`] fails with [`CryptoError::KeyNotCached`]).
    ///
    /// # Errors
    ///
    /// As [`Keyring::decrypt_record`], and [`CryptoError::KeyNotCached`].
    pub fn decrypt_record_with(
        &self,
        topic: &str,
        record: &mut RecordPayload,
        access: KeyAccess,
    ) -> Result<(), CryptoError> {
        let mut markers = record
            .headers
            .iter()
            .enumerate()
            .filter(|(_, h)| h.key == MARKER_HEADER);
        let (position, marker) = markers.next().ok_or(CryptoError::NotEncrypted)?;
        if markers.next().is_some() {
            return Err(FormatError::DuplicateMarker.into());
        }
        let with_headers = marker_covers_headers(marker.value.as_deref())?;
        let value = match &record.value {
            Some(v) => Some(self.open(topic, Part::Value, v, access)?),
            None => None,
        };
        // Headers before the marker are the ones the proxy saw (encrypted under "1h");
        // headers after it were appended later by other tools and are in clear.
        let (sealed, appended) = record.headers.split_at(position);
        let mut headers = Vec::with_capacity(record.headers.len() - 1);
        for (h, occurrence) in occurrences(sealed) {
            let value = match (&h.value, with_headers) {
                (Some(v), true) => Some(self.open(
                    topic,
                    Part::HeaderValue {
                        key: &h.key,
                        occurrence,
                    },
                    v,
                    access,
                )?),
                (v, _) => v.clone(),
            };
            headers.push(Header {
                key: h.key.clone(),
                value,
            });
        }
        headers.extend(appended.iter().skip(1).cloned());
        record.value = value;
        record.headers = headers;
        Ok(())
    }
}
