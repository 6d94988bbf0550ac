//! `patchaudit verify` against a ledger tampered with directly in the
//! database, the way an attacker with access to the database file or server
//! would: the append-only triggers are dropped (SQLite) or bypassed
//! (`session_replication_role = replica` on PostgreSQL), then rows are
//! edited, deleted, swapped, inserted or truncated with plain SQL.
//!
//! Every kind of tampering runs against both backends. Each ledger is built
//! by the real binary (several imports and a `log`, so there are several
//! checkpoints), and `verify --json` must exit 7 and name the first seq that
//! no longer checks out.

mod common;

use common::{run, stderr, stdout};
use patchaudit_domain::RecordedEvent;
use patchaudit_proofs::{leaf_hash, stored_hash_count, stored_hash_index, Hash};
use patchaudit_store::conformance::{pg_reachable, pg_test_url, service_unavailable, TestSchema};
use patchaudit_store::{PgOptions, PgStore, SqliteOptions, SqliteStore, Store};
use serde_json::Value;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Events in every test ledger.
const N: u64 = 50;
/// A seq in the middle of the last (and largest) commit, 19..=49.
const K: u64 = 23;
/// Another seq in that commit, to swap with `K`.
const M: u64 = 37;

/// The event columns other than `seq`, identical on both backends.
const CONTENT_COLUMNS: &[&str] = &[
    "event_id",
    "patch_id",
    "system",
    "applied_at",
    "status",
    "package",
    "from_version",
    "to_version",
    "source",
    "actor",
    "detail",
    "cves",
    "reboot_required",
    "change_ref",
    "recorded_at",
    "recorded_by",
    "content_hash",
];

