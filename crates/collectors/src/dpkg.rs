//! `/var/log/dpkg.log`.
//!
//! Each line is `YYYY-MM-DD HH:MM:SS ` (local time, no offset: see
//! [`Context::utc_offset`]) followed by one of:
//!
//! | line | meaning |
//! |---|---|
//! | `startup archives\|packages <command>` | a dpkg run starts |
//! | `install <pkg> <old> <new>`, `upgrade <pkg> <old> <new>` | an unpack starts (`<old>` is `<none>` for a new package) |
//! | `configure <pkg> <version> <none>` | a configure starts |
//! | `remove <pkg> <version> <none>`, `purge <pkg> <version> <none>` | a removal starts |
//! | `trigproc <pkg> <version> <none>` | triggers are processed (not a patch event) |
//! | `disappear <pkg> <version> <none>` | every file of the package was taken over by others |
//! | `status <state> <pkg> <version>` | the package is now in `<state>` |
//! | `conffile <path> <install\|keep>` | a configuration file decision |
//!
//! **How lines group into one action.** The samples show that one action
//! spans several dpkg runs: apt unpacks a package in one run (`startup
//! archives unpack`, `upgrade`, `status half-configured`/`unpacked`/
//! `half-installed` of the old version, `status unpacked` of the new one)
//! and configures it in a later run (`startup packages configure`,
//! `configure`, `status unpacked`, `status half-configured`, `status
//! installed`). Other packages' lines interleave freely. So an action is
//! keyed by the package as logged (`name:arch`) and collects that package's
//! `configure` and `status` lines until it ends:
//!
//! - An `install`, `upgrade`, `remove`, `purge`, or a `configure` with no
//!   action open, opens an action for the package.
//! - It **succeeds** when the package reaches its goal: `installed` (or
//!   `triggers-pending`/`triggers-awaited`, which are configured states) at
//!   the new version for an install or upgrade; `config-files` or
//!   `not-installed` for a remove; `not-installed` for a purge.
//! - It **fails** when a dpkg run ends (the next `startup` line, or the end
//!   of the input) while the package is `half-installed` or
//!   `half-configured`: dpkg never leaves a package half-way when a run
//!   succeeds. It also fails when an install or upgrade falls back to
//!   another version, `not-installed` or `config-files` (the unpack was
//!   rolled back), or a removal ends `installed` again.
//! - A package that is merely `unpacked` when a run ends stays open: its
//!   configure comes in a later run, possibly after a failure elsewhere was
//!   fixed. A new action for the same package replaces an open one: a
//!   half-way one is a failure; an unpacked one, or one with no status
//!   yet, is reported as [`ProblemKind::Incomplete`] and records nothing.
//!   So does an action still open at the end of the input: it may finish
//!   in the next file ([`crate::parse_rotated`] follows it there).
//!
//! Every `install`/`upgrade`/`remove`/`purge` line thus ends as exactly one
//! event or one incomplete problem.
//!
//! The event's time is that of the status line that decided it (the last
//! status line for a failure). `patch_id` is `name@version` without the
//! architecture: the new version for installs and upgrades, the removed
//! version for removals. An `upgrade` whose new version equals the old is a
//! [`Kind::Reinstall`], one to a lower version a [`Kind::Downgrade`].
//! dpkg.log names no user, so there is no actor.

use crate::event::{clip, CollectedEvent, Context, Kind, Out, Parsed, ProblemKind};
use crate::source::{push_warnings, Source};
use crate::text::{at_offset, byte_mask, iso_datetime, le_word, lines, two_digits};
use crate::version::dpkg_cmp;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use patchaudit_domain::Status;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-and-rotate hash over eight bytes at a time, after rustc's
/// FxHash. SipHash's resistance to chosen keys buys nothing for a parser's
/// private table, and the byte-at-a-time FNV-1a used before was a third of
/// the cost of a status line. The table is never iterated in hash order
/// into the output (what is taken from it is sorted by file and line), so
/// the hash does not change what the parser returns.
#[derive(Default)]
struct WordHash(u64);

/// FxHash's multiplier (rustc-hash 2).
const WORD_HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl Hasher for WordHash {
    fn finish(&self) -> u64 {
        // The product's best-mixed bits are its high ones; hashbrown picks
        // buckets by the low ones.
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(WORD_HASH_K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            // The length keeps "a" and "a\0" apart.
            let w = u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59);
            h = (h ^ w).wrapping_mul(WORD_HASH_K);
        }
        self.0 = h;
    }
}

