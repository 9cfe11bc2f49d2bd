//! A real S3 server for tests: `s3s-fs` (crates.io, pinned 0.14.1), which checks request
//! signatures (SigV4) and keeps each bucket as a directory and each object as a file, so a
//! test sees what was stored. Started on a loopback port in a temporary directory with a key
//! pair and one bucket, stopped when dropped.
//!
//! The binary is `KILN_TEST_S3S_FS` (set by `cargo xtask ci`, which installs it), else
//! `s3s-fs` on the `PATH` or in `~/.cargo/bin`. A missing binary fails the test with how to
//! install it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::until;

/// The access key id of every [`S3Server`].
pub const S3_ACCESS_KEY: &str = "kiln-test-access";

/// The secret access key of every [`S3Server`].
pub const S3_SECRET_KEY: &str = "kiln-test-secret-0123456789";

/// The variable naming the `s3s-fs` binary.
pub const S3S_FS_VAR: &str = "KILN_TEST_S3S_FS";

/// How to install the binary, as the failure says.
const INSTALL: &str = "install it with `cargo install s3s-fs@0.14.1 --features binary --locked` \
                       (cargo xtask ci does, and sets KILN_TEST_S3S_FS)";

/// A running `s3s-fs` with one bucket.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
    dir: tempfile::TempDir,
}

/// The `s3s-fs` binary: [`S3S_FS_VAR`], the `PATH`, `~/.cargo/bin`; panics with how to
/// install it when there is none.
pub fn s3s_fs() -> PathBuf {
    if let Some(path) = std::env::var_os(S3S_FS_VAR) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{S3S_FS_VAR}={} is not a file; {INSTALL}", path.display());
        return path;
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("s3s-fs")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(Path::new(&home).join("bin/s3s-fs"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cargo/bin/s3s-fs"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("the S3 server s3s-fs is not installed: {INSTALL}"))
}

impl S3Server {
    /// Starts one on `127.0.0.1:port` with bucket `bucket` and waits until it answers.
    pub async fn start(port: u16, bucket: &str) -> S3Server {
        let bin = s3s_fs();
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(dir.path().join(bucket)).expect("the bucket's directory");
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}; {INSTALL}", bin.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let addr = format!("127.0.0.1:{port}");
        until("s3s-fs listens", Duration::from_secs(20), Duration::from_millis(50), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.map(|_| ()) }
        })
        .await;
        S3Server { child, endpoint, bucket: bucket.to_string(), dir }
    }

    /// Starts one on a free port of 127.0.0.1 (port 0 taken and let go) with bucket
    /// `bucket`.
    pub async fn start_free(bucket: &str) -> S3Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        S3Server::start(port, bucket).await
    }

    /// The settings of an object store on this server: `s3://<bucket>/<prefix>`, the test
    /// key pair, plain HTTP allowed, 5 MiB parts.
    pub fn object_store(&self, prefix: &str) -> kiln_objstore::S3Config {
        kiln_objstore::S3Config {
            endpoint: Some(self.endpoint.clone()),
            allow_http: true,
            credentials: Some(kiln_objstore::S3Credentials {
                access_key_id: S3_ACCESS_KEY.into(),
                secret_access_key: S3_SECRET_KEY.into(),
                session_token: None,
            }),
            part_size: kiln_objstore::s3::MIN_PART_SIZE,
            ..kiln_objstore::S3Config::from_url_as(
                &format!("s3://{}/{prefix}", self.bucket),
                "object store",
            )
            .expect("a valid s3:// URL")
        }
    }

    /// The directory holding the buckets (`<root>/<bucket>/<key>` is an object's file).
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Every object key in `bucket` (its files, `/`-separated, sorted), leaving out s3s-fs's
    /// own bookkeeping files.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(rel) = path.strip_prefix(base) {
                    let key = rel.to_string_lossy().to_string();
                    if !key.starts_with(".") && !key.contains("/.") {
                        out.push(key);
                    }
                }
            }
        }
        let base = self.dir.path().join(bucket);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
