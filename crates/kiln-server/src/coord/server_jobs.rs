//! Jobs the server carries out itself instead of an agent (`trigger:` and `deploy:`): one
//! task per attempt, spawned by the run's actor, that feeds the actor what an agent's attempt
//! would report (started, log lines, outputs, exited) and ends when the actor cancels it.
//!
//! A trigger job starts its pipelines as its run's author (`Run::author`: the token of the API
//! call that started the run, or of its upstream run; a run the server started by itself acts
//! for its own project only), as one set of runs created under the attempt's key: a server
//! restarted while the job waits starts the task again, which finds the runs of the first
//! start instead of making new ones. With `wait` (the default) the job ends as its runs end and
//! takes their jobs' outputs; canceling it cancels them.
//!
//! Invariants: a task reports `JobExited` at most once, and nothing once the server began to
//! stop (the next start takes over); every line it logs and every output is masked as an
//! agent's would be; a pipeline never starts itself, directly or through other runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kiln_engine::{Event, Outcome, RunState, StartJob};
use kiln_logs::{LogLine, Masker, Stream};
use kiln_store::{NewRun, NewRunSet, Role, Run, RunId};
use kiln_workflow::plan::{JobId, RunSpec};
use kiln_workflow::server_job::{DeploySpec, TriggerSpec};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Coord, RunMsg, RunTx, job_log_key, run_log_key};
use crate::error::ApiErr;
use crate::run_events::FeedItem;

/// How many runs deep runs may start runs.
const MAX_DEPTH: usize = 8;

/// How often a waiting trigger job looks at its runs, besides each run event it hears.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// One attempt of a job the server carries out.
pub(super) struct JobTask {
    /// The coordinator (store, feed, run creation).
    pub coord: Coord,
    /// The job's run.
    pub run: Run,
    /// The job.
    pub job: JobId,
    /// Its index in the plan (for its log).
    pub index: usize,
    /// The attempt.
    pub attempt: u32,
    /// The run's actor.
    pub tx: RunTx,
    /// Masks the run's secrets in what the task logs and outputs.
    pub masker: Arc<Masker>,
    /// Canceled by the actor (`CancelJob`).
    pub cancel: CancellationToken,
    /// Why a line of its log could not be stored, once one could not: the attempt then ends
    /// failed with that cause, as an agent's attempt does (a log with a hole is never passed
    /// off as whole).
    pub unstored: std::sync::OnceLock<String>,
}

/// How a wait for runs ended.
enum Waited {
    /// Every run ended: as they are now.
    Ended(Vec<Run>),
    /// The job was canceled.
    Canceled,
    /// The job's timeout passed.
    TimedOut,
    /// The server is stopping: report nothing, the next start resumes.
    Stopping,
}

/// The state of runs together: `pending` while none started, `running` while one has not
/// ended, then `failure` if one failed or timed out, `canceled` if one was canceled, else
/// `success`.
pub fn group_state(states: &[RunState]) -> RunState {
    if states.iter().all(|s| *s == RunState::Pending) {
        RunState::Pending
    } else if states.iter().any(|s| !s.is_final()) {
        RunState::Running
    } else if states.iter().any(|s| matches!(s, RunState::Failure | RunState::Timeout)) {
        RunState::Failure
    } else if states.contains(&RunState::Canceled) {
        RunState::Canceled
    } else {
        RunState::Success
    }
}

