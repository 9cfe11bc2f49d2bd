//! [`Run`]: one run of a plan as a state machine, events in, commands out.
//!
//! Each event costs time proportional to what it changes (the jobs it finishes, their
//! dependents, the jobs behind an opened gate), never a rescan of the plan; only cancel
//! walks every job, once. Jobs made ready by one event start in plan order.
//!
//! Invariants: a job leaves `Pending` only when every need is final and its gate is open;
//! a final job never changes again; `Finish` is issued once and then every event is ignored.
//!
//! Decisions the contract leaves open:
//! - `failure()` is true when a job the job transitively needs failed or timed out, or when its
//!   gate was passed without asking because a job before it failed. A skipped or canceled need
//!   does not count: skipping spreads through `success()` only along failures.
//! - A gate is bound to every job after it even when the plan's `gate` is missing; a `needs` that
//!   is not an earlier job, or a `gate` that is not an earlier approval stage, fails the job at
//!   start with a reason (the compiler never produces either).
//! - An approval stage after the last job is still asked for before the run finishes.
//! - Once the run stops (cancel, reject, run timeout) an attempt's exit is recorded as reported
//!   (a job that had already succeeded stays `Success`) and nothing is retried.
//! - `Outcome::Canceled` with no run cancel (the executor gave up) makes the job `Canceled`;
//!   the run then ends `Canceled` unless a job failed.
//! - A reused job (`Event::JobReused`) waits for its needs and gate like any other, and its
//!   condition is evaluated as usual; only the start is replaced by an immediate `Success`.
//! - Expressions may name a matrix job by its key: `result` combines the instances (failure,
//!   then timeout, then canceled, then skipped if all were, else success), `output` takes the
//!   first instance in plan order that has the key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kiln_workflow::plan::{JobId, RetryOn, StageKind};
use serde::{Deserialize, Serialize};

use crate::array::{ArrayRun, IndexAttempt, IndexExit};
use crate::graph::Graph;
use crate::scope::JobScope;
use crate::{
    ArrayProgress, Command, Event, JobState, JobStatus, Outcome, Params, RunState, SharedPlan,
    StartJob, Timer,
};

/// The `reason` of a job that ended `Success` because it was reused.
pub const REUSED_REASON: &str = "reused from an earlier run";

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// Waiting for needs or a gate.
    pub pending: usize,
    /// Start requested, not yet running.
    pub queued: usize,
    /// Running.
    pub running: usize,
    /// Ended with exit code 0.
    pub success: usize,
    /// Failed with no retry left.
    pub failure: usize,
    /// Condition was false.
    pub skipped: usize,
    /// Canceled.
    pub canceled: usize,
    /// Timed out with no retry left.
    pub timeout: usize,
}

impl JobCounts {
    fn slot(&mut self, state: JobState) -> &mut usize {
        match state {
            JobState::Pending => &mut self.pending,
            JobState::Queued => &mut self.queued,
            JobState::Running => &mut self.running,
            JobState::Success => &mut self.success,
            JobState::Failure => &mut self.failure,
            JobState::Skipped => &mut self.skipped,
            JobState::Canceled => &mut self.canceled,
            JobState::Timeout => &mut self.timeout,
        }
    }

    /// Jobs in a final state.
    pub fn done(&self) -> usize {
        self.success + self.failure + self.skipped + self.canceled + self.timeout
    }

    /// Jobs queued or running.
    pub fn active(&self) -> usize {
        self.queued + self.running
    }

    /// Jobs not yet final.
    pub fn unfinished(&self) -> usize {
        self.pending + self.active()
    }

    /// Jobs that failed or timed out.
    pub fn failed(&self) -> usize {
        self.failure + self.timeout
    }
}

/// Where an approval stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateState {
    /// Not reached: a job of an earlier stage has not ended.
    Pending,
    /// Reached; the run is paused until it is approved or rejected.
    Waiting,
    /// Approved: the jobs behind it may start.
    Approved,
    /// Rejected: the run was canceled.
    Rejected,
    /// Passed without asking because a job before it failed or timed out; the jobs behind it
    /// see `failure()` true.
    Skipped,
    /// The run stopped while it was waiting.
    Canceled,
}

/// An approver's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The run went on.
    Approved,
    /// The run was canceled.
    Rejected,
}

