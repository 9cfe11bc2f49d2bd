//! The registry page's vulnerabilities: an image made from the scan fixtures (a Debian 12
//! dpkg status and a Cargo.lock, `crates/kiln-scan/tests/fixtures`) pushed after the fixture
//! advisories were imported; its tag row counts the findings by severity and the panel lists
//! exactly the API's findings, most severe first, with their fixed versions.

use std::path::Path;

use kiln_api::scan::{AdvisoryFile, ImportAdvisories};
use serde_json::json;

use super::{Browser, push_image};
use crate::support::TestServer;

/// An uncompressed tar of `files` (path, bytes): ustar headers written by hand.
fn tar(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, bytes) in files {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{:011o}", bytes.len()).as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(bytes);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_repository_page_shows_an_images_findings_by_severity() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-scan/tests/fixtures");
    let s = TestServer::start_with(0).await;
    s.admin.create_project("team").await.unwrap();
    let mut files = Vec::new();
    for e in std::fs::read_dir(fixtures.join("advisories")).unwrap() {
        let p = e.unwrap().path();
        let content = std::fs::read_to_string(&p).unwrap();
        files.push(AdvisoryFile { name: p.display().to_string(), content });
    }
    s.admin.import_advisories(&ImportAdvisories { files }).await.unwrap();
    let read = |n: &str| std::fs::read(fixtures.join(n)).unwrap();
    let layer = tar(&[
        ("etc/os-release", read("os-release")),
        ("var/lib/dpkg/status", read("debian-12-status")),
        ("app/Cargo.lock", read("Cargo.lock")),
    ]);
    push_image(&s.url, &s.admin_token, "team/app", "1.0", &layer).await;
    let scan = loop {
        let scan = s.admin.image_vulns("team/app:1.0", None).await.unwrap();
        if scan.state == "scanned" {
            break scan;
        }
        assert!(scan.state == "unscanned" || scan.state == "queued", "{scan:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!scan.findings.is_empty());

    let Some(b) = Browser::start("scans").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;
    b.c.goto(&format!("{}/registry/team/app", s.url)).await.unwrap();
    let count = b
        .wait(
            "the findings count",
            "const c = document.querySelector('tr[data-tag=\"1.0\"] [data-scan=findings]'); return c && Number(c.dataset.count)",
        )
        .await;
    assert_eq!(count, json!(scan.findings.len()));
    let critical = scan.findings.iter().filter(|f| f.severity == "critical").count();
    let summary = b
        .js("return document.querySelector('tr[data-tag=\"1.0\"] [data-scan=findings]').textContent")
        .await;
    assert!(summary.as_str().unwrap().starts_with(&format!("{critical} critical")), "{summary}");
    let rows = b
        .wait(
            "the findings",
            "const r = [...document.querySelectorAll('#vulns table.findings tr[data-advisory]')];
             return r.length && r.map(t => [t.dataset.advisory, t.dataset.package, t.querySelector('[data-severity]').dataset.severity,
               t.querySelector('.fixed').textContent])",
        )
        .await;
    let want: Vec<_> = scan
        .findings
        .iter()
        .map(|f| {
            json!([
                f.advisory,
                f.package,
                f.severity,
                f.fixed.clone().unwrap_or("no fix yet".into())
            ])
        })
        .collect();
    assert_eq!(rows, json!(want));
    b.shot("vulnerabilities").await;
    b.c.clone().close().await.unwrap();
    s.stop().await;
}
