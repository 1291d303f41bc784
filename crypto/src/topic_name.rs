//! Topic names as the key hierarchy sees them.
//!
//! Topic names go into associated data and into registry keys (`dek/<topic>/<id>`), so they
//! are checked against Kafka's own rule (`[A-Za-z0-9._-]{1,249}`) before anything else: a
//! `/` or a multibyte character can never make two topics' registry keys collide.

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// A topic name that Kafka would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic name {name:?}: Kafka topic names are 1-249 characters of [A-Za-z0-9._-]")]
pub struct InvalidTopic {
    /// The refused name (topic names are not secret).
    pub name: String,
}

/// Checks `topic` against Kafka's topic name rule.
///
/// # Errors
///
/// [`InvalidTopic`] if it is empty, longer than 249 characters, or holds anything outside
/// `[A-Za-z0-9._-]`.
pub fn check(topic: &str) -> Result<(), InvalidTopic> {
    let ok = !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidTopic {
            name: topic.chars().take(MAX_TOPIC_LEN + 1).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rule() {
        assert!(check("payments.v1_eu-west").is_ok());
        assert!(check(&"a".repeat(249)).is_ok());
        for bad in ["", "a/b", "ä", "a b", &"a".repeat(250)] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
    }
}
