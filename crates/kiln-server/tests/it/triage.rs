//! Failure triage and approvals through the real server and its embedded agent (process
//! executor, real `sh` scripts): why a failed job failed (the script entry, its exit status,
//! the lines before it, the node) without opening its log, the runs list's failed job and
//! params, the runs waiting for approval with their effective params and waiting time, and a
//! decision's comment stored (secrets masked) and served.

use crate::support::{TestServer, job};

const FAILING: &str = r#"
name: checks
params:
  target: { type: string }
  region: { type: string, default: eu-west-1 }
stages:
  - name: build
    jobs:
      lint:
        script: ["echo lint ok"]
      test:
        script:
          - echo preparing
          - for i in $(seq 1 30); do echo "case $i ok"; done
          - echo "FAIL cart_total expected 3 got 2" >&2
          - sh -c 'exit 3'
          - echo never printed
      slow:
        timeout: 1s
        script:
          - echo starting
          - sleep 30
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_run_says_which_step_failed_where_with_the_lines_before_it() {
    let s = TestServer::start().await;
    s.apply("shop", "checks", FAILING).await;
    let run = s.trigger("shop", "checks", &[("target", "arm64")]).await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "failure", "{done:#?}");
    assert_eq!(job(&done, "test").exit_code, Some(3));

    let failures = s.admin.failures(&run.id, None).await.unwrap();
    let names: Vec<&str> = failures.iter().map(|f| f.job.as_str()).collect();
    assert_eq!(names, ["test", "slow"], "the failed and timed-out jobs, in plan order");

    // The script entry that failed, its status, where it ran, and the 20 lines before it.
    let test = &failures[0];
    assert_eq!(test.state, "failure");
    assert_eq!(test.step.as_deref(), Some("sh -c 'exit 3'"));
    assert_eq!((test.step_status, test.exit_code), (Some(3), Some(3)));
    assert_eq!(test.node.as_deref(), Some("embedded"), "the embedded agent's node");
    assert_eq!(test.attempt, 1);
    assert_eq!(test.lines.len(), 21, "{:#?}", test.lines);
    let last = test.lines.last().unwrap();
    assert_eq!(Some(last.seq), test.exit_line);
    assert_eq!(last.mark.as_ref().map(|m| (m.kind.as_str(), m.status)), Some(("exit", Some(3))));
    let before: Vec<&str> =
        test.lines.iter().rev().skip(1).take(3).map(|l| l.text.as_str()).collect();
    assert!(before[0].ends_with("sh -c 'exit 3'\u{1b}[0m"), "the echo just before: {before:?}");
    assert_eq!(before[1], "FAIL cart_total expected 3 got 2", "stderr in its place");
    assert!(before[2].ends_with("echo \"FAIL cart_total expected 3 got 2\" >&2\u{1b}[0m"));
    assert_eq!(test.lines[0].text, "case 14 ok");
    // The lines are the log's: the echo's line number points at the echo in the job's log.
    let page = s.admin.logs(&run.id, Some("test"), None, test.step_line.unwrap(), 1).await.unwrap();
    assert_eq!(page.lines[0].mark.as_ref().unwrap().kind, "command");
    assert_eq!(page.lines[0].mark.as_ref().unwrap().name.as_deref(), Some("sh -c 'exit 3'"));
    assert_eq!(test.log_lines, page.last, "the log's length");
    assert!(test.lines.iter().all(|l| !l.text.contains("never printed")));

    // Fewer lines on request.
    let short = s.admin.failures(&run.id, Some(4)).await.unwrap();
    assert_eq!(short[0].lines.len(), 5);
    assert_eq!(short[0].lines[0].text, "case 30 ok");

    // A job stopped by its timeout names the entry that ran, without an exit status line.
    let slow = &failures[1];
    assert_eq!(slow.state, "timeout");
    assert_eq!(slow.step.as_deref(), Some("sleep 30"));
    assert_eq!((slow.step_status, slow.exit_line), (None, None));
    assert_eq!(slow.node.as_deref(), Some("embedded"));
    let echo = slow.lines.iter().find(|l| Some(l.seq) == slow.step_line).unwrap();
    assert_eq!(echo.mark.as_ref().unwrap().name.as_deref(), Some("sleep 30"), "{:#?}", slow.lines);

    // The runs list names the first failed job, how many failed, and the params given.
    let list = s
        .admin
        .runs(&kiln_client::RunQuery {
            project: Some("shop".into()),
            pipeline: Some("checks".into()),
            state: None,
            limit: Some(10),
        })
        .await
        .unwrap();
    let listed = list.iter().find(|r| r.id == run.id).unwrap();
    assert!(matches!(listed.failed_job.as_deref(), Some("test" | "slow")), "{listed:#?}");
    assert_eq!(listed.failed_jobs, 2);
    assert_eq!(listed.params, serde_json::json!({ "target": "arm64" }));
    assert_eq!(done.run.params, serde_json::json!({ "target": "arm64" }), "the run page too");

    // A run without failures has none; an unknown run is a 404.
    s.apply(
        "shop",
        "fine",
        "name: fine\nstages:\n  - name: s\n    jobs:\n      a: { script: [\"true\"] }\n",
    )
    .await;
    let fine = s.trigger("shop", "fine", &[]).await;
    assert_eq!(s.wait_final(&fine.id).await.run.state, "success");
    assert!(s.admin.failures(&fine.id, None).await.unwrap().is_empty());
    let listed = s.admin.run(&fine.id).await.unwrap().run;
    assert_eq!((listed.failed_job, listed.failed_jobs), (None, 0));
    let e = s.admin.failures("shop/checks#99", None).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "{e}");
    s.stop().await;
}

