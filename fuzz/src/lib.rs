//! Helpers the fuzz targets share: drawing tree sizes, hashes and small
//! honest trees from the fuzzer's bytes.

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use patchaudit_proofs::{leaf_hash, MemoryTree};

/// The most leaves of an honest tree. Small enough to build on every run.
pub const MAX_LEAVES: u64 = 300;

/// Draws a tree size or index: often small, otherwise any value, one near
/// `u64::MAX`, or one near a power of two, where the proof shapes change.
pub fn tree_size(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => u.int_in_range(0..=70)?,
        1 => u.arbitrary()?,
        2 => u64::MAX - u.int_in_range(0..=70)?,
        _ => {
            let power = 1u64 << u.int_in_range(0..=63)?;
            power.wrapping_add(u.int_in_range(0..=2)?).wrapping_sub(1)
        }
    })
}

/// Draws the bytes of a hash: 32 bytes, or sometimes another length, to reach
/// the length checks.
pub fn hash_bytes(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let len = if u.ratio(1u8, 16)? {
        u.int_in_range(0..=40)?
    } else {
        32
    };
    Ok(u.bytes(len)?.to_vec())
}

/// Draws a list of hashes of any length up to 70.
pub fn hash_list(u: &mut Unstructured<'_>) -> Result<Vec<Vec<u8>>> {
    let len = u.int_in_range(0..=70)?;
    (0..len).map(|_| hash_bytes(u)).collect()
}

/// Builds an honest tree of 1 to `MAX_LEAVES` distinct leaves.
pub fn honest_tree(u: &mut Unstructured<'_>) -> Result<MemoryTree> {
    let leaves = u.int_in_range(1..=MAX_LEAVES)?;
    let salt: u8 = u.arbitrary()?;
    Ok(MemoryTree::from_leaf_hashes((0..leaves).map(|i| {
        leaf_hash(&[&[salt][..], &i.to_be_bytes()].concat())
    })))
}

/// Flips one bit of `bytes`, which must not be empty.
pub fn flip_bit(u: &mut Unstructured<'_>, bytes: &mut [u8]) -> Result<()> {
    let i = u.choose_index(bytes.len())?;
    bytes[i] ^= 1 << u.int_in_range(0..=7)?;
    Ok(())
}
