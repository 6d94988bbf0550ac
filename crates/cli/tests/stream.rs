//! `serve` with a webhook and the `stream` commands, through the real
//! binary: a webhook that is down leaves dead letters, which the commands
//! list, and replay (keeping them while the webhook still fails), on the
//! server and on the database.

mod common;

use common::{run, stderr, stdout, Server};
use serde_json::Value;
use std::time::Duration;

#[test]
fn a_dead_webhook_leaves_dead_letters_that_stream_commands_show_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A port nothing listens on: every delivery fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let db = d.join("patchaudit.db");
    let srv = Server::start(
        d,
        &db,
        &[
            "--webhook-url",
            &hook,
            "--webhook-secret",
            "test-secret",
            "--webhook-max-attempts",
            "1",
            "--alert-overdue-every",
            "0s",
        ],
    );
    let url = srv.url.clone();
    let o = run(
        d,
        &[
            "log",
            "--server",
            &url,
            "--system",
            "web-1",
            "--patch-id",
            "KB1",
            "--status",
            "failure",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let mut letters = Value::Null;
    for _ in 0..100 {
        let o = run(
            d,
            &[
                "stream",
                "dead-letters",
                "--server",
                &url,
                "--format",
                "json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        letters = serde_json::from_str(&stdout(&o)).unwrap();
        if !letters.as_array().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let list = letters.as_array().unwrap();
    assert_eq!(list.len(), 1, "{letters}");
    assert_eq!(list[0]["message_id"], "0");
    assert!(list[0]["sink"].as_str().unwrap().starts_with("webhook:"));
    let id = list[0]["id"].as_u64().unwrap().to_string();

    // Cursors are saved a moment after delivery, beside it.
    let mut text = String::new();
    for _ in 0..100 {
        let o = run(d, &["stream", "status", "--server", &url]);
        assert!(o.status.success(), "{}", stderr(&o));
        text = stdout(&o);
        if text.contains("alerts/events") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(text.contains("dead letters: 1"), "{text}");
    assert!(text.contains("alerts/events"), "{text}");

    // The webhook is still down: the replay fails with exit 6 and keeps it.
    let o = run(d, &["stream", "replay", &id, "--server", &url]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("502"), "{}", stderr(&o));
    let o = run(d, &["stream", "dead-letters", "--server", &url]);
    assert!(stdout(&o).contains("webhook:"), "{}", stdout(&o));
    drop(srv);

    // On the database: the same letter, and a replay with no webhook
    // configured here says so and keeps it (exit 6).
    let db_url = format!("sqlite://{}", db.display());
    let o = run(
        d,
        &[
            "stream",
            "dead-letters",
            "--database-url",
            &db_url,
            "--format",
            "json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let local: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(local.as_array().unwrap().len(), 1);
    let o = run(d, &["stream", "replay", "--all", "--database-url", &db_url]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not among the configured webhooks"),
        "{}",
        stderr(&o)
    );
    let o = run(d, &["stream", "replay", "999", "--database-url", &db_url]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("no dead letter 999"), "{}", stderr(&o));
}

#[test]
fn webhooks_without_a_secret_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let o = common::cmd(dir.path())
        .env_remove("PATCHAUDIT_WEBHOOK_SECRET")
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--webhook-url",
            "https://hooks.example/x",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("need a signing secret"),
        "{}",
        stderr(&o)
    );
    let o = common::cmd(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--consume-nats",
            "agents.events",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs a NATS server"), "{}", stderr(&o));
}
