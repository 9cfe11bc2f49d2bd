//! The package parsers, through `packages_from_file` (the path decides the parser).

use kiln_scan::{Ecosystem, Package, ScanError, packages_from_file};

use crate::support::read;

fn names(packages: &[Package]) -> Vec<(String, String)> {
    packages.iter().map(|p| (p.name.clone(), p.version.clone())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn dpkg_status_gives_installed_source_packages() {
    let packages =
        packages_from_file("var/lib/dpkg/status", &read("debian-12-status")).expect("parse");
    assert!(packages.iter().all(|p| p.ecosystem == Ecosystem::Debian));
    assert!(packages.iter().all(|p| p.source == "var/lib/dpkg/status"));
    assert!(packages.iter().all(|p| p.release.is_none()));
    let find = |name: &str| {
        packages.iter().filter(|p| p.name == name).map(|p| p.version.as_str()).collect::<Vec<_>>()
    };
    // libc6 and libc-bin are one source package, glibc, at one version.
    assert_eq!(find("glibc"), ["2.36-9+deb12u1"]);
    assert_eq!(find("openssl"), ["3.0.11-1~deb12u1"]);
    // `Source: bash (5.2.15-2)`: the source's own version, not the binNMU's 5.2.15-2+b8.
    assert_eq!(find("bash"), ["5.2.15-2"]);
    assert_eq!(find("libcap2"), ["1:2.66-4+deb12u2"]);
    assert_eq!(find("shadow"), ["1:4.13+dfsg1-1+deb12u2"]);
    // No `Source:`: the binary is its own source.
    assert_eq!(find("coreutils"), ["9.1-1"]);
    // Binary names never appear where a source name differs.
    assert!(find("libc6").is_empty() && find("libssl3").is_empty());
    // `Status: deinstall ok config-files` is not installed.
    assert!(find("libxml2-utils").is_empty());
    assert_eq!(find("libxml2"), ["2.9.14+dfsg-1.3~deb12u5"]);
    // 41 installed binary packages from 35 source packages.
    assert_eq!(packages.len(), 35, "{:#?}", names(&packages));
}

#[test]
fn held_packages_are_installed_and_half_installed_ones_are_not() {
    let text = b"Package: a\nStatus: hold ok installed\nVersion: 1.0-1\n\nPackage: b\nStatus: install reinstreq half-installed\nVersion: 2.0-1\n\nPackage: c\nStatus: purge ok not-installed\nVersion: 3.0-1\n";
    let got = packages_from_file("var/lib/dpkg/status", text).expect("parse");
    assert_eq!(names(&got), pairs(&[("a", "1.0-1")]));
}

#[test]
fn distroless_status_d_files_have_no_status_field() {
    let stanza =
        b"Package: libssl3\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\nSource: openssl\n";
    let got = packages_from_file("/var/lib/dpkg/status.d/libssl3", stanza).expect("parse");
    assert_eq!(names(&got), pairs(&[("openssl", "3.0.11-1~deb12u2")]));
    assert_eq!(got[0].source, "var/lib/dpkg/status.d/libssl3");
}

#[test]
fn a_broken_dpkg_status_names_the_line() {
    let text = b"Package: a\nStatus: install ok installed\nVersion: 1\n\nPackage b\n";
    let err = packages_from_file("var/lib/dpkg/status", text).expect_err("broken");
    match &err {
        ScanError::Parse { path, line, .. } => {
            assert_eq!((path.as_str(), *line), ("var/lib/dpkg/status", 5));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("var/lib/dpkg/status:5: "), "{err}");
    let no_version = b"Package: a\nStatus: install ok installed\n";
    let err = packages_from_file("var/lib/dpkg/status", no_version).expect_err("no version");
    assert!(err.to_string().contains("`a` has no `Version:`"), "{err}");
}

#[test]
fn apk_installed_gives_origin_packages() {
    let db = b"C:Q1abc=\nP:libssl3\nV:3.1.4-r0\nA:x86_64\no:openssl\nm:Ariadne\n\nC:Q1def=\nP:libcrypto3\nV:3.1.4-r0\no:openssl\n\nP:busybox\nV:1.36.1-r5\n";
    let got = packages_from_file("lib/apk/db/installed", db).expect("parse");
    assert_eq!(names(&got), pairs(&[("busybox", "1.36.1-r5"), ("openssl", "3.1.4-r0")]));
    assert!(got.iter().all(|p| p.ecosystem == Ecosystem::Alpine));
    let err = packages_from_file("lib/apk/db/installed", b"P:x\nA:y\n").expect_err("no V");
    assert!(err.to_string().contains("no `V:`"), "{err}");
}

#[test]
fn cargo_lock_gives_crates_io_packages_only() {
    let got = packages_from_file("app/Cargo.lock", &read("Cargo.lock")).expect("parse");
    assert_eq!(
        names(&got),
        pairs(&[
            ("ansi_term", "0.12.1"),
            ("bytes", "1.1.0"),
            ("h2", "0.3.15"),
            ("libc", "0.2.103"),
            ("openssl", "0.10.55"),
            ("regex", "1.5.4"),
            ("serde", "1.0.130"),
            ("smallvec", "1.6.0"),
            ("time", "0.1.44"),
            ("tokio", "1.12.0"),
            ("winapi", "0.3.9"),
        ]),
        "no workspace member (kiln-demo-app), no git dependency (demo-util)"
    );
    assert!(got.iter().all(|p| p.ecosystem == Ecosystem::CratesIo && p.source == "app/Cargo.lock"));

    let sparse = b"version = 4\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.200\"\nsource = \"sparse+https://index.crates.io/\"\n";
    assert_eq!(
        names(&packages_from_file("Cargo.lock", sparse).expect("v4")),
        pairs(&[("serde", "1.0.200")])
    );
    let broken = b"[[package]]\nname = \"serde\nversion = \"1\"\n";
    let err = packages_from_file("Cargo.lock", broken).expect_err("unterminated");
    assert!(err.to_string().starts_with("Cargo.lock:2: "), "{err}");
    let no_version = b"[[package]]\nname = \"serde\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
    let err = packages_from_file("Cargo.lock", no_version).expect_err("no version");
    assert!(err.to_string().contains("without `version"), "{err}");
}

#[test]
fn package_lock_v1_and_v3() {
    let v3 = br#"{
      "name": "web", "version": "1.0.0", "lockfileVersion": 3,
      "packages": {
        "": {"name": "web", "version": "1.0.0"},
        "node_modules/lodash": {"version": "4.17.20"},
        "node_modules/@babel/core": {"version": "7.22.0"},
        "node_modules/@babel/core/node_modules/semver": {"version": "6.3.0"},
        "node_modules/local-lib": {"resolved": "libs/local", "link": true},
        "libs/local": {"name": "local-lib", "version": "0.0.1"}
      }
    }"#;
    let got = packages_from_file("srv/package-lock.json", v3).expect("v3");
    assert_eq!(
        names(&got),
        pairs(&[("@babel/core", "7.22.0"), ("lodash", "4.17.20"), ("semver", "6.3.0")])
    );
    let v1 = br#"{"name":"web","lockfileVersion":1,"dependencies":{
      "lodash":{"version":"4.17.20"},
      "express":{"version":"4.17.1","dependencies":{"qs":{"version":"6.7.0"}}},
      "mine":{"version":"file:../mine"}}}"#;
    let got = packages_from_file("package-lock.json", v1).expect("v1");
    assert_eq!(
        names(&got),
        pairs(&[("express", "4.17.1"), ("lodash", "4.17.20"), ("qs", "6.7.0")])
    );
    assert!(got.iter().all(|p| p.ecosystem == Ecosystem::Npm));
    let err = packages_from_file("package-lock.json", b"{\"packages\": {]}").expect_err("bad");
    assert!(err.to_string().starts_with("package-lock.json:1:15: "), "{err}");
}

