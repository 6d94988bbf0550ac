//! The store conformance suite: one set of behaviours every backend must
//! show, written once against `&dyn Store` and run unchanged per backend.
//!
//! A backend's test file provides a fixture and invokes the macro:
//!
//! ```text
//! patchaudit_store::conformance_suite!(my_fixture);
//! ```
//!
//! where `my_fixture()` is an async fn returning `Option<impl Fixture>`
//! (`None` when the backend's service is unreachable and the test is
//! skipped, see [`service_unavailable`]). Each case becomes its own
//! `#[tokio::test]`, gets a fresh empty ledger, and the fixture is torn down
//! even when the case fails.

use crate::{Store, StoreError};
use patchaudit_domain::{
    CveId, EventFilter, EventId, NewEvent, PatchId, Status, SystemId, Timestamp,
};
use patchaudit_proofs::{
    leaf_hash, open_checkpoint, verify_consistency, verify_inclusion, FetchedHashes, MemoryTree,
    NoteSigner,
};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

/// A fresh, empty ledger for one test case, and how to dispose of it.
pub trait Fixture: Send {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
    /// Removes whatever the fixture created (a file, a schema, a database).
    fn teardown(self) -> impl Future<Output = ()> + Send;
}

/// Generates one `#[tokio::test]` per conformance case for a fixture factory.
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@cases $make;
            empty_ledger,
            dense_seqs_and_exact_round_trip,
            duplicate_event_id_is_idempotent,
            duplicates_inside_one_batch,
            conflict_rejects_the_whole_batch,
            concurrent_appends_stay_dense,
            filters_and_half_open_ranges,
            cursor_pages_cover_everything_once,
            system_summaries,
            patch_state_follows_applied_at_not_arrival,
            recorded_at_never_decreases,
            recorded_by_is_kept,
            every_commit_is_checkpointed_and_provable,
            concurrent_commits_sign_one_consistent_tree,
            proofs_refuse_unsigned_sizes,
            records_keep_history_and_answer_as_of,
            pair_facts_equal_a_full_fold_on_random_ledgers,
            reports_as_of_an_instant_do_not_change,
            cached_facts_follow_every_append,
            a_report_is_derived_again_from_its_instant_and_checkpoint,
            tokens_are_created_revoked_once_and_never_edited,
            the_audit_trail_lists_every_revision_once_in_order,
            stream_cursors_only_move_forward,
            dead_letters_are_kept_until_removed,
            alerts_are_raised_once_per_key_and_never_edited,
            inventories_keep_the_latest_snapshot_and_their_history
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                use $crate::conformance::Fixture as _;
                let Some(fixture) = $make().await else {
                    return;
                };
                let store = fixture.store();
                let outcome = ::futures::FutureExt::catch_unwind(
                    ::std::panic::AssertUnwindSafe($crate::conformance::$case(store)),
                )
                .await;
                fixture.teardown().await;
                if let Err(panic) = outcome {
                    ::std::panic::resume_unwind(panic);
                }
            }
        )*
    };
}

/// Reports that a service a test needs is unreachable. The test is skipped
/// with a loud message, unless `PATCHAUDIT_REQUIRE_SERVICES=1` (as in CI),
/// where a missing service is a failure.
pub fn service_unavailable(service: &str, why: &str) {
    if std::env::var("PATCHAUDIT_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{service} is required (PATCHAUDIT_REQUIRE_SERVICES=1) but unreachable: {why}");
    }
    eprintln!("\n!!! SKIPPED: {service} is unreachable ({why}); set PATCHAUDIT_REQUIRE_SERVICES=1 to make this a failure\n");
}

/// Builds a valid event; `t` is seconds after 2024-01-01T00:00:00Z.
pub fn event(system: &str, patch: &str, t: i64, status: Status) -> NewEvent {
    NewEvent {
        event_id: None,
        patch_id: PatchId::parse(patch).expect("valid patch id"),
        system: SystemId::parse(system).expect("valid system id"),
        applied_at: Timestamp::from_micros(1_704_067_200_000_000 + t * 1_000_000),
        status,
        package: None,
        from_version: None,
        to_version: None,
        source: None,
        actor: None,
        detail: None,
        cves: Vec::new(),
        reboot_required: None,
        change_ref: None,
    }
}

fn with_id(mut e: NewEvent, id: &str) -> NewEvent {
    e.event_id = Some(EventId::parse(id).expect("valid event id"));
    e
}

/// An empty ledger has no events and a length of zero.
pub async fn empty_ledger(store: Arc<dyn Store>) {
    assert_eq!(store.len().await.unwrap(), 0);
    assert!(store.is_empty().await.unwrap());
    assert!(store.get(0).await.unwrap().is_none());
    assert!(store.get(u64::MAX).await.unwrap().is_none());
    assert!(store
        .list(&EventFilter::default(), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.systems(None, 10).await.unwrap().is_empty());
    assert!(store.patch("none").await.unwrap().systems.is_empty());
    store.ping().await.unwrap();
    assert!(store.append(Vec::new(), "").await.unwrap().is_empty());
}

/// Seqs start at 0 and are dense; every field comes back exactly as written.
pub async fn dense_seqs_and_exact_round_trip(store: Arc<dyn Store>) {
    let mut full = with_id(event("web-01", "KB5034441", 10, Status::Failure), "full-1");
    full.package = Some("openssl".into());
    full.from_version = Some("3.0.1-1".into());
    full.to_version = Some("3.0.2-0ubuntu1.15".into());
    full.source = Some("apt".into());
    full.actor = Some("unattended-upgrades".into());
    full.detail = Some("E: dpkg was interrupted\n\tline two — ünïcödé 🚀".into());
    full.cves = vec![
        CveId::parse("CVE-2024-0001").unwrap(),
        CveId::parse("CVE-2023-44487").unwrap(),
    ];
    full.reboot_required = Some(true);
    full.change_ref = Some("CHG-1".into());
    full.applied_at = Timestamp::from_micros(1_704_067_200_123_456);
    let mut no_reboot = event("web-02", "KB1", 11, Status::Success);
    no_reboot.reboot_required = Some(false);
    let batch = vec![
        event("web-01", "KB1", 0, Status::Success),
        full.clone(),
        no_reboot.clone(),
    ];

    let appended = store.append(batch.clone(), "").await.unwrap();
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(appended.iter().all(|a| !a.duplicate));
    let more = store
        .append(vec![event("db-01", "KB2", 5, Status::RolledBack)], "")
        .await
        .unwrap();
    assert_eq!(more[0].seq, 3);
    assert_eq!(store.len().await.unwrap(), 4);

    for (i, want) in batch.iter().enumerate() {
        let got = store.get(i as u64).await.unwrap().expect("event exists");
        assert_eq!(got.seq, i as u64);
        assert_eq!(&got.event, want, "event {i} must round-trip exactly");
        assert_eq!(got.recorded_at, appended[i].recorded_at);
    }
    assert!(store.get(4).await.unwrap().is_none());
}

/// Re-sending an event with the same id and content returns the stored one.
pub async fn duplicate_event_id_is_idempotent(store: Arc<dyn Store>) {
    let e = with_id(event("web-01", "KB1", 0, Status::Success), "evt-1");
    let first = store.append(vec![e.clone()], "").await.unwrap();
    store
        .append(vec![event("web-01", "KB2", 1, Status::Success)], "")
        .await
        .unwrap();
    let again = store.append(vec![e.clone()], "").await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].duplicate);
    assert_eq!(again[0].seq, first[0].seq);
    assert_eq!(again[0].recorded_at, first[0].recorded_at);
    // A batch mixing a duplicate and a new event writes only the new one.
    let mixed = store
        .append(
            vec![
                e,
                with_id(event("web-02", "KB1", 0, Status::Success), "evt-2"),
            ],
            "",
        )
        .await
        .unwrap();
    assert!(mixed[0].duplicate && !mixed[1].duplicate);
    assert_eq!(mixed[1].seq, 2);
    assert_eq!(store.len().await.unwrap(), 3);
    let summary = store.systems(None, 10).await.unwrap();
    assert_eq!(summary[0].success, 2, "a duplicate must not count twice");
}

