//! Vulnerability scanning through the real server: an image made in the test from a Debian 12
//! rootfs's dpkg status (real packages of this kind of host, `crates/kiln-scan/tests/fixtures`)
//! and a Cargo.lock is pushed to Kiln's registry after the fixture advisories (real OSV records,
//! their ids kept) are imported: the server finds exactly what `kiln-scan` finds in the same
//! layer, with the fixed versions; importing one more advisory later notifies the image once
//! (a `vulnerability` registry event and one signed webhook delivery naming its repository,
//! tag and the advisory). The project image policy refuses `latest` and deploys of an image
//! with a critical finding, naming the advisories. An index is scanned through its
//! linux/amd64 image and notified once. Bad input (a malformed advisory file, an image whose
//! layer is missing, an unknown image) stores nothing; a failed scan is retried on a new push.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use kiln_api::CreateWebhook;
use kiln_api::scan::{
    AdvisoryFile, AdvisoryImportReport, ImagePolicy, ImageScan, ImportAdvisories,
};
use kiln_client::{Client, ClientError};
use sha2::{Digest as _, Sha256};

use crate::support::{Backend, TestServer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-scan/tests/fixtures")
}

/// The OSV files of fixture directory `dir`, sorted.
fn osv_files(dir: &str) -> Vec<AdvisoryFile> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| AdvisoryFile {
            name: p.file_name().unwrap().to_string_lossy().to_string(),
            content: std::fs::read_to_string(&p).unwrap(),
        })
        .collect()
}

async fn import(c: &Client, files: Vec<AdvisoryFile>) -> AdvisoryImportReport {
    c.import_advisories(&ImportAdvisories { files }).await.unwrap()
}

/// A gzipped tar layer of `files` (path, bytes).
fn layer(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, bytes.as_slice()).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// The image's one layer: a Debian 12 rootfs's os-release and dpkg status, and an app's
/// Cargo.lock.
fn app_layer() -> Vec<u8> {
    let read = |name: &str| std::fs::read(fixtures().join(name)).unwrap();
    layer(&[
        ("etc/os-release", read("os-release")),
        ("var/lib/dpkg/status", read("debian-12-status")),
        ("app/Cargo.lock", read("Cargo.lock")),
    ])
}

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Pushing to the registry with the admin token, as `docker push` does.
struct Pusher {
    url: String,
    auth: String,
    http: reqwest::Client,
}

impl Pusher {
    fn new(s: &TestServer) -> Pusher {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("kiln:{}", s.admin_token))
        );
        Pusher { url: s.url.clone(), auth, http: reqwest::Client::new() }
    }

    async fn blob(&self, repo: &str, data: &[u8]) -> String {
        let d = digest(data);
        let resp = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/?digest={d}", self.url))
            .header("Authorization", &self.auth)
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "upload: {}", resp.text().await.unwrap_or_default());
        d
    }

    /// An image manifest of `layers` (pushed first with its config); returns its body.
    async fn image(&self, repo: &str, layers: &[Vec<u8>]) -> Vec<u8> {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#;
        let config_digest = self.blob(repo, config).await;
        let mut descriptors = Vec::new();
        for l in layers {
            let d = self.blob(repo, l).await;
            descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d, "size": l.len(),
            }));
        }
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config.len(),
            },
            "layers": descriptors,
        }))
        .unwrap()
    }

    /// PUTs a manifest under `reference`: the status and the body.
    async fn manifest(&self, repo: &str, reference: &str, body: &[u8]) -> (u16, String) {
        self.put(repo, reference, "application/vnd.oci.image.manifest.v1+json", body).await
    }

    /// PUTs a manifest of `media_type` under `reference`: the status and the body.
    async fn put(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let resp = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.url))
            .header("Authorization", &self.auth)
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap_or_default())
    }
}

