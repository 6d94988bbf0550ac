//! Verifying proofs, with the rules of transparency-dev/merkle's `proof`
//! package.
//!
//! Hashes arrive as byte slices, because they come off the wire: a hash of
//! the wrong length is an error, never a panic.

use crate::{node_hash, Hash};

/// The error of a proof that does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The index of the leaf.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// The second tree is smaller than the first.
    #[error("tree size {size2} is smaller than tree size {size1}")]
    SizeDecreased {
        /// The size of the older tree.
        size1: u64,
        /// The size of the newer tree.
        size2: u64,
    },
    /// The first tree is empty. Every tree extends the empty tree, so such a
    /// proof proves nothing, and it is refused as a likely caller mistake.
    #[error("a consistency proof from the empty tree proves nothing")]
    EmptyFirstTree,
    /// The proof has the wrong number of hashes for the sizes.
    #[error("the proof has {got} hashes, expected {want}")]
    WrongProofLength {
        /// The number of hashes in the proof.
        got: usize,
        /// The number of hashes a proof for these sizes has.
        want: usize,
    },
    /// A leaf hash, proof hash or root that is hashed has the wrong length.
    #[error("a hash has {0} bytes, expected 32")]
    BadHashLength(usize),
    /// The root computed from the proof differs from the expected root.
    #[error("the computed root of the tree of size {size} does not match the expected root")]
    RootMismatch {
        /// The size of the tree whose root differs.
        size: u64,
    },
}

/// Checks that `proof` is an inclusion proof of the leaf with hash
/// `leaf_hash`, at `leaf_index`, in the tree of `tree_size` leaves with root
/// `root`.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), VerifyError> {
    let computed = root_from_inclusion_proof(leaf_index, tree_size, leaf_hash, proof)?;
    expect_root(&computed, root, tree_size)
}

/// Returns the root of the tree of `tree_size` leaves that the inclusion
/// proof of `leaf_hash` at `leaf_index` implies.
///
/// The caller compares the result with a root it trusts; on its own it proves
/// nothing.
pub fn root_from_inclusion_proof<P: AsRef<[u8]>>(
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: &[u8],
    proof: &[P],
) -> Result<Hash, VerifyError> {
    if leaf_index >= tree_size {
        return Err(VerifyError::IndexOutOfRange {
            index: leaf_index,
            size: tree_size,
        });
    }
    let leaf = to_hash(leaf_hash)?;
    let (inner, border) = split_path(leaf_index, tree_size - 1);
    expect_length(proof.len(), inner + border)?;
    let proof = to_hashes(proof)?;
    let below_fork = chain_inner(leaf, &proof[..inner], leaf_index);
    Ok(chain_border(below_fork, &proof[inner..]))
}

/// Checks that `proof` is a consistency proof from the tree of `size1` leaves
/// with root `root1` to the tree of `size2` leaves with root `root2`.
///
/// Equal sizes need an empty proof and equal roots, which are compared as
/// bytes. A first size of 0 is refused (see [`VerifyError::EmptyFirstTree`]).
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), VerifyError> {
    if size2 < size1 {
        return Err(VerifyError::SizeDecreased { size1, size2 });
    }
    if size1 == 0 {
        return Err(VerifyError::EmptyFirstTree);
    }
    if size1 == size2 {
        expect_length(proof.len(), 0)?;
        return expect_root(root1, root2, size2);
    }

    // The proof is the inclusion proof of the last perfect subtree of the
    // older tree, (level, index), in the newer tree; see `consistency_proof`.
    let level = size1.trailing_zeros();
    let index = (size1 - 1) >> level;
    let (inner, border) = split_path(index, (size2 - 1) >> level);
    // That subtree's hash leads the proof, unless it is the whole older tree,
    // whose root the verifier holds.
    let (seed, path) = if index == 0 {
        expect_length(proof.len(), inner + border)?;
        (to_hash(root1)?, to_hashes(proof)?)
    } else {
        expect_length(proof.len(), 1 + inner + border)?;
        (to_hash(proof[0].as_ref())?, to_hashes(&proof[1..])?)
    };

    // Right siblings below the fork lie beyond size1, so the older root only
    // takes the left ones.
    let old_root = chain_border(
        chain_inner_left(seed, &path[..inner], index),
        &path[inner..],
    );
    expect_root(&old_root, root1, size1)?;
    let new_root = chain_border(chain_inner(seed, &path[..inner], index), &path[inner..]);
    expect_root(&new_root, root2, size2)
}

/// Splits the proof for the node at `index` into the hashes below the fork
/// with the path of the node at `last` (the right edge), and the left
/// siblings above it. Returns both counts.
fn split_path(index: u64, last: u64) -> (usize, usize) {
    let inner = u64::BITS - (index ^ last).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner as usize, border as usize)
}

/// Hashes up from the node at `index`, taking each sibling on the side its
/// index bit says.
fn chain_inner(mut hash: Hash, siblings: &[Hash], index: u64) -> Hash {
    for (i, sibling) in siblings.iter().enumerate() {
        hash = match (index >> i) & 1 {
            0 => node_hash(&hash, sibling),
            _ => node_hash(sibling, &hash),
        };
    }
    hash
}

/// Like [`chain_inner`], but skips the right siblings.
fn chain_inner_left(mut hash: Hash, siblings: &[Hash], index: u64) -> Hash {
    for (i, sibling) in siblings.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            hash = node_hash(sibling, &hash);
        }
    }
    hash
}

/// Hashes up the right edge of the tree, where every sibling is on the left.
fn chain_border(hash: Hash, siblings: &[Hash]) -> Hash {
    siblings
        .iter()
        .fold(hash, |hash, sibling| node_hash(sibling, &hash))
}

fn expect_length(got: usize, want: usize) -> Result<(), VerifyError> {
    if got == want {
        Ok(())
    } else {
        Err(VerifyError::WrongProofLength { got, want })
    }
}

fn expect_root(computed: &[u8], expected: &[u8], size: u64) -> Result<(), VerifyError> {
    if computed == expected {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch { size })
    }
}

fn to_hash(bytes: &[u8]) -> Result<Hash, VerifyError> {
    bytes
        .try_into()
        .map_err(|_| VerifyError::BadHashLength(bytes.len()))
}

fn to_hashes<P: AsRef<[u8]>>(proof: &[P]) -> Result<Vec<Hash>, VerifyError> {
    proof.iter().map(|hash| to_hash(hash.as_ref())).collect()
}
