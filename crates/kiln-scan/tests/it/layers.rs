//! Reading an image's layers: gzip or not, OCI whiteouts, later layers winning, the
//! release from os-release, errors naming the layer.

use kiln_scan::{Ecosystem, ScanError, packages_from_layers};

use crate::support::{Entry, gzip, read, tar};

const STATUS_A: &[u8] = b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u1\nSource: openssl\n\nPackage: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nSource: zlib\n";
const STATUS_B: &[u8] =
    b"Package: libssl3\nStatus: install ok installed\nVersion: 3.0.11-1~deb12u2\nSource: openssl\n";
const LOCK: &[u8] = b"version = 3\n\n[[package]]\nname = \"regex\"\nversion = \"1.5.4\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";

fn list(packages: &[kiln_scan::Package]) -> Vec<String> {
    packages
        .iter()
        .map(|p| format!("{} {} {} {} {:?}", p.ecosystem, p.name, p.version, p.source, p.release))
        .collect()
}

#[test]
fn layers_gzipped_or_not_with_the_release_of_os_release() {
    let base = gzip(&tar(&[
        Entry::Dir("etc/"),
        Entry::File("etc/os-release", &read("os-release")),
        Entry::Dir("var/lib/dpkg/"),
        Entry::File("./var/lib/dpkg/status", STATUS_A),
    ]));
    let app = tar(&[Entry::Dir("app/"), Entry::File("app/Cargo.lock", LOCK)]);
    let got = packages_from_layers([base.as_slice(), app.as_slice()]).expect("scan");
    assert_eq!(
        list(&got),
        [
            "Debian openssl 3.0.11-1~deb12u1 var/lib/dpkg/status Some(\"12\")",
            "Debian zlib 1:1.2.13.dfsg-1 var/lib/dpkg/status Some(\"12\")",
            "crates.io regex 1.5.4 app/Cargo.lock None",
        ]
    );
}

#[test]
fn a_later_layer_replaces_a_file_and_whiteouts_remove_files_and_directories() {
    let base = tar(&[
        Entry::File("var/lib/dpkg/status", STATUS_A),
        Entry::File("app/Cargo.lock", LOCK),
        Entry::File("old/requirements.txt", b"requests==2.28.1\n"),
        Entry::File(
            "srv/node/package-lock.json",
            br#"{"packages":{"node_modules/lodash":{"version":"4.17.20"}}}"#,
        ),
    ]);
    let upgrade = tar(&[Entry::File("var/lib/dpkg/status", STATUS_B)]);
    let cleanup = tar(&[
        Entry::File("app/.wh.Cargo.lock", b""),
        Entry::File(".wh.old", b""),
        Entry::File("srv/node/.wh..wh..opq", b""),
    ]);
    let got = packages_from_layers([base.as_slice(), upgrade.as_slice(), cleanup.as_slice()])
        .expect("scan");
    assert_eq!(list(&got), ["Debian openssl 3.0.11-1~deb12u2 var/lib/dpkg/status None"]);
}

#[test]
fn an_opaque_directory_keeps_what_its_own_layer_adds() {
    let base = tar(&[Entry::File("srv/requirements.txt", b"flask==2.0.0\n")]);
    let top = tar(&[
        Entry::File("srv/.wh..wh..opq", b""),
        Entry::File("srv/requirements.txt", b"flask==2.3.0\n"),
    ]);
    let got = packages_from_layers([base.as_slice(), top.as_slice()]).expect("scan");
    assert_eq!(list(&got), ["PyPI flask 2.3.0 srv/requirements.txt None"]);
}

#[test]
fn a_go_binary_in_a_layer_is_found() {
    let bin = crate::parsers::go_binary();
    let layer = tar(&[
        Entry::Exec("usr/local/bin/app", &bin),
        Entry::Exec("usr/bin/script", b"#!/bin/sh\necho this is not an ELF file, only a script\n"),
    ]);
    let got = packages_from_layers([layer.as_slice()]).expect("scan");
    assert!(got.iter().all(|p| p.ecosystem == Ecosystem::Go && p.source == "usr/local/bin/app"));
    assert_eq!(got.len(), 4, "{:?}", list(&got));
}

#[test]
fn bad_layers_and_bad_files_name_where() {
    let good = tar(&[Entry::File("etc/hostname", b"x\n")]);
    let err = packages_from_layers([
        good.as_slice(),
        b"this is not a tar archive at all, not even close".as_slice(),
    ])
    .expect_err("not a tar");
    match &err {
        ScanError::Layer { layer, .. } => assert_eq!(*layer, 1),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("layer 1: "), "{err}");

    let mut truncated = gzip(&tar(&[Entry::File("var/lib/dpkg/status", STATUS_A)]));
    truncated.truncate(truncated.len() / 2);
    let err = packages_from_layers([truncated.as_slice()]).expect_err("truncated");
    assert!(err.to_string().starts_with("layer 0: "), "{err}");

    let zstd = [0x28u8, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    let err = packages_from_layers([zstd.as_slice()]).expect_err("zstd");
    assert!(err.to_string().contains("zstd"), "{err}");

    let broken = tar(&[Entry::File("var/lib/dpkg/status", b"Package: a\nbroken line\n")]);
    let err = packages_from_layers([broken.as_slice()]).expect_err("broken status");
    assert!(err.to_string().starts_with("var/lib/dpkg/status:2: "), "{err}");
}

#[test]
fn an_empty_image_has_no_packages() {
    let none: [&[u8]; 0] = [];
    assert!(packages_from_layers(none).expect("scan").is_empty());
    let empty = tar(&[]);
    assert!(packages_from_layers([empty.as_slice()]).expect("scan").is_empty());
}

#[test]
fn lock_files_of_downloaded_dependencies_are_not_read() {
    let layer = tar(&[
        Entry::File(
            "app/package-lock.json",
            br#"{"packages":{"node_modules/lodash":{"version":"4.17.20"}}}"#,
        ),
        Entry::File(
            "app/node_modules/some-dep/package-lock.json",
            br#"{"packages":{"node_modules/left-pad":{"version":"1.0.0"}}}"#,
        ),
        Entry::File(
            "root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/regex-1.5.4/Cargo.lock",
            LOCK,
        ),
    ]);
    let got = packages_from_layers([layer.as_slice()]).expect("scan");
    assert_eq!(list(&got), ["npm lodash 4.17.20 app/package-lock.json None"]);
}
