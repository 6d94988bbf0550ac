//! Where a store keeps each perfect subtree hash: one dense, append-only
//! sequence of hashes.
//!
//! The layout is the one of Go's `golang.org/x/mod/sumdb/tlog`: the hash of
//! leaf `n` is stored right after every subtree hash that leaf `n - 1`
//! completed, so a growing tree only ever appends to the sequence. A store
//! can keep it as a table keyed by one integer and never rewrite a row; a
//! tree of `n` leaves holds fewer than `2n` hashes
//! ([`stored_hash_count`]).

use crate::proof::HashSource;
use crate::tree::TreeBuilder;
use crate::{node_hash, Hash};
use std::cell::RefCell;
use std::collections::HashMap;

/// Returns the position in the stored sequence of the perfect subtree at
/// `level` and `index` (which covers the leaves `index * 2^level ..
/// (index + 1) * 2^level`).
pub fn stored_hash_index(level: u8, index: u64) -> u64 {
    // A subtree at level L is stored right after the leaf that completes it,
    // the last leaf below it, and after the subtrees below L that this leaf
    // completes too.
    let mut n = index;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    // Before leaf n come n leaves and the n/2 + n/4 + ... subtrees they completed.
    let mut i = 0;
    while n > 0 {
        i += n;
        n >>= 1;
    }
    i + u64::from(level)
}