type FastMap<V> = HashMap<String, V, BuildHasherDefault<WordHash>>;

/// The first five words of `rest`, separated by single spaces (so two
/// spaces make an empty word), and how many words there are in all.
/// Spaces are found eight bytes at a time: after finding the lines, this
/// was the parser's largest cost.
fn split_words(rest: &str) -> ([&str; 5], usize) {
    let b = rest.as_bytes();
    let mut words: [&str; 5] = [""; 5];
    let mut count = 0;
    let mut start = 0;
    let mut space = |i: usize, count: &mut usize, start: &mut usize| {
        if *count < 5 {
            words[*count] = &rest[*start..i];
        }
        *count += 1;
        *start = i + 1;
    };
    let mut at = 0;
    while at + 8 <= b.len() {
        let mut m = byte_mask(le_word(b, at), b' ');
        while m != 0 {
            space(
                at + (m.trailing_zeros() / 8) as usize,
                &mut count,
                &mut start,
            );
            m &= m - 1;
        }
        at += 8;
    }
    for (i, &c) in b.iter().enumerate().skip(at) {
        if c == b' ' {
            space(i, &mut count, &mut start);
        }
    }
    if count < 5 {
        words[count] = &rest[start..];
    }
    (words, count + 1)
}

/// Parses one dpkg.log.
pub fn parse(file_name: &str, text: &str, ctx: &Context) -> Parsed {
    let mut p = DpkgParser::new(ctx);
    p.feed(file_name, text);
    p.finish()
}

/// A package state as dpkg logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotInstalled,
    ConfigFiles,
    HalfInstalled,
    Unpacked,
    HalfConfigured,
    TriggersAwaited,
    TriggersPending,
    Installed,
}

impl State {
    fn parse(s: &str) -> Option<State> {
        Some(match s {
            "installed" => State::Installed,
            "unpacked" => State::Unpacked,
            "half-configured" => State::HalfConfigured,
            "half-installed" => State::HalfInstalled,
            "triggers-pending" => State::TriggersPending,
            "triggers-awaited" => State::TriggersAwaited,
            "config-files" => State::ConfigFiles,
            "not-installed" => State::NotInstalled,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            State::NotInstalled => "not-installed",
            State::ConfigFiles => "config-files",
            State::HalfInstalled => "half-installed",
            State::Unpacked => "unpacked",
            State::HalfConfigured => "half-configured",
            State::TriggersAwaited => "triggers-awaited",
            State::TriggersPending => "triggers-pending",
            State::Installed => "installed",
        }
    }

    fn is_half(self) -> bool {
        matches!(self, State::HalfInstalled | State::HalfConfigured)
    }
}

/// An action in progress.
#[derive(Debug)]
struct Tx {
    kind: Kind,
    /// The dpkg verb that opened it, for messages.
    verb: &'static str,
    package: String,
    from: Option<String>,
    to: Option<String>,
    file: usize,
    line: usize,
    at: NaiveDateTime,
    last: Option<(State, NaiveDateTime, usize)>,
}

/// A dpkg.log parser that keeps its state across files, so an action that
/// a log rotation cut in two is still followed. Feed the files oldest
/// first, then call [`DpkgParser::finish`].
pub struct DpkgParser {
    ctx: Context,
    files: Vec<String>,
    open: FastMap<Tx>,
    /// How many open actions are half-installed or half-configured, so a
    /// `startup` line only scans `open` when one of them may have failed.
    half: usize,
    /// The date part of the last timestamp, which most lines share.
    last_date: Option<([u8; 10], NaiveDate)>,
    parsed: Parsed,
}

impl DpkgParser {
    /// A parser with no state.
    pub fn new(ctx: &Context) -> Self {
        DpkgParser {
            ctx: ctx.clone(),
            files: Vec::new(),
            open: FastMap::default(),
            half: 0,
            last_date: None,
            parsed: Parsed::default(),
        }
    }

    /// Records decoding warnings for a file (at line 0).
    pub fn warnings(&mut self, file_name: &str, warnings: &[String]) {
        push_warnings(&mut self.parsed, file_name, warnings);
    }

    /// Parses the next file's text.
    pub fn feed(&mut self, file_name: &str, text: &str) {
        let file = self.files.len();
        self.files.push(file_name.to_owned());
        for (n, line) in lines(text) {
            self.line(file, n, line);
        }
    }

