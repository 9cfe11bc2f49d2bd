//! A whole run on one machine, as `kiln run` does it: the engine decides, every started job
//! becomes an attempt run inside the same PreStart/PostStop wrapper as on an agent
//! ([`crate::wrapper`]: `source` checkout, artifacts of needed jobs, caches) with the same
//! `KILN_*` variables, and the caller watches [`Update`]s and steers with [`Control`]s
//! (approve, reject, cancel). What one machine cannot do is listed by [`local_limits`].
//! For `kiln run --replay`, jobs can count as done with given outputs
//! ([`LocalSetup::reused`]) and a failed script can wait for a look around
//! ([`LocalSetup::pause_on_failure`], [`pausing_script`]).
//! An array job's indexes (`array:`) run here too, as the engine hands them out, at most
//! as many at once as the machine has CPUs (and the job's `parallelism`); each index's
//! lines are those of the job `JOB[INDEX]`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_engine::{
    Command, Event, IndexAttempt, IndexExit, JobState, JobStatus, Outcome, Params, Run, RunState,
    StartJob,
};
use kiln_exec::{Entry, Executor, Limits, LogLine, ServiceSpec, TaskId, TaskSpec};
use kiln_workflow::plan::{JobId, Plan, RunSpec};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkout::Checkout;
use crate::pools;
use crate::task::TaskEvent;
use crate::wrapper::{Attempt, DirFiles, run_attempt};

/// What a watcher of a local run sees.
#[derive(Debug, Clone)]
pub enum Update {
    /// A job changed state (or started a new attempt).
    Job {
        /// Which job.
        job: JobId,
        /// Its status now.
        status: JobStatus,
    },
    /// One line of a job's output.
    Log {
        /// Which job.
        job: JobId,
        /// The line.
        line: LogLine,
    },
    /// The run waits at an approval stage: answer with `Control::Approve` or `Reject`.
    Paused {
        /// Stage name.
        stage: String,
        /// Shown to the approver.
        description: Option<String>,
    },
    /// The run ended.
    Finished(RunState),
}

/// How a watcher steers a local run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Approve the paused stage.
    Approve {
        /// Stage name.
        stage: String,
        /// Who.
        by: String,
    },
    /// Reject the paused stage; the run ends canceled.
    Reject {
        /// Stage name.
        stage: String,
        /// Who.
        by: String,
    },
    /// Cancel the run; running jobs are killed and cleaned up.
    Cancel {
        /// Who.
        by: String,
    },
}

/// The end of a run, for the summary.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The run's id (also the `kiln.run` label on everything it created).
    pub run_id: String,
    /// Final state.
    pub state: RunState,
    /// Every job, in plan order.
    pub jobs: Vec<JobReport>,
    /// Where the jobs' artifacts were kept (`<job>.tar.gz` and `<job>/`), if any job kept
    /// some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<PathBuf>,
}

/// One job in a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// Job id.
    pub id: JobId,
    /// Final state.
    pub state: JobState,
    /// Attempts started.
    pub attempts: u32,
    /// From the start of its first attempt to the end of its last.
    pub duration: Option<Duration>,
    /// Outputs (`JOB_OUT`).
    pub outputs: BTreeMap<String, String>,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Why it failed, was skipped or canceled.
    pub reason: Option<String>,
}

/// A run of one plan with one executor.
pub struct LocalRun {
    /// Run id; names and labels everything the run creates.
    pub run_id: String,
    /// The compiled workflow.
    pub plan: Arc<Plan>,
    /// Bound parameters.
    pub params: Params,
    /// Where tasks run.
    pub executor: Arc<dyn Executor>,
    /// What every job gets around it: variables, checkout, artifacts, caches.
    pub setup: LocalSetup,
}

