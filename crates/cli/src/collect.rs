//! `patchaudit collect`: reads this host's package-manager logs (or the
//! saved output of a Windows or dnf command, or osquery's results log) and
//! records their patch events, each exactly once.
//!
//! Each run parses the whole input (with its rotations), skips what a state
//! file says was already handled, and sends the rest in batches. Events the
//! server cannot take because it is unreachable go to an on-disk spool that
//! the next run sends first. Every event has the parsers' deterministic
//! `event_id`, so a re-send (of the spool, or after the state file was lost)
//! records nothing twice.
//!
//! How a run tells what was already handled depends on the source (see
//! [`Handled`]): logs written in time order keep a time cursor; osquery and
//! Windows Update history, whose event times do not follow the order of the
//! file, keep the ids of the events handled; the Windows inventories
//! (`wmic qfe`, `systeminfo`, `Get-HotFix`), whose undated entries take the
//! time of each snapshot, keep the KBs handled.

use crate::backend::Backend;
use crate::commands::{backend, validation_context};
use crate::config::{Config, Database};
use crate::exit::{Code, Failure};
use crate::CollectArgs;
use anyhow::{Context as _, Result};
use chrono::{DateTime, Datelike, FixedOffset, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use patchaudit_collectors::{
    parse, parse_rotated, Context, DateOrder, Parsed, Problem, ProblemKind, Source,
};
use patchaudit_domain::{validate_batch, NewEvent, RawEvent};
use patchaudit_server::wire::{self, Decoded};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The logs `collect` finds on a host without `--source`, by source: each
/// one that exists is read with its rotations. The other sources are the
/// saved output of a command, read only with `--source` and `--file`.
const STANDARD_LOGS: [(Source, &str); 4] = [
    (Source::Dpkg, "/var/log/dpkg.log"),
    (Source::AptHistory, "/var/log/apt/history.log"),
    (Source::YumLog, "/var/log/yum.log"),
    // osquery's filesystem logger on Linux (--logger_path). Its own
    // rotation (--logger_rotate) compresses every file after `.1` with
    // zstd, which is not read: those `.N.zst` files are left out.
    (Source::Osquery, "/var/log/osquery/osqueryd.results.log"),
];

/// How to produce the input of a source that has no standard file, for
/// the error that asks for `--file`.
fn how_to_capture(source: Source) -> &'static str {
    match source {
        Source::DnfHistory => "LC_ALL=C dnf history info 1..last > dnf-history.txt",
        Source::WmicQfe => "wmic qfe list > qfe.txt",
        Source::Systeminfo => "systeminfo > systeminfo.txt",
        Source::GetHotFix => "Get-HotFix | Export-Csv -NoTypeInformation hotfix.csv",
        Source::WindowsUpdateHistory => {
            "Get-WUHistory | Export-Csv -NoTypeInformation wu-history.csv"
        }
        Source::Dpkg | Source::AptHistory | Source::YumLog | Source::Osquery => "",
    }
}

/// How a later run recognises the events of a log that an earlier run
/// already handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// A time cursor ([`Cursor`]): for logs appended in time order (dpkg,
    /// apt, yum, `dnf history info`), whose new events never lie before
    /// the ones already handled.
    TimeCursor,
    /// The `event_id`s of the handled events still in the files. osquery
    /// logs a `patches` row with its install date and an update history
    /// entry with its own date, both earlier than rows logged before them;
    /// a Windows Update history export is a full dump in no time order. A
    /// time cursor would skip such events forever. Ids that left the files
    /// are dropped: they cannot come back, and re-sending a stable id would
    /// record nothing anyway.
    EventIds,
    /// The `patch_id`s (KBs) ever handled for the log. `wmic qfe`,
    /// `systeminfo` and `Get-HotFix` are snapshots: an entry without a date
    /// takes the snapshot's time, so the next snapshot gives it a new
    /// `event_id`, and only the KB tells that it was already recorded. The
    /// set is never pruned, so an empty or failed snapshot cannot make the
    /// next one record every KB again.
    PatchIds,
}

