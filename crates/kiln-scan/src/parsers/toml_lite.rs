//! The little of TOML that lock files use: `[[name]]` tables of `key = "string"` lines
//! (other values and sub-tables are skipped). Both `Cargo.lock` and `poetry.lock` are
//! written by tools in exactly this shape.

use super::ParseError;

/// One `[[name]]` table: its line and its string keys.
pub(crate) struct Table<'a> {
    line: usize,
    header: &'a str,
    keys: Vec<(&'a str, String)>,
}

impl Table<'_> {
    /// A string value.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.keys.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    /// A string value that must be there.
    pub(crate) fn require(&self, key: &str) -> Result<&str, ParseError> {
        self.get(key).ok_or_else(|| {
            ParseError::at(
                self.line,
                format!("a `[[{}]]` table without `{key} = \"...\"`", self.header),
            )
        })
    }
}

/// The `[[name]]` tables of a file, in order.
pub(crate) fn array_tables<'a>(text: &'a str, name: &str) -> Result<Vec<Table<'a>>, ParseError> {
    let mut tables = Vec::new();
    let mut current: Option<Table<'a>> = None;
    let mut in_multiline = false;
    for (n, raw) in text.lines().enumerate() {
        let n = n + 1;
        let line = raw.trim();
        if in_multiline {
            if line.contains("\"\"\"") || line.contains("'''") {
                in_multiline = false;
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            if let Some(t) = current.take() {
                tables.push(t);
            }
            let header = line.trim_start_matches('[').trim_end_matches(']').trim();
            if !line.ends_with(']') {
                return Err(ParseError::at(
                    n,
                    format!("`{line}` is not a table header: expected `[name]` or `[[name]]`"),
                ));
            }
            if line.starts_with("[[") && header == name {
                current = Some(Table { line: n, header: name_static(raw), keys: Vec::new() });
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            // Continuation lines of a multi-line array (`dependencies = [`).
            continue;
        };
        let value = value.trim();
        if value.starts_with("\"\"\"") || value.starts_with("'''") {
            let rest = &value[3..];
            if !(rest.contains("\"\"\"") || rest.contains("'''")) {
                in_multiline = true;
            }
            continue;
        }
        let Some(table) = current.as_mut() else {
            continue;
        };
        if let Some(s) = string(value) {
            table.keys.push((key.trim().trim_matches('"'), s));
        } else if value.starts_with('"') || value.starts_with('\'') {
            return Err(ParseError::at(
                n,
                format!("`{}` has an unterminated string: expected a closing quote", key.trim()),
            ));
        }
    }
    if let Some(t) = current.take() {
        tables.push(t);
    }
    Ok(tables)
}

/// The header as written, for messages (`package`).
fn name_static(raw: &str) -> &str {
    raw.trim().trim_start_matches('[').trim_end_matches(']').trim()
}

/// A basic or literal TOML string, unescaped (only the escapes lock files use).
fn string(value: &str) -> Option<String> {
    let quote = value.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let body = &value[1..];
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == quote {
            return Some(out);
        }
        if c == '\\' && quote == '"' {
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            }
        } else {
            out.push(c);
        }
    }
    None
}
