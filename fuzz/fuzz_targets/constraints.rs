//! Fuzzes both constraint syntaxes: Kiln's JSON shape (`Constraints::from_json`) and BCS's
//! (`Constraints::from_bcs`), and node attributes (`AttrValue::map_from_json`). None may
//! panic; what parses is evaluated against the attributes.
//!
//! Input: the constraints' JSON; after a line `%%%`, a node's attributes as JSON.

#![no_main]

use kiln_scheduler::{AttrValue, Constraints};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (constraints, attributes) = text.split_once("\n%%%\n").unwrap_or((text, "{}"));
    let Ok(value) = serde_json::from_str::<serde_json::Value>(constraints) else { return };
    let attributes = serde_json::from_str::<serde_json::Value>(attributes)
        .ok()
        .and_then(|a| AttrValue::map_from_json(&a).ok())
        .unwrap_or_default();
    for parsed in [Constraints::from_json(&value), Constraints::from_bcs(&value)] {
        let Ok(constraints) = parsed else { continue };
        let _ = constraints.key();
        for group in constraints.groups() {
            for predicate in group {
                let _ = predicate.to_string();
                let _ = predicate.matches_value(None);
                for value in attributes.values() {
                    let _ = predicate.matches_value(Some(value));
                }
            }
        }
    }
});
