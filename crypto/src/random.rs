//! The one place randomness comes from: the operating system's generator (`getrandom`).
//!
//! Keys, key ids and nonces are all drawn here, so a test or an audit has one function to
//! look at. There is no user-space PRNG and no seed.

/// The operating system's random number generator failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(getrandom::Error);

/// Fills `buf` with OS randomness.
///
/// # Errors
///
/// [`RandomError`] if the OS generator is unavailable.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError)
}

/// A random array of `N` bytes.
///
/// # Errors
///
/// [`RandomError`] if the OS generator is unavailable.
pub fn array<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}
