//! `cargo xtask api-types`: the web UI's types for the API's shapes, generated from the
//! components of `docs/openapi.json` as JSDoc typedefs (`crates/kiln-ui/src/assets/lib/
//! api-types.js`), so the UI's modules can say `@param {import('./api-types.js').RunDetail}`
//! and TypeScript's checker (`tsc --checkJs`, the kiln-ui test `types`) holds them to it.
//! `cargo xtask tidy` fails while the committed file is not what this writes.
//!
//! The mapping: `$ref` is the type's name; `string`, `integer`/`number`, `boolean`, `null` the
//! JavaScript types; an `enum` a union of its literals; `type: [T, "null"]` and `oneOf` unions;
//! `allOf` of objects one typedef with every property (their descriptions kept); an array
//! `T[]`; a map `Record<string, T>`; an object without properties `Record<string, unknown>`.
//! A property not `required` is optional (`[name]`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

use crate::step;

/// The OpenAPI document the types come from (kept fresh by kiln-server's `openapi` test).
pub const OPENAPI: &str = "docs/openapi.json";

/// The generated module.
pub const OUT: &str = "crates/kiln-ui/src/assets/lib/api-types.js";

/// The TypeScript release the UI is checked with (pure JavaScript: nothing to build).
pub const TYPESCRIPT: &str = "5.9.3";

/// The variable naming `tsc` to the kiln-ui test `types`.
pub const TSC_VAR: &str = "KILN_TSC";

/// Writes [`OUT`] from [`OPENAPI`].
pub fn run() -> Result<()> {
    let root = std::env::current_dir()?;
    let text = generate_file(&root)?;
    std::fs::write(root.join(OUT), &text).with_context(|| format!("write {OUT}"))?;
    let types = text.matches("@typedef").count();
    println!("wrote {OUT}: {types} types from {OPENAPI}");
    Ok(())
}

/// What [`OUT`] should hold, from the workspace at `root`.
pub fn generate_file(root: &Path) -> Result<String> {
    let doc =
        std::fs::read_to_string(root.join(OPENAPI)).with_context(|| format!("read {OPENAPI}"))?;
    let doc: Value =
        serde_json::from_str(&doc).with_context(|| format!("{OPENAPI} is not JSON"))?;
    generate(&doc)
}

/// `None` when [`OUT`] is current, else what is wrong (for `cargo xtask tidy`).
pub fn stale(root: &Path) -> Result<Option<String>> {
    let want = generate_file(root)?;
    let have = std::fs::read_to_string(root.join(OUT)).unwrap_or_default();
    Ok((have != want).then(|| {
        format!("{OUT} is not what {OPENAPI} gives: regenerate it with `cargo xtask api-types`")
    }))
}

/// The module for an OpenAPI document: one JSDoc typedef per component schema, by name.
pub fn generate(doc: &Value) -> Result<String> {
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .context("the OpenAPI document has no components.schemas")?;
    let mut out = String::from(
        "// @ts-check\n\
         // Kiln web UI: the shapes of the API's answers and bodies, as JSDoc types, generated from the\n\
         // components of docs/openapi.json by `cargo xtask api-types`; do not edit (`cargo xtask tidy`\n\
         // fails when it is not current). Modules use them as `import('./api-types.js').RunDetail`.\n\n",
    );
    let mut names: Vec<&String> = schemas.keys().collect();
    names.sort();
    for name in names {
        let schema = &schemas[name.as_str()];
        out.push_str("/**\n");
        doc_lines(&mut out, schema.get("description").and_then(Value::as_str).unwrap_or(""));
        if is_object(schema) {
            out.push_str(&format!(" * @typedef {{object}} {name}\n"));
            for (key, prop, required) in properties(schemas, schema)? {
                let mut desc = prop.get("description").and_then(Value::as_str).unwrap_or("");
                if desc.is_empty() {
                    // A nullable reference carries its description on the reference.
                    desc = prop
                        .get("oneOf")
                        .and_then(Value::as_array)
                        .and_then(|all| {
                            all.iter().find_map(|o| o.get("description").and_then(Value::as_str))
                        })
                        .unwrap_or("");
                }
                let desc = escape(desc.trim()).replace('\n', "\n *   ");
                let key = if required { key.clone() } else { format!("[{key}]") };
                let sep = if desc.is_empty() { "" } else { " " };
                out.push_str(&format!(" * @property {{{}}} {key}{sep}{desc}\n", ty(prop)));
            }
        } else {
            out.push_str(&format!(" * @typedef {{{}}} {name}\n", ty(schema)));
        }
        out.push_str(" */\n\n");
    }
    out.push_str("export {};\n");
    Ok(out)
}

