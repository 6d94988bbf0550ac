//! The wire formats of patch events: JSON, NDJSON and CSV, in and out.
//!
//! Decoding never judges values; it only turns text into [`RawEvent`]s so
//! that the domain can report every problem at once. Syntax errors (a body
//! that is not JSON at all) are reported with their line and column.

use patchaudit_domain::{Input, NewEvent, RawEvent, RecordedEvent, FIELDS};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A body or file that could not be read as the format it claimed to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    /// The 1-based line of the problem in the whole input.
    pub line: usize,
    /// The 1-based column, or 0 when unknown.
    pub column: usize,
    /// What the parser expected.
    pub message: String,
}

/// One element of a batch as decoded: an object's fields, or a note that the
/// element was not an object at all (reported as a validation error with its
/// index, so one stray value does not hide the rest of the batch's problems).
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A JSON object or CSV row.
    Event(RawEvent),
    /// Something else, with a description of what it was.
    NotAnObject(&'static str),
}

struct InputDe(Input);

impl<'de> Deserialize<'de> for InputDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = InputDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<InputDe, E> {
                Ok(InputDe(Input::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<InputDe, E> {
                Ok(InputDe(Input::Integer(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<InputDe, E> {
                Ok(InputDe(Input::Integer(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<InputDe, E> {
                Ok(InputDe(Input::Float(v.to_string())))
            }
            fn visit_str<E>(self, v: &str) -> Result<InputDe, E> {
                Ok(InputDe(Input::Text(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<InputDe, E> {
                Ok(InputDe(Input::Text(v)))
            }
            fn visit_unit<E>(self) -> Result<InputDe, E> {
                Ok(InputDe(Input::Null))
            }
            fn visit_none<E>(self) -> Result<InputDe, E> {
                Ok(InputDe(Input::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputDe, A::Error> {
                let mut items = Vec::new();
                while let Some(InputDe(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(InputDe(Input::List(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputDe, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(InputDe(Input::Map))
            }
        }
        d.deserialize_any(V)
    }
}

struct DecodedDe(Decoded);

impl<'de> Deserialize<'de> for DecodedDe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn not<E>(kind: &'static str) -> Result<DecodedDe, E> {
            Ok(DecodedDe(Decoded::NotAnObject(kind)))
        }
        impl<'de> Visitor<'de> for V {
            type Value = DecodedDe;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a patch event object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DecodedDe, A::Error> {
                let mut raw = RawEvent::default();
                while let Some(key) = map.next_key::<String>()? {
                    let InputDe(v) = map.next_value()?;
                    raw.push(key, v);
                }
                Ok(DecodedDe(Decoded::Event(raw)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<DecodedDe, E> {
                not("a boolean")
            }
            fn visit_i64<E>(self, _: i64) -> Result<DecodedDe, E> {
                not("a number")
            }
            fn visit_u64<E>(self, _: u64) -> Result<DecodedDe, E> {
                not("a number")
            }
            fn visit_f64<E>(self, _: f64) -> Result<DecodedDe, E> {
                not("a number")
            }
            fn visit_str<E>(self, _: &str) -> Result<DecodedDe, E> {
                not("a string")
            }
            fn visit_unit<E>(self) -> Result<DecodedDe, E> {
                not("null")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DecodedDe, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                not("a list")
            }
        }
        d.deserialize_any(V)
    }
}

fn syntax(e: serde_json::Error, line_offset: usize) -> SyntaxError {
    SyntaxError {
        line: e.line() + line_offset,
        column: e.column(),
        message: strip_position(&e.to_string()),
    }
}

/// serde_json appends " at line L column C"; we report those as fields.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Decodes a JSON body: one event object, or an array of them.
pub fn decode_json(body: &[u8]) -> Result<Vec<Decoded>, SyntaxError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Err(SyntaxError {
            line: 1,
            column: 0,
            message: "the body is empty; send a JSON object or an array of objects".into(),
        }),
        Some(b'[') => serde_json::from_slice::<Vec<DecodedDe>>(body)
            .map(|v| v.into_iter().map(|d| d.0).collect())
            .map_err(|e| syntax(e, 0)),
        Some(_) => serde_json::from_slice::<DecodedDe>(body)
            .map(|d| vec![d.0])
            .map_err(|e| syntax(e, 0)),
    }
}

/// Decodes newline-delimited JSON: one event object per line; blank lines
/// are skipped.
pub fn decode_ndjson(body: &[u8]) -> Result<Vec<Decoded>, SyntaxError> {
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let d = serde_json::from_slice::<DecodedDe>(line).map_err(|e| syntax(e, i))?;
        out.push(d.0);
    }
    Ok(out)
}

/// Decodes CSV with a header row naming event fields.
///
/// Empty cells are absent fields. `cves` holds ids separated by `;`, `,` or
/// white space; `reboot_required` is `true`/`false` (also `1`/`0`, `yes`/`no`);
/// a `patch_id` made only of digits stays text, which is what it becomes anyway.
pub fn decode_csv(body: &[u8]) -> Result<Vec<Decoded>, SyntaxError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::Headers)
        .from_reader(body);
    let headers = rdr
        .headers()
        .map_err(|e| csv_syntax(&e, 1))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_owned())
        .collect::<Vec<_>>();
    let mut out = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| csv_syntax(&e, i + 2))?;
        let mut raw = RawEvent::default();
        for (name, cell) in headers.iter().zip(rec.iter()) {
            if cell.is_empty() {
                continue;
            }
            let value = match name.as_str() {
                "cves" => Input::List(
                    cell.split(|c: char| c == ';' || c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(|s| Input::Text(s.to_owned()))
                        .collect(),
                ),
                "reboot_required" => match cell.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" => Input::Bool(true),
                    "false" | "0" | "no" => Input::Bool(false),
                    _ => Input::Text(cell.to_owned()),
                },
                _ => Input::Text(cell.to_owned()),
            };
            raw.push(name.clone(), value);
        }
        out.push(Decoded::Event(raw));
    }
    Ok(out)
}

fn csv_syntax(e: &csv::Error, fallback_line: usize) -> SyntaxError {
    let line = e
        .position()
        .map(|p| p.line() as usize)
        .unwrap_or(fallback_line);
    SyntaxError {
        line,
        column: 0,
        message: e.to_string(),
    }
}

/// A `T` read only from a JSON object. Serde's derived deserializers also
/// take a struct as a JSON array of its fields in order, so without this
/// `"applies_to": [null, null]` or a whole document sent as an array would
/// pass; the API documents objects, and accepts only objects.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(Object)
    }
}

/// For `#[serde(deserialize_with)]`: a field that must be a JSON object.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Object::deserialize(d).map(|o| o.0)
}

/// For `#[serde(deserialize_with)]`: a field that is null or a JSON object.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|o| o.0))
}

/// For `#[serde(deserialize_with)]`: a field that is an array of JSON objects.
pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Object<T>>::deserialize(d).map(|v| v.into_iter().map(|o| o.0).collect())
}

/// An event as the API returns it. Absent optional fields are omitted.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventOut {
    /// The event's 0-based position in the ledger.
    pub seq: u64,
    /// The client's idempotency key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub event_id: Option<String>,
    /// The patch or advisory.
    pub patch_id: String,
    /// The system.
    pub system: String,
    /// When the patch was applied (RFC 3339, UTC, microseconds).
    pub applied_at: String,
    /// `success`, `failure` or `rolled_back`.
    pub status: String,
    /// The package changed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub package: Option<String>,
    /// The version before.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_version: Option<String>,
    /// The version after.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to_version: Option<String>,
    /// Where the fact came from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<String>,
    /// Who applied it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub actor: Option<String>,
    /// Failure output.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    /// CVEs fixed; always present, possibly empty.
    #[serde(default)]
    pub cves: Vec<String>,
    /// Whether a reboot is required.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reboot_required: Option<bool>,
    /// A change-ticket reference.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub change_ref: Option<String>,
    /// When the ledger recorded it (RFC 3339, UTC, microseconds).
    pub recorded_at: String,
    /// Who recorded it; empty without authentication.
    pub recorded_by: String,
}

impl From<&RecordedEvent> for EventOut {
    fn from(r: &RecordedEvent) -> Self {
        let e = &r.event;
        EventOut {
            seq: r.seq,
            event_id: e.event_id.as_ref().map(|i| i.as_str().to_owned()),
            patch_id: e.patch_id.as_str().to_owned(),
            system: e.system.as_str().to_owned(),
            applied_at: e.applied_at.to_rfc3339(),
            status: e.status.as_str().to_owned(),
            package: e.package.clone(),
            from_version: e.from_version.clone(),
            to_version: e.to_version.clone(),
            source: e.source.clone(),
            actor: e.actor.clone(),
            detail: e.detail.clone(),
            cves: e.cves.iter().map(|c| c.as_str().to_owned()).collect(),
            reboot_required: e.reboot_required,
            change_ref: e.change_ref.clone(),
            recorded_at: r.recorded_at.to_rfc3339(),
            recorded_by: r.recorded_by.clone(),
        }
    }
}

/// The CSV columns of an event listing, in order.
pub const CSV_COLUMNS: [&str; 17] = [
    "seq",
    "event_id",
    "patch_id",
    "system",
    "applied_at",
    "status",
    "package",
    "from_version",
    "to_version",
    "source",
    "actor",
    "detail",
    "cves",
    "reboot_required",
    "change_ref",
    "recorded_at",
    "recorded_by",
];

/// The CSV header line.
pub fn csv_header() -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = w.write_record(CSV_COLUMNS);
    w.into_inner().unwrap_or_default()
}

/// One event as a CSV record, in [`CSV_COLUMNS`] order. `cves` are joined by `;`.
pub fn csv_record(e: &EventOut) -> [String; 17] {
    let opt = |s: &Option<String>| s.clone().unwrap_or_default();
    [
        e.seq.to_string(),
        opt(&e.event_id),
        e.patch_id.clone(),
        e.system.clone(),
        e.applied_at.clone(),
        e.status.clone(),
        opt(&e.package),
        opt(&e.from_version),
        opt(&e.to_version),
        opt(&e.source),
        opt(&e.actor),
        opt(&e.detail),
        e.cves.join(";"),
        e.reboot_required.map(|b| b.to_string()).unwrap_or_default(),
        opt(&e.change_ref),
        e.recorded_at.clone(),
        e.recorded_by.clone(),
    ]
}

/// Appends events as CSV rows (without header) to `out`.
pub fn write_csv_rows(out: &mut Vec<u8>, events: &[RecordedEvent]) {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(std::mem::take(out));
    for r in events {
        // Writing to a Vec cannot fail.
        let _ = w.write_record(csv_record(&EventOut::from(r)));
    }
    *out = w.into_inner().unwrap_or_default();
}

/// Appends events as NDJSON lines to `out`.
pub fn write_ndjson_rows(out: &mut Vec<u8>, events: &[RecordedEvent]) {
    for r in events {
        // Serialising plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &EventOut::from(r));
        out.push(b'\n');
    }
}

/// Appends validated events as NDJSON in the input shape (no server-assigned
/// fields), so they can be sent to a server, which validates them again.
pub fn write_new_event_ndjson(out: &mut Vec<u8>, events: &[NewEvent]) {
    #[derive(Serialize)]
    struct In<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<&'a str>,
        patch_id: &'a str,
        system: &'a str,
        applied_at: String,
        status: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        package: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        from_version: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        to_version: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        actor: &'a Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: &'a Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cves: Vec<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reboot_required: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        change_ref: &'a Option<String>,
    }
    for e in events {
        let _ = serde_json::to_writer(
            &mut *out,
            &In {
                event_id: e.event_id.as_ref().map(|i| i.as_str()),
                patch_id: e.patch_id.as_str(),
                system: e.system.as_str(),
                applied_at: e.applied_at.to_rfc3339(),
                status: e.status.as_str(),
                package: &e.package,
                from_version: &e.from_version,
                to_version: &e.to_version,
                source: &e.source,
                actor: &e.actor,
                detail: &e.detail,
                cves: e.cves.iter().map(|c| c.as_str()).collect(),
                reboot_required: e.reboot_required,
                change_ref: &e.change_ref,
            },
        );
        out.push(b'\n');
    }
}

/// Names of the input fields, re-exported for help texts.
pub fn input_fields() -> &'static [&'static str] {
    &FIELDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_object_and_array() {
        let one =
            decode_json(br#"{"patch_id": 5, "x": {"a": 1}, "cves": ["a", 1.5, null]}"#).unwrap();
        let Decoded::Event(raw) = &one[0] else {
            panic!()
        };
        assert_eq!(
            raw.fields[0],
            ("patch_id".into(), Input::Integer("5".into()))
        );
        assert_eq!(raw.fields[1], ("x".into(), Input::Map));
        assert_eq!(
            raw.fields[2].1,
            Input::List(vec![
                Input::Text("a".into()),
                Input::Float("1.5".into()),
                Input::Null
            ])
        );
        let many = decode_json(b"[{}, 3, \"s\", []]").unwrap();
        assert_eq!(many.len(), 4);
        assert_eq!(many[1], Decoded::NotAnObject("a number"));
        assert_eq!(many[3], Decoded::NotAnObject("a list"));
    }

    #[test]
    fn duplicate_keys_are_kept_for_the_domain_to_report() {
        let d = decode_json(br#"{"system": "a", "system": "b"}"#).unwrap();
        let Decoded::Event(raw) = &d[0] else { panic!() };
        assert_eq!(raw.fields.len(), 2);
    }

    #[test]
    fn json_syntax_errors_name_line_and_column() {
        let e = decode_json(b"[\n{\"a\": 1},\n{\"b\": }\n]").unwrap_err();
        assert_eq!((e.line, e.column), (3, 7));
        assert!(!e.message.contains(" at line "), "{}", e.message);
        assert!(decode_json(b"  ").is_err());
    }

    #[test]
    fn ndjson_reports_the_bad_line() {
        let ok = decode_ndjson(b"{\"a\":1}\n\n  \n{\"b\":2}\r\n").unwrap();
        assert_eq!(ok.len(), 2);
        let e = decode_ndjson(b"{\"a\":1}\n{\"a\":1}\n{oops}\n").unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn csv_cells_become_fields() {
        let d = decode_csv(
            "\u{feff}patch_id,system,cves,reboot_required,package\nKB1,web,CVE-2024-0001;CVE-2024-0002,yes,\n"
                .as_bytes(),
        )
        .unwrap();
        let Decoded::Event(raw) = &d[0] else { panic!() };
        assert_eq!(raw.fields.len(), 4, "empty cells are absent: {raw:?}");
        assert_eq!(
            raw.fields[0].0, "patch_id",
            "a BOM must not stick to the first header"
        );
        assert_eq!(raw.fields[3].1, Input::Bool(true));
        let Input::List(c) = &raw.fields[2].1 else {
            panic!()
        };
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn csv_with_a_short_row_is_a_syntax_error_with_its_line() {
        let e = decode_csv(b"patch_id,system\nKB1,web\nKB2\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }
}
