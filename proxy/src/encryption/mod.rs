//! Record encryption outside the data path: opening the keyring a configuration names.
//!
//! The stage that encrypts and decrypts records lives in `pipeline::encryption`; this
//! module is what the proxy's start-up and the `portcullis keys` commands share, so both
//! open the same root key and registry the same way.

pub mod key_admin;
pub mod keyring_open;
