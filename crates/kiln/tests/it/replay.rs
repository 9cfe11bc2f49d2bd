//! `kiln run --replay RUN`: one job of a server's run run here with the inputs it had there.
//! A pipeline where `build` keeps an artifact and an output and `test` needs both and fails
//! depending on a param and a committed file; the replay reproduces the failure (same exit
//! code, same outputs, same artifact and commit seen by the job) although the branch moved on
//! since, `--job build` runs build again at the run's pushed commit, `--shell` opens a shell
//! where the step failed, and a run that does not exist is a clear error.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::parity::{HOOK_SECRET, ended, git, outputs, push, secret};
use crate::server::Server;
use crate::support::assert_code;

fn pipeline(repository: &str) -> String {
    format!(
        r#"name: replay
source: {repository}
on:
  push: {{ branches: [main] }}
params:
  strict: {{ type: bool, default: false }}
stages:
  - name: build
    jobs:
      build:
        script:
          - mkdir -p out
          - echo "built from $(cat mode.txt) at $KILN_COMMIT_SHA" > out/build.txt
          - echo "JOB_OUT version=1.2.$KILN_RUN_NUMBER"
          - echo "JOB_OUT commit=$KILN_COMMIT_SHA"
        artifacts: {{ paths: [out/] }}
  - name: test
    jobs:
      test:
        env: {{ VERSION: "${{{{ jobs.build.outputs.version }}}}" }}
        script:
          - echo "JOB_OUT seen_version=$VERSION"
          - echo "JOB_OUT seen_artifact=$(cat out/build.txt)"
          - echo "JOB_OUT commit=$KILN_COMMIT_SHA run=$KILN_RUN_NUMBER"
          - echo "JOB_OUT mode=$(cat mode.txt) strict=${{{{ params.strict }}}}"
          - echo marker-from-the-failing-step > marker
          - if [ "${{{{ params.strict }}}}" = true ] && grep -q broken mode.txt; then exit 3; fi
"#
    )
}

fn commit(dir: &Path, mode: &str, message: &str) -> String {
    std::fs::write(dir.join("mode.txt"), format!("{mode}\n")).unwrap();
    git(dir, &["add", "-A"]);
    git(
        dir,
        &["-c", "user.name=Ada", "-c", "user.email=ada@example.com", "commit", "-q", "-m", message],
    );
    git(dir, &["rev-parse", "HEAD"])
}

/// `kiln run --replay RUN EXTRA… --executor process -o json` against `s`.
fn replay(s: &Server, run_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = s.cmd(&["run", "--replay"]);
    cmd.args(args).args(["--executor", "process", "--no-cache", "--run-dir"]).arg(run_dir);
    cmd
}

fn job<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {run:#}"))
}

#[test]
fn a_failed_job_of_a_server_run_is_reproduced_here() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let first = commit(repo.path(), "broken", "Break it");
    let url = format!("file://{}", repo.path().display());
    let s = Server::start_on("process");
    s.pipeline("replay", &pipeline(&url));
    secret(&s, "WEBHOOK_SECRET", HOOK_SECRET);

    // #1: by hand, strict, while main has the broken file: `test` fails with 3.
    s.ok(&["trigger", "default/replay", "-p", "strict=true"], 0);
    let run1 = ended(&s, "default/replay#1");
    assert_eq!(run1["state"], "failure", "{run1:#}");
    assert_eq!(job(&run1, "test")["exit_code"], 3, "{run1:#}");
    // The branch moves on; #2 is a push of the first commit again (not strict: it passes).
    let fixed = commit(repo.path(), "fixed", "Fix it");
    assert_ne!(first, fixed);
    push(&s, &url, &first, "delivery-1");
    let run2 = ended(&s, "default/replay#2");
    assert_eq!(run2["state"], "success", "{run2:#}");

    // The first failed job of #1, here: same exit code, outputs, artifact, commit, params.
    let work = tempfile::tempdir().unwrap();
    let dir1 = work.path().join("r1");
    let out = replay(&s, &dir1, &["default/replay#1", "-o", "json"]).output().unwrap();
    let (stdout, stderr) = assert_code(&out, 1);
    let local: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert!(
        stderr.contains("replaying `test`, the first job that failed in default/replay#1"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("checking out {first}")), "{stderr}");
    assert_eq!(local["state"], "failure", "{local:#}\n{stderr}");
    assert_eq!(job(&local, "test")["exit_code"], 3, "{local:#}\n{stderr}");
    assert_eq!(job(&local, "build")["reason"], "reused from an earlier run", "{local:#}");
    assert_eq!(
        outputs(&local),
        outputs(&run1),
        "the server (right) and the replay (left) differ\n{stderr}"
    );
    assert_eq!(job(&local, "test")["outputs"]["mode"], "broken strict=true", "{local:#}");
    assert_eq!(job(&local, "test")["outputs"]["seen_version"], "1.2.1", "{local:#}");

    // --job build of the pushed #2: at the pushed commit, not the branch's head.
    let dir2 = work.path().join("r2");
    let out =
        replay(&s, &dir2, &["default/replay#2", "--job", "build", "-o", "json"]).output().unwrap();
    let (stdout, stderr) = assert_code(&out, 0);
    let local: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(
        job(&local, "build")["outputs"],
        job(&run2, "build")["outputs"],
        "{local:#}\n{run2:#}"
    );
    assert_eq!(job(&local, "build")["outputs"]["commit"], first.as_str(), "{local:#}");
    let kept = std::fs::read_to_string(dir2.join("artifacts/build/out/build.txt")).unwrap();
    assert_eq!(kept, format!("built from broken at {first}\n"));
    assert_eq!(job(&run2, "test")["outputs"]["seen_artifact"], kept.trim_end(), "{run2:#}");
}

#[test]
fn replay_shell_opens_where_the_step_failed_and_a_missing_run_is_an_error() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    commit(repo.path(), "broken", "Break it");
    let url = format!("file://{}", repo.path().display());
    let s = Server::start_on("process");
    s.pipeline("replay", &pipeline(&url));
    s.ok(&["trigger", "default/replay", "-p", "strict=true"], 0);
    assert_eq!(ended(&s, "default/replay#1")["state"], "failure");

    let work = tempfile::tempdir().unwrap();
    let mut child = replay(&s, &work.path().join("r"), &["default/replay#1", "--shell"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"cat marker; echo \"version $VERSION in $(basename \"$PWD\")\"; exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = assert_code(&out, 1);
    assert!(stdout.contains("marker-from-the-failing-step"), "{stdout}\n{stderr}");
    assert!(stdout.contains("version 1.2.1 in "), "{stdout}\n{stderr}");
    assert!(stdout.contains("step 6 failed with exit code 3"), "{stdout}\n{stderr}");
    assert!(stderr.contains("grep -q broken mode.txt; then exit 3; fi"), "{stderr}");
    assert!(stderr.contains("test failed: exited with code 3"), "{stderr}");

    let (_, stderr) = assert_code(&s.run(&["run", "--replay", "default/replay#9"]), 2);
    assert!(stderr.contains("run `default/replay#9` does not exist"), "{stderr}");
    let (_, stderr) =
        assert_code(&s.run(&["run", "--replay", "default/replay#1", "--job", "nope"]), 2);
    assert!(stderr.contains("has no job `nope` (jobs: build, test)"), "{stderr}");
}
