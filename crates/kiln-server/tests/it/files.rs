//! Artifacts and caches: the PreStart/PostStop wrapper around jobs.

use futures::StreamExt;

use crate::support::{Backend, TestServer, job, log_text};

const ARTIFACTS: &str = r#"
name: art
stages:
  - name: build
    jobs:
      build:
        script:
          - mkdir -p out/sub && echo "binary v1" > out/app && echo nested > out/sub/n.txt
          - echo "not kept" > scratch.txt
        artifacts: { paths: [out/] }
  - name: test
    jobs:
      test:
        needs: [build]
        script:
          - test ! -f scratch.txt
          - echo "JOB_OUT app=$(cat out/app)"
          - echo "JOB_OUT nested=$(cat out/sub/n.txt)"
"#;

#[tokio::test]
async fn artifacts_are_stored_listed_downloaded_and_placed_into_needing_jobs() {
    artifacts_are_stored_listed_downloaded_and_placed_into_needing_jobs_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn artifacts_are_stored_listed_downloaded_and_placed_into_needing_jobs_on(
    backend: Backend,
) {
    let s = TestServer::start_on(backend).await;
    s.apply("api", "art", ARTIFACTS).await;
    let run = s.trigger("api", "art", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let test = job(&d, "test");
    assert_eq!(test.outputs.get("app").map(String::as_str), Some("binary v1"));
    assert_eq!(test.outputs.get("nested").map(String::as_str), Some("nested"));
    let list = s.admin.artifacts(&run.id).await.unwrap();
    assert_eq!(list.len(), 1);
    let a = &list[0];
    assert_eq!(a.job, "build");
    let files: Vec<&str> = a.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(files, ["out/app", "out/sub/n.txt"]);
    assert!(a.digest.starts_with("sha256:"));
    let bytes: Vec<u8> = s
        .admin
        .download_artifact(&run.id, "build")
        .await
        .unwrap()
        .map(|c| c.unwrap().to_vec())
        .concat()
        .await;
    assert_eq!(bytes.len() as u64, a.size);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut found = String::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("out/app") {
            std::io::Read::read_to_string(&mut e, &mut found).unwrap();
        }
    }
    assert_eq!(found, "binary v1\n");
    let lines = log_text(&s, &run.id, Some("build")).await;
    assert!(lines.iter().any(|l| l.starts_with("kiln: stored artifacts: 2 file(s)")), "{lines:?}");
    let lines = log_text(&s, &run.id, Some("test")).await;
    assert!(
        lines.iter().any(|l| l == "kiln: placed 2 file(s) from the artifacts of `build`"),
        "{lines:?}"
    );
    assert_eq!(
        s.admin.download_artifact(&run.id, "test").await.err().unwrap().code(),
        Some("not_found")
    );
    s.stop().await;
}

#[tokio::test]
async fn a_failing_job_passes_its_exit_code_through_the_wrapper() {
    let s = TestServer::start().await;
    s.apply(
        "api",
        "fail",
        "name: fail\nstages:\n  - name: s\n    jobs:\n      j:\n        script: [\"mkdir -p out && echo x > out/x\", \"exit 7\"]\n        artifacts: { paths: [out/], when: always }\n",
    )
    .await;
    let run = s.trigger("api", "fail", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure");
    assert_eq!(job(&d, "j").exit_code, Some(7));
    assert_eq!(s.admin.artifacts(&run.id).await.unwrap().len(), 1, "when: always keeps them");
    s.stop().await;
}

const CACHED: &str = r#"
name: cached
params:
  v: { type: string, default: "1" }
stages:
  - name: s
    jobs:
      deps:
        script:
          - echo "lock ${{ params.v }}" > deps.lock
          - 'if [ -f .cache/deps.txt ]; then echo "JOB_OUT hit=$(cat .cache/deps.txt)"; else echo JOB_OUT hit=none; fi'
          - mkdir -p .cache && echo "fetched-$KILN_RUN_NUMBER" > .cache/deps.txt
        cache: { key: "deps-${{ params.v }}", paths: [.cache/] }
"#;

#[tokio::test]
async fn caches_are_restored_before_and_saved_after_the_job() {
    caches_are_restored_before_and_saved_after_the_job_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn caches_are_restored_before_and_saved_after_the_job_on(backend: Backend) {
    let s = TestServer::start_on(backend).await;
    s.apply("api", "cached", CACHED).await;
    let first = s.trigger("api", "cached", &[]).await;
    let d = s.wait_final(&first.id).await;
    assert_eq!(job(&d, "deps").outputs["hit"], "none");
    let lines = log_text(&s, &first.id, Some("deps")).await;
    assert!(lines.iter().any(|l| l.contains("cache `deps-1` not found")), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("kiln: saved cache `deps-1`")), "{lines:?}");
    let second = s.trigger("api", "cached", &[]).await;
    let d = s.wait_final(&second.id).await;
    assert_eq!(job(&d, "deps").outputs["hit"], "fetched-1", "run 2 saw run 1's cache");
    // Another key is another cache.
    let third = s.trigger("api", "cached", &[("v", "2")]).await;
    let d = s.wait_final(&third.id).await;
    assert_eq!(job(&d, "deps").outputs["hit"], "none");
    s.stop().await;
}
