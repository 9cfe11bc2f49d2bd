//! Test support: plans built as values, and a tiny scripted driver that writes a transcript.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use kiln_engine::{Command, Event, Outcome, Params, Run, RunState, SharedPlan, Timer};
use kiln_workflow::plan::{
    ArtifactSpec, CacheSpec, Job, JobId, ParamSpec, Plan, Resources, RetryOn, RetryPolicy, RunSpec,
    Stage, StageKind,
};

/// A job with defaults: a one-line script, `success()`, no retry.
pub fn job(id: &str) -> JobDef {
    JobDef {
        job: Job {
            id: JobId::from(id),
            base: id.split('[').next().unwrap_or(id).to_owned(),
            stage: 0,
            needs: Vec::new(),
            gate: None,
            condition: "success()".to_owned(),
            image: Some("alpine:3".to_owned()),
            run: RunSpec::Script(vec![format!("echo {id}")]),
            env: BTreeMap::new(),
            workdir: None,
            timeout: None,
            retry: RetryPolicy::default(),
            matrix: BTreeMap::new(),
            services: Vec::new(),
            resources: Resources::default(),
            scheduling: Default::default(),
            cache: None,
            artifacts: None,
            checkout: true,
            pools: Vec::new(),
            environment: None,
            array: None,
        },
        explicit_needs: false,
    }
}

/// A job being described.
pub struct JobDef {
    job: Job,
    explicit_needs: bool,
}

impl JobDef {
    /// Explicit `needs`.
    pub fn needs(mut self, needs: &[&str]) -> Self {
        self.job.needs = needs.iter().map(|&n| JobId::from(n)).collect();
        self.explicit_needs = true;
        self
    }

    /// `if:`.
    pub fn when(mut self, condition: &str) -> Self {
        self.job.condition = condition.to_owned();
        self
    }

    /// Script lines.
    pub fn script(mut self, lines: &[&str]) -> Self {
        self.job.run = RunSpec::Script(lines.iter().map(|&l| l.to_owned()).collect());
        self
    }

    /// What it runs (a trigger or a deploy, say).
    pub fn run(mut self, run: RunSpec) -> Self {
        self.job.run = run;
        self
    }

    /// `environment:`.
    pub fn environment(mut self, env: &str) -> Self {
        self.job.environment = Some(env.to_owned());
        self
    }

    /// One env entry.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.job.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// `image`.
    pub fn image(mut self, image: &str) -> Self {
        self.job.image = Some(image.to_owned());
        self
    }

    /// `retry: max` on every kind, or only on `on`.
    pub fn retry(mut self, max: u32, on: &[RetryOn]) -> Self {
        self.job.retry.max = max;
        if !on.is_empty() {
            self.job.retry.on = on.to_vec();
        }
        self
    }

    /// Per-attempt timeout.
    pub fn timeout(mut self, secs: u64) -> Self {
        self.job.timeout = Some(Duration::from_secs(secs));
        self
    }

    /// The plan job as described (stage, gate and default needs are set by [`PlanDef`]).
    pub fn into_job(self) -> Job {
        self.job
    }

    /// `cache`.
    pub fn cache(mut self, cache: CacheSpec) -> Self {
        self.job.cache = Some(cache);
        self
    }

    /// `artifacts`.
    pub fn artifacts(mut self, artifacts: ArtifactSpec) -> Self {
        self.job.artifacts = Some(artifacts);
        self
    }

