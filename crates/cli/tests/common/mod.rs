//! Helpers for tests that run the built `patchaudit` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_patchaudit"))
}

/// Where [`Server::start`] leaves the admin token it made, so that every
/// later command in the same directory sends it, as an operator's
/// environment would.
pub const TOKEN_FILE: &str = ".test-token";

/// A command in `dir` with a clean PATCHAUDIT_* environment, so the
/// developer's own settings never leak into a test. If a server was
/// started for `dir`, `PATCHAUDIT_TOKEN` carries its admin token.
pub fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PATCHAUDIT_") {
            c.env_remove(k);
        }
    }
    if let Ok(token) = std::fs::read_to_string(dir.join(TOKEN_FILE)) {
        c.env("PATCHAUDIT_TOKEN", token.trim());
    }
    c
}

/// Makes a token on the database at `url` with `token create`, as an
/// operator bootstraps a fresh server; returns it.
pub fn create_token(dir: &Path, url: &str, name: &str, scopes: &str, extra: &[&str]) -> String {
    let out = cmd(dir)
        .args([
            "token",
            "create",
            "--database-url",
            url,
            "--name",
            name,
            "--scope",
            scopes,
        ])
        .args(extra)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(token.starts_with("pa_"), "not a token: {token:?}");
    token
}

/// Where each server started in a directory leaves `URL TOKEN`, so that a
/// command naming `--server URL` sends that server's token.
pub const TOKENS_FILE: &str = ".test-tokens";

/// Runs the binary with `args` in `dir` and returns its output. A
/// `--server URL` of a server started in `dir` gets that server's token.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    let mut c = cmd(dir);
    if let Some(url) = args
        .iter()
        .position(|a| *a == "--server")
        .and_then(|i| args.get(i + 1))
    {
        let known = std::fs::read_to_string(dir.join(TOKENS_FILE)).unwrap_or_default();
        if let Some(token) = known
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{url} ")))
        {
            c.env("PATCHAUDIT_TOKEN", token.trim());
        }
    }
    c.args(args).output().expect("the binary runs")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `patchaudit serve`, killed when dropped.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its base URL.
    pub url: String,
    /// An `ingest,read,admin` token of its database.
    pub token: String,
}

impl Server {
    /// Starts `serve` on a free loopback port with the ledger at `db`, and
    /// waits until it says it is listening.
    pub fn start(dir: &Path, db: &Path, extra: &[&str]) -> Server {
        Server::start_url(dir, &format!("sqlite://{}", db.display()), extra)
    }

    /// Starts `serve` on a free loopback port with any database URL. The
    /// first start in `dir` makes an admin token on the database and leaves
    /// it in [`TOKEN_FILE`] for later commands.
    pub fn start_url(dir: &Path, url: &str, extra: &[&str]) -> Server {
        let token = create_token(dir, url, "test-admin", "ingest,read,admin", &[]);
        // Tests hammer one token far faster than any real client, so the
        // per-token rate limit is off unless a test sets it.
        let rate: &[&str] = if extra.contains(&"--rate-limit") {
            &[]
        } else {
            &["--rate-limit", "0"]
        };
        let mut child = cmd(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
            .args(rate)
            .args(extra)
            .env("PATCHAUDIT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("serve starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("serve prints its address");
        let addr = line
            .trim()
            .strip_prefix("patchaudit listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
            .to_owned();
        std::fs::write(dir.join(TOKEN_FILE), &token).expect("write the token file");
        let mut known = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(TOKENS_FILE))
            .expect("open the tokens file");
        std::io::Write::write_all(&mut known, format!("{addr} {token}\n").as_bytes())
            .expect("write the tokens file");
        Server {
            child,
            url: addr,
            token,
        }
    }

    /// An HTTP client that sends this server's token.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let mut h = reqwest::header::HeaderMap::new();
        let mut v =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.token)).unwrap();
        v.set_sensitive(true);
        h.insert(reqwest::header::AUTHORIZATION, v);
        reqwest::Client::builder().default_headers(h)
    }

    /// [`Server::client_builder`], built.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("build a client")
    }

    /// Kills the process with SIGKILL: no shutdown hooks, no flushing.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PostgreSQL cluster of the test's own, on a free port, so that a test
/// may stop and restart it without touching the shared server.
pub struct ThrowawayPg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
}

fn as_postgres(program: &Path) -> Command {
    // initdb and postgres refuse to run as root; CI runs as root.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl ThrowawayPg {
    /// Creates and starts a cluster, or returns None (after a loud skip
    /// message, or a panic under PATCHAUDIT_REQUIRE_SERVICES=1) when the
    /// PostgreSQL binaries are not installed.
    pub fn start() -> Option<ThrowawayPg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .find(|b| b.join("initdb").exists())
        });
        let Some(bin) = bin else {
            patchaudit_store::conformance::service_unavailable(
                "PostgreSQL binaries (initdb, pg_ctl)",
                "not under /usr/lib/postgresql/*/bin",
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("patchaudit-pg-")
            .tempdir()
            .expect("tempdir");
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = ThrowawayPg { dir, bin, port };
        pg.ctl_start();
        Some(pg)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn ctl(&self) -> Command {
        let mut c = as_postgres(&self.bin.join("pg_ctl"));
        c.arg("-D").arg(self.dir.path().join("data"));
        c
    }

    /// Starts (or restarts) the cluster and waits until it accepts connections.
    pub fn ctl_start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .ctl()
            .args(["-w", "-t", "60", "-o", &opts, "-l"])
            .arg(self.dir.path().join("log"))
            .arg("start")
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the cluster the fast way: connections are cut, nothing is flushed gently.
    pub fn ctl_stop(&self) {
        let out = self
            .ctl()
            .args(["-w", "-m", "fast", "stop"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for ThrowawayPg {
    fn drop(&mut self) {
        let _ = self.ctl().args(["-m", "immediate", "stop"]).output();
    }
}
