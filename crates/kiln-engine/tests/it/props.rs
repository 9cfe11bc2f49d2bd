//! Property tests: random DAG plans driven by a random (seeded) driver, with cancels,
//! approvals, rejections, hangs, retries, jobs reused from an earlier run and junk events; the
//! engine's invariants are checked after every step, and the whole run is replayed into a
//! fresh `Run`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kiln_engine::{
    Command, Event, JobState, JobStatus, Outcome, Run, RunState, SharedPlan, StopReason, Timer,
};
use kiln_workflow::plan::{JobId, Plan, RetryOn, RetryPolicy, RunSpec, Stage, StageKind};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::support::job;

#[derive(Debug, Clone)]
struct JobSpec {
    /// `None`: every job of the previous job stage.
    needs: Option<Vec<Index>>,
    condition: usize,
    retry_max: u32,
    retry_on: u8,
}

#[derive(Debug, Clone)]
enum StageSpec {
    Approval,
    Jobs(Vec<JobSpec>),
}

#[derive(Debug, Clone)]
struct PlanSpec {
    stages: Vec<StageSpec>,
    timeout: bool,
}

const CONDITIONS: [&str; 3] = ["success()", "failure()", "always()"];

fn job_spec() -> impl Strategy<Value = JobSpec> {
    (
        proptest::option::weighted(0.6, proptest::collection::vec(any::<Index>(), 0..4)),
        prop_oneof![3 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
        0u32..4,
        1u8..8,
    )
        .prop_map(|(needs, condition, retry_max, retry_on)| JobSpec {
            needs,
            condition,
            retry_max,
            retry_on,
        })
}

fn plan_spec(max_stages: usize, max_jobs: usize) -> impl Strategy<Value = PlanSpec> {
    let stage = prop_oneof![
        1 => Just(StageSpec::Approval),
        4 => proptest::collection::vec(job_spec(), 1..=max_jobs).prop_map(StageSpec::Jobs),
    ];
    (proptest::collection::vec(stage, 1..=max_stages), any::<bool>())
        .prop_map(|(stages, timeout)| PlanSpec { stages, timeout })
}

/// Output key of job `n`: unique, so env merging never hides one.
fn key(n: usize) -> String {
    format!("o{n}")
}

fn build(spec: &PlanSpec) -> SharedPlan {
    let mut plan = Plan {
        name: "prop".to_owned(),
        params: Vec::new(),
        env: BTreeMap::from([("GLOBAL".to_owned(), "g".to_owned())]),
        stages: Vec::new(),
        jobs: Vec::new(),
        timeout: spec.timeout.then(|| Duration::from_secs(3600)),
        concurrency: None,
        triggers: Default::default(),
        source: None,
        concurrency_group: None,
        pools: Vec::new(),
        prepull: Vec::new(),
    };
    let mut previous: Vec<JobId> = Vec::new();
    let mut gate = None;
    for (s, stage) in spec.stages.iter().enumerate() {
        match stage {
            StageSpec::Approval => {
                plan.stages.push(Stage {
                    name: format!("approve{s}"),
                    kind: StageKind::Approval { description: None },
                });
                gate = Some(s);
            }
            StageSpec::Jobs(jobs) => {
                let mut ids = Vec::new();
                for j in jobs {
                    let n = plan.jobs.len();
                    let needs: Vec<JobId> = match &j.needs {
                        None => previous.clone(),
                        Some(_) if n == 0 => Vec::new(),
                        Some(picks) => {
                            let mut set = BTreeSet::new();
                            for p in picks {
                                set.insert(p.index(n));
                            }
                            set.into_iter().map(|i| plan.jobs[i].id.clone()).collect()
                        }
                    };
                    let mut lines = vec![format!("echo {n}")];
                    for need in &needs {
                        let m: usize = need.as_str()[1..].parse().unwrap();
                        lines.push(format!("echo ${{{{ jobs.{need}.outputs.{} }}}}", key(m)));
                    }
                    let mut on = Vec::new();
                    for (bit, kind) in
                        [RetryOn::Failure, RetryOn::Timeout, RetryOn::Error].into_iter().enumerate()
                    {
                        if j.retry_on & (1 << bit) != 0 {
                            on.push(kind);
                        }
                    }
                    let mut job = job(&format!("j{n}"))
                        .script(&lines.iter().map(String::as_str).collect::<Vec<_>>())
                        .env(&format!("E{n}"), "${{ matrix.none }}x")
                        .when(CONDITIONS[j.condition])
                        .needs(&[])
                        .into_job();
                    job.needs = needs;
                    job.stage = s;
                    job.gate = gate;
                    job.retry = RetryPolicy { max: j.retry_max, on };
                    ids.push(job.id.clone());
                    plan.jobs.push(job);
                }
                plan.stages
                    .push(Stage { name: format!("stage{s}"), kind: StageKind::Jobs(ids.clone()) });
                previous = ids;
            }
        }
    }
    Arc::new(plan)
}

/// A tiny deterministic generator for the driver's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Random outcomes, hangs, cancels, approvals and rejections.
    Chaos,
    /// Every attempt exits 1; every approval is granted; no cancel.
    AllFail,
}