/// What a local run puts around each job, as an agent does on the server.
#[derive(Debug, Clone, Default)]
pub struct LocalSetup {
    /// Added to every job's env, over the job's own (the `KILN_*` variables of
    /// [`kiln_workflow::run_env`]); `KILN_JOB` and `KILN_ATTEMPT` are added per attempt.
    pub env: BTreeMap<String, String>,
    /// The `source` commit checked out into the workspace of every job that has `checkout`.
    pub checkout: Option<Checkout>,
    /// Where artifacts are kept (`artifacts/`) and attempts' scratch space lives (`work/`,
    /// removed as each attempt ends). `None`: a directory under the system's temporary
    /// directory, removed when the run ends.
    pub run_dir: Option<PathBuf>,
    /// The cache directory (one project's caches, laid out as on the server); `None`: `cache:`
    /// is neither restored nor saved.
    pub cache_dir: Option<PathBuf>,
    /// Jobs that do not run but count as succeeded with these outputs, as a server's retry
    /// reuses jobs (`Event::JobReused`): `kiln run --replay` gives the needed jobs of the
    /// replayed one the outputs they had on the server (and puts their artifacts into
    /// `run_dir/artifacts` itself).
    pub reused: BTreeMap<JobId, BTreeMap<String, String>>,
    /// A failed `script:` job does not end: its script stops at the failing step and waits
    /// (see [`pausing_script`]) until the watcher, told by a log line starting with
    /// [`PAUSED`], has let someone look around and created `done` in the control directory.
    pub pause_on_failure: bool,
}

/// Start of the log line (stderr, followed by the control directory) a job paused by
/// [`LocalSetup::pause_on_failure`] writes once it waits. The control directory (inside the
/// task: on the host for host processes, in the container for Docker) holds `env` (`export
/// -p` at the failing step), `pwd` (the directory it ran in), `command` (the failing step's
/// text) and `rc` (its exit code); creating `done` there lets the job end with that code.
pub const PAUSED: &str = "kiln: replay: paused; control directory ";

/// A job's script lines as one `sh -e` script that behaves the same, except that when a step
/// fails the script does not end: it writes its control files (see [`PAUSED`]) into a fresh
/// temporary directory, prints the failing step and the [`PAUSED`] line on stderr, and waits
/// for `done` there before exiting with the step's code. A step is one entry of `script:`
/// (one list item may hold several lines).
pub fn pausing_script(lines: &[String]) -> String {
    const END: &str = "KILN_REPLAY_STEP_END_7f3a";
    let mut s = String::from("__kiln_step=0\n__kiln_failed() {\n  case \"$__kiln_step\" in\n");
    for (i, line) in lines.iter().enumerate() {
        s.push_str(&format!("  {}) cat <<'{END}'\n{line}\n{END}\n  ;;\n", i + 1));
    }
    s.push_str(
        r#"  esac
}
__kiln_paused() {
  __kiln_rc=$?
  trap - EXIT
  if [ "$__kiln_rc" -ne 0 ]; then
    __kiln_ctl=$(mktemp -d "${TMPDIR:-/tmp}/kiln-replay.XXXXXX")
    export -p > "$__kiln_ctl/env"
    pwd > "$__kiln_ctl/pwd"
    echo "$__kiln_rc" > "$__kiln_ctl/rc"
    __kiln_failed > "$__kiln_ctl/command"
    echo "kiln: replay: step $__kiln_step failed with exit code $__kiln_rc:" >&2
    while IFS= read -r __kiln_l; do echo "kiln: replay: > $__kiln_l" >&2; done < "$__kiln_ctl/command"
"#,
    );
    s.push_str(&format!("    echo \"{PAUSED}$__kiln_ctl\" >&2\n"));
    s.push_str(
        r#"    while [ ! -e "$__kiln_ctl/done" ]; do sleep 1; done
    rm -rf "$__kiln_ctl"
  fi
  exit "$__kiln_rc"
}
trap __kiln_paused EXIT
"#,
    );
    for (i, line) in lines.iter().enumerate() {
        s.push_str(&format!("__kiln_step={}\n{line}\n", i + 1));
    }
    s
}