/// The triggers that keep a SQLite ledger append-only; an attacker with the
/// file simply drops them.
const SQLITE_TRIGGERS: &[&str] = &[
    "events_no_update",
    "events_no_delete",
    "tree_hashes_no_update",
    "tree_hashes_no_delete",
    "checkpoints_no_update",
    "checkpoints_no_delete",
];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A varied event: with or without an event_id, CVEs, versions, a reboot
/// flag, a change ticket, and all three statuses.
fn event_json(i: u64, with_id: bool) -> Value {
    let patches = [
        "KB5034441",
        "KB5034763",
        "RHSA-2024:1234",
        "USN-6543-1",
        "DSA-5600-1",
    ];
    let status = if i % 7 == 3 {
        "failure"
    } else if i % 11 == 5 {
        "rolled_back"
    } else {
        "success"
    };
    let mut e = serde_json::json!({
        "patch_id": patches[(i % 5) as usize],
        "system": format!("{}-{:02}", ["web", "db", "cache", "edge"][(i % 4) as usize], i % 13),
        "applied_at": format!("2024-06-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, (i * 7) % 60),
        "status": status,
    });
    if with_id {
        e["event_id"] = format!("evt-{i:04}").into();
    }
    if !i.is_multiple_of(3) {
        e["package"] = ["openssl", "curl", "linux-image-amd64", "glibc"][(i % 4) as usize].into();
        e["from_version"] = format!("1.{i}.0").into();
        e["to_version"] = format!("1.{i}.1").into();
    }
    if i.is_multiple_of(2) {
        e["source"] = ["wsus", "ansible", "unattended-upgrades"][(i % 3) as usize].into();
    }
    if i % 5 == 1 {
        e["actor"] = format!("ops-{}", i % 3).into();
    }
    if status == "failure" {
        e["detail"] = format!("exit status {}: dpkg was interrupted", i % 4 + 1).into();
    }
    let cves: Vec<String> = (0..i % 4)
        .map(|c| format!("CVE-2024-{}", 1000 + i * 10 + c))
        .collect();
    e["cves"] = cves.into();
    match i % 3 {
        0 => e["reboot_required"] = true.into(),
        1 => e["reboot_required"] = false.into(),
        _ => {}
    }
    if i % 6 == 4 {
        e["change_ref"] = format!("CHG{:06}", 4000 + i).into();
    }
    e
}

fn write_ndjson(path: &Path, events: impl Iterator<Item = Value>) {
    let text: String = events.map(|e| format!("{e}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// The database a test ledger lives in.
enum Db {
    Sqlite(PathBuf),
    Postgres {
        /// Dropped (with everything in it) when the ledger is.
        schema: TestSchema,
        url: String,
    },
}

/// A ledger of [`N`] events written by the real binary, and the means to
/// tamper with it.
struct Ledger {
    db: Db,
    dir: tempfile::TempDir,
}

impl Ledger {
    fn sqlite() -> Ledger {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        Ledger::build(dir, Db::Sqlite(path))
    }

    /// A ledger in a schema of its own on the test PostgreSQL, or None
    /// (after a loud skip, or a panic under PATCHAUDIT_REQUIRE_SERVICES=1)
    /// when PostgreSQL or psql is not there.
    fn postgres() -> Option<Ledger> {
        if !pg_reachable() {
            return None;
        }
        if let Err(e) = Command::new("psql").arg("--version").output() {
            service_unavailable("psql", &format!("cannot run psql: {e}"));
            return None;
        }
        let schema = rt().block_on(TestSchema::create());
        let base = pg_test_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        // As crates/cli/tests/postgres.rs does: the schema is chosen with
        // the connection's search_path.
        let url = format!("{base}{sep}options=-c%20search_path%3D{}", schema.name());
        let dir = tempfile::tempdir().unwrap();
        Some(Ledger::build(dir, Db::Postgres { schema, url }))
    }

    fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres { .. })
    }

    fn url(&self) -> String {
        match &self.db {
            Db::Sqlite(p) => format!("sqlite://{}", p.display()),
            Db::Postgres { url, .. } => url.clone(),
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the binary on this ledger with its signing key.
    fn run(&self, args: &[&str]) -> Output {
        let url = self.url();
        let key = self.d().join("k.key");
        let key = key.to_str().unwrap();
        run(
            self.d(),
            &[&["--database-url", &url, "--signing-key", key][..], args].concat(),
        )
    }

    /// Writes the events in five commits: three imports of 6, one `log`,
    /// then one import of 31 (some without event_id), so checkpoints are
    /// signed at sizes 6, 12, 18, 19 and 50.
    fn build(dir: tempfile::TempDir, db: Db) -> Ledger {
        let ledger = Ledger { db, dir };
        let d = ledger.d();
        write_ndjson(
            &d.join("first.ndjson"),
            (0..18).map(|i| event_json(i, true)),
        );
        write_ndjson(
            &d.join("last.ndjson"),
            (19..N).map(|i| event_json(i, i % 4 != 2)),
        );
        let o = ledger.run(&["import", "first.ndjson", "--batch-size", "6", "--quiet"]);
        assert!(o.status.success(), "import failed: {}", stderr(&o));
        let o = ledger.run(&[
            "log",
            "--event-id",
            "evt-0018",
            "--system",
            "web-05",
            "--patch-id",
            "KB5034441",
            "--status",
            "failure",
            "--applied-at",
            "2024-06-19T08:30:00Z",
            "--package",
            "openssl",
            "--from-version",
            "3.0.11",
            "--to-version",
            "3.0.13",
            "--detail",
            "reboot pending",
            "--cve",
            "CVE-2024-0727",
            "--cve",
            "CVE-2023-6237",
            "--reboot-required",
            "--change-ref",
            "CHG004018",
        ]);
        assert!(o.status.success(), "log failed: {}", stderr(&o));
        let o = ledger.run(&["import", "last.ndjson", "--no-derive-event-id", "--quiet"]);
        assert!(o.status.success(), "import failed: {}", stderr(&o));
        ledger
    }

    /// Runs `sql` directly in the database, with the append-only
    /// protections out of the way.
    fn tamper(&self, sql: &str) {
        match &self.db {
            Db::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path).unwrap();
                for t in SQLITE_TRIGGERS {
                    conn.execute_batch(&format!("DROP TRIGGER IF EXISTS {t}"))
                        .unwrap();
                }
                conn.execute_batch(sql)
                    .unwrap_or_else(|e| panic!("tampering failed: {e}\n{sql}"));
            }
            Db::Postgres { .. } => {
                self.psql(sql);
            }
        }
    }

    /// Runs `sql` with psql in the ledger's schema, the triggers disabled
    /// for the session; returns what it printed (unaligned, tuples only).
    fn psql(&self, sql: &str) -> String {
        let Db::Postgres { schema, .. } = &self.db else {
            panic!("psql on a SQLite ledger")
        };
        let script = format!(
            "SET search_path TO {};\nSET session_replication_role = replica;\n{sql}\n",
            schema.name()
        );
        let mut child = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(pg_test_url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "psql failed: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Reads through the store, as patchaudit itself would: events are
    /// rebuilt from their columns.
    fn with_store<T>(&self, f: impl AsyncFnOnce(&dyn Store) -> T) -> T {
        rt().block_on(async {
            let store: Box<dyn Store> = match &self.db {
                Db::Sqlite(path) => {
                    Box::new(SqliteStore::open(path, SqliteOptions::default()).unwrap())
                }
                Db::Postgres { schema, .. } => Box::new(
                    PgStore::connect(
                        &pg_test_url(),
                        PgOptions {
                            schema: Some(schema.name().to_owned()),
                            pool_size: 2,
                            ..PgOptions::default()
                        },
                    )
                    .await
                    .unwrap(),
                ),
            };
            f(&*store).await
        })
    }

    fn event(&self, seq: u64) -> RecordedEvent {
        self.with_store(async |s| s.get(seq).await.unwrap())
            .unwrap_or_else(|| panic!("no event at seq {seq}"))
    }

    fn stored_hash(&self, position: u64) -> Hash {
        let found = self.with_store(async |s| s.tree_hashes(&[position]).await.unwrap());
        assert_eq!(found.len(), 1, "no stored hash at position {position}");
        found[0].1
    }

    /// Overwrites the stored tree hash at `position`.
    fn set_stored_hash(&self, position: u64, hash: &Hash) {
        let hex = hex::encode(hash);
        match self.db {
            Db::Sqlite(_) => self.tamper(&format!(
                "UPDATE tree_hashes SET hash = X'{hex}' WHERE position = {position};"
            )),
            Db::Postgres { .. } => self.tamper(&format!(
                "UPDATE tree_hashes SET hash = decode('{hex}', 'hex') WHERE position = {position};"
            )),
        }
    }

    /// `verify --json`, then `verify --check-tree --json`: the exit code
    /// and the report, which is printed on stdout whether or not the ledger
    /// checks out. Every expectation must hold in both modes.
    fn verify(&self) -> [Verdict; 2] {
        [&[][..], &["--check-tree"][..]].map(|extra| {
            let args = [&["verify", "--json", "--quiet"][..], extra].concat();
            Verdict::of(args.join(" "), self.run(&args))
        })
    }

    /// The verifier key of the ledger's signing key.
    fn public_key(&self) -> String {
        let o = run(self.d(), &["key", "public", "--file", "k.key"]);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_owned()
    }
}

/// What `verify --json` said.
struct Verdict {
    command: String,
    code: Option<i32>,
    report: Value,
    stdout: String,
    stderr: String,
}

impl Verdict {
    fn of(command: String, o: Output) -> Verdict {
        let (out, err) = (stdout(&o), stderr(&o));
        let report = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("verify --json printed no JSON report ({e})\nstdout: {out}\nstderr: {err}")
        });
        Verdict {
            command,
            code: o.status.code(),
            report,
            stdout: out,
            stderr: err,
        }
    }

    fn show(&self) -> String {
        format!(
            "patchaudit {}\nexit code {:?}\nstdout: {}\nstderr: {}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    fn divergences(&self) -> Vec<(u64, Option<u64>, String)> {
        self.report["divergences"]
            .as_array()
            .unwrap_or_else(|| panic!("the report lists no divergences\n{}", self.show()))
            .iter()
            .map(|d| {
                (
                    d["first_seq"].as_u64().expect("first_seq"),
                    d["last_seq"].as_u64(),
                    d["reason"].as_str().expect("reason").to_owned(),
                )
            })
            .collect()
    }

    /// Exit code 7, `ok: false`, and the stderr line naming the place.
    fn assert_failed(&self) {
        assert_eq!(
            self.code,
            Some(7),
            "verification must fail with exit code 7\n{}",
            self.show()
        );
        assert_eq!(self.report["ok"], false, "{}", self.show());
        assert!(
            self.stderr.contains("verification failed"),
            "{}",
            self.show()
        );
    }

    /// Fails, and the first divergence is exactly `seq` for the reason
    /// containing `why`.
    fn assert_first_divergence(&self, seq: u64, why: &str) {
        self.assert_failed();
        let divergences = self.divergences();
        let (first, last, reason) = &divergences[0];
        assert_eq!(
            *first,
            seq,
            "the first divergence must be seq {seq}\n{}",
            self.show()
        );
        assert!(
            last.is_none() || *last == Some(seq),
            "the first divergence must be seq {seq} alone, not a range\n{}",
            self.show()
        );
        assert!(
            reason.contains(why),
            "the first divergence must say {why:?}\n{}",
            self.show()
        );
        assert!(
            self.stderr
                .contains(&format!("diverges from its signed history at seq {seq}")),
            "stderr must name seq {seq}\n{}",
            self.show()
        );
    }

    /// Whether some divergence's range holds `seq` and its reason `why`.
    fn has_divergence(&self, seq: u64, why: &str) -> bool {
        self.divergences().iter().any(|(first, last, reason)| {
            *first <= seq && seq <= last.unwrap_or(*first) && reason.contains(why)
        })
    }
}

/// Generates a `sqlite` and a `postgres` test from one scenario.
macro_rules! on_both_backends {
    ($($(#[$doc:meta])* fn $name:ident($ledger:ident: Ledger) $body:block)*) => {$(
        $(#[$doc])*
        fn $name($ledger: Ledger) $body

        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Ledger::sqlite());
            }

            #[test]
            fn postgres() {
                if let Some(ledger) = super::Ledger::postgres() {
                    super::$name(ledger);
                }
            }
        }
    )*};
}

/// Flips a row's status to another valid one.
fn flip_status(seq: u64) -> String {
    format!(
        "UPDATE events SET status = CASE status WHEN 'failure' THEN 'success' ELSE 'failure' END WHERE seq = {seq};"
    )
}

on_both_backends! {
    /// The baseline: a ledger nobody touched verifies, exit 0.
    fn untampered_ledger_verifies(ledger: Ledger) {
        let [plain, check_tree] = ledger.verify();
        for v in [&plain, &check_tree] {
            assert_eq!(v.code, Some(0), "{}", v.show());
            assert_eq!(v.report["ok"], true, "{}", v.show());
            assert_eq!(v.report["events"], N, "{}", v.show());
            assert_eq!(v.report["checkpoint_size"], N, "{}", v.show());
            assert_eq!(
                v.report["checkpoints_compared"], 5,
                "each of the five commits signed a checkpoint: {}",
                v.show()
            );
            assert!(v.report.get("divergences").is_none(), "{}", v.show());
        }
        assert_eq!(
            check_tree.report["stored_hashes_compared"],
            stored_hash_count(N),
            "--check-tree compares every stored tree hash: {}",
            check_tree.show()
        );
        let o = ledger.run(&["verify", "--quiet"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(stdout(&o).starts_with(&format!("verified: {N} events")), "{}", stdout(&o));
    }

    /// (1) One field of one row edited.
    fn field_edited(ledger: Ledger) {
        ledger.tamper(&flip_status(K));
        for v in ledger.verify() {
            v.assert_first_divergence(K, "a field was edited");
        }
    }

    /// (1') Another field, the system, edited on another row.
    fn system_edited(ledger: Ledger) {
        ledger.tamper("UPDATE events SET system = 'web-99' WHERE seq = 31;");
        for v in ledger.verify() {
            v.assert_first_divergence(31, "a field was edited");
        }
    }

    /// (2) A row in the middle deleted.
    fn row_deleted(ledger: Ledger) {
        let extra = if ledger.is_postgres() {
            format!("DELETE FROM event_ids WHERE seq = {K};")
        } else {
            String::new()
        };
        ledger.tamper(&format!("DELETE FROM events WHERE seq = {K};{extra}"));
        for v in ledger.verify() {
            v.assert_first_divergence(K, &format!("seq {K} is missing"));
        }
    }

    /// (2) The very first row deleted: the message names seq 0, not a seq before it.
    fn first_row_deleted(ledger: Ledger) {
        let extra = if ledger.is_postgres() {
            "DELETE FROM event_ids WHERE seq = 0;"
        } else {
            ""
        };
        ledger.tamper(&format!("DELETE FROM events WHERE seq = 0;{extra}"));
        for v in ledger.verify() {
            v.assert_first_divergence(0, "seq 0 is missing: the events start at seq 1");
        }
    }

    /// Every checkpoint deleted: no seq explains it, and --json still says so.
    fn checkpoints_removed(ledger: Ledger) {
        ledger.tamper("DELETE FROM checkpoints;");
        for v in ledger.verify() {
            assert_eq!(v.code, Some(7), "{}", v.show());
            assert_eq!(v.report["ok"], false, "{}", v.show());
            assert!(
                v.report["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains("no signed checkpoint")),
                "{}",
                v.show()
            );
        }
    }

    /// (3) The contents of two rows swapped, their seqs kept.
    fn rows_swapped(ledger: Ledger) {
        let cols = CONTENT_COLUMNS.join(", ");
        let sql = if ledger.is_postgres() {
            let set: Vec<String> = CONTENT_COLUMNS.iter().map(|c| format!("{c} = o.{c}")).collect();
            format!(
                "UPDATE events AS e SET {} FROM events AS o \
                 WHERE e.seq IN ({K}, {M}) AND o.seq = {K} + {M} - e.seq;
                 UPDATE event_ids SET seq = {K} + {M} - seq WHERE seq IN ({K}, {M});",
                set.join(", ")
            )
        } else {
            // event_id is UNIQUE and SQLite checks it row by row: clear it first.
            format!(
                "CREATE TEMP TABLE swap AS SELECT * FROM events WHERE seq IN ({K}, {M});
                 UPDATE events SET event_id = NULL WHERE seq IN ({K}, {M});
                 UPDATE events SET ({cols}) = (SELECT {cols} FROM swap WHERE swap.seq = {K} + {M} - events.seq)
                 WHERE seq IN ({K}, {M});
                 DROP TABLE swap;"
            )
        };
        let (before_k, before_m) = (ledger.event(K), ledger.event(M));
        ledger.tamper(&sql);
        let (after_k, after_m) = (ledger.event(K), ledger.event(M));
        assert_eq!(after_k.event, before_m.event, "the rows were swapped");
        assert_eq!(after_m.event, before_k.event, "the rows were swapped");
        for v in ledger.verify() {
            v.assert_first_divergence(K, "rows were swapped");
        }
    }

    /// (4a) A valid-looking row appended at seq N, behind patchaudit's back.
    fn row_inserted_at_the_end(ledger: Ledger) {
        let cols = CONTENT_COLUMNS.join(", ");
        let select: String = CONTENT_COLUMNS
            .iter()
            .map(|c| match *c {
                "event_id" => "'evt-injected'",
                "system" => "'web-99'",
                "status" => "'success'",
                c => c,
            })
            .collect::<Vec<_>>()
            .join(", ");
        let last = N - 1;
        let mut sql = format!(
            "INSERT INTO events (seq, {cols}) SELECT {N}, {select} FROM events WHERE seq = {last};"
        );
        if ledger.is_postgres() {
            sql.push_str(&format!(
                "INSERT INTO event_ids (event_id, seq, content_hash, recorded_at) \
                 SELECT 'evt-injected', seq, content_hash, recorded_at FROM events WHERE seq = {N};"
            ));
        }
        ledger.tamper(&sql);
        assert_eq!(ledger.event(N).event.system.as_str(), "web-99");
        for v in ledger.verify() {
            v.assert_failed();
            let (first, _, _) = &v.divergences()[0];
            assert_eq!(*first, N, "the first divergence must be seq {N}\n{}", v.show());
            assert!(
                v.has_divergence(N, "added outside patchaudit"),
                "the report must say seq {N} was added outside patchaudit\n{}",
                v.show()
            );
            assert!(
                v.stderr.contains(&format!("diverges from its signed history at seq {N}")),
                "{}",
                v.show()
            );
        }
    }

    /// (5) A field edited, and the stored leaf hash rewritten to match it.
    fn leaf_hash_rewritten_to_match(ledger: Ledger) {
        // patchaudit-proofs is already a normal dependency of this crate, so
        // the layout comes from the library itself rather than a copy of its
        // formula; the assertion below checks it against what was stored.
        let position = stored_hash_index(0, K);
        let original = ledger.event(K);
        assert_eq!(
            ledger.stored_hash(position),
            leaf_hash(&original.leaf_bytes()),
            "the leaf hash of seq {K} is stored at position {position}"
        );
        ledger.tamper(&flip_status(K));
        let edited = ledger.event(K);
        assert_ne!(edited.event.status, original.event.status);
        let digest = hex::encode(edited.event.content_digest());
        ledger.tamper(&if ledger.is_postgres() {
            format!("UPDATE events SET content_hash = decode('{digest}', 'hex') WHERE seq = {K};")
        } else {
            format!("UPDATE events SET content_hash = X'{digest}' WHERE seq = {K};")
        });
        let forged = leaf_hash(&edited.leaf_bytes());
        ledger.set_stored_hash(position, &forged);
        assert_eq!(ledger.stored_hash(position), forged);

        for v in ledger.verify() {
            v.assert_failed();
            let (first, last, reason) = &v.divergences()[0];
            assert!(
                *first <= K && K <= last.unwrap_or(*first),
                "the first divergence's range must hold seq {K}\n{}",
                v.show()
            );
            assert!(
                reason.contains("leaf hashes were rewritten"),
                "the first divergence must say leaf hashes were rewritten\n{}",
                v.show()
            );
            assert!(
                v.stderr.contains("leaf hashes were rewritten"),
                "the error must say leaf hashes were rewritten\n{}",
                v.show()
            );
        }
    }

    /// (6) The last rows deleted.
    fn log_truncated(ledger: Ledger) {
        let from = N - 3;
        let extra = if ledger.is_postgres() {
            format!("DELETE FROM event_ids WHERE seq >= {from};")
        } else {
            String::new()
        };
        ledger.tamper(&format!("DELETE FROM events WHERE seq >= {from};{extra}"));
        for v in ledger.verify() {
            v.assert_failed();
            let (first, last, reason) = &v.divergences()[0];
            assert_eq!(*first, from, "the first divergence must be seq {from}\n{}", v.show());
            assert_eq!(*last, Some(N - 1), "{}", v.show());
            assert!(reason.contains("truncated"), "{}", v.show());
            assert!(
                v.stderr.contains(&format!("diverges from its signed history at seq {from}")),
                "{}",
                v.show()
            );
        }
    }

    /// An export with one event line edited fails `verify --input`.
    fn tampered_export_fails_verify_input(ledger: Ledger) {
        let o = ledger.run(&["export", "--output", "ledger.export", "--quiet"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let public = ledger.public_key();
        let verify_input = || {
            let args = ["verify", "--input", "ledger.export", "--key", &public, "--json", "--quiet"];
            Verdict::of(args.join(" "), run(ledger.d(), &args))
        };
        let v = verify_input();
        assert_eq!(v.code, Some(0), "the untouched export verifies\n{}", v.show());
        assert_eq!(v.report["events"], N);

        let path = ledger.d().join("ledger.export");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        assert_eq!(lines.len() as u64, N + 1, "a header and {N} events");
        let mut e: Value = serde_json::from_str(&lines[K as usize + 1]).unwrap();
        assert_eq!(e["seq"], K);
        let flipped = if e["status"] == "failure" { "success" } else { "failure" };
        e["status"] = flipped.into();
        lines[K as usize + 1] = e.to_string();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();

        let v = verify_input();
        v.assert_failed();
        let (first, last, _) = &v.divergences()[0];
        assert!(
            *first <= K && K <= last.unwrap_or(*first),
            "the first divergence's range must hold seq {K}\n{}",
            v.show()
        );
    }

    /// `prove SEQ` fails for an edited event, and still proves the others.
    fn prove_fails_for_an_edited_event(ledger: Ledger) {
        let k = K.to_string();
        let o = ledger.run(&["prove", &k, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        ledger.tamper(&flip_status(K));
        let o = ledger.run(&["prove", &k]);
        assert_eq!(o.status.code(), Some(7), "stdout: {}\nstderr: {}", stdout(&o), stderr(&o));
        assert!(
            stderr(&o).contains(&format!("seq {K} with these fields is not in the signed tree")),
            "{}",
            stderr(&o)
        );
        let o = ledger.run(&["prove", &M.to_string()]);
        assert!(o.status.success(), "an untouched event is still proven: {}", stderr(&o));
    }
}

/// (4b) PostgreSQL only, whose events table has no unique seq (its primary
/// key is (seq, recorded_at)): a second row with an existing seq.
#[test]
fn row_inserted_with_a_duplicate_seq_postgres() {
    let Some(ledger) = Ledger::postgres() else {
        return;
    };
    let cols = CONTENT_COLUMNS.join(", ");
    let select: String = CONTENT_COLUMNS
        .iter()
        .map(|c| match *c {
            "event_id" => "'evt-duplicate'",
            "system" => "'web-99'",
            "recorded_at" => "recorded_at + interval '1 microsecond'",
            c => c,
        })
        .collect::<Vec<_>>()
        .join(", ");
    ledger.tamper(&format!(
        "INSERT INTO events (seq, {cols}) SELECT seq, {select} FROM events WHERE seq = {K};
         INSERT INTO event_ids (event_id, seq, content_hash, recorded_at)
         SELECT event_id, seq, content_hash, recorded_at FROM events WHERE event_id = 'evt-duplicate';"
    ));
    let rows = ledger.psql(&format!("SELECT count(*) FROM events WHERE seq = {K};"));
    assert_eq!(rows.trim(), "2", "two rows now have seq {K}");
    for v in ledger.verify() {
        v.assert_first_divergence(K, &format!("seq {K}"));
        assert!(
            v.has_divergence(K, "appears twice"),
            "the report must say seq {K} appears twice\n{}",
            v.show()
        );
    }
}

/// An auditor's role needs only `SELECT`: `verify`, `export` and `prove`
/// open a PostgreSQL ledger without migrating it and in read-only
/// transactions, so a role that may not create or change anything still
/// checks the whole ledger.
#[test]
fn an_auditor_with_select_only_verifies_exports_and_proves_on_postgres() {
    let Some(ledger) = Ledger::postgres() else {
        return;
    };
    let Db::Postgres { schema, .. } = &ledger.db else {
        unreachable!()
    };
    let role = format!("{}_auditor", schema.name());
    ledger.psql(&format!(
        "CREATE ROLE {role} LOGIN;\n\
         GRANT USAGE ON SCHEMA {s} TO {role};\n\
         GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {role};",
        s = schema.name()
    ));
    // Dropped before the schema is: the role's grants go with it.
    struct DropRole<'a>(&'a Ledger, String);
    impl Drop for DropRole<'_> {
        fn drop(&mut self) {
            self.0
                .psql(&format!("DROP OWNED BY {r}; DROP ROLE {r};", r = self.1));
        }
    }
    let _role = DropRole(&ledger, role.clone());

    // The ledger's URL with the auditor as its user.
    let url = ledger.url();
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    let url = format!("{scheme}://{role}@{rest}");
    let key = ledger.d().join("k.key");
    let public = run(
        ledger.d(),
        &["key", "public", "--signing-key", key.to_str().unwrap()],
    );
    assert!(public.status.success(), "{}", stderr(&public));
    let public = stdout(&public).trim().to_owned();
    let audit = |args: &[&str]| {
        run(
            ledger.d(),
            &[&["--database-url", url.as_str()][..], args].concat(),
        )
    };

    let o = audit(&["verify", "--key", &public, "--check-tree", "--json"]);
    assert!(o.status.success(), "verify as the auditor: {}", stderr(&o));
    let report: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["events"], N, "{report}");

    let export = ledger.d().join("audit.ndjson");
    let o = audit(&["export", "--output", export.to_str().unwrap()]);
    assert!(o.status.success(), "export as the auditor: {}", stderr(&o));
    let o = run(
        ledger.d(),
        &[
            "verify",
            "--input",
            export.to_str().unwrap(),
            "--key",
            &public,
        ],
    );
    assert!(o.status.success(), "the auditor's export: {}", stderr(&o));

    let o = audit(&["prove", &K.to_string(), "--key", &public]);
    assert!(o.status.success(), "prove as the auditor: {}", stderr(&o));

    // A command that writes is still refused to this role, by the database.
    let o = audit(&[
        "--signing-key",
        key.to_str().unwrap(),
        "log",
        "--system",
        "web-01",
        "--patch-id",
        "KB1",
        "--status",
        "success",
        "--applied-at",
        "2024-06-19T08:30:00Z",
    ]);
    assert!(!o.status.success(), "the auditor appended an event");
    assert!(stderr(&o).contains("permission denied"), "{}", stderr(&o));
}
