//! The body decoders of `POST /v1/events` (JSON, NDJSON, CSV) and the batch
//! validation behind them take any bytes without panicking, and:
//!
//! - a syntax error names a 1-based line that lies within the body, and its
//!   message carries no position of its own (line and column are fields);
//! - a JSON body that is not an array decodes to exactly one item, and a
//!   one-line non-array body decodes the same as JSON and as NDJSON;
//! - a CSV row is always an object and never holds an empty value (empty
//!   cells are absent fields);
//! - `validate_batch` agrees with validating each item alone: an item's
//!   errors are exactly its own (so every error's index is that of a decoded
//!   item), plus at most one `conflict` on `event_id` when an earlier item
//!   reused that id with different content; the batch passes exactly when no
//!   item has an error, and then yields each item's event in order;
//! - a valid batch written with `write_new_event_ndjson`, which exists so that
//!   validated events can be sent to a server again, decodes and validates
//!   back to the same events.
//!
//! The first byte of the input picks the format (`0` JSON, `1` NDJSON, `2`
//! CSV, by its value modulo 3); the rest is the body. The clock is fixed so
//! that a crash reproduces.

#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchaudit_domain::{
    validate_batch, ErrorCode, FieldError, Input, NewEvent, RawEvent, Timestamp, ValidationContext,
};
use patchaudit_server::wire::{
    decode_csv, decode_json, decode_ndjson, write_new_event_ndjson, Decoded, SyntaxError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Ndjson,
    Csv,
}

fn ctx() -> &'static ValidationContext {
    static CTX: OnceLock<ValidationContext> = OnceLock::new();
    CTX.get_or_init(|| ValidationContext {
        now: Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("a valid time"),
        max_future_skew_micros: ValidationContext::DEFAULT_SKEW_MICROS,
    })
}

/// The items as `ingest` in crates/server/src/api.rs hands them to
/// `validate_batch`.
fn items(decoded: &[Decoded]) -> impl Iterator<Item = Result<RawEvent, FieldError>> + '_ {
    decoded.iter().map(|d| match d {
        Decoded::Event(raw) => Ok(raw.clone()),
        Decoded::NotAnObject(kind) => Err(FieldError::new(
            "",
            ErrorCode::Type,
            format!("must be a JSON object (a patch event), got {kind}"),
        )),
    })
}

fn check_syntax_error(format: Format, body: &[u8], e: &SyntaxError) {
    // CSV also ends a line at a lone CR; JSON counts only LF.
    let breaks = body
        .iter()
        .filter(|&&b| b == b'\n' || (format == Format::Csv && b == b'\r'))
        .count();
    assert!(
        e.line >= 1 && e.line <= breaks + 1,
        "{format:?}: line {} outside a body of {} line(s): {e:?}",
        e.line,
        breaks + 1
    );
    assert!(!e.message.is_empty(), "{format:?}: empty message: {e:?}");
    if format != Format::Csv {
        assert!(
            !e.message.contains(" at line "),
            "{format:?}: the position is left in the message: {e:?}"
        );
    }
}

fn check_csv_values(decoded: &[Decoded]) {
    fn nonempty(v: &Input) -> bool {
        match v {
            Input::Text(s) => !s.is_empty(),
            Input::List(items) => items.iter().all(nonempty),
            _ => true,
        }
    }
    for d in decoded {
        let Decoded::Event(raw) = d else {
            panic!("a CSV row decoded as something other than an object: {d:?}");
        };
        for (name, value) in &raw.fields {
            assert!(
                nonempty(value),
                "CSV column {name:?} gave an empty value: {raw:?}"
            );
        }
    }
}

