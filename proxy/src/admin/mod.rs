//! The operators' HTTP API: health, readiness, metrics and the audit endpoints, and
//! the bearer token that guards them.

pub mod http;
pub mod token;