#[test]
fn poetry_lock_and_requirements_pins() {
    let poetry = br#"# This file is automatically @generated by Poetry 1.7.1 and should not be changed by hand.

[[package]]
name = "Django"
version = "4.1.2"
description = "A high-level Python web framework."
optional = false
python-versions = ">=3.8"
files = [
    {file = "Django-4.1.2-py3-none-any.whl", hash = "sha256:26dc24f99c8956374a054bcbf58aab8dc0cad2e6ac82b0fe036b752c00eee793"},
]

[package.dependencies]
asgiref = ">=3.5.2,<4"

[[package]]
name = "requests"
version = "2.28.1"
description = """Python HTTP for Humans.
Second line = "not a key"
"""

[metadata]
lock-version = "2.0"
"#;
    let got = packages_from_file("app/poetry.lock", poetry).expect("poetry");
    assert_eq!(names(&got), pairs(&[("Django", "4.1.2"), ("requests", "2.28.1")]));
    assert!(got.iter().all(|p| p.ecosystem == Ecosystem::PyPI));

    let reqs = b"# pinned\nrequests==2.28.1 \\\n    --hash=sha256:abc\nDjango[argon2]==4.1.2 ; python_version >= \"3.8\"\nflask>=2.0\n-r other.txt\nurllib3===1.26.5\nnumpy == 1.24.0  # comment\n";
    let got = packages_from_file("requirements-prod.txt", reqs).expect("requirements");
    assert_eq!(
        names(&got),
        pairs(&[
            ("Django", "4.1.2"),
            ("numpy", "1.24.0"),
            ("requests", "2.28.1"),
            ("urllib3", "1.26.5"),
        ])
    );
}