    /// Ends the input: actions still half-way fail, the others are reported
    /// as incomplete.
    pub fn finish(mut self) -> Parsed {
        let mut open: Vec<Tx> = self.open.drain().map(|(_, tx)| tx).collect();
        open.sort_by_key(|tx| (tx.file, tx.line));
        for tx in open {
            match tx.last {
                Some((state, _, _)) if state.is_half() => {
                    self.fail(tx, state, "the input ended before dpkg finished it".into());
                }
                _ => self.incomplete(tx, "the input ended before its outcome was logged"),
            }
        }
        self.parsed
    }

    fn malformed(&mut self, file: usize, n: usize, msg: String) {
        let name = &self.files[file];
        Out::new(name, &mut self.parsed).malformed(n, msg);
    }

    fn line(&mut self, file: usize, n: usize, line: &str) {
        if line.is_empty() {
            return;
        }
        let b = line.as_bytes();
        let at = match self.timestamp(b) {
            Some(t) if b.len() > 20 && b[19] == b' ' => t,
            _ => {
                self.malformed(
                    file,
                    n,
                    format!(
                        "expected \"YYYY-MM-DD HH:MM:SS <entry>\", got {:?}",
                        clip(line, 120)
                    ),
                );
                return;
            }
        };
        let rest = &line[20..];
        let (words, count) = split_words(rest);
        let word = |i: usize| (i < count).then(|| words[i]);
        let verb = words[0];
        let (a, b2, c) = (word(1), word(2), word(3));
        let extra = count > 4;
        match verb {
            "status" => match (a, b2, c, extra) {
                (Some(state), Some(pkg), Some(version), false) => match State::parse(state) {
                    Some(state) => self.status(n, at, state, pkg, version),
                    None => self.malformed(file, n, format!("unknown package state {state:?}")),
                },
                _ => self.malformed(
                    file,
                    n,
                    format!("expected \"status <state> <package> <version>\", got {rest:?}"),
                ),
            },
            "install" | "upgrade" | "configure" | "remove" | "purge" | "trigproc" | "disappear" => {
                match (a, b2, c, extra) {
                    (Some(pkg), Some(v1), Some(v2), false)
                        if !pkg.is_empty() && !v1.is_empty() && !v2.is_empty() =>
                    {
                        self.action(file, n, at, verb, pkg, v1, v2)
                    }
                    _ => self.malformed(
                        file,
                        n,
                        format!("expected \"{verb} <package> <version> <version>\", got {rest:?}"),
                    ),
                }
            }
            "startup" => match (a, b2) {
                (Some(_), Some(_)) => self.run_ended(),
                _ => self.malformed(
                    file,
                    n,
                    format!("expected \"startup <archives|packages> <command>\", got {rest:?}"),
                ),
            },
            "conffile" => {
                if a.is_none() || b2.is_none() {
                    self.malformed(
                        file,
                        n,
                        format!("expected \"conffile <path> <decision>\", got {rest:?}"),
                    );
                }
            }
            _ => self.malformed(
                file,
                n,
                format!("unknown dpkg.log entry {:?}", clip(rest, 120)),
            ),
        }
    }

    /// `YYYY-MM-DD HH:MM:SS` at the start of the line, reusing the date of
    /// the previous line when it is the same.
    #[inline]
    fn timestamp(&mut self, b: &[u8]) -> Option<NaiveDateTime> {
        if b.len() < 19 {
            return None;
        }
        if let Some((bytes, date)) = &self.last_date {
            if b[..10] == bytes[..] && b[10] == b' ' && b[13] == b':' && b[16] == b':' {
                let time = NaiveTime::from_hms_opt(
                    two_digits(&b[11..13])?,
                    two_digits(&b[14..16])?,
                    two_digits(&b[17..19])?,
                )?;
                return Some(date.and_time(time));
            }
        }
        let t = iso_datetime(b)?;
        if b[10] == b' ' {
            let mut key = [0u8; 10];
            key.copy_from_slice(&b[..10]);
            self.last_date = Some((key, t.date()));
        }
        Some(t)
    }

    /// A `startup` line: the previous dpkg run is over, so anything it left
    /// half-way failed.
    fn run_ended(&mut self) {
        if self.half == 0 {
            return;
        }
        let mut failed: Vec<String> = self
            .open
            .iter()
            .filter(|(_, tx)| tx.last.is_some_and(|(s, _, _)| s.is_half()))
            .map(|(k, _)| k.clone())
            .collect();
        failed.sort_by_key(|k| self.open.get(k).map(|tx| (tx.file, tx.line)));
        for key in failed {
            if let Some(tx) = self.take(&key) {
                let state = tx.last.map_or(State::HalfInstalled, |l| l.0);
                self.fail(
                    tx,
                    state,
                    "the dpkg run ended before it was finished".into(),
                );
            }
        }
    }

