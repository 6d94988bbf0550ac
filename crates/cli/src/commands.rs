//! The subcommands.

use crate::backend::Backend;
use crate::config::{Config, Database, FlagValues};
use crate::exit::Failure;
use crate::{
    Cli, ClientArgs, Command, EventsArgs, ImportArgs, InputFormat, ListFormat, LogArgs, LogFormat,
    PatchArgs, ServeArgs, SummaryFormat, SystemsArgs,
};
use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use patchaudit_domain::{
    validate_batch, EventFilter, EventId, Input, NewEvent, RawEvent, Status, Timestamp,
    ValidationContext,
};
use patchaudit_server::wire::{self, Decoded};
use patchaudit_store::{PgOptions, PgStore, SqliteOptions, SqliteStore, Store};
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let serve_flags = match &cli.command {
        Command::Serve(a) | Command::Config(a) => a.clone(),
        _ => ServeArgs::default(),
    };
    let client_server = match &cli.command {
        Command::Log(a) => a.client.server.clone(),
        Command::Import(a) => a.client.server.clone(),
        Command::Events(a) => a.client.server.clone(),
        Command::Systems(a) => a.client.server.clone(),
        Command::Patch(a) => a.client.server.clone(),
        Command::Catalog(a) => a.client().server.clone(),
        Command::Tags(a) => a.client().server.clone(),
        Command::Inventory(a) => a.client().server.clone(),
        Command::Policy(a) => a.client().server.clone(),
        Command::Exception(a) => a.client().server.clone(),
        Command::Report(a) => a.client().server.clone(),
        Command::Token(a) => a.client().server.clone(),
        Command::Changes(a) => a.client().server.clone(),
        Command::Stream(a) => a.client().server.clone(),
        _ => None,
    };
    let flags = FlagValues {
        config: cli.global.config.clone(),
        database_url: cli.global.database_url.clone(),
        listen: serve_flags.listen,
        max_batch: serve_flags.max_batch,
        max_body_bytes: serve_flags.max_body_bytes,
        future_skew: serve_flags.future_skew,
        server: client_server,
        signing_key: cli.global.signing_key.clone(),
        token: cli.global.token.clone(),
        ca_cert: cli.global.ca_cert.clone(),
        tls_cert: serve_flags.tls_cert,
        tls_key: serve_flags.tls_key,
        allow_insecure_listen: serve_flags.allow_insecure_listen.then_some(true),
        metrics_public: serve_flags.public_metrics.then_some(true),
        rate_limit: serve_flags.rate_limit,
        rate_burst: serve_flags.rate_burst,
        max_concurrent_requests: serve_flags.max_concurrent_requests,
        header_timeout: serve_flags.header_timeout,
        body_timeout: serve_flags.body_timeout,
        nats_url: serve_flags.nats_url,
        consume_nats: serve_flags.consume_nats,
        kafka_brokers: serve_flags.kafka_brokers,
        consume_kafka: serve_flags.consume_kafka,
        webhook_urls: serve_flags.webhook_urls,
        webhook_secret: serve_flags.webhook_secret,
        webhook_max_attempts: serve_flags.webhook_max_attempts,
        alert_bad_patch_systems: serve_flags.alert_bad_patch_systems,
        alert_bad_patch_window: serve_flags.alert_bad_patch_window,
        alert_overdue_every: serve_flags.alert_overdue_every,
    };
    let env = |k: &str| std::env::var(k).ok();
    let config = Config::load(&flags, &env).map_err(|e| Failure::usage(format!("{e:#}")))?;
    init_logging(&config, matches!(cli.command, Command::Serve(_)));

    match cli.command {
        Command::Serve(_) => serve(&config).await,
        Command::Config(_) => {
            let mut out = std::io::stdout().lock();
            out.write_all(config.render().as_bytes())?;
            Ok(())
        }
        Command::Log(a) => log(&config, a).await,
        Command::Import(a) => import(&config, a).await,
        Command::Collect(a) => crate::collect::collect(&config, a).await,
        Command::Events(a) => events(&config, a).await,
        Command::Systems(a) => systems(&config, a).await,
        Command::Patch(a) => patch(&config, a).await,
        Command::Verify(a) => crate::audit::verify(&config, a).await,
        Command::Prove(a) => crate::audit::prove(&config, a).await,
        Command::Export(a) => crate::audit::export(&config, a).await,
        Command::Key(a) => crate::audit::key(&config, a),
        Command::Catalog(a) => crate::compliance::catalog(&config, a).await,
        Command::Tags(a) => crate::compliance::tags(&config, a).await,
        Command::Inventory(a) => crate::inventory::run(&config, a).await,
        Command::Policy(a) => crate::compliance::policy(&config, a).await,
        Command::Exception(a) => crate::compliance::exception(&config, a).await,
        Command::Report(a) => crate::compliance::report(&config, a).await,
        Command::Token(a) => crate::tokens::run(&config, a).await,
        Command::Changes(a) => crate::changes::run(&config, a).await,
        Command::Stream(a) => crate::stream::run(&config, a).await,
    }
}

