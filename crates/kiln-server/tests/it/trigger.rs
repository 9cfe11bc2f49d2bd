//! Pipelines that start pipelines (`trigger:`), groups of runs, and the other jobs the server
//! carries out itself: a downstream run gets params from an upstream job's output and gives
//! back its jobs' outputs; its failure fails the trigger job; `wait: false`; the author's rights
//! across projects; groups over two projects (a trigger list, and `POST /api/v1/run-groups`);
//! cancel going downstream; a restart while a trigger job waits; no pipeline starting itself;
//! `environment:` jobs with the environment's variables and masked secrets (`deploy:` jobs are
//! in `deploys.rs`).

use std::path::Path;

use kiln_api::environments::{CreateEnvironment, SetVariable};
use kiln_api::{CreateToken, RunDetail, StartGroup};
use kiln_client::Client;

use crate::support::{Backend, TestServer, job, log_text, on_loopback};

/// A pipeline whose job prints what it publishes, outputs it, then waits for `marker` to
/// exist when given (`-` for no wait); `fail` makes it exit 3.
const CHILD: &str = r#"
name: child
params:
  VERSION: { type: string, default: "0.0.0" }
  marker: { type: string, default: "-" }
  fail: { type: bool, default: false }
stages:
  - name: publish
    jobs:
      publish-docs:
        script:
          - echo "publishing $VERSION"
          - echo "JOB_OUT url=https://docs.example/$VERSION"
          - 'if [ "$marker" != "-" ]; then while [ ! -e "$marker" ]; do sleep 0.05; done; fi'
          - 'if [ "$fail" = true ]; then echo "docs broken" >&2; exit 3; fi'
"#;

/// A parent whose `build` outputs a version, `release` starts `child` of project `project`
/// with it (`extra` params and `wait` as given), and `after` reads what `release` gave.
fn parent(project: &str, extra: &str, wait: bool) -> String {
    format!(
        r#"
name: parent
stages:
  - name: build
    jobs:
      build:
        script: echo "JOB_OUT version=1.2.3"
  - name: release
    jobs:
      release:
        trigger:
          project: {project}
          pipeline: child
          wait: {wait}
          params: {{ VERSION: "${{{{ jobs.build.outputs.version }}}}"{extra} }}
  - name: after
    jobs:
      after:
        script: echo "docs at ${{{{ jobs.release.outputs.publish_docs_url }}}} from ${{{{ jobs.release.outputs.name }}}}"
"#
    )
}

fn marker_param(dir: &Path) -> String {
    format!(", marker: \"{}\"", dir.join("go").display())
}

/// The runs of pipeline `project/name`, oldest first.
async fn runs_of(s: &TestServer, project: &str, name: &str) -> Vec<kiln_api::RunSummary> {
    let q = kiln_client::RunQuery {
        project: Some(project.into()),
        pipeline: Some(name.into()),
        state: None,
        limit: Some(100),
    };
    let mut runs = s.admin.runs(&q).await.unwrap();
    runs.reverse();
    runs
}

/// The one downstream run `d` shows.
fn only_downstream(d: &RunDetail) -> &kiln_api::RunSummary {
    assert_eq!(d.downstream.len(), 1, "{d:#?}");
    &d.downstream[0]
}

