//! `Cargo.lock` (versions 1 to 4): `[[package]]` tables with `name`, `version`, `source`.
//! Only packages from crates.io are reported: workspace members, path and git dependencies
//! are not what crates.io advisories name.

use super::{ParseError, package, toml_lite};
use crate::{Ecosystem, Package};

/// The crates.io packages of a `Cargo.lock`.
pub(crate) fn parse(path: &str, text: &str) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    for table in toml_lite::array_tables(text, "package")? {
        let name = table.require("name")?;
        let version = table.require("version")?;
        let from_crates_io = table.get("source").is_some_and(|s| {
            s.starts_with("registry+https://github.com/rust-lang/crates.io-index")
                || s.starts_with("sparse+https://index.crates.io/")
        });
        if from_crates_io {
            out.push(package(Ecosystem::CratesIo, name, version, path));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
