//! Matching packages against advisories: ranges, explicit versions, releases, the fix
//! reported, order and duplicates.

use kiln_scan::{Advisory, AdvisoryIndex, Affected, Ecosystem, Package, Range, Severity};

fn advisory(id: &str, affected: Vec<Affected>) -> Advisory {
    Advisory {
        id: id.to_string(),
        aliases: vec![format!("CVE-{id}")],
        summary: format!("summary of {id}"),
        severity: Severity::High,
        modified: "2024-01-01T00:00:00Z".to_string(),
        affected,
    }
}

fn affected(
    eco: Ecosystem,
    package: &str,
    ranges: &[(Option<&str>, Option<&str>, Option<&str>)],
) -> Affected {
    Affected {
        ecosystem: eco,
        package: package.to_string(),
        ranges: ranges
            .iter()
            .map(|(i, f, l)| Range {
                introduced: i.map(str::to_string),
                fixed: f.map(str::to_string),
                last_affected: l.map(str::to_string),
            })
            .collect(),
        versions: Vec::new(),
        release: None,
    }
}

fn findings(
    index: &AdvisoryIndex,
    packages: &[Package],
) -> Vec<(String, String, String, Option<String>)> {
    index
        .matches(packages)
        .into_iter()
        .map(|f| (f.package, f.installed, f.advisory, f.fixed))
        .collect()
}

fn row(p: &str, v: &str, a: &str, fixed: Option<&str>) -> (String, String, String, Option<String>) {
    (p.into(), v.into(), a.into(), fixed.map(str::to_string))
}

#[test]
fn the_fix_reported_is_the_one_of_the_range_that_matched() {
    let index = AdvisoryIndex::new([advisory(
        "RUSTSEC-2021-0124",
        vec![affected(
            Ecosystem::CratesIo,
            "tokio",
            &[(Some("0.1.14"), Some("1.8.4"), None), (Some("1.9.0"), Some("1.13.1"), None)],
        )],
    )]);
    let pkgs = [
        Package::new(Ecosystem::CratesIo, "tokio", "0.1.13", "a/Cargo.lock"),
        Package::new(Ecosystem::CratesIo, "tokio", "1.8.0", "b/Cargo.lock"),
        Package::new(Ecosystem::CratesIo, "tokio", "1.8.4", "c/Cargo.lock"),
        Package::new(Ecosystem::CratesIo, "tokio", "1.12.0", "d/Cargo.lock"),
        Package::new(Ecosystem::CratesIo, "tokio", "1.13.1", "e/Cargo.lock"),
    ];
    assert_eq!(
        findings(&index, &pkgs),
        [
            row("tokio", "1.12.0", "RUSTSEC-2021-0124", Some("1.13.1")),
            row("tokio", "1.8.0", "RUSTSEC-2021-0124", Some("1.8.4")),
        ]
    );
}

#[test]
fn last_affected_is_included_and_an_open_range_has_no_fix() {
    let index = AdvisoryIndex::new([
        advisory(
            "PYSEC-1",
            vec![affected(Ecosystem::PyPI, "Django", &[(Some("4.0"), None, Some("4.1.2"))])],
        ),
        advisory("PYSEC-2", vec![affected(Ecosystem::PyPI, "django", &[(None, None, None)])]),
    ]);
    let pkgs = [
        Package::new(Ecosystem::PyPI, "django", "4.1.2", "requirements.txt"),
        Package::new(Ecosystem::PyPI, "Django", "4.1.3", "poetry.lock"),
        Package::new(Ecosystem::PyPI, "django", "3.2rc1", "other/requirements.txt"),
    ];
    let got = findings(&index, &pkgs);
    assert_eq!(
        got,
        [
            row("Django", "4.1.3", "PYSEC-2", None),
            row("django", "3.2rc1", "PYSEC-2", None),
            row("django", "4.1.2", "PYSEC-1", None),
            row("django", "4.1.2", "PYSEC-2", None),
        ]
    );
}

#[test]
fn explicit_versions_match_and_take_the_lowest_fix_above_them() {
    let mut entry = affected(Ecosystem::Npm, "lodash", &[(Some("4.0.0"), Some("4.17.21"), None)]);
    entry.versions = vec!["3.10.1".to_string()];
    let index = AdvisoryIndex::new([advisory("GHSA-1", vec![entry])]);
    let got = findings(
        &index,
        &[
            Package::new(Ecosystem::Npm, "lodash", "3.10.1", "package-lock.json"),
            Package::new(Ecosystem::Npm, "lodash", "3.10.0", "package-lock.json"),
        ],
    );
    assert_eq!(got, [row("lodash", "3.10.1", "GHSA-1", Some("4.17.21"))]);
}

#[test]
fn names_compare_within_one_ecosystem_only() {
    let index = AdvisoryIndex::new([advisory(
        "X-1",
        vec![affected(Ecosystem::Npm, "openssl", &[(None, Some("9.9.9"), None)])],
    )]);
    let pkgs = [
        Package::new(Ecosystem::Debian, "openssl", "3.0.11-1", "var/lib/dpkg/status"),
        Package::new(Ecosystem::CratesIo, "openssl", "0.10.55", "Cargo.lock"),
        Package::new(Ecosystem::Npm, "OpenSSL", "1.0.0", "package-lock.json"),
    ];
    assert!(index.matches(&pkgs).is_empty());
}

