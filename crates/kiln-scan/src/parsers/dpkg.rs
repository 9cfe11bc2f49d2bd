//! dpkg's status database (`var/lib/dpkg/status`, and the one-file-per-package
//! `var/lib/dpkg/status.d/` of distroless images): RFC 822 style stanzas.

use super::ParseError;
use crate::{Ecosystem, Package};

/// The installed packages (state `installed`), named and versioned by their source package (`Source: openssl`,
/// or `Source: glibc (2.36-9)` with its own version), one per source package and version.
pub(crate) fn parse(path: &str, text: &str) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    let mut stanza: Vec<(usize, &str, String)> = Vec::new();
    let mut start = 1;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            finish(path, start, &stanza, &mut out)?;
            stanza.clear();
            start = n + 1;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            // A continuation line (Description, Conffiles): only the first line matters.
            if stanza.is_empty() {
                return Err(ParseError::at(
                    n,
                    "a continuation line before any field: expected `Field: value`",
                ));
            }
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err(ParseError::at(
                n,
                format!("`{line}` is not a field: expected `Field: value`"),
            ));
        };
        stanza.push((n, field.trim(), value.trim().to_string()));
    }
    finish(path, start, &stanza, &mut out)?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn finish(
    path: &str,
    start: usize,
    stanza: &[(usize, &str, String)],
    out: &mut Vec<Package>,
) -> Result<(), ParseError> {
    if stanza.is_empty() {
        return Ok(());
    }
    let get = |name: &str| {
        stanza.iter().find(|(_, f, _)| f.eq_ignore_ascii_case(name)).map(|(_, _, v)| v.as_str())
    };
    // `Status: WANT FLAG STATE`: installed whatever is wanted (`hold ok installed` too).
    // Distroless status.d files have no Status field: every stanza there is installed.
    if let Some(status) = get("Status")
        && status.split_whitespace().nth(2) != Some("installed")
    {
        return Ok(());
    }
    let Some(name) = get("Package") else {
        return Err(ParseError::at(
            start,
            "a package stanza without `Package:`: expected `Package: NAME`",
        ));
    };
    let Some(version) = get("Version") else {
        return Err(ParseError::at(start, format!("package `{name}` has no `Version:` field")));
    };
    let (source, source_version) = match get("Source") {
        Some(source) => match source.split_once('(') {
            Some((s, v)) => (s.trim(), v.trim_end_matches(')').trim()),
            None => (source.trim(), version),
        },
        None => (name, version),
    };
    out.push(Package::new(Ecosystem::Debian, source, source_version, path));
    Ok(())
}
