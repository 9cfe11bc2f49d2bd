//! The JSON of every `Event`: it is stored in each run's event log and replayed after a
//! restart, so a change of shape must show in review (and needs a migration).

use kiln_engine::{Event, IndexAttempt, IndexExit, Outcome, Timer};
use kiln_workflow::plan::JobId;

#[test]
fn event_json_is_stable() {
    let job = JobId::from("build");
    let events = vec![
        Event::JobStarted { job: job.clone(), attempt: 1 },
        Event::JobOutput {
            job: job.clone(),
            attempt: 1,
            key: "version".into(),
            value: "1.2".into(),
        },
        Event::JobExited { job: job.clone(), attempt: 1, outcome: Outcome::Exited(3) },
        Event::JobExited { job: job.clone(), attempt: 2, outcome: Outcome::TimedOut },
        Event::JobExited { job: job.clone(), attempt: 3, outcome: Outcome::Canceled },
        Event::JobExited {
            job: job.clone(),
            attempt: 4,
            outcome: Outcome::Error("image not found".into()),
        },
        Event::JobExited {
            job,
            attempt: 5,
            outcome: Outcome::Killed {
                code: 137,
                why: "killed by SIGKILL from outside Kiln".into(),
            },
        },
        Event::Approved { stage: "prod".into(), by: "ann".into() },
        Event::Rejected { stage: "prod".into(), by: "bob".into() },
        Event::Cancel { by: "cli".into() },
        Event::TimerFired(Timer::RunTimeout),
        Event::JobReused {
            job: JobId::from("build"),
            outputs: [("digest".to_owned(), "sha256:abc".to_owned())].into(),
        },
        Event::JobReused { job: JobId::from("lint"), outputs: Default::default() },
        Event::IndexesStarted {
            job: JobId::from("shard"),
            indexes: vec![
                IndexAttempt { index: 0, attempt: 1 },
                IndexAttempt { index: 7, attempt: 2 },
            ],
        },
        Event::IndexesExited {
            job: JobId::from("shard"),
            exits: vec![
                IndexExit { index: 0, attempt: 1, outcome: Outcome::Exited(0), millis: 12 },
                IndexExit {
                    index: 7,
                    attempt: 2,
                    outcome: Outcome::Error("agent lost".into()),
                    millis: 0,
                },
            ],
        },
    ];
    let lines: Vec<String> = events.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    insta::assert_snapshot!(lines.join("\n"));
    for (event, line) in events.iter().zip(&lines) {
        let back: Event = serde_json::from_str(line).unwrap();
        assert_eq!(&back, event);
    }
}

#[test]
fn state_names_are_the_serde_names_and_read_back() {
    use kiln_engine::{JobState, RunState};
    for s in RunState::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        assert_eq!(s.as_str().parse::<RunState>(), Ok(*s));
    }
    for s in JobState::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        assert_eq!(s.to_string().parse::<JobState>(), Ok(*s));
    }
    assert_eq!(RunState::ALL.len(), 8);
    assert_eq!(JobState::ALL.len(), 8);
    let err = "done".parse::<RunState>().unwrap_err().to_string();
    assert_eq!(
        err,
        "run state `done` is not one of pending, scheduling, running, paused, success, failure, \
         canceled, timeout"
    );
}
