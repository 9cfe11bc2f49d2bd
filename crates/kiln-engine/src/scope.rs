//! What a job's expressions see ([`JobScope`]), and the rendering of a plan job into the job
//! a `StartJob` carries.
//!
//! Env is merged in this order, later wins: params (as text), outputs of the job's needs (in
//! the order written), the plan's global env, the job's env.

use std::collections::BTreeMap;

use kiln_workflow::build::BuildSpec;
use kiln_workflow::expr::{ExprError, Scope, Value, eval_condition, render};
use kiln_workflow::plan::{
    ArtifactSpec, CacheSpec, Job, Plan, RunSpec, Service, workspace_path_problem,
};
use kiln_workflow::server_job::{DeploySpec, TriggerSpec, TriggerTarget};

use crate::graph::Graph;
use crate::{JobState, JobStatus, Params};

/// The scope of one job of one run.
pub(crate) struct JobScope<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Its index.
    pub graph: &'a Graph,
    /// Bound params, defaults included.
    pub params: &'a Params,
    /// Every job's status, by index.
    pub status: &'a [JobStatus],
    /// The job.
    pub job: usize,
    /// `failure()`.
    pub failed: bool,
    /// `cancelled()`.
    pub canceled: bool,
}

/// Lowercase text of a final state, as `result(job)` gives it.
fn result_text(state: JobState) -> Option<&'static str> {
    Some(match state {
        JobState::Success => "success",
        JobState::Failure => "failure",
        JobState::Skipped => "skipped",
        JobState::Canceled => "canceled",
        JobState::Timeout => "timeout",
        JobState::Pending | JobState::Queued | JobState::Running => return None,
    })
}