/// The driver and the checker in one.
struct Sim {
    plan: SharedPlan,
    run: Run,
    rng: Rng,
    mode: Mode,
    /// Remaining events of each active attempt, by job index.
    active: BTreeMap<usize, (u32, VecDeque<Event>)>,
    /// Outputs delivered for each job's latest attempt.
    delivered: Vec<BTreeMap<String, String>>,
    starts: Vec<u32>,
    timer_armed: bool,
    paused: Option<String>,
    approved: BTreeSet<String>,
    stopped: Option<StopReason>,
    canceled_pending: Vec<usize>,
    /// Outputs of the jobs reused from an earlier run (`JobReused` before `start`).
    reused: BTreeMap<usize, BTreeMap<String, String>>,
    /// `JobReused` events fed before `start`, for the replay.
    before: Vec<Event>,
    /// Events fed after `start`, for the replay.
    fed: Vec<Event>,
    /// Commands of `start`, then of each fed event.
    out: Vec<Vec<Command>>,
    finishes: Vec<RunState>,
}

impl Sim {
    fn new(plan: SharedPlan, seed: u64, mode: Mode) -> Sim {
        let n = plan.jobs.len();
        Sim {
            run: Run::new(plan.clone(), Default::default()),
            plan,
            rng: Rng(seed | 1),
            mode,
            active: BTreeMap::new(),
            delivered: vec![BTreeMap::new(); n],
            starts: vec![0; n],
            timer_armed: false,
            paused: None,
            approved: BTreeSet::new(),
            stopped: None,
            canceled_pending: Vec::new(),
            reused: BTreeMap::new(),
            before: Vec::new(),
            fed: Vec::new(),
            out: Vec::new(),
            finishes: Vec::new(),
        }
    }

    /// Marks the picked jobs as reused from an earlier run, each with one output.
    fn reuse(mut self, picks: &[Index]) -> Sim {
        let n = self.plan.jobs.len();
        if n == 0 {
            return self;
        }
        for p in picks {
            let i = p.index(n);
            let outputs = BTreeMap::from([(key(i), format!("old{i}"))]);
            self.before.push(Event::JobReused {
                job: self.plan.jobs[i].id.clone(),
                outputs: outputs.clone(),
            });
            self.reused.insert(i, outputs);
        }
        self
    }

    /// The outputs job `m` must have: delivered by its latest attempt, or, for a reused job
    /// that ended `Success` without an attempt, those it was reused with.
    fn expected_outputs(&self, m: usize) -> BTreeMap<String, String> {
        match self.reused.get(&m) {
            Some(outputs) if self.starts[m] == 0 => {
                if self.status(m).state == JobState::Success {
                    outputs.clone()
                } else {
                    BTreeMap::new()
                }
            }
            _ => self.delivered[m].clone(),
        }
    }

    fn index(&self, id: &JobId) -> usize {
        self.plan.jobs.iter().position(|j| &j.id == id).unwrap()
    }

    fn status(&self, i: usize) -> &JobStatus {
        self.run.job(&self.plan.jobs[i].id).unwrap()
    }

