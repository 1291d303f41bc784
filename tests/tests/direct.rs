//! Every scenario client -> broker, with no proxy in between.
//!
//! These are the baseline for `proxied.rs`: when a proxied test fails, its direct twin here
//! (same name) says whether tansu or the scenario is at fault rather than the proxy. They
//! also keep the harness itself honest before the proxy exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use portcullis_tests::scenarios::{self, Acks0Responses};
use portcullis_tests::{with_test_timeout, Broker};

macro_rules! direct_test {
    ($name:ident, $ep:ident => $call:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let mut broker = Broker::start();
            let endpoint = broker.endpoint();
            let $ep = &endpoint;
            with_test_timeout(stringify!($name), $call).await;
            broker.assert_running();
        }
    };
}

direct_test!(codec_none, ep => scenarios::produce_consume_codec(ep, "none"));
direct_test!(codec_gzip, ep => scenarios::produce_consume_codec(ep, "gzip"));
direct_test!(codec_snappy, ep => scenarios::produce_consume_codec(ep, "snappy"));
direct_test!(codec_lz4, ep => scenarios::produce_consume_codec(ep, "lz4"));
direct_test!(codec_zstd, ep => scenarios::produce_consume_codec(ep, "zstd"));
direct_test!(consumer_group_resume, ep => scenarios::consumer_group_resume(ep));
direct_test!(admin_create_delete, ep => scenarios::admin_create_delete(ep));
direct_test!(list_offsets, ep => scenarios::list_offsets(ep));
direct_test!(idempotent_producer, ep => scenarios::idempotent_producer(ep));
direct_test!(metadata_addresses, ep => scenarios::metadata_addresses(ep));
direct_test!(pipelined_produce, ep => scenarios::pipelined_produce(ep));
direct_test!(acks_zero, ep => scenarios::acks_zero(ep));
// tansu 0.6.0 answers acks=0 produce requests, which Kafka never does.
direct_test!(raw_pipelining, ep => scenarios::raw_pipelining(ep, Acks0Responses::Tolerated));
