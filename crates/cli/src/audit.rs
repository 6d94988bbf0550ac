//! The auditor's commands: `verify`, `prove`, `export` and `key`.
//!
//! `verify` trusts nothing the database says about itself except what the
//! trusted key signed. It replays every event into a fresh tree (each leaf
//! rebuilt from the event's fields), compares that tree with every signed
//! checkpoint and with every stored subtree hash, and checks the latest
//! checkpoint's signature. The first place where the ledger stops matching
//! its signed history is reported with the reason, and the exit code is 7.

use crate::backend::{store_failure, Backend};
use crate::commands::open_store_for_audit;
use crate::config::Config;
use crate::exit::Failure;
use crate::{ExportArgs, KeyArgs, KeyCommand, ProveArgs, VerifyArgs};
use anyhow::{Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use indicatif::{ProgressBar, ProgressStyle};
use patchaudit_domain::{
    CveId, EventFilter, EventId, NewEvent, PatchId, RecordedEvent, SystemId, Timestamp,
};
use patchaudit_proofs::{
    leaf_hash, open_checkpoint, stored_hash_position, verify_consistency, verify_inclusion,
    Checkpoint, Hash, NoteVerifier, TreeBuilder,
};
use patchaudit_server::proofs::{ConsistencyProofOut, EventProofOut};
use patchaudit_server::wire::EventOut;
use patchaudit_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

/// Events read per page while replaying a local ledger.
const PAGE: usize = 10_000;

/// The first line of an export: what it is and the checkpoint it ends at.
#[derive(Serialize, Deserialize)]
struct ExportHeader {
    /// The export format's version.
    patchaudit_export: u32,
    /// The signed checkpoint the exported events add up to.
    checkpoint: String,
}

const EXPORT_VERSION: u32 = 1;

/// Where the ledger stops matching its signed history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The first seq that does not check out.
    pub first_seq: u64,
    /// When the place cannot be narrowed to one event: the last seq of the
    /// range it lies in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<u64>,
    /// Why.
    pub reason: String,
}

/// Replays events into a fresh tree and compares it with what was signed
/// and, on request, with the stored tree hashes.
struct Replay {
    tree: TreeBuilder,
    /// (size, root) of each checkpoint, by size; only the latest one is
    /// trusted outright, the others are compared and, on a mismatch, checked.
    checkpoints: Vec<(u64, Hash, String)>,
    next_checkpoint: usize,
    last_good_size: u64,
    bad_checkpoint: Option<(u64, String)>,
    /// The stored-layout hashes recomputed since the last comparison.
    recomputed: Vec<(u64, Hash)>,
    compare_stored: bool,
    stored_mismatch: Option<(u64, String)>,
    stored_compared: u64,
    event_problem: Option<Divergence>,
}

impl Replay {
    fn new(checkpoints: Vec<(u64, Hash, String)>, compare_stored: bool) -> Replay {
        Replay {
            tree: TreeBuilder::new(),
            checkpoints,
            next_checkpoint: 0,
            last_good_size: 0,
            bad_checkpoint: None,
            recomputed: Vec::new(),
            compare_stored,
            stored_mismatch: None,
            stored_compared: 0,
            event_problem: None,
        }
    }

    /// Adds the leaf hash of the next event, rebuilt from its fields; false
    /// once the events stop being a dense run.
    fn leaf(&mut self, seq: u64, leaf: Hash) -> bool {
        let expected = self.tree.size();
        if seq != expected {
            self.event_problem = Some(Divergence {
                first_seq: seq.min(expected),
                last_seq: None,
                reason: if seq < expected {
                    format!("seq {seq} appears twice: a row was inserted")
                } else if expected == 0 {
                    format!("seq 0 is missing: the events start at seq {seq} (a row was deleted)")
                } else {
                    format!(
                        "seq {expected} is missing: the events jump from seq {} to seq {seq} (a row was deleted)",
                        expected - 1
                    )
                },
            });
            return false;
        }
        if self.compare_stored && self.stored_mismatch.is_none() {
            let recomputed = &mut self.recomputed;
            self.tree
                .append_stored(leaf, |position, hash| recomputed.push((position, hash)));
        } else {
            self.tree.append(leaf);
        }
        let size = self.tree.size();
        while let Some((cp_size, root, _)) = self.checkpoints.get(self.next_checkpoint) {
            if *cp_size > size {
                break;
            }
            if *cp_size == size && self.bad_checkpoint.is_none() {
                if *root == self.tree.root() {
                    self.last_good_size = size;
                } else {
                    let note = self.checkpoints[self.next_checkpoint].2.clone();
                    self.bad_checkpoint = Some((size, note));
                }
            }
            self.next_checkpoint += 1;
        }
        true
    }

