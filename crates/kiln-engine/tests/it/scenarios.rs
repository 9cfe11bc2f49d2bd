//! Scenario tests: a plan, a scripted driver, a snapshot of every event, command and final state.

use std::collections::BTreeMap;

use kiln_engine::{Command, Decision, Event, GateState, JobState, Outcome, Run, RunState, Timer};
use kiln_workflow::plan::{JobId, ParamKind, ParamSpec, ParamValue, RetryOn, RunSpec};

use crate::support::*;

fn state(t: &Transcript, id: &str) -> JobState {
    t.run.job(&JobId::from(id)).expect("job").state
}

#[test]
fn build_test_deploy_passes_outputs_downstream() {
    let plan = PlanDef::new("btd")
        .param(ParamSpec {
            name: "target".to_owned(),
            kind: ParamKind::String,
            default: Some(ParamValue::String("staging".to_owned())),
            required: false,
            description: None,
        })
        .env("REGISTRY", "reg.local")
        .env("TARGET_ENV", "${{ params.target }}")
        .stage("build", vec![job("build").script(&["cargo build"])])
        .stage("test", vec![job("test").script(&["cargo test"])])
        .stage(
            "deploy",
            vec![
                job("deploy")
                    .needs(&["build", "test"])
                    .image("${{ params.base }}:${{ jobs.build.outputs.version }}")
                    .script(&["deploy --digest ${{ jobs.build.outputs.digest }}"])
                    .env("TAG", "v${{ jobs.build.outputs.version }}"),
            ],
        )
        .build();
    let t = Driver::new()
        .param("base", ParamValue::String("app".to_owned()))
        .on("build", vec![exits(0).out("version", "1.2.3").out("digest", "sha256:abc")])
        .on("test", vec![exits(0).out("passed", "42")])
        .drive(plan);
    insta::assert_snapshot!(t.text);

    let deploy = started(&t.commands, "deploy");
    assert_eq!(deploy.image.as_deref(), Some("app:1.2.3"));
    assert_eq!(
        deploy.run,
        RunSpec::Script(vec!["deploy --digest sha256:abc".to_owned()]),
        "the script is rendered with the upstream output"
    );
    for (k, v) in [
        ("version", "1.2.3"),
        ("digest", "sha256:abc"),
        ("passed", "42"),
        ("base", "app"),
        ("target", "staging"),
        ("REGISTRY", "reg.local"),
        ("TARGET_ENV", "staging"),
        ("TAG", "v1.2.3"),
    ] {
        assert_eq!(deploy.env.get(k).map(String::as_str), Some(v), "env {k}");
    }
    // `test` needs only `build`: it sees build's outputs but not its own future ones.
    let test = started(&t.commands, "test");
    assert_eq!(test.env.get("version").map(String::as_str), Some("1.2.3"));
    assert!(!test.env.contains_key("passed"));
    assert_eq!(t.run.state(), RunState::Success);
}

#[test]
fn env_merge_later_wins() {
    let plan = PlanDef::new("merge")
        .env("A", "global")
        .env("B", "global")
        .stage("one", vec![job("one")])
        .stage("two", vec![job("two").env("B", "job")])
        .build();
    let t = Driver::new()
        .param("A", ParamValue::Number(1.0))
        .param("C", ParamValue::Bool(true))
        .param("D", ParamValue::String("param".to_owned()))
        .on("one", vec![exits(0).out("C", "output").out("D", "output").out("A", "output")])
        .drive(plan);
    let two = started(&t.commands, "two");
    let env: Vec<(&str, &str)> = two.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(env, [("A", "global"), ("B", "job"), ("C", "output"), ("D", "output")]);
}

fn gated_plan() -> kiln_engine::SharedPlan {
    PlanDef::new("gated")
        .stage("build", vec![job("build"), job("lint")])
        .approval("release", Some("Ship it?"))
        .stage("deploy", vec![job("deploy")])
        .stage("verify", vec![job("verify")])
        .build()
}

#[test]
fn approval_approved() {
    let t = Driver::new().answer("release", Answer::Approve("alice")).drive(gated_plan());
    insta::assert_snapshot!(t.text);
    assert_eq!(t.run.state(), RunState::Success);
    assert_eq!(t.run.gates().collect::<Vec<_>>(), [("release", GateState::Approved)]);
    assert_eq!(t.run.approvals()[0].decision, Decision::Approved);
}

#[test]
fn approval_rejected() {
    let t = Driver::new().answer("release", Answer::Reject("bob")).drive(gated_plan());
    insta::assert_snapshot!(t.text);
    assert_eq!(t.run.state(), RunState::Canceled);
    assert_eq!(state(&t, "deploy"), JobState::Canceled);
    let reason = t.run.job(&JobId::from("deploy")).unwrap().reason.clone().unwrap();
    assert!(reason.contains("release") && reason.contains("bob"), "{reason}");
    assert_eq!(t.run.gates().collect::<Vec<_>>(), [("release", GateState::Rejected)]);
}