/// Returns the level and index of the subtree stored at `position`: the
/// inverse of [`stored_hash_index`].
pub fn stored_hash_position(position: u64) -> (u8, u64) {
    // The last leaf stored at or before the position: the subtrees stored
    // right after a leaf are the ones it completes, one level up each.
    let (mut lo, mut hi) = (0u64, position);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if stored_hash_index(0, mid) <= position {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let level = (position - stored_hash_index(0, lo)) as u8;
    (level, lo >> level)
}

/// Returns how many hashes the tree of `size` leaves stores.
pub fn stored_hash_count(size: u64) -> u64 {
    if size == 0 {
        return 0;
    }
    let last = size - 1;
    stored_hash_index(0, last) + 1 + u64::from(last.trailing_ones())
}

impl TreeBuilder {
    /// Rebuilds a builder for the tree of `size` leaves from the roots of its
    /// perfect subtrees, largest first, as [`TreeBuilder::subtrees`] returns them.
    ///
    /// Returns `None` when the count does not match `size` (one per set bit).
    pub fn from_subtrees(size: u64, subtrees: Vec<Hash>) -> Option<TreeBuilder> {
        (subtrees.len() == size.count_ones() as usize).then_some(TreeBuilder::with(size, subtrees))
    }

    /// Rebuilds the builder for the first `size` leaves of `source`, from
    /// O(log n) reads.
    pub fn from_source<S: HashSource + ?Sized>(
        source: &S,
        size: u64,
    ) -> Result<TreeBuilder, S::Error> {
        let mut subtrees = Vec::with_capacity(size.count_ones() as usize);
        let mut begin = 0;
        for level in (0..64u8).rev() {
            if size & (1 << level) != 0 {
                subtrees.push(source.subtree_hash(level, begin >> level)?);
                begin += 1 << level;
            }
        }
        Ok(TreeBuilder::with(size, subtrees))
    }

    /// Appends the hash of the next leaf like [`TreeBuilder::append`], and
    /// passes every hash the tree stores for it to `store`, with its position
    /// in the stored sequence: the leaf, then each subtree it completes.
    /// The positions are consecutive and continue where the previous leaf's
    /// ended.
    pub fn append_stored(&mut self, leaf: Hash, mut store: impl FnMut(u64, Hash)) {
        let n = self.size();
        let mut position = stored_hash_index(0, n);
        store(position, leaf);
        let mut hash = leaf;
        for _ in 0..n.trailing_ones() {
            let left = self.pop_subtree();
            hash = node_hash(&left, &hash);
            position += 1;
            store(position, hash);
        }
        self.push_subtree(hash);
    }
}

/// A [`HashSource`] that answers from hashes fetched beforehand, keyed by
/// their stored position.
///
/// A store serves a proof in two steps: [`positions_read`] lists the
/// positions the proof needs, the store fetches them in one query, and the
/// proof is built from this source.
#[derive(Debug, Default, Clone)]
pub struct FetchedHashes {
    hashes: HashMap<u64, Hash>,
}

impl FetchedHashes {
    /// Returns a source holding `hashes`, each with its stored position.
    pub fn new(hashes: impl IntoIterator<Item = (u64, Hash)>) -> Self {
        FetchedHashes {
            hashes: hashes.into_iter().collect(),
        }
    }
}

/// The error of a [`FetchedHashes`] asked for a position it was not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no stored hash at position {0}")]
pub struct NotFetched(pub u64);

impl HashSource for FetchedHashes {
    type Error = NotFetched;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, NotFetched> {
        let position = stored_hash_index(level, index);
        self.hashes
            .get(&position)
            .copied()
            .ok_or(NotFetched(position))
    }
}

/// Returns the stored positions that `build` reads from its source, sorted
/// and without repeats.
///
/// The proof functions choose which subtrees to read from the sizes alone,
/// never from hash values, so running them once over a source of zero
/// hashes lists exactly what the real run will read.
pub fn positions_read<T>(
    build: impl FnOnce(&dyn HashSource<Error = std::convert::Infallible>) -> T,
) -> Vec<u64> {
    struct Recorder(RefCell<Vec<u64>>);
    impl HashSource for Recorder {
        type Error = std::convert::Infallible;
        fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
            self.0.borrow_mut().push(stored_hash_index(level, index));
            Ok([0; 32])
        }
    }
    let recorder = Recorder(RefCell::new(Vec::new()));
    build(&recorder);
    let mut positions = recorder.0.into_inner();
    positions.sort_unstable();
    positions.dedup();
    positions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{consistency_proof, inclusion_proof, leaf_hash, root_at_size, MemoryTree};

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn positions_match_the_tlog_layout() {
        // From golang.org/x/mod/sumdb/tlog: leaf 0 at 0, leaf 1 at 1, their
        // parent at 2, leaf 2 at 3, leaf 3 at 4, then levels 1 and 2 at 5 and 6.
        assert_eq!(stored_hash_index(0, 0), 0);
        assert_eq!(stored_hash_index(0, 1), 1);
        assert_eq!(stored_hash_index(1, 0), 2);
        assert_eq!(stored_hash_index(0, 2), 3);
        assert_eq!(stored_hash_index(0, 3), 4);
        assert_eq!(stored_hash_index(1, 1), 5);
        assert_eq!(stored_hash_index(2, 0), 6);
        assert_eq!(stored_hash_index(0, 4), 7);
        assert_eq!(stored_hash_count(0), 0);
        assert_eq!(stored_hash_count(1), 1);
        assert_eq!(stored_hash_count(2), 3);
        assert_eq!(stored_hash_count(4), 7);
        assert_eq!(stored_hash_count(5), 8);
        for level in 0..12u8 {
            for index in 0..200u64 {
                let p = stored_hash_index(level, index);
                assert_eq!(stored_hash_position(p), (level, index));
            }
        }
    }

    #[test]
    fn appends_emit_a_dense_sequence_that_serves_every_proof() {
        let all = leaves(300);
        let mut builder = TreeBuilder::new();
        let mut stored: Vec<Hash> = Vec::new();
        let memory = MemoryTree::from_leaf_hashes(all.iter().copied());
        for (i, leaf) in all.iter().enumerate() {
            builder.append_stored(*leaf, |position, hash| {
                assert_eq!(
                    position,
                    stored.len() as u64,
                    "positions are dense and in order"
                );
                stored.push(hash);
            });
            let size = i as u64 + 1;
            assert_eq!(stored.len() as u64, stored_hash_count(size));
            assert_eq!(builder.root(), root_at_size(&memory, size).unwrap());
        }
        let source = FetchedHashes::new(
            stored
                .iter()
                .copied()
                .enumerate()
                .map(|(i, h)| (i as u64, h)),
        );
        for size in 1..=300u64 {
            // Rebuilding from the store gives the same compact range.
            let rebuilt = TreeBuilder::from_source(&source, size).unwrap();
            assert_eq!(rebuilt.root(), root_at_size(&memory, size).unwrap());
            for index in [0, size / 3, size - 1] {
                let wanted = positions_read(|s| inclusion_proof(s, index, size).map(|_| ()).ok());
                let only = FetchedHashes::new(wanted.iter().map(|&p| (p, stored[p as usize])));
                assert_eq!(
                    inclusion_proof(&only, index, size).unwrap(),
                    inclusion_proof(&memory, index, size).unwrap()
                );
                if index > 0 {
                    let wanted =
                        positions_read(|s| consistency_proof(s, index, size).map(|_| ()).ok());
                    let only = FetchedHashes::new(wanted.iter().map(|&p| (p, stored[p as usize])));
                    assert_eq!(
                        consistency_proof(&only, index, size).unwrap(),
                        consistency_proof(&memory, index, size).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn from_subtrees_checks_the_count() {
        assert!(TreeBuilder::from_subtrees(3, vec![[0; 32]]).is_none());
        let mut b = TreeBuilder::new();
        for l in leaves(5) {
            b.append(l);
        }
        let again = TreeBuilder::from_subtrees(5, b.subtrees().to_vec()).unwrap();
        assert_eq!(again.root(), b.root());
    }
}