    /// Compares the hashes recomputed so far with the stored ones.
    fn compare(&mut self, stored: &[(u64, Hash)]) {
        for (i, (position, hash)) in self.recomputed.iter().enumerate() {
            match stored.get(i) {
                Some((p, h)) if p == position && h == hash => self.stored_compared += 1,
                Some((p, _)) if p == position => {
                    self.stored_mismatch = Some((*position, "differs".into()));
                    break;
                }
                _ => {
                    self.stored_mismatch = Some((*position, "is missing".into()));
                    break;
                }
            }
        }
        self.recomputed.clear();
    }

    /// Every divergence found, the earliest first.
    fn divergences(&self, latest: &Checkpoint, trusted: &NoteVerifier) -> Vec<Divergence> {
        let n = self.tree.size();
        let mut found = Vec::new();
        if let Some(p) = &self.event_problem {
            found.push(p.clone());
        }
        if let Some((position, what)) = &self.stored_mismatch {
            let (level, index) = stored_hash_position(*position);
            let first = index << level;
            if level == 0 {
                found.push(Divergence {
                    first_seq: first,
                    last_seq: None,
                    reason: format!(
                        "the event's fields no longer produce the leaf hash stored when it was recorded (the stored leaf hash {what}): a field was edited, or rows were swapped or renumbered"
                    ),
                });
            } else {
                let last = ((index + 1) << level).min(n.max(first + 1)) - 1;
                found.push(Divergence {
                    first_seq: first,
                    last_seq: Some(last),
                    reason: format!(
                        "the events and their stored leaf hashes agree, but the subtree hash stored above them (level {level}) {what}: leaf hashes were rewritten to match edited events"
                    ),
                });
            }
        }
        if let Some((size, note)) = &self.bad_checkpoint {
            let why = match open_checkpoint(note, trusted) {
                Ok(_) => format!(
                    "the tree rebuilt from the events has another root at size {size} than the checkpoint signed for that size"
                ),
                Err(e) => format!(
                    "the checkpoint stored for size {size} disagrees with the events, and is not validly signed by the trusted key either ({e})"
                ),
            };
            found.push(Divergence {
                first_seq: self.last_good_size,
                last_seq: Some(size - 1),
                reason: why,
            });
        }
        if self.event_problem.is_none() && n < latest.size {
            found.push(Divergence {
                first_seq: n,
                last_seq: Some(latest.size - 1),
                reason: format!(
                    "the ledger ends after {n} events, but a checkpoint of {} events was signed: the log was truncated",
                    latest.size
                ),
            });
        }
        if n > latest.size {
            found.push(Divergence {
                first_seq: latest.size,
                last_seq: Some(n - 1),
                reason: format!(
                    "these events are not covered by the latest signed checkpoint ({} events): they were added outside patchaudit",
                    latest.size
                ),
            });
        }
        found.sort_by_key(|d| d.first_seq);
        // A divergence known only as a range (between two checkpoints, or
        // below a subtree) goes after a more precise one inside it, which
        // explains it.
        let precise_inside = |d: &Divergence, all: &[Divergence]| {
            d.last_seq.is_some_and(|last| {
                last > d.first_seq
                    && all.iter().any(|o| {
                        o != d
                            && o.first_seq >= d.first_seq
                            && o.first_seq <= last
                            && o.last_seq
                                .is_none_or(|ol| ol - o.first_seq < last - d.first_seq)
                    })
            })
        };
        let (later, first): (Vec<Divergence>, Vec<Divergence>) = found
            .iter()
            .cloned()
            .partition(|d| precise_inside(d, &found));
        first.into_iter().chain(later).collect()
    }
}

/// The outcome of a verification, as `--format json` prints it.
#[derive(Serialize)]
struct Report {
    ok: bool,
    events: u64,
    checkpoint_size: u64,
    root: String,
    key: String,
    checkpoints_compared: usize,
    stored_hashes_compared: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    divergences: Vec<Divergence>,
}