#[test]
fn cancel_while_paused_finishes_at_once() {
    let t = Driver::new().answer("release", Answer::Cancel("carol")).drive(gated_plan());
    insta::assert_snapshot!(t.text);
    assert_eq!(t.run.state(), RunState::Canceled);
    assert_eq!(t.run.gates().collect::<Vec<_>>(), [("release", GateState::Canceled)]);
    assert!(t.run.approvals().is_empty());
}

#[test]
fn paused_run_reports_where_it_waits() {
    let mut run = Run::new(gated_plan(), Default::default());
    run.start();
    for id in ["build", "lint"] {
        run.handle(Event::JobStarted { job: JobId::from(id), attempt: 1 });
        run.handle(Event::JobExited {
            job: JobId::from(id),
            attempt: 1,
            outcome: Outcome::Exited(0),
        });
    }
    assert_eq!(run.state(), RunState::Paused);
    assert_eq!(run.paused_at(), Some("release"));
    assert_eq!(run.counts().pending, 2);
    assert_eq!(run.counts().done(), 2);
    // A decision for another stage, or for no stage, changes nothing.
    let wrong = Event::Approved { stage: "other".to_owned(), by: "eve".to_owned() };
    assert!(run.handle(wrong).is_empty());
    let wrong = Event::Rejected { stage: "build".to_owned(), by: "eve".to_owned() };
    assert!(run.handle(wrong).is_empty());
    assert_eq!(run.state(), RunState::Paused);
    let ok = Event::Approved { stage: "release".to_owned(), by: "alice".to_owned() };
    let commands = run.handle(ok.clone());
    assert_eq!(starts(&commands), [("deploy".to_owned(), 1)]);
    // `deploy` waits for a place to run, and nothing else runs.
    assert_eq!(run.state(), RunState::Scheduling);
    assert_eq!(run.paused_at(), None);
    run.handle(Event::JobStarted { job: JobId::from("deploy"), attempt: 1 });
    assert_eq!(run.state(), RunState::Running);
    // Approving again is ignored.
    assert!(run.handle(ok).is_empty());
    assert_eq!(run.approvals().len(), 1);
}

#[test]
fn failure_before_an_approval_skips_it() {
    let plan = PlanDef::new("skip-gate")
        .stage("build", vec![job("build"), job("lint")])
        .approval("release", None)
        .stage("deploy", vec![job("deploy").needs(&["lint"]), job("notify").when("always()")])
        .build();
    let t = Driver::new().on("build", vec![exits(1)]).drive(plan);
    insta::assert_snapshot!(t.text);
    assert!(!t.commands.iter().any(|c| matches!(c, Command::Pause { .. })));
    // `deploy` needs only `lint`, which passed, but the skipped gate still counts as failure.
    assert_eq!(state(&t, "deploy"), JobState::Skipped);
    assert_eq!(state(&t, "notify"), JobState::Success);
    assert_eq!(t.run.gates().collect::<Vec<_>>(), [("release", GateState::Skipped)]);
    assert_eq!(t.run.state(), RunState::Failure);
}

#[test]
fn two_approvals_in_a_row() {
    let plan = PlanDef::new("two")
        .stage("build", vec![job("build")])
        .approval("qa", None)
        .approval("prod", None)
        .stage("deploy", vec![job("deploy")])
        .build();
    let t = Driver::new()
        .answer("qa", Answer::Approve("alice"))
        .answer("prod", Answer::Approve("bob"))
        .drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(t.run.state(), RunState::Success);
}

#[test]
fn trailing_approval_is_asked_before_finishing() {
    let plan = PlanDef::new("trailing")
        .stage("build", vec![job("build")])
        .approval("sign-off", None)
        .build();
    let t = Driver::new().answer("sign-off", Answer::Approve("alice")).drive(plan.clone());
    assert_eq!(t.run.state(), RunState::Success);
    let t = Driver::new().answer("sign-off", Answer::Reject("bob")).drive(plan);
    assert_eq!(t.run.state(), RunState::Canceled);
    assert_eq!(state(&t, "build"), JobState::Success);
}

#[test]
fn retry_exhausted() {
    let plan = PlanDef::new("retry")
        .stage("flaky", vec![job("flaky").retry(2, &[])])
        .stage("after", vec![job("after")])
        .build();
    let t = Driver::new().on("flaky", vec![exits(1), exits(2), exits(3)]).drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(
        starts(&t.commands),
        [("flaky".to_owned(), 1), ("flaky".to_owned(), 2), ("flaky".to_owned(), 3)]
    );
    assert_eq!(state(&t, "flaky"), JobState::Failure);
    assert_eq!(t.run.job(&JobId::from("flaky")).unwrap().exit_code, Some(3));
    assert_eq!(state(&t, "after"), JobState::Skipped);
    assert_eq!(t.run.state(), RunState::Failure);
}

