//! The signing key, and the auditor's commands against a running server:
//! `verify --server --state`, `prove` and `export`.

mod common;

use common::{run, stderr, stdout, Server};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn log(dir: &Path, args: &[&str], n: usize, prefix: &str) {
    for i in 0..n {
        let o = run(
            dir,
            &[
                &[
                    "log",
                    "--system",
                    &format!("{prefix}-{i}"),
                    "--patch-id",
                    "KB5034441",
                    "--status",
                    "success",
                ][..],
                args,
            ]
            .concat(),
        );
        assert!(o.status.success(), "log failed: {}", stderr(&o));
    }
}

fn public_key(dir: &Path, key: &str) -> String {
    let o = run(dir, &["key", "public", "--file", key]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().to_owned()
}

#[test]
fn the_signing_key_is_created_0600_and_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // No key yet: nothing to print.
    assert_eq!(run(d, &["key", "public"]).status.code(), Some(5));
    log(d, &[], 1, "web");
    let key = d.join("patchaudit.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key must be created 0600");
    let public = stdout(&run(d, &["key", "public"])).trim().to_owned();
    assert!(public.starts_with("patchaudit/"), "{public}");
    let parts: Vec<&str> = public.splitn(3, '+').collect();
    assert_eq!(parts[1].len(), 8, "a hex key id: {public}");
    assert!(!public.contains("PRIVATE"), "{public}");

    // A key is never overwritten.
    let o = run(d, &["key", "generate"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(stdout(&run(d, &["key", "public"])).trim(), public);

    // A key others can read is refused, with the fix in the message.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(
        d,
        &[
            "log",
            "--system",
            "s",
            "--patch-id",
            "P",
            "--status",
            "success",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Another key cannot take over a ledger signed by the first.
    let o = run(
        d,
        &[
            "key",
            "generate",
            "--file",
            "other.key",
            "--name",
            "example.com/other",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("example.com/other+"));
    let o = run(
        d,
        &[
            "--signing-key",
            "other.key",
            "log",
            "--system",
            "s",
            "--patch-id",
            "P",
            "--status",
            "success",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not verify with this server's signing key"),
        "{}",
        stderr(&o)
    );
    // Reading and verifying need no signing key at all.
    std::fs::remove_file(d.join("other.key")).unwrap();
    let o = run(d, &["verify", "--key", &public]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn an_auditor_follows_a_server_with_a_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let srv = Server::start(d, &d.join("a.db"), &["--signing-key", "shared.key"]);
    let remote = ["--server", srv.url.as_str()];
    log(d, &remote, 3, "a");
    let public = public_key(d, "shared.key");

    // Without a trusted key there is nothing to verify against.
    assert_eq!(
        run(d, &["verify", "--server", &srv.url]).status.code(),
        Some(2)
    );

    let verify = |state: &str| {
        run(
            d,
            &[
                "verify", "--server", &srv.url, "--key", &public, "--state", state,
            ],
        )
    };
    let o = verify("audit.state");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("first checkpoint seen: 3 events"),
        "{}",
        stdout(&o)
    );
    let saved = std::fs::read_to_string(d.join("audit.state")).unwrap();
    assert!(saved.contains("\n3\n"), "{saved}");

    log(d, &remote, 4, "b");
    let o = verify("audit.state");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("grew from 3 to 7 events"),
        "{}",
        stdout(&o)
    );
    let o = verify("audit.state");
    assert!(
        stdout(&o).contains("unchanged: still 7 events"),
        "{}",
        stdout(&o)
    );

    // A second ledger signed with the same key stands in for a server that
    // rewrote its history: its checkpoints are validly signed, but they are
    // not the history the auditor saw.
    log(
        d,
        &[
            "--database-url",
            "sqlite://b.db",
            "--signing-key",
            "shared.key",
        ],
        9,
        "z",
    );
    let other = Server::start(d, &d.join("b.db"), &["--signing-key", "shared.key"]);
    let before = std::fs::read_to_string(d.join("audit.state")).unwrap();
    let o = run(
        d,
        &[
            "verify",
            "--server",
            &other.url,
            "--key",
            &public,
            "--state",
            "audit.state",
        ],
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(stderr(&o).contains("not an extension"), "{}", stderr(&o));
    // The state is only replaced after a successful check.
    assert_eq!(
        std::fs::read_to_string(d.join("audit.state")).unwrap(),
        before
    );
    assert!(before.contains("\n7\n"), "{before}");

    // Seen 9 events there; the 7-event server now looks like a log that shrank.
    let o = run(
        d,
        &[
            "verify", "--server", &other.url, "--key", &public, "--state", "b.state",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(
        d,
        &[
            "verify", "--server", &srv.url, "--key", &public, "--state", "b.state",
        ],
    );
    assert_eq!(o.status.code(), Some(7));
    assert!(
        stderr(&o).contains("shrank from 9 events"),
        "{}",
        stderr(&o)
    );

    // Same size, different root: a fork.
    log(d, &remote, 2, "c");
    let o = run(
        d,
        &[
            "verify", "--server", &srv.url, "--key", &public, "--state", "b.state",
        ],
    );
    assert_eq!(o.status.code(), Some(7));
    assert!(stderr(&o).contains("rewritten"), "{}", stderr(&o));

    // A key the server did not sign with is refused.
    let o = run(
        d,
        &[
            "key",
            "generate",
            "--file",
            "stranger.key",
            "--name",
            "patchaudit/stranger",
        ],
    );
    let stranger = stdout(&o).trim().to_owned();
    let o = run(d, &["verify", "--server", &srv.url, "--key", &stranger]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
}

#[test]
fn prove_and_export_work_through_a_server_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let srv = Server::start(d, &d.join("a.db"), &["--signing-key", "k.key"]);
    log(d, &["--server", srv.url.as_str()], 5, "p");
    let public = public_key(d, "k.key");

    let o = run(
        d,
        &[
            "prove", "3", "--server", &srv.url, "--key", &public, "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["size"], 5);
    assert_eq!(v["event"]["system"], "p-3");
    assert_eq!(
        run(d, &["prove", "5", "--server", &srv.url, "--key", &public])
            .status
            .code(),
        Some(5)
    );

    let o = run(
        d,
        &["export", "--server", &srv.url, "--output", "ledger.export"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(d.join("ledger.export")).unwrap();
    assert_eq!(text.lines().count(), 6, "a header and five events");
    let o = run(
        d,
        &[
            "verify",
            "--input",
            "ledger.export",
            "--key",
            &public,
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["ok"].clone(), v["events"].clone()),
        (true.into(), 5.into())
    );

    // An export is checked without any database or server.
    drop(srv);
    let o = run(d, &["verify", "--input", "ledger.export", "--key", &public]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("verified: 5 events"),
        "{}",
        stdout(&o)
    );
}