#[tokio::test]
async fn a_trigger_job_passes_an_output_as_a_param_waits_and_gets_the_downstream_outputs() {
    a_trigger_job_passes_an_output_as_a_param_waits_and_gets_the_downstream_outputs_on(
        Backend::Sqlite,
    )
    .await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn a_trigger_job_passes_an_output_as_a_param_waits_and_gets_the_downstream_outputs_on(
    backend: Backend,
) {
    let s = TestServer::start_on(backend).await;
    s.apply("shop", "child", CHILD).await;
    s.apply("shop", "parent", &parent("shop", "", true)).await;
    let run = s.trigger("shop", "parent", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");

    let release = job(&d, "release");
    let child = only_downstream(&d);
    assert_eq!(child.full_name(), "shop/child#1");
    assert_eq!(child.state, "success");
    let outputs: Vec<(&str, &str)> =
        release.outputs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        outputs,
        [
            ("name", "shop/child#1"),
            ("number", "1"),
            ("publish_docs_url", "https://docs.example/1.2.3"),
            ("run", child.id.as_str()),
            ("state", "success"),
        ]
    );
    let parent_link = child.parent.clone().expect("the child names its parent");
    assert_eq!(
        (parent_link.run.as_str(), parent_link.name.as_str(), parent_link.job.as_str()),
        (run.id.as_str(), "shop/parent#1", "release")
    );
    assert_eq!(child.triggered_by, "job release of run shop/parent#1");
    let shown = s.admin.run(&child.id).await.unwrap();
    assert_eq!(shown.run.params["VERSION"], "1.2.3", "the output became the param");
    let child_log = log_text(&s, &child.id, Some("publish-docs")).await;
    assert!(child_log.contains(&"publishing 1.2.3".to_string()), "{child_log:?}");

    let after = log_text(&s, &run.id, Some("after")).await;
    assert_eq!(after, ["docs at https://docs.example/1.2.3 from shop/child#1"]);
    let release_log = log_text(&s, &run.id, Some("release")).await;
    let started = format!("started shop/child#1 (id {}) with VERSION=1.2.3", child.id);
    assert!(release_log.contains(&started), "{release_log:?}");
    assert!(release_log.contains(&"shop/child#1 is success".to_string()), "{release_log:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_failed_downstream_run_fails_the_trigger_job_naming_the_run() {
    let s = TestServer::start().await;
    s.apply("shop", "child", CHILD).await;
    s.apply("shop", "parent", &parent("shop", ", fail: true", true)).await;
    let run = s.trigger("shop", "parent", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let release = job(&d, "release");
    assert_eq!(release.state, "failure");
    let reason = release.reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with(
            "run shop/child#1 ended failure: job `publish-docs` failed: exited with code 3"
        ),
        "{reason}"
    );
    assert_eq!(job(&d, "after").state, "skipped");
    assert_eq!(only_downstream(&d).state, "failure");
    // What it had still came back, the state included.
    assert_eq!(release.outputs.get("state").map(String::as_str), Some("failure"));
    assert!(d.run.reason.clone().unwrap_or_default().contains("run shop/child#1 ended failure"));
    s.stop().await;
}

#[tokio::test]
async fn a_trigger_job_with_wait_false_succeeds_once_the_run_is_created() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    s.apply("shop", "child", CHILD).await;
    s.apply("shop", "parent", &parent("shop", &marker_param(dir.path()), false)).await;
    let run = s.trigger("shop", "parent", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let release = job(&d, "release");
    assert_eq!(release.outputs.get("name").map(String::as_str), Some("shop/child#1"));
    assert!(!release.outputs.contains_key("publish_docs_url"), "{release:#?}");
    // The child is still going: it waits for the marker.
    let child = only_downstream(&d).id.clone();
    assert!(!crate::support::is_final(&s.admin.run(&child).await.unwrap().run.state));
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(s.wait_final(&child).await.run.state, "success");
    s.stop().await;
}

#[tokio::test]
async fn a_trigger_job_may_start_only_what_its_runs_author_may() {
    let s = TestServer::start().await;
    s.apply("other", "child", CHILD).await;
    s.apply("shop", "parent", &parent("other", "", true)).await;
    s.apply("shop", "child", CHILD).await;
    let dana = s
        .admin
        .create_token(&CreateToken {
            name: "dana".into(),
            role: "developer".into(),
            project: Some("shop".into()),
        })
        .await
        .unwrap();
    let dana = Client::new(&s.url, &dana.secret).unwrap();
    let run = dana.trigger("shop", "parent", &kiln_api::TriggerRequest::default()).await.unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let reason = job(&d, "release").reason.clone().unwrap_or_default();
    assert_eq!(
        reason,
        "run shop/parent#1 may not start other/child as its author: project `other` does not \
         exist",
        "a project the author may not see is answered as a missing one"
    );
    assert!(d.downstream.is_empty());
    assert!(runs_of(&s, "other", "child").await.is_empty(), "nothing was started");
    let log = log_text(&s, &run.id, Some("release")).await;
    assert_eq!(log, [format!("error: {reason}")]);

    // Its own project's pipelines it may start.
    s.apply("shop", "parent", &parent("shop", "", true)).await;
    let run = dana.trigger("shop", "parent", &kiln_api::TriggerRequest::default()).await.unwrap();
    assert_eq!(s.wait_final(&run.id).await.run.state, "success");
    s.stop().await;
}

const GROUP_PARENT: &str = r#"
name: merge
params:
  marker: { type: string }
stages:
  - name: rebuild
    jobs:
      rebuild:
        trigger:
          - { project: proj-a, pipeline: ci, params: { VERSION: "2.0" } }
          - { project: proj-b, pipeline: ci, params: { marker: "${{ params.marker }}" } }
"#;

#[tokio::test]
async fn a_group_of_two_pipelines_in_two_projects_is_shown_together_and_waited_for() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ci = CHILD.replace("name: child", "name: ci");
    s.apply("proj-a", "ci", &ci).await;
    s.apply("proj-b", "ci", &ci).await;
    s.apply("shop", "merge", GROUP_PARENT).await;
    let marker = dir.path().join("go").display().to_string();
    let run = s.trigger("shop", "merge", &[("marker", &marker)]).await;
    let d = s.wait_for(&run.id, "both runs started", |d| d.downstream.len() == 2).await;
    let group = d.downstream[0].group.clone().expect("a group");
    assert_eq!(d.downstream[1].group.as_ref(), Some(&group), "one group id");
    // proj-a's run ends; the job still waits for proj-b's.
    let a = d.downstream.iter().find(|r| r.project == "proj-a").unwrap().id.clone();
    assert_eq!(s.wait_final(&a).await.run.state, "success");
    let shown = s.admin.group(&group).await.unwrap();
    let runs: Vec<(String, &str)> =
        shown.runs.iter().map(|r| (r.full_name(), r.state.as_str())).collect();
    assert_eq!(runs[0], ("proj-a/ci#1".to_string(), "success"));
    assert_eq!(runs[1].0, "proj-b/ci#1");
    assert_eq!(shown.state, "running");
    assert_eq!(shown.created_by, "run shop/merge#1 job rebuild");
    assert_eq!(job(&s.admin.run(&run.id).await.unwrap(), "rebuild").state, "running");

    std::fs::write(dir.path().join("go"), "").unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let out = &job(&d, "rebuild").outputs;
    assert_eq!(out.get("group"), Some(&group));
    assert_eq!(out.get("runs").map(String::as_str), Some("proj-a/ci#1 proj-b/ci#1"));
    assert_eq!(out.get("state").map(String::as_str), Some("success"));
    assert_eq!(
        out.get("run1_publish_docs_url").map(String::as_str),
        Some("https://docs.example/2.0")
    );
    assert_eq!(out.get("run2_state").map(String::as_str), Some("success"));
    assert_eq!(s.admin.group(&group).await.unwrap().state, "success");

    // The same, started directly: `kiln group start proj-a/ci proj-b/ci -p VERSION=3.1`.
    let started = s
        .admin
        .start_group(&StartGroup {
            pipelines: vec!["proj-a/ci".into(), "proj-b/ci".into()],
            params: [("VERSION".to_string(), "3.1".to_string())].into(),
        })
        .await
        .unwrap();
    let names: Vec<String> = started.runs.iter().map(|r| r.full_name()).collect();
    assert_eq!(names, ["proj-a/ci#2", "proj-b/ci#2"]);
    assert!(started.runs.iter().all(|r| r.group.as_deref() == Some(started.id.as_str())));
    for r in &started.runs {
        let done = s.wait_final(&r.id).await;
        assert_eq!(done.run.state, "success");
        assert_eq!(done.run.params["VERSION"], "3.1");
    }
    assert_eq!(s.admin.group(&started.id).await.unwrap().state, "success");
    let e = s
        .admin
        .start_group(&StartGroup {
            pipelines: vec!["proj-a/ci".into()],
            params: [("VERSOIN".to_string(), "1".to_string())].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("invalid_params"), "{e}");
    assert!(e.to_string().contains("param `VERSOIN` is declared by none of proj-a/ci"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn canceling_the_upstream_run_cancels_the_downstream_run() {
    let s = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    s.apply("shop", "child", CHILD).await;
    s.apply("shop", "parent", &parent("shop", &marker_param(dir.path()), true)).await;
    let run = s.trigger("shop", "parent", &[]).await;
    let d = s
        .wait_for(&run.id, "the child running", |d| {
            d.downstream.first().is_some_and(|c| c.state == "running")
        })
        .await;
    let child = d.downstream[0].id.clone();
    s.admin.cancel(&run.id).await.unwrap();
    let c = s.wait_final(&child).await;
    assert_eq!(c.run.state, "canceled", "{c:#?}");
    let why = c.run.reason.clone().unwrap_or_default();
    assert_eq!(why, "run canceled by upstream job release of run shop/parent#1 (was canceled)");
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "canceled");
    assert_eq!(job(&d, "release").state, "canceled");
    s.stop().await;
}

const GATED_CHILD: &str = r#"
name: child
stages:
  - name: build
    jobs:
      build: { script: "echo JOB_OUT built=yes" }
  - name: ship-it
    type: approval
  - name: ship
    jobs:
      ship: { script: "echo JOB_OUT shipped=yes" }
"#;

#[tokio::test]
async fn a_restart_while_a_trigger_job_waits_resumes_it_without_a_second_run() {
    a_restart_while_a_trigger_job_waits_resumes_it_without_a_second_run_on(Backend::Sqlite).await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL).
pub async fn a_restart_while_a_trigger_job_waits_resumes_it_without_a_second_run_on(
    backend: Backend,
) {
    let mut s = TestServer::start_on(backend).await;
    s.apply("shop", "child", GATED_CHILD).await;
    let parent_yaml = r#"
name: parent
stages:
  - name: release
    jobs:
      release:
        trigger: { pipeline: child }
"#;
    s.apply("shop", "parent", parent_yaml).await;
    let run = s.trigger("shop", "parent", &[]).await;
    let d = s
        .wait_for(&run.id, "the child paused", |d| {
            d.downstream.first().is_some_and(|c| c.state == "paused")
        })
        .await;
    let child = d.downstream[0].id.clone();
    s.restart().await;
    // The embedded agent knew the old address: one for the new server.
    let _agent = s.agent("after-restart", 4, on_loopback(&[], 47700));
    assert_eq!(s.server.as_ref().unwrap().resumed, 2, "the parent and the child resumed");
    s.admin.decide(&child, "ship-it", true).await.unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let children = runs_of(&s, "shop", "child").await;
    assert_eq!(children.len(), 1, "no second downstream run: {children:#?}");
    let release = job(&d, "release");
    assert_eq!(release.outputs.get("ship_shipped").map(String::as_str), Some("yes"));
    assert_eq!(release.outputs.get("build_built").map(String::as_str), Some("yes"));
    let log = log_text(&s, &run.id, Some("release")).await;
    let again =
        format!("waiting again for shop/child#1 (started before the server restarted, id {child})");
    assert!(log.contains(&again), "{log:?}");
    s.stop().await;
}

#[tokio::test]
async fn an_environment_job_gets_its_variables_and_a_masked_secret() {
    let s = TestServer::start().await;
    let a = &s.admin;
    a.create_project("shop").await.unwrap();
    let staging = CreateEnvironment { name: "staging".into(), after: None, protected: false };
    a.create_environment("shop", &staging).await.unwrap();
    let plain = SetVariable { value: "eu-west".into(), secret: false };
    a.set_env_variable("shop", "staging", "REGION", &plain).await.unwrap();
    let secret = SetVariable { value: "st4ging-pa55".into(), secret: true };
    a.set_env_variable("shop", "staging", "DB_PASSWORD", &secret).await.unwrap();
    let yaml = r#"
name: smoke
stages:
  - name: check
    jobs:
      smoke:
        environment: staging
        env: { REGION: from-the-file }
        script:
          - echo "region=$REGION env=$KILN_ENVIRONMENT password=$DB_PASSWORD"
          - echo "JOB_OUT password=$DB_PASSWORD"
      plain:
        script: echo "region=${REGION:-none} env=${KILN_ENVIRONMENT:-none}"
      nowhere:
        environment: qa
        script: echo never
"#;
    s.apply("shop", "smoke", yaml).await;
    let run = s.trigger("shop", "smoke", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(job(&d, "smoke").state, "success", "{d:#?}");
    let log = log_text(&s, &run.id, Some("smoke")).await;
    assert_eq!(log, ["region=eu-west env=staging password=***", "JOB_OUT password=***"]);
    assert_eq!(job(&d, "smoke").outputs.get("password").map(String::as_str), Some("***"));
    assert_eq!(log_text(&s, &run.id, Some("plain")).await, ["region=none env=none"]);
    let nowhere = job(&d, "nowhere");
    assert_eq!(nowhere.state, "failure");
    assert_eq!(
        nowhere.reason.as_deref(),
        Some(
            "environment `qa` does not exist in project `shop`: create it with kiln env create \
             qa --project shop"
        )
    );
    s.stop().await;
}

#[tokio::test]
async fn a_pipeline_may_not_start_itself_through_another() {
    let s = TestServer::start().await;
    let ping =
        "name: ping\nstages:\n  - name: s\n    jobs:\n      go: { trigger: { pipeline: pong } }\n";
    let pong =
        "name: pong\nstages:\n  - name: s\n    jobs:\n      go: { trigger: { pipeline: ping } }\n";
    s.apply("shop", "ping", ping).await;
    s.apply("shop", "pong", pong).await;
    let run = s.trigger("shop", "ping", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let pong_run = only_downstream(&d);
    let p = s.wait_final(&pong_run.id).await;
    assert_eq!(
        job(&p, "go").reason.as_deref(),
        Some(
            "cannot start shop/ping: its run shop/ping#1 is upstream of this job (shop/pong#1 <- \
             shop/ping#1); a pipeline may not start itself, directly or through other pipelines"
        )
    );
    assert_eq!(runs_of(&s, "shop", "ping").await.len(), 1, "no second ping");
    s.stop().await;
}
