//! The two hash functions of RFC 6962 §2.1: leaves and interior nodes are hashed with distinct
//! one-byte prefixes so a leaf can never be passed off as a node (second-preimage protection).

use aws_lc_rs::digest;

/// Length of a SHA-256 hash in bytes.
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; HASH_LEN];

fn finish(ctx: digest::Context) -> Hash {
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The hash of one log entry: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&[0x00]);
    ctx.update(entry);
    finish(ctx)
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_LEN];
    buf[0] = 0x01;
    buf[1..=HASH_LEN].copy_from_slice(left);
    buf[1 + HASH_LEN..].copy_from_slice(right);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(digest::digest(&digest::SHA256, &buf).as_ref());
    out
}

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    finish(digest::Context::new(&digest::SHA256))
}