impl Handled {
    fn of(source: Source) -> Handled {
        match source {
            Source::Dpkg | Source::AptHistory | Source::YumLog | Source::DnfHistory => {
                Handled::TimeCursor
            }
            Source::Osquery | Source::WindowsUpdateHistory => Handled::EventIds,
            Source::WmicQfe | Source::Systeminfo | Source::GetHotFix => Handled::PatchIds,
        }
    }
}

/// The default state file name.
const STATE_FILE: &str = "patchaudit-collect.state";
/// The default spool directory name, beside the state file.
const SPOOL_DIR: &str = "patchaudit-collect.spool";
/// The spool file inside the spool directory.
const SPOOL_FILE: &str = "spool.ndjson";
/// At most this many parser problems are printed one by one.
const MAX_PROBLEMS_SHOWN: usize = 20;

/// One log: a source and its files, oldest first.
struct Log {
    source: Source,
    files: Vec<PathBuf>,
}

impl Log {
    /// The state file's key: the source, the system and the live (last) file.
    fn key(&self, system: &str) -> String {
        let live = self.files.last().map(|f| absolute(f)).unwrap_or_default();
        format!("{} {system} {}", self.source, live.display())
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// How far one log has been handled (sent, or kept in the spool): every
/// event applied before `until`, and the events applied exactly at `until`
/// whose ids are listed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Cursor {
    until: DateTime<Utc>,
    ids_at_until: BTreeSet<String>,
}

impl Cursor {
    fn covers(&self, at: DateTime<Utc>, id: &str) -> bool {
        at < self.until || (at == self.until && self.ids_at_until.contains(id))
    }

    /// The cursor after `fresh` events (applied_at, event_id) were handled.
    fn advance(old: Option<&Cursor>, fresh: &[(DateTime<Utc>, String)]) -> Option<Cursor> {
        let mut c = old.cloned();
        for (at, id) in fresh {
            match &mut c {
                Some(c) if *at < c.until => {}
                Some(c) if *at == c.until => {
                    c.ids_at_until.insert(id.clone());
                }
                _ => {
                    c = Some(Cursor {
                        until: *at,
                        ids_at_until: BTreeSet::from([id.clone()]),
                    })
                }
            }
        }
        c
    }
}

/// The state file: one cursor per log read [`Handled::TimeCursor`], and the
/// keys handled per log read otherwise. `seen` is left out when empty, so a
/// host with only dpkg, apt and yum logs keeps the same file as before it
/// existed, and older versions, which ignore unknown fields, still read it.
#[derive(Serialize, Deserialize, Default)]
struct State {
    version: u32,
    logs: BTreeMap<String, Cursor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    seen: BTreeMap<String, BTreeSet<String>>,
}

impl State {
    fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Failure::error(format!(
                    "the state file {} is unreadable ({e}); delete it to re-read every log from \
                     the start (nothing will be recorded twice)",
                    path.display()
                ))
                .into()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: 1,
                ..State::default()
            }),
            Err(e) => Err(Failure::error(format!("cannot read {}: {e}", path.display())).into()),
        }
    }

    /// Writes the state atomically: a synced temporary file renamed over the old one.
    fn save(&self, path: &Path) -> Result<()> {
        let dir = parent_dir(path);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("writing the state file in {}", dir.display()))?;
        serde_json::to_writer_pretty(&mut tmp, self)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)
            .with_context(|| format!("writing {}", path.display()))?;
        sync_dir(dir);
        Ok(())
    }
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Makes a rename or a new file in `dir` durable (best effort: not every
/// platform can open a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The on-disk spool: NDJSON events not yet acknowledged, in order.
struct Spool {
    dir: PathBuf,
}

impl Spool {
    fn file(&self) -> PathBuf {
        self.dir.join(SPOOL_FILE)
    }

    fn read(&self, config: &Config) -> Result<Vec<NewEvent>> {
        let path = self.file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(Failure::error(format!("cannot read {}: {e}", path.display())).into())
            }
        };
        let name = path.display().to_string();
        let decoded = wire::decode_ndjson(&bytes)
            .map_err(|e| Failure::invalid(format!("the spool {name} is damaged: {e}")))?;
        let items = decoded.into_iter().map(|d| match d {
            Decoded::Event(raw) => Ok(raw),
            Decoded::NotAnObject(kind) => Err(patchaudit_domain::FieldError::new(
                "",
                patchaudit_domain::ErrorCode::Type,
                format!("must be a JSON object (a patch event), got {kind}"),
            )),
        });
        validate_batch(items, &validation_context(config))
            .map_err(|errs| Failure::validation(&errs, &|i| format!("{name}: event {i}")).into())
    }

    /// Appends events and syncs them to disk before returning.
    fn append(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating the spool {}", self.dir.display()))?;
        let path = self.file();
        let mut body = Vec::new();
        wire::write_new_event_ndjson(&mut body, events);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening the spool {}", path.display()))?;
        f.write_all(&body)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing the spool {}", path.display()))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Removes the spool once everything in it was acknowledged.
    fn remove(&self) -> Result<()> {
        let path = self.file();
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        let _ = std::fs::remove_dir(&self.dir);
        sync_dir(parent_dir(&self.dir));
        Ok(())
    }
}