/// The verifier key to trust: `--key` (a key, or a file holding one), else
/// for a local ledger the local signing key's.
fn trusted_key(config: &Config, key: Option<&str>, local: bool) -> Result<NoteVerifier> {
    if let Some(k) = key {
        if let Ok(v) = NoteVerifier::parse(k) {
            return Ok(v);
        }
        let text = std::fs::read_to_string(k).map_err(|e| {
            Failure::usage(format!(
                "--key {k:?} is neither a verifier key (NAME+KEYID+BASE64) nor a readable file: {e}"
            ))
        })?;
        return NoteVerifier::parse(&text)
            .map_err(|e| Failure::usage(format!("--key file {k}: {e}")).into());
    }
    if !local {
        return Err(Failure::usage(
            "--key is required: pass the verifier key the ledger's operator published (`patchaudit key public`)",
        )
        .into());
    }
    let path = config.signing_key_path()?;
    let signer = crate::keys::load(&path)?;
    let v = signer.verifier();
    eprintln!(
        "note: trusting the local signing key {} ({}); pass --key to trust a published one",
        v,
        path.display()
    );
    Ok(v)
}

fn progress(len: u64, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("verifying");
    bar
}

/// Rebuilds an event from its export or API form, strictly.
pub fn event_from_out(e: EventOut) -> Result<RecordedEvent, String> {
    let seq = e.seq;
    let bad = |field: &str, m: String| format!("seq {seq}: {field}: {m}");
    let event = NewEvent {
        event_id: e
            .event_id
            .map(EventId::parse)
            .transpose()
            .map_err(|(_, m)| bad("event_id", m))?,
        patch_id: PatchId::parse(e.patch_id).map_err(|(_, m)| bad("patch_id", m))?,
        system: SystemId::parse(e.system).map_err(|(_, m)| bad("system", m))?,
        applied_at: Timestamp::parse_rfc3339(&e.applied_at).map_err(|m| bad("applied_at", m))?,
        status: e.status.parse().map_err(|m| bad("status", m))?,
        package: e.package,
        from_version: e.from_version,
        to_version: e.to_version,
        source: e.source,
        actor: e.actor,
        detail: e.detail,
        cves: e
            .cves
            .iter()
            .map(|c| CveId::parse(c))
            .collect::<Result<_, _>>()
            .map_err(|m| bad("cves", m))?,
        reboot_required: e.reboot_required,
        change_ref: e.change_ref,
    };
    Ok(RecordedEvent {
        seq,
        recorded_at: Timestamp::parse_rfc3339(&e.recorded_at).map_err(|m| bad("recorded_at", m))?,
        recorded_by: e.recorded_by,
        event,
    })
}

/// The body of a signed note (everything before the blank line), parsed
/// without checking its signature.
fn unsigned_checkpoint(note: &str) -> Option<Checkpoint> {
    let end = note.find("\n\n")?;
    Checkpoint::parse_body(&note[..=end]).ok()
}

/// `patchaudit verify`.
pub async fn verify(config: &Config, a: VerifyArgs) -> Result<()> {
    if let Some(server) = a.server.clone().or_else(|| config.server.value.clone()) {
        return verify_server(config, &server, &a).await;
    }
    let trusted = trusted_key(config, a.key.as_deref(), a.input.is_none())?;
    let result = match &a.input {
        Some(path) => verify_export(path, &trusted, a.quiet),
        None => {
            let store = open_store_for_audit(config).await?;
            verify_store(&*store, &trusted, a.quiet, a.check_tree).await
        }
    };
    match result {
        Ok(report) => print_report(&report, a.json),
        Err(e) => {
            // A failure that no seq explains (no checkpoint at all, a bad
            // signature) is still a report for --json readers.
            if let Some(f) = e.downcast_ref::<Failure>() {
                if a.json && f.code == crate::exit::Code::Unverified {
                    let body = serde_json::json!({"ok": false, "problem": f.message});
                    println!("{}", serde_json::to_string_pretty(&body)?);
                }
            }
            Err(e)
        }
    }
}

