//! The tamper-evidence endpoints, checked by a client that trusts only the
//! verifier key: every answer is verified with `patchaudit_proofs`.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use common::{at, event, TestServer};
use patchaudit_proofs::{open_checkpoint, verify_consistency, verify_inclusion, Checkpoint, Hash};
use patchaudit_store::conformance::test_signer;
use serde_json::Value;

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list of hashes: {v}"))
        .iter()
        .map(|h| {
            let bytes = B64.decode(h.as_str().unwrap()).unwrap();
            Hash::try_from(bytes.as_slice()).unwrap()
        })
        .collect()
}

async fn checkpoint(srv: &TestServer) -> Checkpoint {
    let r = srv.get("/v1/checkpoint").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.content_type.starts_with("text/plain"),
        "{}",
        r.content_type
    );
    open_checkpoint(&r.text(), &test_signer().verifier())
        .expect("a note signed by the server's key")
}

#[tokio::test]
async fn checkpoints_and_proofs_verify_with_the_published_key_alone() {
    let srv = TestServer::start().await;
    srv.get("/v1/checkpoint").await.problem(404, "not-found");

    srv.ingest(&[event("KB1", "web-01", &at(1), "success")])
        .await;
    let first = checkpoint(&srv).await;
    assert_eq!(first.size, 1);
    assert_eq!(first.origin, test_signer().name());

    let batch: Vec<Value> = (0..20)
        .map(|i| {
            event(
                &format!("KB{i}"),
                &format!("web-{i:02}"),
                &at(i % 24),
                "failure",
            )
        })
        .collect();
    srv.ingest(&batch).await;
    let latest = checkpoint(&srv).await;
    assert_eq!(latest.size, 21);

    // Consistency from the first checkpoint to the latest, defaulting `to`.
    let r = srv
        .get_query("/v1/proofs/consistency", &[("from", "1")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(
        (body["from"].as_u64(), body["to"].as_u64()),
        (Some(1), Some(21))
    );
    verify_consistency(1, 21, &hashes(&body["proof"]), &first.root, &latest.root)
        .expect("the first checkpoint is a prefix of the latest");

    // Every event's inclusion, and its leaf rebuilt from the API's fields.
    for seq in 0..21u64 {
        let r = srv.get(&format!("/v1/events/{seq}/proof")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        let note = body["checkpoint"].as_str().unwrap();
        let cp = open_checkpoint(note, &test_signer().verifier()).unwrap();
        assert_eq!(body["size"].as_u64(), Some(cp.size));
        let leaf: Hash = B64
            .decode(body["leaf_hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        verify_inclusion(seq, cp.size, &leaf, &hashes(&body["proof"]), &cp.root)
            .expect("the inclusion proof verifies");
        assert_eq!(body["event"]["seq"].as_u64(), Some(seq));

        let r = srv
            .get_query(
                "/v1/proofs/inclusion",
                &[("seq", &seq.to_string()), ("size", "21")],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let b = r.json();
        assert_eq!(b["leaf_hash"], body["leaf_hash"]);
        verify_inclusion(seq, 21, &leaf, &hashes(&b["proof"]), &latest.root).unwrap();
    }

    // A proof for an older tree size verifies against that size's root.
    let r = srv
        .get_query("/v1/proofs/inclusion", &[("seq", "0"), ("size", "1")])
        .await;
    let b = r.json();
    let leaf: Hash = B64
        .decode(b["leaf_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    assert!(hashes(&b["proof"]).is_empty());
    assert_eq!(leaf, first.root, "a one-leaf tree's root is its leaf");
}

#[tokio::test]
async fn bad_proof_requests_are_problems_that_name_the_parameter() {
    let srv = TestServer::start().await;
    srv.ingest(&[
        event("KB1", "a", &at(1), "success"),
        event("KB2", "b", &at(2), "success"),
    ])
    .await;
    // (path, query, the parameter named, its error code)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 6] = [
        ("/v1/proofs/inclusion", &[], "seq", "required"),
        ("/v1/proofs/inclusion", &[("seq", "x")], "seq", "format"),
        (
            "/v1/proofs/inclusion",
            &[("seq", "2"), ("size", "2")],
            "seq",
            "invalid_value",
        ),
        (
            "/v1/proofs/inclusion",
            &[("seq", "0"), ("bogus", "1")],
            "bogus",
            "unknown_field",
        ),
        ("/v1/proofs/consistency", &[], "from", "required"),
        (
            "/v1/proofs/consistency",
            &[("from", "0")],
            "from",
            "invalid_value",
        ),
    ];
    for (path, query, field, code) in cases {
        let r = srv.get_query(path, query).await;
        let errors = r.param_errors();
        assert!(
            errors.contains(&(field.to_owned(), code.to_owned())),
            "{path} {query:?}: {errors:?}"
        );
    }
    srv.get_query("/v1/proofs/consistency", &[("from", "3")])
        .await
        .param_errors();
    // Sizes beyond the latest checkpoint cannot be proven yet.
    srv.get_query("/v1/proofs/inclusion", &[("seq", "0"), ("size", "3")])
        .await
        .problem(404, "not-found");
    srv.get_query("/v1/proofs/consistency", &[("from", "1"), ("to", "9")])
        .await
        .problem(404, "not-found");
    srv.get("/v1/events/2/proof")
        .await
        .problem(404, "not-found");
    srv.get("/v1/events/x/proof").await.param_errors();
}