/// The same event twice in one batch is written once.
pub async fn duplicates_inside_one_batch(store: Arc<dyn Store>) {
    let e = with_id(event("web-01", "KB1", 0, Status::Success), "dup");
    let out = store.append(vec![e.clone(), e], "").await.unwrap();
    assert_eq!(out[0].seq, 0);
    assert!(!out[0].duplicate);
    assert_eq!(out[1].seq, 0);
    assert!(out[1].duplicate);
    assert_eq!(store.len().await.unwrap(), 1);
}

/// An id reused with different content rejects the whole batch.
pub async fn conflict_rejects_the_whole_batch(store: Arc<dyn Store>) {
    store
        .append(
            vec![with_id(event("web-01", "KB1", 0, Status::Success), "k")],
            "",
        )
        .await
        .unwrap();
    let batch = vec![
        event("web-02", "KB1", 0, Status::Success),
        with_id(event("web-01", "KB1", 0, Status::Failure), "k"),
        event("web-03", "KB1", 0, Status::Success),
    ];
    match store.append(batch, "").await {
        Err(StoreError::Conflict {
            index,
            event_id,
            existing_seq,
        }) => {
            assert_eq!((index, event_id.as_str(), existing_seq), (1, "k", 0));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        store.len().await.unwrap(),
        1,
        "nothing of the batch may be written"
    );
    assert_eq!(store.systems(None, 10).await.unwrap().len(), 1);
    // Within one batch too: the same id with two contents conflicts.
    let inner = vec![
        with_id(event("web-04", "KB1", 0, Status::Success), "j"),
        with_id(event("web-04", "KB1", 1, Status::Success), "j"),
    ];
    assert!(matches!(
        store.append(inner, "").await,
        Err(StoreError::Conflict { index: 1, .. })
    ));
    assert_eq!(store.len().await.unwrap(), 1);
    // The ledger keeps working and stays dense after a rejected batch.
    let next = store
        .append(vec![event("web-05", "KB1", 0, Status::Success)], "")
        .await
        .unwrap();
    assert_eq!(next[0].seq, 1);
}

/// Many concurrent writers still produce one dense sequence with no duplicates.
pub async fn concurrent_appends_stay_dense(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..10 {
                    let batch = (0..=(i % 3))
                        .map(|j| {
                            with_id(
                                event(&format!("h{t}"), "KB1", i, Status::Success),
                                &format!("t{t}-{i}-{j}"),
                            )
                        })
                        .collect();
                    let out = store.append(batch, "").await.unwrap();
                    seqs.extend(out.iter().map(|a| a.seq));
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let expected: usize = 32 * (0..10).map(|i| (i % 3) as usize + 1).sum::<usize>();
    assert_eq!(all.len(), expected);
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), expected, "no seq may be handed out twice");
    assert_eq!(
        *all.iter().max().unwrap() as usize,
        expected - 1,
        "seqs must be dense"
    );
    assert_eq!(store.len().await.unwrap() as usize, expected);
}

/// The key every conformance fixture signs checkpoints with: generated once
/// per test process.
pub fn test_signer() -> Arc<NoteSigner> {
    static SIGNER: std::sync::OnceLock<Arc<NoteSigner>> = std::sync::OnceLock::new();
    SIGNER
        .get_or_init(|| {
            Arc::new(NoteSigner::generate("patchaudit.test/ledger").expect("valid key name"))
        })
        .clone()
}