const GATED: &str = r#"
name: release
params:
  target: { type: string }
  region: { type: string, default: eu-west-1 }
stages:
  - name: build
    jobs:
      compile: { script: ["echo built"] }
  - name: production
    type: approval
    description: Ship to production?
  - name: deploy
    jobs:
      ship: { script: ["echo shipped"] }
"#;

const SECRET: &str = "hunter2-deploy-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runs_waiting_for_approval_are_listed_and_a_decision_keeps_its_comment() {
    let s = TestServer::start().await;
    s.apply("shop", "release", GATED).await;
    s.admin.set_secret("shop", "DEPLOY_KEY", SECRET).await.unwrap();
    let first = s.trigger("shop", "release", &[("target", "arm64")]).await;
    s.wait_for(&first.id, "to wait for approval", |d| d.paused_at.is_some()).await;
    let second = s.trigger("shop", "release", &[("target", "x86"), ("region", "us-east-1")]).await;
    s.wait_for(&second.id, "to wait for approval", |d| d.paused_at.is_some()).await;

    let waiting = s.admin.approvals(None).await.unwrap();
    assert_eq!(waiting.len(), 2, "{waiting:#?}");
    assert_eq!(waiting[0].run.id, first.id, "the longest-waiting first");
    let w = &waiting[0];
    assert_eq!(w.stage, "production");
    assert_eq!(w.description.as_deref(), Some("Ship to production?"));
    assert_eq!(w.run.state, "paused");
    let params: Vec<(&str, &str)> =
        w.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(params, [("region", "eu-west-1"), ("target", "arm64")], "defaults included");
    assert_eq!(w.defaults, ["region"]);
    assert!(w.waiting_since >= w.run.created_at && w.waiting_since <= chrono::Utc::now());
    assert!(waiting[1].defaults.is_empty(), "every param given");
    assert_eq!(s.admin.approvals(Some("shop")).await.unwrap().len(), 2);
    let e = s.admin.approvals(Some("nope")).await.unwrap_err();
    assert_eq!(e.code(), Some("not_found"), "{e}");

    // A comment too long is refused before anything is decided.
    let long = "x".repeat(kiln_store::MAX_COMMENT_CHARS + 1);
    let e = s.admin.decide_with(&first.id, "production", true, Some(&long)).await.unwrap_err();
    assert_eq!(e.code(), Some("bad_request"), "{e}");
    assert!(e.to_string().contains("4001 characters"), "{e}");
    assert!(s.admin.run(&first.id).await.unwrap().paused_at.is_some(), "still waiting");

    // Approved with a comment holding a secret: stored and served masked.
    let comment = format!("canary green; key {SECRET} rotated");
    s.admin.decide_with(&first.id, "production", true, Some(&comment)).await.unwrap();
    let done = s.wait_final(&first.id).await;
    assert_eq!(done.run.state, "success");
    let stage = done.stages.iter().find(|st| st.name == "production").unwrap();
    let decision = stage.decision.as_ref().unwrap();
    assert_eq!((decision.decision.as_str(), decision.by.as_str()), ("approved", "admin"));
    assert_eq!(decision.comment.as_deref(), Some("canary green; key *** rotated"));
    assert!(!s.database_contains(SECRET.as_bytes()).await, "the secret is not stored");

    // Rejected with a comment: the run ends canceled and the comment is kept.
    s.admin
        .decide_with(&second.id, "production", false, Some("  error budget spent: INC-42 "))
        .await
        .unwrap();
    let done = s.wait_final(&second.id).await;
    assert_eq!(done.run.state, "canceled");
    let stage = done.stages.iter().find(|st| st.name == "production").unwrap();
    assert_eq!(
        stage.decision.as_ref().unwrap().comment.as_deref(),
        Some("error budget spent: INC-42"),
        "trimmed"
    );
    assert!(s.admin.approvals(None).await.unwrap().is_empty(), "nothing waits any more");
    s.stop().await;
}