impl JobScope<'_> {
    /// Jobs a name designates: the job with that id, else every instance of that base
    /// (a matrix job referred to by its key).
    fn designated(&self, name: &str) -> &[usize] {
        match self.graph.index.get(name) {
            Some(i) => std::slice::from_ref(i),
            None => self.graph.by_base.get(name).map(Vec::as_slice).unwrap_or(&[]),
        }
    }

    /// Evaluates the job's `if:`.
    pub fn condition(&self) -> Result<bool, String> {
        let condition = &self.plan.jobs[self.job].condition;
        eval_condition(condition, self)
            .map_err(|e| format!("cannot evaluate condition `{condition}`: {e}"))
    }

    /// Renders one template; `field` names it in an error (built only then).
    fn text(&self, template: &str, field: impl FnOnce() -> String) -> Result<String, String> {
        if !template.contains("${{") {
            return Ok(template.to_owned());
        }
        render(template, self).map_err(|e: ExprError| format!("cannot render {}: {e}", field()))
    }

    fn texts(&self, templates: &[String], field: &str) -> Result<Vec<String>, String> {
        templates
            .iter()
            .enumerate()
            .map(|(n, t)| self.text(t, || format!("{field} {}", n + 1)))
            .collect()
    }

    /// Renders paths of `cache` or `artifacts` and checks that each stays in the workspace
    /// (a template may render to one that does not).
    fn paths(&self, templates: &[String], field: &str) -> Result<Vec<String>, String> {
        let paths = self.texts(templates, field)?;
        for (n, path) in paths.iter().enumerate() {
            if let Some(problem) = workspace_path_problem(path) {
                return Err(format!("{field} {} `{path}` {problem}", n + 1));
            }
        }
        Ok(paths)
    }

    fn env(
        &self,
        env: &BTreeMap<String, String>,
        into: &mut BTreeMap<String, String>,
        what: impl Fn() -> String,
    ) -> Result<(), String> {
        for (k, v) in env {
            let value = self.text(v, || format!("{} `{k}`", what()))?;
            into.insert(k.clone(), value);
        }
        Ok(())
    }

    /// The plan job with every template rendered and its env merged.
    pub fn rendered_job(&self) -> Result<Job, String> {
        let job = &self.plan.jobs[self.job];
        let mut env = BTreeMap::new();
        for (name, value) in self.params {
            env.insert(name.clone(), value.to_string());
        }
        for &need in &self.graph.needs[self.job] {
            for (k, v) in &self.status[need].outputs {
                env.insert(k.clone(), v.clone());
            }
        }
        self.env(&self.plan.env, &mut env, || "global env".to_owned())?;
        self.env(&job.env, &mut env, || "env".to_owned())?;
        let image =
            job.image.as_deref().map(|i| self.text(i, || "image".to_owned())).transpose()?;
        let run = match &job.run {
            RunSpec::Script(lines) => RunSpec::Script(self.texts(lines, "script line")?),
            RunSpec::Command { command, args } => RunSpec::Command {
                command: command.as_deref().map(|c| self.texts(c, "command")).transpose()?,
                args: self.texts(args, "arg")?,
            },
            RunSpec::Trigger(t) => {
                let mut targets = Vec::with_capacity(t.targets.len());
                for target in &t.targets {
                    let mut params = BTreeMap::new();
                    for (k, v) in &target.params {
                        let what = || format!("trigger param `{k}` of {}", target.pipeline);
                        params.insert(k.clone(), self.text(v, what)?);
                    }
                    targets.push(TriggerTarget { params, ..target.clone() });
                }
                RunSpec::Trigger(TriggerSpec { targets, group: t.group })
            }
            RunSpec::Deploy(d) => RunSpec::Deploy(Box::new(DeploySpec {
                image: self.text(&d.image, || "deploy image".to_owned())?,
                environment: self.text(&d.environment, || "deploy environment".to_owned())?,
                ..(**d).clone()
            })),
            RunSpec::Build(b) => {
                let mut build_args = BTreeMap::new();
                for (k, v) in &b.build_args {
                    build_args.insert(k.clone(), self.text(v, || format!("build-arg `{k}`"))?);
                }
                let mut paths =
                    self.paths(&[b.context.clone(), b.dockerfile.clone()], "build path")?;
                let dockerfile = paths.pop().unwrap_or_default();
                let context = paths.pop().unwrap_or_default();
                RunSpec::Build(Box::new(BuildSpec {
                    context,
                    dockerfile,
                    tags: self.texts(&b.tags, "build tag")?,
                    build_args,
                    target: b
                        .target
                        .as_deref()
                        .map(|t| self.text(t, || "build target".to_owned()))
                        .transpose()?,
                    ..(**b).clone()
                }))
            }
        };
        let environment = job
            .environment
            .as_deref()
            .map(|e| self.text(e, || "environment".to_owned()))
            .transpose()?;
        let workdir =
            job.workdir.as_deref().map(|w| self.text(w, || "workdir".to_owned())).transpose()?;
        let services = job
            .services
            .iter()
            .map(|s| {
                let what = || format!("service `{}`", s.name);
                let mut env = BTreeMap::new();
                self.env(&s.env, &mut env, || format!("{} env", what()))?;
                Ok(Service {
                    name: s.name.clone(),
                    image: self.text(&s.image, || format!("{} image", what()))?,
                    env,
                    command: s
                        .command
                        .as_deref()
                        .map(|c| self.texts(c, &format!("{} command", what())))
                        .transpose()?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let cache = job
            .cache
            .as_ref()
            .map(|c| {
                let key = self.text(&c.key, || "cache key".to_owned())?;
                Ok::<_, String>(CacheSpec {
                    // As on GitLab, a key that renders empty is the default one.
                    key: if key.trim().is_empty() { "default".to_owned() } else { key },
                    files: self.paths(&c.files, "cache file")?,
                    paths: self.paths(&c.paths, "cache path")?,
                    policy: c.policy,
                })
            })
            .transpose()?;
        let artifacts = job
            .artifacts
            .as_ref()
            .map(|a| {
                Ok::<_, String>(ArtifactSpec {
                    paths: self.paths(&a.paths, "artifact path")?,
                    when: a.when,
                })
            })
            .transpose()?;
        Ok(Job {
            id: job.id.clone(),
            base: job.base.clone(),
            stage: job.stage,
            needs: job.needs.clone(),
            gate: job.gate,
            condition: job.condition.clone(),
            image,
            run,
            env,
            workdir,
            timeout: job.timeout,
            retry: job.retry.clone(),
            matrix: job.matrix.clone(),
            services,
            resources: job.resources,
            scheduling: job.scheduling.clone(),
            cache,
            artifacts,
            checkout: job.checkout,
            pools: job.pools.clone(),
            environment,
            array: job.array,
        })
    }
}

impl Scope for JobScope<'_> {
    fn param(&self, name: &str) -> Option<Value> {
        self.params.get(name).map(Value::from)
    }

    /// A matrix key designates the first instance, in plan order, that has the output.
    fn output(&self, job: &str, key: &str) -> Option<String> {
        self.designated(job).iter().find_map(|&i| self.status[i].outputs.get(key).cloned())
    }

    /// A matrix key gives the instances' combined result: `failure` if any failed, else
    /// `timeout`, else `canceled`, else `skipped` if all were skipped, else `success`; none
    /// until every instance has ended.
    fn result(&self, job: &str) -> Option<String> {
        let jobs = self.designated(job);
        let states: Vec<JobState> = jobs.iter().map(|&i| self.status[i].state).collect();
        if states.is_empty() || states.iter().any(|s| !s.is_final()) {
            return None;
        }
        let combined = [JobState::Failure, JobState::Timeout, JobState::Canceled]
            .into_iter()
            .find(|s| states.contains(s))
            .unwrap_or(if states.iter().all(|&s| s == JobState::Skipped) {
                JobState::Skipped
            } else {
                JobState::Success
            });
        result_text(combined).map(str::to_owned)
    }

    fn matrix(&self, key: &str) -> Option<String> {
        self.plan.jobs[self.job].matrix.get(key).cloned()
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn canceled(&self) -> bool {
        self.canceled
    }
}
