//! Building proofs from the hashes of perfect subtrees.

use crate::{empty_root, node_hash, Hash};

/// A source of the hashes of the perfect subtrees of a tree, such as a store.
///
/// The subtree at `level` and `index` covers the leaves
/// `index * 2^level .. (index + 1) * 2^level`; level 0 is the leaves
/// themselves. A perfect subtree never changes once all its leaves exist, so
/// a source of the tree of size `n` serves the tree of every size up to `n`.
/// The proof functions of this crate only ask for subtrees that are complete
/// in the tree they prove about, and only for O(log n) of them.
pub trait HashSource {
    /// The error of a failed read.
    type Error;

    /// Returns the hash of the perfect subtree at `level` and `index`.
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// The error of building a proof.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    /// The leaf is not in the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index of the leaf.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// No consistency proof exists between the sizes: the first is zero or
    /// larger than the second.
    #[error("no consistency proof exists from tree size {size1} to tree size {size2}")]
    InvalidSizes {
        /// The size of the older tree.
        size1: u64,
        /// The size of the newer tree.
        size2: u64,
    },
    /// The source failed to return a subtree hash.
    #[error("reading a subtree hash failed")]
    Source(#[source] E),
}

/// Returns the inclusion proof (the audit path of RFC 6962 §2.1.1) of the
/// leaf at `leaf_index` in the tree of `tree_size` leaves.
///
/// The proof lists sibling hashes from the leaf up to the root, and reads
/// O(log n) subtree hashes from `source`.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    source: &S,
    leaf_index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if leaf_index >= tree_size {
        return Err(ProofError::IndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    let mut proof = Vec::new();
    path_to_node(source, 0, leaf_index, tree_size, &mut proof).map_err(ProofError::Source)?;
    Ok(proof)
}

/// Returns the consistency proof (RFC 6962 §2.1.2) that the tree of `size1`
/// leaves is a prefix of the tree of `size2` leaves.
///
/// The proof is empty when the sizes are equal. Sizes with `size1 == 0` or
/// `size1 > size2` are refused, as verification refuses them too. The proof
/// reads O(log n) subtree hashes from `source`.
pub fn consistency_proof<S: HashSource + ?Sized>(
    source: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    if size1 == 0 || size1 > size2 {
        return Err(ProofError::InvalidSizes { size1, size2 });
    }
    let mut proof = Vec::new();
    if size1 == size2 {
        return Ok(proof);
    }
    // The last perfect subtree of the older tree ends at size1. Its path to
    // the root of the newer tree proves both roots: the hashes left of the
    // path rebuild the older root, and all of them the newer one.
    let level = size1.trailing_zeros() as u8;
    let index = (size1 - 1) >> level;
    // When size1 is a power of two that subtree is the whole older tree, whose
    // root the verifier already has, so the proof leaves it out.
    if index != 0 {
        proof.push(
            source
                .subtree_hash(level, index)
                .map_err(ProofError::Source)?,
        );
    }
    path_to_node(source, level, index, size2, &mut proof).map_err(ProofError::Source)?;
    Ok(proof)
}

/// Returns the root of the tree of the first `size` leaves of `source`, read
/// from O(log n) perfect subtrees.
pub fn root_at_size<S: HashSource + ?Sized>(source: &S, size: u64) -> Result<Hash, S::Error> {
    range_root(source, 0, size)
}

/// Appends to `proof` the siblings on the path from the perfect subtree at
/// (`level`, `index`) up to the root of the tree of `size` leaves.
fn path_to_node<S: HashSource + ?Sized>(
    source: &S,
    level: u8,
    index: u64,
    size: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    // The path of the node and the path of the last leaf meet at a fork
    // `inner` levels above the node. Below the fork every sibling is complete,
    // except the right child of the fork, which holds the last leaf and may be
    // partial (an "ephemeral" node).
    let last = (size - 1) >> level;
    let inner = u64::BITS - (index ^ last).leading_zeros();
    for i in 0..inner {
        let sibling_level = level + i as u8;
        let begin = ((index >> i) ^ 1) << sibling_level;
        let end = begin + (1u64 << sibling_level).min(size - begin);
        proof.push(range_root(source, begin, end)?);
    }
    // Above the fork the path runs along the right edge of the tree, where
    // only left siblings exist, and those are complete.
    for i in inner..u64::BITS - u32::from(level) {
        if (index >> i) & 1 == 1 {
            proof.push(source.subtree_hash(level + i as u8, (index >> i) - 1)?);
        }
    }
    Ok(())
}

/// Returns the root (by MTH) of the leaves `begin..end`, where `begin` is a
/// multiple of a power of two not smaller than `end - begin`, or is 0.
///
/// Such a range splits into perfect subtrees of decreasing size, one per set
/// bit of its length, and MTH puts the largest on the left, so the root folds
/// them from the right, smallest first.
fn range_root<S: HashSource + ?Sized>(source: &S, begin: u64, end: u64) -> Result<Hash, S::Error> {
    let mut remaining = end - begin;
    let mut right_end = end;
    let mut root: Option<Hash> = None;
    while remaining != 0 {
        let level = remaining.trailing_zeros();
        right_end -= 1 << level;
        let subtree = source.subtree_hash(level as u8, right_end >> level)?;
        root = Some(match root {
            None => subtree,
            Some(right) => node_hash(&subtree, &right),
        });
        remaining &= remaining - 1;
    }
    Ok(root.unwrap_or_else(empty_root))
}
