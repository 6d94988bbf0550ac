//! The OSV importer takes any bytes without panicking, and every entry it
//! returns is one the catalog accepts: importing never yields an entry that
//! `CatalogEntry::parse` would refuse.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patchaudit_compliance::{osv, AppliesTo, CatalogEntry, RawCatalogEntry};

fuzz_target!(|data: &[u8]| {
    let Ok(results) = osv::import_many(data, AppliesTo::All) else {
        return;
    };
    for imported in results.into_iter().flatten() {
        let e = imported.entry;
        // Rebuild the raw form and validate it again: the same entry must come back.
        let raw = RawCatalogEntry {
            id: Some(e.id.as_str().to_owned()),
            title: Some(e.title.clone()),
            severity: Some(e.severity.as_str().to_owned()),
            released_at: Some(e.released_at.to_rfc3339()),
            modified_at: e.modified_at.map(|t| t.to_rfc3339()),
            cves: e.cves.iter().map(|c| c.as_str().to_owned()).collect(),
            aliases: e.aliases.clone(),
            packages: e.packages.clone(),
            applies_to_tags: None,
            applies_to_systems: None,
        };
        match CatalogEntry::parse(raw) {
            Ok(again) => assert_eq!(again, e, "re-validating an imported entry changed it"),
            Err(errors) => panic!("an imported entry fails validation: {errors:?}"),
        }
    }
});
