//! Pipelines that start pipelines, from the command line: `kiln run` refuses what only a
//! server carries out before anything runs; `kiln run show` lists the runs a run's trigger
//! jobs started; `kiln group start|show` and `kiln runs --group` show a group's runs together.

use crate::server::Server;
use crate::support::{assert_code, kiln};

const LOCAL: &str = "\
name: release
stages:
  - name: build
    jobs:
      build:
        script: touch built
  - name: ship
    jobs:
      docs:
        trigger: { project: docs, pipeline: publish }
      smoke:
        environment: staging
        script: echo smoke
";

#[test]
fn kiln_run_refuses_jobs_only_a_server_carries_out_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("release.yml"), LOCAL).unwrap();
    let out = kiln()
        .args(["run", "release.yml", "--executor", "process"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(
        stderr.contains(
            "error: job `docs` starts pipelines (trigger:) on a server: kiln run cannot do that; \
             store the workflow with kiln pipeline apply and start it there with kiln trigger"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: job `smoke` runs in an environment (environment:), whose variables live on a server"),
        "{stderr}"
    );
    assert!(!dir.path().join("built").exists(), "nothing ran");
}

const CHILD: &str = "\
name: child
params:
  WHO: { type: string, default: nobody }
stages:
  - name: greet
    jobs:
      greet:
        script:
          - echo \"hello $WHO\"
          - echo \"JOB_OUT greeted=$WHO\"
";

const PARENT: &str = "\
name: parent
stages:
  - name: release
    jobs:
      release:
        trigger: { pipeline: child, params: { WHO: parent } }
";

#[test]
fn run_show_lists_downstream_runs_and_groups_are_started_and_shown_together() {
    let s = Server::start();
    s.pipeline("child", CHILD);
    s.pipeline("parent", PARENT);
    let (stdout, _) = s.ok(&["trigger", "default/parent", "--follow"], 0);
    assert!(stdout.contains("release | started default/child#1 (id "), "{stdout}");
    assert!(stdout.contains("release | default/child#1 is success"), "{stdout}");
    let (stdout, _) = s.ok(&["run", "show", "default/parent#1"], 0);
    let row = stdout
        .lines()
        .find(|l| l.contains("┆ default/child#1 "))
        .unwrap_or_else(|| panic!("a downstream row: {stdout}"));
    assert!(row.starts_with("│ release ") && row.contains("success"), "{stdout}");
    assert!(stdout.contains("greet_greeted=parent"), "the downstream outputs: {stdout}");
    let (stdout, _) = s.ok(&["run", "show", "default/child#1"], 0);
    assert!(stdout.contains("started by:   job release of run default/parent#1"), "{stdout}");

    // Two projects' pipelines as one group.
    let file = s.file("ci.yml", &CHILD.replace("name: child", "name: ci"));
    for project in ["shop-api", "shop-web"] {
        s.ok(&["pipeline", "apply", &file, "--project", project], 0);
    }
    let (stdout, _) =
        s.ok(&["group", "start", "shop-api/ci", "shop-web/ci", "-p", "WHO=merge", "--wait"], 0);
    let group = stdout
        .lines()
        .find_map(|l| l.strip_prefix("started group "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("the group's id: {stdout}"))
        .to_string();
    assert!(stdout.contains(&format!("group {group} success")), "{stdout}");
    let (stdout, _) = s.ok(&["group", "show", &group], 0);
    for name in ["shop-api/ci#1", "shop-web/ci#1"] {
        let row = stdout.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{stdout}"));
        assert!(row.contains("success"), "{stdout}");
    }
    let (stdout, _) = s.ok(&["runs", "--group", &group, "-o", "json"], 0);
    let runs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{stdout}");
    assert!(runs.iter().all(|r| r["group"] == group.as_str()), "{stdout}");
    let (_, stderr) = s.ok(&["group", "start", "shop-api"], 2);
    assert!(stderr.contains("expected PROJECT/PIPELINE"), "{stderr}");
}
