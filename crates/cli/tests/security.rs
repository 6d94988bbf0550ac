//! Tokens, TLS and listening rules, through the real binary: how an
//! operator bootstraps a server, hands agents limited tokens, revokes
//! them, and serves over TLS.

mod common;

use common::{cmd, stderr, stdout, Server};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::Path;
use std::process::Output;

/// Runs the binary in `dir` with exactly this environment on top of a
/// clean one (no token unless given).
fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = cmd(dir);
    c.env_remove("PATCHAUDIT_TOKEN");
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().expect("the binary runs")
}

#[test]
fn an_operator_bootstraps_hands_out_a_limited_token_and_revokes_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The first admin token is made on the database, before any server.
    let o = run_env(
        d,
        &[
            "token",
            "create",
            "--name",
            "root",
            "--scope",
            "admin,read,ingest",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let admin = stdout(&o).trim().to_owned();
    assert!(
        admin.starts_with("pa_"),
        "stdout is the token alone: {admin:?}"
    );
    assert!(stderr(&o).contains("shown only now"), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains(&admin[20..]),
        "the secret is printed once, on stdout"
    );

    let srv = Server::start(d, &d.join("patchaudit.db"), &[]);
    let url = srv.url.as_str();

    // No token: refused, exit 9, and the message says what to do.
    let o = run_env(d, &["systems", "--server", url], &[]);
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    assert!(stderr(&o).contains("bearer token"), "{}", stderr(&o));
    // The token from the environment or from --token.
    let o = run_env(
        d,
        &["systems", "--server", url],
        &[("PATCHAUDIT_TOKEN", &admin)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_env(d, &["systems", "--server", url, "--token", &admin], &[]);
    assert!(o.status.success(), "{}", stderr(&o));

    // An agent's token, made through the server, limited to web-*.
    let o = run_env(
        d,
        &[
            "token",
            "create",
            "--server",
            url,
            "--name",
            "agent-web",
            "--scope",
            "ingest",
            "--system",
            "web-*",
            "--format",
            "json",
        ],
        &[("PATCHAUDIT_TOKEN", &admin)],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let created: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let agent = created["token"].as_str().unwrap().to_owned();
    let agent_id = created["id"].as_str().unwrap().to_owned();
    // Recorded as made by the token that made it.
    assert!(
        created["created_by"].as_str().unwrap().starts_with("root#"),
        "{created}"
    );

    let log = |system: &str, token: &str| {
        run_env(
            d,
            &[
                "log",
                "--server",
                url,
                "--system",
                system,
                "--patch-id",
                "KB1",
                "--status",
                "success",
            ],
            &[("PATCHAUDIT_TOKEN", token)],
        )
    };
    let o = log("db-01", &agent);
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    assert!(stderr(&o).contains("db-01"), "{}", stderr(&o));
    let o = log("web-01", &agent);
    assert!(o.status.success(), "{}", stderr(&o));
    // The event says which token recorded it.
    let o = run_env(
        d,
        &["events", "--server", url, "--format", "ndjson"],
        &[("PATCHAUDIT_TOKEN", &admin)],
    );
    let e: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(e["recorded_by"], format!("agent-web#{agent_id}"));
    // An ingest token cannot read.
    let o = run_env(
        d,
        &["systems", "--server", url],
        &[("PATCHAUDIT_TOKEN", &agent)],
    );
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs read"), "{}", stderr(&o));

    // Listed, locally and through the server, never with a secret.
    for args in [
        vec!["token", "list", "--format", "json"],
        vec!["token", "list", "--format", "json", "--server", url],
    ] {
        let o = run_env(d, &args, &[("PATCHAUDIT_TOKEN", &admin)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains(&agent_id) && out.contains("\"root\""), "{out}");
        assert!(
            !out.contains(&agent[20..]) && !out.contains(&admin[20..]),
            "{out}"
        );
    }
    let o = run_env(d, &["token", "list"], &[]);
    assert!(stdout(&o).contains("web-*"), "{}", stdout(&o));

    // Revoked on the database: the running server refuses it at once.
    let o = run_env(d, &["token", "revoke", &agent_id], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = log("web-02", &agent);
    assert_eq!(o.status.code(), Some(9), "{}", stderr(&o));
    assert!(stderr(&o).contains("revoked"), "{}", stderr(&o));
    let o = run_env(d, &["token", "revoke", "ffffffffffffffff"], &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));

    // The trail says who created and who revoked it, locally and through
    // the server alike.
    for args in [
        vec!["changes", "--kind", "token", "--format", "json"],
        vec![
            "changes", "--kind", "token", "--format", "json", "--server", url,
        ],
    ] {
        let o = run_env(d, &args, &[("PATCHAUDIT_TOKEN", &admin)]);
        assert!(o.status.success(), "{}", stderr(&o));
        let page: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let agent_changes: Vec<(String, String)> = page["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["id"] == agent_id)
            .map(|c| {
                (
                    c["action"].as_str().unwrap().to_owned(),
                    c["changed_by"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(agent_changes.len(), 2, "{page}");
        assert_eq!(agent_changes[0].0, "created");
        assert!(agent_changes[0].1.starts_with("root#"), "{page}");
        assert_eq!(agent_changes[1].0, "revoked");
        assert!(agent_changes[1].1.starts_with("local:"), "{page}");
    }
    let o = run_env(d, &["changes", "--limit", "0"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Bad requests name the field.
    let o = run_env(
        d,
        &["token", "create", "--name", "x y", "--scope", "write"],
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("name") && stderr(&o).contains("write"),
        "{}",
        stderr(&o)
    );
}

struct Pki {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "patchaudit test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_path, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        _dir: dir,
        ca: ca_path,
        cert,
        key,
    }
}

#[test]
fn serve_speaks_tls_and_clients_verify_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = pki();
    let (cert, key, ca) = (
        pki.cert.to_str().unwrap(),
        pki.key.to_str().unwrap(),
        pki.ca.to_str().unwrap(),
    );
    let srv = Server::start(d, &d.join("l.db"), &["--tls-cert", cert, "--tls-key", key]);
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let token = srv.token.clone();
    let env = [("PATCHAUDIT_TOKEN", token.as_str())];
    // Without the private CA the certificate is not trusted.
    let o = run_env(d, &["systems", "--server", &srv.url], &env);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach the server"),
        "{}",
        stderr(&o)
    );
    // With --ca-cert (or PATCHAUDIT_CA_CERT) it is.
    let o = run_env(d, &["systems", "--server", &srv.url, "--ca-cert", ca], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_env(
        d,
        &[
            "log",
            "--server",
            &srv.url,
            "--system",
            "web-01",
            "--patch-id",
            "KB1",
            "--status",
            "success",
        ],
        &[
            ("PATCHAUDIT_TOKEN", token.as_str()),
            ("PATCHAUDIT_CA_CERT", ca),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // A CA file that holds no certificate is named.
    let o = run_env(
        d,
        &["systems", "--server", &srv.url, "--ca-cert", key],
        &env,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("server.key"), "{}", stderr(&o));

    // A missing key or certificate stops serve with one clear line.
    let o = run_env(
        d,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert,
            "--tls-key",
            "/nonexistent/k.pem",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/k.pem"), "{}", stderr(&o));
}

/// Starts `serve` with `args` at log level `log`, its stderr kept for
/// [`stop_for_log`]; returns it and the URL it prints.
fn serve_logging(d: &Path, args: &[&str], log: &str) -> (std::process::Child, String) {
    let mut child = cmd(d)
        .arg("serve")
        .args(args)
        .env("PATCHAUDIT_LOG", log)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("patchaudit listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
        .to_owned();
    (child, url)
}

/// Kills a server started by [`serve_logging`] and returns what it logged.
fn stop_for_log(mut child: std::process::Child) -> String {
    child.kill().unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
}

#[test]
fn serve_refuses_a_non_loopback_address_without_tls_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run_env(d, &["serve", "--listen", "0.0.0.0:0"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("without TLS"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--allow-insecure-listen"),
        "{}",
        stderr(&o)
    );
    assert!(
        !d.join("patchaudit.db").exists(),
        "refused before opening anything"
    );
    // Asked for explicitly, it listens, and says in its log what that means.
    let (child, url) = serve_logging(
        d,
        &[
            "--listen",
            "0.0.0.0:0",
            "--allow-insecure-listen",
            "--database-url",
            "sqlite://open.db",
        ],
        "warn",
    );
    assert!(url.starts_with("http://0.0.0.0:"), "{url}");
    let log = stop_for_log(child);
    assert!(log.contains("WARN") && log.contains("without TLS"), "{log}");
    // The default stays loopback.
    let o = run_env(d, &["config"], &[]);
    assert!(
        stdout(&o).contains("listen = \"127.0.0.1:8080\""),
        "{}",
        stdout(&o)
    );
}

#[test]
fn neither_client_nor_server_logs_a_token_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = common::create_token(d, "sqlite://t.db", "admin", "admin,read,ingest", &[]);
    let (server, url) = serve_logging(
        d,
        &["--listen", "127.0.0.1:0", "--database-url", "sqlite://t.db"],
        "trace",
    );
    let env = [
        ("PATCHAUDIT_TOKEN", token.as_str()),
        ("PATCHAUDIT_LOG", "trace"),
    ];
    let mut client_logs = String::new();
    let mut created = Vec::new();
    for args in [
        vec![
            "log",
            "--server",
            &url,
            "--system",
            "web-01",
            "--patch-id",
            "KB1",
            "--status",
            "success",
        ],
        vec![
            "token", "create", "--server", &url, "--name", "agent", "--scope", "ingest",
        ],
        vec!["systems", "--server", &url],
    ] {
        let o = run_env(d, &args, &env);
        assert!(o.status.success(), "{}", stderr(&o));
        client_logs.push_str(&stderr(&o));
        if args[0] == "token" {
            created.push(stdout(&o).trim().to_owned());
        }
    }
    assert!(created[0].starts_with("pa_"), "{created:?}");
    // A wrong token is refused without being echoed.
    let wrong = format!("{}{}", &token[..20], "Z".repeat(43));
    let o = run_env(
        d,
        &["systems", "--server", &url],
        &[
            ("PATCHAUDIT_TOKEN", wrong.as_str()),
            ("PATCHAUDIT_LOG", "trace"),
        ],
    );
    assert_eq!(o.status.code(), Some(9));
    client_logs.push_str(&stderr(&o));
    let server_logs = stop_for_log(server);
    // The server's log was captured: it says a token was created, by whom.
    assert!(
        server_logs.contains("token created") && server_logs.contains("by=admin#"),
        "{server_logs}"
    );
    for (who, logs) in [("server", &server_logs), ("client", &client_logs)] {
        assert!(
            !logs.contains(&token[20..]),
            "the {who} logged the token's secret"
        );
        assert!(
            !logs.contains(&wrong[20..]),
            "the {who} logged a presented secret"
        );
        assert!(
            !logs.contains(&created[0][20..]),
            "the {who} logged a secret the server made"
        );
    }
}