fn print_report(report: &Report, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else if report.ok {
        writeln!(
            out,
            "verified: {} events, every leaf rebuilt from its event's fields, add up to the checkpoint of size {} signed by {}",
            report.events, report.checkpoint_size, report.key
        )?;
        writeln!(out, "root: {}", report.root)?;
        if report.stored_hashes_compared > 0 {
            writeln!(
                out,
                "compared: {} checkpoints, {} stored tree hashes",
                report.checkpoints_compared, report.stored_hashes_compared
            )?;
        } else {
            writeln!(
                out,
                "compared: {} checkpoints (--check-tree also compares the stored tree hashes that proofs are served from)",
                report.checkpoints_compared
            )?;
        }
    }
    if report.ok {
        return Ok(());
    }
    let first = &report.divergences[0];
    let place = match first.last_seq {
        Some(last) if last != first.first_seq => {
            format!(
                "seq {} (somewhere in seq {}..={})",
                first.first_seq, first.first_seq, last
            )
        }
        _ => format!("seq {}", first.first_seq),
    };
    let mut f = Failure::unverified(format!(
        "verification failed: the ledger diverges from its signed history at {place}: {}",
        first.reason
    ));
    f.details = report.divergences[1..]
        .iter()
        .map(|d| format!("also from seq {}: {}", d.first_seq, d.reason))
        .collect();
    Err(f.into())
}

/// Verifies a ledger through the store: events, stored hashes and checkpoints.
async fn verify_store(
    store: &dyn Store,
    trusted: &NoteVerifier,
    quiet: bool,
    check_tree: bool,
) -> Result<Report> {
    let Some(latest) = store.checkpoint().await.map_err(store_failure)? else {
        let n = store.len().await.map_err(store_failure)?;
        if n == 0 {
            return Ok(Report {
                ok: true,
                events: 0,
                checkpoint_size: 0,
                root: B64.encode(patchaudit_proofs::empty_root()),
                key: trusted.to_string(),
                checkpoints_compared: 0,
                stored_hashes_compared: 0,
                divergences: Vec::new(),
            });
        }
        return Err(Failure::unverified(format!(
            "verification failed: the ledger holds {n} events but no signed checkpoint: the checkpoints were removed"
        ))
        .into());
    };
    let signed = open_checkpoint(&latest.note, trusted).map_err(|e| {
        Failure::unverified(format!(
            "verification failed: the latest checkpoint (size {}) is not validly signed by the trusted key {trusted}: {e}",
            latest.size
        ))
    })?;

    let mut checkpoints = Vec::new();
    let mut from = 0;
    loop {
        let page = store.checkpoints(from, PAGE).await.map_err(store_failure)?;
        let Some(last) = page.last().map(|c| c.size) else {
            break;
        };
        for c in page {
            let (size, root) = match unsigned_checkpoint(&c.note) {
                Some(cp) => (cp.size, cp.root),
                // An unreadable note compares as a wrong root at its row's size.
                None => (c.size, [0; 32]),
            };
            checkpoints.push((size, root, c.note));
        }
        from = last + 1;
    }
    // The signed latest checkpoint is the reference, whatever the rows say.
    checkpoints.retain(|(size, _, _)| *size < signed.size);
    checkpoints.push((signed.size, signed.root, latest.note.clone()));
    let compared = checkpoints.len();

    let bar = progress(signed.size, quiet);
    let mut replay = replay_store(store, checkpoints.clone(), check_tree, None, &bar).await?;
    bar.finish_and_clear();
    if let Some((bad, _)) = replay.bad_checkpoint.clone() {
        if !check_tree {
            // The events disagree with a signed root. Replay again up to it,
            // now also against the stored tree hashes, to say where.
            let again =
                replay_store(store, checkpoints, true, Some(bad), &ProgressBar::hidden()).await?;
            replay.stored_mismatch = again.stored_mismatch;
            replay.stored_compared = again.stored_compared;
        }
    }
    Ok(finish(replay, &signed, trusted, compared))
}

