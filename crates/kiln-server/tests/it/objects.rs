//! The object store (issue 16): each suite run on the data directory and on S3 (s3s-fs, a
//! real S3 server that checks signatures, on a free port): the objects suite, finished job
//! logs archived and read by ranges (pages, tails, downloads, follows, a run's view over
//! them, a crash between upload and removal), artifacts and caches through a real server;
//! then a server on S3 end to end, and a wrong endpoint, key or bucket refused at start.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use kiln_logs::{LogError, LogKey, LogLine, LogStore, LogStoreConfig, Stream};
use kiln_objstore::{FsObjects, ObjectMeta, ObjectRead, Objects, S3Objects, conformance};
use kiln_server::objects::{LogObjects, is_job_log};
use kiln_testkit::S3Server;

use crate::support::{TestServer, job};

/// More than two 5 MiB parts: the S3 store uploads it in three.
const BIG: usize = 11 * 1024 * 1024 + 12_345;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_store_passes_the_objects_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsObjects::open(dir.path().join("blobs")).unwrap();
    let staging = dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    conformance::run(&store, &staging, BIG).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_s3_store_passes_the_objects_suite_with_objects_under_its_prefix() {
    let server = S3Server::start_free("kiln").await;
    let store = S3Objects::open(server.object_store("team/ci")).await.unwrap();
    let staging = tempfile::tempdir().unwrap();
    conformance::run(&store, staging.path(), BIG).await;
    let keys = server.keys("kiln");
    assert!(keys.contains(&"team/ci/suite/big".to_string()), "{keys:?}");
    assert!(
        keys.iter().all(|k| k.starts_with("team/ci/suite/")),
        "only under the prefix: {keys:?}"
    );
}

/// An object store that counts the reads made through it (requests and bytes asked for).
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn Objects>,
    gets: AtomicU64,
    bytes: AtomicU64,
}

impl Counted {
    fn new(inner: Arc<dyn Objects>) -> Counted {
        Counted { inner, gets: AtomicU64::new(0), bytes: AtomicU64::new(0) }
    }

    /// (requests, bytes) since the last call.
    fn take(&self) -> (u64, u64) {
        (self.gets.swap(0, Ordering::SeqCst), self.bytes.swap(0, Ordering::SeqCst))
    }
}

#[async_trait]
impl Objects for Counted {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn scoped(&self, part: &str) -> Arc<dyn Objects> {
        self.inner.scoped(part)
    }
    async fn head(&self, key: &str) -> std::io::Result<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> std::io::Result<Option<ObjectRead>> {
        let got = self.inner.get(key, range).await?;
        if let Some(o) = &got {
            self.gets.fetch_add(1, Ordering::SeqCst);
            let asked = range.map_or(o.size, |(start, end)| end - start);
            self.bytes.fetch_add(asked, Ordering::SeqCst);
        }
        Ok(got)
    }
    async fn put_file(&self, key: &str, staged: &Path) -> std::io::Result<()> {
        self.inner.put_file(key, staged).await
    }
    async fn put_bytes(&self, key: &str, bytes: Bytes) -> std::io::Result<()> {
        self.inner.put_bytes(key, bytes).await
    }
    async fn delete(&self, key: &str) -> std::io::Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> std::io::Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
}

fn text(i: usize) -> String {
    format!("build line {i} {}", "x".repeat(i % 40))
}

fn line(text: String) -> LogLine {
    LogLine { time: chrono::Utc::now(), stream: Stream::Stdout, text }
}

