//! The garbage collector of caches and artifacts: least recently used caches evicted over a
//! small budget (records and files), orphan files past the grace deleted, artifacts past
//! their age expired with a clear 404 and a clear failure of a job that needs them, and
//! `POST /api/v1/gc` for admins only.

use std::time::{Duration, SystemTime};

use kiln_api::CreateToken;
use kiln_client::Client;
use kiln_server::GcConfig;

use crate::support::{Backend, TestServer, job, log_text};

/// Each run stores a cache of 4000 random bytes (incompressible) under `deps-<v>`.
const CACHED: &str = r#"
name: cached
params:
  v: { type: string, default: "1" }
stages:
  - name: s
    jobs:
      deps:
        script:
          - 'if [ -f .cache/deps.bin ]; then echo JOB_OUT hit=yes; else echo JOB_OUT hit=no; fi'
          - mkdir -p .cache && head -c 4000 /dev/urandom > .cache/deps.bin
        cache: { key: "deps-${{ params.v }}", paths: [.cache/] }
"#;

fn gc_config() -> GcConfig {
    GcConfig {
        // Two caches of ~4 KB fit, three do not.
        cache_max_size: 10_000,
        artifact_max_age: Duration::from_secs(1),
        every: Duration::from_secs(3600),
        ..GcConfig::default()
    }
}

async fn start() -> TestServer {
    TestServer::start_gc(Backend::Sqlite, 4, Duration::from_secs(30), gc_config()).await
}

async fn cache_run(s: &TestServer, v: &str) -> String {
    let run = s.trigger("api", "cached", &[("v", v)]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    job(&d, "deps").outputs["hit"].clone()
}

/// Writes a file in the blob directory last modified `age` ago.
fn orphan(s: &TestServer, rel: &str, age: Duration) -> std::path::PathBuf {
    let path = s.data.join("blobs").join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, [7u8; 100]).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
    path
}

#[tokio::test]
async fn caches_over_the_budget_go_least_recently_used_first_and_orphans_past_the_grace() {
    let s = start().await;
    let app = s.server.as_ref().unwrap().app.clone();
    s.apply("api", "cached", CACHED).await;
    assert_eq!(cache_run(&s, "1").await, "no");
    assert_eq!(cache_run(&s, "2").await, "no");
    assert_eq!(cache_run(&s, "3").await, "no");
    // deps-1 used again: deps-2 is now the least recently used.
    assert_eq!(cache_run(&s, "1").await, "yes");
    let before = app.store.all_caches().await.unwrap();
    assert_eq!(before.len(), 3);
    let blob = |key: &str| {
        let c = before.iter().find(|c| c.key == key).unwrap();
        s.data.join("blobs").join(&c.blob)
    };
    for key in ["deps-1", "deps-2", "deps-3"] {
        assert!(blob(key).is_file(), "{key}");
    }
    let old = orphan(&s, "artifacts/ghost/0-1.tar.gz", Duration::from_secs(2 * 3600));
    let young = orphan(&s, "caches/ghost/.upload-inflight", Duration::from_secs(60));

    let report = s.admin.gc().await.unwrap();
    assert_eq!(report.caches, ["api/deps-2"], "{report:#?}");
    assert!(report.artifacts.is_empty(), "{report:#?}");
    // The old orphan; deps-1's replaced file is an orphan too, but young.
    assert_eq!(report.orphans, 1, "{report:#?}");
    assert!(!old.exists() && young.is_file());
    assert!(!blob("deps-2").exists(), "the evicted cache's file is deleted");
    assert!(blob("deps-3").is_file());
    let after = app.store.all_caches().await.unwrap();
    let keys: Vec<&str> = after.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["deps-3", "deps-1"]);
    for c in &after {
        assert!(s.data.join("blobs").join(&c.blob).is_file(), "{c:?}");
    }
    let kept: u64 = after.iter().map(|c| c.size).sum();
    assert_eq!((report.cache_bytes, report.cache_budget), (kept, 10_000));
    let removed = before.iter().find(|c| c.key == "deps-2").unwrap().size;
    assert!(report.bytes_freed >= removed + 100, "{report:#?}");

    // Under the budget now: a second pass removes nothing.
    let again = s.admin.gc().await.unwrap();
    assert!(again.caches.is_empty() && again.orphans == 0, "{again:#?}");
    // The evicted key misses, the kept ones hit.
    assert_eq!(cache_run(&s, "3").await, "yes");
    assert_eq!(cache_run(&s, "2").await, "no");

    let text = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    assert!(text.contains("kiln_gc_removed_total{kind=\"cache\"} 1"), "{text}");
    assert!(text.contains("kiln_gc_removed_total{kind=\"orphan\"} 1"), "{text}");
    let (_, bytes) = app.store.cache_usage().await.unwrap();
    assert!(text.contains(&format!("kiln_cache_bytes {bytes}\n")), "{text}");
    s.stop().await;
}