fn init_logging(config: &Config, serving: bool) {
    // Client commands print their results on stdout; only warnings and
    // errors go to stderr unless a log level was asked for explicitly.
    let filter = if serving || config.log.source != crate::config::Source::Default {
        config.log.value.clone()
    } else {
        "warn".to_owned()
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Opens the local ledger. Reads need no key; writes load the checkpoint
/// signing key, creating it on first use.
pub(crate) async fn open_store(config: &Config, reads_only: bool) -> Result<Arc<dyn Store>> {
    open_store_with(config, !reads_only, reads_only, false).await
}

/// Opens an existing ledger for an auditor's commands (`verify`, `export`,
/// `prove`), which never write: on PostgreSQL without migrating and in
/// read-only transactions, so a role with only `SELECT` on the ledger's
/// tables can run them.
pub(crate) async fn open_store_for_audit(config: &Config) -> Result<Arc<dyn Store>> {
    open_store_with(config, false, true, true).await
}

/// Opens the ledger to change records only (tokens): no event is appended,
/// so no signing key is needed, and a ledger that does not exist yet is
/// created, which is how the first admin token is made before the first
/// `serve`.
pub(crate) async fn open_store_for_records(config: &Config) -> Result<Arc<dyn Store>> {
    open_store_with(config, false, false, false).await
}

async fn open_store_with(
    config: &Config,
    signs: bool,
    must_exist: bool,
    read_only: bool,
) -> Result<Arc<dyn Store>> {
    let signer = if !signs {
        None
    } else {
        let path = config
            .signing_key_path()
            .map_err(|e| Failure::usage(format!("{e:#}")))?;
        Some(Arc::new(crate::keys::load_or_create(&path)?))
    };
    match config.database_url.value.database()? {
        Database::Sqlite(path) => {
            if must_exist && !path.exists() {
                return Err(Failure::not_found(format!(
                    "no ledger at {} ({}); record events first, or point --database-url or --server at one",
                    path.display(),
                    config.database_url.source
                ))
                .into());
            }
            let store = SqliteStore::open(
                &path,
                SqliteOptions {
                    signer,
                    ..SqliteOptions::default()
                },
            )
            .map_err(|e| Failure::unavailable(e.to_string()))?;
            Ok(Arc::new(store))
        }
        Database::Postgres(url) => {
            let store = PgStore::connect(
                url.expose(),
                PgOptions {
                    signer,
                    read_only,
                    ..PgOptions::default()
                },
            )
            .await
            .map_err(|e| Failure::unavailable(e.to_string()))?;
            Ok(Arc::new(store))
        }
    }
}

pub(crate) async fn backend(
    config: &Config,
    client: &ClientArgs,
    reads_only: bool,
) -> Result<Backend> {
    let server = client
        .server
        .clone()
        .or_else(|| config.server.value.clone());
    match server {
        Some(url) => Backend::remote(&url, config),
        None => Ok(Backend::Local(open_store(config, reads_only).await?)),
    }
}

async fn serve(config: &Config) -> Result<()> {
    let addr = config.listen.value;
    // Checked before anything else: a server that would send tokens in
    // clear text across a network must be asked for explicitly.
    let tls = match (&config.tls_cert.value, &config.tls_key.value) {
        (Some(cert), Some(key)) => {
            warn_if_readable_by_others(key);
            Some(
                patchaudit_server::serve::load_tls(cert, key)
                    .map_err(|e| Failure::usage(e.to_string()))?,
            )
        }
        _ => None,
    };
    if tls.is_none() && !addr.ip().is_loopback() {
        if !config.allow_insecure_listen.value {
            return Err(Failure::usage(format!(
                "refusing to listen on {addr} ({}) without TLS: tokens and the ledger would cross the network in clear text; pass --tls-cert and --tls-key, or --allow-insecure-listen if a TLS proxy in front of it is the only way in",
                config.listen.source
            ))
            .into());
        }
        tracing::warn!(%addr, "listening on a non-loopback address without TLS (--allow-insecure-listen): tokens and the ledger cross the network in clear text");
    }
    let store = open_store(config, false).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Failure::usage(format!(
            "cannot listen on {addr} ({}): {e}",
            config.listen.source
        ))
    })?;
    let local = listener.local_addr()?;
    tracing::info!(
        %local,
        database = %config.database_url.value.redacted(),
        max_batch = config.max_batch.value,
        "patchaudit serving"
    );
    {
        let mut out = std::io::stdout().lock();
        let scheme = if tls.is_some() { "https" } else { "http" };
        writeln!(out, "patchaudit listening on {scheme}://{local}")?;
        out.flush()?;
    }
    let stream_config = config.stream_config();
    let state = patchaudit_server::AppState::new(store, config.server_config())
        .with_webhooks(&stream_config);
    let stream = patchaudit_server::stream::start_for(&state, &stream_config)
        .await
        .map_err(Failure::usage)?;
    patchaudit_server::run_with(listener, state, tls, shutdown_signal())
        .await
        .context("serving HTTP")?;
    // After the last request: every cursor is saved before the process ends.
    stream.stop().await;
    tracing::info!("patchaudit stopped");
    Ok(())
}