/// Replays the events' leaves (up to `stop_at` events) into a fresh tree.
async fn replay_store(
    store: &dyn Store,
    checkpoints: Vec<(u64, Hash, String)>,
    compare_stored: bool,
    stop_at: Option<u64>,
    bar: &ProgressBar,
) -> Result<Replay> {
    let mut replay = Replay::new(checkpoints, compare_stored);
    let stop_at = stop_at.unwrap_or(u64::MAX);
    'pages: while replay.tree.size() < stop_at {
        let from = replay.tree.size();
        let want = PAGE.min(usize::try_from(stop_at - from).unwrap_or(PAGE));
        let page = match store.leaf_hashes(from, want).await {
            Ok(page) => page,
            Err(StoreError::Corrupt(_)) => {
                // Find the unreadable row one by one, to name it.
                let mut seq = from;
                loop {
                    match store.leaf_hashes(seq, 1).await {
                        Ok(one) if one.is_empty() => break 'pages,
                        Ok(one) => {
                            if !replay.leaf(one[0].0, one[0].1) {
                                break 'pages;
                            }
                            seq = one[0].0 + 1;
                        }
                        Err(e) => {
                            replay.event_problem = Some(Divergence {
                                first_seq: seq,
                                last_seq: None,
                                reason: format!("the stored row cannot be read as an event: {e}"),
                            });
                            break 'pages;
                        }
                    }
                }
            }
            Err(e) => return Err(store_failure(e)),
        };
        let mut go_on = true;
        for &(seq, leaf) in &page {
            if !replay.leaf(seq, leaf) {
                go_on = false;
                break;
            }
        }
        if let Some(&(first, _)) = replay.recomputed.first() {
            let stored = store
                .tree_hash_range(first, replay.recomputed.len())
                .await
                .map_err(store_failure)?;
            replay.compare(&stored);
        }
        bar.set_position(replay.tree.size());
        if !go_on || page.len() < want {
            break;
        }
    }
    Ok(replay)
}

fn finish(replay: Replay, signed: &Checkpoint, trusted: &NoteVerifier, compared: usize) -> Report {
    let divergences = replay.divergences(signed, trusted);
    Report {
        ok: divergences.is_empty(),
        events: replay.tree.size(),
        checkpoint_size: signed.size,
        root: B64.encode(signed.root),
        key: trusted.to_string(),
        checkpoints_compared: compared,
        stored_hashes_compared: replay.stored_compared,
        divergences,
    }
}

/// Verifies an export file: its events against its checkpoint.
fn verify_export(path: &Path, trusted: &NoteVerifier, quiet: bool) -> Result<Report> {
    let file = std::fs::File::open(path).map_err(|e| {
        Failure::not_found(format!("cannot open the export {}: {e}", path.display()))
    })?;
    let mut lines = std::io::BufReader::with_capacity(1 << 20, file).lines();
    let bad = |line: usize, m: String| Failure::invalid(format!("{}:{line}: {m}", path.display()));
    let header = lines.next().transpose()?.ok_or_else(|| {
        bad(
            1,
            "the file is empty; an export starts with its checkpoint line".into(),
        )
    })?;
    let header: ExportHeader = serde_json::from_str(&header)
        .map_err(|e| bad(1, format!("not a patchaudit export header: {e}")))?;
    if header.patchaudit_export != EXPORT_VERSION {
        return Err(bad(
            1,
            format!(
                "export format version {} is not one this build reads ({EXPORT_VERSION})",
                header.patchaudit_export
            ),
        )
        .into());
    }
    let signed = open_checkpoint(&header.checkpoint, trusted).map_err(|e| {
        Failure::unverified(format!(
            "verification failed: the export's checkpoint is not validly signed by the trusted key {trusted}: {e}"
        ))
    })?;
    let mut replay = Replay::new(
        vec![(signed.size, signed.root, header.checkpoint.clone())],
        false,
    );
    let bar = progress(signed.size, quiet);
    for (i, line) in lines.enumerate() {
        let n = i + 2;
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let out: EventOut =
            serde_json::from_str(&line).map_err(|e| bad(n, format!("not an event: {e}")))?;
        let event = event_from_out(out).map_err(|m| bad(n, m))?;
        if !replay.leaf(event.seq, leaf_hash(&event.leaf_bytes())) {
            break;
        }
        if n.is_multiple_of(65_536) {
            bar.set_position(replay.tree.size());
        }
    }
    bar.finish_and_clear();
    Ok(finish(replay, &signed, trusted, 1))
}

/// The last checkpoint a `--state` file holds.
fn read_state(path: &Path, trusted: &NoteVerifier) -> Result<Option<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::error(format!("reading {}: {e}", path.display())).into()),
    };
    open_checkpoint(&text, trusted).map(Some).map_err(|e| {
        Failure::unverified(format!(
            "the state file {} does not hold a checkpoint signed by the trusted key: {e}",
            path.display()
        ))
        .into()
    })
}

fn write_state(path: &Path, note: &str) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing the state file {}", path.display()))?;
    tmp.write_all(note.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing the state file {}", path.display()))?;
    Ok(())
}

