//! The strict query-string parser of the API (`params.rs`) takes any query
//! string without panicking, and it behaves as a small model of
//! `application/x-www-form-urlencoded` built here, independently of the
//! parser, says it should:
//!
//! - `take` returns the last value of a name, once, and records a
//!   `duplicate_field` error when the name was repeated; `take_with` converts
//!   what `take` returns and records a `format` error when that fails;
//! - `finish` reports every parameter left untaken as `unknown_field` (one per
//!   occurrence) and every problem recorded before, and succeeds exactly when
//!   there are none: a query with any parameter fails `finish(&[])`;
//! - `take_filter` fills each filter field from its parameter exactly when the
//!   value converts, and reports exactly the bad, repeated and unknown ones;
//! - `unsigned` accepts exactly the decimal digits (after an optional `+`)
//!   that fit in a u64;
//! - cursors round-trip: `decode_cursor(&encode_cursor(s)) == Ok(s)` for any
//!   string, a cursor passes through a query string unchanged, and a string
//!   that decodes as a cursor is the one encoding of its key.
//!
//! The input, as UTF-8, is the query string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchaudit_domain::{ErrorCode, FieldError, Status, Timestamp};
use patchaudit_server::error::ApiError;
use patchaudit_server::params::{
    decode_cursor, encode_cursor, take_filter, unsigned, Params, FILTER_PARAMS,
};

/// The model: the name/value pairs of a query string, as the WHATWG URL
/// standard's urlencoded parser defines them.
fn model_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(part: &[u8]) -> String {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::with_capacity(part.len());
        let mut i = 0;
        while i < part.len() {
            let b = part[i];
            if b == b'+' {
                out.push(b' ');
            } else if b == b'%' && i + 2 < part.len() {
                match (hex(part[i + 1]), hex(part[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b),
                }
            } else {
                out.push(b);
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .as_bytes()
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|s| match s.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&s[..i]), decode(&s[i + 1..])),
            None => (decode(s), String::new()),
        })
        .collect()
}

/// The values of `name`, in order.
fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The (field, code) of each error, sorted: the order is not part of the API.
fn sorted(errors: impl IntoIterator<Item = (String, ErrorCode)>) -> Vec<(String, &'static str)> {
    let mut v: Vec<_> = errors.into_iter().map(|(f, c)| (f, c.as_str())).collect();
    v.sort();
    v
}

/// The errors `finish` returned, or none.
fn finished(result: Result<(), ApiError>) -> Vec<FieldError> {
    match result {
        Ok(()) => Vec::new(),
        Err(ApiError::BadParameters(errors)) => {
            assert!(!errors.is_empty(), "finish failed without an error");
            errors
        }
        Err(other) => panic!("finish returned another kind of error: {other:?}"),
    }
}

fn parse(query: &str) -> Params {
    match Params::parse(Some(query)) {
        Ok(p) => p,
        Err(e) => panic!("a query the model splits was refused: {e:?}"),
    }
}

/// Takes every name once, by `take` or by `take_with`, and checks the values
/// and the errors against the model.
fn check_take(query: &str, pairs: &[(String, String)]) {
    let mut names: Vec<&str> = Vec::new();
    for (k, _) in pairs {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    let mut p = parse(query);
    let mut expected = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let all = values(pairs, name);
        let last = *all.last().expect("the name occurs");
        if all.len() > 1 {
            expected.push((name.to_string(), ErrorCode::DuplicateField));
        }
        if n.is_multiple_of(2) {
            assert_eq!(p.take(name).as_deref(), Some(last), "take({name:?})");
        } else {
            let mut calls = 0;
            let got = p.take_with(name, |v| {
                calls += 1;
                if v.len().is_multiple_of(2) {
                    Ok(v.to_owned())
                } else {
                    Err("odd".to_owned())
                }
            });
            assert_eq!(calls, 1, "take_with({name:?}) converted {calls} times");
            if last.len().is_multiple_of(2) {
                assert_eq!(got.as_deref(), Some(last), "take_with({name:?})");
            } else {
                assert_eq!(
                    got, None,
                    "take_with({name:?}) kept a value it could not convert"
                );
                expected.push((name.to_string(), ErrorCode::Format));
            }
        }
        assert_eq!(
            p.has_error(name),
            expected.iter().any(|(f, _)| f == name),
            "has_error({name:?})"
        );
        assert_eq!(p.take(name), None, "{name:?} was taken twice");
        assert!(
            p.take_with(name, |_| -> Result<(), String> {
                panic!("converted nothing")
            })
            .is_none(),
            "{name:?} was taken twice"
        );
    }
    let got = finished(p.finish(&[]));
    assert_eq!(
        sorted(got.into_iter().map(|e| (e.field, e.code))),
        sorted(expected),
        "errors after taking every parameter of {query:?}"
    );
}

/// Takes nothing: every pair is unknown.
fn check_untouched(query: &str, pairs: &[(String, String)]) {
    let errors = finished(parse(query).finish(&[]));
    assert_eq!(
        errors.is_empty(),
        pairs.is_empty(),
        "finish(&[]) on {query:?} with nothing taken"
    );
    let got: Vec<(&str, ErrorCode)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
    let want: Vec<(&str, ErrorCode)> = pairs
        .iter()
        .map(|(k, _)| (k.as_str(), ErrorCode::UnknownField))
        .collect();
    assert_eq!(got, want, "untaken parameters of {query:?}");
}

