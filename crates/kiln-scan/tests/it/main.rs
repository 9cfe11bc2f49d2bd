//! Integration tests of kiln-scan: version comparison per ecosystem, OSV parsing, matching,
//! the package parsers, layers with whiteouts, and the fixture image's expected findings.

mod fixtures;
mod layers;
mod matching;
mod osv;
mod parsers;
mod props;
mod support;
mod version;
