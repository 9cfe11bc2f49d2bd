//! Parameter values: typing text against a [`ParamKind`] (defaults, `with:`, values given
//! at run time) and binding a run's values to a plan's params.

use std::collections::{BTreeMap, BTreeSet};

use crate::plan::{ParamKind, ParamValue, Plan};
use crate::read::suggest;

/// Reads `text` as a value of `kind`, or says what was expected.
///
/// Numbers are decimal (`2`, `-1.5`, `1e3`); booleans are `true` or `false`; a choice must
/// be one of its options exactly (case-sensitive).
pub fn param_value(kind: &ParamKind, text: &str) -> Result<ParamValue, String> {
    match kind {
        ParamKind::String => Ok(ParamValue::String(text.to_owned())),
        ParamKind::Number => {
            let t = text.trim();
            let numeric = t.bytes().any(|b| b.is_ascii_digit())
                && t.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
            match t.parse::<f64>() {
                Ok(n) if numeric && n.is_finite() => Ok(ParamValue::Number(n)),
                _ => Err(format!("expected a number, found '{text}'")),
            }
        }
        ParamKind::Bool => match text.trim() {
            "true" | "True" | "TRUE" => Ok(ParamValue::Bool(true)),
            "false" | "False" | "FALSE" => Ok(ParamValue::Bool(false)),
            _ => Err(format!("expected true or false, found '{text}'")),
        },
        ParamKind::Choice(options) => {
            if options.iter().any(|o| o == text) {
                Ok(ParamValue::String(text.to_owned()))
            } else {
                Err(format!("expected one of {}, found '{text}'", options.join(", ")))
            }
        }
    }
}

/// A short name of a kind, for messages.
pub fn kind_name(kind: &ParamKind) -> String {
    match kind {
        ParamKind::String => "text".into(),
        ParamKind::Number => "a number".into(),
        ParamKind::Bool => "true or false".into(),
        ParamKind::Choice(options) => format!("one of {}", options.join(", ")),
    }
}

/// Binds the values given for a run (`name`, text) to the plan's params.
///
/// Returns every param that has a value (given, else its default), typed. A param with no
/// value, no default and `required: false` is left out (it reads as `null`, rendered empty).
/// Errors, all of them: unknown names, values given twice, values of the wrong type, and
/// required params without a value.
pub fn bind_params(
    plan: &Plan,
    given: &[(String, String)],
) -> Result<BTreeMap<String, ParamValue>, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let names: Vec<&str> = plan.params.iter().map(|p| p.name.as_str()).collect();
    for (name, text) in given {
        let Some(spec) = plan.params.iter().find(|p| p.name == *name) else {
            let hint = suggest(name, &names)
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            let declared = if names.is_empty() {
                "the workflow declares no params".to_string()
            } else {
                format!("declared params: {}", names.join(", "))
            };
            errors.push(format!("unknown param '{name}'{hint}; {declared}"));
            continue;
        };
        if !seen.insert(name.as_str()) {
            errors.push(format!("param '{name}' is given twice"));
            continue;
        }
        match param_value(&spec.kind, text) {
            Ok(v) => {
                out.insert(name.clone(), v);
            }
            Err(e) => errors.push(format!("param '{name}': {e}")),
        }
    }
    for spec in &plan.params {
        if out.contains_key(&spec.name) || seen.contains(spec.name.as_str()) {
            continue;
        }
        match &spec.default {
            Some(d) => {
                out.insert(spec.name.clone(), d.clone());
            }
            None if spec.required => errors.push(format!(
                "param '{}' is required: give a value ({})",
                spec.name,
                kind_name(&spec.kind)
            )),
            None => {}
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ParamSpec;

    fn plan() -> Plan {
        let spec = |name: &str, kind, default, required| ParamSpec {
            name: name.into(),
            kind,
            default,
            required,
            description: None,
        };
        Plan {
            name: "p".into(),
            params: vec![
                spec("version", ParamKind::String, Some(ParamValue::String("1.0".into())), false),
                spec("replicas", ParamKind::Number, Some(ParamValue::Number(2.0)), false),
                spec("dry_run", ParamKind::Bool, None, false),
                spec("target", ParamKind::Choice(vec!["dev".into(), "prod".into()]), None, true),
            ],
            env: BTreeMap::new(),
            stages: vec![],
            jobs: vec![],
            timeout: None,
            concurrency: None,
            triggers: Default::default(),
            source: None,
            concurrency_group: None,
            pools: Vec::new(),
            prepull: Vec::new(),
        }
    }

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn values_are_typed_and_defaults_fill_in() {
        let bound = bind_params(&plan(), &given(&[("target", "prod"), ("replicas", "3")]));
        let expected: BTreeMap<String, ParamValue> = [
            ("version".to_string(), ParamValue::String("1.0".into())),
            ("replicas".to_string(), ParamValue::Number(3.0)),
            ("target".to_string(), ParamValue::String("prod".into())),
        ]
        .into_iter()
        .collect();
        assert_eq!(bound, Ok(expected));
    }

    #[test]
    fn every_error_is_reported() {
        let bound = bind_params(
            &plan(),
            &given(&[
                ("replica", "3"),
                ("replicas", "three"),
                ("dry_run", "yes"),
                ("dry_run", "true"),
            ]),
        );
        assert_eq!(
            bound,
            Err(vec![
                "unknown param 'replica' (did you mean 'replicas'?); declared params: version, \
                 replicas, dry_run, target"
                    .to_string(),
                "param 'replicas': expected a number, found 'three'".to_string(),
                "param 'dry_run': expected true or false, found 'yes'".to_string(),
                "param 'dry_run' is given twice".to_string(),
                "param 'target' is required: give a value (one of dev, prod)".to_string(),
            ])
        );
    }

    #[test]
    fn typing() {
        assert_eq!(param_value(&ParamKind::Number, "1e3"), Ok(ParamValue::Number(1000.0)));
        assert_eq!(param_value(&ParamKind::Number, "-1.5"), Ok(ParamValue::Number(-1.5)));
        assert!(param_value(&ParamKind::Number, "inf").is_err());
        assert!(param_value(&ParamKind::Number, "NaN").is_err());
        assert!(param_value(&ParamKind::Number, "1e999").is_err());
        assert_eq!(param_value(&ParamKind::String, "1.10"), Ok(ParamValue::String("1.10".into())));
        let choice = ParamKind::Choice(vec!["dev".into()]);
        assert_eq!(param_value(&choice, "Dev"), Err("expected one of dev, found 'Dev'".into()));
    }
}