/// Recomputes the tree over every event, independently of the store's own
/// tree: from each event's leaf bytes.
async fn recomputed_tree(store: &dyn Store) -> MemoryTree {
    let mut tree = MemoryTree::new();
    let mut filter = EventFilter::default();
    loop {
        let page = store.list(&filter, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        filter = filter.after(last.seq);
        for e in &page {
            assert_eq!(e.seq, tree.size(), "events come back in dense seq order");
            tree.append(leaf_hash(&e.leaf_bytes()));
        }
    }
    tree
}

/// Each commit that records something signs a checkpoint of the whole
/// ledger; its root is the root of the events' leaves; every event has an
/// inclusion proof and every pair of checkpoints a consistency proof.
pub async fn every_commit_is_checkpointed_and_provable(store: Arc<dyn Store>) {
    let verifier = test_signer().verifier();
    assert!(
        store.checkpoint().await.unwrap().is_none(),
        "no checkpoint before the first event"
    );
    let mut sizes = Vec::new();
    for round in 0..6i64 {
        let batch = (0..=round)
            .map(|j| {
                with_id(
                    event(&format!("h{j}"), "KB7", round, Status::Success),
                    &format!("c-{round}-{j}"),
                )
            })
            .collect();
        store.append(batch, "agent-7").await.unwrap();
        let cp = store
            .checkpoint()
            .await
            .unwrap()
            .expect("a checkpoint after a commit");
        assert_eq!(cp.size, store.len().await.unwrap());
        let opened =
            open_checkpoint(&cp.note, &verifier).expect("the note verifies with the store's key");
        assert_eq!((opened.size, opened.root), (cp.size, cp.root));
        let tree = recomputed_tree(&*store).await;
        assert_eq!(
            cp.root,
            tree.root(),
            "the signed root is the root of the events' leaves"
        );
        sizes.push(cp.size);
    }
    // Every field takes part in the leaf, through every read path.
    let mut full = with_id(event("web-full", "KB8", 9, Status::Failure), "c-full");
    full.package = Some("openssl".into());
    full.from_version = Some("3.0.1".into());
    full.to_version = Some("3.0.2".into());
    full.source = Some("apt".into());
    full.actor = Some("root".into());
    full.detail = Some("E: one\ttwo — ü".into());
    full.cves = vec![
        CveId::parse("CVE-2024-0001").unwrap(),
        CveId::parse("CVE-2023-44487").unwrap(),
    ];
    full.reboot_required = Some(false);
    full.change_ref = Some("CHG-9".into());
    store.append(vec![full], "agent-7").await.unwrap();
    sizes.push(store.len().await.unwrap());
    let tree = recomputed_tree(&*store).await;
    let rebuilt = store.leaf_hashes(0, 10_000).await.unwrap();
    assert_eq!(
        rebuilt.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (0..tree.size()).collect::<Vec<_>>()
    );
    assert_eq!(
        rebuilt.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
        tree.leaf_hashes()
    );
    assert_eq!(
        store
            .leaf_hashes(3, 2)
            .await
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );

    // A batch of duplicates records nothing, so it signs nothing new.
    store
        .append(
            vec![with_id(event("h0", "KB7", 0, Status::Success), "c-0-0")],
            "agent-7",
        )
        .await
        .unwrap();
    let all = store.checkpoints(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|c| c.size).collect::<Vec<_>>(), sizes);
    assert_eq!(
        store
            .checkpoints(sizes[2], 2)
            .await
            .unwrap()
            .iter()
            .map(|c| c.size)
            .collect::<Vec<_>>(),
        sizes[2..4]
    );

    let tree = recomputed_tree(&*store).await;
    let latest = all.last().unwrap();
    for seq in 0..latest.size {
        let proof = crate::tree::inclusion_proof(&*store, seq, latest.size)
            .await
            .unwrap();
        assert_eq!(
            proof,
            patchaudit_proofs::inclusion_proof(&tree, seq, latest.size).unwrap()
        );
        verify_inclusion(
            seq,
            latest.size,
            &tree.leaf_hashes()[seq as usize],
            &proof,
            &latest.root,
        )
        .expect("the inclusion proof verifies");
    }
    for old in &all {
        let proof = crate::tree::consistency_proof(&*store, old.size, latest.size)
            .await
            .unwrap();
        verify_consistency(old.size, latest.size, &proof, &old.root, &latest.root)
            .expect("every checkpoint is consistent with the latest");
        assert_eq!(
            crate::tree::root_at(&*store, old.size).await.unwrap(),
            old.root
        );
    }
    // The stored hashes are exactly the tree's, in the dense layout.
    let stored = store.tree_hash_range(0, 10_000).await.unwrap();
    assert_eq!(
        stored.len() as u64,
        patchaudit_proofs::stored_hash_count(latest.size)
    );
    let rebuilt = FetchedHashes::new(stored);
    assert_eq!(
        patchaudit_proofs::root_at_size(&rebuilt, latest.size).unwrap(),
        latest.root
    );
    let some = store.tree_hashes(&[0, 2, 1_000_000]).await.unwrap();
    assert_eq!(some.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![0, 2]);
}

