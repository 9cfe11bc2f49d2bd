//! `kiln run --replay RUN [--job JOB] [--shell]`: one job of a server's run, run here with the
//! inputs it had there, to reproduce a failure and step through it.
//!
//! From the server: the workflow the run ran (`GET /runs/{run}/source`), its params, its
//! commit (the run's `source`; for a run no git event started, the commit the job's log says
//! it checked out), the outputs of the jobs the chosen one needs and the artifacts of those it
//! needs directly. The plan is cut down to the job and what it needs (`Plan::only`); the needed
//! jobs count as done with their server outputs (`LocalSetup::reused`, the engine's
//! `JobReused`, as a server's retry reuses jobs); the job itself then runs through the same
//! path as `kiln run` (engine, wrapper, executor), whatever its `if:` says. What cannot be
//! the same here is said at start: secrets come from the local environment, there is no
//! registry, caches are this machine's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use futures::StreamExt;
use kiln_api::{JobInfo, RunDetail, SourceInfo};
use kiln_client::Client;
use kiln_runtime::checkout::Checkout;
use kiln_runtime::wrapper::DirFiles;
use kiln_runtime::{LocalRun, LocalSetup, local::new_run_id};
use kiln_workflow::plan::{Job, JobId, Plan, RunSpec};
use kiln_workflow::run_env::{CommitFacts, RunFacts, run_env};

use crate::remote::{CmdResult, Conn, Fail};
use crate::run_cmd::{self, RunArgs, warn};
use crate::view::View;
use crate::{Format, load};

/// Runs `kiln run --replay`.
pub async fn replay(args: RunArgs) -> CmdResult {
    let run = args.replay.clone().unwrap_or_default();
    crate::remote::check_run(&run)?;
    let conn =
        Conn { server: args.server.clone(), token: args.token.clone(), output: Format::Table };
    let client = conn.client()?;
    let detail = client.run(&run).await?;
    let name = format!("{}/{}#{}", detail.run.project, detail.run.pipeline, detail.run.number);
    let workflow = client.run_source(&detail.run.id).await?;
    let compiled = kiln_server::plans::compile(&workflow.file, &workflow.yaml, &workflow.files);
    load::print_diagnostics(&compiled.diagnostics);
    let plan = compiled.plan.ok_or_else(|| {
        Fail::invalid(format!("the workflow run {name} ran does not compile here"))
    })?;

    let job = pick_job(&args, &detail, &plan, &name)?;
    let mut cut = plan.only(&job).ok_or_else(|| Fail::invalid(format!("no job `{job}`")))?;
    let target = cut.job_index(&job).unwrap_or(cut.jobs.len() - 1);
    {
        let j = &mut cut.jobs[target];
        // It ran (or is asked for): its condition was decided on the server.
        j.condition = "always()".to_string();
        if args.shell {
            // Nobody waits against a clock in a shell, and the first failure is the one shown.
            j.timeout = None;
            j.retry = Default::default();
        }
    }
    if args.shell {
        cut.timeout = None;
    }
    if args.shell && !matches!(cut.jobs[target].run, RunSpec::Script(_)) {
        warn(format!(
            "--shell: job `{job}` runs a command, not a `script:`; it runs as it is, with no shell"
        ));
    }

    let given: Vec<(String, String)> = match &detail.run.params {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), String::from)))
            .collect(),
        _ => Vec::new(),
    };
    let params = kiln_workflow::bind_params(&cut, &given).map_err(|errors| {
        Fail::invalid(format!(
            "the params of {name} do not bind: {}",
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        ))
    })?;

    let mut reused = BTreeMap::new();
    for needed in cut.jobs.iter().filter(|j| j.id != job) {
        let info = server_job(&detail, &needed.id);
        let state = info.map_or("pending", |i| i.state.as_str());
        if state != "success" {
            warn(format!(
                "job `{}` needed by `{job}` ended {state} on the server; here it counts as \
                 succeeded, with the outputs it had",
                needed.id
            ));
        }
        reused.insert(needed.id.clone(), info.map(|i| i.outputs.clone()).unwrap_or_default());
    }

    // Only the job replayed runs here: the jobs it needs count as done.
    let target_job = std::slice::from_ref(&cut.jobs[target]);
    if let Some(why) = kiln_runtime::local::server_only(target_job).into_iter().next() {
        return Err(Fail::invalid(why));
    }
    let chosen = run_cmd::choose_executor(args.executor, &cut).await.map_err(Fail::invalid)?;
    let local_id = new_run_id();
    let run_dir = args
        .run_dir
        .clone()
        .or_else(|| {
            run_cmd::user_dir("XDG_STATE_HOME", ".local/state")
                .map(|d| d.join("runs").join(&local_id))
        })
        .unwrap_or_else(|| std::env::temp_dir().join(format!("kiln-run-{local_id}")));
    let mut view = View::new(&cut, args.output, args.timestamps);
    view.note(&format!(
        "replaying job `{job}` of run {name} ({}) on the {} executor, as run {local_id}",
        detail.run.id,
        chosen.executor.name()
    ));
    for limit in kiln_runtime::local::local_limits(&cut) {
        warn(limit);
    }
    fetch_inputs(&client, &detail, &cut, &cut.jobs[target], &run_dir, &view).await?;
    let (checkout, facts) = source(&args, &client, &detail, &cut, &view).await?;

    let facts_run = RunFacts {
        run_id: &detail.run.id,
        number: detail.run.number,
        project: &detail.run.project,
        pipeline: &detail.run.pipeline,
        triggered_by: &detail.run.triggered_by,
    };
    let mut env = run_env(&facts_run, facts.as_ref());
    secrets(&client, &detail.run.project, &cut.jobs[target], &mut env, &view).await;
    if !given.is_empty() {
        let list: Vec<String> = given.iter().map(|(k, v)| format!("{k}={v}")).collect();
        view.note(&format!("params of {name}: {}", list.join(", ")));
    }
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir
            .clone()
            .or_else(|| run_cmd::user_dir("XDG_CACHE_HOME", ".cache"))
            .map(|d| d.join(&detail.run.project))
    };
    if cut.jobs[target].cache.is_some() {
        view.note("caches are this machine's (the server's are not fetched)");
    }
    let local = LocalRun {
        run_id: local_id,
        plan: Arc::new(cut),
        params,
        executor: chosen.executor.clone(),
        setup: LocalSetup {
            env,
            checkout,
            run_dir: Some(run_dir),
            cache_dir,
            reused,
            pause_on_failure: args.shell,
        },
    };
    let approvals = detail.stages.clone();
    let decide = move |view: &View, stage: &str, _: Option<&str>| {
        let by = approvals
            .iter()
            .find(|s| s.name == stage)
            .and_then(|s| s.decision.as_ref())
            .map(|d| format!("{} by {} on the server", d.decision, d.by));
        view.note(&format!(
            "stage {stage}: {}; approved for the replay",
            by.unwrap_or_else(|| "not decided on the server".into())
        ));
        true
    };
    let code: ExitCode = run_cmd::watch(local, &chosen, &mut view, &decide).await;
    Ok(code)
}

