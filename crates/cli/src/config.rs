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

/// An API token: shown as `****` in `Debug` output and in `patchaudit config`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for sending only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
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
    token: Option<String>,
    ca_cert: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    allow_insecure_listen: Option<bool>,
    metrics_public: Option<bool>,
    rate_limit: Option<u32>,
    rate_burst: Option<u32>,
    max_concurrent_requests: Option<usize>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    nats_url: Option<String>,
    consume_nats: Option<String>,
    kafka_brokers: Option<String>,
    consume_kafka: Option<String>,
    webhook_urls: Option<Vec<String>>,
    webhook_secret: Option<String>,
    webhook_max_attempts: Option<u32>,
    alert_bad_patch_systems: Option<usize>,
    alert_bad_patch_window: Option<String>,
    alert_overdue_every: Option<String>,
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
    /// The API token client commands send to a server.
    pub token: Setting<Option<Secret>>,
    /// A PEM CA certificate client commands trust besides the operating
    /// system's trust store and Mozilla's roots.
    pub ca_cert: Setting<Option<PathBuf>>,
    /// The server's PEM certificate chain; with `tls_key`, `serve` speaks TLS.
    pub tls_cert: Setting<Option<PathBuf>>,
    /// The server's PEM private key.
    pub tls_key: Setting<Option<PathBuf>>,
    /// Whether `serve` may listen on a non-loopback address without TLS.
    pub allow_insecure_listen: Setting<bool>,
    /// Whether `/metrics` answers without a token.
    pub metrics_public: Setting<bool>,
    /// Requests per second per token; 0 turns rate limiting off.
    pub rate_limit: Setting<u32>,
    /// Requests a token may make in a burst above its rate.
    pub rate_burst: Setting<u32>,
    /// Requests in flight beyond which new ones get a 503; 0 means no cap.
    pub max_concurrent_requests: Setting<usize>,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Setting<Duration>,
    /// How long a client may take to send a request's body.
    pub body_timeout: Setting<Duration>,
    /// The NATS server the stream publishes to.
    pub nats_url: Setting<Option<Secret>>,
    /// A NATS subject `serve` records events from.
    pub consume_nats: Setting<Option<String>>,
    /// Kafka bootstrap brokers the stream publishes to.
    pub kafka_brokers: Setting<Option<String>>,
    /// A Kafka topic `serve` records events from.
    pub consume_kafka: Setting<Option<String>>,
    /// Webhooks every event and alert is POSTed to.
    pub webhook_urls: Setting<Vec<String>>,
    /// The HMAC key webhooks are signed with.
    pub webhook_secret: Setting<Option<Secret>>,
    /// Attempts before a webhook message becomes a dead letter.
    pub webhook_max_attempts: Setting<u32>,
    /// The `bad_patch` alert fires when a patch failed on this many systems...
    pub alert_bad_patch_systems: Setting<usize>,
    /// ...within this window.
    pub alert_bad_patch_window: Setting<Duration>,
    /// How often overdue pairs are looked for; zero turns that rule off.
    pub alert_overdue_every: Setting<Duration>,
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
    /// `--token`.
    pub token: Option<String>,
    /// `--ca-cert`.
    pub ca_cert: Option<PathBuf>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--allow-insecure-listen` (only ever turns it on).
    pub allow_insecure_listen: Option<bool>,
    /// `--public-metrics` (only ever turns it on).
    pub metrics_public: Option<bool>,
    /// `--rate-limit`.
    pub rate_limit: Option<u32>,
    /// `--rate-burst`.
    pub rate_burst: Option<u32>,
    /// `--max-concurrent-requests`.
    pub max_concurrent_requests: Option<usize>,
    /// `--header-timeout`.
    pub header_timeout: Option<String>,
    /// `--body-timeout`.
    pub body_timeout: Option<String>,
    /// `--nats-url`.
    pub nats_url: Option<String>,
    /// `--consume-nats`.
    pub consume_nats: Option<String>,
    /// `--kafka-brokers`.
    pub kafka_brokers: Option<String>,
    /// `--consume-kafka`.
    pub consume_kafka: Option<String>,
    /// `--webhook-url` (repeatable; empty means "not given").
    pub webhook_urls: Vec<String>,
    /// `--webhook-secret`.
    pub webhook_secret: Option<String>,
    /// `--webhook-max-attempts`.
    pub webhook_max_attempts: Option<u32>,
    /// `--alert-bad-patch-systems`.
    pub alert_bad_patch_systems: Option<usize>,
    /// `--alert-bad-patch-window`.
    pub alert_bad_patch_window: Option<String>,
    /// `--alert-overdue-every`.
    pub alert_overdue_every: Option<String>,
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

/// A config file that holds a token should be readable by its owner only.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                eprintln!(
                    "warning: config file {} holds a token and can be read by other users (mode {mode:o}); chmod 600 it",
                    path.display()
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn parse_bool(s: &str, origin: &str) -> Result<bool> {
    match s {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("{origin}: {s:?} is not true or false"),
    }
}

fn parse_number<T: std::str::FromStr>(s: &str, origin: &str) -> Result<T> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("{origin}: {s:?} is not a whole number"))
}

/// Applies an environment variable to a setting, parsing it with `parse`.
fn from_env<T>(
    setting: &mut Setting<T>,
    name: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    parse: impl Fn(&str, &str) -> Result<T>,
) -> Result<()> {
    if let Some(v) = env(name) {
        setting.set(Some(parse(&v, name)?), Source::Env(name));
    }
    Ok(())
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
            token: Setting::default(None),
            ca_cert: Setting::default(None),
            tls_cert: Setting::default(None),
            tls_key: Setting::default(None),
            allow_insecure_listen: Setting::default(false),
            metrics_public: Setting::default(false),
            rate_limit: Setting::default(100),
            rate_burst: Setting::default(200),
            max_concurrent_requests: Setting::default(512),
            header_timeout: Setting::default(Duration::from_secs(30)),
            body_timeout: Setting::default(Duration::from_secs(60)),
            nats_url: Setting::default(None),
            consume_nats: Setting::default(None),
            kafka_brokers: Setting::default(None),
            consume_kafka: Setting::default(None),
            webhook_urls: Setting::default(Vec::new()),
            webhook_secret: Setting::default(None),
            webhook_max_attempts: Setting::default(8),
            alert_bad_patch_systems: Setting::default(3),
            alert_bad_patch_window: Setting::default(Duration::from_secs(3600)),
            alert_overdue_every: Setting::default(Duration::from_secs(60)),
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
                    // The error names the place, never the line itself:
                    // that line may hold the token.
                    let f: FileConfig = toml::from_str(&text).map_err(|e| {
                        let at = e.span().map(|s| {
                            let before = &text[..s.start.min(text.len())];
                            let line = before.matches('\n').count() + 1;
                            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                            let column = before.len() - line_start + 1;
                            // The key is safe to name; the value is not.
                            let key = text[line_start..]
                                .split(['\n', '='])
                                .next()
                                .map(str::trim)
                                .filter(|k| {
                                    !k.is_empty()
                                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                                })
                                .map(|k| format!(", key {k}"))
                                .unwrap_or_default();
                            format!(" at line {line}, column {column}{key}")
                        });
                        anyhow::anyhow!(
                            "config file {}{}: {}",
                            path.display(),
                            at.unwrap_or_default(),
                            e.message()
                        )
                    })?;
                    if f.token.is_some() || f.webhook_secret.is_some() {
                        warn_if_shared(&path);
                    }
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
                    c.signing_key.set(f.signing_key.map(Some), src.clone());
                    c.token
                        .set(f.token.map(|t| Some(Secret::new(t))), src.clone());
                    c.ca_cert.set(f.ca_cert.map(Some), src.clone());
                    c.tls_cert.set(f.tls_cert.map(Some), src.clone());
                    c.tls_key.set(f.tls_key.map(Some), src.clone());
                    c.allow_insecure_listen
                        .set(f.allow_insecure_listen, src.clone());
                    c.metrics_public.set(f.metrics_public, src.clone());
                    c.rate_limit.set(f.rate_limit, src.clone());
                    c.rate_burst.set(f.rate_burst, src.clone());
                    c.max_concurrent_requests
                        .set(f.max_concurrent_requests, src.clone());
                    c.header_timeout.set(
                        f.header_timeout
                            .map(|s| parse_skew(&s, &format!("{origin}: header_timeout")))
                            .transpose()?,
                        src.clone(),
                    );
                    c.body_timeout.set(
                        f.body_timeout
                            .map(|s| parse_skew(&s, &format!("{origin}: body_timeout")))
                            .transpose()?,
                        src.clone(),
                    );
                    c.nats_url
                        .set(f.nats_url.map(|u| Some(Secret::new(u))), src.clone());
                    c.consume_nats.set(f.consume_nats.map(Some), src.clone());
                    c.kafka_brokers.set(f.kafka_brokers.map(Some), src.clone());
                    c.consume_kafka.set(f.consume_kafka.map(Some), src.clone());
                    c.webhook_urls.set(f.webhook_urls, src.clone());
                    c.webhook_secret
                        .set(f.webhook_secret.map(|t| Some(Secret::new(t))), src.clone());
                    c.webhook_max_attempts
                        .set(f.webhook_max_attempts, src.clone());
                    c.alert_bad_patch_systems
                        .set(f.alert_bad_patch_systems, src.clone());
                    c.alert_bad_patch_window.set(
                        f.alert_bad_patch_window
                            .map(|s| parse_skew(&s, &format!("{origin}: alert_bad_patch_window")))
                            .transpose()?,
                        src.clone(),
                    );
                    c.alert_overdue_every.set(
                        f.alert_overdue_every
                            .map(|s| parse_skew(&s, &format!("{origin}: alert_overdue_every")))
                            .transpose()?,
                        src,
                    );
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

        from_env(&mut c.token, "PATCHAUDIT_TOKEN", env, |v, _| {
            Ok(Some(Secret::new(v)))
        })?;
        from_env(&mut c.ca_cert, "PATCHAUDIT_CA_CERT", env, |v, _| {
            Ok(Some(PathBuf::from(v)))
        })?;
        from_env(&mut c.tls_cert, "PATCHAUDIT_TLS_CERT", env, |v, _| {
            Ok(Some(PathBuf::from(v)))
        })?;
        from_env(&mut c.tls_key, "PATCHAUDIT_TLS_KEY", env, |v, _| {
            Ok(Some(PathBuf::from(v)))
        })?;
        from_env(
            &mut c.allow_insecure_listen,
            "PATCHAUDIT_ALLOW_INSECURE_LISTEN",
            env,
            parse_bool,
        )?;
        from_env(
            &mut c.metrics_public,
            "PATCHAUDIT_METRICS_PUBLIC",
            env,
            parse_bool,
        )?;
        from_env(
            &mut c.rate_limit,
            "PATCHAUDIT_RATE_LIMIT",
            env,
            parse_number,
        )?;
        from_env(
            &mut c.rate_burst,
            "PATCHAUDIT_RATE_BURST",
            env,
            parse_number,
        )?;
        from_env(
            &mut c.max_concurrent_requests,
            "PATCHAUDIT_MAX_CONCURRENT_REQUESTS",
            env,
            parse_number,
        )?;
        from_env(
            &mut c.header_timeout,
            "PATCHAUDIT_HEADER_TIMEOUT",
            env,
            parse_skew,
        )?;
        from_env(
            &mut c.body_timeout,
            "PATCHAUDIT_BODY_TIMEOUT",
            env,
            parse_skew,
        )?;
        from_env(&mut c.nats_url, "PATCHAUDIT_NATS_URL", env, |v, _| {
            Ok(Some(Secret::new(v)))
        })?;
        from_env(
            &mut c.consume_nats,
            "PATCHAUDIT_CONSUME_NATS",
            env,
            |v, _| Ok(Some(v.to_owned())),
        )?;
        from_env(
            &mut c.kafka_brokers,
            "PATCHAUDIT_KAFKA_BROKERS",
            env,
            |v, _| Ok(Some(v.to_owned())),
        )?;
        from_env(
            &mut c.consume_kafka,
            "PATCHAUDIT_CONSUME_KAFKA",
            env,
            |v, _| Ok(Some(v.to_owned())),
        )?;
        from_env(
            &mut c.webhook_urls,
            "PATCHAUDIT_WEBHOOK_URLS",
            env,
            |v, _| {
                Ok(v.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect())
            },
        )?;
        from_env(
            &mut c.webhook_secret,
            "PATCHAUDIT_WEBHOOK_SECRET",
            env,
            |v, _| Ok(Some(Secret::new(v))),
        )?;
        from_env(
            &mut c.webhook_max_attempts,
            "PATCHAUDIT_WEBHOOK_MAX_ATTEMPTS",
            env,
            parse_number,
        )?;
        from_env(
            &mut c.alert_bad_patch_systems,
            "PATCHAUDIT_ALERT_BAD_PATCH_SYSTEMS",
            env,
            parse_number,
        )?;
        from_env(
            &mut c.alert_bad_patch_window,
            "PATCHAUDIT_ALERT_BAD_PATCH_WINDOW",
            env,
            parse_skew,
        )?;
        from_env(
            &mut c.alert_overdue_every,
            "PATCHAUDIT_ALERT_OVERDUE_EVERY",
            env,
            parse_skew,
        )?;

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

        c.token.set(
            flags.token.clone().map(|t| Some(Secret::new(t))),
            Source::Flag("--token"),
        );
        c.ca_cert
            .set(flags.ca_cert.clone().map(Some), Source::Flag("--ca-cert"));
        c.tls_cert
            .set(flags.tls_cert.clone().map(Some), Source::Flag("--tls-cert"));
        c.tls_key
            .set(flags.tls_key.clone().map(Some), Source::Flag("--tls-key"));
        c.allow_insecure_listen.set(
            flags.allow_insecure_listen,
            Source::Flag("--allow-insecure-listen"),
        );
        c.metrics_public
            .set(flags.metrics_public, Source::Flag("--public-metrics"));
        c.rate_limit
            .set(flags.rate_limit, Source::Flag("--rate-limit"));
        c.rate_burst
            .set(flags.rate_burst, Source::Flag("--rate-burst"));
        c.max_concurrent_requests.set(
            flags.max_concurrent_requests,
            Source::Flag("--max-concurrent-requests"),
        );
        c.header_timeout.set(
            flags
                .header_timeout
                .as_deref()
                .map(|s| parse_skew(s, "--header-timeout"))
                .transpose()?,
            Source::Flag("--header-timeout"),
        );
        c.body_timeout.set(
            flags
                .body_timeout
                .as_deref()
                .map(|s| parse_skew(s, "--body-timeout"))
                .transpose()?,
            Source::Flag("--body-timeout"),
        );
        c.nats_url.set(
            flags.nats_url.clone().map(|u| Some(Secret::new(u))),
            Source::Flag("--nats-url"),
        );
        c.consume_nats.set(
            flags.consume_nats.clone().map(Some),
            Source::Flag("--consume-nats"),
        );
        c.kafka_brokers.set(
            flags.kafka_brokers.clone().map(Some),
            Source::Flag("--kafka-brokers"),
        );
        c.consume_kafka.set(
            flags.consume_kafka.clone().map(Some),
            Source::Flag("--consume-kafka"),
        );
        c.webhook_urls.set(
            (!flags.webhook_urls.is_empty()).then(|| flags.webhook_urls.clone()),
            Source::Flag("--webhook-url"),
        );
        c.webhook_secret.set(
            flags.webhook_secret.clone().map(|t| Some(Secret::new(t))),
            Source::Flag("--webhook-secret"),
        );
        c.webhook_max_attempts.set(
            flags.webhook_max_attempts,
            Source::Flag("--webhook-max-attempts"),
        );
        c.alert_bad_patch_systems.set(
            flags.alert_bad_patch_systems,
            Source::Flag("--alert-bad-patch-systems"),
        );
        c.alert_bad_patch_window.set(
            flags
                .alert_bad_patch_window
                .as_deref()
                .map(|s| parse_skew(s, "--alert-bad-patch-window"))
                .transpose()?,
            Source::Flag("--alert-bad-patch-window"),
        );
        c.alert_overdue_every.set(
            flags
                .alert_overdue_every
                .as_deref()
                .map(|s| parse_skew(s, "--alert-overdue-every"))
                .transpose()?,
            Source::Flag("--alert-overdue-every"),
        );
        if !c.webhook_urls.value.is_empty() && c.webhook_secret.value.is_none() {
            bail!(
                "webhooks ({}) need a signing secret: set webhook_secret, PATCHAUDIT_WEBHOOK_SECRET or --webhook-secret",
                c.webhook_urls.source
            );
        }
        for url in &c.webhook_urls.value {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!(
                    "webhook URL {url:?} ({}) must start with https:// or http://",
                    c.webhook_urls.source
                );
            }
        }
        if c.consume_nats.value.is_some() && c.nats_url.value.is_none() {
            bail!(
                "consume_nats ({}) needs a NATS server: set nats_url, PATCHAUDIT_NATS_URL or --nats-url",
                c.consume_nats.source
            );
        }
        if c.consume_kafka.value.is_some() && c.kafka_brokers.value.is_none() {
            bail!(
                "consume_kafka ({}) needs Kafka brokers: set kafka_brokers, PATCHAUDIT_KAFKA_BROKERS or --kafka-brokers",
                c.consume_kafka.source
            );
        }
        if c.alert_bad_patch_systems.value == 0 {
            bail!(
                "alert_bad_patch_systems ({}) must be at least 1",
                c.alert_bad_patch_systems.source
            );
        }
        if c.tls_cert.value.is_some() != c.tls_key.value.is_some() {
            bail!(
                "TLS needs both a certificate and a key: tls_cert is {} ({}), tls_key is {} ({})",
                if c.tls_cert.value.is_some() {
                    "set"
                } else {
                    "not set"
                },
                c.tls_cert.source,
                if c.tls_key.value.is_some() {
                    "set"
                } else {
                    "not set"
                },
                c.tls_key.source
            );
        }
        if c.header_timeout.value.is_zero() {
            bail!(
                "header_timeout ({}) must be more than zero",
                c.header_timeout.source
            );
        }

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
            metrics_public: self.metrics_public.value,
            rate_limit_per_second: self.rate_limit.value,
            rate_limit_burst: self.rate_burst.value,
            max_concurrent_requests: self.max_concurrent_requests.value,
            body_timeout: self.body_timeout.value,
            header_timeout: self.header_timeout.value,
        }
    }

    /// What the stream does, as the server crate wants it.
    pub fn stream_config(&self) -> patchaudit_server::stream::StreamConfig {
        use patchaudit_server::stream::{alerts::AlertConfig, webhook};
        let secret = self
            .webhook_secret
            .value
            .as_ref()
            .map(|s| webhook::WebhookSecret::new(s.expose()))
            .unwrap_or_else(|| webhook::WebhookSecret::new(""));
        patchaudit_server::stream::StreamConfig {
            nats_url: self.nats_url.value.as_ref().map(|u| u.expose().to_owned()),
            webhooks: self
                .webhook_urls
                .value
                .iter()
                .map(|url| webhook::WebhookConfig {
                    url: url.clone(),
                    secret: secret.clone(),
                    max_attempts: self.webhook_max_attempts.value,
                    first_backoff: Duration::from_millis(500),
                })
                .collect(),
            alerts: AlertConfig {
                bad_patch_systems: self.alert_bad_patch_systems.value,
                bad_patch_window: self.alert_bad_patch_window.value,
                overdue_every: self.alert_overdue_every.value,
            },
            consume_nats: self.consume_nats.value.clone(),
            kafka_brokers: self.kafka_brokers.value.clone(),
            consume_kafka: self.consume_kafka.value.clone(),
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
        let line = |out: &mut String, k: &str, v: String, s: &Source| {
            out.push_str(&format!("{k} = {v}  # {s}\n"))
        };
        line(
            &mut out,
            "database_url",
            q(&self.database_url.value.redacted()),
            &self.database_url.source,
        );
        line(
            &mut out,
            "listen",
            q(&self.listen.value.to_string()),
            &self.listen.source,
        );
        line(
            &mut out,
            "max_batch",
            self.max_batch.value.to_string(),
            &self.max_batch.source,
        );
        line(
            &mut out,
            "max_body_bytes",
            self.max_body_bytes.value.to_string(),
            &self.max_body_bytes.source,
        );
        line(
            &mut out,
            "future_skew",
            q(&humantime::format_duration(self.future_skew.value).to_string()),
            &self.future_skew.source,
        );
        line(&mut out, "log", q(&self.log.value), &self.log.source);
        if let Ok(p) = self.signing_key_path() {
            line(
                &mut out,
                "signing_key",
                q(&p.display().to_string()),
                &self.signing_key.source,
            );
        }
        match &self.server.value {
            Some(s) => line(&mut out, "server", q(s), &self.server.source),
            None => out.push_str("# server: not set (client commands use the local database)\n"),
        }
        match &self.token.value {
            Some(_) => line(&mut out, "token", q("****"), &self.token.source),
            None => out.push_str("# token: not set\n"),
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| q(&p.display().to_string()));
        for (k, v, s) in [
            ("ca_cert", path(&self.ca_cert.value), &self.ca_cert.source),
            (
                "tls_cert",
                path(&self.tls_cert.value),
                &self.tls_cert.source,
            ),
            ("tls_key", path(&self.tls_key.value), &self.tls_key.source),
        ] {
            match v {
                Some(v) => line(&mut out, k, v, s),
                None => out.push_str(&format!("# {k}: not set\n")),
            }
        }
        line(
            &mut out,
            "allow_insecure_listen",
            self.allow_insecure_listen.value.to_string(),
            &self.allow_insecure_listen.source,
        );
        line(
            &mut out,
            "metrics_public",
            self.metrics_public.value.to_string(),
            &self.metrics_public.source,
        );
        line(
            &mut out,
            "rate_limit",
            self.rate_limit.value.to_string(),
            &self.rate_limit.source,
        );
        line(
            &mut out,
            "rate_burst",
            self.rate_burst.value.to_string(),
            &self.rate_burst.source,
        );
        line(
            &mut out,
            "max_concurrent_requests",
            self.max_concurrent_requests.value.to_string(),
            &self.max_concurrent_requests.source,
        );
        line(
            &mut out,
            "header_timeout",
            q(&humantime::format_duration(self.header_timeout.value).to_string()),
            &self.header_timeout.source,
        );
        line(
            &mut out,
            "body_timeout",
            q(&humantime::format_duration(self.body_timeout.value).to_string()),
            &self.body_timeout.source,
        );
        match &self.nats_url.value {
            // The URL may carry a user and password.
            Some(_) => line(&mut out, "nats_url", q("****"), &self.nats_url.source),
            None => out.push_str("# nats_url: not set (no NATS sink)\n"),
        }
        match &self.consume_nats.value {
            Some(s) => line(&mut out, "consume_nats", q(s), &self.consume_nats.source),
            None => out.push_str("# consume_nats: not set\n"),
        }
        match &self.kafka_brokers.value {
            Some(b) => line(&mut out, "kafka_brokers", q(b), &self.kafka_brokers.source),
            None => out.push_str("# kafka_brokers: not set (no Kafka sink)\n"),
        }
        match &self.consume_kafka.value {
            Some(t) => line(&mut out, "consume_kafka", q(t), &self.consume_kafka.source),
            None => out.push_str("# consume_kafka: not set\n"),
        }
        line(
            &mut out,
            "webhook_urls",
            toml::Value::Array(
                self.webhook_urls
                    .value
                    .iter()
                    .map(|u| toml::Value::String(u.clone()))
                    .collect(),
            )
            .to_string(),
            &self.webhook_urls.source,
        );
        match &self.webhook_secret.value {
            Some(_) => line(
                &mut out,
                "webhook_secret",
                q("****"),
                &self.webhook_secret.source,
            ),
            None => out.push_str("# webhook_secret: not set\n"),
        }
        line(
            &mut out,
            "webhook_max_attempts",
            self.webhook_max_attempts.value.to_string(),
            &self.webhook_max_attempts.source,
        );
        line(
            &mut out,
            "alert_bad_patch_systems",
            self.alert_bad_patch_systems.value.to_string(),
            &self.alert_bad_patch_systems.source,
        );
        line(
            &mut out,
            "alert_bad_patch_window",
            q(&humantime::format_duration(self.alert_bad_patch_window.value).to_string()),
            &self.alert_bad_patch_window.source,
        );
        line(
            &mut out,
            "alert_overdue_every",
            q(&humantime::format_duration(self.alert_overdue_every.value).to_string()),
            &self.alert_overdue_every.source,
        );
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
    fn tokens_never_show_and_security_settings_layer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "token = \"pa_file\"\nrate_limit = 5\nbody_timeout = \"10s\"\nmetrics_public = true\n",
        )
        .unwrap();
        let flags = FlagValues {
            config: Some(file.clone()),
            rate_burst: Some(9),
            ..Default::default()
        };
        let env = env_of(&[
            ("PATCHAUDIT_TOKEN", "pa_env_secret"),
            ("PATCHAUDIT_RATE_LIMIT", "7"),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        assert_eq!(c.token.value.as_ref().unwrap().expose(), "pa_env_secret");
        assert_eq!(c.token.source, Source::Env("PATCHAUDIT_TOKEN"));
        assert!(!format!("{c:?}").contains("pa_env_secret"));
        assert!(!c.render().contains("pa_env_secret"));
        assert!(c.render().contains("token = \"****\""), "{}", c.render());
        assert_eq!(c.rate_limit.value, 7, "env beats file");
        assert_eq!(c.rate_burst.value, 9);
        assert_eq!(c.body_timeout.value, Duration::from_secs(10));
        assert!(c.metrics_public.value);
        let s = c.server_config();
        assert_eq!((s.rate_limit_per_second, s.rate_limit_burst), (7, 9));
        assert!(s.metrics_public);

        let flags = FlagValues {
            tls_cert: Some("/etc/pa/cert.pem".into()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&flags, &env_of(&[])).unwrap_err());
        assert!(err.contains("tls_key is not set"), "{err}");
        // A malformed file names the place, never the line: it may hold the token.
        std::fs::write(&file, "rate_limit = 5\ntoken = pa_unquoted_secret_value\n").unwrap();
        let flags = FlagValues {
            config: Some(file.clone()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&flags, &env_of(&[])).unwrap_err());
        assert!(err.contains("line 2") && err.contains("key token"), "{err}");
        assert!(!err.contains("unquoted_secret"), "{err}");
        let err = format!(
            "{:#}",
            Config::load(
                &FlagValues::default(),
                &env_of(&[("PATCHAUDIT_RATE_LIMIT", "fast")])
            )
            .unwrap_err()
        );
        assert!(err.contains("PATCHAUDIT_RATE_LIMIT"), "{err}");
        let err = format!(
            "{:#}",
            Config::load(
                &FlagValues::default(),
                &env_of(&[("PATCHAUDIT_METRICS_PUBLIC", "maybe")])
            )
            .unwrap_err()
        );
        assert!(err.contains("PATCHAUDIT_METRICS_PUBLIC"), "{err}");
    }

    #[test]
    fn stream_settings_layer_and_their_secrets_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "webhook_urls = [\"https://a.example/h\"]\nwebhook_secret = \"file-secret\"\n\
             nats_url = \"nats://u:natspass@127.0.0.1:4222\"\nalert_bad_patch_systems = 5\n",
        )
        .unwrap();
        let flags = FlagValues {
            config: Some(file.clone()),
            alert_bad_patch_window: Some("30m".into()),
            ..Default::default()
        };
        let env = env_of(&[
            ("PATCHAUDIT_WEBHOOK_SECRET", "env-secret"),
            (
                "PATCHAUDIT_WEBHOOK_URLS",
                "https://b.example/h, http://c.example/h",
            ),
            ("PATCHAUDIT_KAFKA_BROKERS", "127.0.0.1:9092"),
        ]);
        let c = Config::load(&flags, &env).unwrap();
        let sc = c.stream_config();
        assert_eq!(
            sc.webhooks
                .iter()
                .map(|w| w.url.as_str())
                .collect::<Vec<_>>(),
            ["https://b.example/h", "http://c.example/h"],
            "env overrides the file"
        );
        assert_eq!(sc.alerts.bad_patch_systems, 5);
        assert_eq!(sc.alerts.bad_patch_window, Duration::from_secs(1800));
        assert_eq!(sc.kafka_brokers.as_deref(), Some("127.0.0.1:9092"));
        assert_eq!(
            sc.nats_url.as_deref(),
            Some("nats://u:natspass@127.0.0.1:4222")
        );
        let shown = format!("{}{c:?}{sc:?}", c.render());
        for secret in ["env-secret", "file-secret", "natspass"] {
            assert!(!shown.contains(secret), "{secret} shows in: {shown}");
        }
        assert!(c
            .render()
            .contains("webhook_urls = [\"https://b.example/h\""));

        // Webhooks need a secret and a URL scheme; consumers need their broker.
        let no_secret = FlagValues {
            webhook_urls: vec!["https://a.example/h".into()],
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&no_secret, &env_of(&[])).unwrap_err());
        assert!(err.contains("need a signing secret"), "{err}");
        let bad_url = FlagValues {
            webhook_urls: vec!["ftp://a.example/h".into()],
            webhook_secret: Some("s".into()),
            ..Default::default()
        };
        let err = format!("{:#}", Config::load(&bad_url, &env_of(&[])).unwrap_err());
        assert!(
            err.contains("ftp://a.example/h") && err.contains("--webhook-url"),
            "{err}"
        );
        for (flags, needs) in [
            (
                FlagValues {
                    consume_kafka: Some("t".into()),
                    ..Default::default()
                },
                "needs Kafka brokers",
            ),
            (
                FlagValues {
                    consume_nats: Some("s".into()),
                    ..Default::default()
                },
                "needs a NATS server",
            ),
            (
                FlagValues {
                    alert_bad_patch_systems: Some(0),
                    ..Default::default()
                },
                "at least 1",
            ),
        ] {
            let err = format!("{:#}", Config::load(&flags, &env_of(&[])).unwrap_err());
            assert!(err.contains(needs), "{err}");
        }
        let err = format!(
            "{:#}",
            Config::load(
                &FlagValues::default(),
                &env_of(&[("PATCHAUDIT_ALERT_BAD_PATCH_WINDOW", "soon")])
            )
            .unwrap_err()
        );
        assert!(err.contains("PATCHAUDIT_ALERT_BAD_PATCH_WINDOW"), "{err}");
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
