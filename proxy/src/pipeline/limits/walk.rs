//! Counting what a request body names without decoding it.
//!
//! The walker reads a body field by field as its specification says, touching no memory
//! beyond the frame: an array's declared count is added to its category and checked against
//! the limit *before* its elements are read, so a 5-byte count of two billion topics is
//! refused after five bytes, and the elements read afterwards are at most the limits. Tagged
//! fields are counted too (kafka-protocol keeps unknown ones in a map). Strings, bytes and
//! records are skipped by length.

use super::counts::{Category, Counts, ItemLimits};
use super::spec::{FieldSpec, Kind, MessageSpec};

/// The reason given for a known tagged field whose size does not match its value.
pub const TAG_SIZE_MISMATCH: &str = "a tagged field's size does not match its value";

/// Why a body was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalkError {
    /// The body ended inside a field.
    #[error("request body truncated")]
    Truncated,
    /// A length or count is negative (other than the null marker) or a varint is too long.
    #[error("malformed request body: {0}")]
    Malformed(&'static str),
    /// A category's count went over its limit.
    #[error("request names {count} {} or more (limit {limit})", category.as_str())]
    Exceeded {
        /// The category.
        category: Category,
        /// The count reached when the limit was passed (declared counts included).
        count: u64,
        /// The limit.
        limit: u64,
    },
}

/// Counts the items `body` (a request body of `spec` at `version`) names, refusing at the
/// first category over its limit.
pub fn count_items(
    spec: &MessageSpec,
    version: i16,
    body: &[u8],
    limits: &ItemLimits,
) -> Result<Counts, WalkError> {
    walk(spec, version, body, limits).map(|(counts, _)| counts)
}

/// [`count_items`], also returning how many bytes the body's fields took (the rest are
/// trailing bytes, which brokers ignore).
pub fn walk(
    spec: &MessageSpec,
    version: i16,
    body: &[u8],
    limits: &ItemLimits,
) -> Result<(Counts, usize), WalkError> {
    let mut walker = Walker {
        bytes: body,
        pos: 0,
        version,
        flexible: spec.flexible.contains(version),
        counts: Counts::default(),
        limits,
    };
    walker.fields(&spec.fields)?;
    Ok((walker.counts, walker.pos))
}

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
    counts: Counts,
    limits: &'a ItemLimits,
}

impl<'a> Walker<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WalkError> {
        let end = self.pos.checked_add(n).ok_or(WalkError::Truncated)?;
        let slice = self.bytes.get(self.pos..end).ok_or(WalkError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn int(&mut self, n: usize) -> Result<i64, WalkError> {
        let bytes = self.take(n)?;
        // Sign-extend a big-endian integer of n bytes.
        let first = bytes.first().map_or(0, |b| i64::from(*b as i8));
        Ok(bytes[1..]
            .iter()
            .fold(first, |acc, b| (acc << 8) | i64::from(*b)))
    }

    fn varint(&mut self) -> Result<u64, WalkError> {
        let mut value: u64 = 0;
        for i in 0..5 {
            let byte = self.take(1)?[0];
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WalkError::Malformed("varint longer than five bytes"))
    }

    /// A length: classic `width`-byte signed or flexible varint + 1; `None` for null.
    fn length(&mut self, width: usize) -> Result<Option<u64>, WalkError> {
        if self.flexible {
            return Ok(self.varint()?.checked_sub(1));
        }
        match self.int(width)? {
            -1 => Ok(None),
            n => u64::try_from(n)
                .map(Some)
                .map_err(|_| WalkError::Malformed("negative length")),
        }
    }

    fn add(&mut self, category: Category, n: u64) -> Result<(), WalkError> {
        let count = self.counts.add(category, n);
        let limit = self.limits.get(category);
        if count > limit {
            return Err(WalkError::Exceeded {
                category,
                count,
                limit,
            });
        }
        Ok(())
    }

    fn fields(&mut self, fields: &[FieldSpec]) -> Result<(), WalkError> {
        let version = self.version;
        for field in fields {
            let tagged = self.flexible && field.tagged.contains(version);
            if field.versions.contains(version) && !tagged {
                self.value(&field.kind, field.nullable.contains(version))?;
            }
        }
        if self.flexible {
            self.tagged_fields(fields)?;
        }
        Ok(())
    }

    fn value(&mut self, kind: &Kind, nullable: bool) -> Result<(), WalkError> {
        match kind {
            Kind::Fixed(n) => {
                self.take(*n)?;
            }
            Kind::String => self.skip_sized(2)?,
            Kind::Bytes => self.skip_sized(4)?,
            Kind::Array { element, counts } => {
                let n = self.length(4)?.unwrap_or(0);
                self.add(*counts, n)?;
                for _ in 0..n {
                    self.value(element, false)?;
                }
            }
            Kind::Struct(fields) => {
                // A nullable structure is preceded by a presence byte (1 = present).
                if nullable && self.int(1)? != 1 {
                    return Ok(());
                }
                self.fields(fields)?;
            }
        }
        Ok(())
    }

    fn skip_sized(&mut self, width: usize) -> Result<(), WalkError> {
        if let Some(len) = self.length(width)? {
            let len = usize::try_from(len).map_err(|_| WalkError::Truncated)?;
            self.take(len)?;
        }
        Ok(())
    }

    /// The tagged-field section that ends a structure in flexible versions: every tag counts
    /// as an entry; known tags are walked in their own bytes, unknown ones skipped.
    fn tagged_fields(&mut self, fields: &[FieldSpec]) -> Result<(), WalkError> {
        let n = self.varint()?;
        self.add(Category::Entries, n)?;
        for _ in 0..n {
            let tag = self.varint()?;
            let size = usize::try_from(self.varint()?).map_err(|_| WalkError::Truncated)?;
            let version = self.version;
            let known = fields.iter().find(|f| {
                f.tag.map(u64::from) == Some(tag)
                    && f.tagged.contains(version)
                    && f.versions.contains(version)
            });
            let data = match (self.take(size), known) {
                (Ok(data), _) => data,
                (Err(_), Some(_)) => return Err(WalkError::Malformed(TAG_SIZE_MISMATCH)),
                (Err(e), None) => return Err(e),
            };
            if let Some(field) = known {
                let (bytes, pos) = (self.bytes, self.pos);
                self.bytes = data;
                self.pos = 0;
                let walked = self.value(&field.kind, field.nullable.contains(version));
                let exact = self.pos == data.len();
                self.bytes = bytes;
                self.pos = pos;
                // A value longer than its size is a mismatch too.
                walked.map_err(|e| match e {
                    WalkError::Truncated => WalkError::Malformed(TAG_SIZE_MISMATCH),
                    other => other,
                })?;
                // kafka-protocol reads a known tag's value without regard to its size and
                // goes on from where the value ended: a size that does not match would make
                // it read bytes this walker skipped. Refused.
                if !exact {
                    return Err(WalkError::Malformed(TAG_SIZE_MISMATCH));
                }
            }
        }
        Ok(())
    }
}