#[test]
fn retry_succeeds_on_second_attempt() {
    let plan = PlanDef::new("retry")
        .stage("flaky", vec![job("flaky").retry(2, &[])])
        .stage("after", vec![job("after")])
        .build();
    let t = Driver::new()
        .on("flaky", vec![exits(1).out("try", "one"), exits(0).out("second", "yes")])
        .drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(starts(&t.commands).len(), 3);
    let flaky = t.run.job(&JobId::from("flaky")).unwrap();
    assert_eq!((flaky.state, flaky.attempts), (JobState::Success, 2));
    // Outputs are those of the latest attempt only.
    assert_eq!(flaky.outputs.keys().collect::<Vec<_>>(), ["second"]);
    assert!(!started(&t.commands, "after").env.contains_key("try"));
    assert_eq!(t.run.state(), RunState::Success);
}

#[test]
fn retry_only_on_listed_kinds() {
    let plan = PlanDef::new("retry-on")
        .stage("a", vec![job("a").retry(3, &[RetryOn::Timeout])])
        .stage("b", vec![job("b").retry(3, &[RetryOn::Error]).needs(&[])])
        .build();
    let t = Driver::new()
        .on("a", vec![ends(Outcome::TimedOut), exits(1)])
        .on("b", vec![ends(Outcome::Error("no such image".to_owned())), exits(0)])
        .drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(state(&t, "a"), JobState::Failure);
    assert_eq!(t.run.job(&JobId::from("a")).unwrap().attempts, 2);
    assert_eq!(state(&t, "b"), JobState::Success);
}

#[test]
fn cleanup_runs_only_after_a_failure() {
    let plan = || {
        PlanDef::new("cleanup")
            .stage("build", vec![job("build")])
            .stage("cleanup", vec![job("cleanup").when("failure()")])
            .build()
    };
    let failed = Driver::new().on("build", vec![exits(1)]).drive(plan());
    insta::assert_snapshot!("cleanup_after_failure", failed.text);
    assert_eq!(state(&failed, "cleanup"), JobState::Success);
    assert_eq!(failed.run.state(), RunState::Failure, "a handled failure still fails the run");

    let passed = Driver::new().drive(plan());
    insta::assert_snapshot!("cleanup_after_success", passed.text);
    assert_eq!(state(&passed, "cleanup"), JobState::Skipped);
    assert_eq!(passed.run.state(), RunState::Success);
}

#[test]
fn always_runs_after_success_and_failure() {
    let plan = || {
        PlanDef::new("always")
            .stage("build", vec![job("build")])
            .stage("report", vec![job("report").when("always()")])
            .build()
    };
    for code in [0, 1] {
        let t = Driver::new().on("build", vec![exits(code)]).drive(plan());
        assert_eq!(state(&t, "report"), JobState::Success, "build exited {code}");
    }
}

#[test]
fn skipped_propagates_down_the_chain() {
    let plan = PlanDef::new("chain")
        .stage("a", vec![job("a")])
        .stage("b", vec![job("b")])
        .stage("c", vec![job("c")])
        .stage(
            "d",
            vec![
                job("d-always").when("always()"),
                job("d-failure").when("failure()"),
                job("d-success"),
            ],
        )
        .build();
    let t = Driver::new().on("a", vec![exits(1)]).drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(state(&t, "b"), JobState::Skipped);
    assert_eq!(state(&t, "c"), JobState::Skipped);
    assert_eq!(state(&t, "d-always"), JobState::Success);
    assert_eq!(state(&t, "d-failure"), JobState::Success, "failure() looks through skipped jobs");
    assert_eq!(state(&t, "d-success"), JobState::Skipped);
}

#[test]
fn matrix_fan_in() {
    let plan = PlanDef::new("matrix")
        .stage(
            "test",
            vec![
                job("test[linux]").matrix("os", "linux").script(&["test on ${{ matrix.os }}"]),
                job("test[mac]").matrix("os", "mac").script(&["test on ${{ matrix.os }}"]),
            ],
        )
        .stage(
            "report",
            vec![job("report").when("always()").script(&["echo tests: ${{ jobs.test.result }}"])],
        )
        .build();
    let t = Driver::new()
        .on("test[linux]", vec![exits(0).out("linux_ok", "yes")])
        .on("test[mac]", vec![exits(1).out("mac_ok", "no")])
        .drive(plan);
    insta::assert_snapshot!(t.text);
    let report = started(&t.commands, "report");
    assert_eq!(report.env.get("linux_ok").map(String::as_str), Some("yes"));
    assert_eq!(report.env.get("mac_ok").map(String::as_str), Some("no"));
    assert_eq!(report.run, RunSpec::Script(vec!["echo tests: failure".to_owned()]));
    assert_eq!(t.run.state(), RunState::Failure);
}

