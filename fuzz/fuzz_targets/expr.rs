//! Fuzzes the `${{ }}` expression language: templates rendered against a scope that has a
//! value for every name, `if:` conditions evaluated, references found. None may panic, every
//! offset reported must fall inside the text, and what parses must render.

#![no_main]

use kiln_workflow::expr::{self, Scope, Value};
use libfuzzer_sys::fuzz_target;

/// A scope with a value for everything, so evaluation goes everywhere.
struct All;

impl Scope for All {
    fn param(&self, name: &str) -> Option<Value> {
        match name.len() % 4 {
            0 => Some(Value::String(name.to_string())),
            1 => Some(Value::Number(name.len() as f64 / 3.0)),
            2 => Some(Value::Bool(name.len() % 3 == 0)),
            _ => None,
        }
    }
    fn output(&self, job: &str, key: &str) -> Option<String> {
        Some(format!("{job}.{key}"))
    }
    fn result(&self, job: &str) -> Option<String> {
        (!job.is_empty()).then(|| "success".to_string())
    }
    fn matrix(&self, key: &str) -> Option<String> {
        Some(key.repeat(2))
    }
    fn failed(&self) -> bool {
        false
    }
    fn canceled(&self) -> bool {
        false
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match expr::references(text) {
        Ok(refs) => {
            for r in &refs {
                assert!(r.offset <= text.len(), "reference offset {} past the end", r.offset);
            }
            // What parses renders.
            if let Err(e) = expr::render(text, &All) {
                panic!("references() accepted what render() refused: {e}");
            }
        }
        Err(e) => assert!(e.offset <= text.len(), "error offset {} past the end", e.offset),
    }
    match expr::condition_references(text) {
        Ok(refs) => {
            for r in &refs {
                assert!(
                    r.offset <= text.len(),
                    "condition reference offset {} past the end",
                    r.offset
                );
            }
            let _ = expr::eval_condition(text, &All).expect("a parsed condition evaluates");
            let _ = expr::condition_has_status_check(text).expect("a parsed condition parses");
            // The stored form of a condition means the same.
            let body = expr::condition_body(text);
            assert!(
                expr::condition_references(body).is_ok(),
                "the body {body:?} of a valid condition does not parse"
            );
        }
        Err(e) => {
            assert!(e.offset <= text.len(), "condition error offset {} past the end", e.offset)
        }
    }
});