/// Many concurrent writers still produce one tree: the latest checkpoint is
/// consistent with every earlier one and commits to every event.
pub async fn concurrent_commits_sign_one_consistent_tree(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..8 {
                    store
                        .append(vec![event(&format!("h{t}"), "KB9", i, Status::Success)], "")
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let verifier = test_signer().verifier();
    let all = store.checkpoints(0, 1_000).await.unwrap();
    let latest = all.last().unwrap();
    assert_eq!(latest.size, 128);
    assert_eq!(latest.root, recomputed_tree(&*store).await.root());
    for cp in &all {
        open_checkpoint(&cp.note, &verifier).unwrap();
        let proof = crate::tree::consistency_proof(&*store, cp.size, latest.size)
            .await
            .unwrap();
        verify_consistency(cp.size, latest.size, &proof, &cp.root, &latest.root).unwrap();
    }
}

/// Proofs are only served for trees a checkpoint signed, and bad ranges are
/// refused with an error that says why.
pub async fn proofs_refuse_unsigned_sizes(store: Arc<dyn Store>) {
    use crate::tree::{consistency_proof, inclusion_proof, TreeError};
    let err = inclusion_proof(&*store, 0, 1).await.unwrap_err();
    assert!(
        matches!(err, TreeError::BeyondLedger { size: 1, len: 0 }),
        "{err}"
    );
    store
        .append(
            vec![
                event("a", "P", 0, Status::Success),
                event("b", "P", 0, Status::Success),
            ],
            "",
        )
        .await
        .unwrap();
    assert!(matches!(
        inclusion_proof(&*store, 0, 3).await.unwrap_err(),
        TreeError::BeyondLedger { .. }
    ));
    assert!(matches!(
        inclusion_proof(&*store, 2, 2).await.unwrap_err(),
        TreeError::Invalid(_)
    ));
    assert!(matches!(
        consistency_proof(&*store, 0, 2).await.unwrap_err(),
        TreeError::Invalid(_)
    ));
    assert!(matches!(
        consistency_proof(&*store, 2, 1).await.unwrap_err(),
        TreeError::Invalid(_)
    ));
    assert!(matches!(
        consistency_proof(&*store, 1, 5).await.unwrap_err(),
        TreeError::BeyondLedger { .. }
    ));
    assert!(consistency_proof(&*store, 2, 2).await.unwrap().is_empty());
    assert_eq!(inclusion_proof(&*store, 1, 2).await.unwrap().len(), 1);
}

/// Every filter works alone and combined; ranges are half-open.
pub async fn filters_and_half_open_ranges(store: Arc<dyn Store>) {
    let mut batch = Vec::new();
    for i in 0..30i64 {
        let status = match i % 10 {
            0 => Status::Failure,
            5 => Status::RolledBack,
            _ => Status::Success,
        };
        let mut e = event(
            &format!("sys-{}", i % 3),
            &format!("P{}", i % 4),
            i * 60,
            status,
        );
        e.source = Some(if i % 2 == 0 { "apt" } else { "dnf" }.into());
        batch.push(e);
    }
    store.append(batch.clone(), "").await.unwrap();
    let seqs =
        |evs: Vec<patchaudit_domain::RecordedEvent>| evs.iter().map(|e| e.seq).collect::<Vec<_>>();
    let want = |pred: &dyn Fn(usize, &NewEvent) -> bool| {
        batch
            .iter()
            .enumerate()
            .filter(|(i, e)| pred(*i, e))
            .map(|(i, _)| i as u64)
            .collect::<Vec<_>>()
    };
    let q = |f: EventFilter| {
        let store = store.clone();
        async move { seqs(store.list(&f, 1000).await.unwrap()) }
    };

    assert_eq!(q(EventFilter::default()).await, want(&|_, _| true));
    assert_eq!(
        q(EventFilter {
            system: Some("sys-1".into()),
            ..Default::default()
        })
        .await,
        want(&|_, e| e.system.as_str() == "sys-1")
    );
    assert_eq!(
        q(EventFilter {
            patch_id: Some("P2".into()),
            ..Default::default()
        })
        .await,
        want(&|_, e| e.patch_id.as_str() == "P2")
    );
    assert_eq!(
        q(EventFilter {
            status: Some(Status::Failure),
            ..Default::default()
        })
        .await,
        vec![0, 10, 20]
    );
    assert_eq!(
        q(EventFilter {
            source: Some("dnf".into()),
            ..Default::default()
        })
        .await,
        want(&|i, _| i % 2 == 1)
    );
    let t = |i: i64| event("x", "x", i * 60, Status::Success).applied_at;
    assert_eq!(
        q(EventFilter {
            applied_from: Some(t(5)),
            applied_to: Some(t(8)),
            ..Default::default()
        })
        .await,
        vec![5, 6, 7]
    );
    assert_eq!(
        q(EventFilter {
            seq_from: Some(28),
            ..Default::default()
        })
        .await,
        vec![28, 29]
    );
    assert_eq!(
        q(EventFilter {
            seq_to: Some(2),
            ..Default::default()
        })
        .await,
        vec![0, 1]
    );
    assert!(q(EventFilter {
        seq_from: Some(5),
        seq_to: Some(5),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        q(EventFilter {
            system: Some("sys-0".into()),
            status: Some(Status::Success),
            source: Some("apt".into()),
            seq_from: Some(3),
            ..Default::default()
        })
        .await,
        want(&|i, e| e.system.as_str() == "sys-0"
            && e.status == Status::Success
            && i % 2 == 0
            && i >= 3)
    );
    assert!(q(EventFilter {
        system: Some("nope".into()),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        seqs(store.list(&EventFilter::default(), 3).await.unwrap()),
        vec![0, 1, 2]
    );
    assert!(store
        .list(&EventFilter::default(), 0)
        .await
        .unwrap()
        .is_empty());
}

/// Paging with `after(last_seq)` visits every matching event exactly once.
pub async fn cursor_pages_cover_everything_once(store: Arc<dyn Store>) {
    let batch: Vec<_> = (0..257)
        .map(|i| event(if i % 2 == 0 { "a" } else { "b" }, "P", i, Status::Success))
        .collect();
    store.append(batch, "").await.unwrap();
    let filter = EventFilter {
        system: Some("a".into()),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut f = filter.clone();
    loop {
        let page = store.list(&f, 10).await.unwrap();
        let Some(last) = page.last() else { break };
        f = filter.after(last.seq);
        seen.extend(page.iter().map(|e| e.seq));
    }
    let want: Vec<u64> = (0..257).filter(|i| i % 2 == 0).collect();
    assert_eq!(seen, want);
}

/// System summaries count by status and page by system id.
pub async fn system_summaries(store: Arc<dyn Store>) {
    store
        .append(
            vec![
                event("b", "P1", 100, Status::Success),
                event("a", "P1", 50, Status::Failure),
                event("b", "P2", 10, Status::RolledBack),
                event("c", "P1", 1, Status::Success),
            ],
            "",
        )
        .await
        .unwrap();
    store
        .append(vec![event("a", "P1", 60, Status::Success)], "")
        .await
        .unwrap();
    let all = store.systems(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.system.as_str()).collect::<Vec<_>>(),
        vec!["a", "b", "c"]
    );
    let a = &all[0];
    assert_eq!(
        (a.success, a.failure, a.rolled_back, a.last_seq),
        (1, 1, 0, 4)
    );
    assert_eq!(
        a.last_applied_at,
        event("a", "P", 60, Status::Success).applied_at
    );
    let b = &all[1];
    assert_eq!(
        (b.success, b.failure, b.rolled_back, b.last_seq),
        (1, 0, 1, 2)
    );
    assert_eq!(
        b.last_applied_at,
        event("b", "P", 100, Status::Success).applied_at,
        "latest applied_at, not latest arrival"
    );
    let page = store.systems(Some("a"), 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].system, "b");
}

/// A pair's state is its latest event by applied_at, whatever the arrival order.
pub async fn patch_state_follows_applied_at_not_arrival(store: Arc<dyn Store>) {
    store
        .append(
            vec![
                event("s1", "KB9", 100, Status::Success),
                event("s2", "KB9", 100, Status::Failure),
                event("s3", "KB9", 100, Status::Success),
            ],
            "",
        )
        .await
        .unwrap();
    store
        .append(
            vec![
                // Arrives later but happened earlier: must not override.
                event("s1", "KB9", 50, Status::Failure),
                // Happened later: overrides.
                event("s3", "KB9", 200, Status::RolledBack),
                event("s2", "KB8", 300, Status::Success),
            ],
            "",
        )
        .await
        .unwrap();
    let p = store.patch("KB9").await.unwrap();
    let got: Vec<_> = p
        .systems
        .iter()
        .map(|s| (s.system.as_str(), s.status, s.attempts, s.seq))
        .collect();
    assert_eq!(
        got,
        vec![
            ("s1", Status::Success, 2, 0),
            ("s2", Status::Failure, 1, 1),
            ("s3", Status::RolledBack, 2, 4)
        ]
    );
    // Same applied_at: the later seq wins.
    store
        .append(vec![event("s2", "KB9", 100, Status::Success)], "")
        .await
        .unwrap();
    let p = store.patch("KB9").await.unwrap();
    assert_eq!(p.systems[1].status, Status::Success);
    assert_eq!(p.systems[1].attempts, 2);
}

/// recorded_at is non-decreasing along seq.
pub async fn recorded_at_never_decreases(store: Arc<dyn Store>) {
    for i in 0..20 {
        store
            .append(vec![event("s", "P", i, Status::Success)], "")
            .await
            .unwrap();
    }
    let evs = store.list(&EventFilter::default(), 100).await.unwrap();
    assert!(evs.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));
}

/// The principal that recorded an event is kept with it.
pub async fn recorded_by_is_kept(store: Arc<dyn Store>) {
    store
        .append(vec![event("s", "P", 0, Status::Success)], "agent:web-01")
        .await
        .unwrap();
    store
        .append(vec![event("s", "P", 1, Status::Success)], "")
        .await
        .unwrap();
    assert_eq!(
        store.get(0).await.unwrap().unwrap().recorded_by,
        "agent:web-01"
    );
    assert_eq!(store.get(1).await.unwrap().unwrap().recorded_by, "");
}

/// A token is read back as created, revoked once with who and when, and
/// both revisions stay in the append-only history.
pub async fn tokens_are_created_revoked_once_and_never_edited(store: Arc<dyn Store>) {
    use crate::tokens::{self, Token};
    use patchaudit_domain::access::{Scopes, SystemPattern, TokenName};
    let t = Token {
        id: "00112233445566aa".into(),
        name: TokenName::parse("agent-web-01", "name").unwrap(),
        scopes: Scopes::parse(&["ingest"], "scopes").unwrap(),
        systems: vec![SystemPattern::parse("web-*", "systems").unwrap()],
        tags: Vec::new(),
        secret_sha256: "cd".repeat(32),
        created_at: Timestamp::from_micros(1_700_000_000_000_000),
        created_by: "local:root".into(),
        revoked: None,
    };
    assert_eq!(tokens::get(&*store, &t.id).await.unwrap(), None);
    let created = tokens::create(&*store, &t).await.unwrap();
    assert_eq!(created, t);
    assert_eq!(tokens::get(&*store, &t.id).await.unwrap(), Some(t.clone()));
    assert!(
        tokens::create(&*store, &t).await.is_err(),
        "an id is never reused"
    );
    let revoked = tokens::revoke(&*store, &t.id, "admin#1").await.unwrap();
    let (at, by) = revoked.revoked.clone().expect("revoked");
    assert_eq!(by, "admin#1");
    assert_eq!(
        tokens::get(&*store, &t.id).await.unwrap(),
        Some(revoked.clone())
    );
    // Revoking again writes nothing and keeps the first revocation.
    let again = tokens::revoke(&*store, &t.id, "admin#2").await.unwrap();
    assert_eq!(again.revoked, Some((at, "admin#1".into())));
    let history = store
        .record_history(crate::compliance::RecordKind::Token, &t.id)
        .await
        .unwrap();
    let who: Vec<&str> = history.iter().map(|r| r.changed_by.as_str()).collect();
    assert_eq!(who, ["local:root", "admin#1"]);
    assert!(matches!(
        tokens::revoke(&*store, "ffffffffffffffff", "x").await,
        Err(StoreError::NotFound(_))
    ));
    let all = tokens::list(&*store).await.unwrap();
    assert_eq!(all, vec![revoked]);
}

/// Every record revision of every kind appears in the trail once, in rev
/// order, however it is paged; writes that change nothing add nothing.
pub async fn the_audit_trail_lists_every_revision_once_in_order(store: Arc<dyn Store>) {
    use crate::compliance::{RecordChange, RecordKind};
    assert!(store.record_changes(0, 10).await.unwrap().is_empty());
    let put = |kind: RecordKind, id: &str, body: Option<&str>, by: &str| {
        let store = store.clone();
        let (id, body, by) = (id.to_owned(), body.map(str::to_owned), by.to_owned());
        async move {
            store
                .put_records(kind, vec![RecordChange { id, body }], &by)
                .await
                .unwrap()
        }
    };
    put(RecordKind::Catalog, "KB1", Some("{\"a\":1}"), "alice").await;
    put(RecordKind::System, "web-01", Some("[]"), "bob").await;
    put(RecordKind::Catalog, "KB1", Some("{\"a\":1}"), "carol").await; // unchanged
    put(RecordKind::Token, "00000000000000aa", Some("{}"), "root").await;
    put(RecordKind::Catalog, "KB1", None, "dave").await;
    let all = store.record_changes(0, 100).await.unwrap();
    let seen: Vec<(RecordKind, &str, &str, bool)> = all
        .iter()
        .map(|(k, r)| (*k, r.id.as_str(), r.changed_by.as_str(), r.body.is_some()))
        .collect();
    assert_eq!(
        seen,
        [
            (RecordKind::Catalog, "KB1", "alice", true),
            (RecordKind::System, "web-01", "bob", true),
            (RecordKind::Token, "00000000000000aa", "root", true),
            (RecordKind::Catalog, "KB1", "dave", false),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].1.rev < w[1].1.rev));
    // Paged two at a time from any point, the same revisions come back.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.record_changes(after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.1.rev;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(store
        .record_changes(all[3].1.rev, 10)
        .await
        .unwrap()
        .is_empty());
}

/// The PostgreSQL server tests use: `PATCHAUDIT_TEST_PG_URL`, or the local
/// one with trust authentication.
pub fn pg_test_url() -> String {
    std::env::var("PATCHAUDIT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Whether the test PostgreSQL accepts TCP connections; when it does not,
/// reports it through [`service_unavailable`] and returns false.
pub fn pg_reachable() -> bool {
    let url = pg_test_url();
    let addr = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("127.0.0.1:5432")
        .to_owned();
    let addr = if addr.contains(':') {
        addr
    } else {
        format!("{addr}:5432")
    };
    let ok = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, std::time::Duration::from_secs(2)).is_ok()
        });
    if !ok {
        service_unavailable("PostgreSQL", &format!("nothing answers at {addr}"));
    }
    ok
}