#[test]
fn run_timeout() {
    let plan = PlanDef::new("slow")
        .timeout(600)
        .stage("work", vec![job("slow"), job("quick")])
        .stage("after", vec![job("after").when("always()")])
        .build();
    let t = Driver::new().on("slow", vec![hangs()]).drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(t.run.state(), RunState::Timeout);
    assert_eq!(state(&t, "slow"), JobState::Canceled);
    assert_eq!(state(&t, "after"), JobState::Canceled, "nothing new starts, even always()");
    assert_eq!(finish(&t.commands), Some(RunState::Timeout));
}

#[test]
fn a_job_killed_from_outside_fails_saying_what_killed_it() {
    let plan = PlanDef::new("killed").stage("work", vec![job("big")]).build();
    let why = "killed by the out-of-memory killer (it used more memory than its limit or the \
               host had)";
    let t = Driver::new()
        .on("big", vec![ends(Outcome::Killed { code: 137, why: why.to_owned() })])
        .drive(plan);
    assert_eq!(state(&t, "big"), JobState::Failure);
    let big = t.run.job(&JobId::from("big")).unwrap();
    assert_eq!(big.reason.as_deref(), Some(format!("{why} (exit code 137)").as_str()));
    assert_eq!(big.exit_code, Some(137));
    assert_eq!(t.run.state(), RunState::Failure);
}

#[test]
fn job_timeout_outcome() {
    let plan = PlanDef::new("job-timeout")
        .stage("work", vec![job("slow").timeout(30), job("retried").timeout(30).retry(1, &[])])
        .build();
    let t = Driver::new()
        .on("slow", vec![ends(Outcome::TimedOut)])
        .on("retried", vec![ends(Outcome::TimedOut), ends(Outcome::TimedOut)])
        .drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(state(&t, "slow"), JobState::Timeout);
    assert_eq!(state(&t, "retried"), JobState::Timeout);
    assert_eq!(t.run.state(), RunState::Failure);
}

#[test]
fn cancel_while_running() {
    let plan = PlanDef::new("cancel")
        .stage("work", vec![job("long"), job("short")])
        .stage("after", vec![job("after")])
        .build();
    let t = Driver::new().on("long", vec![hangs()]).cancel_when_started("long").drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(t.run.state(), RunState::Canceled);
    assert_eq!(state(&t, "long"), JobState::Canceled);
    assert_eq!(state(&t, "after"), JobState::Canceled);
}

#[test]
fn render_and_condition_errors_fail_the_job() {
    let plan = PlanDef::new("errors")
        .stage(
            "one",
            vec![job("bad-image").image("${{ nonsense here }}"), job("bad-if").when("what(")],
        )
        .stage("two", vec![job("cleanup").when("failure()")])
        .build();
    let t = Driver::new().drive(plan);
    for id in ["bad-image", "bad-if"] {
        assert_eq!(state(&t, id), JobState::Failure, "{id}");
        let reason = t.run.job(&JobId::from(id)).unwrap().reason.clone().unwrap();
        assert!(reason.starts_with("cannot "), "{reason}");
        assert!(!starts(&t.commands).iter().any(|(j, _)| j == id));
    }
    assert_eq!(state(&t, "cleanup"), JobState::Success);
    assert_eq!(t.run.state(), RunState::Failure);
}

#[test]
fn stale_unknown_and_late_events_are_ignored() {
    let plan = PlanDef::new("stale").stage("one", vec![job("a").retry(1, &[])]).build();
    let mut run = Run::new(plan, Default::default());
    assert!(run.handle(Event::TimerFired(Timer::RunTimeout)).is_empty(), "before start");
    assert_eq!(run.state(), RunState::Pending);
    run.start();
    let a = JobId::from("a");
    let exited = |attempt, code| Event::JobExited {
        job: a.clone(),
        attempt,
        outcome: Outcome::Exited(code),
    };
    assert!(run.handle(exited(2, 0)).is_empty(), "attempt not started yet");
    let unknown =
        Event::JobExited { job: JobId::from("nope"), attempt: 1, outcome: Outcome::Exited(0) };
    assert!(run.handle(unknown).is_empty());
    assert_eq!(starts(&run.handle(exited(1, 1))), [("a".to_owned(), 2)]);
    assert!(run.handle(exited(1, 0)).is_empty(), "stale attempt");
    let out = Event::JobOutput { job: a.clone(), attempt: 1, key: "k".into(), value: "v".into() };
    assert!(run.handle(out).is_empty());
    assert!(run.job(&a).unwrap().outputs.is_empty());
    assert_eq!(run.handle(exited(2, 0)), [Command::Finish(RunState::Success)]);
    for late in [
        exited(2, 1),
        Event::Cancel { by: "x".into() },
        Event::TimerFired(Timer::RunTimeout),
        Event::JobStarted { job: a.clone(), attempt: 3 },
    ] {
        assert!(run.handle(late).is_empty());
    }
    assert_eq!(run.state(), RunState::Success);
    assert!(run.start().is_empty(), "start twice");
}

