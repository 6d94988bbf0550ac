//! The ledger's Merkle tree as the stores keep it, and proofs served from it.
//!
//! Every backend keeps three things beside its events, all written in the
//! same transaction as the events they cover:
//!
//! - every perfect subtree hash, in the append-only layout of
//!   [`patchaudit_proofs::stored_hash_index`] (table `tree_hashes`);
//! - the tree head: its size and the roots of its perfect subtrees (one per
//!   set bit of the size), so that the next commit extends the tree without
//!   reading it (table `ledger_head`);
//! - a signed checkpoint of the new size and root (table `checkpoints`).
//!
//! A proof therefore reads O(log n) stored hashes and never recomputes the tree.

use crate::group::PlannedRow;
use crate::{Store, StoreError};
use patchaudit_domain::Timestamp;
use patchaudit_proofs::{
    leaf_hash, positions_read, FetchedHashes, Hash, NoteSigner, ProofError, TreeBuilder,
};

/// A signed checkpoint as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The number of leaves (events) it commits to.
    pub size: u64,
    /// The root of the tree of that size.
    pub root: Hash,
    /// The signed note, in the C2SP tlog-checkpoint and signed-note formats.
    pub note: String,
    /// When the commit that produced it was recorded.
    pub recorded_at: Timestamp,
}

/// Nanoseconds writers of this process spent on the tree: hashing leaves and
/// nodes, writing tree hashes and the head, signing and storing checkpoints.
static TREE_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The time the writers of this process spent keeping the Merkle tree and
/// its checkpoints, all commits together. The benchmark harness puts it
/// beside the ingest's wall time to show the tree's share of the cost.
pub fn time_spent() -> std::time::Duration {
    std::time::Duration::from_nanos(TREE_NANOS.load(std::sync::atomic::Ordering::Relaxed))
}

/// Adds the time since `start` to [`time_spent`].
pub(crate) fn account(start: std::time::Instant) {
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    TREE_NANOS.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
}

/// Decodes a stored tree head: `size` and the concatenated roots of its
/// perfect subtrees, largest first.
pub(crate) fn decode_head(size: i64, subtrees: &[u8]) -> Result<TreeBuilder, StoreError> {
    let corrupt = || {
        StoreError::Corrupt(format!(
            "the tree head of size {size} holds {} bytes of subtree roots, which is not one root per set bit of the size",
            subtrees.len()
        ))
    };
    let size = u64::try_from(size).map_err(|_| corrupt())?;
    if !subtrees.len().is_multiple_of(32) {
        return Err(corrupt());
    }
    let roots = subtrees
        .chunks_exact(32)
        .map(|c| c.try_into().expect("chunks of 32"))
        .collect();
    TreeBuilder::from_subtrees(size, roots).ok_or_else(corrupt)
}

/// Encodes a tree head's subtree roots for storage.
pub(crate) fn encode_head(tree: &TreeBuilder) -> Vec<u8> {
    tree.subtrees().concat()
}

/// What a group commit adds to the tree.
pub(crate) struct Growth {
    /// The new stored hashes, with their positions, in order.
    pub hashes: Vec<(i64, Hash)>,
    /// The tree after the group.
    pub tree: TreeBuilder,
}

/// Extends `tree` with the leaves of `rows`, recorded at `now`.
pub(crate) fn grow(
    mut tree: TreeBuilder,
    rows: &[PlannedRow<'_>],
    now: Timestamp,
) -> Result<Growth, StoreError> {
    if let Some(first) = rows.first() {
        if first.seq as u64 != tree.size() {
            return Err(StoreError::Corrupt(format!(
                "the next seq is {} but the tree has {} leaves",
                first.seq,
                tree.size()
            )));
        }
    }
    let mut hashes = Vec::with_capacity(rows.len() * 2 + 8);
    let mut buf = Vec::with_capacity(512);
    for row in rows {
        buf.clear();
        row.event
            .write_leaf(row.seq as u64, now, row.recorded_by, &mut buf);
        tree.append_stored(leaf_hash(&buf), |position, hash| {
            hashes.push((position as i64, hash));
        });
    }
    Ok(Growth { hashes, tree })
}

/// Checks, before a commit extends the tree, that the latest signed
/// checkpoint covers exactly the tree head.
///
/// In a ledger written only by patchaudit the two always agree, because
/// they are written in one transaction. A head beyond the latest checkpoint
/// means rows were added behind the ledger's back; signing a new checkpoint
/// over them would vouch for them, so the writer refuses.
pub(crate) fn check_head_is_signed(head: u64, latest: Option<u64>) -> Result<(), StoreError> {
    let signed = latest.unwrap_or(0);
    if signed == head {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "the tree head has {head} leaves but the latest signed checkpoint covers {signed}: \
         the database was changed outside patchaudit, and no new checkpoint will be signed \
         over it; run `patchaudit verify` to find the change"
    )))
}

/// The signer a writer signs checkpoints with, if the store may write.
pub(crate) fn signer_or_read_only(
    signer: &Option<std::sync::Arc<NoteSigner>>,
) -> Result<&NoteSigner, StoreError> {
    signer.as_deref().ok_or_else(|| {
        StoreError::Internal(
            "this store was opened without a checkpoint signing key, so it cannot append".into(),
        )
    })
}