/// `--job`, else the first job that failed (or timed out) on the server.
fn pick_job(args: &RunArgs, detail: &RunDetail, plan: &Plan, name: &str) -> Result<JobId, Fail> {
    let ids = || plan.jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(j) = &args.job {
        let id = JobId::from(j.as_str());
        if plan.job_index(&id).is_none() {
            return Err(Fail::invalid(format!("run {name} has no job `{j}` (jobs: {})", ids())));
        }
        return Ok(id);
    }
    let failed = detail.jobs.iter().find(|j| matches!(j.state.as_str(), "failure" | "timeout"));
    match failed {
        Some(j) => {
            eprintln!(
                "kiln: replaying `{}`, the first job that failed in {name} ({}); --job JOB picks another",
                j.id,
                j.reason.as_deref().unwrap_or(&j.state)
            );
            Ok(JobId(j.id.clone()))
        }
        None => Err(Fail::invalid(format!(
            "run {name} ({}) has no failed job; name the one to replay with --job (jobs: {})",
            detail.run.state,
            ids()
        ))),
    }
}

fn server_job<'a>(detail: &'a RunDetail, id: &JobId) -> Option<&'a JobInfo> {
    detail.jobs.iter().find(|j| j.id == id.as_str())
}

/// Downloads the artifacts of the jobs `job` needs directly (those that keep some) to where
/// `DirFiles` looks for them, so the wrapper places them as on an agent.
async fn fetch_inputs(
    client: &Client,
    detail: &RunDetail,
    plan: &Plan,
    job: &Job,
    run_dir: &Path,
    view: &View,
) -> Result<(), Fail> {
    let files = DirFiles {
        artifacts: run_dir.join("artifacts"),
        cache: PathBuf::new(),
        job: job.id.to_string(),
    };
    for need in &job.needs {
        let keeps = plan.job_index(need).is_some_and(|i| plan.jobs[i].artifacts.is_some());
        if !keeps {
            continue;
        }
        let stored = client.artifacts(&detail.run.id).await?;
        let Some(a) = stored.iter().find(|a| a.job == need.as_str()) else {
            view.note(&format!("job `{need}` stored no artifacts on the server"));
            continue;
        };
        let dest = files.artifacts_archive(need.as_str());
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Fail::invalid(format!("{}: {e}", parent.display())))?;
        }
        let mut stream =
            std::pin::pin!(client.download_artifact(&detail.run.id, need.as_str()).await?);
        let mut bytes = Vec::with_capacity(a.size as usize);
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        std::fs::write(&dest, &bytes)
            .map_err(|e| Fail::invalid(format!("{}: {e}", dest.display())))?;
        view.note(&format!(
            "artifacts of `{need}` from the server: {} file(s), {}",
            a.files.len(),
            kiln_runtime::wrapper::human_bytes(a.size)
        ));
    }
    Ok(())
}

