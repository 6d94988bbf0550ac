//! The results of a run: rows of measurements beside their baselines and
//! targets, printed as a plain-text table or written as Markdown.

use crate::machine::Machine;
use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;

/// Whether a measurement met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target was met.
    Pass,
    /// The target was missed.
    Miss,
    /// The measurement has no target; it is reported for context.
    Info,
}

impl Verdict {
    /// `PASS` or `MISS` by a condition.
    pub fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Miss
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Miss => "MISS",
            Verdict::Info => "-",
        }
    }
}

/// One line of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The benchmark: `ingest`, `concurrent` or `history`.
    pub bench: String,
    /// What was measured, with its unit.
    pub metric: String,
    /// The measured value.
    pub value: String,
    /// The baseline it is compared with, if any.
    pub baseline: String,
    /// The measured value relative to the baseline, if any.
    pub ratio: String,
    /// The target, if any.
    pub target: String,
    /// Whether the target was met.
    pub verdict: Verdict,
}

impl Row {
    /// A row without baseline or target.
    pub fn info(bench: &str, metric: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            bench: bench.to_owned(),
            metric: metric.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: String::new(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// Sets the baseline and the ratio.
    pub fn baseline(mut self, baseline: impl Into<String>, ratio: impl Into<String>) -> Row {
        self.baseline = baseline.into();
        self.ratio = ratio.into();
        self
    }

    /// Sets the target and whether it was met.
    pub fn target(mut self, target: impl Into<String>, met: bool) -> Row {
        self.target = target.into();
        self.verdict = Verdict::of(met);
        self
    }
}

/// Everything one invocation measured.
#[derive(Debug, Default)]
pub struct Report {
    /// The result rows, in the order the benchmarks ran.
    pub rows: Vec<Row>,
    /// Notes on how the numbers were obtained (per-run values, sizes, caveats).
    pub notes: Vec<String>,
    /// Further tables of a benchmark, as Markdown, printed verbatim after
    /// the results table (Markdown tables read well as plain text too).
    pub sections: Vec<String>,
}

impl Report {
    /// Appends another report's rows and notes.
    pub fn extend(&mut self, other: Report) {
        self.rows.extend(other.rows);
        self.notes.extend(other.notes);
        self.sections.extend(other.sections);
    }

    fn cells(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "bench", "metric", "measured", "baseline", "ratio", "target", "result",
        ];
        let body = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.bench.clone(),
                    r.metric.clone(),
                    r.value.clone(),
                    r.baseline.clone(),
                    r.ratio.clone(),
                    r.target.clone(),
                    r.verdict.as_str().to_owned(),
                ]
            })
            .collect();
        (header, body)
    }

    /// The plain-text table with the machine description above it.
    pub fn to_text(&self, machine: &Machine) -> String {
        let mut out = String::new();
        out.push_str("Machine\n");
        for (k, v) in machine.lines() {
            let _ = writeln!(out, "  {k:<16} {v}");
        }
        out.push('\n');
        let (header, body) = self.cells();
        let width = |c: usize| {
            body.iter()
                .map(|r| r[c].chars().count())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..header.len()).map(width).collect();
        let line = |cells: Vec<String>| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i] - c.chars().count();
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad + 2));
                }
            }
            s.trim_end().to_owned() + "\n"
        };
        out.push_str(&line(header.iter().map(|s| s.to_string()).collect()));
        out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
        for r in body {
            out.push_str(&line(r));
        }
        for s in &self.sections {
            out.push('\n');
            out.push_str(s.trim_end());
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push_str("\nNotes\n");
            for n in &self.notes {
                let _ = writeln!(out, "  - {n}");
            }
        }
        out
    }

    /// The results as a Markdown section, ready to paste into `docs/benchmarks.md`.
    pub fn to_markdown(&self, machine: &Machine, command: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "## Run of {}\n", machine.date);
        let _ = writeln!(out, "Command: `{command}`\n");
        out.push_str("| Machine | |\n|---|---|\n");
        for (k, v) in machine.lines() {
            let _ = writeln!(out, "| {k} | {} |", md_escape(&v));
        }
        out.push('\n');
        let (header, body) = self.cells();
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(
            out,
            "|{}|",
            header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
        );
        for r in body {
            let cells: Vec<String> = r
                .iter()
                .map(|c| {
                    let c = md_escape(c);
                    match c.as_str() {
                        "PASS" | "MISS" => format!("**{c}**"),
                        _ => c,
                    }
                })
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        for s in &self.sections {
            out.push('\n');
            out.push_str(s.trim_end());
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "- {}", md_escape(n));
            }
        }
        out
    }

    /// Writes [`Report::to_markdown`] to `path`.
    pub fn write_markdown(
        &self,
        path: &Path,
        machine: &Machine,
        command: &str,
    ) -> anyhow::Result<()> {
        std::fs::write(path, self.to_markdown(machine, command))
            .with_context(|| format!("writing the Markdown results to {}", path.display()))
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_every_row_and_escape_pipes() {
        let mut r = Report::default();
        r.rows.push(
            Row::info("ingest", "events/s", "1,000")
                .baseline("2,000", "0.50×")
                .target("≥ 0.5×", true),
        );
        r.rows
            .push(Row::info("history", "a | b", "3 ms").target("≤ 2 ms", false));
        let m = Machine::for_tests();
        let text = r.to_text(&m);
        assert!(text.contains("PASS") && text.contains("MISS"));
        let md = r.to_markdown(&m, "patchaudit-bench all");
        assert!(md.contains("| ingest | events/s | 1,000 | 2,000 | 0.50× | ≥ 0.5× | **PASS** |"));
        assert!(md.contains("a \\| b"));
    }
}