/// What `kiln run` cannot do as the server does, one line per workflow key that asks for it
/// (and the jobs that do), for a warning at start. Empty when the plan needs nothing of the
/// server.
pub fn local_limits(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    let jobs_where = |f: &dyn Fn(&kiln_workflow::plan::Job) -> bool| -> Option<String> {
        let ids: Vec<&str> = plan.jobs.iter().filter(|j| f(j)).map(|j| j.id.as_str()).collect();
        (!ids.is_empty()).then(|| ids.join(", "))
    };
    if plan.concurrency.is_some() || plan.concurrency_group.is_some() {
        out.push(
            "`concurrency:` has no effect: kiln run runs this one run and queues nothing"
                .to_string(),
        );
    }
    if let Some(jobs) = jobs_where(&|j| !j.scheduling.constraints.is_empty()) {
        out.push(format!(
            "`constraints:` are not checked: there is no pool, every job runs on this machine \
             (jobs {jobs})"
        ));
    }
    if let Some(jobs) = jobs_where(&|j| !j.scheduling.ports.is_empty()) {
        out.push(format!(
            "`ports:` are not handed out: no host port is published and KILN_PORT_*, \
             KILN_HOST_IP, KILN_HOSTNAME and KILN_NODE are not set (jobs {jobs})"
        ));
    }
    if let Some(jobs) = jobs_where(&|j| {
        j.scheduling.priority != 0 || j.scheduling.spread || j.resources.disk_bytes.is_some()
    }) {
        out.push(format!(
            "`priority:`, `placement:` and `resources.disk` only choose a machine of a pool: \
             ignored here (jobs {jobs})"
        ));
    }
    if !plan.prepull.is_empty() {
        out.push(
            "`prepull:` warms the nodes of a pool: ignored here (each job pulls its image when \
             it starts)"
                .to_string(),
        );
    }
    let pooled = jobs_where(&|j| !j.pools.is_empty());
    if !plan.pools.is_empty() || pooled.is_some() {
        out.push(
            "`service-pools:` start on this machine: their constraints are not checked (every \
             replica runs here), an instance that exits is not restarted, and \
             KILN_POOL_CLIENTS is 127.0.0.1/32"
                .to_string(),
        );
    }
    let registry = |t: &str| t.contains("KILN_REGISTRY");
    if let Some(jobs) = jobs_where(&|j| {
        let run = match &j.run {
            RunSpec::Script(lines) => lines.iter().any(|l| registry(l)),
            RunSpec::Command { command, args } => {
                command.iter().flatten().chain(args).any(|a| registry(a))
            }
            RunSpec::Build(_) => true,
            RunSpec::Trigger(_) | RunSpec::Deploy(_) => false,
        };
        run || j.env.values().any(|v| registry(v))
            || plan.env.values().any(|v| registry(v))
            || j.services.iter().any(|s| s.env.values().any(|v| registry(v)))
    }) {
        out.push(format!(
            "there is no registry here: KILN_REGISTRY and KILN_REGISTRY_TOKEN are not set \
             (jobs {jobs})"
        ));
    }
    out
}

/// Why `kiln run` refuses to run `jobs` (a plan's, or the one `--replay` runs) before
/// anything runs: one line per job that only a server can carry out (`trigger:`, `deploy:`,
/// `environment:`). Empty when they run here.
pub fn server_only<'a>(
    jobs: impl IntoIterator<Item = &'a kiln_workflow::plan::Job>,
) -> Vec<String> {
    let mut out = Vec::new();
    for j in jobs {
        let what = match (j.run.on_server(), &j.environment) {
            (Some("trigger"), _) => "starts pipelines (trigger:)",
            (Some(_), _) => "deploys a service (deploy:)",
            (None, Some(_)) => "runs in an environment (environment:), whose variables live",
            (None, None) => continue,
        };
        out.push(format!(
            "job `{}` {what} on a server: kiln run cannot do that; store the workflow with \
             kiln pipeline apply and start it there with kiln trigger",
            j.id
        ));
    }
    out
}

