//! The operators' HTTP API: health, readiness, metrics and the audit endpoints, the bearer
//! token that guards them, and the `Host` check that keeps browsers' DNS rebinding out.

pub mod host;
pub mod http;
pub mod keys;
pub mod token;