fn decode_hashes(proof: &[String]) -> Result<Vec<Hash>> {
    proof
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b.as_slice()).ok())
                .ok_or_else(|| {
                    Failure::unverified(format!(
                        "the proof holds {h:?}, which is not a base64 SHA-256 hash"
                    ))
                    .into()
                })
        })
        .collect()
}

/// `verify --server URL [--state FILE]`: the checkpoint's signature, and
/// its consistency with the last one this auditor saw.
async fn verify_server(config: &Config, server: &str, a: &VerifyArgs) -> Result<()> {
    let trusted = trusted_key(config, a.key.as_deref(), false)?;
    let remote = Backend::remote(server, config)?;
    let note = remote.get_text("/v1/checkpoint").await?;
    let new = open_checkpoint(&note, &trusted).map_err(|e| {
        Failure::unverified(format!(
            "verification failed: the server's checkpoint is not validly signed by the trusted key {trusted}: {e}"
        ))
    })?;
    let old = match &a.state {
        Some(p) => read_state(p, &trusted)?,
        None => None,
    };
    let mut out = std::io::stdout().lock();
    match &old {
        Some(old) if new.size < old.size => {
            return Err(Failure::unverified(format!(
                "verification failed: the log shrank from {} events (saved checkpoint) to {}",
                old.size, new.size
            ))
            .into());
        }
        Some(old) if new.size == old.size && new.root != old.root => {
            return Err(Failure::unverified(format!(
                "verification failed: the log was rewritten: two checkpoints of size {} have different roots ({} saved, {} now); both are signed, so keep both notes as evidence",
                new.size,
                B64.encode(old.root),
                B64.encode(new.root)
            ))
            .into());
        }
        Some(old) if new.size > old.size => {
            let p: ConsistencyProofOut = remote
                .get_json(&format!(
                    "/v1/proofs/consistency?from={}&to={}",
                    old.size, new.size
                ))
                .await?;
            let proof = decode_hashes(&p.proof)?;
            verify_consistency(old.size, new.size, &proof, &old.root, &new.root).map_err(|e| {
                Failure::unverified(format!(
                    "verification failed: the checkpoint of size {} is not an extension of the saved one of size {}: {e}",
                    new.size, old.size
                ))
            })?;
            writeln!(
                out,
                "consistent: the log grew from {} to {} events without changing any earlier one",
                old.size, new.size
            )?;
        }
        Some(_) => writeln!(out, "unchanged: still {} events, same root", new.size)?,
        None => writeln!(
            out,
            "first checkpoint seen: {} events{}",
            new.size,
            if a.state.is_some() {
                "; saved as the reference for the next run"
            } else {
                ""
            }
        )?,
    }
    writeln!(
        out,
        "checkpoint: size {}, root {}, signed by {trusted}",
        new.size,
        B64.encode(new.root)
    )?;
    if let Some(p) = &a.state {
        write_state(p, &note)?;
    }
    Ok(())
}