    fn take(&mut self, key: &str) -> Option<Tx> {
        let tx = self.open.remove(key)?;
        if tx.last.is_some_and(|(s, _, _)| s.is_half()) {
            self.half = self.half.saturating_sub(1);
        }
        Some(tx)
    }

    #[allow(clippy::too_many_arguments)]
    fn action(
        &mut self,
        file: usize,
        n: usize,
        at: NaiveDateTime,
        verb: &str,
        pkg: &str,
        v1: &str,
        v2: &str,
    ) {
        let kind = match verb {
            "trigproc" => return,
            "configure" => {
                if self.open.contains_key(pkg) {
                    return;
                }
                Kind::Configure
            }
            "install" | "upgrade" => {
                if v1 == "<none>" {
                    Kind::Install
                } else if v1 == v2 {
                    Kind::Reinstall
                } else if dpkg_cmp(v1, v2) == Ok(Ordering::Greater) {
                    Kind::Downgrade
                } else if verb == "install" {
                    Kind::Install
                } else {
                    Kind::Upgrade
                }
            }
            "remove" => Kind::Remove,
            "purge" => Kind::Purge,
            _ => Kind::Remove, // disappear
        };
        if let Some(old) = self.take(pkg) {
            self.superseded(old, verb);
        }
        let version = |v: &str| (v != "<none>").then(|| v.to_owned());
        let (from, to) = match kind {
            Kind::Configure => (None, version(v1)),
            Kind::Remove | Kind::Purge => (version(v1), None),
            _ => (version(v1), version(v2)),
        };
        let tx = Tx {
            kind,
            verb: match verb {
                "install" => "install",
                "upgrade" => "upgrade",
                "configure" => "configure",
                "remove" => "remove",
                "purge" => "purge",
                _ => "disappear",
            },
            package: pkg.to_owned(),
            from,
            to,
            file,
            line: n,
            at,
            last: None,
        };
        if verb == "disappear" {
            let detail = "dpkg: every file of the package was taken over by other packages".into();
            self.done(tx, at, n, Some(detail));
            return;
        }
        self.open.insert(pkg.to_owned(), tx);
    }

    fn status(&mut self, n: usize, at: NaiveDateTime, state: State, pkg: &str, version: &str) {
        let Some(tx) = self.open.get_mut(pkg) else {
            return;
        };
        let was_half = tx.last.is_some_and(|(s, _, _)| s.is_half());
        tx.last = Some((state, at, n));
        let now_half = state.is_half();
        match (was_half, now_half) {
            (false, true) => self.half += 1,
            (true, false) => self.half = self.half.saturating_sub(1),
            _ => {}
        }
        let at_target = tx.to.as_deref() == Some(version);
        enum Outcome {
            Open,
            Done,
            Failed(String),
        }
        let outcome = match tx.kind {
            Kind::Remove => match state {
                State::ConfigFiles | State::NotInstalled => Outcome::Done,
                State::Installed => Outcome::Failed(
                    "the removal was rolled back: the package is installed again".into(),
                ),
                _ => Outcome::Open,
            },
            Kind::Purge => match state {
                State::NotInstalled => Outcome::Done,
                State::Installed => Outcome::Failed(
                    "the purge was rolled back: the package is installed again".into(),
                ),
                _ => Outcome::Open,
            },
            _ => match state {
                State::Installed | State::TriggersAwaited | State::TriggersPending if at_target => {
                    Outcome::Done
                }
                State::Installed | State::TriggersAwaited | State::TriggersPending => {
                    Outcome::Failed(format!(
                        "the unpack was rolled back: version {version} is {}",
                        state.as_str()
                    ))
                }
                State::NotInstalled | State::ConfigFiles if tx.kind != Kind::Configure => {
                    Outcome::Failed(format!(
                        "the unpack was rolled back: the package is {}",
                        state.as_str()
                    ))
                }
                _ => Outcome::Open,
            },
        };
        match outcome {
            Outcome::Open => {}
            Outcome::Done => {
                if let Some(tx) = self.take(pkg) {
                    self.done(tx, at, n, None);
                }
            }
            Outcome::Failed(why) => {
                if let Some(tx) = self.take(pkg) {
                    self.fail(tx, state, why);
                }
            }
        }
    }

