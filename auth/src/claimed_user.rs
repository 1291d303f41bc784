//! The user name a client's first SASL message claims, read before anything is checked.
//!
//! Per-user limits on failed logins must be applied before the credentials are checked
//! (a refusal after the check would tell a guesser nothing new, but would still spend the
//! key derivation on every guess). PLAIN and SCRAM name the user in the clear in their
//! first message; this reads it the same way the mechanisms do, shortened the same way as
//! [`AuthFailure::attempted_user`](crate::AuthFailure), so that a limit counted from
//! failures matches the name checked here. OAUTHBEARER's token is not trusted before it is
//! validated, so it claims no user here.

use crate::sasl::Mechanism;
use crate::scram::{parse_client_first, shorten};

/// The user `first_message` of `mechanism` names, if it names one in a form the mechanism
/// would read (`None` for OAUTHBEARER and for messages that do not parse).
pub fn claimed_user(mechanism: Mechanism, first_message: &[u8]) -> Option<String> {
    match mechanism {
        Mechanism::Plain => {
            if first_message.len() > crate::plain::MAX_PLAIN_MESSAGE_LEN {
                return None;
            }
            let mut parts = first_message.split(|b| *b == 0);
            let (Some(_authzid), Some(authcid), Some(_password), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            let authcid = std::str::from_utf8(authcid).ok()?;
            (!authcid.is_empty()).then(|| shorten(authcid))
        }
        Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
            let text = std::str::from_utf8(first_message).ok()?;
            parse_client_first(text).ok().map(|f| shorten(&f.username))
        }
        Mechanism::OAuthBearer => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_scram_name_their_user_and_oauthbearer_does_not() {
        assert_eq!(
            claimed_user(Mechanism::Plain, b"\0alice\0secret").as_deref(),
            Some("alice")
        );
        assert_eq!(claimed_user(Mechanism::Plain, b"alice\0secret"), None);
        assert_eq!(claimed_user(Mechanism::Plain, b"\0\0secret"), None);
        assert_eq!(
            claimed_user(Mechanism::ScramSha512, b"n,,n=bob,r=abcdef").as_deref(),
            Some("bob")
        );
        assert_eq!(
            claimed_user(Mechanism::ScramSha256, b"n,,n=a=3Db,r=x").as_deref(),
            Some("a=b")
        );
        assert_eq!(claimed_user(Mechanism::ScramSha256, b"garbage"), None);
        assert_eq!(
            claimed_user(Mechanism::OAuthBearer, b"n,,\x01auth=Bearer x\x01\x01"),
            None
        );
    }
}
