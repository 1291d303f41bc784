//! Prints the registry records one encryption creates (key, then value), as documented in
//! `docs/encryption-format.md`.
//!
//! Run with `cargo run -p portcullis-crypto --example registry_dump`.

use std::sync::Arc;

use portcullis_crypto::{DekLimits, Keyring, LocalKeyFile, MemoryStore, SecretKey};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(MemoryStore::new());
    let provider = Arc::new(LocalKeyFile::from_key(&SecretKey::random()?)?);
    let ring = Keyring::new(provider, store.clone(), DekLimits::default());
    ring.encrypt_value("payments", b"example")?;
    for (key, value) in store.entries() {
        println!(
            "{}\n  {}",
            String::from_utf8_lossy(&key),
            String::from_utf8_lossy(&value)
        );
    }
    Ok(())
}