    /// Runs to the end, checking every step. Returns the number of steps.
    fn drive(&mut self) -> Result<(), TestCaseError> {
        for event in &self.before {
            let commands = self.run.handle(event.clone());
            prop_assert!(commands.is_empty(), "JobReused gave {:?}", commands);
            prop_assert_eq!(self.run.state(), RunState::Pending);
        }
        let commands = self.run.start();
        self.apply(&commands, None)?;
        self.out.push(commands);
        for _ in 0..100_000 {
            if !self.finishes.is_empty() {
                break;
            }
            let event = self.choose();
            self.feed(event)?;
        }
        prop_assert_eq!(self.finishes.len(), 1, "exactly one Finish");
        self.check_end()
    }

    /// Picks the next event.
    fn choose(&mut self) -> Event {
        let chaos = self.mode == Mode::Chaos;
        if chaos && self.rng.chance(2) {
            return Event::Cancel { by: "chaos".to_owned() };
        }
        if chaos && self.timer_armed && self.rng.chance(1) {
            return Event::TimerFired(Timer::RunTimeout);
        }
        if self.rng.chance(3) {
            return self.junk();
        }
        let ready: Vec<usize> =
            self.active.iter().filter(|(_, (_, q))| !q.is_empty()).map(|(&i, _)| i).collect();
        if !ready.is_empty() {
            let i = ready[self.rng.below(ready.len() as u64) as usize];
            return self.active.get_mut(&i).unwrap().1.pop_front().unwrap();
        }
        if let Some(stage) = self.paused.clone() {
            let by = "approver".to_owned();
            return match (self.mode, self.rng.below(5)) {
                (Mode::AllFail, _) | (_, 0..=2) => Event::Approved { stage, by },
                (_, 3) => Event::Rejected { stage, by },
                _ => Event::Cancel { by },
            };
        }
        // Only hung attempts are left.
        if self.timer_armed && self.rng.chance(50) {
            Event::TimerFired(Timer::RunTimeout)
        } else {
            Event::Cancel { by: "impatient".to_owned() }
        }
    }

    /// An event that must change nothing.
    fn junk(&mut self) -> Event {
        let n = self.plan.jobs.len().max(1);
        let job = self.plan.jobs.get(self.rng.below(n as u64) as usize).map(|j| j.id.clone());
        let job = job.unwrap_or_else(|| JobId::from("nobody"));
        match self.rng.below(4) {
            0 => Event::JobExited { job, attempt: 99, outcome: Outcome::Exited(0) },
            1 => Event::JobStarted { job: JobId::from("nobody"), attempt: 1 },
            2 => Event::Approved { stage: "no-such-stage".to_owned(), by: "x".to_owned() },
            _ => Event::JobOutput { job, attempt: 0, key: "k".to_owned(), value: "v".to_owned() },
        }
    }

    fn is_junk(event: &Event) -> bool {
        match event {
            Event::JobExited { attempt, .. } => *attempt == 99,
            Event::JobStarted { job, .. } => job.as_str() == "nobody",
            Event::Approved { stage, .. } => stage == "no-such-stage",
            Event::JobOutput { attempt, .. } => *attempt == 0,
            _ => false,
        }
    }

    fn feed(&mut self, event: Event) -> Result<(), TestCaseError> {
        let junk = Sim::is_junk(&event);
        let before: Vec<JobState> = self.run.jobs().map(|(_, s)| s.state).collect();
        let stopping_before = self.run.stop_reason().is_some();
        let state_before = self.run.state();
        if let Event::JobOutput { job, key, value, attempt } = &event
            && !junk
        {
            let i = self.index(job);
            prop_assert_eq!(*attempt, self.starts[i]);
            self.delivered[i].insert(key.clone(), value.clone());
        }
        self.fed.push(event.clone());
        let commands = self.run.handle(event.clone());
        if junk || (stopping_before && matches!(event, Event::Cancel { .. } | Event::TimerFired(_)))
        {
            prop_assert!(commands.is_empty(), "{:?} gave {:?}", event, commands);
            prop_assert_eq!(self.run.state(), state_before);
        }
        if let Event::JobExited { job, .. } = &event
            && !junk
        {
            self.active.remove(&self.index(job));
        }
        if let Event::Approved { stage, .. } = &event
            && self.paused.as_ref() == Some(stage)
        {
            self.approved.insert(stage.clone());
            self.paused = None;
        }
        if self.run.stop_reason().is_some() {
            self.paused = None;
        }
        // (3) the step that stops the run cancels every pending job and every active one.
        if !stopping_before && let Some(stop) = self.run.stop_reason().cloned() {
            self.stopped = Some(stop);
            for (i, old) in before.iter().enumerate() {
                match old {
                    JobState::Pending => {
                        prop_assert_eq!(self.status(i).state, JobState::Canceled);
                        self.canceled_pending.push(i);
                    }
                    JobState::Queued | JobState::Running => {
                        let id = &self.plan.jobs[i].id;
                        let attempt = self.starts[i];
                        let told = commands.iter().any(|c| {
                            matches!(c,
                            Command::CancelJob { job, attempt: a } if job == id && *a == attempt)
                        });
                        prop_assert!(told, "no CancelJob for {}", id);
                    }
                    _ => {}
                }
            }
        }
        self.apply(&commands, Some(&event))?;
        self.out.push(commands);
        Ok(())
    }

