//! JWT validation. (stub: being written)

/// Validates bearer tokens.
#[derive(Debug)]
pub struct JwtValidator {}
