//! Measures raw sled 0.34 cost on this machine: 100,000 inserts of 550-byte values (the size
//! of a typical audit entry) in batches of 4,000 with one flush per batch. Explains the audit
//! log's throughput ceiling: each audit event costs one such insert in the entries tree plus
//! smaller ones in the hash and index trees.
//!
//! Run: `cargo run --release -p portcullis-audit --example sled_probe`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let tree = db.open_tree("entries").unwrap();
    let value = vec![b'x'; 550];
    let (mut apply, mut flush) = (0f64, 0f64);
    for b in 0..25u64 {
        let start = Instant::now();
        let mut batch = sled::Batch::default();
        for i in 0..4000u64 {
            batch.insert(&(b * 4000 + i).to_be_bytes(), value.as_slice());
        }
        tree.apply_batch(batch).unwrap();
        apply += start.elapsed().as_secs_f64();
        let start = Instant::now();
        db.flush().unwrap();
        flush += start.elapsed().as_secs_f64();
    }
    println!(
        "sled: 100000 inserts of 550 B: apply_batch {apply:.2} s ({:.1} us/insert), flush {flush:.2} s, {} bytes on disk",
        apply * 10.0,
        db.size_on_disk().unwrap()
    );
}