#[test]
fn cancel_before_start_and_empty_plan() {
    let plan = PlanDef::new("one").stage("one", vec![job("a")]).build();
    let mut run = Run::new(plan, Default::default());
    let c = run.handle(Event::Cancel { by: "x".into() });
    assert_eq!(c, [Command::Finish(RunState::Canceled)]);
    assert!(run.start().is_empty());
    assert_eq!(run.job(&JobId::from("a")).unwrap().state, JobState::Canceled);

    let mut empty = Run::new(PlanDef::new("empty").build(), Default::default());
    assert_eq!(empty.start(), [Command::Finish(RunState::Success)]);
}

#[test]
fn executor_cancel_without_run_cancel_ends_canceled() {
    let plan =
        PlanDef::new("lost").stage("one", vec![job("a")]).stage("two", vec![job("b")]).build();
    let t = Driver::new().on("a", vec![ends(Outcome::Canceled)]).drive(plan);
    assert_eq!(state(&t, "a"), JobState::Canceled);
    assert_eq!(t.run.state(), RunState::Canceled);
}

#[test]
fn plan_defects_fail_the_job_without_running_it() {
    let plan = PlanDef::new("defects")
        .stage("one", vec![job("ghost-need").needs(&["ghost"]), job("ok").needs(&[])])
        .stage("two", vec![job("forward").needs(&["later"]), job("after").needs(&["ok"])])
        .stage("three", vec![job("later").needs(&[])])
        .build();
    let t = Driver::new().drive(plan);
    insta::assert_snapshot!(t.text);
    assert_eq!(state(&t, "ghost-need"), JobState::Failure);
    assert_eq!(state(&t, "forward"), JobState::Failure);
    assert_eq!(state(&t, "after"), JobState::Success);
    assert_eq!(t.run.state(), RunState::Failure);
}

#[test]
fn errors_name_the_field() {
    let plan = PlanDef::new("errors")
        .stage("one", vec![job("a").script(&["ok", "echo ${{ jobs. }}"]), job("b").when("(")])
        .build();
    let t = Driver::new().drive(plan);
    let reasons: Vec<String> =
        t.run.jobs().map(|(id, s)| format!("{id}: {}", s.reason.clone().unwrap())).collect();
    insta::assert_snapshot!(reasons.join("\n"));
}

#[test]
fn an_approval_can_not_be_bypassed_by_a_missing_gate() {
    let plan = PlanDef::new("bypass")
        .stage("build", vec![job("build")])
        .approval("release", None)
        .stage("deploy", vec![job("deploy").needs(&[])])
        .build();
    let mut plan = (*plan).clone();
    plan.jobs[1].gate = None;
    let mut run = Run::new(std::sync::Arc::new(plan), Default::default());
    assert_eq!(starts(&run.start()), [("build".to_owned(), 1)]);
    let build = JobId::from("build");
    let c = run.handle(Event::JobExited { job: build, attempt: 1, outcome: Outcome::Exited(0) });
    assert_eq!(c, [Command::Pause { stage: "release".to_owned(), description: None }]);
}

/// build -> test -> deploy, where `test` and `deploy` read build's outputs.
fn retry_plan() -> kiln_engine::SharedPlan {
    PlanDef::new("retry-run")
        .stage("build", vec![job("build").script(&["make"])])
        .stage(
            "test",
            vec![job("test").script(&["test ${{ jobs.build.outputs.digest }}"]), job("lint")],
        )
        .stage("deploy", vec![job("deploy").script(&["ship ${{ jobs.build.outputs.digest }}"])])
        .build()
}

#[test]
fn retry_of_a_failed_run_reuses_what_passed() {
    // The first run: build passes, test fails, deploy is skipped.
    let first = Driver::new()
        .on("build", vec![exits(0).out("digest", "sha256:abc")])
        .on("test", vec![exits(1)])
        .drive(retry_plan());
    assert_eq!(first.run.state(), RunState::Failure);
    // The retry: a new run seeded with what passed, with its outputs.
    let passed: Vec<(String, Vec<(String, String)>)> = first
        .run
        .jobs()
        .filter(|(_, s)| s.state == JobState::Success)
        .map(|(id, s)| (id.to_string(), s.outputs.clone().into_iter().collect()))
        .collect();
    assert_eq!(passed.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["build", "lint"]);
    let mut driver = Driver::new();
    for (id, outputs) in &passed {
        let outputs: Vec<(&str, &str)> =
            outputs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        driver = driver.reuse(id, &outputs);
    }
    let t = driver.drive(retry_plan());
    insta::assert_snapshot!(t.text);
    assert_eq!(starts(&t.commands), [("test".to_owned(), 1), ("deploy".to_owned(), 1)]);
    let build = t.run.job(&JobId::from("build")).unwrap();
    assert_eq!((build.state, build.attempts, build.exit_code), (JobState::Success, 0, None));
    assert_eq!(build.reason.as_deref(), Some(kiln_engine::REUSED_REASON));
    let test = started(&t.commands, "test");
    assert_eq!(test.run, RunSpec::Script(vec!["test sha256:abc".to_owned()]));
    assert_eq!(test.env.get("digest").map(String::as_str), Some("sha256:abc"));
    let deploy = started(&t.commands, "deploy");
    assert_eq!(deploy.run, RunSpec::Script(vec!["ship sha256:abc".to_owned()]));
    assert_eq!(t.run.state(), RunState::Success);
}

