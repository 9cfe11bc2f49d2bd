//! The blob stores: one conformance suite run on the filesystem store and on the S3 store
//! against a real S3 server (s3s-fs, which checks signatures); the registry on S3 with real
//! clients (docker push/pull, skopeo copy); and a wrong endpoint, key or bucket refused at
//! start with a one-line cause. Host ports 44000-44099.

use std::time::{Duration, Instant};

use kiln_registry::conformance;
use kiln_registry::{BlobStore, FsBlobStore, S3BlobStore, S3Config, S3Credentials};
use kiln_store::Role;
use kiln_testkit::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

use crate::clients::{available, build, docker_ok, ok};
use crate::support::Reg;

/// The store's config for `bucket` at `server`, with the test key pair and 5 MiB parts.
fn s3_config(server: &S3Server, bucket: &str, prefix: &str) -> S3Config {
    S3Config {
        endpoint: Some(server.endpoint.clone()),
        allow_http: true,
        credentials: Some(S3Credentials {
            access_key_id: S3_ACCESS_KEY.into(),
            secret_access_key: S3_SECRET_KEY.into(),
            session_token: None,
        }),
        part_size: kiln_registry::s3::MIN_PART_SIZE,
        ..S3Config::from_url(&format!("s3://{bucket}/{prefix}")).unwrap()
    }
}

/// More than two 5 MiB parts: the S3 store uploads it in three.
const BIG: usize = 11 * 1024 * 1024 + 12_345;

#[tokio::test]
async fn the_filesystem_store_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsBlobStore::open(dir.path().join("blobs")).unwrap();
    let staging = dir.path().join("uploads");
    std::fs::create_dir_all(&staging).unwrap();
    conformance::run(&store, &staging, BIG).await;
}

#[tokio::test]
async fn the_s3_store_passes_the_suite_with_blobs_as_objects_under_its_prefix() {
    let server = S3Server::start(44001, "kiln-blobs").await;
    let store = S3BlobStore::open(s3_config(&server, "kiln-blobs", "team/registry")).await.unwrap();
    let staging = tempfile::tempdir().unwrap();
    conformance::run(&store, staging.path(), BIG).await;

    // Every blob is an object `<prefix>/<algorithm>/<xx>/<hex>`, listed as its digest.
    let digest = conformance::put(&store, staging.path(), b"where is this blob").await;
    let hex = digest.strip_prefix("sha256:").unwrap();
    let keys = server.keys("kiln-blobs");
    assert!(
        keys.contains(&format!("team/registry/sha256/{}/{hex}", &hex[..2])),
        "the blob's object is in the bucket: {keys:?}"
    );
    assert!(keys.iter().all(|k| k.starts_with("team/registry/sha")), "only blobs: {keys:?}");
    let stored = std::fs::read(
        server.root().join("kiln-blobs/team/registry/sha256").join(&hex[..2]).join(hex),
    )
    .unwrap();
    assert_eq!(stored, b"where is this blob");
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), keys.len(), "each object is listed once: {listed:?}");
    assert!(listed.iter().any(|(d, _)| *d == digest));
}

/// The start of a store on `config`: its one-line error and how long it took.
async fn refused(config: S3Config) -> (String, Duration) {
    let started = Instant::now();
    let err = S3BlobStore::open(config).await.expect_err("the store is unusable");
    let line = err.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    (line, started.elapsed())
}

#[tokio::test]
async fn a_wrong_key_a_missing_bucket_or_no_server_is_a_one_line_error_within_seconds() {
    let server = S3Server::start(44002, "kiln-blobs").await;
    let endpoint = server.endpoint.clone();
    // Within seconds: not the client's default minutes of retries.
    let quick = Duration::from_secs(15);

    let mut wrong_secret = s3_config(&server, "kiln-blobs", "reg");
    wrong_secret.credentials.as_mut().unwrap().secret_access_key = "not-the-secret".into();
    let (line, took) = refused(wrong_secret).await;
    assert_eq!(
        line,
        format!(
            "blob store s3://kiln-blobs/reg: the secret access key was refused by {endpoint} (SignatureDoesNotMatch)"
        )
    );
    assert!(took < quick, "{took:?}");

    let mut wrong_id = s3_config(&server, "kiln-blobs", "reg");
    wrong_id.credentials.as_mut().unwrap().access_key_id = "nobody".into();
    let (line, took) = refused(wrong_id).await;
    assert!(
        line.starts_with("blob store s3://kiln-blobs/reg: the access key id was refused by"),
        "{line}"
    );
    assert!(took < quick, "{took:?}");

    let (line, took) = refused(s3_config(&server, "nobucket", "kiln")).await;
    assert_eq!(
        line,
        format!(
            "blob store s3://nobucket/kiln: the bucket `nobucket` does not exist at {endpoint}"
        )
    );
    assert!(took < quick, "{took:?}");

    let mut closed = s3_config(&server, "kiln-blobs", "reg");
    closed.endpoint = Some("http://127.0.0.1:44009".into());
    let (line, took) = refused(closed).await;
    assert_eq!(
        line,
        "blob store s3://kiln-blobs/reg: cannot connect to http://127.0.0.1:44009: connection refused"
    );
    assert!(took < quick, "{took:?}");

    // An endpoint that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:44008").await.unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let mut hung = s3_config(&server, "kiln-blobs", "reg");
    hung.endpoint = Some("http://127.0.0.1:44008".into());
    let (line, took) = refused(hung).await;
    assert_eq!(
        line,
        "blob store s3://kiln-blobs/reg: no answer from http://127.0.0.1:44008 within 5s"
    );
    assert!(took < quick, "{took:?}");
    held.abort();

    let mut plain = s3_config(&server, "kiln-blobs", "reg");
    plain.allow_http = false;
    let (line, _) = refused(plain).await;
    assert_eq!(
        line,
        format!(
            "blob store s3://kiln-blobs/reg: {endpoint} is plain HTTP; allow it with --s3-allow-http"
        )
    );

    // https to a plain-HTTP server: TLS (rustls on ring) runs and fails with a cause, no panic
    // for want of a crypto provider.
    let mut tls = s3_config(&server, "kiln-blobs", "reg");
    let https = endpoint.replace("http://", "https://");
    tls.endpoint = Some(https.clone());
    let (line, took) = refused(tls).await;
    assert_eq!(
        line,
        format!(
            "blob store s3://kiln-blobs/reg: cannot connect to {https}: received corrupt message of type InvalidContentType"
        )
    );
    assert!(took < quick, "{took:?}");

    // Nothing was written to the bucket by any of these.
    assert_eq!(server.keys("kiln-blobs"), Vec::<String>::new());
}

