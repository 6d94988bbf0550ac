//! The outward forms of a compliance report: JSON, CSV and HTML, rendered
//! from a small fleet whose every number is worked out by hand, with a
//! hostile system id, tag, title and failure detail.

use patchaudit_compliance::report::CheckpointRef;
use patchaudit_compliance::{
    CatalogEntry, EventFact, PairFacts, PairState, RawCatalogEntry, Report, ReportFilter,
    ReportInput, Severity, SlaPolicy, SystemView, Tag, Tags, DAY_MICROS,
};
use patchaudit_domain::{Status, Timestamp};
use patchaudit_server::report_out::{
    escape, patches_csv, systems_csv, to_csv, to_html, ReportOut, HTML_DETAIL_MAX_CHARS,
    PAIRS_CSV_COLUMNS, PATCHES_CSV_COLUMNS, SYSTEMS_CSV_COLUMNS,
};
use serde_json::Value;
use std::collections::HashMap;

const REL: i64 = 19_723; // 2024-01-01 in days since the epoch

const EVIL: &str = "<script>alert(1)</script>";
const EVIL_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";
const EVIL_DETAIL: &str = "exit 1\n</pre><script>alert(2)</script><img src=x onerror=alert(3)>";
const EVIL_DETAIL_ESCAPED: &str =
    "&lt;/pre&gt;&lt;script&gt;alert(2)&lt;/script&gt;&lt;img src=x onerror=alert(3)&gt;";
const ROOT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn day(d: i64) -> Timestamp {
    Timestamp::from_micros((REL + d) * DAY_MICROS)
}

fn entry(id: &str, title: &str, severity: &str, released: i64) -> CatalogEntry {
    CatalogEntry::parse(RawCatalogEntry {
        id: Some(id.into()),
        title: Some(title.into()),
        severity: Some(severity.into()),
        released_at: Some(day(released).to_rfc3339()),
        ..Default::default()
    })
    .unwrap()
}

fn system(id: &str, seen: i64, tags: &[&str]) -> SystemView {
    SystemView {
        id: id.into(),
        tags: Tags::parse(tags.iter().copied(), "tags").unwrap(),
        first_seen: Some(day(0)),
        last_seen: Some(day(seen)),
    }
}

/// Folds events given as (day, status, seq).
fn facts(evs: &[(i64, Status, u64)]) -> PairFacts {
    let mut v: Vec<EventFact> = evs
        .iter()
        .map(|(d, s, seq)| EventFact {
            applied_at: day(*d),
            seq: *seq,
            status: *s,
            reboot_required: false,
        })
        .collect();
    PairFacts::fold(&mut v).unwrap()
}

/// Four systems and three patches, at day 50:
///
/// - A (critical, released day 0, deadline day 30): web-1 on time (day 10),
///   web-2 late (day 40), the hostile system never attempted (overdue),
///   db-1 stale (unknown, past the deadline).
/// - B (high, released day 0, deadline day 30): web-1 failed twice, the
///   hostile system failed once (both failed and overdue), web-2 never
///   attempted (overdue), db-1 unknown.
/// - C (low, released day 45, deadline day 225): missing on the three live
///   systems, unknown on db-1.
fn input() -> ReportInput {
    let mut f: HashMap<String, HashMap<String, PairFacts>> = HashMap::new();
    let mut put = |patch: &str, sys: &str, pf: PairFacts| {
        f.entry(patch.into()).or_default().insert(sys.into(), pf);
    };
    put("A", "web-1", facts(&[(10, Status::Success, 1)]));
    put(
        "B",
        "web-1",
        facts(&[(5, Status::Failure, 2), (6, Status::Failure, 3)]),
    );
    put("B", EVIL, facts(&[(7, Status::Failure, 4)]));
    put("A", "web-2", facts(&[(40, Status::Success, 5)]));
    ReportInput {
        at: day(50),
        as_of: true,
        checkpoint: Some(CheckpointRef {
            size: 6,
            root_hex: ROOT.into(),
        }),
        catalog: vec![
            entry("A", "OpenSSL <3.0.13> & friends", "critical", 0),
            entry("B", "Kernel fix", "high", 0),
            entry("C", "Docs tool", "low", 45),
        ],
        systems: vec![
            system(EVIL, 49, &["owner=<script>x</script>"]),
            system("db-1", 1, &["env=prod"]),
            system("web-1", 49, &["env=prod", "tier=web"]),
            system("web-2", 48, &["env=dev"]),
        ],
        policy: SlaPolicy::default(),
        exceptions: vec![],
        facts: f,
        inventories: HashMap::new(),
    }
}

