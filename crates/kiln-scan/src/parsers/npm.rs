//! `package-lock.json`: version 1 (`dependencies`, nested) and versions 2 and 3 (`packages`
//! keyed by `node_modules/...` paths).

use serde_json::Value;

use super::{ParseError, package};
use crate::{Ecosystem, Package};

/// The npm packages a lock file installs (not the project itself, not linked workspaces).
pub(crate) fn parse(path: &str, text: &str) -> Result<Vec<Package>, ParseError> {
    let root: Value = serde_json::from_str(text).map_err(|e| ParseError {
        line: e.line(),
        column: e.column(),
        message: {
            let t = e.to_string();
            t.rfind(" at line ").map_or(t.clone(), |at| t[..at].to_string())
        },
    })?;
    let Some(root) = root.as_object() else {
        return Err(ParseError::at(1, "expected a JSON object"));
    };
    let mut out = Vec::new();
    if let Some(packages) = root.get("packages").and_then(Value::as_object) {
        for (key, entry) in packages {
            // "" is the project itself; entries outside node_modules are workspaces.
            let Some(at) = key.rfind("node_modules/") else {
                continue;
            };
            if entry.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or(&key[at + "node_modules/".len()..]);
            if let Some(version) = entry.get("version").and_then(Value::as_str) {
                out.push(package(Ecosystem::Npm, name, version, path));
            }
        }
    } else if let Some(deps) = root.get("dependencies").and_then(Value::as_object) {
        v1(deps, path, &mut out);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn v1(deps: &serde_json::Map<String, Value>, path: &str, out: &mut Vec<Package>) {
    for (name, entry) in deps {
        if let Some(version) = entry.get("version").and_then(Value::as_str)
            // `file:`/`git+` versions are not registry versions.
            && !version.contains(':')
        {
            out.push(package(Ecosystem::Npm, name, version, path));
        }
        if let Some(nested) = entry.get("dependencies").and_then(Value::as_object) {
            v1(nested, path, out);
        }
    }
}
