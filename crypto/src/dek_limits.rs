//! When a DEK stops encrypting.
//!
//! NIST SP 800-38D (8.3) allows at most 2^32 GCM invocations per key (the bound for random
//! 96-bit nonces; the keyring's nonces are a per-DEK prefix and a counter, which cannot repeat,
//! but the standard's bound is kept). So a DEK is retired after a configured number of encryptions, never
//! more than [`MAX_RECORDS_PER_DEK`], or after a configured age, whichever comes first.
//! Every sealed value counts (a record with encrypted headers counts once per header value).

/// The hard cap on encryptions per DEK (2^32).
pub const MAX_RECORDS_PER_DEK: u64 = 1 << 32;

/// A DEK limit outside what is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// More than 2^32 encryptions per DEK.
    #[error("max_records_per_dek {0} exceeds 2^32, the per-key limit of NIST SP 800-38D")]
    TooManyRecords(u64),
    /// Zero records or zero age would never encrypt.
    #[error("DEK limits must be at least 1 record and 1 second")]
    Zero,
}

/// The retirement limits of DEKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DekLimits {
    max_records: u64,
    max_age_secs: u64,
}

impl DekLimits {
    /// Limits of `max_records` encryptions and `max_age_secs` seconds per DEK.
    ///
    /// # Errors
    ///
    /// [`LimitError`] if `max_records` is 0 or above 2^32, or `max_age_secs` is 0.
    pub fn new(max_records: u64, max_age_secs: u64) -> Result<Self, LimitError> {
        if max_records > MAX_RECORDS_PER_DEK {
            return Err(LimitError::TooManyRecords(max_records));
        }
        if max_records == 0 || max_age_secs == 0 {
            return Err(LimitError::Zero);
        }
        Ok(Self {
            max_records,
            max_age_secs,
        })
    }

    /// Encryptions allowed per DEK.
    #[must_use]
    pub fn max_records(&self) -> u64 {
        self.max_records
    }

    /// Seconds a DEK may encrypt for.
    #[must_use]
    pub fn max_age_secs(&self) -> u64 {
        self.max_age_secs
    }
}

impl Default for DekLimits {
    /// 2^30 encryptions (a quarter of the cap) or 24 hours.
    fn default() -> Self {
        Self {
            max_records: 1 << 30,
            max_age_secs: 24 * 60 * 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_enforced() {
        assert!(DekLimits::new(MAX_RECORDS_PER_DEK, 1).is_ok());
        assert_eq!(
            DekLimits::new(MAX_RECORDS_PER_DEK + 1, 1),
            Err(LimitError::TooManyRecords(MAX_RECORDS_PER_DEK + 1))
        );
        assert_eq!(DekLimits::new(0, 1), Err(LimitError::Zero));
        assert_eq!(DekLimits::new(1, 0), Err(LimitError::Zero));
        assert!(DekLimits::default().max_records() <= MAX_RECORDS_PER_DEK);
    }
}