    fn superseded(&mut self, tx: Tx, verb: &str) {
        match tx.last {
            Some((state, _, _)) if state.is_half() => {
                self.fail(
                    tx,
                    state,
                    format!("a later {verb} of the package replaced it"),
                );
            }
            _ => self.incomplete(
                tx,
                &format!("a later {verb} of the package replaced it before its outcome was logged"),
            ),
        }
    }

    fn incomplete(&mut self, tx: Tx, why: &str) {
        let file = &self.files[tx.file];
        let state = tx.last.map_or("no status logged".to_owned(), |(s, _, _)| {
            format!("last state {}", s.as_str())
        });
        Out::new(file, &mut self.parsed).problem(
            tx.line,
            ProblemKind::Incomplete,
            format!(
                "{} of {} ({}): {why}; no event recorded",
                tx.verb, tx.package, state
            ),
        );
    }

    fn done(&mut self, tx: Tx, at: NaiveDateTime, line: usize, detail: Option<String>) {
        let detail = detail.or_else(|| match tx.kind {
            Kind::Purge => Some("purge: configuration files removed too".into()),
            Kind::Configure => Some(
                "configure: completes an install or upgrade that an earlier dpkg run left unfinished"
                    .into(),
            ),
            _ => None,
        });
        let status = tx.kind.done();
        self.emit(tx, status, at, line, detail);
    }

    fn fail(&mut self, tx: Tx, state: State, why: String) {
        let (at, line) = tx.last.map_or((tx.at, tx.line), |(_, at, l)| (at, l));
        let detail = format!(
            "dpkg {} of {} failed: {why}; the package was left {}",
            tx.verb,
            tx.package,
            state.as_str()
        );
        self.emit(tx, Status::Failure, at, line, Some(detail));
    }

    fn emit(
        &mut self,
        tx: Tx,
        status: Status,
        at: NaiveDateTime,
        line: usize,
        detail: Option<String>,
    ) {
        let name = tx.package.split(':').next().unwrap_or(&tx.package);
        let version = if tx.kind.is_removal() {
            tx.from.as_deref()
        } else {
            tx.to.as_deref()
        };
        // Built by hand: the formatting machinery of format! cost more
        // than the copies, once per event.
        let patch_id = match version {
            Some(v) => {
                let mut id = String::with_capacity(name.len() + 1 + v.len());
                id.push_str(name);
                id.push('@');
                id.push_str(v);
                id
            }
            None => name.to_owned(),
        };
        let mut out = Out::new(&self.files[tx.file], &mut self.parsed);
        let Some(applied_at) = at_offset(at, self.ctx.utc_offset) else {
            out.malformed(
                line,
                "timestamp cannot be placed at the context's UTC offset",
            );
            return;
        };
        out.event(CollectedEvent {
            source: Source::Dpkg,
            kind: tx.kind,
            patch_id,
            applied_at,
            status,
            package: Some(tx.package),
            from_version: tx.from,
            to_version: tx.to,
            actor: None,
            detail,
            host: None,
            line,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word splitter as a plain byte loop, for comparison.
    fn reference(rest: &str) -> ([&str; 5], usize) {
        let mut words: [&str; 5] = [""; 5];
        let mut count = 0;
        let mut start = 0;
        for (i, &c) in rest.as_bytes().iter().enumerate() {
            if c == b' ' {
                if count < 5 {
                    words[count] = &rest[start..i];
                }
                count += 1;
                start = i + 1;
            }
        }
        if count < 5 {
            words[count] = &rest[start..];
        }
        (words, count + 1)
    }

    /// Every string of up to 11 characters over spaces, letters and a
    /// two-byte character, so that spaces fall at every position of an
    /// 8-byte word, next to each other and across words.
    #[test]
    fn words_are_split_as_a_byte_loop_splits_them() {
        let alphabet = [" ", "a", "é"];
        for len in 0..=11u32 {
            for code in 0..3usize.pow(len) {
                let mut c = code;
                let s: String = (0..len)
                    .map(|_| {
                        let x = alphabet[c % 3];
                        c /= 3;
                        x
                    })
                    .collect();
                assert_eq!(split_words(&s), reference(&s), "{s:?}");
            }
        }
        let line = "status half-configured libc-bin:amd64 2.36-9+deb12u4";
        assert_eq!(split_words(line), reference(line));
        assert_eq!(split_words(line).1, 4);
    }
}
