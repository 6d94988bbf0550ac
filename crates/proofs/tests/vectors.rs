//! Runs the inclusion and consistency test vectors of transparency-dev/merkle
//! (see shared/samples/PROVENANCE.md) against the verifiers.
//!
//! Every happy-path vector must verify and every `wantErr` vector must be
//! refused. Every file found is checked, and the counts are asserted, so that
//! no vector is skipped silently.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use patchaudit_proofs::{root_from_inclusion_proof, verify_consistency, verify_inclusion};
use serde::de::DeserializeOwned;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InclusionVector {
    leaf_idx: u64,
    tree_size: u64,
    root: Option<String>,
    leaf_hash: Option<String>,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyVector {
    size1: u64,
    size2: u64,
    root1: Option<String>,
    root2: Option<String>,
    proof: Option<Vec<String>>,
    desc: String,
    #[serde(rename = "wantErr")]
    want_err: bool,
}

/// The vectors ship with this repository's environment, so their absence is
/// a failure, not a reason to skip.
fn testdata(kind: &str) -> PathBuf {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/merkle-testdata");
    assert!(
        root.is_dir(),
        "the Merkle test vectors are missing: expected the directory {} \
         (shared/samples/merkle-testdata, see shared/samples/PROVENANCE.md)",
        root.display()
    );
    root.join(kind)
}

/// Returns every file below `dir`, sorted, failing on anything but JSON.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                assert_eq!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("json"),
                    "unexpected non-JSON file {}",
                    path.display()
                );
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn load<T: DeserializeOwned>(path: &Path) -> T {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Decodes a base64 hash; null and "" are the empty byte string. The result
/// may have any length, as the vectors include hashes of the wrong length.
fn bytes(path: &Path, value: Option<&str>) -> Vec<u8> {
    STANDARD
        .decode(value.unwrap_or(""))
        .unwrap_or_else(|e| panic!("{}: bad base64 {value:?}: {e}", path.display()))
}

fn proof_bytes(path: &Path, proof: Option<&[String]>) -> Vec<Vec<u8>> {
    proof
        .unwrap_or(&[])
        .iter()
        .map(|h| bytes(path, Some(h)))
        .collect()
}

/// Tallies the vectors checked, and collects those with the wrong outcome.
#[derive(Default)]
struct Outcome {
    checked: usize,
    accepted: usize,
    refused: usize,
    wrong: Vec<String>,
}

impl Outcome {
    fn record(&mut self, path: &Path, desc: &str, want_err: bool, result: Result<(), String>) {
        self.checked += 1;
        match (&result, want_err) {
            (Ok(()), false) => self.accepted += 1,
            (Err(_), true) => self.refused += 1,
            _ => self.wrong.push(format!(
                "{} ({desc}): wantErr={want_err}, got {result:?}",
                path.display()
            )),
        }
    }

    fn assert_all(&self, found: usize, expected_files: usize) {
        assert!(
            self.wrong.is_empty(),
            "vectors with the wrong outcome:\n{}",
            self.wrong.join("\n")
        );
        assert_eq!(
            self.checked, found,
            "every vector file found must be checked"
        );
        // The vector set is pinned (PROVENANCE.md); a change in its size means
        // files went missing or were added, and this test needs a look.
        assert_eq!(found, expected_files, "number of vector files");
        assert!(
            self.accepted > 0 && self.refused > 0,
            "both outcomes must be exercised"
        );
        assert_eq!(self.accepted + self.refused, self.checked);
    }
}

#[test]
fn inclusion_vectors() {
    let files = files_below(&testdata("inclusion"));
    let mut outcome = Outcome::default();
    for path in &files {
        let v: InclusionVector = load(path);
        let leaf = bytes(path, v.leaf_hash.as_deref());
        let root = bytes(path, v.root.as_deref());
        let proof = proof_bytes(path, v.proof.as_deref());
        let result = verify_inclusion(v.leaf_idx, v.tree_size, &leaf, &proof, &root);
        // The computed root must agree with the verdict.
        let computed = root_from_inclusion_proof(v.leaf_idx, v.tree_size, &leaf, &proof);
        assert_eq!(
            result.is_ok(),
            computed.is_ok_and(|c| c[..] == root[..]),
            "{}: root_from_inclusion_proof disagrees with verify_inclusion",
            path.display()
        );
        outcome.record(path, &v.desc, v.want_err, result.map_err(|e| e.to_string()));
    }
    eprintln!(
        "inclusion: {} vectors checked, {} accepted, {} refused",
        outcome.checked, outcome.accepted, outcome.refused
    );
    outcome.assert_all(files.len(), 98);
}

#[test]
fn consistency_vectors() {
    let files = files_below(&testdata("consistency"));
    let mut outcome = Outcome::default();
    for path in &files {
        let v: ConsistencyVector = load(path);
        let root1 = bytes(path, v.root1.as_deref());
        let root2 = bytes(path, v.root2.as_deref());
        let proof = proof_bytes(path, v.proof.as_deref());
        let result = verify_consistency(v.size1, v.size2, &proof, &root1, &root2);
        outcome.record(path, &v.desc, v.want_err, result.map_err(|e| e.to_string()));
    }
    eprintln!(
        "consistency: {} vectors checked, {} accepted, {} refused",
        outcome.checked, outcome.accepted, outcome.refused
    );
    outcome.assert_all(files.len(), 98);
}
