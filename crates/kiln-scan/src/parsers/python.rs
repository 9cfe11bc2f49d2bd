//! Python: `poetry.lock` (`[[package]]` tables) and `requirements*.txt` pins (`name==1.0`).

use super::{ParseError, package, toml_lite};
use crate::{Ecosystem, Package};

/// The packages of a `poetry.lock`.
pub(crate) fn parse_poetry(path: &str, text: &str) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    for table in toml_lite::array_tables(text, "package")? {
        let name = table.require("name")?;
        let version = table.require("version")?;
        out.push(package(Ecosystem::PyPI, name, version, path));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The pinned packages of a requirements file: `name==version` (extras, environment
/// markers, hashes and comments allowed); other lines (ranges, options, URLs) pin nothing
/// and are skipped.
pub(crate) fn parse_requirements(path: &str, text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(" #").next().unwrap_or(line).trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('-') {
            continue;
        }
        let line = line.split(';').next().unwrap_or(line).trim();
        let line = line.trim_end_matches('\\').trim();
        let Some((name, version)) = line.split_once("==") else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name).trim();
        let version = version.trim_start_matches('=').split_whitespace().next().unwrap_or("");
        if name.is_empty()
            || version.is_empty()
            || version.contains('*')
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            continue;
        }
        out.push(package(Ecosystem::PyPI, name, version, path));
    }
    out.sort();
    out.dedup();
    out
}