#[tokio::test]
async fn a_server_with_an_unusable_blob_store_refuses_to_start_and_creates_nothing() {
    let server = S3Server::start(44003, "kiln-blobs").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let started = Instant::now();
    let err = kiln_server::start(kiln_server::ServerConfig {
        registry_blobs: Some(s3_config(&server, "nobucket", "kiln")),
        ..kiln_server::ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap())
    })
    .await
    .expect_err("the server refuses to start");
    assert_eq!(
        err.to_string(),
        format!(
            "blob store s3://nobucket/kiln: the bucket `nobucket` does not exist at {}",
            server.endpoint
        )
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    assert!(!data.exists(), "the data directory was not created");
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_and_skopeo_push_and_pull_through_a_registry_on_s3() {
    if !docker_ok("docker_and_skopeo_on_s3")
        || !available("docker_and_skopeo_on_s3", "skopeo", &["--version"])
    {
        return;
    }
    let s3 = S3Server::start(44004, "kiln-blobs").await;
    let reg = Reg::start_s3(s3_config(&s3, "kiln-blobs", "registry")).await;
    let dev = reg.token("ci", Role::Developer, Some("team")).await;
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("docker-config").display().to_string();
    let host = reg.host.clone();
    let image = format!("{host}/team/app:s3");
    let work_path = work.path().to_path_buf();
    let creds = format!("kiln:{}", reg.admin);
    let (i, h) = (image.clone(), host.clone());
    tokio::task::spawn_blocking(move || {
        ok(
            "docker",
            &["--config", &cfg, "login", &h, "-u", "kiln", "--password-stdin"],
            Some(&format!("{dev}\n")),
        );
        build(&work_path.join("one"), &i, "on-s3");
        ok("docker", &["--config", &cfg, "push", &i], None);
        ok("docker", &["rmi", &i], None);
        ok("docker", &["--config", &cfg, "pull", &i], None);
        let out = ok(
            "docker",
            &["run", "--rm", &i, "cat", "/data/a.txt", "/data/b.txt", "/data/c.txt"],
            None,
        );
        assert_eq!(out, "first on-s3\nbuilt first on-s3\nthird on-s3\n");
        ok("docker", &["rmi", &i], None);
        // Registry to registry (another project), converted to OCI on the way.
        ok(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--src-creds",
                &creds,
                "--dest-creds",
                &creds,
                "--format",
                "oci",
                &format!("docker://{i}"),
                &format!("docker://{h}/other/app:oci"),
            ],
            None,
        );
        let out = ok(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                "--creds",
                &creds,
                &format!("docker://{h}/other/app:oci"),
            ],
            None,
        );
        let inspect: serde_json::Value = serde_json::from_str(&out).unwrap();
        inspect["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap()
    .into_iter()
    .for_each(|layer| {
        // Each layer of the copy is an object in the bucket…
        let hex = layer.strip_prefix("sha256:").unwrap();
        let key = format!("registry/sha256/{}/{hex}", &hex[..2]);
        assert!(s3.keys("kiln-blobs").contains(&key), "{key} in the bucket");
    });
    // …and no blob is in the data directory.
    let fs_blobs = reg.data.join("registry/blobs");
    let files = walk_files(&fs_blobs);
    assert!(files.is_empty(), "blobs in the data directory: {files:?}");
    assert!(s3.keys("kiln-blobs").len() >= 5, "layers and configs: {:?}", s3.keys("kiln-blobs"));
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        if e.path().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}
