//! Scanning benchmark (issue 15): an image of 300 Debian source packages against 10,000
//! advisories; target: the scan (layers read, packages parsed, matched against the index the
//! server keeps in memory) < 1 s.
//!
//! The image: one gzipped layer with `etc/os-release` (Debian 12), a dpkg `status` of 420
//! binary packages from 300 source packages (a third with epochs, `+debNuM` and `~` revisions,
//! 40 removed packages with config files left), and 3,000 other files of 1 KiB (copyright
//! files, as in `usr/share/doc`): 4.9 MB of tar, gzipped.
//! The advisories (generated, OSV JSON lines, the shape of Debian's per-CVE records): 10,000
//! over 2,500 source package names, skewed as real ones are (a few packages such as the kernel,
//! glibc or openssl carry most CVEs: package `k` is picked with weight 1/(k+1)); each with a
//! Debian 11 and a Debian 12 entry, every third one a Debian 13 entry too; 85% of the
//! Debian 12 fixes below what the image has, 10% above it, 5% not fixed.
//!
//! `cargo bench -p kiln-scan --bench scan` (or `cargo xtask bench scan`). Besides criterion's
//! figures it prints one timed run of each step and the scan's ratio to the 1 s target.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_scan::{AdvisoryIndex, Package, packages_from_layers, parse_osv};

const SOURCES: usize = 300;
const NAMES: usize = 2_500;
const ADVISORIES: usize = 10_000;

/// A small deterministic generator (xorshift64*), so every run scans the same image.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The installed version of source package `i`, and a version below and above it.
fn versions(i: usize) -> (String, String, String) {
    let (major, minor, rev) = (1 + i % 7, i % 23, 1 + i % 5);
    let epoch = if i.is_multiple_of(3) { format!("{}:", 1 + i % 2) } else { String::new() };
    let installed = match i % 4 {
        0 => format!("{epoch}{major}.{minor}.{}-{rev}+deb12u{}", i % 9, 1 + i % 3),
        1 => format!("{epoch}{major}.{minor}~rc{}-{rev}", 1 + i % 2),
        2 => format!("{epoch}{major}.{minor}.{}+dfsg-{rev}~deb12u1", i % 4),
        _ => format!("{epoch}{major}.{minor}-{rev}"),
    };
    let below = format!("{epoch}{major}.{}-1", minor.saturating_sub(1));
    let above = format!("{epoch}{major}.{}-1", minor + 1);
    (installed, below, above)
}

fn name(k: usize) -> String {
    format!("src{k:04}")
}

fn status() -> String {
    let mut out = String::new();
    for i in 0..SOURCES {
        let (version, _, _) = versions(i);
        let binaries = if i.is_multiple_of(3) { 2 } else { 1 };
        for b in 0..binaries {
            out.push_str(&format!(
                "Package: lib{}-{b}\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: {}\nMaintainer: Debian Maintainers <maint@debian.org>\nArchitecture: amd64\nMulti-Arch: same\nSource: {}\nVersion: {version}\nDepends: libc6 (>= 2.34)\nDescription: library number {i}\n This is the long description\n of a generated package.\n\n",
                name(i),
                100 + i,
                name(i),
            ));
        }
    }
    for i in 0..40 {
        out.push_str(&format!(
            "Package: removed{i}\nStatus: deinstall ok config-files\nPriority: optional\nArchitecture: amd64\nVersion: 1.0-{i}\nConffiles:\n /etc/removed{i}.conf 0123456789abcdef0123456789abcdef\nDescription: removed\n\n"
        ));
    }
    out
}

/// The layer, as a tar and gzipped.
fn layer() -> (usize, Vec<u8>) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, path, bytes).expect("append");
    };
    add(
        "etc/os-release",
        b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n",
    );
    add("var/lib/dpkg/status", status().as_bytes());
    let filler: Vec<u8> =
        (0..1024u32).map(|i| b"abcdefghij klmnopqrstuvwxyz\n"[i as usize % 28]).collect();
    for i in 0..3_000 {
        add(&format!("usr/share/doc/pkg{i}/copyright"), &filler);
    }
    let tar = builder.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    (tar.len(), gz.finish().expect("gzip"))
}

