//! What every job of a run gets on top of its own: the project's secrets, the `KILN_*`
//! variables (run, registry, the commit it builds), the values its logs mask, and what it
//! checks out first (`source:`).

use std::collections::BTreeMap;

use kiln_workflow::plan::{JobId, Plan};
use kiln_workflow::run_env::{CommitFacts, RunFacts, run_env};

use super::Coord;
use crate::error::{ApiErr, ApiResult};

/// The run-wide part of every job's environment.
pub(super) struct RunEnv {
    /// Secrets and `KILN_*` variables.
    pub env: BTreeMap<String, String>,
    /// Values masked in the run's logs and outputs (secrets, the registry token).
    pub masked: Vec<String>,
    /// What each job checks out first, unless it says `checkout: false`.
    pub checkout: Option<kiln_api::agent::Checkout>,
}

impl Coord {
    /// The env, masked values and checkout shared by every job of `run`.
    pub(super) async fn run_env(
        &self,
        run: &kiln_store::Run,
        plan: &Plan,
        project_id: kiln_store::ProjectId,
    ) -> ApiResult<RunEnv> {
        let (mut env, mut masked) = self.project_secrets(&run.project).await?;
        // The run's jobs may push to their project's repositories: one registry token per
        // run, masked in its logs like a secret.
        let registry_token = self.sh.registry.job_token(
            project_id,
            &format!("run {}", run.full_name()),
            crate::registry::JOB_TOKEN_TTL,
        );
        masked.push(registry_token.clone());
        env.insert("KILN_REGISTRY".into(), self.sh.registry_host.clone());
        env.insert("KILN_REGISTRY_TOKEN".into(), registry_token);
        let checkout = checkout_of(plan, run, &env)?;
        let run_id = run.id.to_string();
        let facts = RunFacts {
            run_id: &run_id,
            number: run.number,
            project: &run.project,
            pipeline: &run.pipeline,
            triggered_by: &run.triggered_by,
        };
        let commit = run.source.as_ref().map(commit_facts);
        env.extend(run_env(&facts, commit.as_ref()));
        Ok(RunEnv { env, masked, checkout })
    }

    /// The decrypted secrets of a project: the env for its jobs and the values to mask.
    async fn project_secrets(
        &self,
        project: &str,
    ) -> ApiResult<(BTreeMap<String, String>, Vec<String>)> {
        let sealed = self.sh.store.sealed_secrets(project).await?;
        let mut env = BTreeMap::new();
        for (name, s) in sealed {
            let value = self.sh.secrets.open(project, &name, &s).map_err(|e| {
                ApiErr::internal(format!("secret `{name}` of project `{project}`: {e}"))
            })?;
            env.insert(name, value);
        }
        let values = env.values().cloned().collect();
        Ok((env, values))
    }
}

/// One attempt's environment: the run's, and which job and attempt it is.
pub(super) fn job_env(
    run: &BTreeMap<String, String>,
    job: &JobId,
    attempt: u32,
) -> BTreeMap<String, String> {
    let mut env = run.clone();
    env.insert("KILN_JOB".into(), job.to_string());
    env.insert("KILN_ATTEMPT".into(), attempt.to_string());
    env
}

/// What a run's jobs check out: the plan's `source` at the run's commit (a run started
/// otherwise than by git gets the remote's default branch), with the credentials secret.
fn checkout_of(
    plan: &Plan,
    run: &kiln_store::Run,
    secrets: &BTreeMap<String, String>,
) -> ApiResult<Option<kiln_api::agent::Checkout>> {
    let Some(source) = &plan.source else { return Ok(None) };
    let credentials = match &source.credentials {
        None => None,
        Some(name) => Some(secrets.get(name).cloned().ok_or_else(|| {
            ApiErr::conflict(format!(
                "source credentials: project `{}` has no secret `{name}` (set it with kiln \
                 secret set)",
                run.project
            ))
        })?),
    };
    // `owner/name` is no URL: clone what the provider said.
    let written = kiln_workflow::git::repository_key(&source.repository);
    let repository = match &run.source {
        Some(s) if written.host.is_empty() && !s.clone_url.is_empty() => s.clone_url.clone(),
        _ => source.repository.clone(),
    };
    Ok(Some(kiln_api::agent::Checkout {
        repository,
        git_ref: run.source.as_ref().map(|s| s.git_ref.clone()).unwrap_or_default(),
        commit: run.source.as_ref().map(|s| s.commit.clone()).unwrap_or_default(),
        credentials,
    }))
}

/// The commit a run builds, as its jobs' `KILN_*` variables name it (like GitLab's
/// `CI_COMMIT_*`, GitHub's `GITHUB_SHA`/`GITHUB_REF`).
fn commit_facts(s: &kiln_store::RunSource) -> CommitFacts {
    CommitFacts {
        repository: s.repository.clone(),
        git_ref: s.git_ref.clone(),
        commit: s.commit.clone(),
        message: s.message.clone(),
        author: s.author.clone(),
        event: s.event.clone(),
        branch: s.branch.clone(),
        tag: s.tag.clone(),
        pull_request: s.pull_request.as_ref().map(|pr| (pr.number, pr.target.clone())),
    }
}
