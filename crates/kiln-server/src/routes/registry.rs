//! The registry's management API: repositories, tags, visibility, garbage collection, push
//! events and project webhooks. The OCI protocol itself is `kiln-registry`'s, at `/v2/`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use kiln_api::{
    CreateWebhook, ErrorBody, RegistryEvent, RegistryGcReport, RegistryGcRequest,
    RegistryRepository, RegistryTag, SetVisibility, Webhook,
};
use kiln_store::Role;
use serde::Deserialize;
use utoipa::IntoParams;

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::error::{ApiErr, ApiResult};

async fn project_names(
    app: &App,
) -> ApiResult<std::collections::HashMap<kiln_store::ProjectId, String>> {
    Ok(app.store.projects().await?.into_iter().map(|p| (p.id, p.name)).collect())
}

/// Lists the repositories the caller can see.
#[utoipa::path(get, path = "/api/v1/registry/repositories", tag = "registry",
    responses((status = 200, body = Vec<RegistryRepository>)))]
pub async fn repositories(
    State(app): State<App>,
    caller: Caller,
) -> ApiResult<Json<Vec<RegistryRepository>>> {
    let names = project_names(&app).await?;
    let mut out = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = app.store.registry_repositories(last.as_deref(), 500).await?;
        let Some(l) = page.last() else { break };
        last = Some(l.name.clone());
        for r in page {
            if caller.project.is_none_or(|p| p == r.project_id) {
                out.push(RegistryRepository {
                    project: names.get(&r.project_id).cloned().unwrap_or_default(),
                    name: r.name,
                    public: r.public,
                    created_at: r.created_at,
                });
            }
        }
    }
    Ok(Json(out))
}

/// Which repository.
#[derive(Debug, Deserialize, IntoParams)]
pub struct RepoQuery {
    /// `<project>/<name>`.
    pub repository: String,
}

async fn repository_for(
    app: &App,
    caller: &Caller,
    name: &str,
    role: Role,
) -> ApiResult<kiln_store::RegistryRepository> {
    let project = name.split('/').next().unwrap_or_default();
    project_for(app, caller, project, role).await?;
    app.store
        .registry_repository(name)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("repository `{name}` does not exist")))
}

/// The tags of a repository, by name.
#[utoipa::path(get, path = "/api/v1/registry/tags", tag = "registry", params(RepoQuery),
    responses((status = 200, body = Vec<RegistryTag>), (status = 404, body = ErrorBody)))]
pub async fn tags(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<RepoQuery>,
) -> ApiResult<Json<Vec<RegistryTag>>> {
    repository_for(&app, &caller, &q.repository, Role::Viewer).await?;
    let tags = app.store.registry_tag_digests(&q.repository).await?;
    Ok(Json(tags.into_iter().map(|(tag, digest)| RegistryTag { tag, digest }).collect()))
}

/// Makes a repository public (anonymous pulls) or private (admin of its project).
#[utoipa::path(put, path = "/api/v1/registry/visibility", tag = "registry", request_body = SetVisibility,
    responses((status = 200, body = RegistryRepository), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn visibility(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<SetVisibility>,
) -> ApiResult<Json<RegistryRepository>> {
    repository_for(&app, &caller, &req.repository, Role::Admin).await?;
    let r = app.registry.set_public(&req.repository, req.public).await?;
    let names = project_names(&app).await?;
    Ok(Json(RegistryRepository {
        project: names.get(&r.project_id).cloned().unwrap_or_default(),
        name: r.name,
        public: r.public,
        created_at: r.created_at,
    }))
}

/// Collects the registry's garbage now (admin): untagged manifests and unreferenced blobs
/// older than the grace window.
#[utoipa::path(post, path = "/api/v1/registry/gc", tag = "registry", request_body = RegistryGcRequest,
    responses((status = 200, body = RegistryGcReport), (status = 403, body = ErrorBody)))]
