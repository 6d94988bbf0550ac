//! Helpers for tests that run the built `patchaudit` binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_patchaudit"))
}

/// A command in `dir` with a clean PATCHAUDIT_* environment, so the
/// developer's own settings never leak into a test.
pub fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("PATCHAUDIT_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs the binary with `args` in `dir` and returns its output.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).output().expect("the binary runs")
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
}

impl Server {
    /// Starts `serve` on a free loopback port with the ledger at `db`, and
    /// waits until it says it is listening.
    pub fn start(dir: &Path, db: &Path, extra: &[&str]) -> Server {
        let url = format!("sqlite://{}", db.display());
        let mut child = cmd(dir)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
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
        Server { child, url: addr }
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
