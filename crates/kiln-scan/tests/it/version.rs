//! Version comparison per ecosystem, with the tricky cases of each.

use std::cmp::Ordering::{self, Equal, Greater, Less};

use kiln_scan::{Ecosystem, version::compare};

fn check(eco: Ecosystem, cases: &[(&str, Ordering, &str)]) {
    for &(a, want, b) in cases {
        assert_eq!(compare(eco, a, b), want, "{eco}: {a} vs {b}");
        assert_eq!(compare(eco, b, a), want.reverse(), "{eco}: {b} vs {a}");
    }
}

#[test]
fn dpkg_epochs_tildes_and_revisions() {
    // Each line was checked with `dpkg --compare-versions`.
    check(
        Ecosystem::Debian,
        &[
            ("1:1.0", Greater, "2.0"),
            ("1.0~rc1", Less, "1.0"),
            ("1.0~~", Less, "1.0~"),
            ("1.0~", Less, "1.0"),
            ("1.0", Less, "1.0+b1"),
            ("1.0-1", Less, "1.0-2"),
            ("1.0-1", Less, "1.0.1-1"),
            ("1.0", Equal, "1.0-0"),
            ("0:1.0", Equal, "1.0"),
            ("1.0a", Greater, "1.0"),
            ("1.0a", Less, "1.0+"),
            ("2.36-9+deb12u1", Less, "2.36-9+deb12u3"),
            ("2.36-9+deb12u10", Greater, "2.36-9+deb12u9"),
            ("3.0.11-1~deb12u1", Less, "3.0.11-1~deb12u2"),
            ("3.0.11-1~deb12u2", Less, "3.0.11-1"),
            ("1:1.2.13.dfsg-1", Greater, "1.3-1"),
            ("1.16.2+ds-1", Equal, "1.16.2+ds0-1"),
            ("3.1.2+dfsg-3", Greater, "3.1.2+dfsg0-1"),
            ("1.52.0-1", Less, "1.52.0-1+deb12u1"),
            ("7.88.1-10+deb12u1", Less, "7.88.1-10+deb12u4"),
            ("10", Greater, "9"),
            ("1.01", Equal, "1.1"),
        ],
    );
}

#[test]
fn apk_suffixes_letters_and_revisions() {
    check(
        Ecosystem::Alpine,
        &[
            ("1.2.3_rc1", Less, "1.2.3"),
            ("1.2.3-r1", Less, "1.2.3-r2"),
            ("1.2.3-r10", Greater, "1.2.3-r9"),
            ("1.2.3_alpha", Less, "1.2.3_beta"),
            ("1.2.3_beta2", Less, "1.2.3_pre1"),
            ("1.2.3_pre1", Less, "1.2.3_rc1"),
            ("1.2.3_rc2", Greater, "1.2.3_rc1"),
            ("1.2.3_p1", Greater, "1.2.3"),
            ("1.2.3_p1", Greater, "1.2.3-r5"),
            ("1.2.3_git20240101", Greater, "1.2.3"),
            ("1.2.3a", Greater, "1.2.3"),
            ("1.2.3a", Less, "1.2.3b"),
            ("1.2.3", Less, "1.2.3.1"),
            ("1.2.10", Greater, "1.2.9"),
            ("1.1.1k-r0", Greater, "1.1.1j-r5"),
            ("1.36.1-r0", Less, "1.36.1-r5"),
            ("3.1.4-r5", Equal, "3.1.4-r5"),
        ],
    );
}

#[test]
fn semver_pre_releases_for_crates_npm_and_go() {
    let cases = [
        ("1.0.0-alpha", Less, "1.0.0"),
        ("1.0.0-alpha", Less, "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", Less, "1.0.0-beta"),
        ("1.0.0-beta.2", Less, "1.0.0-beta.11"),
        ("1.0.0-rc.1", Less, "1.0.0"),
        ("0.0.0-0", Less, "0.1.44"),
        ("0.4.0-0", Less, "0.4.0"),
        ("1.13.1", Greater, "1.12.0"),
        ("1.10.0", Greater, "1.9.0"),
        ("1.0.0+build.1", Equal, "1.0.0+build.2"),
    ];
    check(Ecosystem::CratesIo, &cases);
    check(Ecosystem::Npm, &cases);
    check(
        Ecosystem::Go,
        &[
            ("v1.2.3", Equal, "1.2.3"),
            ("v0.0.0-20210101000000-abcdef123456", Less, "v0.1.0"),
            ("v1.21.5", Greater, "v1.21"),
            ("v2.0.0+incompatible", Greater, "v1.9.9"),
        ],
    );
}

#[test]
fn pep440_releases_pre_post_and_epochs() {
    check(
        Ecosystem::PyPI,
        &[
            ("1.0rc1", Less, "1.0"),
            ("1.0.post1", Greater, "1.0"),
            ("1.0.dev0", Less, "1.0a1"),
            ("1.0a1", Less, "1.0b1"),
            ("1.0b1", Less, "1.0rc1"),
            ("1.0", Equal, "1.0.0"),
            ("1!0.1", Greater, "2.0"),
            ("2.28.2", Less, "2.31.0"),
            ("1.0.post1", Less, "1.0.1"),
        ],
    );
}

#[test]
fn malformed_versions_are_still_ordered() {
    for eco in Ecosystem::ALL {
        assert_eq!(compare(eco, "not a version", "not a version"), Equal, "{eco}");
        let a = compare(eco, "abc!", "abd!");
        assert_eq!(a.reverse(), compare(eco, "abd!", "abc!"), "{eco}");
    }
}

/// Every pair of the Debian versions in the fixtures (the dpkg status and the advisories'
/// fixes) and the cases above, compared by Kiln and by `dpkg --compare-versions`.
#[test]
fn dpkg_comparison_agrees_with_dpkg_on_the_fixture_versions() {
    let status = String::from_utf8(crate::support::read("debian-12-status")).expect("utf-8");
    let mut versions: Vec<String> =
        status.lines().filter_map(|l| l.strip_prefix("Version: ")).map(str::to_string).collect();
    for entry in std::fs::read_dir(crate::support::fixture("advisories")).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        for advisory in kiln_scan::parse_osv(&bytes, "fixture").expect("parse") {
            for affected in advisory.affected {
                if affected.ecosystem == Ecosystem::Debian {
                    versions.extend(affected.ranges.into_iter().filter_map(|r| r.fixed));
                }
            }
        }
    }
    versions.extend(
        ["1.0~rc1", "1.0~~", "1.0+b1", "1.16.2+ds0-1", "1.16.2+ds-1", "1:1.0", "2.0", "1.0a"]
            .map(str::to_string),
    );
    versions.sort();
    versions.dedup();
    assert!(versions.len() > 40, "{}", versions.len());
    let mut disagreements = Vec::new();
    for (i, a) in versions.iter().enumerate() {
        for b in &versions[i + 1..] {
            let ours = compare(Ecosystem::Debian, a, b);
            let op = match ours {
                Less => "lt",
                Equal => "eq",
                Greater => "gt",
            };
            let status = std::process::Command::new("dpkg")
                .args(["--compare-versions", a, op, b])
                .status()
                .expect("this test runs Debian's dpkg (package dpkg)");
            if !status.success() {
                disagreements.push(format!("{a} {op} {b}"));
            }
        }
    }
    assert!(disagreements.is_empty(), "dpkg disagrees: {disagreements:#?}");
}
