//! Runs started by something other than an API call: image pushes to the registry (`on:
//! image:`).
//!
//! Every manifest push with a tag is matched against the image triggers of the pipelines of
//! the repository's project (a pipeline never hears of another project's pushes); each
//! pipeline that matches gets one run. The push is passed as the params the pipeline declares
//! among `image` (`repository:tag`), `repository`, `tag` and `digest`; a pipeline with another
//! required param cannot be started this way and the push is logged as skipped.

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
/// projects whose `WEBHOOK_SECRET` checks its signature, records its id (a replay stops
/// here), and starts a run of every such pipeline whose `on:` wants the event.
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
    let claim = kiln_store::NewDelivery {
        provider: provider.name().to_string(),
        id: delivery.id.clone(),
        event: delivery.event_name.clone(),
        repository: delivery.repository.clone(),
    };
    if let Some(earlier) = app.store.claim_delivery(&claim).await? {
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
    let (outcome, runs) = start_git_runs(app, delivery, &candidates, &trusted).await;
    app.store.finish_delivery(provider.name(), &delivery.id, &outcome, &runs).await?;
    Ok(GitOutcome::Done(outcome, runs))
}

async fn start_git_runs(
    app: &App,
    delivery: &crate::webhooks::Delivery,
    candidates: &[Candidate],
    trusted: &[String],
) -> (String, Vec<String>) {
    use kiln_workflow::git::{GitEvent, GitRef};
    let Some((event, source)) = &delivery.event else {
        return (
            format!(
                "event `{}` starts no pipeline (Kiln acts on pushes and pull requests)",
                delivery.event_name
            ),
            Vec::new(),
        );
    };
    let mut runs = Vec::new();
    let mut problems = Vec::new();
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
        if !wanted {
            continue;
        }
        let name = format!("{}/{}", c.pipeline.project, c.pipeline.name);
        let by =
            format!("{} {} of {}", delivery.provider.name(), source.event, delivery.repository);
        match app.coord.trigger_from(&c.pipeline, &BTreeMap::new(), &by, Some(source.clone())).await
        {
            Ok(run) => {
                tracing::info!("{by} at {} started {}", source.commit, run.full_name());
                runs.push(run.full_name());
            }
            Err(e) => {
                tracing::warn!("{by} did not start {name}: {}", e.message);
                problems.push(format!("{name}: {}", e.message));
            }
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
    let mut outcome = if runs.is_empty() && problems.is_empty() {
        format!("no pipeline wants this {what}")
    } else {
        format!("{what} started {} run(s)", runs.len())
    };
    if !problems.is_empty() {
        outcome.push_str(&format!("; not started: {}", problems.join("; ")));
    }
    (outcome, runs)
}