/// A TLS private key anyone on the host can read is a key anyone can use;
/// say so (the file is the operator's, so it is not refused or changed).
fn warn_if_readable_by_others(key: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(key) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    key = %key.display(),
                    mode = format!("{mode:o}"),
                    "the TLS private key can be read by other users; chmod 600 it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = key;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}

pub(crate) fn validation_context(config: &Config) -> ValidationContext {
    ValidationContext {
        now: Timestamp::now(),
        max_future_skew_micros: config.server_config().max_future_skew_micros,
    }
}

async fn log(config: &Config, a: LogArgs) -> Result<()> {
    let mut raw = RawEvent::default();
    let mut text = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            raw.push(name, Input::Text(v));
        }
    };
    text("event_id", a.event_id);
    text("patch_id", Some(a.patch_id));
    text("system", Some(a.system));
    text(
        "applied_at",
        Some(
            a.applied_at
                .unwrap_or_else(|| Timestamp::now().to_rfc3339()),
        ),
    );
    text("status", Some(a.status));
    text("package", a.package);
    text("from_version", a.from_version);
    text("to_version", a.to_version);
    text("source", a.source);
    text("actor", a.actor);
    text("detail", a.detail);
    text("change_ref", a.change_ref);
    if !a.cves.is_empty() {
        raw.push(
            "cves",
            Input::List(a.cves.into_iter().map(Input::Text).collect()),
        );
    }
    if let Some(b) = a.reboot_required {
        raw.push("reboot_required", Input::Bool(b));
    }
    let events = validate_batch([Ok(raw)], &validation_context(config)).map_err(|errs| {
        let mut f = Failure::validation(&errs, &|_| String::new());
        // Name the flags as they are spelled on the command line.
        f.details = errs
            .iter()
            .map(|e| {
                let flag = match e.error.field.split_once('[') {
                    Some(("cves", _)) => "cve".to_owned(),
                    _ => e.error.field.replace('_', "-"),
                };
                format!("--{flag}: {} [{}]", e.error.message, e.error.code)
            })
            .collect();
        f
    })?;
    let backend = backend(config, &a.client, false).await?;
    let out = backend.ingest(events).await?;
    let mut stdout = std::io::stdout().lock();
    match a.format {
        LogFormat::Json => writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?,
        LogFormat::Text => {
            let e = &out.events[0];
            if e.duplicate {
                writeln!(
                    stdout,
                    "already recorded as seq {} at {}",
                    e.seq, e.recorded_at
                )?;
            } else {
                writeln!(stdout, "recorded as seq {} at {}", e.seq, e.recorded_at)?;
            }
        }
    }
    Ok(())
}