/// The live file and its rotations (`NAME.N`, `NAME.N.gz`), oldest first.
fn with_rotations(live: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let file_name = entry.file_name();
                let Some(rest) = file_name
                    .to_str()
                    .and_then(|f| f.strip_prefix(name))
                    .and_then(|r| r.strip_prefix('.'))
                else {
                    continue;
                };
                let digits = rest.strip_suffix(".gz").unwrap_or(rest);
                if let Ok(n) = digits.parse::<u32>() {
                    rotated.push((n, entry.path()));
                }
            }
        }
    }
    // Higher numbers are older; a plain and a .gz file of one number keep a stable order.
    rotated.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    files.push(live.to_path_buf());
    files
}

fn logs_to_read(a: &CollectArgs) -> Result<Vec<Log>> {
    let chosen = a
        .source
        .as_deref()
        .map(|s| Source::from_str(s).map_err(|m| Failure::usage(format!("--source: {m}"))))
        .transpose()?;
    if let Some(source) = chosen {
        let files = if a.files.is_empty() {
            let live = STANDARD_LOGS
                .iter()
                .find(|(s, _)| *s == source)
                .map(|(_, p)| Path::new(p))
                .ok_or_else(|| {
                    Failure::usage(format!(
                        "--source {source} has no standard file: give the saved output with --file \
                         (for example `{}`)",
                        how_to_capture(source)
                    ))
                })?;
            if !live.exists() {
                return Err(Failure::not_found(format!(
                    "{} does not exist; give the log with --file",
                    live.display()
                ))
                .into());
            }
            with_rotations(live)
        } else {
            a.files.clone()
        };
        return Ok(vec![Log { source, files }]);
    }
    let mut logs: Vec<Log> = STANDARD_LOGS
        .iter()
        .filter(|(_, p)| Path::new(p).exists())
        .map(|(source, p)| Log {
            source: *source,
            files: with_rotations(Path::new(p)),
        })
        .collect();
    // osquery's package tables repeat what the package manager's own log
    // says, under other event ids, and its first run reports every
    // installed package as added, which would explain every package of the
    // inventory. So it is read by default only on hosts without such a log.
    if logs.iter().any(|l| l.source != Source::Osquery) {
        logs.retain(|l| l.source != Source::Osquery);
    }
    if logs.is_empty() {
        let paths: Vec<&str> = STANDARD_LOGS.iter().map(|(_, p)| *p).collect();
        return Err(Failure::not_found(format!(
            "no package-manager or osquery log found on this host (looked for {}); use --source \
             and --file",
            paths.join(", ")
        ))
        .into());
    }
    Ok(logs)
}

