//! Runs started by something other than an API call: image pushes to the registry (`on:
//! image:`) and git webhook deliveries (`on: push`, `on: pull_request`).
//!
//! Every manifest push with a tag is matched against the image triggers of the pipelines of
//! the repository's project (a pipeline never hears of another project's pushes); each
//! pipeline that matches gets one run. The push is passed as the params the pipeline declares
//! among `image` (`repository:tag`), `repository`, `tag` and `digest`; a pipeline with another
//! required param cannot be started this way and the push is logged as skipped.
//!
//! A git delivery is claimed by its id together with the runs it is to start (the trigger
//! outbox, `kiln_store::RunIntent`, one store transaction), then those runs are created, each
//! only if no run has its trigger key yet; [`recover_intents`] does the same at start for
//! whatever a crash left claimed without its runs (schedule fires too): never lost, never
//! doubled.

use std::collections::BTreeMap;

use kiln_registry::PushEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::App;

/// Listens to the registry's push events until `stop`.
pub fn spawn_image_triggers(app: App, stop: CancellationToken) {
    let mut events = app.registry.subscribe();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(event) => {
                    for started in on_push(&app, &event).await {
                        tracing::info!("{started}");
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        "image triggers: {n} push event(s) were missed (too many at once)"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Starts the runs `event` triggers; returns what it did, one line per pipeline.
pub async fn on_push(app: &App, event: &PushEvent) -> Vec<String> {
    let Some(tag) = &event.tag else { return Vec::new() };
    let mut done = Vec::new();
    // A repository is named `<project>/<name>`: its project is the first segment.
    let Some((project, _)) = event.repository.split_once('/') else { return done };
    let pipelines = match app.store.pipelines(project).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("image triggers: listing pipelines of `{project}`: {e}");
            return done;
        }
    };
    let image = format!("{}:{tag}", event.repository);
    for pipeline in pipelines {
        let Ok(plan) = app.coord.plan_of(&pipeline) else { continue };
        if !plan.triggers.image.iter().any(|t| t.matches(project, &event.repository, tag)) {
            continue;
        }
        let offered = [
            ("image", image.clone()),
            ("repository", event.repository.clone()),
            ("tag", tag.clone()),
            ("digest", event.digest.clone()),
        ];
        let params: BTreeMap<String, String> = offered
            .into_iter()
            .filter(|(name, _)| plan.params.iter().any(|p| p.name == *name))
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let by = format!("{} (image push {image})", event.actor);
        let name = format!("{}/{}", pipeline.project, pipeline.name);
        match app.coord.trigger(&pipeline, &params, &by).await {
            Ok(run) => done.push(format!("image push {image} started {}", run.full_name())),
            Err(e) => done.push(format!("image push {image} did not start {name}: {}", e.message)),
        }
    }
    done
}

// ---------------------------------------------------------------------------------------------
// Git: webhook deliveries (`on: push`, `on: pull_request`) for pipelines with a `source:`.

/// The name of the project secret that signs (GitHub, Gitea) or is (GitLab) the webhook token.
pub const WEBHOOK_SECRET: &str = "WEBHOOK_SECRET";

/// What a webhook delivery came to, before it is answered.
#[derive(Debug)]
pub enum GitOutcome {
    /// No pipeline's `source` is the delivery's repository (nothing could check it).
    NoPipeline(String),
    /// Pipelines build the repository but no such project's `WEBHOOK_SECRET` matches.
    BadSignature(String),
    /// Trusted, and either handled now or a replay: what was done (runs started).
    Done(String, Vec<String>),
}

/// A pipeline whose `source:` is the delivered repository, with its plan.
struct Candidate {
    pipeline: kiln_store::Pipeline,
    plan: std::sync::Arc<kiln_workflow::plan::Plan>,
}

/// Handles one delivery: finds the pipelines that build its repository, trusts it for the
/// projects whose `WEBHOOK_SECRET` checks its signature, records its id together with the
/// runs it is to start (one store transaction: a replay stops here), then creates those runs
/// (see [`recover_intents`] for a crash in between).
pub async fn on_git(
    app: &App,
    delivery: &crate::webhooks::Delivery,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<GitOutcome, crate::error::ApiErr> {
    let provider = delivery.provider;
    let urls: Vec<&str> = delivery.urls.iter().map(String::as_str).collect();
    let mut candidates = Vec::new();
    for project in app.store.projects().await? {
        for pipeline in app.store.pipelines(&project.name).await? {
            let Ok(plan) = app.coord.plan_of(&pipeline) else { continue };
            if plan.source.as_ref().is_some_and(|s| s.is_repository(&urls, &delivery.repository)) {
                candidates.push(Candidate { pipeline, plan });
            }
        }
    }
    if candidates.is_empty() {
        return Ok(GitOutcome::NoPipeline(format!(
            "no pipeline's source is {}: nothing to do",
            delivery.repository
        )));
    }
    // Trust per project: its WEBHOOK_SECRET must check the signature.
    let mut trusted: Vec<String> = Vec::new();
    let mut without_secret: Vec<String> = Vec::new();
    let mut projects: Vec<String> = candidates.iter().map(|c| c.pipeline.project.clone()).collect();
    projects.dedup();
    for project in projects {
        if trusted.contains(&project) || without_secret.contains(&project) {
            continue;
        }
        let sealed = app.store.sealed_secrets(&project).await?;
        let Some((_, s)) = sealed.iter().find(|(n, _)| n == WEBHOOK_SECRET) else {
            without_secret.push(project);
            continue;
        };
        let secret = app.secrets.open(&project, WEBHOOK_SECRET, s).map_err(|e| {
            crate::error::ApiErr::internal(format!("secret {WEBHOOK_SECRET} of `{project}`: {e}"))
        })?;
        if crate::webhooks::verify(provider, headers, body, &secret) {
            trusted.push(project);
        }
    }
    if trusted.is_empty() {
        let mut why = format!(
            "the {} header does not match the {WEBHOOK_SECRET} of any project whose pipelines \
             build {}",
            provider.signature_header(),
            delivery.repository
        );
        if !without_secret.is_empty() {
            why.push_str(&format!(
                " (projects without a {WEBHOOK_SECRET} secret: {})",
                without_secret.join(", ")
            ));
        }
        return Ok(GitOutcome::BadSignature(why));
    }
    let plan = git_runs(delivery, &candidates, &trusted);
    let claim = kiln_store::NewDelivery {
        provider: provider.name().to_string(),
        id: delivery.id.clone(),
        event: delivery.event_name.clone(),
        repository: delivery.repository.clone(),
    };
    if let Some(earlier) = app.store.claim_delivery(&claim, &plan.intents).await? {
        return Ok(GitOutcome::Done(
            format!(
                "delivery {} was already received at {} ({}): nothing started again",
                delivery.id,
                earlier.received_at.to_rfc3339(),
                earlier.outcome
            ),
            Vec::new(),
        ));
    }
    if app.crash_after_claim {
        return Err(crate::error::ApiErr::internal(format!(
            "stopped after claiming delivery {} (crash_after_claim, a fault for tests)",
            delivery.id
        )));
    }
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for intent in &plan.intents {
        match app.coord.start_intent(intent).await {
            Ok(run) => {
                tracing::info!("{} started {}", intent.triggered_by, run.full_name());
                runs.push(run.full_name());
            }
            Err(e) => {
                let name = candidates
                    .iter()
                    .find(|c| c.pipeline.id == intent.pipeline)
                    .map_or_else(|| intent.pipeline.to_string(), |c| c.pipeline.full_name());
                tracing::warn!("{} did not start {name}: {}", intent.triggered_by, e.message);
                problems.push(format!("{name}: {}", e.message));
            }
        }
    }
    let outcome = match &plan.what {
        None => plan.nothing,
        Some(what) => git_outcome(what, &runs, &problems),
    };
    app.store.finish_delivery(provider.name(), &delivery.id, &outcome, &runs).await?;
    Ok(GitOutcome::Done(outcome, runs))
}

/// The claim of a webhook delivery: `webhook:<provider>:<delivery id>`.
fn webhook_claim(provider: &str, id: &str) -> String {
    format!("webhook:{provider}:{id}")
}

/// What a delivery is to start: an intended run per pipeline that wants it.
struct GitRuns {
    intents: Vec<kiln_store::RunIntent>,
    /// What the event is (`push to branch main`); `None` for an event Kiln does not act on.
    what: Option<String>,
    /// The outcome when `what` is `None`.
    nothing: String,
}

fn git_runs(
    delivery: &crate::webhooks::Delivery,
    candidates: &[Candidate],
    trusted: &[String],
) -> GitRuns {
    use kiln_workflow::git::{GitEvent, GitRef};
    let Some((event, source)) = &delivery.event else {
        return GitRuns {
            intents: Vec::new(),
            what: None,
            nothing: format!(
                "event `{}` starts no pipeline (Kiln acts on pushes and pull requests)",
                delivery.event_name
            ),
        };
    };
    let claim = webhook_claim(delivery.provider.name(), &delivery.id);
    let by = format!("{} {} of {}", delivery.provider.name(), source.event, delivery.repository);
    let mut intents = Vec::new();
    for c in candidates.iter().filter(|c| trusted.contains(&c.pipeline.project)) {
        let t = &c.plan.triggers;
        let wanted = match event {
            GitEvent::Push { git_ref, changed } => {
                t.push.as_ref().is_some_and(|p| p.matches(git_ref, changed.as_deref()))
            }
            GitEvent::PullRequest { action, target } => {
                t.pull_request.as_ref().is_some_and(|p| p.matches(*action, target))
            }
        };
        if wanted {
            intents.push(kiln_store::RunIntent {
                key: format!("{claim}:{}", c.pipeline.id),
                claim: claim.clone(),
                pipeline: c.pipeline.id,
                params: BTreeMap::new(),
                triggered_by: by.clone(),
                source: Some(source.clone()),
            });
        }
    }
    let what = match event {
        GitEvent::Push { git_ref, .. } => match git_ref {
            GitRef::Branch(b) => format!("push to branch {b}"),
            GitRef::Tag(t) => format!("push of tag {t}"),
            GitRef::Other(r) => format!("push of {r}"),
        },
        GitEvent::PullRequest { action, target } => {
            format!("pull request {} into {target}", action.name())
        }
    };
    GitRuns { intents, what: Some(what), nothing: String::new() }
}

/// A delivery's outcome for people: what it was, the runs it started, what could not start.
fn git_outcome(what: &str, runs: &[String], problems: &[String]) -> String {
    let mut outcome = if runs.is_empty() && problems.is_empty() {
        format!("no pipeline wants this {what}")
    } else {
        format!("{what} started {} run(s)", runs.len())
    };
    if !problems.is_empty() {
        outcome.push_str(&format!("; not started: {}", problems.join("; ")));
    }
    outcome
}

// ---------------------------------------------------------------------------------------------
// Claimed triggers whose runs a crash kept from being created.

/// At start: creates the run of every intent a trigger claimed before the server stopped
/// (a webhook delivery or a schedule fire claimed, then a crash before its runs existed).
/// Each is created only if no run has its trigger key yet, so this never doubles a run. A
/// delivery's outcome and a schedule's last run are brought up to date. Returns how many
/// runs it created.
pub async fn recover_intents(app: &App) -> Result<usize, kiln_store::StoreError> {
    let pending = app.store.pending_intents().await?;
    let mut started = 0;
    let mut deliveries: Vec<(String, Vec<String>)> = Vec::new();
    for intent in &pending {
        let by = &intent.triggered_by;
        let problem = match app.coord.start_intent(intent).await {
            Ok(run) => {
                tracing::info!(
                    "{by} started {} (claimed before the server stopped)",
                    run.full_name()
                );
                started += 1;
                let entry = intent
                    .claim
                    .strip_prefix(&format!("schedule:{}:", intent.pipeline))
                    .map(str::to_string);
                if let Some(entry) = entry {
                    app.store.schedule_started(&intent.pipeline, &entry, &run.id).await?;
                }
                None
            }
            Err(e) => {
                tracing::warn!("{by} did not start pipeline {}: {}", intent.pipeline, e.message);
                Some(format!("pipeline {}: {}", intent.pipeline, e.message))
            }
        };
        if intent.claim.starts_with("webhook:") {
            match deliveries.iter_mut().find(|(c, _)| *c == intent.claim) {
                Some((_, problems)) => problems.extend(problem),
                None => deliveries.push((intent.claim.clone(), problem.into_iter().collect())),
            }
        }
    }
    for (claim, problems) in deliveries {
        let Some((provider, id)) =
            claim.strip_prefix("webhook:").and_then(|rest| rest.split_once(':'))
        else {
            continue;
        };
        let runs: Vec<String> =
            app.store.claim_runs(&claim).await?.iter().map(|r| r.full_name()).collect();
        let mut outcome = format!(
            "started {} run(s) (the server stopped after receiving it and started them when it \
             started again)",
            runs.len()
        );
        if !problems.is_empty() {
            outcome.push_str(&format!("; not started: {}", problems.join("; ")));
        }
        app.store.finish_delivery(provider, id, &outcome, &runs).await?;
    }
    Ok(started)
}