fn advisories_jsonl() -> String {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Weight 1/(k+1): pick by inverting the cumulative harmonic sums.
    let cumulative: Vec<f64> = (0..NAMES)
        .scan(0.0, |acc, k| {
            *acc += 1.0 / (k as f64 + 1.0);
            Some(*acc)
        })
        .collect();
    let total = cumulative[NAMES - 1];
    let mut out = String::new();
    for n in 0..ADVISORIES {
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let k = cumulative.partition_point(|&c| c < x).min(NAMES - 1);
        let pkg = name(k);
        let (_, below, above) = versions(k);
        let roll = rng.below(100);
        let fix12 = if roll < 85 {
            format!(r#",{{"fixed":"{below}"}}"#)
        } else if roll < 95 {
            format!(r#",{{"fixed":"{above}"}}"#)
        } else {
            String::new()
        };
        let entry = |release: u32, fix: &str| {
            format!(
                r#"{{"package":{{"name":"{pkg}","ecosystem":"Debian:{release}","purl":"pkg:deb/debian/{pkg}?arch=source"}},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}}{fix}]}}],"ecosystem_specific":{{"urgency":"not yet assigned"}}}}"#
            )
        };
        let mut affected =
            vec![entry(11, &format!(r#",{{"fixed":"{below}+deb11u1"}}"#)), entry(12, &fix12)];
        if n.is_multiple_of(3) {
            affected.push(entry(13, &format!(r#",{{"fixed":"{above}"}}"#)));
        }
        out.push_str(&format!(
            r#"{{"schema_version":"1.7.0","id":"DEBIAN-CVE-{}-{:05}","modified":"2026-11-01T00:00:00Z","published":"2025-01-01T00:00:00Z","upstream":["CVE-{}-{:05}"],"details":"Generated advisory {n} for {pkg}: a buffer overflow in a parser allows a remote attacker to crash the service.","affected":[{}]}}"#,
            2015 + n % 11,
            n,
            2015 + n % 11,
            n,
            affected.join(",")
        ));
        out.push('\n');
    }
    out
}

fn scan(layer: &[u8], index: &AdvisoryIndex) -> usize {
    let packages = packages_from_layers([layer]).expect("scan");
    index.matches(&packages).len()
}

fn report(tar_len: usize, layer: &[u8], jsonl: &str) {
    let t = Instant::now();
    let advisories = parse_osv(jsonl.as_bytes(), "generated.jsonl").expect("parse");
    let parse = t.elapsed();
    let t = Instant::now();
    let index = AdvisoryIndex::new(advisories);
    let build = t.elapsed();
    let t = Instant::now();
    let packages: Vec<Package> = packages_from_layers([layer]).expect("scan");
    let read = t.elapsed();
    let t = Instant::now();
    let findings = index.matches(&packages);
    let matching = t.elapsed();
    let whole = read + matching;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "scan: {} source packages, {} advisories ({} KiB of OSV JSON lines), layer {} KiB of tar, {} KiB gzipped",
        packages.len(),
        index.len(),
        jsonl.len() / 1024,
        tar_len / 1024,
        layer.len() / 1024
    );
    println!("  read layers and parse packages {:>8.2} ms", ms(read));
    println!(
        "  match against the index        {:>8.2} ms ({} findings)",
        ms(matching),
        findings.len()
    );
    println!(
        "  scan (both)                    {:>8.2} ms = {:.4} of the 1 s target (x{:.0} under it)",
        ms(whole),
        whole.as_secs_f64(),
        1.0 / whole.as_secs_f64()
    );
    println!("  parse the 10,000 advisories    {:>8.2} ms (on import)", ms(parse));
    println!("  build the index                {:>8.2} ms (on import)", ms(build));
}

fn bench(c: &mut Criterion) {
    let (tar_len, layer) = layer();
    let jsonl = advisories_jsonl();
    report(tar_len, &layer, &jsonl);
    let index = AdvisoryIndex::new(parse_osv(jsonl.as_bytes(), "generated.jsonl").expect("parse"));
    let packages = packages_from_layers([layer.as_slice()]).expect("scan");
    assert_eq!(packages.len(), SOURCES);
    let mut group = c.benchmark_group("scan");
    group.sample_size(20);
    group.bench_function("300 packages vs 10,000 advisories (layers + match)", |b| {
        b.iter(|| black_box(scan(&layer, &index)))
    });
    group.bench_function("match only", |b| b.iter(|| black_box(index.matches(&packages).len())));
    group.bench_function("read layers only", |b| {
        b.iter(|| black_box(packages_from_layers([layer.as_slice()]).expect("scan").len()))
    });
    group.bench_function("parse 10,000 advisories", |b| {
        b.iter(|| black_box(parse_osv(jsonl.as_bytes(), "generated.jsonl").expect("parse").len()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
