//! The runtime against the fake executor: one task driven to each kind of end (always
//! destroyed), and whole local runs steered through approvals, rejection and cancel.
//! Service instances with their health checks: on the process executor with real listeners
//! (`instance`), and in a Docker container (`docker`); their config files (`config`).

mod config;
mod docker;
mod instance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_engine::{JobState, Outcome, RunState};
use kiln_exec::conformance::script_task;
use kiln_exec::fake::FakeExecutor;
use kiln_runtime::{Control, LocalRun, Report, TaskEvent, TaskRequest, Update, drive_task};
use kiln_workflow::{Loader, Source};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

async fn drive(
    fake: &FakeExecutor,
    lines: &[&str],
    timeout: Option<Duration>,
    cancel: CancellationToken,
) -> (Outcome, Vec<TaskEvent>) {
    let mut spec = script_task("t", lines);
    spec.image = Some("busybox".into());
    let mut events = Vec::new();
    let request = TaskRequest { spec, timeout, export: None };
    let result = drive_task(fake, request, cancel, |e| events.push(e)).await;
    assert_eq!(result.export, None);
    (result.outcome, events)
}

#[tokio::test]
async fn outputs_are_read_and_the_task_is_destroyed() {
    let fake = FakeExecutor::new();
    let (outcome, events) = drive(
        &fake,
        &["echo hello", "echo JOB_OUT version=1.2", "exit 4"],
        None,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome, Outcome::Exited(4));
    assert_eq!(events[0], TaskEvent::Started);
    assert!(events.contains(&TaskEvent::Output { key: "version".into(), value: "1.2".into() }));
    let logs: Vec<_> = events
        .iter()
        .filter_map(|e| if let TaskEvent::Log(l) = e { Some(l.text.as_str()) } else { None })
        .collect();
    assert_eq!(logs, ["hello", "JOB_OUT version=1.2"]);
    assert!(fake.existing().is_empty(), "not destroyed: {:?}", fake.existing());
}

#[tokio::test]
async fn timeout_kills_and_destroys() {
    let fake = FakeExecutor::new();
    let t = Instant::now();
    let (outcome, _) =
        drive(&fake, &["sleep 30"], Some(Duration::from_millis(200)), CancellationToken::new())
            .await;
    assert_eq!(outcome, Outcome::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(fake.calls().killed.len(), 1);
    assert!(fake.existing().is_empty());
}

#[tokio::test]
async fn cancel_kills_and_destroys() {
    let fake = FakeExecutor::new();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.cancel();
    });
    let (outcome, _) = drive(&fake, &["echo before", "sleep 30"], None, cancel).await;
    assert_eq!(outcome, Outcome::Canceled);
    assert!(fake.existing().is_empty());
}