#[test]
fn a_reused_job_behind_an_approval_still_waits_for_it() {
    let plan = PlanDef::new("gated-retry")
        .stage("build", vec![job("build")])
        .approval("release", Some("Ship it?"))
        .stage("deploy", vec![job("deploy")])
        .stage("verify", vec![job("verify").script(&["check ${{ jobs.deploy.outputs.url }}"])])
        .build();
    let approved = Driver::new()
        .reuse("build", &[])
        .reuse("deploy", &[("url", "https://prod")])
        .answer("release", Answer::Approve("alice"))
        .drive(plan.clone());
    insta::assert_snapshot!(approved.text);
    assert!(approved.commands.iter().any(|c| matches!(c, Command::Pause { .. })));
    assert_eq!(starts(&approved.commands), [("verify".to_owned(), 1)]);
    let verify = started(&approved.commands, "verify");
    assert_eq!(verify.run, RunSpec::Script(vec!["check https://prod".to_owned()]));
    assert_eq!(approved.run.state(), RunState::Success);

    // Rejected: the reused job behind the gate is canceled like any pending job.
    let rejected = Driver::new()
        .reuse("build", &[])
        .reuse("deploy", &[("url", "https://prod")])
        .answer("release", Answer::Reject("bob"))
        .drive(plan);
    assert!(starts(&rejected.commands).is_empty());
    assert_eq!(state(&rejected, "build"), JobState::Success);
    assert_eq!(state(&rejected, "deploy"), JobState::Canceled);
    assert_eq!(rejected.run.state(), RunState::Canceled);
}

#[test]
fn a_reused_job_whose_condition_is_false_is_skipped() {
    let plan = PlanDef::new("cond")
        .stage("build", vec![job("build")])
        .stage("cleanup", vec![job("cleanup").when("failure()")])
        .stage("after", vec![job("after").when("always()")])
        .build();
    let t = Driver::new().reuse("build", &[]).reuse("cleanup", &[("x", "1")]).drive(plan);
    assert_eq!(state(&t, "cleanup"), JobState::Skipped);
    assert!(t.run.job(&JobId::from("cleanup")).unwrap().outputs.is_empty());
    assert_eq!(starts(&t.commands), [("after".to_owned(), 1)]);
    assert_eq!(t.run.state(), RunState::Success);
}

#[test]
fn job_reused_counts_only_before_start() {
    let plan =
        PlanDef::new("late").stage("one", vec![job("a")]).stage("two", vec![job("b")]).build();
    let mut run = Run::new(plan, Default::default());
    let reuse = |id: &str| Event::JobReused { job: JobId::from(id), outputs: Default::default() };
    assert!(run.handle(reuse("nobody")).is_empty(), "an unknown job is ignored");
    assert_eq!(starts(&run.start()), [("a".to_owned(), 1)]);
    assert!(run.handle(reuse("b")).is_empty(), "ignored after start");
    let a = JobId::from("a");
    let c = run.handle(Event::JobExited { job: a, attempt: 1, outcome: Outcome::Exited(0) });
    assert_eq!(starts(&c), [("b".to_owned(), 1)]);
}

