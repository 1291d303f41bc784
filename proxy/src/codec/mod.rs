//! Kafka's wire formats as the proxy reads and writes them: bounded length-prefixed
//! frames, request and response headers peeked without decoding bodies, whole response
//! frames for the answers the proxy gives itself, and record batches (split, decoded and
//! re-encoded batch by batch without losing a field).

pub mod frame;
pub mod header;
pub mod record_batch;
pub mod response_frame;
