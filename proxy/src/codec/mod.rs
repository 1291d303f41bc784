//! Wire codecs the proxy owns, kept apart from the request pipeline that uses them.

pub mod record_batch;
