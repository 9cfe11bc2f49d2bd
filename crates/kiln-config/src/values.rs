//! Values: YAML maps of names to values, shared by every environment of an application or
//! overriding them in one; [`merge`] lays an environment's over the shared ones.

use serde_json::{Map, Value};

use crate::Problem;

/// Reads a values file: a YAML map (empty text, or only comments, is an empty map). Anything
/// else is a [`Problem`] at its position in `file`.
pub fn parse_values(file: &str, text: &str) -> Result<Value, Problem> {
    if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Ok(Value::Object(Map::new()));
    }
    let value: Value = serde_saphyr::from_str(text).map_err(|e| {
        let (line, column) =
            e.location().map_or((1, 1), |l| (l.line().max(1) as usize, l.column().max(1) as usize));
        let message = e.without_snippet().to_string();
        let message = message.lines().next().unwrap_or("not valid YAML").trim().to_string();
        Problem { file: file.to_string(), line, column, message: format!("YAML: {message}") }
    })?;
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(Problem {
            file: file.to_string(),
            line: 1,
            column: 1,
            message: format!(
                "values must be a map of names to values (`port: 8080` lines), not {}",
                kind(&other)
            ),
        }),
    }
}

/// What a JSON value is, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// `over` laid over `base`: maps are merged key by key, recursively; anything else in `over`
/// (a scalar, a list, null) replaces what `base` has. Neither input changes.
pub fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let merged = match out.get(k) {
                    Some(existing) => merge(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (_, over) => over.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_map_is_read_empty_text_is_an_empty_map() {
        let v =
            parse_values("shared.yml", "port: 8080\ndb:\n  host: db.local\n  pool: 5\n").unwrap();
        assert_eq!(v, json!({"port": 8080, "db": {"host": "db.local", "pool": 5}}));
        assert_eq!(parse_values("x.yml", "").unwrap(), json!({}));
        assert_eq!(parse_values("x.yml", "# nothing yet\n\n").unwrap(), json!({}));
        assert_eq!(parse_values("x.yml", "~\n").unwrap(), json!({}));
    }

    #[test]
    fn not_a_map_or_not_yaml_is_a_problem_with_a_position() {
        let p = parse_values("prod.yml", "- a\n- b\n").unwrap_err();
        assert_eq!((p.file.as_str(), p.line), ("prod.yml", 1));
        assert!(p.message.contains("not a list"), "{p}");
        let p = parse_values("prod.yml", "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(p.file, "prod.yml");
        assert!(p.line >= 2, "{p}");
        assert!(p.message.starts_with("YAML: "), "{p}");
    }

    #[test]
    fn merge_is_deep_for_maps_and_replaces_everything_else() {
        let shared = json!({"port": 8080, "db": {"host": "db.local", "pool": 5},
                            "hosts": ["a", "b"], "debug": true});
        let prod = json!({"db": {"host": "db.prod", "tls": true}, "hosts": ["p"], "debug": null});
        assert_eq!(
            merge(&shared, &prod),
            json!({"port": 8080, "db": {"host": "db.prod", "pool": 5, "tls": true},
                   "hosts": ["p"], "debug": null})
        );
        assert_eq!(merge(&shared, &json!({})), shared);
        assert_eq!(merge(&json!({}), &prod), prod);
        assert_eq!(merge(&json!({"db": 1}), &json!({"db": {"a": 1}})), json!({"db": {"a": 1}}));
    }
}