    /// Carries out commands and checks each against the state it was issued in.
    fn apply(&mut self, commands: &[Command], cause: Option<&Event>) -> Result<(), TestCaseError> {
        prop_assert!(self.finishes.is_empty(), "a command after Finish: {:?}", commands);
        for (k, c) in commands.iter().enumerate() {
            match c {
                Command::StartJob(s) => self.started(s, cause)?,
                Command::CancelJob { job, attempt } => {
                    let i = self.index(job);
                    prop_assert_eq!(*attempt, self.starts[i]);
                    prop_assert!(self.stopped.is_some(), "CancelJob without a stop");
                    if let Some((_, queue)) = self.active.get_mut(&i) {
                        let real = queue.iter().any(|e| matches!(e, Event::JobExited { .. }));
                        if !real || self.rng.chance(80) {
                            // Killed: whatever it had not done yet, it won't.
                            queue.retain(|e| matches!(e, Event::JobStarted { .. }));
                            queue.push_back(Event::JobExited {
                                job: job.clone(),
                                attempt: *attempt,
                                outcome: Outcome::Canceled,
                            });
                        }
                    }
                }
                Command::StartIndexes { .. } | Command::CancelIndexes { .. } => {
                    prop_assert!(false, "an index command for a plan without arrays: {:?}", c);
                }
                Command::Pause { stage, .. } => {
                    prop_assert!(self.paused.is_none());
                    prop_assert_eq!(self.run.state(), RunState::Paused);
                    prop_assert_eq!(self.run.paused_at(), Some(stage.as_str()));
                    let g = self.plan.stages.iter().position(|s| &s.name == stage).unwrap();
                    for (i, j) in self.plan.jobs.iter().enumerate() {
                        if j.stage < g {
                            let state = self.status(i).state;
                            prop_assert!(state.is_final());
                            prop_assert!(!matches!(state, JobState::Failure | JobState::Timeout));
                        }
                    }
                    self.paused = Some(stage.clone());
                }
                Command::ArmTimer { timer: Timer::RunTimeout, .. } => {
                    prop_assert!(cause.is_none() && k == 0, "the timer is armed first, at start");
                    self.timer_armed = true;
                }
                Command::Finish(state) => {
                    prop_assert_eq!(k, commands.len() - 1, "Finish is the last command");
                    prop_assert_eq!(self.run.state(), *state);
                    self.finishes.push(*state);
                }
            }
        }
        Ok(())
    }

