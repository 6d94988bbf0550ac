//! Compares the crate with a reference written straight from RFC 6962 §2.1,
//! for every tree size up to `MAX_SIZE`, and checks that the proofs read few
//! and only complete subtrees even in huge trees.
//!
//! The inputs come from a small deterministic generator, so every run checks
//! the same cases and a failure reproduces.

use std::cell::Cell;
use std::sync::OnceLock;

use patchaudit_proofs::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root_at_size,
    root_from_inclusion_proof, root_from_leaf_hashes, verify_consistency, verify_inclusion, Hash,
    HashSource, MemoryTree, MissingNode, ProofError, TreeBuilder, VerifyError,
};

/// Every size from 1 to this one is checked; it passes 2^11 so that trees
/// with 12 levels are covered.
const MAX_SIZE: usize = 2100;
/// Below this size every index and every size pair is checked; above it a
/// sample is.
const EXHAUSTIVE_BELOW: usize = 64;

/// The reference: the definitions of RFC 6962 §2.1, transcribed with their
/// recursion and hashing SHA-256 directly, without the crate. `D[a:b]` is
/// written as the pair `a, b` over all the entries.
mod rfc {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use sha2::{Digest, Sha256};

    pub type Hash = [u8; 32];

    fn sha256(parts: &[&[u8]]) -> Hash {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        hasher.finalize().into()
    }

    /// The largest power of two smaller than n, for n > 1.
    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    pub struct Reference<'a> {
        d: &'a [Vec<u8>],
        /// Remembers MTH of each range: not part of the definition, but the
        /// tests ask for the same subtrees over and over, and hashing is slow
        /// in debug builds.
        memo: RefCell<HashMap<(usize, usize), Hash>>,
    }

    impl<'a> Reference<'a> {
        pub fn new(d: &'a [Vec<u8>]) -> Self {
            Self {
                d,
                memo: RefCell::default(),
            }
        }

        /// MTH(D[a:b]).
        pub fn mth(&self, a: usize, b: usize) -> Hash {
            if let Some(hash) = self.memo.borrow().get(&(a, b)) {
                return *hash;
            }
            let hash = match b - a {
                0 => sha256(&[]),
                1 => sha256(&[&[0x00], &self.d[a]]),
                n => {
                    let k = split(n);
                    sha256(&[&[0x01], &self.mth(a, a + k), &self.mth(a + k, b)])
                }
            };
            self.memo.borrow_mut().insert((a, b), hash);
            hash
        }

        /// PATH(m, D[a:b]), the audit path of §2.1.1.
        pub fn path(&self, m: usize, a: usize, b: usize) -> Vec<Hash> {
            let n = b - a;
            if n == 1 {
                return Vec::new();
            }
            let k = split(n);
            if m < k {
                let mut p = self.path(m, a, a + k);
                p.push(self.mth(a + k, b));
                p
            } else {
                let mut p = self.path(m - k, a + k, b);
                p.push(self.mth(a, a + k));
                p
            }
        }

        /// PROOF(m, D[0:n]), the consistency proof of §2.1.2.
        pub fn proof(&self, m: usize, n: usize) -> Vec<Hash> {
            self.subproof(m, 0, n, true)
        }

        /// SUBPROOF(m, D[a:b], flag).
        fn subproof(&self, m: usize, a: usize, b: usize, flag: bool) -> Vec<Hash> {
            let n = b - a;
            if m == n {
                return if flag {
                    Vec::new()
                } else {
                    vec![self.mth(a, b)]
                };
            }
            let k = split(n);
            if m <= k {
                let mut p = self.subproof(m, a, a + k, flag);
                p.push(self.mth(a + k, b));
                p
            } else {
                let mut p = self.subproof(m - k, a + k, b, false);
                p.push(self.mth(a, a + k));
                p
            }
        }
    }
}

/// SplitMix64: a tiny deterministic generator, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The entries, their tree, and the reference root of every prefix, built
/// once and shared by the tests.
struct Fixture {
    entries: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    tree: MemoryTree,
    /// `roots[n]` is the reference MTH of the first `n` entries.
    roots: Vec<Hash>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = Rng(6962);
        let entries: Vec<Vec<u8>> = (0..MAX_SIZE)
            .map(|_| (0..rng.below(40)).map(|_| rng.next() as u8).collect())
            .collect();
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let tree = MemoryTree::from_leaf_hashes(leaves.iter().copied());
        let reference = rfc::Reference::new(&entries);
        let roots = (0..=MAX_SIZE).map(|n| reference.mth(0, n)).collect();
        Fixture {
            entries,
            leaves,
            tree,
            roots,
        }
    })
}