/// What the replayed job checks out, and the commit its `KILN_*` variables name (only when
/// the server's job had them too).
async fn source(
    args: &RunArgs,
    client: &Client,
    detail: &RunDetail,
    plan: &Plan,
    view: &View,
) -> Result<(Option<Checkout>, Option<CommitFacts>), Fail> {
    let Some(source) = &plan.source else { return Ok((None, None)) };
    let credentials = source.credentials.as_ref().and_then(|name| {
        let v = std::env::var(name).ok();
        if v.is_none() {
            warn(format!(
                "`source:` names the secret {name}: set {name} in the environment to clone with it"
            ));
        }
        v
    });
    // Where to fetch from: --source (a directory or URL) or what `source:` names.
    let repository = match args.source.as_deref() {
        Some(a) if Path::new(a).is_dir() => {
            kiln_runtime::checkout::local_head(Path::new(a))
                .await
                .map_err(|e| Fail::invalid(format!("--source {a}: {e}")))?
                .toplevel
        }
        Some(a) => run_cmd::split_ref(a).0.to_string(),
        // `owner/name`: the server clones what the git provider said; the API does not say.
        None if !source.repository.contains(':') && !source.repository.starts_with('/') => {
            return Err(Fail::invalid(format!(
                "`source: {}` names no clone URL; pass --source DIR|URL to say where its commits are",
                source.repository
            )));
        }
        None => source.repository.clone(),
    };
    let (git_ref, commit, facts) = match &detail.run.source {
        Some(s) => (s.git_ref.clone(), s.commit.clone(), Some(commit_facts(s))),
        None => match checked_out(client, detail).await {
            Some(commit) => {
                view.note(&format!(
                    "the run was not started by a git event: checking out {commit}, which its \
                     log says it checked out (no KILN_COMMIT_* variables, as on the server)"
                ));
                (String::new(), commit, None)
            }
            None => {
                warn(format!(
                    "the run recorded no commit: checking out the default branch of {repository} \
                     as it is now, which may not be what the run had"
                ));
                (String::new(), String::new(), None)
            }
        },
    };
    let checkout = Checkout { repository, git_ref, commit, credentials };
    if !checkout.commit.is_empty() {
        view.note(&format!("source: {} of {}", checkout.commit, checkout.repository));
    }
    Ok((Some(checkout), facts))
}

/// The commit the run's jobs checked out, from the wrapper's `kiln: checked out <sha> of …`
/// line in the first job log that has one.
async fn checked_out(client: &Client, detail: &RunDetail) -> Option<String> {
    for job in &detail.jobs {
        let Ok(page) = client.logs(&detail.run.id, Some(&job.id), None, 1, 50).await else {
            continue;
        };
        for line in &page.lines {
            if let Some(rest) = line.text.strip_prefix("kiln: checked out ")
                && let Some(sha) = rest.split_whitespace().next()
                && sha.len() >= 40
                && sha.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Some(sha.to_string());
            }
        }
    }
    None
}

fn commit_facts(s: &SourceInfo) -> CommitFacts {
    CommitFacts {
        repository: s.repository.clone(),
        git_ref: s.git_ref.clone(),
        commit: s.commit.clone(),
        message: s.message.clone(),
        author: s.author.clone(),
        event: s.event.clone(),
        branch: s.branch.clone(),
        tag: s.tag.clone(),
        pull_request: s.pull_request.zip(s.target_branch.clone()),
    }
}

/// Project secrets are not fetched: one set in this environment is passed on; one the job
/// names but this environment lacks gets a warning.
async fn secrets(
    client: &Client,
    project: &str,
    job: &Job,
    env: &mut BTreeMap<String, String>,
    view: &View,
) {
    let names = match client.secrets(project).await {
        Ok(list) => list.into_iter().map(|s| s.name).collect::<Vec<_>>(),
        Err(e) => {
            view.note(&format!(
                "the project's secret names could not be read ({e}): set the ones the job \
                 needs in the environment"
            ));
            return;
        }
    };
    let text = job_text(job);
    for name in names {
        match std::env::var(&name) {
            Ok(v) => {
                view.note(&format!("secret {name}: from this environment"));
                env.insert(name, v);
            }
            Err(_) if text.contains(&name) => warn(format!(
                "job `{}` reads the project secret {name}, which is not fetched: set {name} in \
                 the environment to pass it",
                job.id
            )),
            Err(_) => {}
        }
    }
}

/// Everything of a job a secret's name could be read from.
fn job_text(job: &Job) -> String {
    let mut text = match &job.run {
        RunSpec::Script(lines) => lines.join("\n"),
        RunSpec::Command { command, args } => {
            command.iter().flatten().chain(args).cloned().collect::<Vec<_>>().join(" ")
        }
        RunSpec::Build(b) => {
            b.tags.iter().chain(b.build_args.values()).cloned().collect::<Vec<_>>().join(" ")
        }
        RunSpec::Trigger(_) | RunSpec::Deploy(_) => String::new(),
    };
    for v in job.env.values().chain(job.services.iter().flat_map(|s| s.env.values())) {
        text.push('\n');
        text.push_str(v);
    }
    text
}