    /// One matrix value.
    pub fn matrix(mut self, key: &str, value: &str) -> Self {
        self.job.matrix.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// Builds a plan stage by stage, the way the compiler lays it out: default needs are the
/// previous job stage, and jobs after an approval are gated by it.
#[derive(Default)]
pub struct PlanDef {
    plan: Option<Plan>,
    previous: Vec<JobId>,
    gate: Option<usize>,
}

impl PlanDef {
    /// An empty plan.
    pub fn new(name: &str) -> Self {
        PlanDef {
            plan: Some(Plan {
                name: name.to_owned(),
                params: Vec::new(),
                env: BTreeMap::new(),
                stages: Vec::new(),
                jobs: Vec::new(),
                timeout: None,
                concurrency: None,
                triggers: Default::default(),
                source: None,
                concurrency_group: None,
                pools: Vec::new(),
                prepull: Vec::new(),
            }),
            ..PlanDef::default()
        }
    }

    fn plan(&mut self) -> &mut Plan {
        self.plan.as_mut().expect("plan")
    }

    /// A job stage.
    pub fn stage(mut self, name: &str, jobs: Vec<JobDef>) -> Self {
        let index = self.plan().stages.len();
        let mut ids = Vec::new();
        for def in jobs {
            let mut job = def.job;
            job.stage = index;
            job.gate = self.gate;
            if !def.explicit_needs {
                job.needs = self.previous.clone();
            }
            ids.push(job.id.clone());
            self.plan().jobs.push(job);
        }
        self.plan()
            .stages
            .push(Stage { name: name.to_owned(), kind: StageKind::Jobs(ids.clone()) });
        self.previous = ids;
        self
    }

    /// An approval stage.
    pub fn approval(mut self, name: &str, description: Option<&str>) -> Self {
        let index = self.plan().stages.len();
        self.plan().stages.push(Stage {
            name: name.to_owned(),
            kind: StageKind::Approval { description: description.map(str::to_owned) },
        });
        self.gate = Some(index);
        self
    }

    /// Whole-run timeout.
    pub fn timeout(mut self, secs: u64) -> Self {
        self.plan().timeout = Some(Duration::from_secs(secs));
        self
    }

    /// A global env entry.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.plan().env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A declared param.
    pub fn param(mut self, spec: ParamSpec) -> Self {
        self.plan().params.push(spec);
        self
    }

    /// The plan.
    pub fn build(mut self) -> SharedPlan {
        Arc::new(self.plan.take().expect("plan"))
    }
}

/// What one attempt does: print outputs, then end (or hang until canceled).
#[derive(Clone, Debug)]
pub struct Attempt {
    /// `JOB_OUT` lines.
    pub outputs: Vec<(String, String)>,
    /// How it ends; `None` hangs until `CancelJob`.
    pub outcome: Option<Outcome>,
}

/// An attempt that exits with `code`.
pub fn exits(code: i32) -> Attempt {
    Attempt { outputs: Vec::new(), outcome: Some(Outcome::Exited(code)) }
}

/// An attempt that ends with `outcome`.
pub fn ends(outcome: Outcome) -> Attempt {
    Attempt { outputs: Vec::new(), outcome: Some(outcome) }
}

/// An attempt that never ends by itself.
pub fn hangs() -> Attempt {
    Attempt { outputs: Vec::new(), outcome: None }
}

impl Attempt {
    /// Adds an output.
    pub fn out(mut self, key: &str, value: &str) -> Self {
        self.outputs.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// What the approver does at a stage.
#[derive(Clone, Debug)]
pub enum Answer {
    /// Approve.
    Approve(&'static str),
    /// Reject.
    Reject(&'static str),
    /// Cancel the run instead.
    Cancel(&'static str),
}

/// A scripted driver: answers `StartJob` from per-job attempt scripts (default: exit 0),
/// pauses from per-stage answers, fires the run timer when nothing else can happen.
#[derive(Default)]
pub struct Driver {
    attempts: BTreeMap<String, Vec<Attempt>>,
    answers: BTreeMap<String, Answer>,
    cancel_when_started: Option<String>,
    params: Params,
    /// `JobReused` events fed before `start`.
    reused: Vec<Event>,
}

/// What a driven run did.
pub struct Transcript {
    /// Events in and commands out, one per line, then the final states.
    pub text: String,
    /// The run at the end.
    pub run: Run,
    /// Every command, in order.
    pub commands: Vec<Command>,
}

impl Driver {
    /// A driver where every attempt exits 0.
    pub fn new() -> Self {
        Driver::default()
    }

    /// Scripts a job's attempts in order; attempts past the list exit 0.
    pub fn on(mut self, job: &str, attempts: Vec<Attempt>) -> Self {
        self.attempts.insert(job.to_owned(), attempts);
        self
    }

    /// Answers the pause at `stage`.
    pub fn answer(mut self, stage: &str, answer: Answer) -> Self {
        self.answers.insert(stage.to_owned(), answer);
        self
    }

    /// Cancels the run when `job` reports started.
    pub fn cancel_when_started(mut self, job: &str) -> Self {
        self.cancel_when_started = Some(job.to_owned());
        self
    }

    /// Binds a param.
    pub fn param(mut self, name: &str, value: kiln_workflow::plan::ParamValue) -> Self {
        self.params.insert(name.to_owned(), value);
        self
    }

    /// Marks `job` as reused from an earlier run with `outputs` (fed before `start`).
    pub fn reuse(mut self, job: &str, outputs: &[(&str, &str)]) -> Self {
        let outputs = outputs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.reused.push(Event::JobReused { job: JobId::from(job), outputs });
        self
    }

    /// Runs `plan` to its end.
    pub fn drive(self, plan: SharedPlan) -> Transcript {
        let mut run = Run::new(plan, self.params.clone());
        let mut text = String::new();
        let mut all = Vec::new();
        for event in &self.reused {
            writeln!(text, "> {}", show_event(event)).unwrap();
            let commands = run.handle(event.clone());
            assert!(commands.is_empty(), "JobReused before start gave {commands:?}");
        }
        let mut queue: VecDeque<Event> = VecDeque::new();
        let mut hanging: Vec<(JobId, u32)> = Vec::new();
        let mut timer_armed = false;
        let mut finished = 0;
        writeln!(text, "> start").unwrap();
        let mut commands = run.start();
        loop {
            for c in &commands {
                writeln!(text, "< {}", show(c)).unwrap();
                match c {
                    Command::StartJob(s) => {
                        let id = s.job.id.clone();
                        let attempt = s.attempt;
                        let script = self
                            .attempts
                            .get(id.as_str())
                            .and_then(|a| a.get(attempt as usize - 1))
                            .cloned()
                            .unwrap_or_else(|| exits(0));
                        queue.push_back(Event::JobStarted { job: id.clone(), attempt });
                        for (key, value) in script.outputs {
                            queue.push_back(Event::JobOutput {
                                job: id.clone(),
                                attempt,
                                key,
                                value,
                            });
                        }
                        match script.outcome {
                            Some(outcome) => {
                                queue.push_back(Event::JobExited { job: id, attempt, outcome })
                            }
                            None => hanging.push((id, attempt)),
                        }
                    }
                    Command::CancelJob { job, attempt } => {
                        if let Some(p) = hanging.iter().position(|h| h.0 == *job && h.1 == *attempt)
                        {
                            hanging.remove(p);
                            queue.push_back(Event::JobExited {
                                job: job.clone(),
                                attempt: *attempt,
                                outcome: Outcome::Canceled,
                            });
                        }
                    }
                    Command::Pause { stage, .. } => {
                        queue.push_back(match self.answers.get(stage) {
                            Some(Answer::Approve(by)) => {
                                Event::Approved { stage: stage.clone(), by: by.to_string() }
                            }
                            Some(Answer::Reject(by)) => {
                                Event::Rejected { stage: stage.clone(), by: by.to_string() }
                            }
                            Some(Answer::Cancel(by)) => Event::Cancel { by: by.to_string() },
                            None => panic!("no answer for stage {stage}"),
                        });
                    }
                    Command::ArmTimer { .. } => timer_armed = true,
                    Command::Finish(_) => finished += 1,
                    // Every index succeeds at once (arrays have tests of their own).
                    Command::StartIndexes { start, indexes } => {
                        let job = start.job.id.clone();
                        queue.push_back(Event::IndexesStarted {
                            job: job.clone(),
                            indexes: indexes.clone(),
                        });
                        let exits = indexes
                            .iter()
                            .map(|ia| kiln_engine::IndexExit {
                                index: ia.index,
                                attempt: ia.attempt,
                                outcome: Outcome::Exited(0),
                                millis: 1,
                            })
                            .collect();
                        queue.push_back(Event::IndexesExited { job, exits });
                    }
                    Command::CancelIndexes { .. } => {}
                }
            }
            all.extend(commands);
            let event = match queue.pop_front() {
                Some(e) => e,
                None if finished > 0 => break,
                None if timer_armed => {
                    timer_armed = false;
                    Event::TimerFired(Timer::RunTimeout)
                }
                None => panic!("run stuck:\n{text}"),
            };
            if let Event::JobStarted { job, .. } = &event
                && self.cancel_when_started.as_deref() == Some(job.as_str())
            {
                queue.push_back(Event::Cancel { by: "carol".to_owned() });
            }
            writeln!(text, "> {}", show_event(&event)).unwrap();
            commands = run.handle(event);
        }
        assert_eq!(finished, 1, "exactly one Finish:\n{text}");
        writeln!(text, "= run {:?}", run.state()).unwrap();
        for (id, s) in run.jobs() {
            write!(text, "= {id}: {:?} attempts={}", s.state, s.attempts).unwrap();
            if let Some(code) = s.exit_code {
                write!(text, " exit={code}").unwrap();
            }
            if !s.outputs.is_empty() {
                write!(text, " outputs={:?}", s.outputs).unwrap();
            }
            if let Some(reason) = &s.reason {
                write!(text, " reason={reason:?}").unwrap();
            }
            writeln!(text).unwrap();
        }
        for a in run.approvals() {
            writeln!(text, "= approval {}: {:?} by {}", a.stage, a.decision, a.by).unwrap();
        }
        Transcript { text, run, commands: all }
    }
}

/// One line for a command.
pub fn show(c: &Command) -> String {
    match c {
        Command::StartJob(s) => {
            let mut line = format!("StartJob {}#{}", s.job.id, s.attempt);
            if let Some(image) = &s.job.image {
                write!(line, " image={image}").unwrap();
            }
            match &s.job.run {
                RunSpec::Script(lines) => write!(line, " script={lines:?}").unwrap(),
                RunSpec::Command { command, args } => {
                    write!(line, " command={command:?} args={args:?}").unwrap()
                }
                RunSpec::Trigger(t) => write!(line, " trigger={:?}", t.targets).unwrap(),
                RunSpec::Deploy(d) => write!(
                    line,
                    " deploy={} to {} image={}",
                    d.service.name, d.environment, d.image
                )
                .unwrap(),
                RunSpec::Build(b) => {
                    write!(line, " build={} tags={:?}", b.dockerfile, b.tags).unwrap()
                }
            }
            if let Some(e) = &s.job.environment {
                write!(line, " environment={e}").unwrap();
            }
            if !s.job.env.is_empty() {
                write!(line, " env={:?}", s.job.env).unwrap();
            }
            if let Some(c) = &s.job.cache {
                write!(line, " cache={}:{:?}:{:?}:{:?}", c.key, c.files, c.paths, c.policy)
                    .unwrap();
            }
            if let Some(a) = &s.job.artifacts {
                write!(line, " artifacts={:?}:{:?}", a.paths, a.when).unwrap();
            }
            line
        }
        Command::CancelJob { job, attempt } => format!("CancelJob {job}#{attempt}"),
        Command::Pause { stage, description } => format!("Pause {stage} {description:?}"),
        Command::ArmTimer { timer, after } => format!("ArmTimer {timer:?} {after:?}"),
        Command::Finish(state) => format!("Finish {state:?}"),
        Command::StartIndexes { start, indexes } => {
            format!("StartIndexes {} x{}", start.job.id, indexes.len())
        }
        Command::CancelIndexes { job, indexes } => {
            format!("CancelIndexes {job} x{}", indexes.len())
        }
    }
}

/// One line for an event.
pub fn show_event(e: &Event) -> String {
    match e {
        Event::JobStarted { job, attempt } => format!("JobStarted {job}#{attempt}"),
        Event::JobOutput { job, attempt, key, value } => {
            format!("JobOutput {job}#{attempt} {key}={value}")
        }
        Event::JobExited { job, attempt, outcome } => {
            format!("JobExited {job}#{attempt} {outcome:?}")
        }
        Event::Approved { stage, by } => format!("Approved {stage} by {by}"),
        Event::Rejected { stage, by } => format!("Rejected {stage} by {by}"),
        Event::Cancel { by } => format!("Cancel by {by}"),
        Event::TimerFired(t) => format!("TimerFired {t:?}"),
        Event::JobReused { job, outputs } => format!("JobReused {job} outputs={outputs:?}"),
        Event::IndexesStarted { job, indexes } => {
            format!("IndexesStarted {job} x{}", indexes.len())
        }
        Event::IndexesExited { job, exits } => format!("IndexesExited {job} x{}", exits.len()),
    }
}

/// The `StartJob`s of a transcript, by job id and attempt.
pub fn starts(commands: &[Command]) -> Vec<(String, u32)> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::StartJob(s) => Some((s.job.id.to_string(), s.attempt)),
            _ => None,
        })
        .collect()
}

/// The rendered job of the first `StartJob` of `id`.
pub fn started<'a>(commands: &'a [Command], id: &str) -> &'a Job {
    commands
        .iter()
        .find_map(|c| match c {
            Command::StartJob(s) if s.job.id.as_str() == id => Some(&s.job),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{id} never started"))
}

/// The final state a transcript's run announced.
pub fn finish(commands: &[Command]) -> Option<RunState> {
    commands.iter().find_map(|c| match c {
        Command::Finish(s) => Some(*s),
        _ => None,
    })
}