    fn started(
        &mut self,
        s: &kiln_engine::StartJob,
        cause: Option<&Event>,
    ) -> Result<(), TestCaseError> {
        let i = self.index(&s.job.id);
        let plan_job = &self.plan.jobs[i];
        prop_assert!(!self.reused.contains_key(&i), "reused job {} was started", s.job.id);
        // (3) nothing starts once the run is stopping.
        prop_assert!(self.stopped.is_none(), "StartJob after a stop");
        prop_assert_eq!(s.attempt, self.starts[i] + 1);
        self.starts[i] += 1;
        if s.attempt > 1 {
            let retried = matches!(cause, Some(Event::JobExited { job, attempt, outcome })
                if job == &s.job.id && *attempt == s.attempt - 1 && *outcome != Outcome::Exited(0));
            prop_assert!(retried, "a retry follows a failed exit of the previous attempt");
        }
        // (1) every need is final, and the gate was approved or skipped after a failure.
        for need in &plan_job.needs {
            prop_assert!(self.run.job(need).unwrap().state.is_final(), "need {} not final", need);
        }
        if let Some(g) = plan_job.gate {
            let name = &self.plan.stages[g].name;
            let mut failed_before = false;
            for (k, j) in self.plan.jobs.iter().enumerate() {
                if j.stage < g {
                    let state = self.status(k).state;
                    prop_assert!(state.is_final());
                    failed_before |= matches!(state, JobState::Failure | JobState::Timeout);
                }
            }
            prop_assert!(self.approved.contains(name) || failed_before, "gate {} not open", name);
        }
        // (4) the env and the rendered script carry the outputs of the needs.
        let RunSpec::Script(lines) = &s.job.run else {
            return Err(TestCaseError::fail("script expected"));
        };
        for (n, need) in plan_job.needs.iter().enumerate() {
            let m = self.index(need);
            let outputs = &self.run.job(need).unwrap().outputs;
            prop_assert_eq!(outputs, &self.expected_outputs(m));
            for (k, v) in outputs {
                prop_assert_eq!(s.job.env.get(k), Some(v));
            }
            let value = outputs.get(&key(m)).map(String::as_str).unwrap_or("");
            prop_assert_eq!(&lines[n + 1], &format!("echo {value}"));
        }
        prop_assert_eq!(s.job.env.get("GLOBAL").map(String::as_str), Some("g"));
        prop_assert_eq!(s.job.env.get(&format!("E{i}")).map(String::as_str), Some("x"));

        // Script the attempt.
        let attempt = s.attempt;
        let id = s.job.id.clone();
        let mut queue = VecDeque::new();
        queue.push_back(Event::JobStarted { job: id.clone(), attempt });
        self.delivered[i].clear();
        let roll = self.rng.below(10);
        if self.mode == Mode::AllFail || self.rng.chance(70) {
            if self.rng.chance(30) {
                queue.push_back(output(&id, attempt, key(i), "overwritten".to_owned()));
            }
            queue.push_back(output(&id, attempt, key(i), format!("v{i}-{attempt}")));
        }
        let outcome = match (self.mode, roll) {
            (Mode::AllFail, _) => Some(Outcome::Exited(1)),
            (_, 0..=4) => Some(Outcome::Exited(0)),
            (_, 5..=6) => Some(Outcome::Exited(1)),
            (_, 7) => Some(Outcome::TimedOut),
            (_, 8) => Some(Outcome::Error("boom".to_owned())),
            _ => None,
        };
        if let Some(outcome) = outcome {
            queue.push_back(Event::JobExited { job: id, attempt, outcome });
        }
        self.active.insert(i, (attempt, queue));
        Ok(())
    }

