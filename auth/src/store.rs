//! The credential store. (stub: being written)

/// Users and their salted credentials.
#[derive(Debug, Default)]
pub struct UserStore {}