/// The report of [`input`], with failure details filled in as the edge does.
fn report() -> ReportOut {
    let mut r = Report::compute(&input(), &ReportFilter::default());
    for row in r.failures.iter_mut().chain(r.overdue.iter_mut()) {
        if row.state == PairState::Failed {
            row.detail = Some(if row.system == EVIL {
                EVIL_DETAIL.to_owned()
            } else {
                "x".repeat(2500)
            });
        }
    }
    ReportOut::from(&r)
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn json_round_trips_through_serde() {
    let out = report();
    let text = serde_json::to_string(&out).unwrap();
    let back: ReportOut = serde_json::from_str(&text).unwrap();
    assert_eq!(back, out);
    // And through the pretty form the CLI saves.
    let pretty = serde_json::to_string_pretty(&out).unwrap();
    assert_eq!(serde_json::from_str::<ReportOut>(&pretty).unwrap(), out);
}

#[test]
fn json_holds_the_hand_computed_numbers() {
    let v: Value = serde_json::to_value(report()).unwrap();
    assert_eq!(v["at"], "2024-02-20T00:00:00.000000Z");
    assert_eq!(v["as_of"], true);
    assert_eq!(v["checkpoint"]["size"], 6);
    assert_eq!(v["checkpoint"]["root"], ROOT);
    assert_eq!(
        v["filter"],
        serde_json::json!({"tags": [], "severities": [], "system": null, "patch_id": null})
    );

    let s = &v["summary"];
    assert_eq!(s["pairs_required"], 12);
    // Every state but not_required, zeros included, in report order.
    let states = s["states"].as_object().unwrap();
    let expected: Vec<&str> = PairState::ALL
        .iter()
        .filter(|st| **st != PairState::NotRequired)
        .map(|st| st.as_str())
        .collect();
    let mut keys: Vec<&str> = states.keys().map(String::as_str).collect();
    let mut expected = expected;
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(
        s["states"],
        serde_json::json!({
            "missing": 3, "overdue": 2, "applied_on_time": 1, "applied_late": 1,
            "failed": 2, "rolled_back": 0, "pending_reboot": 0, "excepted": 0, "unknown": 3
        })
    );
    assert!(approx(
        s["coverage_pct"].as_f64().unwrap(),
        100.0 * 2.0 / 12.0
    ));
    assert_eq!(s["on_time_pct"], 50.0);
    // Overdue flags: A on the hostile system and db-1; B everywhere.
    assert_eq!(s["overdue"], 6);
    assert_eq!(
        s["overdue_by_severity"],
        serde_json::json!({"critical": 2, "high": 4, "medium": 0, "low": 0, "none": 0})
    );
    assert_eq!(
        s["time_to_patch"],
        serde_json::json!([{"severity": "critical", "count": 2, "mean_days": 25.0, "p90_days": 40.0}])
    );
    assert_eq!((&s["attempts"], &s["failures"]), (&5.into(), &3.into()));
    assert_eq!(s["failure_rate_pct"], 60.0);
    assert_eq!((&s["systems"], &s["patches"]), (&4.into(), &3.into()));
    assert_eq!(s["stale_systems"], serde_json::json!(["db-1"]));

    // Overdue: deadline day 30 for all, then by system then patch.
    let overdue: Vec<(String, String)> = v["overdue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["system"].as_str().unwrap().to_owned(),
                p["patch_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        overdue,
        pairs(&[
            (EVIL, "A"),
            (EVIL, "B"),
            ("db-1", "A"),
            ("db-1", "B"),
            ("web-1", "B"),
            ("web-2", "B")
        ])
    );
    let first = &v["overdue"][0];
    assert_eq!(first["severity"], "critical");
    assert_eq!(first["state"], "overdue");
    assert_eq!(first["deadline"], "2024-01-31T00:00:00.000000Z");
    assert_eq!(first["released_at"], "2024-01-01T00:00:00.000000Z");
    assert!(first["time_to_patch_days"].is_null());
    assert!(first["first_attempt_at"].is_null());

    // Failures: most recent failure first (seq 4, then seq 3).
    let f = v["failures"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(
        (&f[0]["system"], &f[0]["last_failure_seq"], &f[0]["detail"]),
        (&EVIL.into(), &4.into(), &EVIL_DETAIL.into())
    );
    assert_eq!(
        (&f[1]["system"], &f[1]["attempts"], &f[1]["failures"]),
        (&"web-1".into(), &2.into(), &2.into())
    );
    assert_eq!(f[1]["first_attempt_at"], "2024-01-06T00:00:00.000000Z");
    assert_eq!(f[1]["state"], "failed");

    // Systems, in input order, tags as key=value strings.
    let web1 = &v["systems"][2];
    assert_eq!(web1["system"], "web-1");
    assert_eq!(web1["tags"], serde_json::json!(["env=prod", "tier=web"]));
    assert_eq!(
        (
            &web1["required"],
            &web1["applied"],
            &web1["overdue"],
            &web1["failed"]
        ),
        (&3.into(), &1.into(), &1.into(), &1.into())
    );
    assert!(approx(web1["coverage_pct"].as_f64().unwrap(), 100.0 / 3.0));
    let db1 = &v["systems"][1];
    assert_eq!((&db1["stale"], &db1["unknown"]), (&true.into(), &3.into()));
    assert_eq!(db1["coverage_pct"], 0.0);

    // Patches, most severe first.
    let p = v["patches"].as_array().unwrap();
    assert_eq!(
        p.iter()
            .map(|p| p["patch_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["A", "B", "C"]
    );
    assert_eq!(
        (&p[0]["coverage_pct"], &p[0]["mean_time_to_patch_days"]),
        (&50.0.into(), &25.0.into())
    );
    assert_eq!(
        (&p[1]["overdue"], &p[1]["failed"], &p[1]["unknown"]),
        (&4.into(), &2.into(), &1.into())
    );
    assert!(p[2]["mean_time_to_patch_days"].is_null());

    // The coverage curve ends at the report's instant with 2 of 12 covered.
    let cov = v["coverage"].as_array().unwrap();
    assert_eq!(cov.len(), 31);
    assert_eq!(cov[0]["at"], "2024-01-01T00:00:00.000000Z");
    assert_eq!(
        cov.last().unwrap(),
        &serde_json::json!({"at": "2024-02-20T00:00:00.000000Z", "required": 12, "covered": 2})
    );

    // 10 days falls in ≤14d, 40 days in ≤60d; the last bucket is open.
    assert_eq!(
        v["time_to_patch_histogram"],
        serde_json::json!([
            {"max_days": 1, "count": 0}, {"max_days": 3, "count": 0},
            {"max_days": 7, "count": 0}, {"max_days": 14, "count": 1},
            {"max_days": 30, "count": 0}, {"max_days": 60, "count": 1},
            {"max_days": 90, "count": 0}, {"max_days": 180, "count": 0},
            {"max_days": null, "count": 0}
        ])
    );
}

#[test]
fn json_shows_a_filter_and_a_missing_checkpoint() {
    let mut i = input();
    i.checkpoint = None;
    let filter = ReportFilter {
        tags: vec![Tag::parse("env=prod", "t").unwrap()],
        severities: vec![Severity::Critical, Severity::High],
        system: Some("web-1".into()),
        patch_id: None,
        list_pairs: true,
    };
    let out = ReportOut::from(&Report::compute(&i, &filter));
    // Every required pair of web-1 is listed, and the pairs CSV has them all.
    assert_eq!(out.pairs.len() as u64, out.summary.pairs_required);
    let pairs = patchaudit_server::report_out::pairs_csv(&out);
    let mut r = csv::Reader::from_reader(pairs.as_slice());
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), out.pairs.len());
    assert!(rows
        .iter()
        .all(|row| &row[0] == "pair" && &row[1] == "web-1"));
    let v = serde_json::to_value(&out).unwrap();
    assert!(v["checkpoint"].is_null());
    assert_eq!(
        v["filter"],
        serde_json::json!({"tags": ["env=prod"], "severities": ["critical", "high"],
                           "system": "web-1", "patch_id": null})
    );
    assert_eq!(v["summary"]["pairs_required"], 2);
    assert_eq!(v["summary"]["states"]["missing"], 0);
    let html = to_html(&out);
    assert!(html.contains("names no ledger checkpoint"), "{html}");
    assert!(html.contains("<code>env=prod</code>"));
    assert!(html.contains("<code>critical</code>, <code>high</code>"));
}

/// Reads a CSV document back: its header and its records.
fn read_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rdr = csv::Reader::from_reader(bytes);
    let header = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = rdr
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

#[test]
fn csv_lists_overdue_then_failed_pairs() {
    let out = report();
    let (header, rows) = read_csv(&to_csv(&out));
    assert_eq!(header, PAIRS_CSV_COLUMNS);
    assert_eq!(rows.len(), 6 + 2);
    assert!(rows.iter().all(|r| r.len() == PAIRS_CSV_COLUMNS.len()));
    let col = |name: &str| PAIRS_CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r[col("kind")].as_str()).collect();
    assert_eq!(kinds, [["overdue"; 6].as_slice(), &["failure"; 2]].concat());
    let first = &rows[0];
    assert_eq!(first[col("system")], EVIL, "CSV keeps values as they are");
    assert_eq!(first[col("patch_id")], "A");
    assert_eq!(first[col("title")], "OpenSSL <3.0.13> & friends");
    assert_eq!(first[col("severity")], "critical");
    assert_eq!(first[col("state")], "overdue");
    assert_eq!(first[col("overdue")], "true");
    assert_eq!(first[col("deadline")], "2024-01-31T00:00:00.000000Z");
    assert_eq!(first[col("first_attempt_at")], "", "null is an empty cell");
    assert_eq!(first[col("attempts")], "0");
    let evil_fail = &rows[6];
    assert_eq!(
        (
            evil_fail[col("system")].as_str(),
            evil_fail[col("state")].as_str()
        ),
        (EVIL, "failed")
    );
    assert_eq!(
        evil_fail[col("detail")],
        EVIL_DETAIL,
        "newlines survive quoting"
    );
    assert_eq!(rows[7][col("detail")].len(), 2500);
    assert_eq!(
        (
            rows[7][col("attempts")].as_str(),
            rows[7][col("failures")].as_str()
        ),
        ("2", "2")
    );
}

#[test]
fn csv_tables_per_system_and_per_patch() {
    let out = report();
    let (header, rows) = read_csv(&systems_csv(&out));
    assert_eq!(header, SYSTEMS_CSV_COLUMNS);
    assert_eq!(
        rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        [EVIL, "db-1", "web-1", "web-2"]
    );
    assert_eq!(rows[2][1], "env=prod,tier=web");
    assert_eq!(rows[1][3], "true", "db-1 is stale");
    assert_eq!(&rows[2][4..10], ["3", "1", "1", "1", "0", "0"]);
    assert!(approx(rows[2][10].parse().unwrap(), 100.0 / 3.0));

    let (header, rows) = read_csv(&patches_csv(&out));
    assert_eq!(header, PATCHES_CSV_COLUMNS);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0],
        [
            "A",
            "OpenSSL <3.0.13> & friends",
            "critical",
            "2024-01-01T00:00:00.000000Z",
            "4",
            "2",
            "2",
            "0",
            "0",
            "1",
            "50",
            "25"
        ]
    );
    assert_eq!(rows[2][11], "", "C has no applied pair, so no mean");
}

