//! A password held in memory only as long as needed and never printed.

use zeroize::Zeroizing;

/// A password (user input or the proxy's own upstream password).
///
/// The bytes are wiped when the value is dropped, and `Debug` prints `[redacted]`, so a
/// password inside a config struct or an error never reaches a log by accident. There is
/// deliberately no `Display`, and no `PartialEq` (passwords are checked through derived keys
/// in constant time, never compared directly).
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Password {
        Password(Zeroizing::new(password.into()))
    }

    /// The password itself, for the code that must hash or send it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Whether the password is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Password {
    fn from(password: String) -> Password {
        Password::new(password)
    }
}

impl From<&str> for Password {
    fn from(password: &str) -> Password {
        Password::new(password)
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?}"), "[redacted]");
        assert_eq!(p.expose_secret(), "hunter2");
    }
}