/// Runs `f` off the runtime's workers, as the server reads logs.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Waits until `path` is gone (the archiving thread moved the log).
async fn gone(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while path.exists() {
        assert!(Instant::now() < deadline, "{} was not archived in time", path.display());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The log store over `root` archiving job logs in `objects`' `logs/` part (with a counter).
fn archiving_store(
    root: &Path,
    objects: &Arc<dyn Objects>,
    staging: &Path,
) -> (LogStore, Arc<Counted>) {
    let counted = Arc::new(Counted::new(objects.scoped("logs")));
    let archive = LogObjects::new(counted.clone(), staging).unwrap();
    let config = LogStoreConfig { index_every: 64, ..LogStoreConfig::default() };
    let logs = LogStore::with_archive(root, config, Arc::new(archive), is_job_log).unwrap();
    (logs, counted)
}

/// The suite of finished logs on `objects`.
async fn finished_logs_are_archived_and_read_by_ranges(objects: Arc<dyn Objects>) {
    const LINES: usize = 5000;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("logs");
    let staging = dir.path().join("staging");
    let (logs, counted) = archiving_store(&root, &objects, &staging);
    let build = LogKey::new("runs/r1/0/1").unwrap();
    let test = LogKey::new("runs/r1/1/1").unwrap();
    let view = LogKey::new("runs/r1/all").unwrap();
    let (l, b, t, v) = (logs.clone(), build.clone(), test.clone(), view.clone());
    blocking(move || {
        for i in 1..=LINES {
            l.append_viewed(&b, &line(text(i)), None, &v, "build").unwrap();
            if i % 1000 == 0 {
                l.append_viewed(&t, &line(format!("test {i}")), None, &v, "test").unwrap();
            }
        }
        l.close(&b).unwrap();
    })
    .await;
    gone(&logs.path(&build)).await;
    assert!(!logs.index_path(&build).exists(), "the local index is removed too");
    let archived = objects.head("logs/runs/r1/0/1.log").await.unwrap().expect("the log object");
    assert!(objects.head("logs/runs/r1/0/1.idx").await.unwrap().is_some(), "the index object");
    assert!(logs.path(&test).exists(), "a live log stays on the local disk");
    assert!(logs.path(&view).exists(), "a run's view stays on the local disk");

    // A page from the middle: the archived index once, then one ranged read of a small part.
    counted.take();
    let l = logs.clone();
    let b = build.clone();
    let (page, info) = blocking(move || l.page(&b, 2500, 100).unwrap()).await;
    assert_eq!(page.len(), 100);
    assert_eq!((page[0].seq, page[0].text.as_str()), (2500, text(2500).as_str()));
    assert_eq!(page[99].text, text(2599));
    assert_eq!((info.last_seq, info.closed), (LINES as u64, true));
    let (gets, bytes) = counted.take();
    assert!(gets <= 2, "{gets} reads for a page");
    assert!(bytes < archived.size / 10, "{bytes} of {} bytes read for a page", archived.size);
    // The next page: the index is known, one ranged read.
    let l = logs.clone();
    let b = build.clone();
    let page = blocking(move || l.read(&b, 4991, 100).unwrap()).await;
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), (4991..=5000).collect::<Vec<_>>());
    assert_eq!(counted.take().0, 1, "one read for a page of a known log");

    // The download: every line, in order.
    let l = logs.clone();
    let b = build.clone();
    let (count, out) = blocking(move || {
        let mut out = Vec::new();
        (l.export(&b, 1, &mut out).unwrap(), out)
    })
    .await;
    let expected: String = (1..=LINES).map(|i| text(i) + "\n").collect();
    assert_eq!(count, LINES as u64);
    assert!(String::from_utf8(out).unwrap() == expected, "the download is the whole log");

    // The run's view resolves its lines from the archived log.
    let l = logs.clone();
    let v = view.clone();
    // (Seq 3001 of the view: build lines 1 to 3000 and test lines 1000 and 2000 came before.)
    let lines = blocking(move || l.read(&v, 3001, 4).unwrap()).await;
    let shown: Vec<String> = lines.into_iter().map(|r| r.text).collect();
    let build_line = |i| format!("build\t{}", text(i));
    assert_eq!(
        shown,
        [build_line(2999), build_line(3000), "test\ttest 3000".into(), build_line(3001)]
    );

    // Following the archived log replays it and ends.
    let l = logs.clone();
    let b = build.clone();
    let follow = blocking(move || l.follow(&b, 4990).unwrap()).await;
    let followed: Vec<_> = follow.map(|r| r.unwrap().seq).collect().await;
    assert_eq!(followed, (4990..=5000).collect::<Vec<_>>());

    // It is closed: no append; closing it again changes nothing, here or there.
    let l = logs.clone();
    let b = build.clone();
    let appended = blocking(move || l.append(&b, &line("late".into()))).await;
    assert!(matches!(appended, Err(LogError::Closed(_))), "{appended:?}");
    let l = logs.clone();
    let b = build.clone();
    blocking(move || l.close(&b).unwrap()).await;
    assert!(!logs.path(&build).exists(), "closing again writes nothing here");
    let again = objects.head("logs/runs/r1/0/1.log").await.unwrap().unwrap();
    assert_eq!(again.size, archived.size, "nor there");

    // A crash between the upload and the removal: the archived log is back on the local disk
    // (as a killed server leaves it), and the other job's log was closed but never uploaded.
    // The next store uploads both again at start and removes them; nothing is lost.
    drop(logs);
    let bytes =
        objects.get("logs/runs/r1/0/1.log", None).await.unwrap().unwrap().bytes().await.unwrap();
    std::fs::write(root.join("runs/r1/0/1.log"), &bytes).unwrap();
    let plain = LogStore::open(&root).unwrap();
    let t = test.clone();
    blocking(move || plain.close(&t).unwrap()).await;
    let (logs, _) = archiving_store(&root, &objects, &staging);
    gone(&logs.path(&build)).await;
    gone(&logs.path(&test)).await;
    let l = logs.clone();
    let (b, t) = (build.clone(), test.clone());
    let (all, tests) =
        blocking(move || (l.read(&b, 1, LINES + 10).unwrap(), l.read(&t, 1, 10).unwrap())).await;
    assert_eq!(all.len(), LINES);
    assert!(all.iter().enumerate().all(|(i, r)| r.text == text(i + 1)), "every line, once");
    let tests: Vec<String> = tests.into_iter().map(|r| r.text).collect();
    assert_eq!(tests, ["test 1000", "test 2000", "test 3000", "test 4000", "test 5000"]);
    let reuploaded = objects.head("logs/runs/r1/0/1.log").await.unwrap().unwrap();
    assert_eq!(reuploaded.size, archived.size, "the same bytes uploaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_logs_move_to_a_directory_store_and_are_read_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let objects: Arc<dyn Objects> = Arc::new(FsObjects::open(dir.path().join("objects")).unwrap());
    finished_logs_are_archived_and_read_by_ranges(objects).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_logs_move_to_s3_and_are_read_by_ranged_gets() {
    let server = S3Server::start_free("kiln").await;
    let objects: Arc<dyn Objects> =
        Arc::new(S3Objects::open(server.object_store("team")).await.unwrap());
    finished_logs_are_archived_and_read_by_ranges(objects).await;
    let keys = server.keys("kiln");
    for key in
        ["team/logs/runs/r1/0/1.log", "team/logs/runs/r1/0/1.idx", "team/logs/runs/r1/1/1.log"]
    {
        assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
    }
}

/// A build that restores and saves a cache, keeps an artifact and prints 3000 lines; a test
/// job that needs its artifact.
const FILES: &str = r#"
name: files
stages:
  - name: build
    jobs:
      build:
        script:
          - 'if [ -f .cache/deps.txt ]; then echo "JOB_OUT hit=$(cat .cache/deps.txt)"; else echo JOB_OUT hit=no; fi'
          - mkdir -p .cache out && echo deps-v1 > .cache/deps.txt && echo "binary v1" > out/app
          - 'i=1; while [ $i -le 3000 ]; do echo "build line $i"; i=$((i+1)); done'
        artifacts: { paths: [out/] }
        cache: { key: deps, paths: [.cache/] }
  - name: test
    jobs:
      test:
        needs: [build]
        script:
          - echo "JOB_OUT app=$(cat out/app)"
"#;

/// The build log of a finished run as a user reads it: a page, the tail, the download.
async fn read_build_log(s: &TestServer, run: &str) {
    let page = s.admin.logs(run, Some("build"), None, 1, 10_000).await.unwrap();
    let at = |n: usize| page.lines.iter().position(|l| l.text == format!("build line {n}"));
    let first = at(1).expect("line 1 of the build");
    assert_eq!(at(3000), Some(first + 2999), "3000 lines in order");
    assert!(page.closed, "the log is complete");
    let http = reqwest::Client::new();
    let get = |path: String| {
        http.get(format!("{}/api/v1/runs/{run}/jobs/build/logs{path}", s.url))
            .bearer_auth(&s.admin_token)
            .send()
    };
    let middle: kiln_api::LogPage =
        get(format!("?from={}&limit=5", first + 1000)).await.unwrap().json().await.unwrap();
    let texts: Vec<&str> = middle.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "build line 1000",
            "build line 1001",
            "build line 1002",
            "build line 1003",
            "build line 1004"
        ]
    );
    let tail: kiln_api::LogPage = get("?tail=3".into()).await.unwrap().json().await.unwrap();
    let seqs: Vec<u64> = tail.lines.iter().map(|l| l.seq).collect();
    assert_eq!(seqs, [page.last - 2, page.last - 1, page.last], "the last three lines");
    assert_eq!(tail.lines[2].text, page.lines.last().unwrap().text);
    assert!(tail.closed);
    let download = get("/download".into()).await.unwrap();
    assert_eq!(download.status(), 200);
    let body = download.text().await.unwrap();
    assert_eq!(body.lines().count() as u64, page.last, "the download has every line");
    assert!(body.contains("\nbuild line 1\n") && body.contains("\nbuild line 3000\n"));
}