/// Who decided what at an approval stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Stage name.
    pub stage: String,
    /// Who.
    pub by: String,
    /// What.
    pub decision: Decision,
}

/// Why a run is stopping before all its jobs ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// `Event::Cancel`.
    Canceled {
        /// Who.
        by: String,
    },
    /// `Event::Rejected` at the waiting stage.
    Rejected {
        /// Stage name.
        stage: String,
        /// Who.
        by: String,
    },
    /// The run's timeout fired.
    TimedOut,
}

impl StopReason {
    /// The run state the run ends in.
    pub fn final_state(&self) -> RunState {
        match self {
            StopReason::Canceled { .. } | StopReason::Rejected { .. } => RunState::Canceled,
            StopReason::TimedOut => RunState::Timeout,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Canceled { by } => write!(f, "run canceled by {by}"),
            StopReason::Rejected { stage, by } => write!(f, "stage `{stage}` rejected by {by}"),
            StopReason::TimedOut => f.write_str("run timed out"),
        }
    }
}

/// One run of a plan: feed it events, carry out the commands it returns.
///
/// Deterministic: the same plan, params and events give the same commands and states.
#[derive(Debug)]
pub struct Run {
    plan: SharedPlan,
    graph: Graph,
    params: Params,
    status: Vec<JobStatus>,
    /// Needs of each job that are not final yet.
    unfinished_needs: Vec<usize>,
    /// `failure()` of each job, set when it is considered.
    upstream_failed: Vec<bool>,
    /// Jobs whose needs are final and gate open, to consider in plan order.
    ready: BTreeSet<usize>,
    counts: JobCounts,
    /// Non-final jobs per stage bucket (`stages.len() + 1` buckets).
    stage_unfinished: Vec<usize>,
    /// Failed or timed-out jobs per stage bucket.
    stage_failed: Vec<usize>,
    /// Lowest stage bucket that may still hold a non-final job (only moves up).
    low_stage: usize,
    /// State of each stage's gate; `None` for job stages.
    gates: Vec<Option<GateState>>,
    /// Index into `graph.approvals` of the next gate to reach.
    next_gate: usize,
    /// The approval stage the run is paused at.
    waiting: Option<usize>,
    stop: Option<StopReason>,
    state: RunState,
    approvals: Vec<Approval>,
    /// Outputs of each job reused from an earlier run (`Event::JobReused`), until considered.
    reused: Vec<Option<BTreeMap<String, String>>>,
    /// The state of each array job (`None` for the others).
    arrays: Vec<Option<ArrayRun>>,
}

/// Whether a job behind `gate` may be considered.
fn gate_open(gates: &[Option<GateState>], gate: Option<usize>) -> bool {
    match gate {
        None => true,
        Some(g) => matches!(gates[g], Some(GateState::Approved | GateState::Skipped)),
    }
}

impl Run {
    /// A pending run of `plan`. Declared params missing from `params` take their default.
    pub fn new(plan: SharedPlan, mut params: Params) -> Run {
        for spec in &plan.params {
            if let Some(default) = &spec.default {
                params.entry(spec.name.clone()).or_insert_with(|| default.clone());
            }
        }
        let graph = Graph::new(&plan);
        let n = plan.jobs.len();
        let stages = plan.stages.len();
        let status = vec![
            JobStatus {
                state: JobState::Pending,
                attempts: 0,
                outputs: Default::default(),
                exit_code: None,
                reason: None,
            };
            n
        ];
        let unfinished_needs = graph.needs.iter().map(Vec::len).collect();
        let mut stage_unfinished = vec![0; stages + 1];
        for &s in &graph.stage {
            stage_unfinished[s] += 1;
        }
        let gates = plan
            .stages
            .iter()
            .map(|s| matches!(s.kind, StageKind::Approval { .. }).then_some(GateState::Pending))
            .collect();
        Run {
            graph,
            params,
            status,
            unfinished_needs,
            upstream_failed: vec![false; n],
            ready: BTreeSet::new(),
            counts: JobCounts { pending: n, ..JobCounts::default() },
            stage_unfinished,
            stage_failed: vec![0; stages + 1],
            low_stage: 0,
            gates,
            next_gate: 0,
            waiting: None,
            stop: None,
            state: RunState::Pending,
            approvals: Vec::new(),
            reused: vec![None; n],
            arrays: plan.jobs.iter().map(|j| j.array.map(ArrayRun::new)).collect(),
            plan,
        }
    }