fn host_name() -> Result<String> {
    let from_file = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    from_file
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| {
            Failure::usage(
                "cannot tell this host's name (no /etc/hostname, no $HOSTNAME); give --system",
            )
            .into()
        })
}

fn parse_offset(s: &str) -> Result<FixedOffset> {
    DateTime::parse_from_rfc3339(&format!("2000-01-01T00:00:00{s}"))
        .map(|t| *t.offset())
        .map_err(|_| {
            Failure::usage(format!(
                "--utc-offset {s:?} is not an offset such as +02:00, -05:00 or Z"
            ))
            .into()
        })
}

/// A file's modification time, to the second: the observation time of a
/// snapshot. Whole seconds keep the `event_id`s the same when the file is
/// copied to a file system that stores coarser times.
fn modified(path: &Path) -> Option<DateTime<Utc>> {
    let t = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    DateTime::from_timestamp(DateTime::<Utc>::from(t).timestamp(), 0)
}

/// The context one file of `source` is parsed with: `ctx`, plus what the
/// file's modification time `mtime` stands for in that format.
///
/// - yum.log lines have no year: the year of the file's last line is the
///   year of its modification time (at the UTC offset of the log).
/// - `wmic qfe`, `systeminfo` and `Get-HotFix` are snapshots of what is
///   installed; an entry without a date (every `systeminfo` hotfix) is
///   observed at the time the snapshot was written, its modification time.
/// - The other formats carry full dates and need nothing from the file.
fn file_context(source: Source, ctx: &Context, mtime: Option<DateTime<Utc>>) -> Context {
    match source {
        Source::YumLog => Context {
            year: mtime.map(|t| t.with_timezone(&ctx.utc_offset).year()),
            ..ctx.clone()
        },
        Source::WmicQfe | Source::Systeminfo | Source::GetHotFix => Context {
            observed_at: mtime,
            ..ctx.clone()
        },
        Source::Dpkg
        | Source::AptHistory
        | Source::DnfHistory
        | Source::WindowsUpdateHistory
        | Source::Osquery => ctx.clone(),
    }
}

/// Reads and parses one log, its files oldest first, through
/// `parse_rotated`. The sources whose context depends on the file (see
/// [`file_context`]) are parsed one file at a time instead; that is what
/// `parse_rotated` does for every source but dpkg anyway.
fn read_log(log: &Log, ctx: &Context) -> Result<Parsed> {
    let mut contents = Vec::with_capacity(log.files.len());
    for f in &log.files {
        let bytes = std::fs::read(f)
            .map_err(|e| Failure::not_found(format!("cannot read {}: {e}", f.display())))?;
        contents.push((f.display().to_string(), bytes));
    }
    let per_file = matches!(
        log.source,
        Source::YumLog | Source::WmicQfe | Source::Systeminfo | Source::GetHotFix
    );
    if per_file {
        let mut all = Parsed::default();
        for (f, (name, bytes)) in log.files.iter().zip(&contents) {
            let ctx = file_context(log.source, ctx, modified(f));
            all.extend(parse(log.source, name, bytes, &ctx));
        }
        return Ok(all);
    }
    let files: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    Ok(parse_rotated(log.source, &files, ctx))
}

/// What one log gave.
struct Report {
    source: Source,
    events: usize,
    new: usize,
    problems: usize,
    /// osquery result rows of other queries (see [`other_queries`]).
    skipped: usize,
}

/// Splits off the problems that are not problems of the log: an osquery
/// results log holds every scheduled query, and the parser reports each
/// row of a table other than the four it reads (and each snapshot result)
/// as unsupported. On a real host those are most rows, so they are counted
/// in the summary instead of being printed as warnings on every run.
fn other_queries(source: Source, problems: Vec<Problem>) -> (Vec<Problem>, usize) {
    if source != Source::Osquery {
        return (problems, 0);
    }
    let (other, real): (Vec<Problem>, Vec<Problem>) = problems
        .into_iter()
        .partition(|p| p.kind == ProblemKind::Unsupported);
    (real, other.len())
}