/// Builds the executor task for one job attempt. With `posix_shell` (see
/// [`Executor::posix_shell`]) a `script:` becomes the job script that echoes each line;
/// without, its lines are handed over as written.
pub fn task_spec(run_id: &str, job_index: usize, start: &StartJob, posix_shell: bool) -> TaskSpec {
    let job = &start.job;
    let entry = match &job.run {
        RunSpec::Script(lines) if posix_shell => Entry::Script(crate::script::job_script(lines)),
        RunSpec::Script(lines) => Entry::Script(lines.join("\n")),
        RunSpec::Command { command, args } => {
            Entry::Command { command: command.clone(), args: args.clone() }
        }
        // Never handed to an executor: the server carries these out and `kiln run` refuses
        // them first. Should one get here, it fails saying so.
        RunSpec::Build(build) => Entry::Script(crate::build::script(build)),
        RunSpec::Trigger(_) | RunSpec::Deploy(_) => Entry::Script(format!(
            "echo 'this job runs on the server only ({}:): an agent cannot run it' >&2; exit 2",
            job.run.on_server().unwrap_or_default()
        )),
    };
    let short: String = run_id.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
    let labels = BTreeMap::from([
        ("kiln.run".to_string(), run_id.to_string()),
        ("kiln.job".to_string(), job.id.to_string()),
        ("kiln.attempt".to_string(), start.attempt.to_string()),
    ]);
    TaskSpec {
        id: TaskId::sanitized(&format!("kiln-{short}-{job_index}-{}-{}", job.id, start.attempt)),
        labels,
        image: job.image.clone(),
        builder: matches!(job.run, RunSpec::Build(_)),
        constraints: job
            .scheduling
            .constraints
            .iter()
            .map(|group| {
                group
                    .iter()
                    .map(|t| kiln_exec::ConstraintTest {
                        attribute: t.attribute.clone(),
                        operator: t.operator.clone(),
                        value: t.value.clone(),
                    })
                    .collect()
            })
            .collect(),
        entry,
        env: job.env.clone(),
        workdir: job.workdir.clone(),
        services: job
            .services
            .iter()
            .map(|s| ServiceSpec {
                name: s.name.clone(),
                image: s.image.clone(),
                env: s.env.clone(),
                command: s.command.clone(),
            })
            .collect(),
        limits: Limits {
            cpu_millis: job.resources.cpu_millis,
            memory_bytes: job.resources.memory_bytes,
        },
        seed: None,
        ports: Vec::new(),
        host_network: false,
        pull_auth: None,
        binds: Vec::new(),
    }
}

/// How an array job's index is named in a local run's tasks and lines: `JOB[INDEX]`.
fn index_name(job: &JobId, index: u32) -> JobId {
    JobId(format!("{job}[{index}]"))
}

/// A new run id: 16 hex digits, time-ordered.
pub fn new_run_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()[..16].to_string()
}

struct Driver {
    run_id: String,
    plan: Arc<Plan>,
    executor: Arc<dyn Executor>,
    setup: Arc<LocalSetup>,
    run_dir: PathBuf,
    engine: Run,
    events: mpsc::UnboundedSender<Event>,
    updates: mpsc::UnboundedSender<Update>,
    tasks: HashMap<(JobId, u32), CancellationToken>,
    known: Vec<JobStatus>,
    first_start: HashMap<JobId, Instant>,
    durations: HashMap<JobId, Duration>,
    finished: Option<RunState>,
    /// Why every job fails at once: the run's service pools never got ready.
    pool_failure: Option<String>,
    /// Array indexes the engine handed out that wait for a free slot of this machine.
    index_queue: VecDeque<(Arc<StartJob>, IndexAttempt)>,
    /// Array indexes running now, and how many may (the machine's CPUs).
    index_running: usize,
    index_slots: usize,
}

/// A pool instance's output as a watcher sees it: a line of the "job" `pool <name>/<slot>`.
fn pool_log(
    updates: &mpsc::UnboundedSender<Update>,
) -> impl Fn(&str, LogLine) + Clone + Send + Sync + 'static {
    let updates = updates.clone();
    move |name: &str, line: LogLine| {
        let _ = updates.send(Update::Log { job: JobId(format!("pool {name}")), line });
    }
}