fn detect_format(path: &Path, bytes: &[u8]) -> InputFormat {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => return InputFormat::Json,
        Some("ndjson" | "jsonl") => return InputFormat::Ndjson,
        Some("csv") => return InputFormat::Csv,
        _ => {}
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => InputFormat::Json,
        Some(b'{') => {
            // One object spread over lines is JSON; one object per line is NDJSON.
            let first_line = text
                .split(|&b| b == b'\n')
                .find(|l| l.iter().any(|b| !b.is_ascii_whitespace()));
            match first_line.map(|l| serde_json::from_slice::<serde_json::Value>(l).is_ok()) {
                Some(true) => InputFormat::Ndjson,
                _ => InputFormat::Json,
            }
        }
        _ => InputFormat::Csv,
    }
}

/// Line numbers of the non-blank lines, so NDJSON errors can name lines.
fn ndjson_lines(bytes: &[u8]) -> Vec<usize> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(|b| b.is_ascii_whitespace()))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The event_id given to an imported event that has none: a digest of its
/// content, so the same event imported twice is recorded once.
fn derived_event_id(e: &NewEvent) -> Option<EventId> {
    let digest = Sha256::digest(e.canonical_content());
    EventId::parse(format!("import:{}", hex::encode(digest))).ok()
}

async fn import(config: &Config, a: ImportArgs) -> Result<()> {
    let started = Instant::now();
    let name = a.file.display().to_string();
    let bytes = if a.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        buf
    } else {
        std::fs::read(&a.file)
            .map_err(|e| Failure::not_found(format!("cannot read {name}: {e}")))?
    };
    if a.batch_size == 0 {
        return Err(Failure::usage("--batch-size must be at least 1").into());
    }
    let format = a.format.unwrap_or_else(|| detect_format(&a.file, &bytes));
    let decoded: Vec<Decoded> = match format {
        InputFormat::Json => wire::decode_json(&bytes),
        InputFormat::Ndjson => wire::decode_ndjson(&bytes),
        InputFormat::Csv => wire::decode_csv(&bytes),
    }
    .map_err(|e| Failure::invalid(format!("{name}: {e}; nothing was recorded")))?;

    let lines = (format == InputFormat::Ndjson).then(|| ndjson_lines(&bytes));
    let locate = |i: usize| match (&lines, format) {
        (Some(l), _) => format!("{name}: line {}", l.get(i).copied().unwrap_or(0)),
        (None, InputFormat::Csv) => format!("{name}: row {}", i + 1),
        _ => format!("{name}: event {i}"),
    };
    let items = decoded.into_iter().map(|d| match d {
        Decoded::Event(raw) => Ok(raw),
        Decoded::NotAnObject(kind) => Err(patchaudit_domain::FieldError::new(
            "",
            patchaudit_domain::ErrorCode::Type,
            format!("must be a JSON object (a patch event), got {kind}"),
        )),
    });
    let mut events = validate_batch(items, &validation_context(config))
        .map_err(|errs| Failure::validation(&errs, &locate))?;
    if !a.no_derive_event_id {
        for e in events.iter_mut().filter(|e| e.event_id.is_none()) {
            e.event_id = derived_event_id(e);
        }
    }
    let total = events.len();
    if a.dry_run {
        if !a.quiet {
            eprintln!("{name}: {total} valid events; nothing recorded (--dry-run)");
        }
        return Ok(());
    }

    let backend = backend(config, &a.client, false).await?;
    let bar = if !a.quiet && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total as u64);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos}/{len} events [{bar:30}] {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let (mut created, mut duplicates) = (0usize, 0usize);
    let mut rest = events;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(a.batch_size));
        let chunk = std::mem::replace(&mut rest, tail);
        let n = chunk.len();
        match backend.ingest(chunk).await {
            Ok(out) => {
                created += out.created;
                duplicates += out.duplicates;
                bar.inc(n as u64);
            }
            Err(e) => {
                bar.abandon();
                let done = created + duplicates;
                return Err(e.context(format!(
                    "{name}: stopped after {done} of {total} events; re-run the same command to finish (nothing will be recorded twice)"
                )));
            }
        }
    }
    bar.finish_and_clear();
    if !a.quiet {
        eprintln!(
            "{name}: {total} events: {created} recorded, {duplicates} already recorded ({:.1}s)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn filter_from(a: &EventsArgs) -> Result<EventFilter> {
    let ts = |flag: &str, v: &Option<String>| -> Result<Option<Timestamp>> {
        v.as_deref()
            .map(|s| {
                Timestamp::parse_rfc3339(s)
                    .map_err(|m| Failure::usage(format!("--{flag}: {m}")).into())
            })
            .transpose()
    };
    Ok(EventFilter {
        system: a.system.clone(),
        patch_id: a.patch_id.clone(),
        status: a
            .status
            .as_deref()
            .map(|s| {
                s.parse::<Status>()
                    .map_err(|m| Failure::usage(format!("--status {m}")))
            })
            .transpose()?,
        source: a.source.clone(),
        applied_from: ts("applied-from", &a.applied_from)?,
        applied_to: ts("applied-to", &a.applied_to)?,
        seq_from: a.seq_from,
        seq_to: a.seq_to,
    })
}

pub(crate) fn table() -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t
}