#[tokio::test]
async fn a_failed_setup_is_an_error_outcome_and_still_destroyed() {
    let fake = FakeExecutor::new().with_missing_image("busybox");
    let (outcome, events) = drive(&fake, &["echo never"], None, CancellationToken::new()).await;
    match outcome {
        Outcome::Error(msg) => assert!(msg.contains("busybox"), "{msg}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(fake.calls().destroyed.len(), 1);
    assert!(fake.existing().is_empty());
}

struct Text(&'static str);

impl Loader for Text {
    fn load(&self, _from: &str, path: &str) -> Result<Source, String> {
        Ok(Source { name: path.to_string(), text: self.0.to_string() })
    }
}

const PIPELINE: &str = r#"
name: p
stages:
  - name: build
    jobs:
      build:
        image: busybox
        script: ["echo JOB_OUT version=7"]
  - name: gate
    type: approval
  - name: deploy
    jobs:
      deploy:
        image: busybox
        script: ["echo deploying ${{ jobs.build.outputs.version }} $version", "sleep ${{ params.nap }}"]
params:
  nap: { type: number, default: 0 }
"#;

/// Runs PIPELINE on the fake; `answer` decides what to send at the pause.
async fn local(
    nap: &str,
    answer: Option<Control>,
    cancel_after: Option<Duration>,
) -> (Report, Vec<Update>, Arc<FakeExecutor>) {
    let compiled = kiln_workflow::compile("p.yml", &Text(PIPELINE));
    let plan = Arc::new(compiled.plan.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics)));
    let params = kiln_workflow::bind_params(&plan, &[("nap".into(), nap.into())]).unwrap();
    let fake = Arc::new(FakeExecutor::new());
    let shared = fake.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (control, control_rx) = mpsc::unbounded_channel();
    let run = LocalRun {
        run_id: "r1".into(),
        plan,
        params,
        executor: shared,
        setup: kiln_runtime::LocalSetup::default(),
    };
    let handle = tokio::spawn(run.run(tx, control_rx));
    let mut seen = Vec::new();
    let mut cancel_at = cancel_after.map(|d| Instant::now() + d);
    loop {
        let wait = cancel_at
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            u = rx.recv() => match u {
                Some(u) => {
                    if let (Update::Paused { .. }, Some(a)) = (&u, &answer) {
                        control.send(a.clone()).unwrap();
                    }
                    seen.push(u);
                }
                None => break,
            },
            () = tokio::time::sleep(wait) => {
                control.send(Control::Cancel { by: "test".into() }).unwrap();
                cancel_at = None;
            }
        }
    }
    (handle.await.unwrap(), seen, fake)
}

fn log_texts(updates: &[Update]) -> Vec<String> {
    updates
        .iter()
        .filter_map(
            |u| if let Update::Log { line, .. } = u { Some(line.text.clone()) } else { None },
        )
        .collect()
}

#[tokio::test]
async fn approved_run_passes_outputs_downstream() {
    let approve = Control::Approve { stage: "gate".into(), by: "ann".into() };
    let (report, updates, fake) = local("0", Some(approve), None).await;
    assert_eq!(report.state, RunState::Success);
    assert!(
        log_texts(&updates).contains(&"deploying 7 7".to_string()),
        "{:?}",
        log_texts(&updates)
    );
    assert!(updates.iter().any(|u| matches!(u, Update::Paused { stage, .. } if stage == "gate")));
    assert!(matches!(updates.last(), Some(Update::Finished(RunState::Success))));
    let build = report.jobs.iter().find(|j| j.id.as_str() == "build").unwrap();
    assert_eq!(build.outputs.get("version").map(String::as_str), Some("7"));
    assert!(build.duration.is_some());
    assert!(fake.existing().is_empty());
}

#[tokio::test]
async fn rejected_run_is_canceled_and_deploy_never_starts() {
    let reject = Control::Reject { stage: "gate".into(), by: "bob".into() };
    let (report, updates, fake) = local("0", Some(reject), None).await;
    assert_eq!(report.state, RunState::Canceled);
    let deploy = report.jobs.iter().find(|j| j.id.as_str() == "deploy").unwrap();
    assert_eq!(deploy.state, JobState::Canceled);
    assert_eq!(deploy.attempts, 0);
    assert!(!log_texts(&updates).iter().any(|l| l.starts_with("deploying")));
    assert_eq!(fake.calls().started.len(), 1);
}

#[tokio::test]
async fn cancel_kills_the_running_job_and_cleans_up() {
    let approve = Control::Approve { stage: "gate".into(), by: "ann".into() };
    let t = Instant::now();
    let (report, _, fake) = local("30", Some(approve), Some(Duration::from_millis(300))).await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(report.state, RunState::Canceled);
    let deploy = report.jobs.iter().find(|j| j.id.as_str() == "deploy").unwrap();
    assert_eq!(deploy.state, JobState::Canceled);
    assert_eq!(fake.calls().killed.len(), 1);
    assert!(fake.existing().is_empty(), "{:?}", fake.existing());
}