#[test]
fn a_path_no_parser_knows_is_refused() {
    let err =
        packages_from_file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n").expect_err("unknown");
    assert!(matches!(err, ScanError::Unrecognised { .. }), "{err:?}");
    assert!(err.to_string().contains("etc/passwd: not a file Kiln reads"), "{err}");
}

#[test]
fn go_binaries_build_info_names_modules() {
    let blob = go_binary();
    let got = packages_from_file("usr/local/bin/app", &blob).expect("go");
    assert_eq!(
        names(&got),
        pairs(&[
            ("example.com/app", "v1.2.3"),
            ("golang.org/x/net", "v0.17.0"),
            ("golang.org/x/text", "v0.14.0"),
            ("stdlib", "v1.21.5"),
        ])
    );
    assert!(got.iter().all(|p| p.ecosystem == Ecosystem::Go));
}

/// An ELF file with a Go 1.18+ build info blob (inline strings), as the Go linker writes it.
pub fn go_binary() -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut blob = b"\x7fELF\x02\x01\x01\x00".to_vec();
    blob.extend_from_slice(&[0u8; 120]);
    blob.extend_from_slice(b"\xff Go buildinf:");
    blob.push(8); // pointer size
    blob.push(0x2); // flags: inline strings
    blob.extend_from_slice(&[0u8; 16]);
    let version = "go1.21.5";
    // The module text sits between two 16-byte sentinels that are not UTF-8.
    let start: &[u8] = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
    let end: &[u8] = b"\xf92C1\x86\x18 r\x00\x82B\x10A\x16\xd8\xf2";
    let text = "path\texample.com/app/cmd/app\nmod\texample.com/app\tv1.2.3\th1:abc=\ndep\tgolang.org/x/net\tv0.10.0\th1:def=\n=>\tgolang.org/x/net\tv0.17.0\th1:ghi=\ndep\tgolang.org/x/text\tv0.14.0\th1:jkl=\nbuild\t-compiler=gc\n";
    let info = [start, text.as_bytes(), end].concat();
    varint(version.len(), &mut blob);
    blob.extend_from_slice(version.as_bytes());
    varint(info.len(), &mut blob);
    blob.extend_from_slice(&info);
    blob.extend_from_slice(&[0u8; 64]);
    blob
}