/// Waits until the scan of `image` is no longer pending (at most 60 s).
async fn scanned(c: &Client, image: &str) -> ImageScan {
    let start = Instant::now();
    loop {
        let s = c.image_vulns(image, None).await.unwrap();
        if s.state != "unscanned" && s.state != "queued" {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never scanned: {s:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `kiln-scan` itself finds in `layers` with the advisories of fixture directories
/// `dirs`: (advisory, package, installed, fixed, severity), sorted.
fn expected(
    layers: &[Vec<u8>],
    dirs: &[&str],
) -> Vec<(String, String, String, Option<String>, String)> {
    let packages = kiln_scan::packages_from_layers(layers.iter().map(|l| l.as_slice())).unwrap();
    let mut advisories = Vec::new();
    for dir in dirs {
        for f in osv_files(dir) {
            advisories.extend(kiln_scan::parse_osv(f.content.as_bytes(), &f.name).unwrap());
        }
    }
    let index = kiln_scan::AdvisoryIndex::new(advisories);
    let mut out: Vec<_> = index
        .matches(&packages)
        .into_iter()
        .map(|f| (f.advisory, f.package, f.installed, f.fixed, f.severity.to_string()))
        .collect();
    out.sort();
    out
}

fn found(s: &ImageScan) -> Vec<(String, String, String, Option<String>, String)> {
    let mut out: Vec<_> = s
        .findings
        .iter()
        .map(|f| {
            (
                f.advisory.clone(),
                f.package.clone(),
                f.installed.clone(),
                f.fixed.clone(),
                f.severity.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A webhook receiver on loopback recording (event header, body) of every POST.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, serde_json::Value)>>>) {
    let got: Arc<Mutex<Vec<(String, serde_json::Value)>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let event = headers
                    .get("x-kiln-event")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                seen.lock().unwrap().push((event, serde_json::from_slice(&body).unwrap()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

fn api_error(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Api { status, error } => (status, error.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pushed_image_has_exactly_the_expected_findings_and_a_later_advisory_notifies_it_once() {
    a_pushed_image_has_exactly_the_expected_findings_and_a_later_advisory_notifies_it_once_on(
        Backend::Sqlite,
    )
    .await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn a_pushed_image_has_exactly_the_expected_findings_and_a_later_advisory_notifies_it_once_on(
    backend: Backend,
) {
    let s = TestServer::start_on_with(backend, 0).await;
    let c = &s.admin;
    c.create_project("shop").await.unwrap();
    let (hook_url, got) = receiver().await;
    let hook = CreateWebhook {
        url: hook_url,
        events: Some(vec!["push".into(), "vulnerability".into()]),
        secret: None,
    };
    c.add_webhook("shop", &hook).await.unwrap();

    let first = osv_files("advisories");
    let r = import(c, first.clone()).await;
    assert_eq!((r.files, r.new, r.updated, r.unchanged), (first.len() as u64, r.read, 0, 0));
    assert_eq!(r.total, r.read);
    assert!(r.notices.is_empty(), "no image yet: {r:#?}");

    let push = Pusher::new(&s);
    let layers = vec![app_layer()];
    let manifest = push.image("shop/app", &layers).await;
    assert_eq!(push.manifest("shop/app", "1.0", &manifest).await.0, 201);
    let scan = scanned(c, "shop/app:1.0").await;
    assert_eq!(scan.state, "scanned", "{scan:#?}");
    assert_eq!(scan.digest, digest(&manifest));
    let want = expected(&layers, &["advisories"]);
    assert_eq!(found(&scan), want);
    // What the fixtures were chosen for, as a person reads the advisories: glibc in Debian 12
    // is not hit before the later import, Rust crates of the Cargo.lock are, with their fixes.
    assert!(!want.iter().any(|f| f.0 == "DEBIAN-CVE-2024-2961"));
    let smallvec = scan.findings.iter().find(|f| f.advisory == "RUSTSEC-2021-0003").unwrap();
    assert_eq!((smallvec.package.as_str(), smallvec.severity.as_str()), ("smallvec", "critical"));
    assert_eq!(smallvec.source, "app/Cargo.lock");
    assert!(scan.findings.iter().any(|f| f.ecosystem == "Debian"), "{scan:#?}");
    assert!(scan.findings.iter().all(|f| f.fixed.is_some()), "{scan:#?}");
    // Most severe first; the filter keeps at least the severity asked.
    let high = c.image_vulns("shop/app:1.0", Some("high")).await.unwrap();
    assert!(high.findings.iter().all(|f| f.severity == "high" || f.severity == "critical"));
    assert_eq!(high.findings[0].severity, "critical");

    // One more advisory: one notice, one event, one delivery, naming the image.
    let later = osv_files("advisories-later");
    let r = import(c, later.clone()).await;
    assert_eq!((r.new, r.updated, r.unchanged), (1, 0, 0));
    assert_eq!(r.notices.len(), 1, "{r:#?}");
    let n = &r.notices[0];
    assert_eq!(n.repository, "shop/app");
    assert_eq!(n.tags, ["1.0"]);
    assert_eq!(n.digest, scan.digest);
    assert_eq!(n.advisories, ["DEBIAN-CVE-2024-2961"]);
    let scan = c.image_vulns("shop/app:1.0", None).await.unwrap();
    assert_eq!(found(&scan), expected(&layers, &["advisories", "advisories-later"]));
    let glibc = scan.findings.iter().find(|f| f.advisory == "DEBIAN-CVE-2024-2961").unwrap();
    assert_eq!(glibc.package, "glibc");
    assert_eq!(glibc.fixed.as_deref(), Some("2.36-9+deb12u6"));

    // The same file again changes nothing and notifies nobody.
    let r = import(c, later).await;
    assert_eq!((r.new, r.updated, r.unchanged, r.notices.len()), (0, 0, 1, 0));
    let events = c.registry_events(Some("shop"), None).await.unwrap();
    let vulns: Vec<_> = events.iter().filter(|e| e.action == "vulnerability").collect();
    assert_eq!(vulns.len(), 1, "{events:#?}");
    assert_eq!(vulns[0].tags, ["1.0"]);
    assert_eq!(vulns[0].advisories, ["DEBIAN-CVE-2024-2961"]);

    let start = Instant::now();
    let delivered = loop {
        let got = got.lock().unwrap().clone();
        let v: Vec<_> = got.iter().filter(|(e, _)| e == "vulnerability").cloned().collect();
        if !v.is_empty() && got.iter().any(|(e, _)| e == "push") {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no delivery: {got:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    let body = &delivered[0].1;
    assert_eq!(body["action"], "vulnerability");
    assert_eq!(body["event"]["repository"], "shop/app");
    assert_eq!(body["event"]["tags"], serde_json::json!(["1.0"]));
    assert_eq!(body["event"]["digest"], scan.digest.as_str());
    assert_eq!(body["event"]["advisories"], serde_json::json!(["DEBIAN-CVE-2024-2961"]));
    s.stop().await;
}

#[tokio::test]
async fn the_image_policy_refuses_latest_and_deploys_of_an_image_with_a_critical_finding() {
    the_image_policy_refuses_latest_and_deploys_of_an_image_with_a_critical_finding_on(
        Backend::Sqlite,
    )
    .await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn the_image_policy_refuses_latest_and_deploys_of_an_image_with_a_critical_finding_on(
    backend: Backend,
) {
    let s = TestServer::start_on_with(backend, 0).await;
    let c = &s.admin;
    c.create_project("shop").await.unwrap();
    import(c, osv_files("advisories")).await;
    let push = Pusher::new(&s);
    let manifest = push.image("shop/app", &[app_layer()]).await;
    assert_eq!(push.manifest("shop/app", "1.0", &manifest).await.0, 201);
    let scan = scanned(c, "shop/app:1.0").await;
    let mut critical: Vec<_> = scan
        .findings
        .iter()
        .filter(|f| f.severity == "critical")
        .map(|f| f.advisory.clone())
        .collect();
    critical.dedup();
    assert!(critical.contains(&"RUSTSEC-2021-0003".to_string()), "{scan:#?}");

    // Without a policy, `latest` may name it.
    assert_eq!(push.manifest("shop/app", "latest", &manifest).await.0, 201);

    let policy = ImagePolicy { block_critical_deploys: true, no_critical_latest: true };
    assert_eq!(c.set_image_policy("shop", &policy).await.unwrap(), policy);
    assert_eq!(c.image_policy("shop").await.unwrap(), policy);

    // Moving `latest` to it again is refused, naming the advisories; so is a new image
    // pushed straight to `latest` (scanned during the push).
    let (status, body) = push.manifest("shop/app", "latest", &manifest).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("DENIED"), "{body}");
    assert!(body.contains(&format!("({})", critical.join(", "))), "{body}");
    let other =
        push.image("shop/other", &[app_layer(), layer(&[("etc/motd", b"hi\n".to_vec())])]).await;
    let (status, body) = push.manifest("shop/other", "latest", &other).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("RUSTSEC-2021-0003"), "{body}");
    assert!(c.registry_tags("shop/other").await.unwrap_or_default().is_empty());
    // Other tags are not the policy's business.
    assert_eq!(push.manifest("shop/other", "2.0", &other).await.0, 201);

    // A deploy of it is refused before anything is stored.
    c.create_environment(
        "shop",
        &kiln_api::environments::CreateEnvironment {
            name: "dev".into(),
            after: None,
            protected: false,
        },
    )
    .await
    .unwrap();
    let ask = kiln_api::deploy::DeployRequest {
        yaml: "kind: service\nname: web\ncommand: [sleep, \"60\"]\n".into(),
        file: None,
        environment: "dev".into(),
        image: "shop/app:1.0".into(),
        note: None,
        timeout_ms: None,
    };
    let (status, message) = api_error(c.deploy("shop", &ask).await.unwrap_err());
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("critical findings"), "{message}");
    assert!(message.contains("RUSTSEC-2021-0003"), "{message}");
    assert!(c.deployments("shop", None, None).await.unwrap().is_empty());

    // The policy off again: the deploy is accepted.
    c.set_image_policy("shop", &ImagePolicy::default()).await.unwrap();
    c.deploy("shop", &ask).await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_clearly_and_stores_nothing() {
    let s = TestServer::start_with(0).await;
    let c = &s.admin;
    c.create_project("shop").await.unwrap();
    let good = osv_files("advisories");

    // A malformed file among good ones: refused naming the file and the position.
    let mut files = good.clone();
    files.push(AdvisoryFile {
        name: "broken/DSA-0000-1.json".into(),
        content: "{\n  \"id\": \"DSA-0000-1\",\n  \"modified\": 12,\n".into(),
    });
    let (status, message) =
        api_error(c.import_advisories(&ImportAdvisories { files }).await.unwrap_err());
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("broken/DSA-0000-1.json:"), "{message}");
    assert!(message.contains("nothing was imported"), "{message}");
    // Nothing was stored: importing the good files now finds every one new.
    let r = import(c, good).await;
    assert_eq!(r.new, r.read, "{r:#?}");

    // A viewer may not import.
    let vera = crate::environments::user(&s, "vera", "viewer").await;
    let (status, _) = api_error(
        vera.import_advisories(&ImportAdvisories { files: osv_files("advisories-later") })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403);

    // An image whose layer is not in the registry's blob store: its scan fails and says so.
    let push = Pusher::new(&s);
    let lost = app_layer();
    let manifest = push.image("shop/lost", std::slice::from_ref(&lost)).await;
    let hex = digest(&lost).trim_start_matches("sha256:").to_string();
    let file = s.data.join("registry/blobs/sha256").join(&hex[..2]).join(&hex);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(push.manifest("shop/lost", "1", &manifest).await.0, 201);
    let scan = scanned(c, "shop/lost:1").await;
    assert_eq!(scan.state, "failed", "{scan:#?}");
    let error = scan.error.clone().unwrap_or_default();
    assert!(error.contains(&digest(&lost)), "{error}");
    assert!(error.contains("is not in the registry's blob store"), "{error}");
    assert!(scan.findings.is_empty() && scan.packages == 0, "{scan:#?}");
    // Scanning it again on demand says the same.
    let again = c.scan_image("shop/lost:1").await.unwrap();
    assert_eq!((again.state.as_str(), again.error), ("failed", scan.error));
    // The layer uploaded again and the image pushed again: scanned.
    push.blob("shop/lost", &lost).await;
    assert_eq!(push.manifest("shop/lost", "1", &manifest).await.0, 201);
    let start = Instant::now();
    let fixed = loop {
        let s = c.image_vulns("shop/lost:1", None).await.unwrap();
        if s.state == "scanned" {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never scanned again: {s:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(fixed.packages > 0 && fixed.error.is_none(), "{fixed:#?}");

    // Unknown images and bad severities.
    let (status, message) = api_error(c.image_vulns("shop/nope:1", None).await.unwrap_err());
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("image `shop/nope:1` is not in the registry"), "{message}");
    let (status, _) = api_error(c.scan_image("shop/lost:2").await.unwrap_err());
    assert_eq!(status, 404);
    let (status, message) =
        api_error(c.image_vulns("shop/lost:1", Some("dreadful")).await.unwrap_err());
    assert_eq!(status, 400);
    assert!(message.contains("severity `dreadful` is not known"), "{message}");
    s.stop().await;
}

#[tokio::test]
async fn manifests_left_unscanned_by_a_stopped_server_are_scanned_at_start() {
    let mut s = TestServer::start_with(0).await;
    s.admin.create_project("shop").await.unwrap();
    import(&s.admin, osv_files("advisories")).await;
    let push = Pusher::new(&s);
    let manifest = push.image("shop/app", &[app_layer()]).await;
    assert_eq!(push.manifest("shop/app", "1", &manifest).await.0, 201);
    let first = scanned(&s.admin, "shop/app:1").await;
    assert_eq!(first.state, "scanned");
    // As if the server had stopped between the push and its scan: no scan stored.
    s.stop_server().await;
    let store = kiln_store::Store::open(s.data.join("kiln.db")).await.unwrap();
    let what = "forget the scans";
    let db = match store.db() {
        kiln_store::Db::Sqlite(p) => p.clone(),
        kiln_store::Db::Postgres(_) => unreachable!("{what}: SQLite only"),
    };
    sqlx::query("DELETE FROM image_scans").execute(&db).await.unwrap();
    drop(store);
    s.start_again().await;
    let again = scanned(&s.admin, "shop/app:1").await;
    assert_eq!(again.state, "scanned");
    // Scanned again with the advisories loaded at start: the same findings.
    assert_eq!(found(&again), found(&first));
    assert!(!again.findings.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn an_index_is_scanned_through_its_linux_amd64_image_and_notified_once() {
    let s = TestServer::start_with(0).await;
    let c = &s.admin;
    c.create_project("shop").await.unwrap();
    import(c, osv_files("advisories")).await;
    let push = Pusher::new(&s);
    // arm64: an image with nothing Kiln reads; amd64: the app.
    let arm = push.image("shop/multi", &[layer(&[("etc/motd", b"arm\n".to_vec())])]).await;
    let amd = push.image("shop/multi", &[app_layer()]).await;
    for m in [&arm, &amd] {
        assert_eq!(push.manifest("shop/multi", &digest(m), m).await.0, 201);
    }
    let entry = |m: &[u8], arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(m),
            "size": m.len(), "platform": {"os": "linux", "architecture": arch},
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm, "arm64"), entry(&amd, "amd64")],
    }))
    .unwrap();
    let (status, body) =
        push.put("shop/multi", "2.0", "application/vnd.oci.image.index.v1+json", &index).await;
    assert_eq!(status, 201, "{body}");
    let scan = scanned(c, "shop/multi:2.0").await;
    assert_eq!(scan.digest, digest(&index));
    assert_eq!(found(&scan), expected(&[app_layer()], &["advisories"]));

    // The later advisory names the index's tag once: its platform images are part of it.
    let r = import(c, osv_files("advisories-later")).await;
    assert_eq!(r.notices.len(), 1, "{r:#?}");
    assert_eq!(
        (r.notices[0].tags.as_slice(), r.notices[0].digest.as_str()),
        (&["2.0".to_string()][..], scan.digest.as_str())
    );
    s.stop().await;
}