#[test]
fn reused_runs_replay_to_the_same_commands() {
    let drive = || {
        Driver::new()
            .reuse("build", &[("digest", "sha256:abc")])
            .reuse("lint", &[])
            .on("test", vec![exits(1), exits(0).out("report", "ok")])
            .drive(retry_plan())
    };
    let (one, two) = (drive(), drive());
    assert_eq!(one.text, two.text);
    assert_eq!(one.commands, two.commands);

    // A run recorded event by event, then replayed into a fresh `Run` (reused jobs fed
    // before `start` again): the same commands at every step, the same statuses at the end.
    let before_start = [
        Event::JobReused {
            job: JobId::from("build"),
            outputs: [("digest".to_owned(), "sha256:abc".to_owned())].into(),
        },
        Event::JobReused { job: JobId::from("lint"), outputs: Default::default() },
    ];
    let job = |id: &str| JobId::from(id);
    let after_start = [
        Event::JobStarted { job: job("test"), attempt: 1 },
        Event::JobExited { job: job("test"), attempt: 1, outcome: Outcome::Exited(0) },
        Event::JobStarted { job: job("deploy"), attempt: 1 },
        Event::JobOutput { job: job("deploy"), attempt: 1, key: "url".into(), value: "u".into() },
        Event::JobExited { job: job("deploy"), attempt: 1, outcome: Outcome::Exited(0) },
    ];
    let record = || {
        let mut run = Run::new(retry_plan(), Default::default());
        let mut out: Vec<Vec<Command>> =
            before_start.iter().map(|e| run.handle(e.clone())).collect();
        out.push(run.start());
        out.extend(after_start.iter().map(|e| run.handle(e.clone())));
        let statuses: Vec<_> = run.jobs().map(|(id, s)| (id.clone(), s.clone())).collect();
        (out, statuses)
    };
    let (recorded, replayed) = (record(), record());
    assert_eq!(recorded, replayed);
    let commands = recorded.0.concat();
    assert_eq!(starts(&commands), [("test".to_owned(), 1), ("deploy".to_owned(), 1)]);
    assert_eq!(finish(&commands), Some(RunState::Success));
}

#[test]
fn cache_and_artifacts_are_rendered_when_the_job_starts() {
    use kiln_workflow::plan::{ArtifactSpec, ArtifactWhen, CachePolicy, CacheSpec};
    let plan = PlanDef::new("paths")
        .stage("build", vec![job("build")])
        .stage(
            "test",
            vec![
                job("test[linux]")
                    .matrix("os", "linux")
                    .cache(CacheSpec {
                        key: "deps-${{ matrix.os }}-${{ jobs.build.outputs.lock }}".to_owned(),
                        files: vec!["Cargo.lock".to_owned()],
                        paths: vec!["target/${{ matrix.os }}".to_owned()],
                        policy: CachePolicy::Pull,
                    })
                    .artifacts(ArtifactSpec {
                        paths: vec!["report-${{ matrix.os }}.xml".to_owned()],
                        when: ArtifactWhen::Always,
                    }),
                job("empty-key").cache(CacheSpec {
                    key: "${{ jobs.build.outputs.missing }}".to_owned(),
                    files: Vec::new(),
                    paths: vec!["x".to_owned()],
                    policy: CachePolicy::PullPush,
                }),
                job("escapes").artifacts(ArtifactSpec {
                    paths: vec!["ok".to_owned(), "${{ jobs.build.outputs.dir }}/x".to_owned()],
                    when: ArtifactWhen::OnSuccess,
                }),
            ],
        )
        .build();
    let t =
        Driver::new().on("build", vec![exits(0).out("lock", "abc").out("dir", "/etc")]).drive(plan);
    let test = started(&t.commands, "test[linux]");
    let cache = test.cache.as_ref().expect("cache");
    assert_eq!(cache.key, "deps-linux-abc");
    assert_eq!(cache.files, ["Cargo.lock"]);
    assert_eq!(cache.paths, ["target/linux"]);
    assert_eq!(cache.policy, CachePolicy::Pull);
    let artifacts = test.artifacts.as_ref().expect("artifacts");
    assert_eq!(artifacts.paths, ["report-linux.xml"]);
    assert_eq!(artifacts.when, ArtifactWhen::Always);
    assert_eq!(started(&t.commands, "empty-key").cache.as_ref().unwrap().key, "default");
    assert_eq!(state(&t, "escapes"), JobState::Failure);
    let reason = t.run.job(&JobId::from("escapes")).unwrap().reason.clone().unwrap();
    insta::assert_snapshot!(reason, @"artifact path 2 `/etc/x` is absolute: paths are relative to the workspace");
}

/// `needs:` inside a stage (compiled from YAML, as the compiler orders it): `package` starts
/// only once `compile` and `lint` of its own stage have ended; `docs` starts with them.
#[test]
fn needs_inside_a_stage_wait_for_their_need() {
    struct One(&'static str);
    impl kiln_workflow::Loader for One {
        fn load(&self, _: &str, path: &str) -> Result<kiln_workflow::Source, String> {
            Ok(kiln_workflow::Source { name: path.to_owned(), text: self.0.to_owned() })
        }
    }
    let yaml = "\
name: dag
stages:
  - name: build
    jobs:
      package: { script: echo package, needs: [compile, lint] }
      compile: { script: echo compile }
      lint: { script: echo lint }
      docs: { script: echo docs }
  - name: ship
    jobs:
      publish: { script: echo publish }
";
    let compiled = kiln_workflow::compile("dag.yml", &One(yaml));
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.diagnostics);
    let plan = std::sync::Arc::new(compiled.plan.expect("plan"));
    let t = Driver::new().on("compile", vec![exits(0).out("version", "1.0")]).drive(plan);
    insta::assert_snapshot!(t.text);
    let order: Vec<String> = starts(&t.commands).into_iter().map(|(id, _)| id).collect();
    assert_eq!(order, ["compile", "lint", "docs", "package", "publish"]);
    // `package` saw the output of the job of its stage it needed.
    let package = started(&t.commands, "package");
    assert_eq!(package.env.get("version").map(String::as_str), Some("1.0"));
    assert_eq!(t.run.state(), RunState::Success);
}

