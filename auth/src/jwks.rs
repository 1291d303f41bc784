//! JWKS key sets. (stub: being written)
