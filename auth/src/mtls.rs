//! mTLS principal mapping. (stub: being written)
