//! Faults of the storage under the server, on a small tmpfs mounted as its data directory
//! (the tests run as root): a full disk is answered 507 with its cause, never wedges the
//! store, and the server recovers by itself once space returns; a job whose log line could
//! not be stored fails with that cause and leaves a marker in its log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_api::TriggerRequest;
use kiln_client::ClientError;

use crate::support::{Backend, TestServer, job, log_text};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs on {} (the tests run as root)", at.display());
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with a file `filler` until no byte fits; deleting the
/// file gives the space back.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "the disk is full: {e}");
                break;
            }
        }
    }
    // The last partial block, byte by byte.
    while file.write(&[0]).is_ok_and(|n| n == 1) {}
    let _ = file.sync_all();
    path
}

async fn start(mount: &mut Option<Mount>) -> TestServer {
    TestServer::start_prepared(
        Backend::Sqlite,
        4,
        Duration::from_secs(30),
        kiln_server::GcConfig::default(),
        |data| *mount = Some(Mount::tmpfs(data, "24m")),
    )
    .await
}

const QUICK: &str = r#"
name: quick
stages:
  - name: s
    jobs:
      hello:
        script: [echo hello]
"#;

#[tokio::test]
async fn a_full_disk_is_answered_507_and_the_server_recovers_when_space_returns() {
    let mut mount = None;
    let s = start(&mut mount).await;
    s.apply("api", "quick", QUICK).await;
    let before = s.trigger("api", "quick", &[]).await;
    assert_eq!(s.wait_final(&before.id).await.run.state, "success");

    let filler = fill(&s.data);
    // SQLite reuses the space its write-ahead log already has: trigger until it needs more.
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..2000 {
        match s.admin.trigger("api", "quick", &TriggerRequest::default()).await {
            Ok(run) => accepted.push(run.id),
            Err(e) => {
                refused.push(e);
                if refused.len() == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused.len(), 3, "the full disk was never noticed");
    for e in &refused {
        let ClientError::Api { status, error } = e else { panic!("no answer: {e}") };
        assert_eq!(*status, 507, "{e}");
        assert_eq!(error.code, "insufficient_storage", "{e}");
        assert!(error.message.contains("full"), "the cause is named: {e}");
        assert!(!error.message.contains("transaction depth"), "no wedge: {e}");
    }

    // Space returns: the server takes writes again by itself, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    let after = loop {
        match s.admin.trigger("api", "quick", &TriggerRequest::default()).await {
            Ok(run) => break run,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the server never recovered: {e}"
                );
                assert!(!e.to_string().contains("transaction depth"), "no wedge: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(s.wait_final(&after.id).await.run.state, "success");
    // Every run accepted while the disk was full ended; none stays `running`.
    for id in accepted {
        let d = s.wait_final(&id).await;
        if d.run.state != "success" {
            let reason = job(&d, "hello").reason.clone().unwrap_or_default();
            assert!(reason.contains("could not be stored"), "{d:#?}");
        }
    }
    s.stop().await;
}

/// Prints a line every 20 ms until the file named by `stop` exists.
const CHATTY: &str = r#"
name: chatty
params:
  stop: { type: string }
stages:
  - name: s
    jobs:
      talk:
        script:
          - 'i=0; while [ ! -f "${{ params.stop }}" ]; do i=$((i+1)); echo "line $i"; sleep 0.02; done'
"#;

#[tokio::test]
async fn a_log_line_that_cannot_be_stored_fails_the_job_with_that_cause_and_a_marker() {
    let mut mount = None;
    let s = start(&mut mount).await;
    s.apply("api", "chatty", CHATTY).await;
    // The job ends by itself at the latest when this file appears (after the test's checks).
    let stop = s.dir().join("stop");
    let run = s.trigger("api", "chatty", &[("stop", stop.to_str().unwrap())]).await;
    s.wait_for(&run.id, "a job printing", |d| job(d, "talk").state == "running").await;
    let started = Instant::now();
    while log_text(&s, &run.id, Some("talk")).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "the job never printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let filler = fill(&s.data);
    let marker = "could not be stored";
    let started = Instant::now();
    let lines = loop {
        let lines = log_text(&s, &run.id, Some("talk")).await;
        if lines.iter().any(|l| l.contains(marker)) {
            break lines;
        }
        if started.elapsed() > Duration::from_secs(30) {
            std::fs::write(&stop, "").unwrap();
            panic!(
                "no marker in the job's log: {:?}",
                lines.iter().rev().take(3).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = lines.last().unwrap();
    assert!(last.contains("No space left on device"), "the marker names the cause: {last}");

    // Space returns: the job's end is stored with its cause, and the run ends.
    std::fs::remove_file(&filler).unwrap();
    let d = s.wait_final(&run.id).await;
    std::fs::write(&stop, "").unwrap();
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let reason = job(&d, "talk").reason.clone().unwrap_or_default();
    assert!(reason.contains(marker) && reason.contains("No space left"), "{d:#?}");
    let all = log_text(&s, &run.id, None).await;
    assert!(all.iter().any(|l| l.contains(marker)), "the run's log has the marker too");
    s.stop().await;
}