/// An output name made of a downstream job's id and output key: letters, digits and `_`
/// (`build-image`, `digest` -> `build_image_digest`), so it is also an env name.
pub fn output_name(job: &str, key: &str) -> String {
    format!("{job}_{key}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

impl JobTask {
    /// Carries the attempt out and reports its end (unless the server is stopping).
    pub(super) async fn run(self, sj: StartJob) {
        self.send(Event::JobStarted { job: self.job.clone(), attempt: self.attempt });
        let outcome = match &sj.job.run {
            RunSpec::Trigger(spec) => match self.trigger(spec, sj.job.timeout).await {
                Some(outcome) => outcome,
                None => return,
            },
            RunSpec::Deploy(spec) => match self.deploy(spec).await {
                Some(outcome) => outcome,
                None => return,
            },
            RunSpec::Script(_) | RunSpec::Command { .. } | RunSpec::Build(_) => {
                Outcome::Error("an agent's job reached the server's own runner".into())
            }
        };
        if let Outcome::Error(why) = &outcome {
            self.log(Stream::Stderr, &format!("error: {why}"));
        }
        let outcome = match self.unstored.get() {
            Some(why) => Outcome::Error(why.clone()),
            None => outcome,
        };
        self.send(Event::JobExited { job: self.job.clone(), attempt: self.attempt, outcome });
    }

    fn send(&self, event: Event) {
        let _ = self.tx.send(RunMsg::Event { event, reply: None });
    }

    fn output(&self, key: &str, value: &str) {
        let value = self.masker.mask(value).into_owned();
        self.send(Event::JobOutput {
            job: self.job.clone(),
            attempt: self.attempt,
            key: key.to_string(),
            value,
        });
    }

    /// Logs a line of the job, masked, in its log (shown in the run's, stored once).
    fn log(&self, stream: Stream, text: &str) {
        let line = LogLine { stream, time: Utc::now(), text: text.to_string() };
        if let Err(e @ kiln_logs::LogError::Io { .. }) = self.coord.sh.logs.append_viewed(
            &job_log_key(&self.run.id, self.index, self.attempt),
            &line,
            Some(&self.masker),
            &run_log_key(&self.run.id),
            self.job.as_str(),
        ) {
            self.unstorable(&e);
        }
    }

    /// A line of the attempt's log could not be stored (`e`): the first time, a marker line
    /// saying so goes to its log, shown in the run's (written even on a full disk, see
    /// [`kiln_logs::LogStore::append_marker_viewed`]), and the attempt will end failed with
    /// that cause.
    fn unstorable(&self, e: &kiln_logs::LogError) {
        let why = format!("a log line could not be stored: {e}");
        if self.unstored.set(why.clone()).is_err() {
            return;
        }
        tracing::error!("run {} job {}: {why}", self.run.full_name(), self.job);
        let marker =
            LogLine { stream: Stream::Stderr, time: Utc::now(), text: format!("kiln: {why}") };
        let _ = self.coord.sh.logs.append_marker_viewed(
            &job_log_key(&self.run.id, self.index, self.attempt),
            &marker,
            &run_log_key(&self.run.id),
            self.job.as_str(),
        );
    }

    fn say(&self, text: &str) {
        self.log(Stream::Stdout, text);
    }

    /// A deploy attempt: its deployment made (or, after a server restart, found again) and
    /// followed to its end, each change logged; `None` when the server is stopping (the next
    /// start follows the same deployment). Outputs: `deployment`, `digest`, `service`.
    async fn deploy(&self, spec: &DeploySpec) -> Option<Outcome> {
        let asked_by = match self.deployer(&spec.environment).await {
            Ok(name) => name,
            Err(why) => return Some(Outcome::Error(why)),
        };
        let (progress, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let job = match self.attempt {
            1 => self.job.to_string(),
            n => format!("{} (attempt {n})", self.job),
        };
        let req = crate::deploys::DeployJob {
            project: self.run.project.clone(),
            spec: spec.service.clone(),
            environment: spec.environment.clone(),
            image: spec.image.clone(),
            run: crate::deploys::RunRef {
                id: self.run.id.to_string(),
                name: self.run.full_name(),
                job,
            },
            asked_by,
            timeout: spec.timeout,
            progress,
        };
        let deploys = self.coord.sh.deploys.clone();
        let work = deploys.deploy_for_job(req);
        tokio::pin!(work);
        let ended = loop {
            tokio::select! {
                Some(line) = lines.recv() => self.say(&line),
                ended = &mut work => break ended,
                () = self.cancel.cancelled() => {
                    self.say(
                        "the job was canceled; its deployment goes on (kiln deploy history \
                         shows it, kiln rollback undoes it)",
                    );
                    return Some(Outcome::Canceled);
                }
                () = self.coord.sh.stopping.cancelled() => return None,
            }
        };
        while let Ok(line) = lines.try_recv() {
            self.say(&line);
        }
        let d = match ended {
            Ok(d) => d,
            Err(e) => return Some(Outcome::Error(e.message)),
        };
        self.output("deployment", &d.number.to_string());
        self.output("digest", &d.digest);
        self.output("service", &d.service_name);
        Some(match d.state.as_str() {
            "succeeded" => Outcome::Exited(0),
            state => Outcome::Error(format!(
                "deployment {} of {} to {} ended {state}{}",
                d.number,
                d.service,
                d.environment,
                d.reason.map(|r| format!(": {r}")).unwrap_or_default()
            )),
        })
    }

    /// Who asks for a deploy job's deployment: the run's author, who must be a developer of
    /// its project; a run the server started itself (a push, a schedule) deploys in its own
    /// project as what started it (`triggered_by`).
    async fn deployer(&self, env: &str) -> Result<String, String> {
        let name = self.run.full_name();
        let Some(id) = self.run.author else {
            return Ok(self.run.triggered_by.clone());
        };
        let store = &self.coord.sh.store;
        let token = store.token(&id).await.map_err(|e| {
            format!("run {name} may not deploy to `{env}`: its author's token: {e}")
        })?;
        if token.revoked_at.is_some() {
            return Err(format!(
                "run {name} may not deploy to `{env}`: the token of its author, `{}`, was revoked",
                token.name
            ));
        }
        let project = store
            .project(&self.run.project)
            .await
            .map_err(|e| format!("run {name} may not deploy to `{env}`: {e}"))?;
        let author = crate::auth::Caller {
            name: token.name.clone(),
            role: token.role,
            project: token.project,
            internal: false,
            token: Some(id),
        };
        author.require_on(Role::Developer, &project).map_err(|e| {
            format!("run {name} may not deploy to `{env}` as its author: {}", e.message)
        })?;
        Ok(token.name)
    }

    /// A trigger attempt; `None` when the server is stopping.
    async fn trigger(&self, spec: &TriggerSpec, timeout: Option<Duration>) -> Option<Outcome> {
        let runs = match self.start(spec).await {
            Ok(Some(runs)) => runs,
            Ok(None) => return Some(Outcome::Canceled),
            Err(why) => return Some(Outcome::Error(why)),
        };
        let many = spec.group;
        if let Some(group) = runs.first().and_then(|r| r.group).filter(|_| many) {
            self.output("group", &group.to_string());
            let names: Vec<String> = runs.iter().map(Run::full_name).collect();
            self.output("runs", &names.join(" "));
        }
        for (n, run) in runs.iter().enumerate() {
            if many {
                self.output(&format!("run{}", n + 1), &run.id.to_string());
                self.output(&format!("run{}_name", n + 1), &run.full_name());
            } else {
                self.output("run", &run.id.to_string());
                self.output("name", &run.full_name());
                self.output("number", &run.number.to_string());
            }
        }
        let waited: Vec<usize> = (0..runs.len()).filter(|&i| spec.targets[i].wait).collect();
        for (i, run) in runs.iter().enumerate().filter(|(i, _)| !waited.contains(i)) {
            self.say(&format!("not waiting for {} (wait: false)", run.full_name()));
            let prefix = if many { format!("run{}_", i + 1) } else { String::new() };
            self.output(&format!("{prefix}state"), run.state.as_str());
        }
        if waited.is_empty() {
            if many {
                self.output("state", group_state(&states(&runs)).as_str());
            }
            return Some(Outcome::Exited(0));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let ended = match self.wait(&runs, &waited, deadline).await {
            Waited::Ended(ended) => ended,
            Waited::Stopping => return None,
            Waited::Canceled => {
                self.cancel_runs(&runs, &waited, "was canceled").await;
                return Some(Outcome::Canceled);
            }
            Waited::TimedOut => {
                self.say("the job's timeout passed");
                self.cancel_runs(&runs, &waited, "timed out").await;
                return Some(Outcome::TimedOut);
            }
        };
        Some(self.ended(&runs, &waited, &ended, many).await)
    }

    /// What ended runs give the job: outputs, and its outcome.
    async fn ended(&self, runs: &[Run], waited: &[usize], ended: &[Run], many: bool) -> Outcome {
        let mut all = states(runs);
        for (&i, run) in waited.iter().zip(ended) {
            all[i] = run.state;
            let prefix = if many { format!("run{}_", i + 1) } else { String::new() };
            self.output(&format!("{prefix}state"), run.state.as_str());
            match self.coord.sh.store.jobs(&run.id).await {
                Ok(jobs) => {
                    for j in jobs {
                        for (key, value) in &j.outputs {
                            let name = output_name(j.job.as_str(), key);
                            self.output(&format!("{prefix}{name}"), value);
                        }
                    }
                }
                Err(e) => self.log(
                    Stream::Stderr,
                    &format!("the outputs of {} could not be read: {e}", run.full_name()),
                ),
            }
        }
        if many {
            self.output("state", group_state(&all).as_str());
        }
        let bad: Vec<String> = ended
            .iter()
            .filter(|r| r.state != RunState::Success)
            .map(|r| match &r.reason {
                Some(why) => format!("run {} ended {}: {why}", r.full_name(), r.state),
                None => format!("run {} ended {}", r.full_name(), r.state),
            })
            .collect();
        if bad.is_empty() { Outcome::Exited(0) } else { Outcome::Error(bad.join("; ")) }
    }

    /// The runs of the attempt: those started before (a restart while the job waited), else
    /// new ones, after checking every target. `None`: canceled before it started any.
    async fn start(&self, spec: &TriggerSpec) -> Result<Option<Vec<Run>>, String> {
        let store = &self.coord.sh.store;
        let key = format!("job:{}:{}:{}", self.run.id, self.job, self.attempt);
        let mut found = Vec::new();
        for position in 0..spec.targets.len() {
            match store.run_by_trigger(&format!("{key}/{position}")).await {
                Ok(Some(run)) => found.push(run),
                Ok(None) => break,
                Err(e) => return Err(format!("cannot look for the runs started before: {e}")),
            }
        }
        if found.len() == spec.targets.len() {
            for run in &found {
                self.say(&format!(
                    "waiting again for {} (started before the server restarted, id {})",
                    run.full_name(),
                    run.id
                ));
            }
            return Ok(Some(found));
        }
        if self.cancel.is_cancelled() {
            return Ok(None);
        }
        let chain = self.upstream().await?;
        let mut news = Vec::new();
        for t in &spec.targets {
            let project = t.project.clone().unwrap_or_else(|| self.run.project.clone());
            let full = format!("{project}/{}", t.pipeline);
            let cannot = |e: ApiErr| format!("cannot start {full}: {}", e.message);
            let p = store.project(&project).await.map_err(|e| cannot(e.into()))?;
            self.may_start(&p, &full).await?;
            let pipeline =
                store.pipeline(&project, &t.pipeline).await.map_err(|e| cannot(e.into()))?;
            if let Some(up) = chain.iter().find(|r| r.pipeline_id == pipeline.id) {
                let path: Vec<String> = chain.iter().map(Run::full_name).collect();
                return Err(format!(
                    "cannot start {full}: its run {} is upstream of this job ({}); a pipeline \
                     may not start itself, directly or through other pipelines",
                    up.full_name(),
                    path.join(" <- ")
                ));
            }
            let plan = self.coord.plan_of(&pipeline).map_err(cannot)?;
            super::check_params(&plan, &t.params).map_err(cannot)?;
            news.push(NewRun {
                pipeline: pipeline.id,
                params: serde_json::to_value(&t.params).unwrap_or_default(),
                triggered_by: format!("job {} of run {}", self.job, self.run.full_name()),
                retry_of: None,
                source: None,
            });
        }
        let set = NewRunSet {
            key: Some(key),
            group: spec.group.then(|| format!("run {} job {}", self.run.full_name(), self.job)),
            parent: Some((self.run.id, self.job.to_string())),
            author: self.run.author,
            runs: news,
        };
        let made = self.coord.start_set(&set).await.map_err(|e| e.message)?;
        if let Some(g) = &made.group {
            self.say(&format!("started group {} of {} runs", g.id, made.runs.len()));
        }
        for (run, t) in made.runs.iter().zip(&spec.targets) {
            let params: Vec<String> = t.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let with = if params.is_empty() {
                String::new()
            } else {
                format!(" with {}", params.join(" "))
            };
            self.say(&format!("started {} (id {}){with}", run.full_name(), run.id));
        }
        Ok(Some(made.runs))
    }

    /// This run and the runs upstream of it, nearest first; an error past [`MAX_DEPTH`].
    async fn upstream(&self) -> Result<Vec<Run>, String> {
        let mut chain = vec![self.run.clone()];
        let mut next = self.run.parent.clone();
        while let Some(parent) = next {
            if chain.len() >= MAX_DEPTH {
                let path: Vec<String> = chain.iter().map(Run::full_name).collect();
                return Err(format!(
                    "runs may start runs {MAX_DEPTH} levels deep at most; this one is that deep \
                     ({})",
                    path.join(" <- ")
                ));
            }
            match self.coord.sh.store.run(&parent.run).await {
                Ok(run) => {
                    next = run.parent.clone();
                    chain.push(run);
                }
                // Deleted meanwhile: nothing further up to compare with.
                Err(kiln_store::StoreError::NotFound(_)) => break,
                Err(e) => return Err(format!("cannot read the upstream runs: {e}")),
            }
        }
        Ok(chain)
    }

    /// Whether the run's author may start a pipeline of `project`.
    async fn may_start(&self, project: &kiln_store::Project, full: &str) -> Result<(), String> {
        let name = self.run.full_name();
        let Some(id) = self.run.author else {
            if project.name == self.run.project {
                return Ok(());
            }
            return Err(format!(
                "run {name} may not start {full}: it was started by the server ({}), which \
                 starts pipelines of its own project `{}` only; start pipelines of other \
                 projects from a run started with a token that may (kiln trigger)",
                self.run.triggered_by, self.run.project
            ));
        };
        let token = self
            .coord
            .sh
            .store
            .token(&id)
            .await
            .map_err(|e| format!("run {name} may not start {full}: its author's token: {e}"))?;
        if token.revoked_at.is_some() {
            return Err(format!(
                "run {name} may not start {full}: the token of its author, `{}`, was revoked",
                token.name
            ));
        }
        let author = crate::auth::Caller {
            name: token.name,
            role: token.role,
            project: token.project,
            internal: false,
            token: Some(id),
        };
        author
            .require_on(Role::Developer, project)
            .map_err(|e| format!("run {name} may not start {full} as its author: {}", e.message))
    }

    /// Waits until the runs at `waited` have ended, the job is canceled or times out, or the
    /// server stops. Logs each change of their states.
    async fn wait(&self, runs: &[Run], waited: &[usize], deadline: Option<Instant>) -> Waited {
        let sh = &self.coord.sh;
        let (_, mut feed) = sh.feed.subscribe(None);
        let ids: HashSet<RunId> = waited.iter().map(|&i| runs[i].id).collect();
        let mut seen: HashMap<RunId, RunState> = HashMap::new();
        loop {
            let mut now = Vec::with_capacity(waited.len());
            for &i in waited {
                match sh.store.run(&runs[i].id).await {
                    Ok(run) => now.push(run),
                    Err(e) => tracing::warn!("trigger job {} of {}: {e}", self.job, self.run.id),
                }
            }
            for run in &now {
                if seen.insert(run.id, run.state) != Some(run.state) {
                    self.say(&format!("{} is {}", run.full_name(), run.state));
                }
            }
            if now.len() == waited.len() && now.iter().all(|r| r.state.is_final()) {
                return Waited::Ended(now);
            }
            let timeout = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.cancel.cancelled() => return Waited::Canceled,
                () = sh.stopping.cancelled() => return Waited::Stopping,
                () = timeout => return Waited::TimedOut,
                () = news(&mut feed, &ids) => {}
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
        }
    }

    /// Cancels the waited runs that have not ended, saying the upstream job `why`.
    async fn cancel_runs(&self, runs: &[Run], waited: &[usize], why: &str) {
        let by = format!("upstream job {} of run {} ({why})", self.job, self.run.full_name());
        for &i in waited {
            let Ok(run) = self.coord.sh.store.run(&runs[i].id).await else { continue };
            if run.state.is_final() {
                continue;
            }
            match self.coord.send(&run, Event::Cancel { by: by.clone() }).await {
                Ok(()) => self.say(&format!("canceled {}", run.full_name())),
                Err(e) => self.say(&format!("cancel {}: {}", run.full_name(), e.message)),
            }
        }
    }
}

/// The states of `runs`, in order.
fn states(runs: &[Run]) -> Vec<RunState> {
    runs.iter().map(|r| r.state).collect()
}

/// Returns once the feed tells of one of `ids` (or missed some events); never once the feed
/// closed (the periodic look goes on).
async fn news(feed: &mut broadcast::Receiver<FeedItem>, ids: &HashSet<RunId>) {
    loop {
        match feed.recv().await {
            Ok(item) if ids.contains(&item.notice.run.id) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Param values for a group's pipeline: those of `given` it declares.
pub fn declared_params(
    plan: &kiln_workflow::plan::Plan,
    given: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    given
        .iter()
        .filter(|(k, _)| plan.params.iter().any(|p| &p.name == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_states_and_output_names() {
        use RunState::*;
        assert_eq!(group_state(&[Pending, Pending]), Pending);
        assert_eq!(group_state(&[Pending, Success]), Running);
        assert_eq!(group_state(&[Running, Failure]), Running);
        assert_eq!(group_state(&[Success, Timeout, Canceled]), Failure);
        assert_eq!(group_state(&[Success, Canceled]), Canceled);
        assert_eq!(group_state(&[Success, Success]), Success);
        assert_eq!(output_name("build-image", "digest"), "build_image_digest");
        assert_eq!(output_name("test[a,1]", "log.url"), "test_a_1__log_url");
    }
}
