//! `verify_inclusion` never panics on arbitrary indices, sizes, hashes and
//! proofs; honest proofs from a small tree verify, and altered ones do not.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use patchaudit_fuzz::{flip_bit, hash_bytes, hash_list, honest_tree, tree_size};
use patchaudit_proofs::{
    inclusion_proof, root_at_size, root_from_inclusion_proof, verify_inclusion,
};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // Running out of bytes ends a check early; that is not a failure.
    let _ = arbitrary_proof(&mut u);
    let _ = honest_proof(&mut u);
});

fn arbitrary_proof(u: &mut Unstructured<'_>) -> Result<()> {
    let index = tree_size(u)?;
    let size = tree_size(u)?;
    let leaf = hash_bytes(u)?;
    let proof = hash_list(u)?;
    let root = hash_bytes(u)?;
    let verified = verify_inclusion(index, size, &leaf, &proof, &root);
    // verify_inclusion is root_from_inclusion_proof and a comparison.
    match root_from_inclusion_proof(index, size, &leaf, &proof) {
        Ok(computed) => assert_eq!(verified.is_ok(), computed.as_slice() == root.as_slice()),
        Err(error) => assert_eq!(verified, Err(error)),
    }
    Ok(())
}

fn honest_proof(u: &mut Unstructured<'_>) -> Result<()> {
    let tree = honest_tree(u)?;
    let size = u.int_in_range(1..=tree.size())?;
    let index = u.int_in_range(0..=size - 1)?;
    let proof = inclusion_proof(&tree, index, size).expect("the tree holds every subtree");
    let root = root_at_size(&tree, size).expect("the tree holds every subtree");
    let leaf = tree.leaf_hashes()[index as usize];
    assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));

    // The proof binds the leaf, its index, every proof hash and the root.
    let mut bad_leaf = leaf;
    flip_bit(u, &mut bad_leaf)?;
    assert!(verify_inclusion(index, size, &bad_leaf, &proof, &root).is_err());
    let other = u.int_in_range(0..=size - 1)?;
    if other != index {
        assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
    }
    if !proof.is_empty() {
        let mut bad_proof = proof.clone();
        let k = u.choose_index(bad_proof.len())?;
        flip_bit(u, &mut bad_proof[k])?;
        assert!(verify_inclusion(index, size, &leaf, &bad_proof, &root).is_err());
        let mut short = proof.clone();
        short.pop();
        assert!(verify_inclusion(index, size, &leaf, &short, &root).is_err());
    }
    let mut bad_root = root;
    flip_bit(u, &mut bad_root)?;
    assert!(verify_inclusion(index, size, &leaf, &proof, &bad_root).is_err());
    Ok(())
}
