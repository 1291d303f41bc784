//! What the PKCS#11 provider is told in configuration, and how it reads the user PIN.
//!
//! The PIN never appears in the configuration file itself: it comes from a file that only its
//! owner may read (like the local root-key file) or from an environment variable, both named
//! in the configuration. It is held as a [`cryptoki::types::AuthPin`] (zeroized on drop) and
//! no error or `Debug` output ever contains it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use super::Pkcs11Error;

/// The longest PIN accepted (PKCS#11 tokens allow far less; this only bounds reading).
pub const MAX_PIN_LEN: usize = 256;

/// Configuration of a PKCS#11 root key (`kind = "pkcs11"` in `[encryption.root_key]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library) to load, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The label of the token that holds the root key.
    pub token_label: String,
    /// The label (`CKA_LABEL`) of the AES-256 secret key on that token.
    pub key_label: String,
    /// A file holding the user PIN on its first line; it must be readable by its owner only.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// The name of an environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
}

impl Pkcs11Config {
    /// Checks the fields that need no token: labels present and fitting a token's 32-byte
    /// label field, exactly one PIN source.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::Config`] naming the field.
    pub fn validate(&self) -> Result<(), Pkcs11Error> {
        let bad = |what: String| Err(Pkcs11Error::Config(what));
        if self.module.as_os_str().is_empty() {
            return bad("module: the path of the PKCS#11 library is empty".to_owned());
        }
        if self.token_label.is_empty() || self.token_label.len() > 32 {
            return bad(format!(
                "token_label must be 1 to 32 bytes, found {}",
                self.token_label.len()
            ));
        }
        if self.key_label.is_empty() || self.key_label.len() > 256 {
            return bad(format!(
                "key_label must be 1 to 256 bytes, found {}",
                self.key_label.len()
            ));
        }
        match (&self.pin_file, &self.pin_env) {
            (Some(_), Some(_)) => bad("set only one of pin_file and pin_env".to_owned()),
            (None, None) => bad("the user PIN is needed: set pin_file or pin_env".to_owned()),
            (None, Some(name)) if name.is_empty() || name.contains(['=', '\0']) => bad(format!(
                "pin_env {name:?} is not an environment variable name"
            )),
            _ => Ok(()),
        }
    }

    /// Reads the user PIN from the configured source.
    ///
    /// # Errors
    ///
    /// [`Pkcs11Error::Pin`] saying what is wrong with the source (never the PIN).
    pub(crate) fn read_pin(&self) -> Result<AuthPin, Pkcs11Error> {
        let raw = match (&self.pin_file, &self.pin_env) {
            (Some(path), _) => read_pin_file(path)?,
            (None, Some(name)) => Zeroizing::new(
                std::env::var(name)
                    .map_err(|e| Pkcs11Error::Pin(format!("environment variable {name}: {e}")))?
                    .into_bytes(),
            ),
            (None, None) => return Err(Pkcs11Error::Pin("no PIN source configured".to_owned())),
        };
        pin_from_bytes(&raw)
    }
}

/// Reads a PIN file, refusing one that group or others can access or that is far too large.
fn read_pin_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Pkcs11Error> {
    let io = |e: std::io::Error| Pkcs11Error::Pin(format!("PIN file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Pkcs11Error::Pin(format!(
            "PIN file {} is not a regular file",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Pkcs11Error::Pin(format!(
                "PIN file {} has mode {mode:o}; it must be readable by its owner only (chmod 600)",
                path.display()
            )));
        }
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(64));
    let limit = u64::try_from(MAX_PIN_LEN + 2).unwrap_or(u64::MAX);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(Pkcs11Error::Pin(format!(
            "PIN file {} is longer than a PIN ({MAX_PIN_LEN} bytes at most)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The PIN from raw bytes: one line (a trailing newline is dropped), UTF-8, not empty.
fn pin_from_bytes(raw: &[u8]) -> Result<AuthPin, Pkcs11Error> {
    let mut line = raw;
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest.strip_suffix(b"\r").unwrap_or(rest);
    }
    if line.is_empty() {
        return Err(Pkcs11Error::Pin("the PIN is empty".to_owned()));
    }
    if line.len() > MAX_PIN_LEN {
        return Err(Pkcs11Error::Pin(format!(
            "the PIN is longer than {MAX_PIN_LEN} bytes"
        )));
    }
    if line.contains(&b'\n') {
        return Err(Pkcs11Error::Pin("the PIN must be a single line".to_owned()));
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| Pkcs11Error::Pin("the PIN is not UTF-8 text".to_owned()))?;
    // `to_owned` allocates exactly `len` bytes, so `into_boxed_str` does not reallocate and
    // leave an unzeroized copy behind.
    Ok(AuthPin::new(text.to_owned().into_boxed_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy_check::expose;

    mod secrecy_check {
        use cryptoki::types::AuthPin;
        use secrecy::ExposeSecret as _;
        pub fn expose(pin: &AuthPin) -> String {
            pin.expose_secret().to_owned()
        }
    }

    fn config() -> Pkcs11Config {
        Pkcs11Config {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "portcullis".into(),
            key_label: "root".into(),
            pin_file: None,
            pin_env: Some("X".into()),
        }
    }

    #[test]
    fn pin_lines() {
        assert_eq!(expose(&pin_from_bytes(b"1234\n").unwrap()), "1234");
        assert_eq!(expose(&pin_from_bytes(b"1234\r\n").unwrap()), "1234");
        assert_eq!(expose(&pin_from_bytes(b" 12 34").unwrap()), " 12 34");
        for bad in [&b""[..], b"\n", b"12\n34", b"\xff\xfe"] {
            let e = pin_from_bytes(bad).unwrap_err().to_string();
            assert!(e.contains("PIN"), "{e}");
        }
        assert!(pin_from_bytes(&[b'1'; MAX_PIN_LEN + 1]).is_err());
    }

    #[test]
    fn validation() {
        config().validate().unwrap();
        let mut c = config();
        c.pin_file = Some("/p".into());
        assert!(c.validate().unwrap_err().to_string().contains("only one"));
        c.pin_env = None;
        c.validate().unwrap();
        c.pin_file = None;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("pin_file or pin_env"));
        let mut c = config();
        c.token_label = "x".repeat(33);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("token_label"));
        let mut c = config();
        c.key_label.clear();
        assert!(c.validate().unwrap_err().to_string().contains("key_label"));
        for name in ["", "A=B", "A\0B"] {
            let mut c = config();
            c.pin_env = Some(name.into());
            assert!(
                c.validate().unwrap_err().to_string().contains("pin_env"),
                "{name:?}"
            );
        }
    }

    #[test]
    fn deserializes_and_refuses_unknown_fields() {
        let c: Pkcs11Config = serde_json::from_str(
            r#"{"module":"/m.so","token_label":"t","key_label":"k","pin_env":"PIN"}"#,
        )
        .unwrap();
        assert_eq!(c.pin_env.as_deref(), Some("PIN"));
        assert!(serde_json::from_str::<Pkcs11Config>(
            r#"{"module":"/m.so","token_label":"t","key_label":"k","pin":"1234"}"#
        )
        .is_err());
    }
}