    fn check_end(&mut self) -> Result<(), TestCaseError> {
        let state = self.run.state();
        prop_assert!(state.is_final());
        prop_assert_eq!(Some(&state), self.finishes.last());
        let states: Vec<JobState> = self.run.jobs().map(|(_, s)| s.state).collect();
        prop_assert!(states.iter().all(|s| s.is_final()), "{:?}", states);
        // (2) the final state follows from the job states, or from the stop.
        match &self.stopped {
            Some(stop) => prop_assert_eq!(state, stop.final_state()),
            None => {
                let failed =
                    states.iter().any(|s| matches!(s, JobState::Failure | JobState::Timeout));
                let canceled = states.contains(&JobState::Canceled);
                let expected = if failed {
                    RunState::Failure
                } else if canceled {
                    RunState::Canceled
                } else {
                    RunState::Success
                };
                prop_assert_eq!(state, expected);
            }
        }
        // (3) jobs pending at the stop ended canceled.
        for &i in &self.canceled_pending {
            prop_assert_eq!(states[i], JobState::Canceled);
        }
        // (5) starts per job.
        for (i, j) in self.plan.jobs.iter().enumerate() {
            prop_assert!(self.starts[i] <= 1 + j.retry.max);
            prop_assert_eq!(self.status(i).attempts, self.starts[i]);
            if self.mode == Mode::AllFail && self.starts[i] > 0 {
                let expected =
                    if j.retry.on.contains(&RetryOn::Failure) { 1 + j.retry.max } else { 1 };
                prop_assert_eq!(self.starts[i], expected, "starts of {}", j.id);
                prop_assert_eq!(states[i], JobState::Failure);
            }
        }
        // Conditions saw `failure()` as the final states say: a job (transitively) needed
        // failed or timed out, or its gate was passed because a job before it failed.
        let bad = |s: JobState| matches!(s, JobState::Failure | JobState::Timeout);
        let mut failed = vec![false; states.len()];
        for (i, j) in self.plan.jobs.iter().enumerate() {
            let gate_skipped = j.gate.is_some_and(|g| {
                self.plan.jobs.iter().zip(&states).any(|(k, &s)| k.stage < g && bad(s))
            });
            failed[i] = gate_skipped
                || j.needs.iter().map(|n| self.index(n)).any(|n| failed[n] || bad(states[n]));
            // A reused job that ended `Success` ran as far as conditions go.
            let reused_success = self.reused.contains_key(&i) && states[i] == JobState::Success;
            let ran = self.starts[i] > 0 || reused_success;
            if ran || states[i] == JobState::Skipped {
                let expected = match j.condition.as_str() {
                    "success()" => !failed[i],
                    "failure()" => failed[i],
                    _ => true,
                };
                prop_assert_eq!(ran, expected, "{} ({})", j.id, j.condition);
            }
            if reused_success {
                let status = self.status(i);
                prop_assert_eq!(status.attempts, 0);
                prop_assert_eq!(&status.outputs, &self.reused[&i]);
            }
        }
        let counts = self.run.counts();
        prop_assert_eq!(counts.done(), states.len());
        prop_assert_eq!(
            counts.failed(),
            states.iter().filter(|s| matches!(s, JobState::Failure | JobState::Timeout)).count()
        );
        // Nothing moves after Finish.
        let after = [
            Event::Cancel { by: "late".to_owned() },
            Event::TimerFired(Timer::RunTimeout),
            Event::Approved { stage: "approve0".to_owned(), by: "late".to_owned() },
        ];
        for e in after {
            prop_assert!(self.run.handle(e).is_empty());
        }
        // (6) replaying the events gives the same commands and the same statuses.
        let mut replay = Run::new(self.plan.clone(), Default::default());
        for event in &self.before {
            prop_assert!(replay.handle(event.clone()).is_empty());
        }
        prop_assert_eq!(&replay.start(), &self.out[0]);
        for (event, expected) in self.fed.iter().zip(&self.out[1..]) {
            prop_assert_eq!(&replay.handle(event.clone()), expected);
        }
        prop_assert_eq!(replay.state(), state);
        prop_assert!(replay.jobs().eq(self.run.jobs()));
        Ok(())
    }
}

fn output(job: &JobId, attempt: u32, key: String, value: String) -> Event {
    Event::JobOutput { job: job.clone(), attempt, key, value }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_runs_keep_the_invariants(spec in plan_spec(7, 4), seed in any::<u64>()) {
        let plan = build(&spec);
        Sim::new(plan, seed, Mode::Chaos).drive()?;
    }

    #[test]
    fn failing_attempts_are_retried_exactly(spec in plan_spec(5, 3), seed in any::<u64>()) {
        let plan = build(&spec);
        Sim::new(plan, seed, Mode::AllFail).drive()?;
    }

    #[test]
    fn reused_jobs_never_start_and_replay(
        spec in plan_spec(7, 4),
        seed in any::<u64>(),
        picks in proptest::collection::vec(any::<Index>(), 0..6),
        all_fail in any::<bool>(),
    ) {
        let plan = build(&spec);
        let mode = if all_fail { Mode::AllFail } else { Mode::Chaos };
        Sim::new(plan, seed, mode).reuse(&picks).drive()?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn larger_random_runs_keep_the_invariants(spec in plan_spec(30, 12), seed in any::<u64>()) {
        let plan = build(&spec);
        Sim::new(plan, seed, Mode::Chaos).drive()?;
    }
}