#[tokio::test]
async fn the_workspace_is_exported_after_any_exit_and_before_destroy() {
    use kiln_exec::conformance::{TarEntry, tar_entries};
    let fake = FakeExecutor::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("ws.tar");
    let mut spec = script_task("export", &["mkdir -p dist", "echo built > dist/app.txt", "exit 2"]);
    spec.image = Some("busybox".into());
    let request = TaskRequest { spec, timeout: None, export: Some(dest.clone()) };
    let result = drive_task(&fake, request, CancellationToken::new(), |_| {}).await;
    assert_eq!(result.outcome, Outcome::Exited(2));
    assert_eq!(result.export, Some(Ok(())));
    assert_eq!(
        tar_entries(&dest).into_iter().collect::<Vec<_>>(),
        [
            ("dist".to_string(), TarEntry::Dir),
            ("dist/app.txt".to_string(), TarEntry::File(b"built\n".to_vec())),
        ]
    );
    assert_eq!(fake.calls().exported.len(), 1);
    assert!(fake.existing().is_empty());
}

#[tokio::test]
async fn a_failed_export_keeps_the_outcome_and_still_destroys() {
    let fake = FakeExecutor::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("missing-dir/ws.tar");
    let mut spec = script_task("badexport", &["echo x"]);
    spec.image = Some("busybox".into());
    let request = TaskRequest { spec, timeout: None, export: Some(dest) };
    let result = drive_task(&fake, request, CancellationToken::new(), |_| {}).await;
    assert_eq!(result.outcome, Outcome::Exited(0));
    match result.export {
        Some(Err(e)) => assert!(e.contains("missing-dir"), "{e}"),
        other => panic!("expected a failed export, got {other:?}"),
    }
    assert!(fake.existing().is_empty());
}

#[tokio::test]
async fn no_export_without_an_exit() {
    let fake = FakeExecutor::new();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("ws.tar");
    let mut spec = script_task("timeoutexport", &["sleep 30"]);
    spec.image = Some("busybox".into());
    let timeout = Some(Duration::from_millis(100));
    let request = TaskRequest { spec, timeout, export: Some(dest.clone()) };
    let result = drive_task(&fake, request, CancellationToken::new(), |_| {}).await;
    assert_eq!(result.outcome, Outcome::TimedOut);
    assert_eq!(result.export, None);
    assert!(fake.calls().exported.is_empty());
    assert!(!dest.exists());
}

fn plan_of(yaml: &'static str) -> Arc<kiln_workflow::plan::Plan> {
    let compiled = kiln_workflow::compile("p.yml", &Text(yaml));
    Arc::new(compiled.plan.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics)))
}

#[test]
fn what_one_machine_cannot_do_is_listed_once_per_key() {
    let plan = plan_of(
        r#"
name: pool
concurrency: 1
stages:
  - name: s
    jobs:
      pinned:
        script: docker push "$KILN_REGISTRY/app"
        constraints: [[city, LIKE, shenzhen]]
      served:
        script: echo
        ports: [{ name: http, container: 80 }]
        priority: 5
"#,
    );
    let limits = kiln_runtime::local::local_limits(&plan);
    assert_eq!(limits.len(), 5, "{limits:#?}");
    for (want, jobs) in [
        ("`concurrency:`", ""),
        ("`constraints:`", "(jobs pinned)"),
        ("`ports:`", "(jobs served)"),
        ("`priority:`", "(jobs served)"),
        ("KILN_REGISTRY", "(jobs pinned)"),
    ] {
        let line = limits.iter().find(|l| l.contains(want)).unwrap_or_else(|| panic!("{want}"));
        assert!(line.contains(jobs), "{line}");
    }
    let plain = plan_of("name: plain\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n");
    assert!(kiln_runtime::local::local_limits(&plain).is_empty());
}