/// One filter parameter: its expected value and errors.
fn expect_param<T>(
    pairs: &[(String, String)],
    name: &str,
    convert: impl Fn(&str) -> Option<T>,
    errors: &mut Vec<(String, ErrorCode)>,
) -> Option<T> {
    let all = values(pairs, name);
    if all.len() > 1 {
        errors.push((name.to_owned(), ErrorCode::DuplicateField));
    }
    let last = all.last()?;
    let value = convert(last);
    if value.is_none() {
        errors.push((name.to_owned(), ErrorCode::Format));
    }
    value
}

fn check_filter(query: &str, pairs: &[(String, String)], with_system: bool) {
    let mut p = parse(query);
    let filter = take_filter(&mut p, with_system);
    let mut expected = Vec::new();
    let text = |v: &str| (!v.is_empty()).then(|| v.to_owned());
    let time = |v: &str| Timestamp::parse_rfc3339(v).ok();
    let number = |v: &str| v.parse::<u64>().ok();

    let system = if with_system {
        expect_param(pairs, "system", text, &mut expected)
    } else {
        None
    };
    assert_eq!(filter.system, system, "system, from {query:?}");
    let patch_id = expect_param(pairs, "patch_id", text, &mut expected);
    assert_eq!(filter.patch_id, patch_id, "patch_id, from {query:?}");
    let status = expect_param(pairs, "status", |v| v.parse::<Status>().ok(), &mut expected);
    assert_eq!(filter.status, status, "status, from {query:?}");
    let source = expect_param(pairs, "source", text, &mut expected);
    assert_eq!(filter.source, source, "source, from {query:?}");
    let applied_from = expect_param(pairs, "applied_from", time, &mut expected);
    assert_eq!(
        filter.applied_from, applied_from,
        "applied_from, from {query:?}"
    );
    let applied_to = expect_param(pairs, "applied_to", time, &mut expected);
    assert_eq!(filter.applied_to, applied_to, "applied_to, from {query:?}");
    let seq_from = expect_param(pairs, "seq_from", number, &mut expected);
    assert_eq!(filter.seq_from, seq_from, "seq_from, from {query:?}");
    let seq_to = expect_param(pairs, "seq_to", number, &mut expected);
    assert_eq!(filter.seq_to, seq_to, "seq_to, from {query:?}");

    for (k, _) in pairs {
        let taken = FILTER_PARAMS.contains(&k.as_str()) && (with_system || k != "system");
        if !taken {
            expected.push((k.clone(), ErrorCode::UnknownField));
        }
    }
    let got = finished(p.finish(&FILTER_PARAMS));
    for e in &got {
        if e.code == ErrorCode::UnknownField {
            assert!(
                FILTER_PARAMS.iter().all(|n| e.message.contains(n)),
                "the unknown-parameter message does not list the accepted ones: {e:?}"
            );
        }
    }
    assert_eq!(
        sorted(got.into_iter().map(|e| (e.field, e.code))),
        sorted(expected),
        "take_filter(with_system: {with_system}) errors for {query:?}"
    );
}

fn check_unsigned(v: &str) {
    let digits = v.strip_prefix('+').unwrap_or(v);
    let model = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.bytes().try_fold(0u64, |n, b| {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        })
    } else {
        None
    };
    assert_eq!(unsigned(v).ok(), model, "unsigned({v:?})");
    if let Some(n) = model {
        assert_eq!(unsigned(&n.to_string()), Ok(n), "unsigned of {n} printed");
    }
}

fn check_cursor(s: &str) {
    let c = encode_cursor(s);
    assert_eq!(decode_cursor(&c).as_deref(), Ok(s), "cursor of {s:?}");
    assert!(
        c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "cursor {c:?} needs escaping in a query string"
    );
    let mut p = parse(&format!("cursor={c}"));
    assert_eq!(
        p.take("cursor"),
        Some(c.clone()),
        "cursor {c:?} in a query string"
    );
    assert!(finished(p.finish(&["cursor"])).is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };

    assert!(finished(Params::parse(None).expect("no query").finish(&[])).is_empty());

    let pairs = match Params::parse(Some(query)) {
        Ok(_) => model_pairs(query),
        Err(ApiError::BadParameters(errors)) => {
            assert!(
                errors.len() == 1
                    && errors[0].field == "query"
                    && errors[0].code == ErrorCode::Format,
                "an undecodable query is reported otherwise: {errors:?}"
            );
            return;
        }
        Err(other) => panic!("Params::parse returned another kind of error: {other:?}"),
    };

    check_untouched(query, &pairs);
    check_take(query, &pairs);
    check_filter(query, &pairs, true);
    check_filter(query, &pairs, false);

    check_cursor(query);
    if let Ok(key) = decode_cursor(query) {
        assert_eq!(
            encode_cursor(&key),
            query,
            "{query:?} is a second cursor for {key:?}"
        );
    }
    for (k, v) in &pairs {
        check_unsigned(v);
        check_cursor(v);
        if let Ok(key) = decode_cursor(v) {
            assert_eq!(
                &encode_cursor(&key),
                v,
                "{k}={v:?} is a second cursor for {key:?}"
            );
        }
    }
});
