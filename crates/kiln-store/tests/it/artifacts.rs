//! Artifact records: one per job of a run (its latest attempt's), copied to retries.

use kiln_store::{ArtifactFile, NewArtifact, NewRun, RunId, StoreError};
use kiln_workflow::plan::JobId;

use crate::{new_run, on_both, pipeline};

const SHA_A: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const SHA_B: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn artifact(run: RunId, job: &str, attempt: u32, blob: &str) -> NewArtifact {
    NewArtifact {
        run,
        job: JobId::from(job),
        attempt,
        blob: blob.to_string(),
        size: 2048,
        sha256: SHA_A.to_string(),
        files: vec![
            ArtifactFile { path: "dist/app".to_string(), size: 1500 },
            ArtifactFile { path: "dist/app.sha256".to_string(), size: 64 },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_record_replace_and_list() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        assert!(store.artifacts(&run.id).await.unwrap().is_empty());

        let first =
            store.record_artifact(&artifact(run.id, "test", 1, "ab/one.tar")).await.unwrap();
        assert_eq!((first.run, first.job.as_str(), first.attempt), (run.id, "test", 1));
        assert_eq!(
            (first.blob.as_str(), first.size, first.sha256.as_str()),
            ("ab/one.tar", 2048, SHA_A)
        );
        assert_eq!(first.files, artifact(run.id, "test", 1, "x").files);
        store.record_artifact(&artifact(run.id, "build", 1, "cd/build.tar")).await.unwrap();

        // A later attempt replaces the row; the same attempt again too (a re-upload).
        let mut second = artifact(run.id, "test", 2, "ef/two.tar");
        second.sha256 = SHA_B.to_string();
        second.size = u64::from(u32::MAX) + 1;
        second.files.clear();
        let replaced = store.record_artifact(&second).await.unwrap();
        assert_eq!((replaced.attempt, replaced.blob.as_str()), (2, "ef/two.tar"));
        assert_eq!((replaced.size, replaced.files.len()), (u64::from(u32::MAX) + 1, 0));
        let replaced = store.record_artifact(&second).await.unwrap();
        assert_eq!(replaced.attempt, 2);
        assert_eq!(store.artifact(&run.id, &JobId::from("test")).await.unwrap(), replaced);

        // An earlier attempt arriving late does not win.
        let err =
            store.record_artifact(&artifact(run.id, "test", 1, "gh/late.tar")).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(err.to_string().contains("later attempt"), "{err}");
        assert_eq!(store.artifact(&run.id, &JobId::from("test")).await.unwrap(), replaced);

        let all = store.artifacts(&run.id).await.unwrap();
        assert_eq!(all.iter().map(|a| a.job.as_str()).collect::<Vec<_>>(), ["build", "test"]);
        assert_eq!(all[1], replaced);

        let err = store.artifact(&run.id, &JobId::from("lint")).await.unwrap_err();
        assert_eq!(err.to_string(), format!("artifacts of job `lint` of run {} not found", run.id));
        let ghost = RunId::new();
        let err = store.artifacts(&ghost).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        let err = store.record_artifact(&artifact(ghost, "test", 1, "a.tar")).await.unwrap_err();
        assert_eq!(err.to_string(), format!("run {ghost} not found"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifact_input_is_checked() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&build)).await.unwrap();
        for blob in
            ["", "/etc/passwd", "../up.tar", "a/../../b", "a//b", "./a", "a/", "a\\b", "a\nb"]
        {
            let err = store.record_artifact(&artifact(run.id, "test", 1, blob)).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{blob:?}: {err}");
            assert!(err.to_string().contains("inside the blob directory"), "{err}");
        }
        for sha in
            ["", "abc", &SHA_A.to_uppercase(), &format!("{}0", SHA_A), &SHA_A.replace('a', "g")]
        {
            let mut bad = artifact(run.id, "test", 1, "a.tar");
            bad.sha256 = sha.to_string();
            let err = store.record_artifact(&bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{sha}: {err}");
        }
        let err = store.record_artifact(&artifact(run.id, "", 1, "a.tar")).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        let err = store.record_artifact(&artifact(run.id, "test", 0, "a.tar")).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        let mut huge = artifact(run.id, "test", 1, "a.tar");
        huge.size = u64::MAX;
        let err = store.record_artifact(&huge).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert!(store.artifacts(&run.id).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_are_copied_to_a_retry() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let first = store.create_run(&new_run(&build)).await.unwrap();
        let lib = store.record_artifact(&artifact(first.id, "lib", 1, "l/lib.tar")).await.unwrap();
        let app = store.record_artifact(&artifact(first.id, "app", 2, "a/app.tar")).await.unwrap();
        store.record_artifact(&artifact(first.id, "test", 1, "t/test.tar")).await.unwrap();

        let retry = store
            .create_run(&NewRun { retry_of: Some(first.id), ..new_run(&build) })
            .await
            .unwrap();
        // The retry already has its own `app`; `docs` had none in the first run.
        let own = store.record_artifact(&artifact(retry.id, "app", 1, "n/new.tar")).await.unwrap();
        let jobs = [JobId::from("lib"), JobId::from("app"), JobId::from("docs")];
        let copied = store.copy_artifacts(&first.id, &retry.id, &jobs).await.unwrap();
        assert_eq!(copied, 1);

        let got = store.artifacts(&retry.id).await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0], own);
        let copy = &got[1];
        assert_eq!((copy.run, copy.job.as_str()), (retry.id, "lib"));
        assert_eq!((&copy.blob, copy.attempt, copy.size), (&lib.blob, lib.attempt, lib.size));
        assert_eq!(
            (&copy.sha256, &copy.files, copy.created_at),
            (&lib.sha256, &lib.files, lib.created_at)
        );
        // The original run keeps its rows; copying again changes nothing.
        assert_eq!(store.artifact(&first.id, &JobId::from("app")).await.unwrap(), app);
        assert_eq!(store.artifacts(&first.id).await.unwrap().len(), 3);
        assert_eq!(store.copy_artifacts(&first.id, &retry.id, &jobs).await.unwrap(), 0);
        assert_eq!(store.copy_artifacts(&first.id, &retry.id, &[]).await.unwrap(), 0);

        let ghost = RunId::new();
        let err = store.copy_artifacts(&ghost, &retry.id, &jobs).await.unwrap_err();
        assert_eq!(err.to_string(), format!("run {ghost} not found"));
        let err = store.copy_artifacts(&first.id, &ghost, &jobs).await.unwrap_err();
        assert_eq!(err.to_string(), format!("run {ghost} not found"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn artifacts_of_ended_runs_expire_and_shared_blobs_stay() {
    on_both(|store| async move {
        let build = pipeline(&store, "api", "build").await;
        let old = store.create_run(&new_run(&build)).await.unwrap();
        store.record_artifact(&artifact(old.id, "lib", 1, "l/lib.tar")).await.unwrap();
        store.record_artifact(&artifact(old.id, "app", 1, "a/app.tar")).await.unwrap();
        // A retry reuses `lib`: its copy names the same blob.
        let retry =
            store.create_run(&NewRun { retry_of: Some(old.id), ..new_run(&build) }).await.unwrap();
        store.copy_artifacts(&old.id, &retry.id, &[JobId::from("lib")]).await.unwrap();
        // A run still going keeps its artifacts whatever its age.
        let going = store.create_run(&new_run(&build)).await.unwrap();
        store.record_artifact(&artifact(going.id, "lib", 1, "g/lib.tar")).await.unwrap();
        store.set_run_state(&old.id, kiln_engine::RunState::Running, None).await.unwrap();
        store.set_run_state(&old.id, kiln_engine::RunState::Success, None).await.unwrap();

        // Nothing ended before an hour ago.
        let past = chrono::Utc::now() - chrono::Duration::hours(1);
        assert_eq!(store.expire_artifacts(past).await.unwrap(), Default::default());

        let later = chrono::Utc::now() + chrono::Duration::days(1);
        let expired = store.expire_artifacts(later).await.unwrap();
        let jobs: Vec<_> = expired.records.iter().map(|r| (r.run, r.job.as_str())).collect();
        assert_eq!(jobs, [(old.id, "app"), (old.id, "lib")]);
        assert!(expired.records.iter().all(|r| r.expired_at.is_some()));
        assert_eq!(expired.unnamed_blobs, ["a/app.tar"], "the retry's copy still names lib");

        // The expired rows stay, marked; they name no live blob and are not copied.
        let app = store.artifact(&old.id, &JobId::from("app")).await.unwrap();
        assert!(app.expired_at.is_some());
        assert!(store.artifacts(&old.id).await.unwrap().iter().all(|r| r.expired_at.is_some()));
        let mut named = store.named_blobs().await.unwrap();
        named.sort();
        assert_eq!(named, ["g/lib.tar", "l/lib.tar"]);
        let again =
            store.create_run(&NewRun { retry_of: Some(old.id), ..new_run(&build) }).await.unwrap();
        let jobs = [JobId::from("lib"), JobId::from("app")];
        assert_eq!(store.copy_artifacts(&old.id, &again.id, &jobs).await.unwrap(), 0);
        // Expiring again finds nothing new.
        assert_eq!(store.expire_artifacts(later).await.unwrap(), Default::default());
    })
    .await;
}