/// `patchaudit prove SEQ`.
pub async fn prove(config: &Config, a: ProveArgs) -> Result<()> {
    let server = a.server.clone().or_else(|| config.server.value.clone());
    let trusted = trusted_key(config, a.key.as_deref(), server.is_none())?;
    let (event, size, proof, note) = match server {
        Some(url) => {
            let p: EventProofOut = Backend::remote(&url, config)?
                .get_json(&format!("/v1/events/{}/proof", a.seq))
                .await?;
            let event = event_from_out(p.event).map_err(|m| {
                Failure::unverified(format!("the server sent an invalid event: {m}"))
            })?;
            (event, p.size, decode_hashes(&p.proof)?, p.checkpoint)
        }
        None => {
            let store: Arc<dyn Store> = open_store_for_audit(config).await?;
            let cp = store
                .checkpoint()
                .await
                .map_err(store_failure)?
                .filter(|c| a.seq < c.size)
                .ok_or_else(|| {
                    Failure::not_found(format!(
                        "no event with seq {} is covered by a checkpoint",
                        a.seq
                    ))
                })?;
            let event = store
                .get(a.seq)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| {
                    Failure::unverified(format!(
                        "seq {} is below the checkpoint's size {} but missing",
                        a.seq, cp.size
                    ))
                })?;
            let proof = patchaudit_store::tree::inclusion_proof(&*store, a.seq, cp.size)
                .await
                .map_err(|e| Failure::unverified(format!("no inclusion proof: {e}")))?;
            (event, cp.size, proof, cp.note)
        }
    };
    let checkpoint = open_checkpoint(&note, &trusted).map_err(|e| {
        Failure::unverified(format!(
            "the checkpoint is not validly signed by the trusted key {trusted}: {e}"
        ))
    })?;
    if checkpoint.size != size || event.seq != a.seq {
        return Err(Failure::unverified(format!(
            "the proof is for seq {} in a tree of {size} events, but seq {} and the checkpoint's {} events were asked for",
            event.seq, a.seq, checkpoint.size
        ))
        .into());
    }
    let leaf = leaf_hash(&event.leaf_bytes());
    verify_inclusion(a.seq, size, &leaf, &proof, &checkpoint.root).map_err(|e| {
        Failure::unverified(format!(
            "verification failed: seq {} with these fields is not in the signed tree of {size} events: {e}",
            a.seq
        ))
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let body = serde_json::json!({
            "ok": true,
            "seq": a.seq,
            "size": size,
            "root": B64.encode(checkpoint.root),
            "leaf_hash": B64.encode(leaf),
            "proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
            "event": EventOut::from(&event),
        });
        serde_json::to_writer_pretty(&mut out, &body)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "proven: seq {} ({} on {}, {}) is in the ledger: its leaf, rebuilt from its fields, is included in the checkpoint of {size} events signed by {trusted}",
            a.seq,
            event.event.patch_id.as_str(),
            event.event.system.as_str(),
            event.event.status.as_str()
        )?;
        writeln!(out, "root: {}", B64.encode(checkpoint.root))?;
        writeln!(out, "proof: {} hashes", proof.len())?;
    }
    Ok(())
}

/// `patchaudit export`: the checkpoint line, then every event it covers.
pub async fn export(config: &Config, a: ExportArgs) -> Result<()> {
    let server = a.server.clone().or_else(|| config.server.value.clone());
    let (backend, note) = match server {
        Some(url) => {
            let remote = Backend::remote(&url, config)?;
            let note = remote.get_text("/v1/checkpoint").await?;
            (remote, note)
        }
        None => {
            let store = open_store_for_audit(config).await?;
            let cp = store
                .checkpoint()
                .await
                .map_err(store_failure)?
                .ok_or_else(|| {
                    Failure::not_found("the ledger is empty: there is nothing to export")
                })?;
            (Backend::Local(store), cp.note)
        }
    };
    let size = unsigned_checkpoint(&note)
        .ok_or_else(|| Failure::unverified("the checkpoint is not a readable signed note"))?
        .size;
    let sink: Box<dyn Write> = match &a.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, sink);
    serde_json::to_writer(
        &mut out,
        &ExportHeader {
            patchaudit_export: EXPORT_VERSION,
            checkpoint: note,
        },
    )?;
    out.write_all(b"\n")?;
    let bar = progress(size, a.quiet || a.output.is_none());
    bar.set_message("exporting");
    let filter = EventFilter {
        seq_to: Some(size),
        ..Default::default()
    };
    let mut n = 0u64;
    backend
        .events(&filter, None, |e| {
            serde_json::to_writer(&mut out, &e)?;
            out.write_all(b"\n")?;
            n += 1;
            if n.is_multiple_of(65_536) {
                bar.set_position(n);
            }
            Ok(())
        })
        .await?;
    out.flush()?;
    bar.finish_and_clear();
    if let Some(p) = &a.output {
        eprintln!(
            "exported {n} events and their checkpoint to {}",
            p.display()
        );
    }
    Ok(())
}

/// `patchaudit key`.
pub fn key(config: &Config, a: KeyArgs) -> Result<()> {
    let path = match &a.file {
        Some(p) => p.clone(),
        None => config.signing_key_path()?,
    };
    match a.command {
        KeyCommand::Public => {
            let signer = crate::keys::load(&path)?;
            println!("{}", signer.verifier());
        }
        KeyCommand::Generate { name } => {
            let name = name.unwrap_or_else(crate::keys::default_key_name);
            let signer = crate::keys::create(&path, &name)?;
            eprintln!(
                "created {} (mode 0600); its verifier key is:",
                path.display()
            );
            println!("{}", signer.verifier());
        }
    }
    Ok(())
}