/// Whether a schema is an object with properties (or `allOf` of such), written as a typedef
/// with `@property` lines.
fn is_object(schema: &Value) -> bool {
    if schema.get("properties").is_some() {
        return true;
    }
    schema.get("allOf").and_then(Value::as_array).is_some_and(|all| {
        all.iter().all(|s| s.get("$ref").is_some() || s.get("properties").is_some())
    })
}

/// The properties of an object schema, `allOf` and references flattened, sorted by name
/// within each part: (name, schema, required).
fn properties<'a>(
    schemas: &'a Map<String, Value>,
    schema: &'a Value,
) -> Result<Vec<(&'a String, &'a Value, bool)>> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = ref_name(r);
        let target = schemas.get(name).with_context(|| format!("no schema `{name}` ({r})"))?;
        return properties(schemas, target);
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let mut out = Vec::new();
        for part in all {
            out.extend(properties(schemas, part)?);
        }
        return Ok(out);
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out: Vec<_> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|props| props.iter().map(|(k, v)| (k, v, required.contains(&k.as_str()))).collect())
        .unwrap_or_default();
    out.sort_by(|a, b| a.0.cmp(b.0));
    Ok(out)
}

/// The last part of `#/components/schemas/Name`.
fn ref_name(r: &str) -> &str {
    r.rsplit('/').next().unwrap_or(r)
}

/// A union or intersection in parentheses (for `T[]`).
fn paren(t: String) -> String {
    if t.contains(" | ") || t.contains(" & ") { format!("({t})") } else { t }
}

/// The TypeScript type (JSDoc flavour) of a schema.
fn ty(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return ref_name(r).to_string();
    }
    if let Some(all) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array)
    {
        let mut parts: Vec<String> = Vec::new();
        for t in all.iter().map(ty) {
            if !parts.contains(&t) {
                parts.push(t);
            }
        }
        return parts.join(" | ");
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        return all.iter().map(|s| paren(ty(s))).collect::<Vec<_>>().join(" & ");
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.iter().map(Value::to_string).collect::<Vec<_>>().join(" | ");
    }
    match schema.get("type") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .map(|k| {
                let mut one = schema.clone();
                one["type"] = k.clone();
                ty(&one)
            })
            .collect::<Vec<_>>()
            .join(" | "),
        Some(Value::String(kind)) => match kind.as_str() {
            "string" => "string".into(),
            "integer" | "number" => "number".into(),
            "boolean" => "boolean".into(),
            "null" => "null".into(),
            "array" => format!("{}[]", paren(ty(schema.get("items").unwrap_or(&Value::Null)))),
            "object" => object(schema),
            _ => "unknown".into(),
        },
        _ if schema.get("properties").is_some() => object(schema),
        _ => "unknown".into(),
    }
}

/// An inline object type: `{ a: T, b?: U }`, a map, or `Record<string, unknown>`.
fn object(schema: &Value) -> String {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut keys: Vec<&String> = props.keys().collect();
        keys.sort();
        let fields: Vec<String> = keys
            .into_iter()
            .map(|k| {
                let name =
                    if is_ident(k) { k.clone() } else { Value::from(k.as_str()).to_string() };
                let opt = if required.contains(&k.as_str()) { "" } else { "?" };
                format!("{name}{opt}: {}", ty(&props[k.as_str()]))
            })
            .collect();
        return format!("{{ {} }}", fields.join(", "));
    }
    match schema.get("additionalProperties") {
        Some(v @ Value::Object(_)) => format!("Record<string, {}>", ty(v)),
        _ => "Record<string, unknown>".into(),
    }
}

