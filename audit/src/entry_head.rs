//! What verification reads from each entry's JSON: that it is an event (a JSON object with a
//! `category` and an `action`), its `seq` field and its category.
//!
//! The reference is serde_json with [`EntryHead`]. Parsing it costs about as much as hashing
//! the entry, so entries in the canonical form the sequencer writes (compact JSON, keys without
//! escapes, no `\u` escapes, integers only) are recognised by a small scanner first. The
//! scanner only ever *accepts* a subset of what serde_json accepts, with the same result; on
//! anything else (whitespace, escapes in keys, decimals, duplicate fields, unknown categories,
//! deep nesting, bytes that are not UTF-8, any syntax error) it gives up and serde_json
//! decides, so the check is exactly as strict as serde_json's. A differential test over
//! mutated entries holds it to that.

use crate::event::Category;

/// The part of an entry verification decodes (the reference decoder).
#[derive(serde::Deserialize)]
struct EntryHead<'a> {
    #[serde(default)]
    seq: Option<u64>,
    category: Category,
    #[serde(borrow, rename = "action")]
    _action: std::borrow::Cow<'a, str>,
}

/// The `seq` field and category of an entry, or why it is not an event.
///
/// # Errors
///
/// serde_json's message when the entry is not an event.
pub(crate) fn parse_head(bytes: &[u8]) -> Result<(Option<u64>, Category), String> {
    if let Some(head) = canonical(bytes) {
        return Ok(head);
    }
    serde_json::from_slice::<EntryHead<'_>>(bytes)
        .map(|h| (h.seq, h.category))
        .map_err(|e| e.to_string())
}

/// Deepest nesting the scanner follows (serde_json's limit is 128).
const MAX_DEPTH: usize = 64;

/// Whether `c` ends or interrupts a run of plain ASCII string content: a quote, a backslash, a
/// control character, or a byte that is not ASCII (checked as UTF-8 separately).
fn is_string_special(c: u8) -> bool {
    matches!(c, b'"' | b'\\' | 0x00..=0x1f | 0x80..=0xff)
}

/// How many bytes at the start of `s` are ordinary string content (none of
/// [`is_string_special`]), tested a word at a time.
///
/// For each of the three tests the classic "has a zero byte" trick flags the lowest matching
/// byte of a word exactly (flags above it may be spurious, from the borrow), so the lowest flag
/// over all three (and the bytes with the high bit set, flagged exactly) is the first special
/// byte.
fn plain_prefix_len(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let mut words = s.chunks_exact(8);
    let mut done = 0usize;
    for word in words.by_ref() {
        let Ok(bytes) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let v = u64::from_le_bytes(bytes);
        let quote = zero_byte(v ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(v ^ (ONES * u64::from(b'\\')));
        let control = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
        let flags = quote | backslash | control | (v & HIGH);
        if flags != 0 {
            return done + (flags.trailing_zeros() / 8) as usize;
        }
        done += 8;
    }
    done + words
        .remainder()
        .iter()
        .position(|&c| is_string_special(c))
        .unwrap_or(words.remainder().len())
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Moves to the next byte that ends or interrupts plain string content (see
    /// [`is_string_special`]), skipping the plain bytes before it eight at a time.
    fn skip_plain(&mut self) {
        let rest = self.b.get(self.i..).unwrap_or_default();
        self.i += plain_prefix_len(rest);
    }

    /// A string without any backslash (after the opening quote was consumed): its content.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.string_body(false)
    }

    /// A string value (after the opening quote): simple escapes allowed, `\u` is not.
    fn string(&mut self) -> Option<()> {
        self.string_body(true).map(|_| ())
    }

    /// The raw content of a string whose opening quote was consumed, escapes allowed when
    /// `escapes` (simple ones only, not `\u`).
    ///
    /// Strings are the only place the scanner accepts bytes that are not ASCII, so checking
    /// that each string's content is UTF-8 checks the whole entry; ASCII-only content (the
    /// common case) needs no check.
    fn string_body(&mut self, escapes: bool) -> Option<&'a [u8]> {
        let start = self.i;
        let mut ascii = true;
        loop {
            self.skip_plain();
            match self.next()? {
                b'"' => break,
                b'\\' if escapes => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    _ => return None,
                },
                c if c >= 0x80 => ascii = false,
                _ => return None,
            }
        }
        let body = self.b.get(start..self.i - 1)?;
        if !ascii {
            std::str::from_utf8(body).ok()?;
        }
        Some(body)
    }

    /// An integer (first byte already consumed): `-?(0|[1-9][0-9]*)`, nothing after it that
    /// would make it a decimal.
    fn integer(&mut self, first: u8) -> Option<()> {
        let first = if first == b'-' { self.next()? } else { first };
        if first == b'0' {
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return None;
            }
        } else if !first.is_ascii_digit() {
            return None;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        match self.peek() {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(()),
        }
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.i.checked_add(rest.len())?;
        (self.b.get(self.i..end)? == rest).then(|| self.i = end)
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.next()? {
            b'"' => self.string(),
            b'{' => {
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    if self.next()? != b'"' {
                        return None;
                    }
                    self.plain_string()?;
                    if self.next()? != b':' {
                        return None;
                    }
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            c => self.integer(c),
        }
    }

    /// A `u64` in plain digits (no sign, no leading zero, no overflow, not a decimal).
    fn seq(&mut self) -> Option<u64> {
        let first = self.next()?;
        if !first.is_ascii_digit()
            || (first == b'0' && self.peek().is_some_and(|c| c.is_ascii_digit()))
        {
            return None;
        }
        let mut n = u64::from(first - b'0');
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        match self.peek() {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(n),
        }
    }
}