/// Checks `validate_batch` against validating every item on its own.
fn check_batch(decoded: &[Decoded]) -> Option<Vec<NewEvent>> {
    let ctx = ctx();
    let alone: Vec<Result<NewEvent, Vec<FieldError>>> = items(decoded)
        .map(|item| {
            item.map_err(|e| vec![e])
                .and_then(|raw| NewEvent::parse(raw, ctx))
        })
        .collect();

    let batch = validate_batch(items(decoded), ctx);

    let mut by_index: HashMap<usize, Vec<FieldError>> = HashMap::new();
    if let Err(errors) = &batch {
        assert!(!errors.is_empty(), "validate_batch failed without an error");
        for e in errors {
            assert!(
                e.index < decoded.len(),
                "error index {} in a batch of {}: {e:?}",
                e.index,
                decoded.len()
            );
            by_index.entry(e.index).or_default().push(e.error.clone());
        }
    }

    // The first valid event with each id: later ones must match its content.
    let mut first_with_id: HashMap<&str, (usize, [u8; 32])> = HashMap::new();
    let mut any_error = false;
    for (index, result) in alone.iter().enumerate() {
        let reported = by_index.remove(&index).unwrap_or_default();
        match result {
            Err(own) => {
                any_error = true;
                assert_eq!(
                    &reported, own,
                    "item {index}: the batch reports other errors than the item alone"
                );
            }
            Ok(event) => {
                let conflict = event.event_id.as_ref().and_then(|id| {
                    let digest = event.content_digest();
                    let (first, d) = *first_with_id.entry(id.as_str()).or_insert((index, digest));
                    (d != digest).then_some(first)
                });
                match conflict {
                    None => assert!(
                        reported.is_empty(),
                        "item {index} is valid and reuses no id, yet: {reported:?}"
                    ),
                    Some(first) => {
                        any_error = true;
                        assert!(
                            reported.len() == 1
                                && reported[0].field == "event_id"
                                && reported[0].code == ErrorCode::Conflict,
                            "item {index} reuses the id of item {first} with other content, \
                             yet reports {reported:?}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        by_index.is_empty(),
        "errors at no item's index: {by_index:?}"
    );
    assert_eq!(
        batch.is_err(),
        any_error,
        "the batch verdict disagrees with its items"
    );
    let events = batch.ok()?;
    let expected: Vec<&NewEvent> = alone.iter().flatten().collect();
    assert_eq!(
        events.iter().collect::<Vec<_>>(),
        expected,
        "a valid batch yields other events than its items"
    );
    Some(events)
}

fn check_round_trip(events: &[NewEvent]) {
    let mut body = Vec::new();
    write_new_event_ndjson(&mut body, events);
    let decoded = match decode_ndjson(&body) {
        Ok(d) => d,
        Err(e) => panic!(
            "re-encoded events are not valid NDJSON: {e:?}\n{}",
            String::from_utf8_lossy(&body)
        ),
    };
    assert_eq!(
        decoded.len(),
        events.len(),
        "re-encoded events decode to another count:\n{}",
        String::from_utf8_lossy(&body)
    );
    match validate_batch(items(&decoded), ctx()) {
        Ok(again) => assert_eq!(
            again,
            events,
            "re-encoded events validate to other events:\n{}",
            String::from_utf8_lossy(&body)
        ),
        Err(errors) => panic!(
            "re-encoded valid events fail validation: {errors:?}\n{}",
            String::from_utf8_lossy(&body)
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Json,
        1 => Format::Ndjson,
        _ => Format::Csv,
    };
    let result = match format {
        Format::Json => decode_json(body),
        Format::Ndjson => decode_ndjson(body),
        Format::Csv => decode_csv(body),
    };

    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if format != Format::Csv && first.is_some() && first != Some(&b'[') && !body.contains(&b'\n') {
        // One line that is not an array: both JSON decoders read it alike.
        let other = match format {
            Format::Json => decode_ndjson(body),
            _ => decode_json(body),
        };
        assert_eq!(result, other, "JSON and NDJSON disagree on one line");
    }

    let decoded = match result {
        Ok(decoded) => decoded,
        Err(e) => {
            check_syntax_error(format, body, &e);
            return;
        }
    };
    match format {
        Format::Json if first != Some(&b'[') => assert_eq!(
            decoded.len(),
            1,
            "a JSON body that is not an array gave {} items",
            decoded.len()
        ),
        Format::Csv => check_csv_values(&decoded),
        _ => {}
    }

    if let Some(events) = check_batch(&decoded) {
        check_round_trip(&events);
    }
});