#[test]
fn escape_neutralises_markup() {
    assert_eq!(escape(EVIL), EVIL_ESCAPED);
    assert_eq!(
        escape(r#"<a href="x" title='y'>&amp;</a>"#),
        "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
    );
    assert_eq!(escape("plain text, ≤1d"), "plain text, ≤1d");
}

#[test]
fn html_is_self_contained_and_escaped() {
    let html = to_html(&report());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<title>patchaudit compliance report"));
    assert!(html.contains("<h1>patchaudit compliance report</h1>"));

    // Nothing loads from anywhere and nothing runs.
    let lower = html.to_lowercase();
    for banned in [
        "http://", "https://", "<script", "<link", "<img", "@import", "url(", "<iframe",
    ] {
        assert!(!lower.contains(banned), "the HTML contains {banned:?}");
    }
    assert!(html.contains("default-src 'none'"));
    assert!(html.contains("@media print"));

    // Hostile data shows as text.
    assert!(html.contains(&format!("<code>{EVIL_ESCAPED}</code>")));
    assert!(html.contains(EVIL_DETAIL_ESCAPED));
    assert!(html.contains("<code>owner=&lt;script&gt;x&lt;/script&gt;</code>"));
    assert!(html.contains("OpenSSL &lt;3.0.13&gt; &amp; friends"));

    // The long detail is cut at 2000 characters, with a note.
    let run = |n: usize| "x".repeat(n);
    assert!(html.contains(&format!("<pre>{}…</pre>", run(HTML_DETAIL_MAX_CHARS))));
    assert!(!html.contains(&run(HTML_DETAIL_MAX_CHARS + 1)));
    assert!(html.contains("truncated: 500 more characters"));

    // The instant, the checkpoint and how to re-derive and verify.
    assert!(html.contains("2024-02-20 00:00:00 UTC"));
    assert!(
        html.contains("--as-of</code>"),
        "it says the instant was asked for"
    );
    assert!(html.contains("<td class=\"num\">6</td>"));
    assert!(html.contains(ROOT));
    assert!(html.contains("patchaudit report --as-of 2024-02-20T00:00:00.000000Z"));
    assert!(html.contains("patchaudit verify"));
    assert!(html.contains("none; the report covers every system"));

    // Summary cards, one decimal.
    assert!(
        html.contains("<div class=\"value\">16.7%</div>"),
        "coverage"
    );
    assert!(html.contains("<div class=\"value\">50.0%</div>"), "on time");
    assert!(
        html.contains("<div class=\"value\">60.0%</div>"),
        "failure rate"
    );
    assert!(html.contains("<div class=\"label\">Overdue</div><div class=\"value\">6</div>"));
    assert!(html.contains("<div class=\"label\">Stale systems</div><div class=\"value\">1</div>"));
    assert!(html.contains("<td class=\"num\">25.0 d</td><td class=\"num\">40.0 d</td>"));
    assert!(html.contains("n/a"), "C's mean time to patch");

    // Two charts, the histogram labelled by bucket.
    assert_eq!(html.matches("<svg").count(), 2);
    assert_eq!(html.matches("</svg>").count(), 2);
    assert!(html.contains("Coverage over time"));
    assert!(html.contains("Time to patch distribution"));
    assert!(html.contains(">≤1d</text>"));
    assert!(html.contains(">≤180d</text>"));
    assert!(html.contains(">&gt;180d</text>"));
    assert!(html.contains("<polyline"));
    assert_eq!(html.matches("<rect class=\"bar\"").count(), 9);

    // The lists and tables are all there.
    assert!(html.contains("Overdue pairs (6)"));
    assert!(html.contains("Failed pairs (2)"));
    assert!(html.contains("Systems (4)"));
    assert!(html.contains("Patches (3)"));
}

#[test]
fn html_of_an_empty_report_still_renders() {
    let mut i = input();
    i.catalog.clear();
    i.as_of = false;
    let out = ReportOut::from(&Report::compute(&i, &ReportFilter::default()));
    assert!(out.summary.coverage_pct.is_none());
    assert!(out.coverage.is_empty());
    let html = to_html(&out);
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains("No required pairs: nothing to chart."));
    assert!(html.contains("No applied pairs yet."));
    assert!(html.contains("<div class=\"value\">n/a</div>"));
    assert!(html.contains("No pair is overdue."));
    assert!(html.contains("when the report was requested"));
    let (_, rows) = read_csv(&to_csv(&out));
    assert!(rows.is_empty());
    assert_eq!(read_csv(&to_csv(&out)).0, PAIRS_CSV_COLUMNS);
}

/// A cell that a spreadsheet would run as a formula is written with a
/// leading quote, in every CSV table.
#[test]
fn csv_cells_never_start_a_formula() {
    let mut i = input();
    let hostile = "=HYPERLINK(\"http://evil\",\"x\")";
    for s in &mut i.systems {
        if s.id == "web-1" {
            s.id = hostile.into();
        }
    }
    let f = i.facts.get_mut("A").unwrap();
    if let Some(v) = f.remove("web-1") {
        f.insert(hostile.into(), v);
    }
    let out = ReportOut::from(&Report::compute(
        &i,
        &ReportFilter {
            list_pairs: true,
            ..Default::default()
        },
    ));
    for table in [
        patchaudit_server::report_out::systems_csv(&out),
        patchaudit_server::report_out::pairs_csv(&out),
    ] {
        let mut r = csv::Reader::from_reader(table.as_slice());
        let cells: Vec<String> = r
            .records()
            .flat_map(|x| x.unwrap().iter().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        assert!(
            cells.iter().any(|c| c == &format!("'{hostile}")),
            "{cells:?}"
        );
        assert!(cells.iter().all(|c| !c.starts_with('=')), "{cells:?}");
    }
}
