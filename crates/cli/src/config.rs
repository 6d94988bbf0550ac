//! Layered configuration: defaults, then a TOML file, then `PATCHAUDIT_*`
//! environment variables, then command-line flags. Each value remembers
//! where it came from, so `patchaudit config` can show it.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The TOML file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// This command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// A value and its origin.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    /// The effective value.
    pub value: T,
    /// Where it came from.
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }

    fn set(&mut self, value: Option<T>, source: Source) {
        if let Some(v) = value {
            self.value = v;
            self.source = source;
        }
    }
}

/// A database URL whose password never appears in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(s: impl Into<String>) -> Self {
        DatabaseUrl(s.into())
    }

    /// The URL with its secret intact, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `****`.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s.clone();
        };
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => format!(
                "{}://{}:****{}",
                &s[..scheme_end],
                &authority[..colon],
                &rest[at..]
            ),
            _ => s.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An embedded SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its `postgres://` URL.
    Postgres(DatabaseUrl),
}

impl DatabaseUrl {
    /// Interprets the URL: `sqlite://relative/path.db`, `sqlite:///absolute/path.db`,
    /// or `postgres://user:password@host:port/database`.
    pub fn database(&self) -> Result<Database> {
        let s = self.expose();
        if let Some(path) = s
            .strip_prefix("sqlite://")
            .or_else(|| s.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                bail!("database_url {s:?} names no file; write sqlite://patchaudit.db");
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Database::Postgres(self.clone()));
        }
        bail!(
            "database_url {:?} is not a database URL; write sqlite://FILE or postgres://USER@HOST/DB",
            self.redacted()
        )
    }
}

/// The TOML file's shape. Unknown keys are errors, so a typo never silently
/// falls back to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    listen: Option<String>,
    max_batch: Option<usize>,
    max_body_bytes: Option<usize>,
    future_skew: Option<String>,
    log: Option<String>,
    server: Option<String>,
    signing_key: Option<PathBuf>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// The ledger database.
    pub database_url: Setting<DatabaseUrl>,
    /// Where `serve` listens.
    pub listen: Setting<SocketAddr>,
    /// The most events per POST.
    pub max_batch: Setting<usize>,
    /// The largest request body in bytes.
    pub max_body_bytes: Setting<usize>,
    /// How far in the future `applied_at` may lie.
    pub future_skew: Setting<Duration>,
    /// The log filter (tracing `EnvFilter` syntax).
    pub log: Setting<String>,
    /// A server URL that client commands talk to instead of the local database.
    pub server: Setting<Option<String>>,
    /// The checkpoint signing key file; `None` means the default beside the
    /// ledger (see [`Config::signing_key_path`]).
    pub signing_key: Setting<Option<PathBuf>>,
}

/// Values given on the command line; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct FlagValues {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--max-batch`.
    pub max_batch: Option<usize>,
    /// `--max-body-bytes`.
    pub max_body_bytes: Option<usize>,
    /// `--future-skew`.
    pub future_skew: Option<String>,
    /// `--server`.
    pub server: Option<String>,
    /// `--signing-key`.
    pub signing_key: Option<PathBuf>,
}

/// The name of the default signing key file in the data directory.
pub const KEY_FILE: &str = "patchaudit.key";

/// The default config file, read when it exists and no other is named.
pub const DEFAULT_FILE: &str = "patchaudit.toml";

fn parse_listen(s: &str, origin: &str) -> Result<SocketAddr> {
    s.parse()
        .with_context(|| format!("{origin}: {s:?} is not an address like 127.0.0.1:8080"))
}

fn parse_skew(s: &str, origin: &str) -> Result<Duration> {
    humantime::parse_duration(s)
        .with_context(|| format!("{origin}: {s:?} is not a duration like 1h or 90s"))
}

fn env_var(name: &'static str, env: &dyn Fn(&str) -> Option<String>) -> Option<(String, Source)> {
    env(name).map(|v| (v, Source::Env(name)))
}

