//! Service files beyond the fixtures: telling file kinds apart, a service file given to
//! the workflow compiler, the stored JSON of a spec, and the scheduler's request.

use kiln_workflow::service::{Amount, Fenceposts, Probe, Restart, ServiceSpec};
use kiln_workflow::{Kind, Severity};

use crate::support::{check, crate_dir};

fn distcc() -> ServiceSpec {
    let file = "test_data/service/ok/distcc.yml";
    let text = std::fs::read_to_string(crate_dir().join(file)).unwrap_or_default();
    match kiln_workflow::compile_service(file, &text).spec {
        Some(spec) => spec,
        None => panic!("{file} does not compile"),
    }
}

#[test]
fn file_kinds() {
    assert_eq!(kiln_workflow::file_kind("a.yml", "name: x\nstages: []\n"), Ok(Kind::Workflow));
    assert_eq!(kiln_workflow::file_kind("a.yml", "kind: workflow\n"), Ok(Kind::Workflow));
    assert_eq!(kiln_workflow::file_kind("a.yml", "name: x\nkind: service\n"), Ok(Kind::Service));
    assert_eq!(kiln_workflow::file_kind("a.yml", "kind: metric\n"), Ok(Kind::Metric));
    // Not YAML, or not a mapping: compiling says what is wrong.
    assert_eq!(kiln_workflow::file_kind("a.yml", "a: [\n"), Ok(Kind::Workflow));
    assert_eq!(kiln_workflow::file_kind("a.yml", "- x\n"), Ok(Kind::Workflow));
    let Err(d) = kiln_workflow::file_kind("a.yml", "name: x\nkind: Deployment\n") else {
        panic!("an unknown kind is an error")
    };
    assert_eq!(
        d.to_string(),
        "a.yml:2:7: error: kind: expected workflow, service or metric, found 'Deployment'"
    );
    assert_eq!(d.severity, Severity::Error);
}

#[test]
fn the_workflow_compiler_says_a_service_file_is_one() {
    insta::assert_snapshot!(check("kind: service\nname: web\nimage: nginx\nreplicas: 2\n"), @"main.yml:1:7: error: this is a service file (kind: service): apply it with kiln service apply; workflows are run with kiln run or stored as pipelines");
    insta::assert_snapshot!(check("kind: servise\nname: web\n"), @"main.yml:1:7: error: kind: expected workflow, service or metric, found 'servise' (did you mean 'service'?)");
    insta::assert_snapshot!(check("kind: workflow\nname: w\nstages: [{ name: s, jobs: { a: { script: echo } } }]\n"), @r#"
    plan w
    stage 0 s: a
    job a <- [] gate - if success() | script ["echo"]
    "#);
}

#[test]
fn a_spec_round_trips_through_json() {
    let spec = distcc();
    let json = serde_json::to_string(&spec).unwrap_or_default();
    let back: Result<ServiceSpec, _> = serde_json::from_str(&json);
    assert_eq!(back.ok(), Some(spec));
}

#[test]
fn distcc_reads_as_written() {
    let spec = distcc();
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.update.max_surge, Amount::Count(1));
    assert_eq!(spec.update.max_unavailable, Amount::Count(0));
    assert_eq!(spec.update.resolve(spec.replicas), Fenceposts { surge: 1, unavailable: 0 });
    assert_eq!(spec.restart.policy, Restart::Always);
    let probe = spec.health.as_ref().map(|h| h.probe.clone());
    assert_eq!(probe, Some(Probe::Tcp { port: "distcc".into() }));
}

#[test]
fn a_spec_asks_the_scheduler_as_a_job_does() {
    let spec = distcc();
    let ask = match spec.ask("distccd/0", "team/distccd", "team", Default::default()) {
        Ok(ask) => ask,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(ask.resources.cpu_millis, 2000);
    assert_eq!(ask.resources.memory_bytes, 1 << 30);
    assert_eq!(ask.constraints.to_string(), "city UNIQUE");
    let ports: Vec<(&str, u16, Option<u16>)> =
        ask.ports.iter().map(|p| (p.name.as_str(), p.host, p.container)).collect();
    assert_eq!(ports, [("distcc", 0, Some(3632)), ("stats", 0, Some(3633))]);
    assert_eq!(ask.validate(), Ok(()));
}

#[test]
fn jobs_read_bcs_constraints_too() {
    let text = r#"
name: w
stages:
  - name: s
    jobs:
      a:
        script: echo
        constraints:
          intersectionItem:
            - unionData: [{ name: city, operate: LIKE, type: 3, text: { value: "shen.*" } }]
          nodeSelector: { disk: ssd }
"#;
    let compiled =
        kiln_workflow::compile("main.yml", &crate::support::MapLoader::new(&[("main.yml", text)]));
    let Some(plan) = compiled.plan else { panic!("{:?}", compiled.diagnostics) };
    let ask = plan.jobs[0].ask("t", "g", "p", Default::default());
    assert_eq!(
        ask.map(|a| a.constraints.to_string()).ok().as_deref(),
        Some("city LIKE shen.* AND disk LIKE ssd")
    );
}