/// A schema name no other test uses.
pub fn fresh_schema_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "pa_test_{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Drops a test schema and everything in it.
pub async fn drop_schema(schema: &str) {
    match tokio_postgres::connect(&pg_test_url(), tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            if let Err(e) = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
            {
                eprintln!("could not drop test schema {schema}: {e}");
            }
        }
        Err(e) => eprintln!("could not drop test schema {schema}: {e}"),
    }
}

/// The PostgreSQL schema version this build writes.
pub fn pg_schema_version() -> i32 {
    crate::postgres::current_version()
}

/// Creates an empty test schema, for tests that point a URL's
/// `search_path` at it.
pub async fn create_schema(schema: &str) {
    let (client, conn) = tokio_postgres::connect(&pg_test_url(), tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL accepts connections");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("creating a test schema");
}

/// A test schema that is dropped when the guard goes out of scope, even when
/// the test panics, so no run leaves schemas behind.
pub struct TestSchema {
    name: String,
}

impl TestSchema {
    /// A fresh schema name, not yet created (a `PgStore` with this schema
    /// creates it when it migrates).
    pub fn new() -> TestSchema {
        TestSchema {
            name: fresh_schema_name(),
        }
    }

    /// A fresh schema, created now.
    pub async fn create() -> TestSchema {
        let s = TestSchema::new();
        create_schema(&s.name).await;
        s
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Default for TestSchema {
    fn default() -> Self {
        TestSchema::new()
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime: drop the schema on
        // a thread of its own with a runtime of its own.
        let name = std::mem::take(&mut self.name);
        let done = std::thread::spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(drop_schema(&name)),
                Err(e) => eprintln!("could not drop test schema {name}: {e}"),
            }
        })
        .join();
        if done.is_err() {
            eprintln!("dropping a test schema panicked");
        }
    }
}

