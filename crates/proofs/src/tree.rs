//! Computing roots: from a slice of leaves, incrementally, and in memory.

use crate::proof::{root_at_size, HashSource};
use crate::{empty_root, node_hash, Hash};

/// Returns the root of the tree over `leaves` (the hashes of its leaves), as
/// the function MTH of RFC 6962 §2.1 defines it.
///
/// The tree of `n > 1` leaves is split at `k`, the largest power of two
/// smaller than `n`; its root is the node hash of the roots of the two parts.
/// The tree of one leaf has that leaf's hash as root, and the empty tree has
/// [`empty_root`].
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(
                &root_from_leaf_hashes(&leaves[..k]),
                &root_from_leaf_hashes(&leaves[k..]),
            )
        }
    }
}

/// Computes the root of a growing tree in O(log n) memory.
///
/// The builder keeps the roots of the perfect subtrees that make up the tree
/// so far (a compact range), one per set bit of its size. Appending a leaf
/// merges the subtrees it completes, so that each append costs one node hash
/// on average.
#[derive(Clone, Debug, Default)]
pub struct TreeBuilder {
    size: u64,
    /// The roots of the perfect subtrees, largest (leftmost) first.
    subtrees: Vec<Hash>,
}

impl TreeBuilder {
    /// Returns a builder for the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the hash of the next leaf.
    pub fn append(&mut self, leaf: Hash) {
        let mut hash = leaf;
        // Each trailing one bit of the old size is a subtree of the same size
        // as the one being carried, so the two merge, like a binary carry.
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self
                .subtrees
                .pop()
                .expect("one subtree per set bit of the size");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.subtrees.push(hash);
        self.size += 1;
    }

    /// Returns the number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the roots of the perfect subtrees that make up the tree,
    /// largest (leftmost) first: one per set bit of the size.
    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    pub(crate) fn with(size: u64, subtrees: Vec<Hash>) -> TreeBuilder {
        TreeBuilder { size, subtrees }
    }

    pub(crate) fn pop_subtree(&mut self) -> Hash {
        self.subtrees
            .pop()
            .expect("one subtree per set bit of the size")
    }

    pub(crate) fn push_subtree(&mut self, hash: Hash) {
        self.subtrees.push(hash);
        self.size += 1;
    }

    /// Returns the root of the tree of the leaves appended so far.
    pub fn root(&self) -> Hash {
        // The MTH split puts the largest perfect subtree on the left and the
        // rest on the right, so the root folds the subtrees from the right.
        let mut subtrees = self.subtrees.iter().rev();
        match subtrees.next() {
            None => empty_root(),
            Some(last) => subtrees.fold(*last, |right, left| node_hash(left, &right)),
        }
    }
}

/// A tree held in memory: every level of perfect subtree hashes.
///
/// Level 0 holds the leaf hashes, and level `l` holds the hash of every
/// complete subtree of `2^l` leaves. It is a [`HashSource`] for the tree of
/// its own size and for the tree of every smaller size, because a perfect
/// subtree never changes once complete.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// Returns the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the tree over the given leaf hashes.
    pub fn from_leaf_hashes(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut tree = Self::new();
        for leaf in leaves {
            tree.append(leaf);
        }
        tree
    }

    /// Appends the hash of the next leaf, and of every subtree it completes.
    pub fn append(&mut self, leaf: Hash) {
        let mut hash = leaf;
        for level in 0.. {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            // An odd count means the new node has no sibling yet.
            if row.len() % 2 == 1 {
                break;
            }
            hash = node_hash(&row[row.len() - 2], &row[row.len() - 1]);
        }
    }

    /// Returns the number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// Returns the hashes of the leaves.
    pub fn leaf_hashes(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// Returns the root of the tree.
    pub fn root(&self) -> Hash {
        root_at_size(self, self.size()).expect("a tree holds every subtree of its own size")
    }
}

/// The error of a [`MemoryTree`] asked for a subtree it does not hold, that
/// is, one that is not complete in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the tree holds no complete subtree at level {level}, index {index}")]
pub struct MissingNode {
    /// The level asked for; 0 is the leaves.
    pub level: u8,
    /// The position asked for within the level.
    pub index: u64,
}

impl HashSource for MemoryTree {
    type Error = MissingNode;

    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MissingNode> {
        let row = self.levels.get(usize::from(level));
        let hash = row.and_then(|row| row.get(usize::try_from(index).ok()?));
        hash.copied().ok_or(MissingNode { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;

    /// The roots of the first 1 to 8 leaves of the RFC 6962 test tree, as
    /// listed in the tests of transparency-dev/merkle and certificate-transparency.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn test_leaves() -> Vec<Hash> {
        let entries: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        entries.iter().map(|e| leaf_hash(e)).collect()
    }

    fn hex(hash: &Hash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn every_root_computation_matches_the_rfc_test_tree() {
        let leaves = test_leaves();
        let mut builder = TreeBuilder::new();
        let mut memory = MemoryTree::new();
        for (n, (leaf, want)) in leaves.iter().zip(ROOTS).enumerate() {
            builder.append(*leaf);
            memory.append(*leaf);
            assert_eq!(builder.size(), n as u64 + 1);
            assert_eq!(memory.size(), n as u64 + 1);
            assert_eq!(
                hex(&root_from_leaf_hashes(&leaves[..=n])),
                want,
                "size {}",
                n + 1
            );
            assert_eq!(hex(&builder.root()), want, "builder, size {}", n + 1);
            assert_eq!(hex(&memory.root()), want, "memory, size {}", n + 1);
        }
        assert_eq!(memory.leaf_hashes(), leaves.as_slice());
    }

    #[test]
    fn the_empty_tree_has_the_empty_root() {
        assert_eq!(root_from_leaf_hashes(&[]), empty_root());
        assert_eq!(TreeBuilder::new().root(), empty_root());
        assert_eq!(MemoryTree::new().root(), empty_root());
        assert_eq!(MemoryTree::new().size(), 0);
    }

    #[test]
    fn memory_tree_reports_subtrees_it_does_not_hold() {
        let tree = MemoryTree::from_leaf_hashes(test_leaves().into_iter().take(3));
        assert_eq!(
            tree.subtree_hash(1, 0),
            Ok(node_hash(&test_leaves()[0], &test_leaves()[1]))
        );
        // Leaves 2..4 are not a complete subtree of the tree of 3 leaves.
        assert_eq!(
            tree.subtree_hash(1, 1),
            Err(MissingNode { level: 1, index: 1 })
        );
        assert_eq!(
            tree.subtree_hash(0, 3),
            Err(MissingNode { level: 0, index: 3 })
        );
        assert_eq!(
            tree.subtree_hash(9, 0),
            Err(MissingNode { level: 9, index: 0 })
        );
    }
}