/// The artifacts and caches suite, through a server: a cache missed then hit, an artifact
/// stored, listed, downloaded and placed into the job that needs it, logs read after the
/// runs ended. Returns the two runs.
async fn artifacts_and_caches(s: &TestServer) -> (String, String) {
    s.apply("api", "files", FILES).await;
    let mut runs = Vec::new();
    for hit in ["no", "deps-v1"] {
        let run = s.trigger("api", "files", &[]).await;
        let d = s.wait_final(&run.id).await;
        assert_eq!(d.run.state, "success", "{d:#?}");
        assert_eq!(job(&d, "build").outputs["hit"], hit, "the cache");
        assert_eq!(job(&d, "test").outputs["app"], "binary v1", "the artifact");
        runs.push(run.id);
    }
    let list = s.admin.artifacts(&runs[0]).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["out/app"]);
    let bytes: Vec<u8> = s
        .admin
        .download_artifact(&runs[0], "build")
        .await
        .unwrap()
        .map(|c| c.unwrap().to_vec())
        .concat()
        .await;
    assert_eq!(bytes.len() as u64, list[0].size);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut app = String::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("out/app") {
            std::io::Read::read_to_string(&mut e, &mut app).unwrap();
        }
    }
    assert_eq!(app, "binary v1\n");
    for run in &runs {
        read_build_log(s, run).await;
    }
    (runs.remove(0), runs.remove(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_caches_and_logs_in_the_data_directory() {
    let s = TestServer::start().await;
    let (run, _) = artifacts_and_caches(&s).await;
    assert!(s.data.join("blobs/artifacts").join(&run).join("0-1.tar.gz").is_file());
    assert!(s.data.join("logs/runs").join(&run).join("0/1.log").is_file(), "logs stay local");
    s.stop().await;
}

/// Every file under `dir` (relative, sorted), leaving out the staging directory.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_on_s3_keeps_artifacts_caches_and_finished_logs_in_the_bucket() {
    let s3 = S3Server::start_free("kiln").await;
    let mut s = TestServer::start_on_s3(4, s3.object_store("team")).await;
    let (first, second) = artifacts_and_caches(&s).await;
    // Each finished job log moves to the bucket; live ones (none now) would stay.
    for run in [&first, &second] {
        for job in 0..2 {
            gone(&s.data.join("logs/runs").join(run).join(format!("{job}/1.log"))).await;
        }
    }
    let keys = s3.keys("kiln");
    let has = |key: String| assert!(keys.contains(&key), "{key} in {keys:?}");
    has(format!("team/artifacts/{first}/0-1.tar.gz"));
    has(format!("team/artifacts/{second}/0-1.tar.gz"));
    for run in [&first, &second] {
        for name in ["0/1.log", "0/1.idx", "1/1.log", "1/1.idx"] {
            has(format!("team/logs/runs/{run}/{name}"));
        }
    }
    let caches: Vec<&String> = keys.iter().filter(|k| k.starts_with("team/caches/")).collect();
    assert_eq!(caches.len(), 2, "one cache object per upload: {keys:?}");
    // The data directory holds none of them: no archive, no job log (runs' views stay, and
    // an empty marker where each moved log was).
    let blobs = files_under(&s.data.join("blobs"));
    assert!(blobs.is_empty(), "nothing in the data directory's blobs: {blobs:?}");
    let logs = files_under(&s.data.join("logs"));
    let kept = |f: &String| {
        f.ends_with("/all.log")
            || f.ends_with("/all.idx")
            || f.ends_with(".archived")
            || f == ".reserve"
    };
    assert!(logs.iter().all(kept), "{logs:?}");
    for f in logs.iter().filter(|f| f.ends_with(".archived")) {
        assert_eq!(std::fs::metadata(s.data.join("logs").join(f)).unwrap().len(), 0, "{f}");
    }
    // Read from the bucket now: pages, the tail, the download.
    read_build_log(&s, &first).await;
    read_build_log(&s, &second).await;

    // A server killed after an upload, before the local removal: the log is back on the local
    // disk; the next start uploads it again and removes it, and it reads the same.
    s.stop_server().await;
    let key = format!("team/logs/runs/{first}/0/1.log");
    let local = s.data.join("logs/runs").join(&first).join("0/1.log");
    std::fs::copy(s3.root().join("kiln").join(&key), &local).unwrap();
    s.start_again().await;
    gone(&local).await;
    read_build_log(&s, &first).await;
    // The registry's blobs are in the bucket too (under `registry/`): see the registry's
    // tests for pushes; here the store answers for them.
    let list = s.admin.artifacts(&second).await.unwrap();
    assert_eq!(list.len(), 1);
    s.stop().await;
}

/// The start of a server on `config`: its one-line error and how long it took; nothing was
/// created in its data directory.
async fn refused(config: kiln_objstore::S3Config) -> (String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let started = Instant::now();
    let err = kiln_server::start(kiln_server::ServerConfig {
        object_store: Some(config),
        ..kiln_server::ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap())
    })
    .await
    .expect_err("the object store is unusable");
    let line = err.to_string();
    assert!(!line.contains('\n'), "one line: {line}");
    assert!(!data.exists(), "nothing created before the probe");
    (line, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_a_missing_bucket_or_no_s3_server_stops_the_start_in_seconds() {
    let s3 = S3Server::start_free("kiln").await;
    let endpoint = s3.endpoint.clone();
    let quick = Duration::from_secs(15);
    let mut wrong = s3.object_store("team");
    wrong.credentials.as_mut().unwrap().secret_access_key = "not-the-secret".into();
    let (line, took) = refused(wrong).await;
    assert_eq!(
        line,
        format!(
            "object store s3://kiln/team: the secret access key was refused by {endpoint} (SignatureDoesNotMatch)"
        )
    );
    assert!(took < quick, "{took:?}");
    let mut missing = s3.object_store("team");
    missing.bucket = "nobucket".into();
    let (line, took) = refused(missing).await;
    assert_eq!(
        line,
        format!(
            "object store s3://nobucket/team: the bucket `nobucket` does not exist at {endpoint}"
        )
    );
    assert!(took < quick, "{took:?}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut closed = s3.object_store("team");
    closed.endpoint = Some(format!("http://127.0.0.1:{port}"));
    let (line, took) = refused(closed).await;
    assert_eq!(
        line,
        format!(
            "object store s3://kiln/team: cannot connect to http://127.0.0.1:{port}: connection refused"
        )
    );
    assert!(took < quick, "{took:?}");
    // Nothing was written to the bucket by any of them.
    assert!(s3.keys("kiln").is_empty(), "{:?}", s3.keys("kiln"));
}