fn catalog_entry(id: &str, severity: &str, title: &str) -> patchaudit_compliance::CatalogEntry {
    patchaudit_compliance::CatalogEntry::parse(patchaudit_compliance::RawCatalogEntry {
        id: Some(id.into()),
        title: Some(title.into()),
        severity: Some(severity.into()),
        released_at: Some("2024-01-01T00:00:00Z".into()),
        ..Default::default()
    })
    .expect("valid catalog entry")
}

/// Record revisions are kept, a write of the same body adds none, and the
/// state at an earlier instant is the latest revision changed by then.
pub async fn records_keep_history_and_answer_as_of(store: Arc<dyn Store>) {
    use crate::compliance::{self as c, RecordChange, RecordKind};
    let s = &*store;
    assert!(c::catalog(s, None).await.unwrap().is_empty());
    let v1 = c::put_catalog(
        s,
        &[
            catalog_entry("KB1", "high", "first"),
            catalog_entry("KB2", "low", "other"),
        ],
        "alice",
    )
    .await
    .unwrap();
    assert!(v1.iter().all(|r| r.changed && r.changed_by == "alice"));
    let again = c::put_catalog(s, &[catalog_entry("KB1", "high", "first")], "bob")
        .await
        .unwrap();
    assert!(!again[0].changed, "an identical write changes nothing");
    assert_eq!(
        (again[0].rev, again[0].changed_by.as_str()),
        (v1[0].rev, "alice")
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let between = Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let v2 = c::put_catalog(s, &[catalog_entry("KB1", "critical", "second")], "bob")
        .await
        .unwrap();
    assert!(v2[0].changed && v2[0].rev > v1[1].rev);

    let now: Vec<_> = c::catalog(s, None).await.unwrap();
    assert_eq!(now.len(), 2);
    assert_eq!(
        (now[0].id.as_str(), now[0].title.as_str()),
        ("KB1", "second")
    );
    let then = c::catalog(s, Some(between)).await.unwrap();
    assert_eq!(
        then[0].title, "first",
        "as of an earlier instant, the earlier revision"
    );
    let before = c::catalog(s, Some(Timestamp::from_micros(0)))
        .await
        .unwrap();
    assert!(before.is_empty());

    let history = s.record_history(RecordKind::Catalog, "KB1").await.unwrap();
    let who: Vec<_> = history.iter().map(|r| r.changed_by.as_str()).collect();
    assert_eq!(who, ["alice", "bob"]);

    // A deletion is a revision without a body; the history keeps the rest.
    let del = s
        .put_records(
            RecordKind::Catalog,
            vec![RecordChange {
                id: "KB2".into(),
                body: None,
            }],
            "carol",
        )
        .await
        .unwrap();
    assert!(del[0].changed && del[0].body.is_none());
    assert_eq!(c::catalog(s, None).await.unwrap().len(), 1);
    assert_eq!(
        s.record_history(RecordKind::Catalog, "KB2")
            .await
            .unwrap()
            .len(),
        2
    );
    let missing = s
        .put_records(
            RecordKind::Catalog,
            vec![RecordChange {
                id: "nope".into(),
                body: None,
            }],
            "carol",
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // Kinds are separate namespaces; the policy defaults until set.
    assert_eq!(
        c::policy(s, None).await.unwrap(),
        patchaudit_compliance::SlaPolicy::default()
    );
    let strict = patchaudit_compliance::SlaPolicy {
        stale_after_days: 2,
        ..Default::default()
    };
    c::put_policy(s, &strict, "alice").await.unwrap();
    assert_eq!(c::policy(s, None).await.unwrap(), strict);
    assert!(s
        .records(RecordKind::System, None)
        .await
        .unwrap()
        .is_empty());
}

/// A tiny deterministic generator, so the random ledgers are reproducible.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The facts kept up to date on ingest equal a fold of all events from
/// scratch, on random ledgers whose events arrive out of order, in batches
/// and concurrently.
pub async fn pair_facts_equal_a_full_fold_on_random_ledgers(store: Arc<dyn Store>) {
    for seed in [1u64, 7, 42] {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut appends = Vec::new();
        for _ in 0..12 {
            let n = 1 + rng.below(25);
            let batch: Vec<NewEvent> = (0..n)
                .map(|_| {
                    let status = Status::ALL[rng.below(3) as usize];
                    let mut e = event(
                        &format!("sys-{seed}-{}", rng.below(4)),
                        &format!("KB{}", rng.below(5)),
                        rng.below(50) as i64 * 3600,
                        status,
                    );
                    e.reboot_required = [None, Some(true), Some(false)][rng.below(3) as usize];
                    e
                })
                .collect();
            appends.push(batch);
        }
        // Half the appends race each other, so group commits mix them.
        let (first, second) = appends.split_at(6);
        for b in first {
            store.append(b.clone(), "").await.unwrap();
        }
        let racing: Vec<_> = second
            .iter()
            .map(|b| {
                let store = store.clone();
                let b = b.clone();
                tokio::spawn(async move { store.append(b, "").await.unwrap() })
            })
            .collect();
        for r in racing {
            r.await.unwrap();
        }
    }
    let kept = store.pair_facts(None).await.unwrap();
    let far = Timestamp::from_micros(i64::MAX / 4);
    let folded = store.pair_facts(Some(far)).await.unwrap();
    assert_eq!(kept.checkpoint, folded.checkpoint);
    assert_eq!(
        kept.checkpoint.as_ref().map(|c| c.size),
        Some(store.len().await.unwrap())
    );
    let pairs: usize = kept.facts.values().map(|m| m.len()).sum();
    assert!(pairs > 40, "the ledgers touch many pairs ({pairs})");
    assert_eq!(kept.facts, folded.facts);

    // And both equal a fold of the events as listed back.
    let all = store.list(&EventFilter::default(), 10_000).await.unwrap();
    let rows = all.iter().map(|e| {
        (
            e.event.patch_id.as_str().to_owned(),
            e.event.system.as_str().to_owned(),
            patchaudit_compliance::EventFact {
                applied_at: e.event.applied_at,
                seq: e.seq,
                status: e.event.status,
                reboot_required: e.event.reboot_required == Some(true),
            },
        )
    });
    assert_eq!(crate::derived::fold_all(rows), kept.facts);
    let mut a = kept.systems.clone();
    let mut b = folded.systems.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "first and last seen agree");
}

/// A report as of an instant is computed from the checkpoint recorded by
/// then and the records changed by then, so later events and edits leave
/// it unchanged; and a report "now" equals one as of the same instant.
pub async fn reports_as_of_an_instant_do_not_change(store: Arc<dyn Store>) {
    use crate::compliance as c;
    use patchaudit_compliance::{Report, ReportFilter};
    let s = &*store;
    c::put_catalog(s, &[catalog_entry("KB1", "critical", "t")], "alice")
        .await
        .unwrap();
    let now_secs = (Timestamp::now().as_micros() - 1_704_067_200_000_000) / 1_000_000;
    store
        .append(
            vec![
                event("web-1", "KB1", now_secs - 60, Status::Success),
                event("web-2", "KB1", now_secs - 60, Status::Failure),
            ],
            "",
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let t1 = Timestamp::now();
    let live = c::report_input(s, None).await.unwrap();
    let first = Report::compute(
        &c::report_input(s, Some(t1)).await.unwrap(),
        &ReportFilter::default(),
    );
    assert_eq!(first.checkpoint.as_ref().map(|c| c.size), Some(2));
    assert_eq!(first.summary.counts.required(), 2);
    assert_eq!(first.failures.len(), 1);
    // The live input has the same facts and checkpoint as the input as of
    // an instant just after it.
    let replay = c::report_input(s, Some(Timestamp::now())).await.unwrap();
    assert_eq!(live.facts, replay.facts);
    assert_eq!(live.checkpoint, replay.checkpoint);

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .append(
            vec![
                event("web-2", "KB1", now_secs - 30, Status::Success),
                event("web-3", "KB1", now_secs - 30, Status::Success),
            ],
            "",
        )
        .await
        .unwrap();
    c::put_catalog(s, &[catalog_entry("KB1", "low", "changed")], "bob")
        .await
        .unwrap();
    c::put_policy(
        s,
        &patchaudit_compliance::SlaPolicy {
            stale_after_days: 1,
            ..Default::default()
        },
        "bob",
    )
    .await
    .unwrap();
    let again = Report::compute(
        &c::report_input(s, Some(t1)).await.unwrap(),
        &ReportFilter::default(),
    );
    assert_eq!(
        again, first,
        "later events and edits do not change a report as of t1"
    );
    let later = Report::compute(
        &c::report_input(s, None).await.unwrap(),
        &ReportFilter::default(),
    );
    assert_eq!(later.checkpoint.as_ref().map(|c| c.size), Some(4));
    // Failure details are read in one batch; events without one are left out.
    let mut failed = event("web-9", "KB1", now_secs - 10, Status::Failure);
    failed.detail = Some("E: dpkg was interrupted".into());
    let a = store.append(vec![failed], "").await.unwrap();
    let details = store.details(&[a[0].seq, 0, 1, 999_999]).await.unwrap();
    assert_eq!(details.len(), 1, "{details:?}");
    assert_eq!(details[&a[0].seq], "E: dpkg was interrupted");
    assert_eq!(later.summary.counts.required(), 3);
    assert!(later.failures.is_empty());
}

/// A `FactsCache` that reads only the pairs changed since its last report
/// holds exactly what a full read holds, after every append, late events
/// from a pair's past included.
pub async fn cached_facts_follow_every_append(store: Arc<dyn Store>) {
    use crate::compliance::FactsCache;
    let cache = FactsCache::default();
    let mut rng = XorShift(0x5eed_cafe);
    let (empty, none) = cached_read(&cache, &*store).await;
    assert!(empty.is_empty() && none.is_none());
    for round in 0..8 {
        let n = 1 + rng.below(30);
        let batch: Vec<NewEvent> = (0..n)
            .map(|_| {
                event(
                    &format!("sys-{}", rng.below(6)),
                    &format!("KB{}", rng.below(4)),
                    // Later rounds reach back before earlier events, so pairs refold.
                    rng.below(100) as i64 * 60,
                    Status::ALL[rng.below(3) as usize],
                )
            })
            .collect();
        store.append(batch, "").await.unwrap();
        let (cached, checkpoint) = cached_read(&cache, &*store).await;
        let full = store.pair_facts(None).await.unwrap();
        assert_eq!(
            checkpoint.map(|c| c.size),
            full.checkpoint.as_ref().map(|c| c.size),
            "round {round}"
        );
        assert_eq!(
            cached, full.facts,
            "round {round}: the cache drifted from a full read"
        );
    }
    // A read with nothing new changes nothing.
    let (again, _) = cached_read(&cache, &*store).await;
    assert_eq!(again, store.pair_facts(None).await.unwrap().facts);
}

type CachedFacts = (
    std::collections::HashMap<
        String,
        std::collections::HashMap<String, patchaudit_compliance::PairFacts>,
    >,
    Option<patchaudit_compliance::report::CheckpointRef>,
);

async fn cached_read(cache: &crate::compliance::FactsCache, store: &dyn Store) -> CachedFacts {
    cache
        .compute(store, |input| {
            (input.facts.clone(), input.checkpoint.clone())
        })
        .await
        .unwrap()
}

/// A report "now" names its instant and its checkpoint; the two together
/// derive it again exactly, even while appends keep arriving.
pub async fn a_report_is_derived_again_from_its_instant_and_checkpoint(store: Arc<dyn Store>) {
    use crate::compliance::{self as c, FactsCache};
    use patchaudit_compliance::{Report, ReportFilter};
    c::put_catalog(&*store, &[catalog_entry("KB1", "critical", "t")], "alice")
        .await
        .unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                let e = event(
                    &format!("s{}", i % 7),
                    "KB1",
                    i * 60,
                    Status::ALL[(i % 3) as usize],
                );
                store.append(vec![e], "").await.unwrap();
            }
        })
    };
    let cache = FactsCache::default();
    let mut checked = 0;
    while !writer.is_finished() || checked == 0 {
        let live = cache
            .compute(&*store, |input| {
                Report::compute(input, &ReportFilter::default())
            })
            .await
            .unwrap();
        let Some(size) = live.checkpoint.as_ref().map(|c| c.size) else {
            continue;
        };
        let again = Report::compute(
            &c::report_input_at(&*store, live.at, size).await.unwrap(),
            &ReportFilter::default(),
        );
        assert_eq!(
            Report {
                as_of: false,
                ..again
            },
            live,
            "derived again from its instant and checkpoint of size {size}"
        );
        checked += 1;
    }
    writer.await.unwrap();
    assert!(checked > 0);
    let missing = c::report_input_at(&*store, Timestamp::now(), 1_000_000).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "a size no commit ended at"
    );
}