/// Every value below `n` when `n` is small, else the edges, the middle and a
/// few random values.
fn sample(n: usize, rng: &mut Rng) -> Vec<usize> {
    if n <= EXHAUSTIVE_BELOW {
        return (0..n).collect();
    }
    vec![0, 1, n / 2, n - 2, n - 1, rng.below(n), rng.below(n)]
}

/// Returns a copy of `hashes` with one random bit flipped.
fn flip_bit(hashes: &[Hash], rng: &mut Rng) -> Vec<Hash> {
    let mut flipped = hashes.to_vec();
    let bit = rng.below(256);
    let at = rng.below(flipped.len());
    flipped[at][bit / 8] ^= 1 << (bit % 8);
    flipped
}

#[test]
fn roots_agree_with_the_reference_for_every_size() {
    let f = fixture();
    let mut builder = TreeBuilder::new();
    assert_eq!(builder.root(), f.roots[0]);
    for n in 1..=MAX_SIZE {
        builder.append(f.leaves[n - 1]);
        assert_eq!(builder.size(), n as u64);
        assert_eq!(builder.root(), f.roots[n], "TreeBuilder, size {n}");
        assert_eq!(
            root_from_leaf_hashes(&f.leaves[..n]),
            f.roots[n],
            "root_from_leaf_hashes, size {n}"
        );
        assert_eq!(
            root_at_size(&f.tree, n as u64),
            Ok(f.roots[n]),
            "root_at_size, size {n}"
        );
    }
    assert_eq!(f.tree.root(), f.roots[MAX_SIZE]);
}

#[test]
fn inclusion_proofs_match_the_reference_and_verify() {
    let f = fixture();
    let reference = rfc::Reference::new(&f.entries);
    let mut rng = Rng(1);
    let mut checked = 0;
    for n in 1..=MAX_SIZE {
        let (size, root) = (n as u64, f.roots[n]);
        for m in sample(n, &mut rng) {
            let index = m as u64;
            let proof = inclusion_proof(&f.tree, index, size).unwrap();
            assert_eq!(proof, reference.path(m, 0, n), "leaf {m}, size {n}");
            let leaf = f.leaves[m];
            assert_eq!(
                verify_inclusion(index, size, &leaf, &proof, &root),
                Ok(()),
                "leaf {m}, size {n}"
            );
            assert_eq!(
                root_from_inclusion_proof(index, size, &leaf, &proof),
                Ok(root)
            );

            // A single flipped bit anywhere must break the proof.
            if proof.is_empty() {
                let leaf = flip_bit(&[leaf], &mut rng)[0];
                assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_err());
            } else {
                let flipped = flip_bit(&proof, &mut rng);
                let result = verify_inclusion(index, size, &leaf, &flipped, &root);
                assert_eq!(
                    result,
                    Err(VerifyError::RootMismatch { size }),
                    "leaf {m}, size {n}"
                );
            }
            let wrong_root = flip_bit(&[root], &mut rng)[0];
            assert!(verify_inclusion(index, size, &leaf, &proof, &wrong_root).is_err());
            checked += 1;
        }
    }
    eprintln!("inclusion: {checked} proofs checked over sizes 1..={MAX_SIZE}");
}

#[test]
fn consistency_proofs_match_the_reference_and_verify() {
    let f = fixture();
    let reference = rfc::Reference::new(&f.entries);
    let mut rng = Rng(2);
    let mut checked = 0;
    for n in 1..=MAX_SIZE {
        let (size2, root2) = (n as u64, f.roots[n]);
        // Sizes 1..=n: the sample of 0..n, shifted up by one.
        for m in sample(n, &mut rng).into_iter().map(|m| m + 1) {
            let (size1, root1) = (m as u64, f.roots[m]);
            let proof = consistency_proof(&f.tree, size1, size2).unwrap();
            assert_eq!(proof, reference.proof(m, n), "sizes {m} to {n}");
            assert_eq!(
                verify_consistency(size1, size2, &proof, &root1, &root2),
                Ok(()),
                "sizes {m} to {n}"
            );

            if proof.is_empty() {
                // Equal sizes: only the roots can be wrong.
                let wrong = flip_bit(&[root2], &mut rng)[0];
                assert!(verify_consistency(size1, size2, &proof, &root1, &wrong).is_err());
            } else {
                let flipped = flip_bit(&proof, &mut rng);
                let result = verify_consistency(size1, size2, &flipped, &root1, &root2);
                assert!(
                    matches!(result, Err(VerifyError::RootMismatch { .. })),
                    "sizes {m} to {n}"
                );
                let wrong = flip_bit(&[root1], &mut rng)[0];
                assert!(verify_consistency(size1, size2, &proof, &wrong, &root2).is_err());
            }
            checked += 1;
        }
    }
    eprintln!("consistency: {checked} proofs checked over sizes 1..={MAX_SIZE}");
}

