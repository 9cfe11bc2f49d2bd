//! Alpine's installed database (`lib/apk/db/installed`): `K:value` lines, a blank line
//! between packages; `P:` the name, `V:` the version, `o:` the origin (source) package.

use super::ParseError;
use crate::{Ecosystem, Package};

/// The installed packages, by origin package (as Alpine's secdb and OSV records name
/// them), one per origin and version.
pub(crate) fn parse(path: &str, text: &str) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    let (mut name, mut version, mut origin) = (None, None, None);
    let mut start = 1;
    let mut flush = |name: &mut Option<&str>,
                     version: &mut Option<&str>,
                     origin: &mut Option<&str>,
                     start: usize|
     -> Result<(), ParseError> {
        match (name.take(), version.take(), origin.take()) {
            (None, None, _) => Ok(()),
            (Some(n), Some(v), o) => {
                out.push(Package::new(Ecosystem::Alpine, o.unwrap_or(n), v, path));
                Ok(())
            }
            (Some(n), None, _) => {
                Err(ParseError::at(start, format!("package `{n}` has no `V:` line")))
            }
            (None, Some(_), _) => {
                Err(ParseError::at(start, "a package without a `P:` line: expected `P:NAME`"))
            }
        }
    };
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut origin, start)?;
            start = n + 1;
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(ParseError::at(n, format!("`{line}` is not a `K:value` line")));
        };
        match key {
            "P" => name = Some(value.trim()),
            "V" => version = Some(value.trim()),
            "o" => origin = Some(value.trim()),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut origin, start)?;
    out.sort();
    out.dedup();
    Ok(out)
}