fn category(name: &[u8]) -> Option<Category> {
    Some(match name {
        b"connection" => Category::Connection,
        b"authn" => Category::Authn,
        b"authz" => Category::Authz,
        b"admin" => Category::Admin,
        b"config" => Category::Config,
        b"key" => Category::Key,
        b"audit-system" => Category::AuditSystem,
        _ => return None,
    })
}

/// The canonical-form scanner: `Some` only for entries serde_json accepts with this result.
///
/// The entry must be UTF-8 for serde_json; the scanner checks that string by string (see
/// [`Scanner::string_body`]).
fn canonical(b: &[u8]) -> Option<(Option<u64>, Category)> {
    let mut s = Scanner { b, i: 0 };
    if s.next()? != b'{' {
        return None;
    }
    let (mut seq, mut cat, mut action) = (None, None, false);
    loop {
        if s.next()? != b'"' {
            return None;
        }
        let key = s.plain_string()?;
        if s.next()? != b':' {
            return None;
        }
        match key {
            b"seq" if seq.is_none() => seq = Some(s.seq()?),
            b"category" if cat.is_none() => {
                if s.next()? != b'"' {
                    return None;
                }
                cat = Some(category(s.plain_string()?)?);
            }
            b"action" if !action => {
                if s.next()? != b'"' {
                    return None;
                }
                s.plain_string()?;
                action = true;
            }
            b"seq" | b"category" | b"action" => return None,
            _ => s.value(1)?,
        }
        match s.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    if s.i != b.len() || !action {
        return None;
    }
    Some((seq, cat?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::event::{Event, Outcome};

    fn reference(b: &[u8]) -> Result<(Option<u64>, Category), String> {
        serde_json::from_slice::<EntryHead<'_>>(b)
            .map(|h| (h.seq, h.category))
            .map_err(|e| e.to_string())
    }

    fn samples() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (i, cat) in [Category::Authz, Category::Key, Category::AuditSystem]
            .into_iter()
            .enumerate()
        {
            let mut e = Event::new(cat, "kafka.Produce", Outcome::Deny)
                .principal(format!("User:svc-{i} \"quoted\" \\ tab\t"))
                .roles(["producer", "ops"])
                .client_addr("10.1.2.3:51234")
                .resource("topic", "orders-1")
                .api(0, "Produce", 9, -42)
                .error_code(29)
                .reason("line\nbreak and unicode é ✓")
                .detail("count", 12345678901234u64)
                .detail(
                    "nested",
                    serde_json::json!({"a": [1, -2, true, null, {"b": []}], "c": {}}),
                );
            e.seq = Some(i as u64 * 1_000_003);
            out.push(serde_json::to_vec(&e).unwrap());
        }
        out
    }

    #[test]
    fn canonical_entries_take_the_fast_path_with_the_reference_result() {
        for s in samples() {
            assert!(canonical(&s).is_some(), "{}", String::from_utf8_lossy(&s));
            assert_eq!(canonical(&s).map(Ok), Some(reference(&s)));
        }
    }

    /// Every mutation the scanner accepts, serde_json accepts with the same result.
    #[test]
    fn the_fast_path_never_accepts_what_serde_json_would_not() {
        let alphabet = b"{}[]\",:\\0123456789-+.eE tfnulrsaq\x01\xc3\xa9u/";
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut accepted = 0u32;
        for base in samples() {
            for _ in 0..40_000 {
                let mut m = base.clone();
                for _ in 0..=(next() % 3) {
                    let at = (next() as usize) % m.len();
                    let c = alphabet[(next() as usize) % alphabet.len()];
                    match next() % 3 {
                        0 => m[at] = c,
                        1 => m.insert(at, c),
                        _ => {
                            m.remove(at);
                        }
                    }
                }
                if let Some(fast) = canonical(&m) {
                    accepted += 1;
                    assert_eq!(
                        Ok(fast),
                        reference(&m),
                        "fast path disagrees on {}",
                        String::from_utf8_lossy(&m)
                    );
                }
                assert_eq!(parse_head(&m).is_ok(), reference(&m).is_ok());
            }
        }
        assert!(
            accepted > 1000,
            "the fast path accepted only {accepted} mutations"
        );
    }

    #[test]
    fn plain_prefix_len_matches_the_bytewise_definition() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let alphabet = [
            b'a', b'"', b'\\', 0x00, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xff, b'Z',
        ];
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let s: Vec<u8> = (0..len)
                .map(|_| {
                    if next() % 4 == 0 {
                        alphabet[(next() as usize) % alphabet.len()]
                    } else {
                        (next() % 256) as u8
                    }
                })
                .collect();
            let want = s
                .iter()
                .position(|&c| is_string_special(c))
                .unwrap_or(s.len());
            assert_eq!(plain_prefix_len(&s), want, "{s:?}");
        }
    }

    #[test]
    fn non_canonical_but_valid_entries_fall_back_to_serde_json() {
        for text in [
            r#" {"category":"key","action":"a","seq":1}"#,
            r#"{"category":"key","action":"a","seq":1} "#,
            r#"{"category":"k\u0065y","action":"a"}"#,
            r#"{"category":"key","action":"a","d":1.5}"#,
            r#"{"category":"key","action":"a","seq":null}"#,
        ] {
            assert!(canonical(text.as_bytes()).is_none(), "{text}");
            assert!(parse_head(text.as_bytes()).is_ok(), "{text}");
        }
        for text in [
            r#"{"category":"key","action":"a","seq":1,"seq":2}"#,
            r#"{"category":"nope","action":"a"}"#,
            r#"{"action":"a"}"#,
            r#"{"category":"key","action":"a","seq":18446744073709551616}"#,
            r#"{"category":"key","action":"a","x":01}"#,
        ] {
            assert!(canonical(text.as_bytes()).is_none(), "{text}");
            assert!(parse_head(text.as_bytes()).is_err(), "{text}");
        }
    }
}