impl LocalRun {
    /// Runs to a final state. Updates go to `updates` (dropped receivers are fine);
    /// `control` steers. Returns when the run has ended and every task was destroyed.
    pub async fn run(
        self,
        updates: mpsc::UnboundedSender<Update>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> Report {
        let (events, mut event_rx) = mpsc::unbounded_channel();
        let mut setup = self.setup;
        // The run's service pools first: every job waits for them and gets their exports.
        let mut control_open = true;
        let mut held = Vec::new();
        let (run_pools, ready) = if self.plan.pools.is_empty() {
            (Vec::new(), Ok(BTreeMap::new()))
        } else if let Some(why) = pools::supported(self.executor.name()) {
            (Vec::new(), Err(why))
        } else {
            let stop_waiting = CancellationToken::new();
            let wait = pools::start_all(
                &self.executor,
                &self.run_id,
                "",
                &self.plan.pools,
                &stop_waiting,
                pool_log(&updates),
            );
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    r = &mut wait => break r,
                    c = control.recv(), if control_open => match c {
                        Some(c) => {
                            if matches!(c, Control::Cancel { .. }) {
                                stop_waiting.cancel();
                            }
                            held.push(c);
                        }
                        None => control_open = false,
                    },
                }
            }
        };
        let pool_failure = match ready {
            Ok(env) => {
                setup.env.extend(env);
                None
            }
            Err(why) => Some(why),
        };
        let mut engine = Run::new(self.plan.clone(), self.params);
        for (job, outputs) in &setup.reused {
            engine.handle(Event::JobReused { job: job.clone(), outputs: outputs.clone() });
        }
        let known = engine.jobs().map(|(_, s)| s.clone()).collect();
        let temporary = setup.run_dir.is_none();
        let run_dir = setup
            .run_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("kiln-run-{}", self.run_id)));
        let mut d = Driver {
            run_id: self.run_id,
            plan: self.plan,
            executor: self.executor,
            setup: Arc::new(setup),
            run_dir,
            engine,
            events,
            updates,
            tasks: HashMap::new(),
            known,
            first_start: HashMap::new(),
            durations: HashMap::new(),
            finished: None,
            pool_failure,
            index_queue: VecDeque::new(),
            index_running: 0,
            index_slots: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let commands = d.engine.start();
        d.apply(commands);
        d.start_indexes();
        for c in held {
            d.on_control(c);
        }
        while d.finished.is_none() || !d.tasks.is_empty() {
            tokio::select! {
                Some(event) = event_rx.recv() => d.on_event(event),
                c = control.recv(), if control_open => match c {
                    Some(c) => d.on_control(c),
                    None => control_open = false,
                },
            }
        }
        pools::stop_all(run_pools).await;
        let _ = tokio::fs::remove_dir_all(d.run_dir.join("work")).await;
        let mut report = d.report();
        let artifacts = d.run_dir.join("artifacts");
        if temporary {
            let _ = tokio::fs::remove_dir_all(&d.run_dir).await;
        } else if tokio::fs::metadata(&artifacts).await.is_ok() {
            report.artifacts = Some(artifacts);
        } else {
            // Nothing kept: no empty directory left behind (`remove_dir` keeps a full one).
            let _ = tokio::fs::remove_dir(&d.run_dir).await;
        }
        report
    }
}

impl Driver {
    fn on_control(&mut self, c: Control) {
        let event = match c {
            Control::Approve { stage, by } => Event::Approved { stage, by },
            Control::Reject { stage, by } => Event::Rejected { stage, by },
            Control::Cancel { by } => Event::Cancel { by },
        };
        self.on_event(event);
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match &event {
            Event::JobStarted { job, .. } => {
                self.first_start.entry(job.clone()).or_insert(now);
            }
            Event::JobExited { job, attempt, .. } => {
                self.tasks.remove(&(job.clone(), *attempt));
                if let Some(start) = self.first_start.get(job) {
                    self.durations.insert(job.clone(), now - *start);
                }
            }
            Event::IndexesStarted { job, .. } => {
                self.first_start.entry(job.clone()).or_insert(now);
            }
            Event::IndexesExited { job, exits } => {
                for e in exits {
                    if self.tasks.remove(&(index_name(job, e.index), e.attempt)).is_some() {
                        self.index_running -= 1;
                    }
                }
                if let Some(start) = self.first_start.get(job) {
                    self.durations.insert(job.clone(), now - *start);
                }
            }
            _ => {}
        }
        let commands = self.engine.handle(event);
        self.apply(commands);
        self.start_indexes();
    }

    /// Starts queued array indexes while this machine has slots for them.
    fn start_indexes(&mut self) {
        while self.index_running < self.index_slots {
            let Some((start, ia)) = self.index_queue.pop_front() else { break };
            self.index_running += 1;
            self.start_task((*start).clone(), Some(ia));
        }
    }