const ARTIFACTS: &str = r#"
name: art
stages:
  - name: build
    jobs:
      build:
        script: ["mkdir -p out && echo v1 > out/app"]
        artifacts: { paths: [out/] }
  - name: test
    jobs:
      test:
        needs: [build]
        script: ["cat out/app", "test \"$KILN_RUN_NUMBER\" != 1"]
"#;

#[tokio::test]
async fn artifacts_past_their_age_expire_with_a_clear_404_and_fail_the_jobs_needing_them() {
    let s = start().await;
    s.apply("api", "art", ARTIFACTS).await;
    let run = s.trigger("api", "art", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!((job(&d, "build").state.as_str(), d.run.state.as_str()), ("success", "failure"));
    assert_eq!(s.admin.artifacts(&run.id).await.unwrap().len(), 1);
    let dir = s.data.join("blobs/artifacts").join(&run.id);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    // The run ended; past the age of 1 s its artifacts go.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = s.admin.gc().await.unwrap();
    assert_eq!(report.artifacts, [format!("{}/build", run.id)], "{report:#?}");
    assert!(report.bytes_freed > 0);
    assert!(!dir.exists() || std::fs::read_dir(&dir).unwrap().count() == 0);

    let e = s.admin.artifacts(&run.id).await.unwrap_err();
    assert_eq!(e.code(), Some("artifacts_expired"), "{e}");
    assert!(
        e.to_string().contains(&format!("the artifacts of run {} (jobs `build`) expired", run.id)),
        "{e}"
    );
    assert!(e.to_string().contains("removed 1s after the run ends"), "{e}");
    let e = s.admin.download_artifact(&run.id, "build").await.err().unwrap();
    assert_eq!(e.code(), Some("artifacts_expired"), "{e}");
    assert!(
        e.to_string().contains(&format!("the artifacts of job `build` of run {} expired", run.id)),
        "{e}"
    );
    // A job without artifacts is still plain not found.
    let e = s.admin.download_artifact(&run.id, "test").await.err().unwrap();
    assert_eq!(e.code(), Some("not_found"), "{e}");

    // A retry reuses `build`, whose artifacts are gone: `test` needs them and fails saying so.
    let retry = s.admin.retry(&run.id).await.unwrap();
    let d = s.wait_final(&retry.id).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let lines = log_text(&s, &retry.id, Some("test")).await;
    let why = format!("the artifacts of job `build` of run {} expired", run.id);
    assert!(lines.iter().any(|l| l.contains(&why)), "{lines:?}");
    assert!(job(&d, "test").reason.as_deref().unwrap_or("").contains(&why), "{d:#?}");
    s.stop().await;
}

#[tokio::test]
async fn only_an_admin_may_collect() {
    let s = start().await;
    let viewer = s
        .admin
        .create_token(&CreateToken { name: "carol".into(), role: "viewer".into(), project: None })
        .await
        .unwrap();
    let carol = Client::new(&s.url, &viewer.secret).unwrap();
    let e = carol.gc().await.unwrap_err();
    assert_eq!(e.code(), Some("forbidden"), "{e}");
    let r = s.admin.gc().await.unwrap();
    assert!(r.caches.is_empty() && r.artifacts.is_empty() && r.orphans == 0, "{r:#?}");
    s.stop().await;
}