impl Config {
    /// Loads the layers. `env` is injected so tests need not touch the
    /// process environment.
    pub fn load(flags: &FlagValues, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let mut c = Config {
            file: None,
            database_url: Setting::default(DatabaseUrl::new("sqlite://patchaudit.db")),
            listen: Setting::default(SocketAddr::from(([127, 0, 0, 1], 8080))),
            max_batch: Setting::default(10_000),
            max_body_bytes: Setting::default(64 * 1024 * 1024),
            future_skew: Setting::default(Duration::from_secs(3600)),
            log: Setting::default("info".to_owned()),
            server: Setting::default(None),
            signing_key: Setting::default(None),
        };

        let (path, explicit) = match (&flags.config, env("PATCHAUDIT_CONFIG")) {
            (Some(p), _) => (Some(p.clone()), true),
            (None, Some(p)) => (Some(PathBuf::from(p)), true),
            (None, None) => {
                let p = Path::new(DEFAULT_FILE);
                (p.exists().then(|| p.to_path_buf()), false)
            }
        };
        if let Some(path) = path {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let f: FileConfig = toml::from_str(&text)
                        .with_context(|| format!("config file {}", path.display()))?;
                    let src = Source::File(path.clone());
                    let origin = format!("config file {}", path.display());
                    c.database_url
                        .set(f.database_url.map(DatabaseUrl::new), src.clone());
                    c.listen.set(
                        f.listen
                            .map(|s| parse_listen(&s, &format!("{origin}: listen")))
                            .transpose()?,
                        src.clone(),
                    );
                    c.max_batch.set(f.max_batch, src.clone());
                    c.max_body_bytes.set(f.max_body_bytes, src.clone());
                    c.future_skew.set(
                        f.future_skew
                            .map(|s| parse_skew(&s, &format!("{origin}: future_skew")))
                            .transpose()?,
                        src.clone(),
                    );
                    c.log.set(f.log, src.clone());
                    c.server.set(f.server.map(Some), src.clone());
                    c.signing_key.set(f.signing_key.map(Some), src);
                    c.file = Some(path);
                }
                Err(e) if explicit || e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e)
                        .with_context(|| format!("reading config file {}", path.display()));
                }
                Err(_) => {}
            }
        }

        if let Some((v, s)) = env_var("PATCHAUDIT_DATABASE_URL", env) {
            c.database_url.set(Some(DatabaseUrl::new(v)), s);
        }
        if let Some((v, s)) = env_var("PATCHAUDIT_LISTEN", env) {
            c.listen
                .set(Some(parse_listen(&v, "PATCHAUDIT_LISTEN")?), s);
        }
        if let Some((v, s)) = env_var("PATCHAUDIT_MAX_BATCH", env) {
            let n = v
                .parse()
                .with_context(|| format!("PATCHAUDIT_MAX_BATCH: {v:?} is not a whole number"))?;
            c.max_batch.set(Some(n), s);
        }
        if let Some((v, s)) = env_var("PATCHAUDIT_MAX_BODY_BYTES", env) {
            let n = v.parse().with_context(|| {
                format!("PATCHAUDIT_MAX_BODY_BYTES: {v:?} is not a whole number")
            })?;
            c.max_body_bytes.set(Some(n), s);
        }
        if let Some((v, s)) = env_var("PATCHAUDIT_FUTURE_SKEW", env) {
            c.future_skew
                .set(Some(parse_skew(&v, "PATCHAUDIT_FUTURE_SKEW")?), s);
        }
        if let Some((v, s)) = env_var("PATCHAUDIT_LOG", env) {
            c.log.set(Some(v), s);
        }
        if let Some((v, s)) = env_var("PATCHAUDIT_SERVER", env) {
            c.server.set(Some(Some(v)), s);
        }
        if let Some((v, s)) = env_var("PATCHAUDIT_SIGNING_KEY", env) {
            c.signing_key.set(Some(Some(PathBuf::from(v))), s);
        }

        c.database_url.set(
            flags.database_url.clone().map(DatabaseUrl::new),
            Source::Flag("--database-url"),
        );
        c.listen.set(
            flags
                .listen
                .as_deref()
                .map(|s| parse_listen(s, "--listen"))
                .transpose()?,
            Source::Flag("--listen"),
        );
        c.max_batch
            .set(flags.max_batch, Source::Flag("--max-batch"));
        c.max_body_bytes
            .set(flags.max_body_bytes, Source::Flag("--max-body-bytes"));
        c.future_skew.set(
            flags
                .future_skew
                .as_deref()
                .map(|s| parse_skew(s, "--future-skew"))
                .transpose()?,
            Source::Flag("--future-skew"),
        );
        c.server
            .set(flags.server.clone().map(Some), Source::Flag("--server"));
        c.signing_key.set(
            flags.signing_key.clone().map(Some),
            Source::Flag("--signing-key"),
        );

        if c.max_batch.value == 0 {
            bail!("max_batch ({}) must be at least 1", c.max_batch.source);
        }
        if c.max_body_bytes.value == 0 {
            bail!(
                "max_body_bytes ({}) must be at least 1",
                c.max_body_bytes.source
            );
        }
        Ok(c)
    }

    /// The server's limits as the server crate wants them.
    pub fn server_config(&self) -> patchaudit_server::ServerConfig {
        patchaudit_server::ServerConfig {
            max_batch: self.max_batch.value,
            max_body_bytes: self.max_body_bytes.value,
            max_future_skew_micros: i64::try_from(self.future_skew.value.as_micros())
                .unwrap_or(i64::MAX),
        }
    }

    /// Renders the effective configuration as TOML, secrets hidden, with the
    /// origin of each value as a comment.
    pub fn render(&self) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut out = String::new();
        match &self.file {
            Some(p) => out.push_str(&format!("# config file: {}\n", p.display())),
            None => out.push_str("# config file: none\n"),
        }
        let mut line =
            |k: &str, v: String, s: &Source| out.push_str(&format!("{k} = {v}  # {s}\n"));
        line(
            "database_url",
            q(&self.database_url.value.redacted()),
            &self.database_url.source,
        );
        line(
            "listen",
            q(&self.listen.value.to_string()),
            &self.listen.source,
        );
        line(
            "max_batch",
            self.max_batch.value.to_string(),
            &self.max_batch.source,
        );
        line(
            "max_body_bytes",
            self.max_body_bytes.value.to_string(),
            &self.max_body_bytes.source,
        );
        line(
            "future_skew",
            q(&humantime::format_duration(self.future_skew.value).to_string()),
            &self.future_skew.source,
        );
        line("log", q(&self.log.value), &self.log.source);
        if let Ok(p) = self.signing_key_path() {
            line(
                "signing_key",
                q(&p.display().to_string()),
                &self.signing_key.source,
            );
        }
        match &self.server.value {
            Some(s) => line("server", q(s), &self.server.source),
            None => out.push_str("# server: not set (client commands use the local database)\n"),
        }
        out
    }

    /// The checkpoint signing key file: the configured one, or
    /// `patchaudit.key` in the ledger's data directory (the SQLite file's
    /// directory, or the working directory for PostgreSQL).
    pub fn signing_key_path(&self) -> Result<PathBuf> {
        if let Some(p) = &self.signing_key.value {
            return Ok(p.clone());
        }
        Ok(match self.database_url.value.database()? {
            Database::Sqlite(db) => db
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .join(KEY_FILE),
            Database::Postgres(_) => PathBuf::from(KEY_FILE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn the_signing_key_lives_beside_the_ledger_unless_configured() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let at = |flags: FlagValues, env: &[(&str, &str)]| {
            Config::load(&flags, &env_of(env))
                .unwrap()
                .signing_key_path()
                .unwrap()
        };
        let db = |url: &str| FlagValues {
            database_url: Some(url.into()),
            config: Some(file.clone()),
            ..Default::default()
        };
        std::fs::write(&file, "").unwrap();
        assert_eq!(
            at(db("sqlite:///var/lib/pa/ledger.db"), &[]),
            PathBuf::from("/var/lib/pa/patchaudit.key")
        );
        assert_eq!(
            at(db("sqlite://ledger.db"), &[]),
            PathBuf::from("./patchaudit.key")
        );
        assert_eq!(
            at(db("postgres://u@h/db"), &[]),
            PathBuf::from("patchaudit.key")
        );
        std::fs::write(&file, "signing_key = \"/etc/pa/file.key\"\n").unwrap();
        assert_eq!(
            at(db("sqlite://x.db"), &[]),
            PathBuf::from("/etc/pa/file.key")
        );
        let env = [("PATCHAUDIT_SIGNING_KEY", "/etc/pa/env.key")];
        assert_eq!(
            at(db("sqlite://x.db"), &env),
            PathBuf::from("/etc/pa/env.key")
        );
        let flags = FlagValues {
            signing_key: Some("/etc/pa/flag.key".into()),
            ..db("sqlite://x.db")
        };
        assert_eq!(at(flags, &env), PathBuf::from("/etc/pa/flag.key"));
    }

    #[test]
    fn layers_override_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "max_batch = 5\nlisten = \"127.0.0.1:9000\"\nlog = \"debug\"\n",
        )
        .unwrap();
        let flags = FlagValues {
            config: Some(file.clone()),
            listen: Some("127.0.0.1:9002".into()),
            ..Default::default()
        };
        let env = env_of(&[
            ("PATCHAUDIT_LISTEN", "127.0.0.1:9001"),
            ("PATCHAUDIT_MAX_BATCH", "7"),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.max_batch.value, 7, "env beats file");
        assert_eq!(c.max_batch.source, Source::Env("PATCHAUDIT_MAX_BATCH"));
        assert_eq!(c.listen.value.port(), 9002, "flag beats env");
        assert_eq!(c.log.value, "debug", "file beats default");
        assert_eq!(c.log.source, Source::File(file));
        assert_eq!(c.future_skew.value, Duration::from_secs(3600));
        assert_eq!(c.future_skew.source, Source::Default);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "max_bacth = 5\n").unwrap();
        let flags = FlagValues {
            config: Some(file),
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&flags, &env_of(&[])).unwrap_err());
        assert!(err.contains("max_bacth"), "{err}");

        let err = format!(
            "{:#}",
            Config::load(
                &FlagValues::default(),
                &env_of(&[("PATCHAUDIT_FUTURE_SKEW", "soon")])
            )
            .unwrap_err()
        );
        assert!(err.contains("PATCHAUDIT_FUTURE_SKEW"), "{err}");
        let flags = FlagValues {
            max_batch: Some(0),
            ..Default::default()
        };
        assert!(Config::load(&flags, &env_of(&[])).is_err());
        let flags = FlagValues {
            config: Some("/nonexistent/c.toml".into()),
            ..Default::default()
        };
        assert!(
            format!("{:#}", Config::load(&flags, &env_of(&[])).unwrap_err())
                .contains("/nonexistent/c.toml")
        );
    }

    #[test]
    fn passwords_never_show() {
        let u = DatabaseUrl::new("postgres://audit:s3cret@db.internal:5432/ledger?sslmode=require");
        assert_eq!(
            u.redacted(),
            "postgres://audit:****@db.internal:5432/ledger?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("s3cret"));
        let c = Config::load(
            &FlagValues::default(),
            &env_of(&[("PATCHAUDIT_DATABASE_URL", "postgres://a:hunter2@h/d")]),
        )
        .unwrap();
        assert!(!c.render().contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            DatabaseUrl::new("sqlite://x.db").redacted(),
            "sqlite://x.db"
        );
        assert_eq!(
            DatabaseUrl::new("postgres://h/d").redacted(),
            "postgres://h/d"
        );
    }

    #[test]
    fn database_urls() {
        assert_eq!(
            DatabaseUrl::new("sqlite://patchaudit.db")
                .database()
                .unwrap(),
            Database::Sqlite("patchaudit.db".into())
        );
        assert_eq!(
            DatabaseUrl::new("sqlite:///var/lib/p.db")
                .database()
                .unwrap(),
            Database::Sqlite("/var/lib/p.db".into())
        );
        assert!(matches!(
            DatabaseUrl::new("postgres://u:p@h/d").database().unwrap(),
            Database::Postgres(_)
        ));
        assert!(DatabaseUrl::new("patchaudit.db").database().is_err());
        assert!(DatabaseUrl::new("mysql://h/d").database().is_err());
        assert!(DatabaseUrl::new("sqlite://").database().is_err());
    }
}
