//! AES-256-GCM throughput: aws-lc-rs against RustCrypto `aes-gcm`, both through
//! `portcullis_crypto::AeadKey` (the same code path the record format uses).
//!
//! Run with `cargo run --release -p portcullis-crypto --example aead_bench`. For each size
//! it reports the best of several rounds (the machine may be shared), as ns/op and MB/s
//! (10^6 bytes per second of plaintext), for encrypt and decrypt.

use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis_crypto::{AeadBackend, AeadKey, SecretKey};

const ROUNDS: usize = 15;
const ROUND_TIME: Duration = Duration::from_millis(200);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SecretKey::random()?;
    let nonce = [9u8; 12];
    let aad = b"portcullis.enc aad of a typical size: topic name and dek id.";
    println!("size     backend    op       ns/op        MB/s");
    for size in [100usize, 1024, 64 * 1024] {
        let plaintext = vec![0x5au8; size];
        for backend in AeadBackend::ALL {
            let cipher = AeadKey::new(backend, &key)?;
            let mut sealed = Vec::new();
            cipher.seal_append(&nonce, aad, &plaintext, &mut sealed)?;
            let mut out = Vec::with_capacity(size + 16);
            let enc = best(|| {
                out.clear();
                cipher
                    .seal_append(&nonce, aad, black_box(&plaintext), &mut out)
                    .map(|()| out.len())
            })?;
            let dec = best(|| {
                cipher
                    .open(&nonce, aad, black_box(&sealed))
                    .map(|p| p.len())
            })?;
            for (op, ns) in [("encrypt", enc), ("decrypt", dec)] {
                let mbps = size as f64 / ns * 1e3;
                println!(
                    "{size:<8} {:<10} {op:<8} {ns:>10.1} {mbps:>10.1}",
                    backend.name()
                );
            }
        }
    }
    Ok(())
}

/// Best ns/op over [`ROUNDS`] rounds of about [`ROUND_TIME`] each.
fn best<E>(mut op: impl FnMut() -> Result<usize, E>) -> Result<f64, E> {
    let mut best = f64::INFINITY;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < ROUND_TIME {
            for _ in 0..64 {
                black_box(op()?);
            }
            n += 64;
        }
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        best = best.min(ns);
    }
    Ok(best)
}