    /// Starts the run: arms the run timeout, starts every ready job. Does nothing unless the
    /// run is pending.
    pub fn start(&mut self) -> Vec<Command> {
        let mut out = Vec::new();
        if self.state != RunState::Pending {
            return out;
        }
        self.state = RunState::Running;
        if let Some(after) = self.plan.timeout {
            out.push(Command::ArmTimer { timer: Timer::RunTimeout, after });
        }
        for i in 0..self.status.len() {
            if let Some(defect) = self.graph.defect[i].clone() {
                self.finalize(i, JobState::Failure, Some(defect));
            }
        }
        for i in 0..self.status.len() {
            if self.status[i].state == JobState::Pending
                && self.unfinished_needs[i] == 0
                && gate_open(&self.gates, self.graph.gate[i])
            {
                self.ready.insert(i);
            }
        }
        self.settle(&mut out);
        out
    }

    /// Applies one event. Before [`Run::start`] only `Cancel` and `JobReused` count; after it
    /// `JobReused` is ignored. Events that do not fit (stale attempt, unknown job, a stage not
    /// waiting, anything after `Finish`) are ignored: no commands, no change.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        if self.state.is_final() {
            return out;
        }
        if self.state == RunState::Pending {
            // Only a cancel and reused jobs mean something before the run started.
            match event {
                Event::Cancel { by } => self.halt(StopReason::Canceled { by }, &mut out),
                Event::JobReused { job, outputs } => {
                    if let Some(&i) = self.graph.index.get(job.as_str()) {
                        self.reused[i] = Some(outputs);
                    }
                }
                _ => {}
            }
            return out;
        }
        match event {
            Event::JobStarted { job, attempt } => {
                if let Some(i) = self.current(&job, attempt)
                    && self.status[i].state == JobState::Queued
                {
                    self.set_state(i, JobState::Running);
                }
            }
            Event::JobOutput { job, attempt, key, value } => {
                if let Some(i) = self.current(&job, attempt) {
                    self.status[i].outputs.insert(key, value);
                }
            }
            Event::JobExited { job, attempt, outcome } => {
                if let Some(i) = self.current(&job, attempt) {
                    self.exited(i, outcome, &mut out);
                    self.settle(&mut out);
                }
            }
            Event::Approved { stage, by } => {
                if let Some(g) = self.waiting_at(&stage) {
                    self.approvals.push(Approval { stage, by, decision: Decision::Approved });
                    self.waiting = None;
                    self.state = RunState::Running;
                    self.open_gate(g, GateState::Approved);
                    self.settle(&mut out);
                }
            }
            Event::Rejected { stage, by } => {
                if let Some(g) = self.waiting_at(&stage) {
                    self.approvals.push(Approval {
                        stage: stage.clone(),
                        by: by.clone(),
                        decision: Decision::Rejected,
                    });
                    self.gates[g] = Some(GateState::Rejected);
                    self.waiting = None;
                    self.halt(StopReason::Rejected { stage, by }, &mut out);
                }
            }
            Event::Cancel { by } => self.halt(StopReason::Canceled { by }, &mut out),
            Event::TimerFired(Timer::RunTimeout) => self.halt(StopReason::TimedOut, &mut out),
            // Too late: the job it would spare may already be running.
            Event::JobReused { .. } => {}
            Event::IndexesStarted { job, indexes } => {
                if let Some(i) = self.active_array(&job) {
                    let array = self.arrays[i].as_mut().expect("an array job");
                    let mut any = false;
                    for ia in indexes {
                        any |= array.started(ia);
                    }
                    if any && self.status[i].state == JobState::Queued {
                        self.set_state(i, JobState::Running);
                    }
                }
            }
            Event::IndexesExited { job, exits } => {
                if let Some(i) = self.active_array(&job) {
                    self.indexes_exited(i, &exits, &mut out);
                    self.settle(&mut out);
                }
            }
        }
        out
    }

    /// Where array job `job` stands; `None` for a job that is not an array.
    pub fn array(&self, job: &JobId) -> Option<ArrayProgress> {
        let &i = self.graph.index.get(job.as_str())?;
        self.arrays[i].as_ref().map(ArrayRun::progress)
    }

    /// An array job's rendered job and the index attempts in flight (a driver that lost
    /// them, restarted, hands them out again); `None` unless the array has started.
    pub fn array_in_flight(&self, job: &JobId) -> Option<(&StartJob, Vec<IndexAttempt>)> {
        let &i = self.graph.index.get(job.as_str())?;
        let array = self.arrays[i].as_ref()?;
        Some((array.template.as_deref()?, array.in_flight()))
    }

    /// Index of `job` if it is an array job that has started and not ended.
    fn active_array(&self, job: &JobId) -> Option<usize> {
        let &i = self.graph.index.get(job.as_str())?;
        (self.arrays[i].is_some()
            && matches!(self.status[i].state, JobState::Queued | JobState::Running))
        .then_some(i)
    }

    /// Index attempts of array job `i` ended: count them or retry them, hand out more, and
    /// end the job once every index has.
    fn indexes_exited(&mut self, i: usize, exits: &[IndexExit], out: &mut Vec<Command>) {
        let retry = self.plan.jobs[i].retry.clone();
        let stop = self.stop.as_ref().map(ToString::to_string);
        let array = self.arrays[i].as_mut().expect("an array job");
        for exit in exits {
            array.exited(exit, &retry);
        }
        if array.finished() {
            let (state, reason) = array.outcome(stop);
            self.finalize(i, state, reason);
            return;
        }
        self.fill_array(i, out);
    }

    /// Hands out indexes of array job `i` up to its window.
    fn fill_array(&mut self, i: usize, out: &mut Vec<Command>) {
        let Some(array) = self.arrays[i].as_mut() else { return };
        let indexes = array.fill();
        if let Some(start) = &array.template
            && !indexes.is_empty()
        {
            out.push(Command::StartIndexes { start: start.clone(), indexes });
        }
    }

    /// The run's state. A running run whose active jobs all wait for a place to run (queued,
    /// none running) is `Scheduling`. A canceling run stays `Running` until its last job has
    /// ended.
    pub fn state(&self) -> RunState {
        let scheduling = self.state == RunState::Running
            && self.stop.is_none()
            && self.counts.running == 0
            && self.counts.queued > 0;
        if scheduling { RunState::Scheduling } else { self.state }
    }

    /// A job's status.
    pub fn job(&self, id: &JobId) -> Option<&JobStatus> {
        self.graph.index.get(id.as_str()).map(|&i| &self.status[i])
    }

    /// Every job with its status, in plan order.
    pub fn jobs(&self) -> impl Iterator<Item = (&JobId, &JobStatus)> {
        self.plan.jobs.iter().map(|j| &j.id).zip(&self.status)
    }

    /// The approval stage the run is paused at.
    pub fn paused_at(&self) -> Option<&str> {
        self.waiting.map(|g| self.plan.stages[g].name.as_str())
    }

    /// How many jobs are in each state.
    pub fn counts(&self) -> JobCounts {
        self.counts
    }

    /// Every approval decision, in the order taken.
    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }

    /// Every approval stage with where it stands, in stage order.
    pub fn gates(&self) -> impl Iterator<Item = (&str, GateState)> {
        self.plan
            .stages
            .iter()
            .zip(&self.gates)
            .filter_map(|(s, g)| g.map(|g| (s.name.as_str(), g)))
    }

    /// Why the run is stopping (or stopped) early: cancel, reject or run timeout.
    pub fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    /// The plan being run.
    pub fn plan(&self) -> &SharedPlan {
        &self.plan
    }

    /// Index of `job` if `attempt` is its current, unfinished attempt.
    fn current(&self, job: &JobId, attempt: u32) -> Option<usize> {
        let &i = self.graph.index.get(job.as_str())?;
        let s = &self.status[i];
        // An array job's indexes have their own events.
        (self.arrays[i].is_none()
            && matches!(s.state, JobState::Queued | JobState::Running)
            && s.attempts == attempt)
            .then_some(i)
    }

    /// The approval stage named `stage`, if the run is waiting there.
    fn waiting_at(&self, stage: &str) -> Option<usize> {
        self.waiting.filter(|&g| self.plan.stages[g].name == stage)
    }

    fn set_state(&mut self, i: usize, state: JobState) {
        let old = self.status[i].state;
        *self.counts.slot(old) -= 1;
        *self.counts.slot(state) += 1;
        self.status[i].state = state;
    }

    /// Makes job `i` final and lets its dependents become ready.
    fn finalize(&mut self, i: usize, state: JobState, reason: Option<String>) {
        if self.status[i].state.is_final() {
            return;
        }
        self.set_state(i, state);
        self.status[i].reason = reason;
        let bucket = self.graph.stage[i];
        self.stage_unfinished[bucket] -= 1;
        if matches!(state, JobState::Failure | JobState::Timeout) {
            self.stage_failed[bucket] += 1;
        }
        for &d in &self.graph.dependents[i] {
            self.unfinished_needs[d] -= 1;
            if self.unfinished_needs[d] == 0
                && self.status[d].state == JobState::Pending
                && gate_open(&self.gates, self.graph.gate[d])
            {
                self.ready.insert(d);
            }
        }
    }

    fn scope(&self, i: usize) -> JobScope<'_> {
        JobScope {
            plan: &self.plan,
            graph: &self.graph,
            params: &self.params,
            status: &self.status,
            job: i,
            failed: self.upstream_failed[i],
            canceled: self.stop.is_some(),
        }
    }

    /// A ready job: evaluate its condition, then start or skip it.
    fn consider(&mut self, i: usize, out: &mut Vec<Command>) {
        if self.status[i].state != JobState::Pending || self.stop.is_some() {
            return;
        }
        let gate_skipped =
            self.graph.gate[i].is_some_and(|g| self.gates[g] == Some(GateState::Skipped));
        self.upstream_failed[i] = gate_skipped
            || self.graph.needs[i].iter().any(|&n| {
                self.upstream_failed[n]
                    || matches!(self.status[n].state, JobState::Failure | JobState::Timeout)
            });
        match self.scope(i).condition() {
            Ok(true) => match self.reused[i].take() {
                Some(outputs) => {
                    self.status[i].outputs = outputs;
                    self.finalize(i, JobState::Success, Some(REUSED_REASON.to_owned()));
                }
                None => self.start_attempt(i, 1, out),
            },
            Ok(false) => {
                let reason = format!("condition `{}` was false", self.plan.jobs[i].condition);
                self.finalize(i, JobState::Skipped, Some(reason));
            }
            Err(e) => self.finalize(i, JobState::Failure, Some(e)),
        }
    }

    fn start_attempt(&mut self, i: usize, attempt: u32, out: &mut Vec<Command>) {
        match self.scope(i).rendered_job() {
            Ok(job) => {
                self.set_state(i, JobState::Queued);
                let s = &mut self.status[i];
                s.attempts = attempt;
                s.outputs.clear();
                s.exit_code = None;
                s.reason = None;
                let start = Box::new(StartJob { attempt, job });
                match self.arrays[i].as_mut() {
                    Some(array) => {
                        array.template = Some(start);
                        self.fill_array(i, out);
                    }
                    None => out.push(Command::StartJob(start)),
                }
            }
            Err(e) => self.finalize(i, JobState::Failure, Some(e)),
        }
    }

    /// The current attempt of job `i` ended: finish it or retry it.
    fn exited(&mut self, i: usize, outcome: Outcome, out: &mut Vec<Command>) {
        let (kind, state, reason, code) = match outcome {
            Outcome::Exited(0) => {
                self.status[i].exit_code = Some(0);
                self.finalize(i, JobState::Success, None);
                return;
            }
            Outcome::Exited(n) => (
                Some(RetryOn::Failure),
                JobState::Failure,
                format!("exited with code {n}"),
                Some(n),
            ),
            Outcome::Killed { code, why } => (
                Some(RetryOn::Failure),
                JobState::Failure,
                format!("{why} (exit code {code})"),
                Some(code),
            ),
            Outcome::TimedOut => {
                (Some(RetryOn::Timeout), JobState::Timeout, "timed out".to_owned(), None)
            }
            Outcome::Error(msg) => (Some(RetryOn::Error), JobState::Failure, msg, None),
            Outcome::Canceled => {
                let reason = match &self.stop {
                    Some(stop) => stop.to_string(),
                    None => "canceled by the executor".to_owned(),
                };
                (None, JobState::Canceled, reason, None)
            }
        };
        self.status[i].exit_code = code;
        let retry = &self.plan.jobs[i].retry;
        let attempts = self.status[i].attempts;
        if let Some(kind) = kind
            && self.stop.is_none()
            && retry.on.contains(&kind)
            && attempts <= retry.max
        {
            self.start_attempt(i, attempts + 1, out);
        } else {
            let reason =
                if attempts > 1 { format!("{reason} after {attempts} attempts") } else { reason };
            self.finalize(i, state, Some(reason));
        }
    }

    /// Opens gate `g` (approved or skipped) and readies the jobs behind it.
    fn open_gate(&mut self, g: usize, state: GateState) {
        self.gates[g] = Some(state);
        for &j in &self.graph.gated[g] {
            if self.unfinished_needs[j] == 0 && self.status[j].state == JobState::Pending {
                self.ready.insert(j);
            }
        }
    }

    /// Reaches the next approval stage if every job before it has ended: pauses there, or
    /// skips it when one of them failed. True when it was skipped (more may now be ready).
    fn reach_gate(&mut self, out: &mut Vec<Command>) -> bool {
        let Some(&g) = self.graph.approvals.get(self.next_gate) else {
            return false;
        };
        while self.low_stage < self.stage_unfinished.len()
            && self.stage_unfinished[self.low_stage] == 0
        {
            self.low_stage += 1;
        }
        if self.low_stage < g {
            return false;
        }
        self.next_gate += 1;
        if self.stage_failed[..g].iter().any(|&f| f > 0) {
            self.open_gate(g, GateState::Skipped);
            true
        } else {
            self.gates[g] = Some(GateState::Waiting);
            self.waiting = Some(g);
            self.state = RunState::Paused;
            let stage = &self.plan.stages[g];
            let description = match &stage.kind {
                StageKind::Approval { description } => description.clone(),
                StageKind::Jobs(_) => None,
            };
            out.push(Command::Pause { stage: stage.name.clone(), description });
            false
        }
    }

    /// Starts or skips every ready job, passes gates, and finishes when nothing is left.
    fn settle(&mut self, out: &mut Vec<Command>) {
        loop {
            while let Some(i) = self.ready.pop_first() {
                self.consider(i, out);
            }
            if self.stop.is_some() || self.waiting.is_some() || !self.reach_gate(out) {
                break;
            }
        }
        self.finish_if_done(out);
    }

    fn finish_if_done(&mut self, out: &mut Vec<Command>) {
        if self.state.is_final() || self.counts.unfinished() > 0 || self.waiting.is_some() {
            return;
        }
        let state = match &self.stop {
            Some(stop) => stop.final_state(),
            None if self.counts.failed() > 0 => RunState::Failure,
            None if self.counts.canceled > 0 => RunState::Canceled,
            None => RunState::Success,
        };
        self.state = state;
        out.push(Command::Finish(state));
    }

    /// Stops the run: nothing new starts, pending jobs are canceled, active ones get
    /// `CancelJob`. The first stop wins.
    fn halt(&mut self, stop: StopReason, out: &mut Vec<Command>) {
        if self.stop.is_some() {
            return;
        }
        if let Some(g) = self.waiting.take() {
            self.gates[g] = Some(GateState::Canceled);
        }
        if self.state == RunState::Paused {
            self.state = RunState::Running;
        }
        let reason = stop.to_string();
        self.stop = Some(stop);
        self.ready.clear();
        for i in 0..self.status.len() {
            match self.status[i].state {
                JobState::Pending => {
                    self.finalize(i, JobState::Canceled, Some(reason.clone()));
                }
                JobState::Queued | JobState::Running if self.arrays[i].is_some() => {
                    let array = self.arrays[i].as_mut().expect("an array job");
                    let indexes = array.halt();
                    if array.finished() {
                        let (state, why) = array.outcome(Some(reason.clone()));
                        self.finalize(i, state, why);
                    } else {
                        out.push(Command::CancelIndexes {
                            job: self.plan.jobs[i].id.clone(),
                            indexes,
                        });
                    }
                }
                JobState::Queued | JobState::Running => out.push(Command::CancelJob {
                    job: self.plan.jobs[i].id.clone(),
                    attempt: self.status[i].attempts,
                }),
                _ => {}
            }
        }
        self.ready.clear();
        self.finish_if_done(out);
    }
}
