//! `verify_consistency` never panics on arbitrary sizes, hashes and proofs;
//! honest proofs from a small tree verify, and altered ones do not.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use patchaudit_fuzz::{flip_bit, hash_bytes, hash_list, honest_tree, tree_size};
use patchaudit_proofs::{consistency_proof, root_at_size, verify_consistency};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // Running out of bytes ends a check early; that is not a failure.
    let _ = arbitrary_proof(&mut u);
    let _ = honest_proof(&mut u);
});

fn arbitrary_proof(u: &mut Unstructured<'_>) -> Result<()> {
    let size1 = tree_size(u)?;
    let size2 = if u.ratio(1u8, 4)? {
        size1
    } else {
        tree_size(u)?
    };
    let proof = hash_list(u)?;
    let root1 = hash_bytes(u)?;
    let root2 = if u.ratio(1u8, 4)? {
        root1.clone()
    } else {
        hash_bytes(u)?
    };
    let verified = verify_consistency(size1, size2, &proof, &root1, &root2);
    // A non-empty tree is consistent with itself, by an empty proof.
    if size1 == size2 && size1 != 0 && proof.is_empty() && root1 == root2 {
        assert_eq!(verified, Ok(()));
    }
    if size2 < size1 || size1 == 0 {
        assert!(verified.is_err());
    }
    Ok(())
}

fn honest_proof(u: &mut Unstructured<'_>) -> Result<()> {
    let tree = honest_tree(u)?;
    let size2 = u.int_in_range(1..=tree.size())?;
    let size1 = u.int_in_range(1..=size2)?;
    let proof = consistency_proof(&tree, size1, size2).expect("the tree holds every subtree");
    let root1 = root_at_size(&tree, size1).expect("the tree holds every subtree");
    let root2 = root_at_size(&tree, size2).expect("the tree holds every subtree");
    assert_eq!(
        verify_consistency(size1, size2, &proof, &root1, &root2),
        Ok(())
    );

    // The proof binds both roots and every proof hash.
    let mut bad_root1 = root1;
    flip_bit(u, &mut bad_root1)?;
    assert!(verify_consistency(size1, size2, &proof, &bad_root1, &root2).is_err());
    let mut bad_root2 = root2;
    flip_bit(u, &mut bad_root2)?;
    assert!(verify_consistency(size1, size2, &proof, &root1, &bad_root2).is_err());
    if !proof.is_empty() {
        let mut bad_proof = proof.clone();
        let k = u.choose_index(bad_proof.len())?;
        flip_bit(u, &mut bad_proof[k])?;
        assert!(verify_consistency(size1, size2, &bad_proof, &root1, &root2).is_err());
        let mut short = proof.clone();
        short.pop();
        assert!(verify_consistency(size1, size2, &short, &root1, &root2).is_err());
    }
    // The roots do not swap, unless the trees are one.
    if size1 != size2 {
        assert!(verify_consistency(size1, size2, &proof, &root2, &root1).is_err());
    }
    Ok(())
}