    fn apply(&mut self, commands: Vec<Command>) {
        // Job changes first, so a watcher sees them before a pause or the end they lead to.
        self.publish_changes();
        for command in commands {
            match command {
                Command::StartJob(start) => self.start_task(*start, None),
                Command::StartIndexes { start, indexes } => {
                    let start = Arc::new(*start);
                    self.index_queue.extend(indexes.into_iter().map(|ia| (start.clone(), ia)));
                }
                Command::CancelIndexes { job, indexes } => {
                    let mut exits = Vec::new();
                    for ia in indexes {
                        if let Some(token) =
                            self.tasks.get(&(index_name(&job, ia.index), ia.attempt))
                        {
                            token.cancel();
                        } else if let Some(pos) =
                            self.index_queue.iter().position(|(s, q)| s.job.id == job && *q == ia)
                        {
                            self.index_queue.remove(pos);
                            exits.push(IndexExit {
                                index: ia.index,
                                attempt: ia.attempt,
                                outcome: Outcome::Canceled,
                                millis: 0,
                            });
                        }
                    }
                    if !exits.is_empty() {
                        let _ = self.events.send(Event::IndexesExited { job, exits });
                    }
                }
                Command::CancelJob { job, attempt } => {
                    if let Some(token) = self.tasks.get(&(job, attempt)) {
                        token.cancel();
                    }
                }
                Command::Pause { stage, description } => {
                    let _ = self.updates.send(Update::Paused { stage, description });
                }
                Command::ArmTimer { timer, after } => {
                    let events = self.events.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = events.send(Event::TimerFired(timer));
                    });
                }
                Command::Finish(state) => {
                    self.finished = Some(state);
                }
            }
        }
        self.publish_changes();
        if let Some(state) = self.finished
            && self.tasks.is_empty()
        {
            let _ = self.updates.send(Update::Finished(state));
        }
    }

    /// Sends an update for every job whose status changed since the last call.
    fn publish_changes(&mut self) {
        for (i, (id, status)) in self.engine.jobs().enumerate() {
            if self.known[i] != *status {
                self.known[i] = status.clone();
                let _ = self.updates.send(Update::Job { job: id.clone(), status: status.clone() });
            }
        }
    }

    /// Starts an attempt of a job, or of one index of an array job (`index`).
    fn start_task(&mut self, mut start: StartJob, index: Option<IndexAttempt>) {
        let base = start.job.id.clone();
        let attempt = index.map_or(start.attempt, |ia| ia.attempt);
        // An index runs as the job `JOB[INDEX]`: its task, its lines and its work directory.
        let job = match index {
            Some(ia) => index_name(&base, ia.index),
            None => base.clone(),
        };
        let ended = {
            let events = self.events.clone();
            let base = base.clone();
            let begun = Instant::now();
            move |attempt: u32, outcome: Outcome| {
                let event = match index {
                    Some(ia) => Event::IndexesExited {
                        job: base,
                        exits: vec![IndexExit {
                            index: ia.index,
                            attempt,
                            outcome,
                            millis: begun.elapsed().as_millis() as u64,
                        }],
                    },
                    None => Event::JobExited { job: base, attempt, outcome },
                };
                let _ = events.send(event);
            }
        };
        start.job.id = job.clone();
        start.attempt = attempt;
        if let Some(why) = &self.pool_failure {
            ended(attempt, Outcome::Error(why.clone()));
            return;
        }
        if let Some(kind) = start.job.run.on_server() {
            // `server_only` names these before a run starts; here only as a last guard.
            let why = format!("job `{job}` ({kind}:) runs on a server only; kiln run cannot");
            ended(attempt, Outcome::Error(why));
            return;
        }
        let job_index = self.plan.job_index(&base).unwrap_or(0);
        let mut spec = task_spec(&self.run_id, job_index, &start, self.executor.posix_shell());
        if self.setup.pause_on_failure
            && let RunSpec::Script(lines) = &start.job.run
        {
            spec.entry = Entry::Script(pausing_script(lines));
        }
        spec.env.extend(self.setup.env.clone());
        spec.env.extend(kiln_workflow::run_env::attempt_env(base.as_str(), attempt));
        if let Some(ia) = index {
            spec.env.insert(kiln_workflow::plan::ARRAY_INDEX_VAR.into(), ia.index.to_string());
        }
        // A build's `credentials` name project secrets on a server; here, variables of this
        // environment (as `source.credentials` does), unless the job's env sets them.
        if let RunSpec::Build(build) = &start.job.run {
            for var in build.credentials.values() {
                if let (false, Ok(value)) = (spec.env.contains_key(var), std::env::var(var)) {
                    spec.env.insert(var.clone(), value);
                }
            }
        }
        spec.host_network = start.job.scheduling.host_network;
        // As on the server: the artifacts of needed jobs that keep some, in `needs` order.
        let inputs: Vec<String> = start
            .job
            .needs
            .iter()
            .filter(|n| {
                self.plan.job_index(n).is_some_and(|i| self.plan.jobs[i].artifacts.is_some())
            })
            .map(|n| n.to_string())
            .collect();
        let dir = self.run_dir.join("work").join(format!(
            "{}-{attempt}",
            job.as_str().replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
        ));
        let files = DirFiles {
            artifacts: self.run_dir.join("artifacts"),
            cache: self.setup.cache_dir.clone().unwrap_or_default(),
            job: job.to_string(),
        };
        let token = CancellationToken::new();
        self.tasks.insert((job.clone(), attempt), token.clone());
        let executor = self.executor.clone();
        let setup = self.setup.clone();
        let events = self.events.clone();
        let updates = self.updates.clone();
        let run_id = self.run_id.clone();
        tokio::spawn(async move {
            let mut spec = spec;
            // The job's own service pools, for this attempt.
            let (job_pools, ready) = if start.job.pools.is_empty() {
                (Vec::new(), Ok(BTreeMap::new()))
            } else if let Some(why) = pools::supported(executor.name()) {
                (Vec::new(), Err(why))
            } else {
                let scope = job.as_str();
                let log = pool_log(&updates);
                pools::start_all(&executor, &run_id, scope, &start.job.pools, &token, log).await
            };
            match ready {
                Ok(env) => spec.env.extend(env),
                Err(why) => {
                    pools::stop_all(job_pools).await;
                    ended(attempt, Outcome::Error(why));
                    return;
                }
            }
            let checkout = if start.job.checkout { setup.checkout.as_ref() } else { None };
            let wrapped = Attempt {
                job: &start.job,
                spec,
                inputs: &inputs,
                checkout,
                cache: setup.cache_dir.is_some(),
                dir: &dir,
            };
            let outcome = run_attempt(&*executor, &files, wrapped, &token, |e| match e {
                TaskEvent::Started => {
                    let _ = events.send(match index {
                        Some(ia) => Event::IndexesStarted { job: base.clone(), indexes: vec![ia] },
                        None => Event::JobStarted { job: job.clone(), attempt },
                    });
                }
                // An array's indexes have no outputs (the engine keeps none of them).
                TaskEvent::Output { .. } if index.is_some() => {}
                TaskEvent::Output { key, value } => {
                    let _ = events.send(Event::JobOutput { job: job.clone(), attempt, key, value });
                }
                TaskEvent::Log(line) => {
                    let _ = updates.send(Update::Log { job: job.clone(), line });
                }
                TaskEvent::Waiting(why) => {
                    let line = LogLine {
                        stream: kiln_exec::Stream::Stderr,
                        time: chrono::Utc::now(),
                        text: format!("kiln: waiting: {why}"),
                    };
                    let _ = updates.send(Update::Log { job: job.clone(), line });
                }
            })
            .await;
            pools::stop_all(job_pools).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            ended(attempt, outcome);
        });
    }

    fn report(&self) -> Report {
        let jobs = self
            .engine
            .jobs()
            .map(|(id, s)| JobReport {
                id: id.clone(),
                state: s.state,
                attempts: s.attempts,
                duration: self.durations.get(id).copied(),
                outputs: s.outputs.clone(),
                exit_code: s.exit_code,
                reason: s.reason.clone(),
            })
            .collect();
        Report {
            run_id: self.run_id.clone(),
            state: self.finished.unwrap_or(self.engine.state()),
            jobs,
            artifacts: None,
        }
    }
}
