//! Array jobs (`array: N`) through the engine: indexes handed out lazily within the
//! window, per-index retries, a run that stops, replay, and a 1,000,000-index array held in
//! a few counters.

use std::sync::Arc;

use kiln_engine::{
    ARRAY_WINDOW, Command, Event, IndexAttempt, IndexExit, JobState, Outcome, Run, RunState,
};
use kiln_workflow::plan::JobId;
use kiln_workflow::{Loader, Source};

struct Text(String);

impl Loader for Text {
    fn load(&self, _from: &str, path: &str) -> Result<Source, String> {
        Ok(Source { name: path.to_string(), text: self.0.clone() })
    }
}

/// A run of a workflow with array job `t` (size, parallelism, retry) and job `after` that
/// needs it.
fn run(size: u32, parallelism: Option<u32>, retry: u32) -> Run {
    let par = parallelism.map_or(String::new(), |p| format!("\n        parallelism: {p}"));
    let yaml = format!(
        "name: a\nstages:\n  - name: s\n    jobs:\n      t:\n        array: {size}{par}\n        retry: {retry}\n        script: [\"true\"]\n  - name: after\n    jobs:\n      after:\n        script: [\"true\"]\n"
    );
    let compiled = kiln_workflow::compile("a.yml", &Text(yaml));
    let plan = compiled.plan.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics));
    Run::new(Arc::new(plan), Default::default())
}

fn t() -> JobId {
    JobId::from("t")
}

