//! Every collector parser takes any bytes without panicking, and every
//! event it returns passes the ledger's validation (all but the clock
//! check). Every inventory parser does too, and every package it returns
//! passes the server's inventory rules. The version comparisons are
//! antisymmetric on any pair.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchaudit_collectors::inventory::{parse_inventory, InventorySource};
use patchaudit_collectors::version::{dpkg_cmp, rpmvercmp};
use patchaudit_compliance::{Inventory, RawInventory, RawPackage};
use patchaudit_collectors::{parse, Context, Source};
use patchaudit_domain::{NewEvent, Timestamp, ValidationContext};

fuzz_target!(|data: &[u8]| {
    let ctx = Context {
        year: Some(2024),
        ..Context::default()
    };
    // A clock at the end of time: only the field rules are checked.
    let validation = ValidationContext {
        now: Timestamp::parse_rfc3339("9999-12-31T00:00:00Z").expect("a valid time"),
        max_future_skew_micros: 0,
    };
    for source in Source::ALL {
        let parsed = parse(source, "fuzz.log", data, &ctx);
        for raw in parsed.to_raw_events("fuzz-host") {
            if let Err(errors) = NewEvent::parse(raw, &validation) {
                panic!("{source:?} returned an event the ledger rejects: {errors:?}");
            }
        }
    }

    for source in InventorySource::ALL {
        let parsed = parse_inventory(source, "fuzz.txt", data, &ctx);
        let raw = RawInventory {
            format: Some(parsed.format.name().to_owned()),
            packages: parsed
                .packages
                .iter()
                .map(|p| RawPackage {
                    name: Some(p.name.clone()),
                    version: Some(p.version.clone()),
                    arch: p.arch.clone(),
                })
                .collect(),
        };
        if let Err(errors) = Inventory::parse(raw, Timestamp::from_micros(0)) {
            panic!("{source:?} returned an inventory the server rejects: {errors:?}");
        }
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Some((a, b)) = text.split_once('\n') {
            assert_eq!(
                rpmvercmp(a, b),
                rpmvercmp(b, a).reverse(),
                "rpmvercmp({a:?}, {b:?})"
            );
            if let (Ok(ab), Ok(ba)) = (dpkg_cmp(a, b), dpkg_cmp(b, a)) {
                assert_eq!(ab, ba.reverse(), "dpkg_cmp({a:?}, {b:?})");
            }
        }
    }
});