fn print_problems(problems: &[Problem]) {
    for p in problems.iter().take(MAX_PROBLEMS_SHOWN) {
        eprintln!("warning: {}:{}: {}", p.file, p.line, p.message);
    }
    if problems.len() > MAX_PROBLEMS_SHOWN {
        eprintln!(
            "warning: … and {} more problem(s)",
            problems.len() - MAX_PROBLEMS_SHOWN
        );
    }
}

fn is_unavailable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Failure>()
        .is_some_and(|f| f.code == Code::Unavailable)
}

/// Counts of what the ledger acknowledged.
#[derive(Default)]
struct Delivered {
    created: usize,
    duplicates: usize,
}

/// Sends `events` in batches. On failure, returns the error and the index
/// of the first event not acknowledged.
async fn deliver(
    backend: &Backend,
    events: &[NewEvent],
    batch_size: usize,
    bar: &ProgressBar,
    done: &mut Delivered,
) -> std::result::Result<(), (anyhow::Error, usize)> {
    let mut at = 0;
    while at < events.len() {
        let end = events.len().min(at + batch_size);
        match backend.ingest(events[at..end].to_vec()).await {
            Ok(out) => {
                done.created += out.created;
                done.duplicates += out.duplicates;
                bar.inc((end - at) as u64);
            }
            Err(e) => return Err((e, at)),
        }
        at = end;
    }
    Ok(())
}