/// The index attempts the commands hand out.
fn handed(cmds: &[Command]) -> Vec<IndexAttempt> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::StartIndexes { start, indexes } => {
                assert_eq!(start.job.id, t());
                Some(indexes.clone())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

fn exits(indexes: &[IndexAttempt], code: impl Fn(u32) -> i32) -> Event {
    Event::IndexesExited {
        job: t(),
        exits: indexes
            .iter()
            .map(|ia| IndexExit {
                index: ia.index,
                attempt: ia.attempt,
                outcome: Outcome::Exited(code(ia.index)),
                millis: 50,
            })
            .collect(),
    }
}

/// Runs the index attempts in flight (`out`) and every one handed out after them to its
/// end (`code` of each index and attempt) until the engine hands out no more; returns every
/// command the engine gave meanwhile.
fn drive(
    run: &mut Run,
    mut out: Vec<IndexAttempt>,
    code: impl Fn(u32, u32) -> i32,
) -> Vec<Command> {
    let mut all = Vec::new();
    loop {
        if out.is_empty() {
            return all;
        }
        run.handle(Event::IndexesStarted { job: t(), indexes: out.clone() });
        let ev = Event::IndexesExited {
            job: t(),
            exits: out
                .iter()
                .map(|ia| IndexExit {
                    index: ia.index,
                    attempt: ia.attempt,
                    outcome: Outcome::Exited(code(ia.index, ia.attempt)),
                    millis: 50,
                })
                .collect(),
        };
        let cmds = run.handle(ev);
        out = handed(&cmds);
        all.extend(cmds);
    }
}

#[test]
fn an_array_hands_out_its_indexes_in_order_within_the_window_then_its_dependents_start() {
    let mut r = run(10, Some(4), 0);
    let first = r.start();
    assert_eq!(handed(&first).iter().map(|i| i.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(r.job(&t()).unwrap().state, JobState::Queued);
    r.handle(Event::IndexesStarted { job: t(), indexes: handed(&first)[..1].to_vec() });
    assert_eq!(r.job(&t()).unwrap().state, JobState::Running);
    let p = r.array(&t()).unwrap();
    assert_eq!((p.running, p.queued, p.pending), (1, 3, 6));
    // Two end: two more go out, no more than the window.
    let more = r.handle(exits(&handed(&first)[..2], |_| 0));
    assert_eq!(handed(&more).iter().map(|i| i.index).collect::<Vec<_>>(), [4, 5]);
    let flying = [handed(&first)[2..].to_vec(), handed(&more)].concat();
    let rest = drive(&mut r, flying, |_, _| 0);
    assert!(
        rest.iter().any(|c| matches!(c, Command::StartJob(s) if s.job.id == JobId::from("after"))),
        "the job after the array starts once every index ended: {rest:?}"
    );
    let p = r.array(&t()).unwrap();
    assert_eq!((p.succeeded, p.failed, p.pending, p.running, p.queued), (10, 0, 0, 0, 0));
    assert_eq!(p.histogram.iter().sum::<u32>(), 10);
    assert_eq!(r.job(&t()).unwrap().state, JobState::Success);
}

#[test]
fn a_failing_index_is_retried_alone_and_the_array_fails_naming_it() {
    let mut r = run(6, None, 1);
    let first = r.start();
    let all = drive(&mut r, handed(&first), |index, _| if index == 3 { 1 } else { 0 });
    let retried: Vec<_> = handed(&all).into_iter().filter(|ia| ia.attempt == 2).collect();
    assert_eq!(retried, [IndexAttempt { index: 3, attempt: 2 }], "only index 3 retried, once");
    let p = r.array(&t()).unwrap();
    assert_eq!((p.succeeded, p.failed, p.retries), (5, 1, 1));
    assert_eq!(p.failed_ranges(), "3");
    let status = r.job(&t()).unwrap();
    assert_eq!(status.state, JobState::Failure);
    assert_eq!(
        status.reason.as_deref(),
        Some("1 of 6 indexes failed (3); index 3: exited with code 1 after 2 attempts")
    );
    // The job after it is skipped as after any failed job, and the run fails.
    assert_eq!(r.job(&JobId::from("after")).unwrap().state, JobState::Skipped);
    assert_eq!(r.state(), RunState::Failure);
}

#[test]
fn a_retry_that_passes_makes_the_array_succeed() {
    let mut r = run(3, None, 2);
    let first = r.start();
    drive(&mut r, handed(&first), |index, attempt| i32::from(index == 1 && attempt < 3));
    let p = r.array(&t()).unwrap();
    assert_eq!((p.succeeded, p.failed, p.retries), (3, 0, 2));
    assert_eq!(r.job(&t()).unwrap().state, JobState::Success);
}

#[test]
fn stale_reports_and_reports_of_ended_indexes_change_nothing() {
    let mut r = run(2, None, 0);
    let first = r.start();
    let out = handed(&first);
    r.handle(exits(&out[..1], |_| 0));
    // The same end again, an attempt never handed out, an index out of range.
    r.handle(exits(&out[..1], |_| 1));
    r.handle(exits(&[IndexAttempt { index: 1, attempt: 5 }], |_| 1));
    r.handle(exits(&[IndexAttempt { index: 99, attempt: 1 }], |_| 1));
    let p = r.array(&t()).unwrap();
    assert_eq!((p.succeeded, p.failed, p.queued), (1, 0, 1));
}

#[test]
fn a_canceled_run_cancels_what_flies_and_counts_what_never_went() {
    let mut r = run(1000, Some(10), 0);
    let first = r.start();
    let cmds = r.handle(Event::Cancel { by: "ann".into() });
    let canceled: Vec<IndexAttempt> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::CancelIndexes { job, indexes } if *job == t() => Some(indexes.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(canceled, handed(&first), "every index in flight, and only those");
    assert_eq!(r.array(&t()).unwrap().canceled, 990);
    let ended = Event::IndexesExited {
        job: t(),
        exits: canceled
            .iter()
            .map(|ia| IndexExit {
                index: ia.index,
                attempt: ia.attempt,
                outcome: Outcome::Canceled,
                millis: 0,
            })
            .collect(),
    };
    let last = r.handle(ended);
    assert!(handed(&last).is_empty(), "nothing new after a cancel");
    assert_eq!(r.job(&t()).unwrap().state, JobState::Canceled);
    assert_eq!(r.state(), RunState::Canceled);
}

#[test]
fn replaying_the_events_rebuilds_the_array_and_what_flies() {
    let mut r = run(20, Some(5), 1);
    let mut events = Vec::new();
    let first = r.start();
    let out = handed(&first);
    let started = Event::IndexesStarted { job: t(), indexes: out.clone() };
    r.handle(started.clone());
    events.push(started);
    let ended = exits(&out[..3], |i| i32::from(i == 1));
    let more = r.handle(ended.clone());
    events.push(ended);
    let mut again = run(20, Some(5), 1);
    again.start();
    for e in events {
        again.handle(e);
    }
    assert_eq!(again.array(&t()), r.array(&t()));
    let (_, flying) = again.array_in_flight(&t()).unwrap();
    let mut expect: Vec<IndexAttempt> = out[3..].to_vec();
    expect.extend(handed(&more));
    expect.sort();
    assert_eq!(flying, expect, "index 1's retry and the next ones are in flight");
}

#[test]
fn a_million_indexes_cost_the_window_not_the_size() {
    let mut r = run(1_000_000, None, 0);
    let first = r.start();
    assert_eq!(handed(&first).len(), ARRAY_WINDOW as usize);
    let p = r.array(&t()).unwrap();
    assert_eq!(p.pending, 1_000_000 - ARRAY_WINDOW);
    // Run it all: the engine keeps no per-index record of what ended.
    drive(&mut r, handed(&first), |_, _| 0);
    let p = r.array(&t()).unwrap();
    assert_eq!(p.succeeded, 1_000_000);
    assert!(p.failed_indexes.is_empty());
    assert_eq!(r.job(&t()).unwrap().state, JobState::Success);
}