#[test]
fn proof_generation_refuses_bad_arguments() {
    let tree = MemoryTree::from_leaf_hashes(fixture().leaves[..5].iter().copied());
    assert_eq!(
        inclusion_proof(&tree, 5, 5),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        inclusion_proof(&tree, 0, 0),
        Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        consistency_proof(&tree, 0, 5),
        Err(ProofError::InvalidSizes { size1: 0, size2: 5 })
    );
    assert_eq!(
        consistency_proof(&tree, 4, 3),
        Err(ProofError::InvalidSizes { size1: 4, size2: 3 })
    );
    // The tree of 6 leaves needs the subtree of leaves 4 and 5, which this tree
    // does not hold yet.
    assert_eq!(
        inclusion_proof(&tree, 0, 6),
        Err(ProofError::Source(MissingNode { level: 1, index: 2 }))
    );
    assert!(matches!(
        consistency_proof(&tree, 2, 8),
        Err(ProofError::Source(_))
    ));
}

/// A tree too large to hold, in which every leaf has the same hash, so that
/// every perfect subtree at a level has the same hash too. It counts the
/// reads and fails any read of a subtree that is not complete in a tree of
/// `size` leaves.
struct UniformTree {
    size: u64,
    /// `level_hashes[l]` is the hash of every perfect subtree at level `l`.
    level_hashes: Vec<Hash>,
    reads: Cell<usize>,
}

impl UniformTree {
    fn new(size: u64) -> Self {
        let mut level_hashes = vec![leaf_hash(b"uniform")];
        for level in 1..64 {
            let below = level_hashes[level - 1];
            level_hashes.push(node_hash(&below, &below));
        }
        Self {
            size,
            level_hashes,
            reads: Cell::new(0),
        }
    }
}

impl HashSource for UniformTree {
    type Error = String;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, String> {
        self.reads.set(self.reads.get() + 1);
        // The end of the subtree's leaves, unless it overflows u64.
        let end = match level {
            0..64 => index.checked_add(1).and_then(|i| i.checked_mul(1 << level)),
            _ => None,
        };
        match end {
            Some(end) if end <= self.size => Ok(self.level_hashes[usize::from(level)]),
            _ => Err(format!(
                "read of ({level}, {index}), not complete in size {}",
                self.size
            )),
        }
    }
}

#[test]
fn proofs_of_huge_trees_read_few_and_only_complete_subtrees() {
    let sizes = [
        (1 << 40) + 12345,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX - 1,
        u64::MAX,
    ];
    for size in sizes {
        let tree = UniformTree::new(size);
        let root = root_at_size(&tree, size).unwrap();
        let bound = 2 * (u64::BITS - size.leading_zeros()) as usize + 2;
        for index in [0, 1, size / 3, size / 2, size - 2, size - 1] {
            tree.reads.set(0);
            let proof = inclusion_proof(&tree, index, size).unwrap();
            assert!(
                tree.reads.get() <= bound,
                "{} reads for leaf {index} of {size}",
                tree.reads.get()
            );
            let leaf = tree.level_hashes[0];
            assert_eq!(
                verify_inclusion(index, size, &leaf, &proof, &root),
                Ok(()),
                "leaf {index} of {size}"
            );

            let size1 = index + 1;
            tree.reads.set(0);
            let proof = consistency_proof(&tree, size1, size).unwrap();
            assert!(
                tree.reads.get() <= bound,
                "{} reads for sizes {size1} to {size}",
                tree.reads.get()
            );
            let root1 = root_at_size(&tree, size1).unwrap();
            assert_eq!(
                verify_consistency(size1, size, &proof, &root1, &root),
                Ok(()),
                "sizes {size1} to {size}"
            );
        }
    }
}