/// Whether `s` can be written as a property name without quotes.
fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Text that cannot end the comment it is in.
fn escape(text: &str) -> String {
    text.replace("*/", "*\u{2215}")
}

/// A description as ` * ` lines (none for an empty one).
fn doc_lines(out: &mut String, text: &str) {
    let text = escape(text.trim());
    if text.is_empty() {
        return;
    }
    for line in text.lines() {
        if line.is_empty() {
            out.push_str(" *\n");
        } else {
            out.push_str(&format!(" * {line}\n"));
        }
    }
}

/// The `tsc` of the pinned TypeScript, installed with npm (from the npm registry, into
/// `<tools>/typescript-<version>`, `KILN_TOOLS_DIR` or `~/.cache/kiln-tools`) when missing.
/// `KILN_TSC` names another one.
pub fn ensure_tsc() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(TSC_VAR).map(PathBuf::from) {
        if path.is_file() {
            println!("{TSC_VAR}={} (given)", path.display());
            return Ok(path);
        }
        bail!("{TSC_VAR}={} is not a file", path.display());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set")?;
    let tools = std::env::var_os("KILN_TOOLS_DIR")
        .map_or_else(|| home.join(".cache/kiln-tools"), PathBuf::from);
    let root = tools.join(format!("typescript-{TYPESCRIPT}"));
    let tsc = root.join("node_modules/typescript/bin/tsc");
    if !tsc.is_file() {
        println!("==> tsc is missing: npm install typescript@{TYPESCRIPT} into {}", root.display());
        std::fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
        step::run(
            Command::new("npm")
                .args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"])
                .arg(&root)
                .arg(format!("typescript@{TYPESCRIPT}")),
        )?;
    }
    if !tsc.is_file() {
        bail!("{} is still missing after npm install", tsc.display());
    }
    let version = step::output(Command::new("node").arg(&tsc).arg("--version"))?;
    println!("tsc {} at {}", version.trim(), tsc.display());
    Ok(tsc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_become_typedefs() {
        let doc = serde_json::json!({"components": {"schemas": {
            "Run": {
                "type": "object", "description": "A run.", "required": ["id", "state"],
                "properties": {
                    "id": {"type": "string", "description": "Its id."},
                    "state": {"type": "string", "enum": ["ok", "bad"]},
                    "took": {"type": ["integer", "null"]},
                    "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    "params": {"type": "object"},
                    "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
                    "parent": {"oneOf": [{"$ref": "#/components/schemas/Job",
                        "description": "Who started it."}, {"type": "null"}]}
                }
            },
            "Job": {"type": "object", "required": ["n"], "properties": {"n": {"type": "number"}}},
            "Detail": {"allOf": [{"$ref": "#/components/schemas/Job"},
                {"type": "object", "properties": {"more": {"type": "boolean"}}}]},
            "Kind": {"type": "string", "enum": ["a", "b"]}
        }}});
        let text = generate(&doc).unwrap();
        assert!(
            text.contains(
                "/**\n * A run.\n * @typedef {object} Run\n \
             * @property {string} id Its id.\n \
             * @property {Job[]} [jobs]\n \
             * @property {Record<string, string>} [outputs]\n \
             * @property {Record<string, unknown>} [params]\n \
             * @property {Job | null} [parent] Who started it.\n \
             * @property {\"ok\" | \"bad\"} state\n \
             * @property {number | null} [took]\n */\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            " * @typedef {object} Detail\n * @property {number} n\n * @property {boolean} [more]\n"
        ), "{text}");
        assert!(text.contains(" * @typedef {\"a\" | \"b\"} Kind\n"), "{text}");
        assert!(text.ends_with("export {};\n"));
    }

    #[test]
    fn the_committed_types_are_current() {
        let root = crate::workspace_root();
        assert_eq!(stale(&root).unwrap(), None);
    }
}