pub async fn gc(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<RegistryGcRequest>,
) -> ApiResult<Json<RegistryGcReport>> {
    caller.require(Role::Admin)?;
    let grace = Duration::from_secs(req.grace_seconds.unwrap_or(3600));
    let r = app
        .registry
        .gc(grace)
        .await
        .map_err(|e| ApiErr::new(e.status, kiln_api::codes::INTERNAL, e.message))?;
    Ok(Json(RegistryGcReport {
        manifests: r.manifests,
        blobs: r.blobs,
        bytes_freed: r.bytes_freed,
        orphans: r.orphans,
        uploads: r.uploads,
    }))
}

/// Which events.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventQuery {
    /// Only this project's.
    pub project: Option<String>,
    /// At most this many (default 50).
    pub limit: Option<u32>,
}

/// Push events, newest first.
#[utoipa::path(get, path = "/api/v1/registry/events", tag = "registry", params(EventQuery),
    responses((status = 200, body = Vec<RegistryEvent>)))]
pub async fn events(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<Vec<RegistryEvent>>> {
    let project = match (&q.project, caller.project) {
        (Some(name), _) => Some(project_for(&app, &caller, name, Role::Viewer).await?.id),
        (None, scope) => scope,
    };
    let list = app.store.registry_events(project.as_ref(), q.limit.unwrap_or(50).min(1000)).await?;
    Ok(Json(
        list.into_iter()
            .map(|e| RegistryEvent {
                id: e.id,
                repository: e.repository,
                tag: e.tag,
                digest: e.digest,
                media_type: e.media_type,
                actor: e.actor,
                created_at: e.created_at,
                action: e.action,
                tags: e.tags,
                advisories: e.advisories,
            })
            .collect(),
    ))
}

fn webhook_dto(project: &str, w: kiln_store::RegistryWebhook) -> Webhook {
    Webhook {
        id: w.id,
        project: project.to_string(),
        url: w.url,
        events: w.events,
        signed: w.secret.is_some(),
        secret: None,
        created_at: w.created_at,
    }
}

/// A project's webhooks (admin of the project).
#[utoipa::path(get, path = "/api/v1/projects/{project}/webhooks", tag = "registry",
    params(("project" = String, Path)), responses((status = 200, body = Vec<Webhook>)))]
pub async fn webhooks(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<Webhook>>> {
    let p = project_for(&app, &caller, &project, Role::Admin).await?;
    let list = app.store.registry_webhooks(&p.id).await?;
    Ok(Json(list.into_iter().map(|w| webhook_dto(&project, w)).collect()))
}

/// Adds a webhook to a project (admin of the project): the events it takes (`push`, `run`;
/// default `push`) are POSTed to it, signed with its secret (given, or generated); the
/// answer is the only one that shows the secret.
#[utoipa::path(post, path = "/api/v1/projects/{project}/webhooks", tag = "registry",
    params(("project" = String, Path)), request_body = CreateWebhook,
    responses((status = 201, body = Webhook), (status = 400, body = ErrorBody)))]
pub async fn add_webhook(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
    Body(req): Body<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<Webhook>)> {
    let p = project_for(&app, &caller, &project, Role::Admin).await?;
    if let Some(why) = app.registry.webhook_refusal(&req.url).await {
        return Err(ApiErr::bad_request(why));
    }
    let events = req.events.unwrap_or_else(|| vec!["push".to_string()]);
    let secret = match req.secret {
        Some(s) if s.trim().is_empty() => {
            return Err(ApiErr::bad_request("a webhook secret cannot be empty"));
        }
        Some(s) => s,
        None => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes)
                .map_err(|e| ApiErr::internal(format!("no randomness for a secret: {e}")))?;
            format!("whsec_{}", hex::encode(bytes))
        }
    };
    let w = app.store.add_webhook(&p.id, &req.url, &events, Some(&secret)).await?;
    let mut dto = webhook_dto(&project, w);
    dto.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(dto)))
}

/// Removes a webhook of a project (admin of the project).
#[utoipa::path(delete, path = "/api/v1/projects/{project}/webhooks/{id}", tag = "registry",
    params(("project" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(app): State<App>,
    caller: Caller,
    Path((project, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let p = project_for(&app, &caller, &project, Role::Admin).await?;
    app.store.registry_delete_webhook(&p.id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