#[test]
fn trigger_params_and_deploy_image_and_environment_are_rendered_when_the_job_starts() {
    use kiln_workflow::server_job::{DeploySpec, TriggerSpec, TriggerTarget};
    let target = TriggerTarget {
        project: Some("docs".into()),
        pipeline: "publish".into(),
        params: BTreeMap::from([
            ("IMAGE".to_owned(), "${{ jobs.build.outputs.image }}".to_owned()),
            ("ENV".to_owned(), "${{ params.env }}".to_owned()),
        ]),
        wait: true,
    };
    let service = kiln_workflow::compile_service(
        "web.yml",
        "kind: service\nname: web\ncommand: [sleep, '60']\n",
    )
    .spec
    .unwrap();
    let deploy = DeploySpec {
        service,
        environment: "${{ params.env }}".into(),
        image: "${{ jobs.build.outputs.image }}".into(),
        timeout: None,
    };
    let plan = PlanDef::new("ship")
        .param(ParamSpec {
            name: "env".into(),
            kind: ParamKind::String,
            default: Some(ParamValue::String("staging".into())),
            required: false,
            description: None,
        })
        .stage("build", vec![job("build")])
        .stage(
            "ship",
            vec![
                job("docs").run(RunSpec::Trigger(TriggerSpec {
                    targets: vec![target.clone()],
                    group: false,
                })),
                job("deploy")
                    .run(RunSpec::Deploy(Box::new(deploy)))
                    .environment("${{ params.env }}"),
            ],
        )
        .build();
    let t = Driver::new().on("build", vec![exits(0).out("image", "shop/web:7")]).drive(plan);
    let RunSpec::Trigger(docs) = &started(&t.commands, "docs").run else { panic!("{}", t.text) };
    assert_eq!(docs.targets[0].params["IMAGE"], "shop/web:7");
    assert_eq!(docs.targets[0].params["ENV"], "staging");
    assert_eq!(docs.targets[0].pipeline, target.pipeline);
    let started_deploy = started(&t.commands, "deploy");
    let RunSpec::Deploy(d) = &started_deploy.run else { panic!("{}", t.text) };
    assert_eq!((d.image.as_str(), d.environment.as_str()), ("shop/web:7", "staging"));
    assert_eq!(started_deploy.environment.as_deref(), Some("staging"));

    // A template that does not render fails the job before it starts, naming the param.
    let broken = TriggerTarget {
        params: BTreeMap::from([("X".to_owned(), "${{ jobs. }}".to_owned())]),
        ..target
    };
    let plan = PlanDef::new("broken")
        .stage("build", vec![job("build")])
        .stage(
            "ship",
            vec![
                job("docs")
                    .run(RunSpec::Trigger(TriggerSpec { targets: vec![broken], group: false })),
            ],
        )
        .build();
    let t = Driver::new().drive(plan);
    let docs = t.run.job(&JobId::from("docs")).unwrap();
    assert_eq!(docs.state, JobState::Failure);
    let reason = docs.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("trigger param `X` of publish"), "{reason}");
}

#[test]
fn a_build_job_starts_with_its_tags_args_and_paths_rendered() {
    let build = kiln_workflow::build::BuildSpec {
        context: "${{ jobs.prep.outputs.dir }}".into(),
        dockerfile: "${{ jobs.prep.outputs.dir }}/Dockerfile".into(),
        tags: vec!["web:${{ jobs.prep.outputs.version }}".into(), "web:latest".into()],
        build_args: [("V".to_owned(), "${{ jobs.prep.outputs.version }}".to_owned())].into(),
        target: Some("release".into()),
        cache: true,
        push: true,
        credentials: [("r.example".to_owned(), "R_AUTH".to_owned())].into(),
        insecure_registries: vec![],
    };
    let plan = PlanDef::new("build-run")
        .stage("prep", vec![job("prep")])
        .stage("image", vec![job("image").run(RunSpec::Build(Box::new(build.clone())))])
        .build();
    let t =
        Driver::new().on("prep", vec![exits(0).out("dir", "app").out("version", "7")]).drive(plan);
    let RunSpec::Build(got) = &started(&t.commands, "image").run else {
        panic!("not a build: {:?}", t.commands);
    };
    let want = kiln_workflow::build::BuildSpec {
        context: "app".into(),
        dockerfile: "app/Dockerfile".into(),
        tags: vec!["web:7".into(), "web:latest".into()],
        build_args: [("V".to_owned(), "7".to_owned())].into(),
        ..build
    };
    assert_eq!(**got, want);
}