/// Checks at open time that `signer` is the key that signed the ledger's
/// latest checkpoint, so that a lost and regenerated key is noticed before
/// it signs anything.
pub(crate) fn check_signer(
    signer: &NoteSigner,
    latest: Option<&StoredCheckpoint>,
) -> Result<(), StoreError> {
    let Some(latest) = latest else { return Ok(()) };
    patchaudit_proofs::open_checkpoint(&latest.note, &signer.verifier()).map_err(|e| {
        StoreError::Open(format!(
            "the ledger's latest checkpoint (size {}) does not verify with this server's signing key {} ({e}); \
             start the server with the key that signed the ledger",
            latest.size,
            signer.verifier()
        ))
    })?;
    Ok(())
}

/// Why a proof could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The proof asks about a tree larger than the latest signed checkpoint.
    #[error(
        "the latest checkpoint covers {len} events, so no tree of size {size} can be proven yet"
    )]
    BeyondLedger {
        /// The size asked for.
        size: u64,
        /// The ledger's size.
        len: u64,
    },
    /// The indexes or sizes do not describe a proof (for example a leaf
    /// beyond the tree, or a consistency proof from a larger size).
    #[error("{0}")]
    Invalid(String),
    /// The store failed, or lacks a hash it should hold.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Fetches what `build` reads, in one call to the store, and runs it.
async fn with_fetched<S, T>(
    store: &S,
    build: impl Fn(&FetchedHashes) -> Result<T, ProofError<patchaudit_proofs::NotFetched>>,
    dry: impl FnOnce(&dyn patchaudit_proofs::HashSource<Error = std::convert::Infallible>),
) -> Result<T, TreeError>
where
    S: Store + ?Sized,
{
    let positions = positions_read(dry);
    let fetched = FetchedHashes::new(store.tree_hashes(&positions).await?);
    build(&fetched).map_err(|e| match e {
        ProofError::Source(missing) => TreeError::Store(StoreError::Corrupt(format!(
            "the stored tree lacks a hash it must hold: {missing}"
        ))),
        other => TreeError::Invalid(other.to_string()),
    })
}

/// Proofs are served for signed trees only: a size up to the latest checkpoint's.
async fn check_size<S: Store + ?Sized>(store: &S, size: u64) -> Result<(), TreeError> {
    let len = store.checkpoint().await?.map_or(0, |c| c.size);
    if size > len {
        return Err(TreeError::BeyondLedger { size, len });
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves, from
/// O(log n) stored hashes.
pub async fn inclusion_proof<S: Store + ?Sized>(
    store: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError> {
    Ok(leaf_and_inclusion_proof(store, index, size, None).await?.1)
}

/// The stored leaf hash of `index` and its inclusion proof in the tree of
/// `size` leaves, read in one query. `signed_size` is the latest
/// checkpoint's size when the caller already read it, which saves a query.
pub async fn leaf_and_inclusion_proof<S: Store + ?Sized>(
    store: &S,
    index: u64,
    size: u64,
    signed_size: Option<u64>,
) -> Result<(Hash, Vec<Hash>), TreeError> {
    if index >= size {
        return Err(TreeError::Invalid(format!(
            "leaf {index} is not in the tree of size {size}"
        )));
    }
    match signed_size {
        Some(len) if size > len => return Err(TreeError::BeyondLedger { size, len }),
        Some(_) => {}
        None => check_size(store, size).await?,
    }
    with_fetched(
        store,
        |s| {
            let leaf = patchaudit_proofs::HashSource::subtree_hash(s, 0, index)
                .map_err(ProofError::Source)?;
            Ok((leaf, patchaudit_proofs::inclusion_proof(s, index, size)?))
        },
        |s| {
            let _ = s.subtree_hash(0, index);
            let _ = patchaudit_proofs::inclusion_proof(s, index, size);
        },
    )
    .await
}

/// The consistency proof from the tree of `from` leaves to the tree of `to`
/// leaves, from O(log n) stored hashes.
pub async fn consistency_proof<S: Store + ?Sized>(
    store: &S,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, TreeError> {
    if from == 0 || from > to {
        return Err(TreeError::Invalid(format!(
            "no consistency proof exists from size {from} to size {to}: the first size must be between 1 and the second"
        )));
    }
    check_size(store, to).await?;
    with_fetched(
        store,
        |s| patchaudit_proofs::consistency_proof(s, from, to),
        |s| {
            let _ = patchaudit_proofs::consistency_proof(s, from, to);
        },
    )
    .await
}

/// The root of the tree of the first `size` events, from O(log n) stored hashes.
pub async fn root_at<S: Store + ?Sized>(store: &S, size: u64) -> Result<Hash, TreeError> {
    check_size(store, size).await?;
    with_fetched(
        store,
        |s| patchaudit_proofs::root_at_size(s, size).map_err(ProofError::Source),
        |s| {
            let _ = patchaudit_proofs::root_at_size(s, size);
        },
    )
    .await
}