/// A local run on host processes: artifacts reach the job that needs them, a cache saved by
/// one run is restored in the next, the `KILN_*` variables of the setup are set.
#[tokio::test]
async fn local_runs_pass_artifacts_and_keep_caches() {
    let plan = plan_of(
        r#"
name: files
stages:
  - name: a
    jobs:
      make:
        script:
          - mkdir -p out .cache
          - echo made > out/thing.txt
          - if [ -f .cache/c.txt ]; then echo "JOB_OUT cache=hit"; else echo "JOB_OUT cache=miss"; fi
          - echo warm > .cache/c.txt
        cache: { key: k, paths: [.cache] }
        artifacts: { paths: [out] }
  - name: b
    jobs:
      use:
        script:
          - echo "JOB_OUT thing=$(cat out/thing.txt) run=$KILN_RUN_ID job=$KILN_JOB"
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let exec: Arc<dyn kiln_exec::Executor> = Arc::new(kiln_exec_process::ProcessExecutor::new(
        kiln_exec_process::ProcessConfig::default(),
    ));
    let once = |run_id: &str| {
        let setup = kiln_runtime::LocalSetup {
            env: [("KILN_RUN_ID".to_string(), run_id.to_string())].into(),
            checkout: None,
            run_dir: Some(dir.path().join(run_id)),
            cache_dir: Some(dir.path().join("cache")),
            ..Default::default()
        };
        let run = LocalRun {
            run_id: run_id.into(),
            plan: plan.clone(),
            params: Default::default(),
            executor: exec.clone(),
            setup,
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        let (_control, control_rx) = mpsc::unbounded_channel();
        run.run(tx, control_rx)
    };
    let first = once("r1").await;
    assert_eq!(first.state, RunState::Success, "{first:#?}");
    assert_eq!(first.jobs[0].outputs["cache"], "miss");
    assert_eq!(first.jobs[1].outputs["thing"], "made run=r1 job=use");
    let kept = dir.path().join("r1/artifacts");
    assert_eq!(first.artifacts.as_deref(), Some(kept.as_path()));
    assert_eq!(std::fs::read_to_string(kept.join("make/out/thing.txt")).unwrap(), "made\n");
    assert!(!dir.path().join("r1/work").exists(), "scratch space is removed");
    let second = once("r2").await;
    assert_eq!(second.jobs[0].outputs["cache"], "hit", "{second:#?}");
}

/// `kiln run --replay --shell`'s script stops at the failing step, says where its control
/// files are, keeps the step's env and directory there, and ends with the step's code once
/// `done` is created; a script that succeeds is not changed in what it does.
#[test]
fn a_pausing_script_waits_at_the_failing_step_then_exits_with_its_code() {
    use std::io::{BufRead, BufReader};
    let lines: Vec<String> = [
        "export GREETING=hi",
        "mkdir -p sub && cd sub",
        "echo 'it''s' \"$GREETING\"; exit 3",
        "echo never",
    ]
    .map(String::from)
    .into();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-e", "-c", &kiln_runtime::local::pausing_script(&lines)])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let ctl = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no pause announced:\n{seen}");
        seen.push_str(&line);
        if let Some(ctl) = line.trim_end().strip_prefix(kiln_runtime::local::PAUSED) {
            break std::path::PathBuf::from(ctl);
        }
    };
    assert!(seen.contains("step 3 failed with exit code 3"), "{seen}");
    assert!(seen.contains("kiln: replay: > echo 'it''s' \"$GREETING\"; exit 3"), "{seen}");
    let read = |f: &str| std::fs::read_to_string(ctl.join(f)).unwrap();
    assert!(read("env").contains("GREETING"), "{}", read("env"));
    assert_eq!(
        read("pwd").trim(),
        dir.path().join("sub").canonicalize().unwrap().display().to_string()
    );
    assert_eq!(read("rc").trim(), "3");
    assert_eq!(read("command"), "echo 'it''s' \"$GREETING\"; exit 3\n");
    assert!(child.try_wait().unwrap().is_none(), "the script must wait");
    std::fs::write(ctl.join("done"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "its hi\n");
    assert!(!ctl.exists(), "the control directory is removed");

    let ok = kiln_runtime::local::pausing_script(&["echo fine".to_string()]);
    let out = std::process::Command::new("/bin/sh").args(["-e", "-c", &ok]).output().unwrap();
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), "fine\n".into())
    );
}