fn default_dir(config: &Config, a: &CollectArgs) -> PathBuf {
    let remote = a.client.server.is_some() || config.server.value.is_some();
    match config.database_url.value.database() {
        Ok(Database::Sqlite(db)) if !remote => parent_dir(&db).to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Sends the host's installed-package inventory after its events: the
/// file given with `--inventory`, or, when the standard logs were read, the
/// host's own list (dpkg's status file, or `rpm -qa`). Nothing is kept in
/// the spool: the next run sends the whole list again, and an unchanged
/// list writes nothing.
async fn send_inventory(
    config: &Config,
    a: &CollectArgs,
    system: &str,
) -> Result<Option<patchaudit_server::inventory::InventoryOut>> {
    if a.no_inventory {
        return Ok(None);
    }
    let found = match (&a.inventory, a.inventory_source) {
        (Some(file), Some(source)) => {
            let bytes = std::fs::read(file)
                .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
            Some((source, file.display().to_string(), bytes))
        }
        _ if a.source.is_none() => crate::inventory::host_inventory()?,
        _ => None,
    };
    let Some((source, name, bytes)) = found else {
        return Ok(None);
    };
    let system = patchaudit_domain::SystemId::parse(system.to_owned())
        .map_err(|(_, m)| Failure::usage(format!("the system {m}")))?;
    let b = backend(config, &a.client, false).await?;
    crate::inventory::collect_and_send(&b, &system, source, &name, &bytes)
        .await
        .map(Some)
}

/// Runs `patchaudit collect`.
pub async fn collect(config: &Config, a: CollectArgs) -> Result<()> {
    if a.batch_size == 0 {
        return Err(Failure::usage("--batch-size must be at least 1").into());
    }
    let utc_offset = match &a.utc_offset {
        Some(s) => parse_offset(s)?,
        None => FixedOffset::east_opt(0).expect("zero is a valid offset"),
    };
    let system = match &a.system {
        Some(s) => s.clone(),
        None => host_name()?,
    };
    let logs = logs_to_read(&a)?;
    let state_path = a
        .state
        .clone()
        .unwrap_or_else(|| default_dir(config, &a).join(STATE_FILE));
    let spool = Spool {
        dir: a
            .spool
            .clone()
            .unwrap_or_else(|| parent_dir(&state_path).join(SPOOL_DIR)),
    };
    let mut state = State::load(&state_path)?;
    let date_order = match a.date_order.as_deref() {
        None | Some("month-first") => DateOrder::MonthFirst,
        Some("day-first") => DateOrder::DayFirst,
        Some(other) => {
            return Err(Failure::usage(format!(
                "--date-order {other:?} is not month-first or day-first"
            ))
            .into())
        }
    };
    // Windows Update history dates without an offset stay UTC, the
    // library's default: the Windows Update Agent reports them in UTC, and
    // --utc-offset is about the local times of the other logs.
    let ctx = Context {
        utc_offset,
        date_order,
        ..Context::default()
    };

    // Parse every log and keep what the state does not cover.
    let mut reports = Vec::new();
    let mut problems = Vec::new();
    let mut fresh_raw: Vec<RawEvent> = Vec::new();
    let mut fresh_at: Vec<String> = Vec::new();
    let mut advanced: Vec<(String, Cursor)> = Vec::new();
    let mut seen_now: Vec<(String, BTreeSet<String>)> = Vec::new();
    for log in &logs {
        let parsed = read_log(log, &ctx)?;
        let key = log.key(&system);
        let handled = Handled::of(log.source);
        let cursor = state.logs.get(&key);
        let seen = state.seen.get(&key);
        let mut keys = match handled {
            // Never pruned: see Handled::PatchIds.
            Handled::PatchIds => seen.cloned().unwrap_or_default(),
            Handled::TimeCursor | Handled::EventIds => BTreeSet::new(),
        };
        let ids = parsed.event_ids(&system);
        let raws = parsed.to_raw_events(&system);
        let mut fresh = Vec::new();
        for ((e, id), raw) in parsed.events.iter().zip(ids).zip(raws) {
            let at = e.applied_at.with_timezone(&Utc);
            let done = match handled {
                Handled::TimeCursor => cursor.is_some_and(|c| c.covers(at, &id)),
                Handled::EventIds => {
                    let done = seen.is_some_and(|s| s.contains(&id));
                    keys.insert(id.clone());
                    done
                }
                Handled::PatchIds => {
                    keys.insert(e.patch_id.clone());
                    seen.is_some_and(|s| s.contains(&e.patch_id))
                }
            };
            if done {
                continue;
            }
            fresh_raw.push(raw);
            fresh_at.push(format!("{} line {}", log.source, e.line));
            fresh.push((at, id));
        }
        let (log_problems, skipped) = other_queries(log.source, parsed.problems);
        reports.push(Report {
            source: log.source,
            events: parsed.events.len(),
            new: fresh.len(),
            problems: log_problems.len(),
            skipped,
        });
        match handled {
            Handled::TimeCursor => {
                if let Some(c) = Cursor::advance(cursor, &fresh) {
                    advanced.push((key, c));
                }
            }
            Handled::EventIds | Handled::PatchIds => seen_now.push((key, keys)),
        }
        problems.extend(log_problems);
    }
    print_problems(&problems);
    let events = validate_batch(fresh_raw.into_iter().map(Ok), &validation_context(config))
        .map_err(|errs| {
            Failure::validation(&errs, &|i| {
                fresh_at
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("event {i}"))
            })
        })?;
    let spooled = spool.read(config)?;

    let remote = a
        .client
        .server
        .clone()
        .or_else(|| config.server.value.clone());
    let target = match &remote {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("the local ledger {}", config.database_url.value.redacted()),
    };
    let parsed_summary = reports
        .iter()
        .map(|r| {
            let skipped = if r.skipped == 0 {
                String::new()
            } else {
                format!(
                    ", {} rows of other queries or snapshot results skipped",
                    r.skipped
                )
            };
            format!(
                "{} {} events ({} new, {} already sent), {} problems{skipped}",
                r.source,
                r.events,
                r.new,
                r.events - r.new,
                r.problems
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let spool_note = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!(" ({n} from the spool)")
        }
    };

    let bar = if !a.quiet && std::io::stderr().is_terminal() {
        let b = ProgressBar::new((spooled.len() + events.len()) as u64);
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

    let mut done = Delivered::default();
    // The spool first, in order, then the new events. On an outage, what was
    // not acknowledged stays in (or goes to) the spool.
    // Err holds the error, the events to add to the spool, and how many
    // events the spool still holds from earlier runs.
    type Undelivered = (anyhow::Error, Vec<NewEvent>, usize);
    let outcome: std::result::Result<(), Undelivered> =
        match backend(config, &a.client, false).await {
            Err(e) => Err((e, events, spooled.len())),
            Ok(b) => match deliver(&b, &spooled, a.batch_size, &bar, &mut done).await {
                Err((e, _)) => Err((e, events, spooled.len())),
                Ok(()) => {
                    if !spooled.is_empty() {
                        spool.remove()?;
                    }
                    match deliver(&b, &events, a.batch_size, &bar, &mut done).await {
                        Ok(()) => Ok(()),
                        Err((e, at)) => Err((e, events[at..].to_vec(), 0)),
                    }
                }
            },
        };
    match outcome {
        Ok(()) => {
            bar.finish_and_clear();
            state.logs.extend(advanced);
            state.seen.extend(seen_now);
            state.save(&state_path)?;
            // The events are safe; the inventory is sent whole on every run,
            // so a failure here only delays it to the next.
            let inventory = send_inventory(config, &a, &system).await;
            if !a.quiet {
                let note = match &inventory {
                    Ok(Some(out)) => format!(
                        "; inventory {} packages ({}), {}",
                        out.package_count,
                        out.format,
                        if out.revision.changed {
                            "recorded"
                        } else {
                            "unchanged"
                        }
                    ),
                    _ => String::new(),
                };
                eprintln!(
                    "collect: {parsed_summary}; sent {}{} to {target}: {} recorded, {} already recorded{note}",
                    done.created + done.duplicates,
                    spool_note(spooled.len()),
                    done.created,
                    done.duplicates
                );
            }
            inventory.map(drop)
        }
        Err((e, rest, kept)) if is_unavailable(&e) => {
            bar.abandon();
            // Everything not acknowledged is on disk before the state moves on.
            spool.append(&rest)?;
            state.logs.extend(advanced);
            state.seen.extend(seen_now);
            state.save(&state_path)?;
            let waiting = kept + rest.len();
            if !a.quiet {
                eprintln!(
                    "collect: {parsed_summary}; sent {} to {target}; {waiting} waiting in the spool",
                    done.created + done.duplicates
                );
            }
            let cause = e
                .downcast_ref::<Failure>()
                .map(|f| f.message.clone())
                .unwrap_or_default();
            Err(Failure::unavailable(format!(
                "{cause}; {waiting} event(s) are kept in the spool {} and are sent first by the next run \
                 (nothing will be recorded twice)",
                spool.dir.display()
            ))
            .into())
        }
        Err((e, _, _)) => {
            bar.abandon();
            Err(e.context(format!(
                "collect: stopped after {} events; nothing was marked as sent; re-run to retry \
                 (nothing will be recorded twice)",
                done.created + done.duplicates
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cursor_covers_earlier_times_and_the_ids_at_its_time() {
        let fresh = vec![
            (t("2024-05-01T10:00:00Z"), "a".to_owned()),
            (t("2024-05-01T10:00:02Z"), "c".to_owned()),
            (t("2024-05-01T10:00:02Z"), "b".to_owned()),
            (t("2024-05-01T10:00:01Z"), "d".to_owned()),
        ];
        let c = Cursor::advance(None, &fresh).unwrap();
        assert_eq!(c.until, t("2024-05-01T10:00:02Z"));
        assert_eq!(
            c.ids_at_until,
            BTreeSet::from(["b".to_owned(), "c".to_owned()])
        );
        assert!(c.covers(t("2024-05-01T10:00:01Z"), "zzz"));
        assert!(c.covers(t("2024-05-01T10:00:02Z"), "b"));
        // Another event in the same second, written after the last run, is new.
        assert!(!c.covers(t("2024-05-01T10:00:02Z"), "a0"));
        assert!(!c.covers(t("2024-05-01T10:00:03Z"), "a"));
        let later =
            Cursor::advance(Some(&c), &[(t("2024-05-01T10:00:02Z"), "a0".to_owned())]).unwrap();
        assert_eq!(later.ids_at_until.len(), 3);
        assert_eq!(Cursor::advance(Some(&c), &[]), Some(c));
        assert_eq!(Cursor::advance(None, &[]), None);
    }

    #[test]
    fn rotations_are_listed_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "dpkg.log",
            "dpkg.log.1",
            "dpkg.log.2.gz",
            "dpkg.log.10.gz",
            "dpkg.logx",
            "other.1",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let names: Vec<String> = with_rotations(&dir.path().join("dpkg.log"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["dpkg.log.10.gz", "dpkg.log.2.gz", "dpkg.log.1", "dpkg.log"]
        );
    }

    #[test]
    fn each_file_gives_the_context_its_format_lacks() {
        let ctx = Context {
            utc_offset: parse_offset("+02:00").unwrap(),
            ..Context::default()
        };
        let mtime = t("2024-12-31T23:30:00Z");
        // yum: the year at the log's offset, already 2025 there.
        let yum = file_context(Source::YumLog, &ctx, Some(mtime));
        assert_eq!((yum.year, yum.observed_at), (Some(2025), None));
        for s in [Source::WmicQfe, Source::Systeminfo, Source::GetHotFix] {
            let c = file_context(s, &ctx, Some(mtime));
            assert_eq!((c.year, c.observed_at), (None, Some(mtime)), "{s}");
            assert_eq!(c.utc_offset, ctx.utc_offset, "{s}");
        }
        for s in [
            Source::Dpkg,
            Source::AptHistory,
            Source::DnfHistory,
            Source::WindowsUpdateHistory,
            Source::Osquery,
        ] {
            let c = file_context(s, &ctx, Some(mtime));
            assert_eq!((c.year, c.observed_at), (None, None), "{s}");
        }
        // Every source has a rule for what was handled, and those without a
        // standard file say how to capture their input.
        for s in Source::ALL {
            let standard = STANDARD_LOGS.iter().any(|(x, _)| *x == s);
            assert_eq!(how_to_capture(s).is_empty(), standard, "{s}");
            let _ = Handled::of(s);
        }
        assert_eq!(Handled::of(Source::Dpkg), Handled::TimeCursor);
        assert_eq!(Handled::of(Source::Osquery), Handled::EventIds);
        assert_eq!(Handled::of(Source::Systeminfo), Handled::PatchIds);
    }

    #[test]
    fn only_osquery_rows_of_other_queries_are_set_aside() {
        let p = |kind| Problem {
            file: "f".into(),
            line: 1,
            kind,
            message: "m".into(),
        };
        let problems = vec![
            p(ProblemKind::Unsupported),
            p(ProblemKind::Malformed),
            p(ProblemKind::Unsupported),
        ];
        let (shown, skipped) = other_queries(Source::Osquery, problems.clone());
        assert_eq!((shown.len(), skipped), (1, 2));
        assert_eq!(shown[0].kind, ProblemKind::Malformed);
        let (shown, skipped) = other_queries(Source::WmicQfe, problems);
        assert_eq!((shown.len(), skipped), (3, 0));
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_offset("+02:00").unwrap().local_minus_utc(), 7200);
        assert_eq!(parse_offset("Z").unwrap().local_minus_utc(), 0);
        assert!(parse_offset("CEST").is_err());
    }
}
