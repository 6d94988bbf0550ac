//! RFC 6962 Merkle trees for the patchaudit ledger: hashing, proofs and their
//! verification.
//!
//! The ledger is an append-only list of entries. Each entry is hashed into a
//! leaf with [`leaf_hash`], and the leaves form the Merkle tree of RFC 6962
//! §2.1, whose root commits to every entry. Two kinds of proofs let a client
//! check the ledger without holding it:
//!
//! - an inclusion proof shows that a leaf is in the tree of a given size
//!   ([`inclusion_proof`], checked by [`verify_inclusion`]);
//! - a consistency proof shows that the tree of one size is a prefix of the
//!   tree of a larger size, so that nothing was rewritten
//!   ([`consistency_proof`], checked by [`verify_consistency`]).
//!
//! Proofs are built from the hashes of perfect subtrees only, which a store
//! can keep next to its entries because they never change once complete. A
//! store implements [`HashSource`] and serves any proof in O(log n) reads.
//! [`MemoryTree`] is an in-memory source for tests and small trees, and
//! [`TreeBuilder`] recomputes a root over a stream of leaves in O(log n)
//! memory.
//!
//! A log commits to its tree with a checkpoint ([`Checkpoint`]: its origin,
//! size and root, in the C2SP `tlog-checkpoint` format), signed as a C2SP
//! signed note with an Ed25519 key ([`NoteSigner::sign_checkpoint`]). A
//! client that holds the log's [`NoteVerifier`] checks it with
//! [`open_checkpoint`]. Notes and keys are byte-compatible with Go's
//! `golang.org/x/mod/sumdb/note`.
//!
//! Verification follows the `proof` package of transparency-dev/merkle,
//! whose test vectors this crate's tests run. The crate is pure: it does no
//! I/O, except that [`NoteSigner::generate`] draws a new key from the
//! operating system's random number generator.
//!
//! ```
//! use patchaudit_proofs::{
//!     inclusion_proof, leaf_hash, open_checkpoint, verify_inclusion, MemoryTree, NoteSigner,
//! };
//!
//! let mut tree = MemoryTree::new();
//! for entry in ["a", "b", "c"] {
//!     tree.append(leaf_hash(entry.as_bytes()));
//! }
//! let proof = inclusion_proof(&tree, 1, 3).unwrap();
//! assert!(verify_inclusion(1, 3, &leaf_hash(b"b"), &proof, &tree.root()).is_ok());
//!
//! let signer = NoteSigner::generate("example.com/ledger").unwrap();
//! let note = signer.sign_checkpoint(tree.size(), &tree.root());
//! let checkpoint = open_checkpoint(&note, &signer.verifier()).unwrap();
//! assert_eq!((checkpoint.size, checkpoint.root), (3, tree.root()));
//! ```

mod note;
mod proof;
mod stored;
mod tree;
mod verify;

pub use note::{
    open_checkpoint, open_note, Checkpoint, KeyKind, NoteError, NoteSigner, NoteVerifier,
};
pub use proof::{consistency_proof, inclusion_proof, root_at_size, HashSource, ProofError};
pub use stored::{
    positions_read, stored_hash_count, stored_hash_index, stored_hash_position, FetchedHashes,
    NotFetched,
};
pub use tree::{root_from_leaf_hashes, MemoryTree, MissingNode, TreeBuilder};
pub use verify::{root_from_inclusion_proof, verify_consistency, verify_inclusion, VerifyError};

use sha2::{Digest, Sha256};

/// A SHA-256 digest: the hash of a leaf, of an interior node or of a tree.
pub type Hash = [u8; 32];

/// Returns the hash of a leaf, `SHA-256(0x00 || data)`.
///
/// The prefix differs from the one of [`node_hash`], so that no leaf can be
/// passed off as an interior node (RFC 6962 §2.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(data);
    hasher.finalize().into()
}

/// Returns the hash of an interior node, `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Returns the root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(hash: &Hash) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn leaf_hash_uses_the_zero_prefix() {
        // SHA-256 of the single byte 0x00: the leaf hash of the empty entry.
        assert_eq!(
            hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // The first leaf of the RFC 6962 test tree, the entry 0x00.
        assert_eq!(
            hex(&leaf_hash(&[0x00])),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
    }

    #[test]
    fn node_hash_uses_the_one_prefix() {
        // The root of the two-leaf RFC 6962 test tree (entries "" and 0x00).
        assert_eq!(
            hex(&node_hash(&leaf_hash(b""), &leaf_hash(&[0x00]))),
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
        );
    }
}