async fn events(config: &Config, a: EventsArgs) -> Result<()> {
    let filter = filter_from(&a)?;
    let limit = match (a.all, a.limit, a.format) {
        (true, _, _) => None,
        (false, Some(n), _) => Some(n),
        (false, None, ListFormat::Table) => Some(100),
        (false, None, _) => None,
    };
    let backend = backend(config, &a.client, true).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match a.format {
        ListFormat::Table => {
            let mut t = table();
            t.set_header([
                "SEQ",
                "APPLIED AT",
                "SYSTEM",
                "PATCH",
                "STATUS",
                "PACKAGE",
                "VERSION",
                "SOURCE",
            ]);
            let mut n = 0usize;
            backend
                .events(&filter, limit, |e| {
                    n += 1;
                    let version = match (&e.from_version, &e.to_version) {
                        (Some(f), Some(t)) => format!("{f} → {t}"),
                        (None, Some(t)) => t.clone(),
                        (Some(f), None) => format!("{f} →"),
                        (None, None) => String::new(),
                    };
                    t.add_row([
                        e.seq.to_string(),
                        e.applied_at,
                        e.system,
                        e.patch_id,
                        e.status,
                        e.package.unwrap_or_default(),
                        version,
                        e.source.unwrap_or_default(),
                    ]);
                    Ok(())
                })
                .await?;
            if n == 0 {
                writeln!(out, "no matching events")?;
            } else {
                writeln!(out, "{t}")?;
                if limit == Some(n) {
                    writeln!(
                        out,
                        "(showing the first {n}; use --limit N or --all for more)"
                    )?;
                }
            }
        }
        ListFormat::Json => {
            out.write_all(b"[")?;
            let mut first = true;
            backend
                .events(&filter, limit, |e| {
                    if !first {
                        out.write_all(b",\n")?;
                    }
                    first = false;
                    serde_json::to_writer(&mut out, &e)?;
                    Ok(())
                })
                .await?;
            out.write_all(b"]\n")?;
        }
        ListFormat::Ndjson => {
            backend
                .events(&filter, limit, |e| {
                    serde_json::to_writer(&mut out, &e)?;
                    out.write_all(b"\n")?;
                    Ok(())
                })
                .await?;
        }
        ListFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(wire::CSV_COLUMNS)?;
            backend
                .events(&filter, limit, |e| {
                    w.write_record(wire::csv_record(&e))?;
                    Ok(())
                })
                .await?;
            w.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

async fn systems(config: &Config, a: SystemsArgs) -> Result<()> {
    let backend = backend(config, &a.client, true).await?;
    let systems = backend.systems().await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match a.format {
        SummaryFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&systems)?)?,
        SummaryFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record([
                "system",
                "last_event_at",
                "last_seq",
                "success",
                "failure",
                "rolled_back",
                "total",
            ])?;
            for s in &systems {
                w.write_record([
                    s.system.clone(),
                    s.last_event_at.clone(),
                    s.last_seq.to_string(),
                    s.events.success.to_string(),
                    s.events.failure.to_string(),
                    s.events.rolled_back.to_string(),
                    s.events.total.to_string(),
                ])?;
            }
            w.flush()?;
        }
        SummaryFormat::Table => {
            if systems.is_empty() {
                writeln!(out, "no systems yet")?;
            } else {
                let mut t = table();
                t.set_header([
                    "SYSTEM",
                    "LAST EVENT",
                    "SUCCESS",
                    "FAILURE",
                    "ROLLED BACK",
                    "TOTAL",
                ]);
                for s in &systems {
                    t.add_row([
                        s.system.clone(),
                        s.last_event_at.clone(),
                        s.events.success.to_string(),
                        s.events.failure.to_string(),
                        s.events.rolled_back.to_string(),
                        s.events.total.to_string(),
                    ]);
                }
                writeln!(out, "{t}")?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

async fn patch(config: &Config, a: PatchArgs) -> Result<()> {
    let backend = backend(config, &a.client, true).await?;
    let p = backend.patch(&a.patch_id).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let rows = || {
        [
            ("applied", &p.applied),
            ("failed", &p.failed),
            ("rolled_back", &p.rolled_back),
        ]
        .into_iter()
        .flat_map(|(state, list)| list.iter().map(move |s| (state, s)))
    };
    match a.format {
        SummaryFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&p)?)?,
        SummaryFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record([
                "patch_id",
                "system",
                "state",
                "applied_at",
                "seq",
                "attempts",
            ])?;
            for (state, s) in rows() {
                w.write_record([
                    p.patch_id.as_str(),
                    s.system.as_str(),
                    state,
                    s.applied_at.as_str(),
                    &s.seq.to_string(),
                    &s.attempts.to_string(),
                ])?;
            }
            w.flush()?;
        }
        SummaryFormat::Table => {
            writeln!(
                out,
                "{}: applied on {}, failed on {}, rolled back on {}",
                p.patch_id,
                p.applied.len(),
                p.failed.len(),
                p.rolled_back.len()
            )?;
            let mut t = table();
            t.set_header(["SYSTEM", "STATE", "LATEST EVENT", "SEQ", "ATTEMPTS"]);
            for (state, s) in rows() {
                t.add_row([
                    s.system.clone(),
                    state.to_owned(),
                    s.applied_at.clone(),
                    s.seq.to_string(),
                    s.attempts.to_string(),
                ]);
            }
            writeln!(out, "{t}")?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_from_extension_then_content() {
        assert_eq!(detect_format(Path::new("a.csv"), b"{}"), InputFormat::Csv);
        assert_eq!(
            detect_format(Path::new("a.jsonl"), b""),
            InputFormat::Ndjson
        );
        assert_eq!(detect_format(Path::new("-"), b"  [{}]"), InputFormat::Json);
        assert_eq!(
            detect_format(Path::new("-"), b"{\"a\":1}\n{\"a\":2}\n"),
            InputFormat::Ndjson
        );
        assert_eq!(
            detect_format(Path::new("-"), b"{\n  \"a\": 1\n}\n"),
            InputFormat::Json
        );
        assert_eq!(
            detect_format(Path::new("-"), b"patch_id,system\n"),
            InputFormat::Csv
        );
        assert_eq!(
            detect_format(Path::new("-"), b"\xEF\xBB\xBF[{}]"),
            InputFormat::Json
        );
    }

    #[test]
    fn ndjson_line_numbers_skip_blank_lines() {
        assert_eq!(ndjson_lines(b"{}\n\n{}\n  \n{}"), vec![1, 3, 5]);
    }

    #[test]
    fn derived_ids_follow_content_only() {
        let ev = patchaudit_store::conformance::event("s", "P", 0, Status::Success);
        let mut other = ev.clone();
        other.status = Status::Failure;
        assert_eq!(derived_event_id(&ev), derived_event_id(&ev.clone()));
        assert_ne!(derived_event_id(&ev), derived_event_id(&other));
        assert!(derived_event_id(&ev).unwrap().as_str().len() <= 128);
    }
}
