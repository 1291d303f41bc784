//! Known-answer tests against the RFC 6962 reference test data published with Google's
//! certificate-transparency and Trillian log verifier tests (eight leaf inputs, the roots of
//! every prefix, and the inclusion and consistency proofs listed there), plus exhaustive
//! cross-checks of generation against verification.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn h(s: &str) -> Hash {
    unhex(s).try_into().unwrap()
}

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// ROOTS[n] is the root of the first n leaves.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaf_hashes() -> Vec<Hash> {
    LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect()
}

fn tree(n: usize) -> MemoryTree {
    MemoryTree::new(leaf_hashes()[..n].to_vec())
}

#[test]
fn empty_and_single_leaf() {
    assert_eq!(empty_root(), h(ROOTS[0]));
    assert_eq!(leaf_hash(b""), h(ROOTS[1]));
    assert_eq!(
        leaf_hash(&[0]),
        h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")
    );
}

#[test]
fn roots_of_every_prefix() {
    for (n, want) in ROOTS.iter().enumerate() {
        let t = tree(n);
        assert_eq!(tree_root(&t, n as u64).unwrap(), h(want), "size {n}");
        let mut f = Frontier::new();
        for leaf in &leaf_hashes()[..n] {
            f.push(*leaf, |_| {});
        }
        assert_eq!(f.root(), h(want), "frontier size {n}");
        let rebuilt = Frontier::from_source(&t, n as u64).unwrap();
        assert_eq!(rebuilt, f);
    }
}

/// (index, size, proof) from the reference data (indices 0-based).
fn inclusion_vectors() -> Vec<(u64, u64, Vec<&'static str>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            vec!["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            vec![
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ]
}

#[test]
fn inclusion_proof_vectors() {
    let leaves = leaf_hashes();
    let t = tree(8);
    for (index, size, want) in inclusion_vectors() {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        let got = inclusion_proof(&t, index, size).unwrap().unwrap();
        assert_eq!(got, want, "PATH({index}, D[{size}])");
        let root = h(ROOTS[size as usize]);
        verify_inclusion(&leaves[index as usize], index, size, &want, &root).unwrap();
        // A wrong index, size, leaf or root fails.
        assert!(verify_inclusion(&leaves[index as usize], index + 1, size, &want, &root).is_err());
        assert!(verify_inclusion(&leaves[index as usize], index, size * 2, &want, &root).is_err());
        assert!(verify_inclusion(&[7; 32], index, size, &want, &root).is_err());
        assert!(verify_inclusion(&leaves[index as usize], index, size, &want, &[0; 32]).is_err());
        let mut longer = want.clone();
        longer.push(root);
        assert!(verify_inclusion(&leaves[index as usize], index, size, &longer, &root).is_err());
    }
}

#[test]
fn consistency_proof_vectors() {
    let cases: Vec<(u64, u64, Vec<&str>)> = vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let t = tree(8);
    for (m, n, want) in cases {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        let got = consistency_proof(&t, m, n).unwrap().unwrap();
        assert_eq!(got, want, "PROOF({m}, D[{n}])");
        let (r1, r2) = (h(ROOTS[m as usize]), h(ROOTS[n as usize]));
        verify_consistency(m, n, &want, &r1, &r2).unwrap();
        if m < n {
            assert!(verify_consistency(m, n, &want, &r2, &r1).is_err());
            assert!(verify_consistency(m, n, &want[..want.len() - 1], &r1, &r2).is_err());
            assert!(verify_consistency(m, n, &[], &r1, &r2).is_err());
        }
    }
    assert!(verify_consistency(0, 3, &[], &[0; 32], &[0; 32]).is_err());
    assert!(verify_consistency(4, 3, &[], &[0; 32], &[0; 32]).is_err());
}

/// Every generated proof for every size up to 70 verifies, and any changed hash fails.
#[test]
fn generated_proofs_verify_exhaustively() {
    let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let t = MemoryTree::new(leaves.clone());
    for n in 1..=70u64 {
        let root = tree_root(&t, n).unwrap();
        for i in 0..n {
            let p = inclusion_proof(&t, i, n).unwrap().unwrap();
            verify_inclusion(&leaves[i as usize], i, n, &p, &root).unwrap();
            if let Some(first) = p.first() {
                let mut bad = p.clone();
                bad[0] = node_hash(first, first);
                assert!(verify_inclusion(&leaves[i as usize], i, n, &bad, &root).is_err());
            }
        }
        for m in 1..=n {
            let p = consistency_proof(&t, m, n).unwrap().unwrap();
            let r1 = tree_root(&t, m).unwrap();
            verify_consistency(m, n, &p, &r1, &root).unwrap();
            if m < n {
                let mut bad = p.clone();
                let last = bad.len() - 1;
                bad[last][0] ^= 1;
                assert!(verify_consistency(m, n, &bad, &r1, &root).is_err());
            }
        }
        // Range proofs for every sub-range.
        for from in 0..n {
            for to in from + 1..=n {
                let proof = range_proof(&t, from, to, n).unwrap();
                let got = root_from_range(from, to, n, &leaves[from as usize..to as usize], &proof)
                    .unwrap();
                assert_eq!(got, root, "range {from}..{to} of {n}");
            }
        }
    }
}

#[test]
fn frontier_reports_new_nodes() {
    let mut f = Frontier::new();
    let mut nodes = Vec::new();
    for i in 0..4u8 {
        f.push(leaf_hash(&[i]), |n| nodes.push((n.level, n.index)));
    }
    assert_eq!(
        nodes,
        [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)]
    );
}
