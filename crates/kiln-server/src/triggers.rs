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