/// A stream cursor starts absent, moves forward, and ignores a move back,
/// so a slow writer cannot undo a faster one's progress.
pub async fn stream_cursors_only_move_forward(store: Arc<dyn Store>) {
    assert!(store.cursors().await.unwrap().is_empty());
    store.save_cursor("nats/events", 10).await.unwrap();
    store.save_cursor("a/events", 3).await.unwrap();
    store.save_cursor("nats/events", 4).await.unwrap();
    let cursors = store.cursors().await.unwrap();
    let got: Vec<(&str, u64)> = cursors
        .iter()
        .map(|c| (c.name.as_str(), c.position))
        .collect();
    assert_eq!(got, [("a/events", 3), ("nats/events", 10)]);
    store.save_cursor("nats/events", 25).await.unwrap();
    let after = store.cursors().await.unwrap();
    assert_eq!(after[1].position, 25);
    assert!(after[1].updated_at >= cursors[1].updated_at);
}

/// Dead letters keep what was sent and why it failed, list per sink in
/// order, and go away only when removed.
pub async fn dead_letters_are_kept_until_removed(store: Arc<dyn Store>) {
    use crate::stream::NewDeadLetter;
    let letter = |sink: &str, msg: &str| NewDeadLetter {
        sink: sink.into(),
        message_id: msg.into(),
        payload: format!("{{\"m\":\"{msg}\"}}"),
        attempts: 8,
        error: "HTTP 500 from https://hooks.example/x".into(),
    };
    let a = store
        .add_dead_letter(letter("webhook:1", "e:1"))
        .await
        .unwrap();
    let b = store
        .add_dead_letter(letter("webhook:2", "e:2"))
        .await
        .unwrap();
    let c = store
        .add_dead_letter(letter("webhook:1", "e:3"))
        .await
        .unwrap();
    assert!(a < b && b < c);
    let all = store.dead_letters(None).await.unwrap();
    assert_eq!(all.iter().map(|l| l.id).collect::<Vec<_>>(), [a, b, c]);
    let one = store.dead_letters(Some("webhook:1")).await.unwrap();
    assert_eq!(one.len(), 2);
    assert_eq!(one[1].message_id, "e:3");
    assert_eq!(one[1].payload, "{\"m\":\"e:3\"}");
    assert_eq!(one[1].attempts, 8);
    assert!(one[1].error.contains("HTTP 500"));
    assert!(store.remove_dead_letter(a).await.unwrap());
    assert!(!store.remove_dead_letter(a).await.unwrap());
    let left = store.dead_letters(Some("webhook:1")).await.unwrap();
    assert_eq!(left.iter().map(|l| l.id).collect::<Vec<_>>(), [c]);
}