#[test]
fn a_release_specific_entry_applies_to_its_release_and_to_unknown_releases() {
    let mut d11 = affected(Ecosystem::Debian, "glibc", &[(None, Some("2.31-13+deb11u7"), None)]);
    d11.release = Some("11".into());
    let mut d12 = affected(Ecosystem::Debian, "glibc", &[(None, Some("2.36-9+deb12u3"), None)]);
    d12.release = Some("12".into());
    let mut a13 = affected(Ecosystem::Debian, "glibc", &[(None, Some("2.40-1"), None)]);
    a13.release = Some("13".into());
    let index = AdvisoryIndex::new([advisory("DSA-5514-1", vec![d11, d12, a13])]);

    let mut bookworm =
        Package::new(Ecosystem::Debian, "glibc", "2.36-9+deb12u1", "var/lib/dpkg/status");
    bookworm.release = Some("12".into());
    let got = index.matches(std::slice::from_ref(&bookworm));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].fixed.as_deref(), Some("2.36-9+deb12u3"), "bookworm's own fix");

    let mut ubuntu = bookworm.clone();
    ubuntu.release = Some("ubuntu:22.04".into());
    assert!(index.matches(&[ubuntu]).is_empty(), "Debian's entries are not Ubuntu's");

    // Unknown release: every entry applies; the lowest fix above the installed version
    // wins (Debian 11's fix is below it, so that entry does not match at all).
    bookworm.release = None;
    let got = index.matches(&[bookworm]);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].fixed.as_deref(), Some("2.36-9+deb12u3"));
}

#[test]
fn alpine_releases_match_by_major_and_minor() {
    let mut entry = affected(Ecosystem::Alpine, "openssl", &[(None, Some("3.1.4-r1"), None)]);
    entry.release = Some("3.18".into());
    let index = AdvisoryIndex::new([advisory("ALPINE-CVE-2023-5678", vec![entry])]);
    let mut p = Package::new(Ecosystem::Alpine, "openssl", "3.1.4-r0", "lib/apk/db/installed");
    p.release = Some("3.18.4".into());
    assert_eq!(index.matches(std::slice::from_ref(&p)).len(), 1);
    p.release = Some("3.19.0".into());
    assert!(index.matches(&[p]).is_empty());
}

#[test]
fn findings_are_sorted_and_carry_the_advisory_and_the_source() {
    let index = AdvisoryIndex::new([
        advisory("B-2", vec![affected(Ecosystem::CratesIo, "b", &[(None, Some("2.0.0"), None)])]),
        advisory("A-1", vec![affected(Ecosystem::CratesIo, "b", &[(None, Some("1.5.0"), None)])]),
        advisory("C-3", vec![affected(Ecosystem::CratesIo, "a", &[(None, Some("1.0.0"), None)])]),
    ]);
    let pkgs = [
        Package::new(Ecosystem::CratesIo, "b", "1.0.0", "srv/Cargo.lock"),
        Package::new(Ecosystem::CratesIo, "a", "0.9.0", "srv/Cargo.lock"),
        Package::new(Ecosystem::CratesIo, "b", "1.0.0", "app/Cargo.lock"),
    ];
    let once = index.matches(&pkgs);
    let mut reversed = pkgs.to_vec();
    reversed.reverse();
    assert_eq!(once, index.matches(&reversed), "order of packages does not matter");
    let keys: Vec<_> =
        once.iter().map(|f| (f.package.as_str(), f.source.as_str(), f.advisory.as_str())).collect();
    assert_eq!(
        keys,
        [
            ("a", "srv/Cargo.lock", "C-3"),
            ("b", "app/Cargo.lock", "A-1"),
            ("b", "app/Cargo.lock", "B-2"),
            ("b", "srv/Cargo.lock", "A-1"),
            ("b", "srv/Cargo.lock", "B-2"),
        ]
    );
    let f = &once[0];
    assert_eq!(f.aliases, ["CVE-C-3"]);
    assert_eq!(f.summary, "summary of C-3");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.ecosystem, Ecosystem::CratesIo);
}

#[test]
fn an_advisory_given_twice_is_kept_once_the_latest() {
    let mut old =
        advisory("A-1", vec![affected(Ecosystem::Npm, "x", &[(None, Some("1.0.0"), None)])]);
    old.modified = "2023-01-01T00:00:00Z".into();
    let mut new =
        advisory("A-1", vec![affected(Ecosystem::Npm, "x", &[(None, Some("2.0.0"), None)])]);
    new.modified = "2024-01-01T00:00:00Z".into();
    let index = AdvisoryIndex::new([new.clone(), old.clone()]);
    assert_eq!(index.len(), 1);
    assert_eq!(index.get("A-1"), Some(&new));
    let index = AdvisoryIndex::new([old, new.clone()]);
    assert_eq!(index.get("A-1"), Some(&new));
    assert!(index.get("A-2").is_none());
}
