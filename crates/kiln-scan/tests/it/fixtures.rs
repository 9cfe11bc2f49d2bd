//! The fixture image (Debian 12's dpkg status, os-release and a Cargo.lock) against the
//! fixture advisories (real records, ids kept): exactly these findings, with these fixes.
//! The scan helper's end-to-end test reuses the same files.

use kiln_scan::{AdvisoryIndex, Finding, Severity, packages_from_layers, parse_osv};

use crate::support::{Entry, fixture, gzip, read, tar};

fn advisories(dir: &str) -> Vec<kiln_scan::Advisory> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixture(dir)).expect("dir") {
        let path = entry.expect("entry").path();
        let name = path.display().to_string();
        out.extend(parse_osv(&std::fs::read(&path).expect("read"), &name).expect("parse"));
    }
    out
}

fn image() -> Vec<Vec<u8>> {
    vec![
        gzip(&tar(&[
            Entry::File("etc/os-release", &read("os-release")),
            Entry::File("var/lib/dpkg/status", &read("debian-12-status")),
        ])),
        gzip(&tar(&[Entry::File("app/Cargo.lock", &read("Cargo.lock"))])),
    ]
}

fn rows(findings: &[Finding]) -> Vec<(&str, &str, &str, Option<&str>, Severity)> {
    findings
        .iter()
        .map(|f| {
            (
                f.package.as_str(),
                f.installed.as_str(),
                f.advisory.as_str(),
                f.fixed.as_deref(),
                f.severity,
            )
        })
        .collect()
}

#[test]
fn the_fixture_image_has_exactly_the_expected_findings() {
    let layers = image();
    let packages = packages_from_layers(layers.iter().map(Vec::as_slice)).expect("scan");
    let index = AdvisoryIndex::new(advisories("advisories"));
    assert_eq!(index.len(), 17);
    let findings = index.matches(&packages);
    use Severity::*;
    assert_eq!(
        rows(&findings),
        [
            (
                "curl",
                "7.88.1-10+deb12u1",
                "DEBIAN-CVE-2023-38545",
                Some("7.88.1-10+deb12u4"),
                Unknown
            ),
            ("expat", "2.5.0-1", "DEBIAN-CVE-2024-45490", Some("2.5.0-1+deb12u1"), Unknown),
            ("glibc", "2.36-9+deb12u1", "DEBIAN-CVE-2023-6246", Some("2.36-9+deb12u4"), Unknown),
            ("glibc", "2.36-9+deb12u1", "DSA-5514-1", Some("2.36-9+deb12u3"), Unknown),
            ("h2", "0.3.15", "RUSTSEC-2023-0034", Some("0.3.17"), Unknown),
            ("h2", "0.3.15", "RUSTSEC-2024-0332", Some("0.3.26"), Unknown),
            ("nghttp2", "1.52.0-1", "DEBIAN-CVE-2023-44487", Some("1.52.0-1+deb12u1"), Unknown),
            (
                "openssl",
                "3.0.11-1~deb12u1",
                "DEBIAN-CVE-2023-5363",
                Some("3.0.11-1~deb12u2"),
                Unknown
            ),
            (
                "openssl",
                "3.0.11-1~deb12u1",
                "DEBIAN-CVE-2024-0727",
                Some("3.0.13-1~deb12u1"),
                Unknown
            ),
            ("regex", "1.5.4", "RUSTSEC-2022-0013", Some("1.5.5"), High),
            ("smallvec", "1.6.0", "RUSTSEC-2021-0003", Some("1.6.1"), Critical),
            ("time", "0.1.44", "RUSTSEC-2020-0071", Some("0.2.0"), Medium),
            ("tokio", "1.12.0", "RUSTSEC-2021-0124", Some("1.13.1"), Unknown),
        ]
    );
    let glibc = &findings[3];
    assert_eq!(glibc.source, "var/lib/dpkg/status");
    assert_eq!(glibc.aliases, ["CVE-2023-4911", "DEBIAN-CVE-2023-4911"]);
    assert_eq!(glibc.summary, "glibc - security update");
    let smallvec = &findings[10];
    assert_eq!(smallvec.source, "app/Cargo.lock");
    assert_eq!(smallvec.aliases, ["CVE-2021-25900", "GHSA-43w2-9j62-hq99"]);
}

#[test]
fn one_later_advisory_adds_exactly_one_finding() {
    let layers = image();
    let packages = packages_from_layers(layers.iter().map(Vec::as_slice)).expect("scan");
    let before = AdvisoryIndex::new(advisories("advisories")).matches(&packages);
    let mut all = advisories("advisories");
    all.extend(advisories("advisories-later"));
    let after = AdvisoryIndex::new(all).matches(&packages);
    let new: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
    assert_eq!(new.len(), 1, "{new:#?}");
    assert_eq!(new[0].advisory, "DEBIAN-CVE-2024-2961");
    assert_eq!(new[0].package, "glibc");
    assert_eq!(new[0].fixed.as_deref(), Some("2.36-9+deb12u6"));
    assert_eq!(after.len(), before.len() + 1);
}

/// Real records of the other ecosystems' databases (GitHub's, Go's), verbatim.
#[test]
fn real_github_and_go_records_match_npm_and_go_packages() {
    let index = AdvisoryIndex::new(advisories("osv-samples"));
    let ghsa = index.get("GHSA-35jh-r3h4-6jhm").expect("GHSA");
    assert_eq!(ghsa.severity, Severity::High, "database_specific.severity");
    assert_eq!(ghsa.aliases, ["CVE-2021-23337"]);

    let lock = br#"{"lockfileVersion":3,"packages":{"":{"name":"web"},
      "node_modules/lodash":{"version":"4.17.20"},
      "node_modules/lodash-es":{"version":"4.17.21"}}}"#;
    let mut packages = kiln_scan::packages_from_file("srv/package-lock.json", lock).expect("npm");
    let mut bin = |go: &str| {
        let mut blob = crate::parsers::go_binary();
        let at = blob.windows(8).position(|w| w == b"go1.21.5").expect("version in blob");
        blob.splice(at..at + 8, go.bytes());
        packages.extend(kiln_scan::packages_from_file("usr/bin/app", &blob).expect("go"));
    };
    bin("go1.21.4");
    bin("go1.20.3");
    let findings = index.matches(&packages);
    assert_eq!(
        rows(&findings),
        [
            ("lodash", "4.17.20", "GHSA-35jh-r3h4-6jhm", Some("4.17.21"), Severity::High),
            ("stdlib", "v1.20.3", "GO-2023-2382", Some("1.20.12"), Severity::Unknown),
            ("stdlib", "v1.21.4", "GO-2023-2382", Some("1.21.5"), Severity::Unknown),
        ]
    );
}