/// An alert key is raised once; alerts list by increasing id from any
/// point, and the database refuses to edit or delete them.
pub async fn alerts_are_raised_once_per_key_and_never_edited(store: Arc<dyn Store>) {
    let first = store
        .raise_alert("bad_patch:KB1", "bad_patch", "{\"n\":3}")
        .await
        .unwrap()
        .expect("a new key is raised");
    assert_eq!(first.rule, "bad_patch");
    assert!(store
        .raise_alert("bad_patch:KB1", "bad_patch", "{\"n\":4}")
        .await
        .unwrap()
        .is_none());
    let second = store
        .raise_alert("failure:7", "severe_failure", "{}")
        .await
        .unwrap()
        .unwrap();
    assert!(second.id > first.id);
    let all = store.alerts(0, 10).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], first);
    assert_eq!(all[0].body, "{\"n\":3}", "the first raise is kept");
    assert_eq!(
        store.alerts(first.id, 10).await.unwrap(),
        std::slice::from_ref(&second)
    );
    assert_eq!(store.alerts(0, 1).await.unwrap().len(), 1);
    assert!(store.alerts(second.id, 10).await.unwrap().is_empty());
}

/// An inventory is the system's latest package list: re-sending it writes
/// nothing, a changed list is a new revision, a report reads the list as
/// it stood at its instant, and a system known only by its inventory
/// appears in reports.
pub async fn inventories_keep_the_latest_snapshot_and_their_history(store: Arc<dyn Store>) {
    use crate::compliance as c;
    use patchaudit_compliance::{Inventory, RawInventory, RawPackage, Report, ReportFilter};
    let s = &*store;
    let inv = |pkgs: &[(&str, &str)]| {
        Inventory::parse(
            RawInventory {
                format: Some("deb".into()),
                packages: pkgs
                    .iter()
                    .map(|(n, v)| RawPackage {
                        name: Some((*n).into()),
                        version: Some((*v).into()),
                        arch: Some("amd64".into()),
                    })
                    .collect(),
            },
            Timestamp::now(),
        )
        .unwrap()
    };
    let web1 = SystemId::parse("web-1").unwrap();
    assert!(c::inventory_of(s, "web-1").await.unwrap().is_none());
    let first = inv(&[("bash", "5.2-1"), ("openssl", "3.0.11-1")]);
    let r1 = c::put_inventory(s, &web1, &first, "collector")
        .await
        .unwrap();
    assert!(r1.changed);
    let again = c::put_inventory(
        s,
        &web1,
        &inv(&[("openssl", "3.0.11-1"), ("bash", "5.2-1")]),
        "collector",
    )
    .await
    .unwrap();
    assert!(
        !again.changed,
        "the same list, in another order, writes nothing"
    );
    assert_eq!(again.rev, r1.rev);
    let (got, rec) = c::inventory_of(s, "web-1").await.unwrap().unwrap();
    assert_eq!(got.packages, first.packages);
    assert_eq!(got.recorded_at, rec.changed_at);
    assert_eq!(rec.changed_by, "collector");

    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let t1 = Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = inv(&[("bash", "5.2-1"), ("openssl", "3.0.13-1")]);
    assert!(
        c::put_inventory(s, &web1, &second, "collector")
            .await
            .unwrap()
            .changed
    );
    let history = s
        .record_history(crate::compliance::RecordKind::Inventory, "web-1")
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        c::inventory_of(s, "web-1")
            .await
            .unwrap()
            .unwrap()
            .0
            .packages,
        second.packages
    );
    let then = c::inventories(s, Some(t1)).await.unwrap();
    assert_eq!(then["web-1"].packages, first.packages);

    // web-1 has no events: it is in the report only through its inventory,
    // never heard from by the ledger, and every package is unaccounted.
    let report = Report::compute(
        &c::report_input(s, None).await.unwrap(),
        &ReportFilter::default(),
    );
    assert_eq!(report.summary.systems_with_inventory, 1);
    let row = report.systems.iter().find(|r| r.system == "web-1").unwrap();
    assert_eq!(row.unaccounted, Some(2));
    assert!(row.stale);
    // An install the ledger logged explains its version.
    store
        .append(
            vec![event("web-1", "openssl@3.0.13-1", 100, Status::Success)],
            "",
        )
        .await
        .unwrap();
    let report = Report::compute(
        &c::report_input(s, None).await.unwrap(),
        &ReportFilter::default(),
    );
    let row = report.systems.iter().find(|r| r.system == "web-1").unwrap();
    assert_eq!(row.unaccounted, Some(1));
    assert_eq!(report.unaccounted[0].package, "bash");
}
