//! Kafka's wire formats as the proxy reads and writes them: bounded length-prefixed
//! frames, request and response headers peeked without decoding bodies, and whole
//! response frames for the answers the proxy gives itself.

pub mod frame;
pub mod header;
pub mod response_frame;
