//! `on.schedule` and `on.api`: what compiles into the plan, and every mistake reported at its
//! line and column.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use kiln_workflow::plan::ScheduleTrigger;
use kiln_workflow::schedule::Missed;

use crate::support::{MapLoader, check};

fn plan(yaml: &str) -> kiln_workflow::plan::Plan {
    let files = [("main.yml", yaml)];
    let compiled = kiln_workflow::compile("main.yml", &MapLoader::new(&files));
    let problems: Vec<String> = compiled.diagnostics.iter().map(|d| d.to_string()).collect();
    compiled.plan.unwrap_or_else(|| panic!("should compile:\n{}", problems.join("\n")))
}

const STAGES: &str = "stages:\n  - name: s\n    jobs: { a: { script: echo } }\n";

#[test]
fn schedules_compile_with_zone_params_and_policy() {
    let p = plan(&format!(
        r#"name: nightly
params:
  target: {{ type: choice, options: [dev, prod], required: true }}
  count: {{ type: number, default: 1 }}
on:
  schedule:
    - cron: "*/5 * * * *"
      timezone: Asia/Shanghai
      params: {{ target: prod, count: 3 }}
      missed: run-once
    - cron: "* * * * * *"
      params: {{ target: dev }}
  api: false
{STAGES}"#
    ));
    assert_eq!(
        p.triggers.schedule,
        vec![
            ScheduleTrigger {
                cron: "*/5 * * * *".into(),
                timezone: "Asia/Shanghai".into(),
                params: BTreeMap::from([
                    ("count".to_string(), "3".to_string()),
                    ("target".to_string(), "prod".to_string())
                ]),
                missed: Missed::RunOnce,
            },
            ScheduleTrigger {
                cron: "* * * * * *".into(),
                timezone: "UTC".into(),
                params: BTreeMap::from([("target".to_string(), "dev".to_string())]),
                missed: Missed::Skip,
            },
        ]
    );
    assert!(!p.triggers.api);
    let first = &p.triggers.schedule[0];
    assert_eq!(first.triggered_by(), "schedule \"*/5 * * * *\" (Asia/Shanghai)");
    let s = first.schedule().expect("checked");
    let next = s.upcoming(Utc.with_ymd_and_hms(2026, 11, 30, 15, 57, 0).unwrap(), 2);
    let at: Vec<String> = next.iter().map(|t| t.to_rfc3339()).collect();
    assert_eq!(at, ["2026-12-01T00:00:00+08:00", "2026-12-01T00:05:00+08:00"]);
}

#[test]
fn one_schedule_without_a_list_and_api_on_by_default() {
    let p = plan(&format!("name: t\non: {{ schedule: {{ cron: '@daily' }} }}\n{STAGES}"));
    assert_eq!(p.triggers.schedule.len(), 1);
    assert!(p.triggers.api, "runs may be started through the API unless on.api is false");
    let p = plan(&format!("name: t\n{STAGES}"));
    assert!(p.triggers.api && p.triggers.schedule.is_empty());
}

#[test]
fn a_template_caller_s_schedule_is_checked_against_the_template_s_params() {
    let files = [
        (
            "main.yml",
            "name: caller\nuses: t.yml\nwith: { env: prod }\non:\n  schedule:\n    - { cron: '0 3 * * *', params: { envv: x } }\n",
        ),
        (
            "t.yml",
            "name: t\nparams:\n  env: { type: string, required: true }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n",
        ),
    ];
    insta::assert_snapshot!(crate::support::check_files(&files), @"main.yml:6:38: error: schedule params: the workflow has no param 'envv' (did you mean 'env'?); its params: env");
}

#[test]
fn mistakes_are_reported_where_they_are() {
    insta::assert_snapshot!(check(r#"name: t
params:
  n: { type: number, default: 1 }
  who: { type: string, required: true }
on:
  schedule:
    - { cron: "*/5 * * *", params: { who: a } }
    - { cron: "61 * * * *", params: { who: a } }
    - { cron: "0 3 * * *", timezone: Asia/Shanghia, params: { who: a } }
    - { cron: "0 3 * * *", params: { n: many, who: a } }
    - { cron: "0 3 * * *", params: { nn: 2, who: a } }
    - { cron: "0 3 * * *" }
    - { timezone: UTC }
    - { cron: "0 4 * * *", missed: later, params: { who: a } }
    - { cron: "0 6 * * *", params: { who: a }, every: 1 }
    - { cron: "0 5 * * *", params: { who: a } }
    - { cron: "0 5 * * *", params: { who: a }, missed: run-once }
  api: maybe
stages:
  - name: s
    jobs: { a: { script: echo } }
"#), @r#"
    main.yml:7:15: error: schedule cron '*/5 * * *': expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found 4
    main.yml:8:15: error: schedule cron '61 * * * *': number out of bounds; fields: [second 0-59] minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT
    main.yml:9:38: error: schedule timezone: 'Asia/Shanghia' is not an IANA time zone such as Asia/Shanghai or UTC (did you mean 'Asia/Shanghai'?)
    main.yml:10:41: error: schedule param 'n': expected a number, found 'many'
    main.yml:11:38: error: schedule params: the workflow has no param 'nn' (did you mean 'n'?); its params: n, who
    main.yml:12:7: error: schedule: param 'who' is required and has no default; give it in the schedule's params: { who: ... }
    main.yml:13:7: error: schedule has no 'cron': add cron: "<minute hour day month weekday>"
    main.yml:14:36: error: schedule missed: expected one of skip, run-once, found 'later'
    main.yml:15:48: error: unknown key 'every' in schedule; expected one of: cron, timezone, params, missed
    main.yml:17:7: error: this schedule repeats an earlier one (same cron, timezone and params): remove one
    main.yml:18:8: error: on.api: expected true or false, found 'maybe'
    "#);
}
