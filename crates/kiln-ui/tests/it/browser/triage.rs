//! Failure triage and approvals in the browser: a failed run's page says which script entry
//! failed, its exit status, the node and the lines before it without opening the log; the runs
//! list shows each run's failing job and params; the "Waiting for approval" page lists a
//! paused run with its effective params and waiting time, and a decision's comment typed there
//! (or on the run's page) is stored and shown on the run's page, after a reload too.

use serde_json::json;

use super::Browser;
use crate::support::TestServer;

const FAILING: &str = r#"
name: checks
params:
  target: { type: string }
stages:
  - name: build
    jobs:
      lint: { script: ["echo lint ok"] }
      test:
        script:
          - echo preparing
          - for i in $(seq 1 30); do echo "case $i ok"; done
          - echo "FAIL cart_total expected 3 got 2" >&2
          - sh -c 'exit 3'
"#;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_runs_excerpt_the_runs_list_and_approvals_with_comments() {
    let s = TestServer::start_with(2).await;
    s.apply("web", "checks", FAILING).await;
    s.apply("web", "release", GATED).await;
    let failed = s.trigger("web", "checks", &[("target", "arm64")]).await;
    assert_eq!(s.wait_final(&failed.id).await.run.state, "failure");
    let Some(b) = Browser::start("triage").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;

    // The failed run's page: the failing entry, its status, the node, the lines before it.
    b.c.goto(&format!("{}/runs/{}", s.url, failed.id)).await.unwrap();
    let failure = b
        .wait(
            "the failure of job test",
            "const f = document.querySelector('#failures article.failure[data-job=test]');
             if (!f) return null;
             const rows = [...f.querySelectorAll('.excerpt .ln')];
             return { step: f.querySelector('.step').textContent,
                      status: f.querySelector('.exit-status').textContent,
                      node: f.querySelector('.node-name').textContent,
                      rows: rows.length,
                      last: rows[rows.length - 1].textContent,
                      lastFailed: rows[rows.length - 1].classList.contains('failed'),
                      before: rows[rows.length - 3].querySelector('.txt').textContent,
                      first: rows[0].querySelector('.txt').textContent,
                      link: f.querySelector('.failure-more a').getAttribute('href') }",
        )
        .await;
    assert_eq!(failure["step"], json!("$ sh -c 'exit 3'"), "{failure}");
    assert_eq!(failure["status"], json!("3"));
    assert_eq!(failure["node"], json!("embedded"));
    assert_eq!(failure["rows"], json!(21), "20 lines before the exit status line, and it");
    assert!(failure["last"].as_str().unwrap().contains("exit status 3: sh -c 'exit 3'"));
    assert_eq!(failure["lastFailed"], json!(true));
    assert_eq!(failure["before"], json!("FAIL cart_total expected 3 got 2"));
    assert_eq!(failure["first"], json!("case 14 ok"));
    let link = failure["link"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("/runs/{}/jobs/test#L", failed.id)), "{link}");
    assert_eq!(
        b.js("return document.querySelectorAll('#failures article.failure').length").await,
        json!(1),
        "only the failed job"
    );
    b.shot("01-failed-run").await;
    // Its link opens the log at the exit status line.
    b.click("#failures .failure-more a").await;
    b.wait("the log at the failing line", "return !!document.querySelector('#log .ln.target')")
        .await;

    // The runs list: the failing job (linked to its log) and the params of each run.
    b.click("#nav a[data-nav=runs]").await;
    let row = b
        .wait(
            "the failed run's row",
            &format!(
                "const r = document.querySelector('tr[data-run=\"{}\"]');
                 if (!r || !r.querySelector('td.failed-job a')) return null;
                 return {{ failed: r.querySelector('td.failed-job a').textContent,
                          href: r.querySelector('td.failed-job a').getAttribute('href'),
                          params: r.querySelector('td.run-params').textContent }}",
                failed.id
            ),
        )
        .await;
    assert_eq!(row["failed"], json!("test"));
    assert_eq!(row["href"], json!(format!("/runs/{}/jobs/test", failed.id)));
    assert_eq!(row["params"], json!("target=arm64"));
    b.shot("02-runs").await;

    // Waiting for approval: the paused run with its effective params and waiting time.
    let first = s.trigger("web", "release", &[("target", "x86")]).await;
    s.wait_for(&first.id, "to wait for approval", |d| d.paused_at.is_some()).await;
    b.click("#nav a[data-nav=approvals]").await;
    let waiting = b
        .wait(
            "the waiting run",
            &format!(
                "const r = document.querySelector('table.approvals tr[data-run=\"{}\"]');
                 if (!r) return null;
                 return {{ stage: r.dataset.stage,
                          params: [...r.querySelectorAll('td.params [data-param]')].map(d => d.textContent),
                          waited: r.querySelector('td.waited').textContent,
                          text: r.textContent }}",
                first.id
            ),
        )
        .await;
    assert_eq!(waiting["stage"], json!("production"));
    assert_eq!(waiting["params"], json!(["region=eu-west-1 (default)", "target=x86"]));
    assert!(!waiting["waited"].as_str().unwrap().is_empty(), "{waiting}");
    assert!(waiting["text"].as_str().unwrap().contains("Ship to production?"), "{waiting}");
    b.shot("03-approvals").await;
    b.type_into(&format!("#comment-{}", first.id), "canary green, INC-41 closed").await;
    b.click(&format!("tr[data-run=\"{}\"] button[data-action=approve]", first.id)).await;
    b.wait(
        "no run waiting",
        "return !document.querySelector('table.approvals') && document.querySelector('main .empty')",
    )
    .await;
    let d = s.wait_final(&first.id).await;
    assert_eq!(d.run.state, "success");
    let decision = d.stages.iter().find(|st| st.name == "production").unwrap().decision.clone();
    assert_eq!(
        decision.map(|x| (x.decision, x.comment)),
        Some(("approved".to_string(), Some("canary green, INC-41 closed".to_string())))
    );

    // The run's page shows the decision with its comment, after a reload too.
    let shown =
        "const c = document.querySelector('#decisions li[data-stage=production] .decision-comment');
         return c && c.textContent === 'canary green, INC-41 closed'
             && document.querySelector('#decisions li[data-stage=production]').textContent.includes('approved by admin')";
    b.c.goto(&format!("{}/runs/{}", s.url, first.id)).await.unwrap();
    b.wait("the decision's comment", shown).await;
    b.c.refresh().await.unwrap();
    b.wait("the decision's comment after a reload", shown).await;
    b.shot("04-decided").await;

    // Rejected from the run's page, with a comment.
    let second = s.trigger("web", "release", &[("target", "arm64")]).await;
    s.wait_for(&second.id, "to wait for approval", |d| d.paused_at.is_some()).await;
    b.c.goto(&format!("{}/runs/{}", s.url, second.id)).await.unwrap();
    b.wait("the approval box", "return !!document.querySelector('.approval #approval-comment')")
        .await;
    b.type_into("#approval-comment", "error budget spent").await;
    b.click("#reject").await;
    assert!(b.c.get_alert_text().await.unwrap().contains("Reject stage production"));
    b.c.accept_alert().await.unwrap();
    b.wait(
        "the rejection's comment",
        "const c = document.querySelector('#decisions li[data-stage=production] .decision-comment');
         return c && c.textContent === 'error budget spent'",
    )
    .await;
    let d = s.wait_final(&second.id).await;
    assert_eq!(d.run.state, "canceled");
    b.c.clone().close().await.unwrap();
    s.stop().await;
}
