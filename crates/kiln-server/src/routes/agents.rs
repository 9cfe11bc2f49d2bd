//! The agent side of the lease protocol (see [`kiln_api::agent`]): register, lease poll,
//! event reports, and the files of a lease (inputs, cache, artifacts).

use axum::Json;
use axum::body::Body as RawBody;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_api::agent::{
    AgentEvent, AgentInfo, CacheQuery, EventsResponse, ImagesReport, LeaseReport, LeaseRequest,
    LeaseResponse, RegisterAgent, ReportsResponse,
};
use kiln_api::{Artifact, ArtifactFile, ErrorBody};
use kiln_store::{ArtifactRecord, NewArtifact, Role, StoreError};

use super::Body;
use crate::App;
use crate::auth::Caller;
use crate::blobs::{self, Blobs};
use crate::dispatch::TaskCtx;
use crate::error::{ApiErr, ApiResult};

/// Largest artifact or cache archive accepted.
pub const MAX_ARCHIVE: u64 = 2 << 30;

/// The agent API takes an agent token, an admin token or the embedded agent's.
fn agent_caller(caller: &Caller) -> ApiResult<()> {
    if caller.internal || caller.role == Role::Agent {
        return Ok(());
    }
    caller.require(Role::Admin)
}

/// Registers an agent session (agent or admin token, or the embedded agent's).
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = RegisterAgent,
    responses((status = 200, body = AgentInfo), (status = 403, body = ErrorBody),
              (status = 409, description = "the agent speaks another protocol version (`agent_protocol`)", body = ErrorBody)))]
pub async fn register(
    State(app): State<App>,
    caller: Caller,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    Body(mut req): Body<RegisterAgent>,
) -> ApiResult<Json<AgentInfo>> {
    agent_caller(&caller)?;
    if let Some(why) = kiln_api::agent::protocol_mismatch(
        &req.version,
        req.protocol,
        env!("CARGO_PKG_VERSION"),
        kiln_api::agent::PROTOCOL,
    ) {
        tracing::warn!("agent `{}` refused: {why}", req.name);
        return Err(ApiErr::new(StatusCode::CONFLICT, kiln_api::codes::AGENT_PROTOCOL, why));
    }
    // An agent that could not tell its own address is reached at the one it called from.
    if req.ip.is_empty()
        && let Some(axum::Extension(axum::extract::ConnectInfo(addr))) = peer
    {
        req.ip = addr.ip().to_canonical().to_string();
    }
    if req.name.trim().is_empty() {
        return Err(ApiErr::bad_request("an agent needs a name"));
    }
    crate::error::check_name("agent name", &req.name)?;
    if !req.hostname.is_empty() {
        crate::error::check_name("agent hostname", &req.hostname)?;
    }
    for key in req.attributes.keys() {
        kiln_api::pool::check_attr_key(key).map_err(|e| {
            tracing::warn!("agent `{}` refused: {e}", req.name);
            ApiErr::bad_request(format!("agent `{}`: {e}", req.name))
        })?;
    }
    if let Some(p) = req.ports
        && (p.start == 0 || p.start > p.end)
    {
        return Err(ApiErr::bad_request(format!(
            "agent `{}`: port range {p} is not valid (start-end, start >= 1)",
            req.name
        )));
    }
    let owner = caller.agent_owner();
    if app.dispatch.name_taken(&req.name, &owner) {
        tracing::warn!("agent `{}` refused: another token runs an agent of that name", req.name);
        return Err(ApiErr::forbidden(format!(
            "agent `{}` is connected with another token: its session is that token's; use \
             another name, or wait until it is lost",
            req.name
        )));
    }
    // Stored first: a node is never half-registered (known in memory but not stored).
    let facts = serde_json::to_value(crate::pool::NodeFacts::of(&req))
        .map_err(|e| ApiErr::bad_request(format!("agent `{}`: {e}", req.name)))?;
    let record = app.store.register_node(&req.name, &facts).await?;
    app.dispatch.node_changed(&record);
    let registered = app.dispatch.register(&req, &owner);
    for (ctx, why) in &registered.lost {
        ctx.lost(why);
    }
    for ctx in &registered.adopted {
        ctx.adopted();
    }
    if !registered.adopted.is_empty() {
        tracing::info!(
            "agent `{}` took back {} task(s) it ran before the server restarted",
            req.name,
            registered.adopted.len()
        );
    }
    app.metrics.agents.set(app.dispatch.agents().len() as i64);
    Ok(Json(registered.info))
}

/// Ends an agent session (the agent stops): its node shows `down` at once instead of `lost`
/// later. Attempts it still reports on finish normally; those it drops are lost when their
/// leases expire.
#[utoipa::path(delete, path = "/api/v1/agents/{agent}", tag = "agents",
    params(("agent" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody)))]
pub async fn leave(
    State(app): State<App>,
    caller: Caller,
    Path(agent): Path<String>,
) -> ApiResult<StatusCode> {
    agent_caller(&caller)?;
    own_session(&app, &caller, &agent, true)?;
    app.dispatch.leave(&agent);
    app.metrics.agents.set(app.dispatch.agents().len() as i64);
    Ok(StatusCode::NO_CONTENT)
}

/// Refuses a session registered with another token as an unknown one (404); a session
/// that is not live at all passes when `gone_ok` (leaving twice is no error).
fn own_session(app: &App, caller: &Caller, agent: &str, gone_ok: bool) -> ApiResult<()> {
    match app.dispatch.session_owner(agent) {
        Some(owner) if owner == caller.agent_owner() => Ok(()),
        None if gone_ok => Ok(()),
        _ => Err(ApiErr::not_found(format!("agent session `{agent}`: register again"))),
    }
}

/// Refuses a lease of a session registered with another token as a lease that is not live.
fn own_lease(app: &App, caller: &Caller, lease: &str) -> ApiResult<()> {
    if app.dispatch.lease_owned(lease, &caller.agent_owner(), None) {
        return Ok(());
    }
    Err(ApiErr::not_found(format!("lease `{lease}` is not live (lost, canceled or ended)")))
}

/// Lists connected agents (viewers and up: an agent token reads nothing).
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses((status = 200, body = Vec<AgentInfo>), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<App>, caller: Caller) -> ApiResult<Json<Vec<AgentInfo>>> {
    if !caller.internal && caller.role < Role::Viewer {
        return Err(ApiErr::forbidden(format!(
            "token `{}` is an agent token: it runs agents and reads nothing",
            caller.name
        )));
    }
    Ok(Json(app.dispatch.agents()))
}

/// One lease long poll: renews held leases, answers with work, cancels and unknown leases.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/lease", tag = "agents",
    params(("agent" = String, Path)), request_body = LeaseRequest,
    responses((status = 200, body = LeaseResponse),
              (status = 404, description = "unknown session: register again", body = ErrorBody)))]
pub async fn lease(
    State(app): State<App>,
    caller: Caller,
    Path(agent): Path<String>,
    Body(req): Body<LeaseRequest>,
) -> ApiResult<Json<LeaseResponse>> {
    agent_caller(&caller)?;
    own_session(&app, &caller, &agent, false)?;
    let resp = app
        .dispatch
        .poll(&agent, &req)
        .await
        .ok_or_else(|| ApiErr::not_found(format!("agent session `{agent}`: register again")))?;
    app.metrics.leases.set(app.dispatch.lease_count() as i64);
    Ok(Json(resp))
}

/// Reports what changed in an agent's image cache: the images its engine holds now (for
/// ImageLocality placement and `kiln nodes`) and the prepull orders it finished.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/images", tag = "agents",
    params(("agent" = String, Path)), request_body = ImagesReport,
    responses((status = 204),
              (status = 404, description = "unknown session: register again", body = ErrorBody)))]
pub async fn images(
    State(app): State<App>,
    caller: Caller,
    Path(agent): Path<String>,
    Body(report): Body<ImagesReport>,
) -> ApiResult<StatusCode> {
    agent_caller(&caller)?;
    own_session(&app, &caller, &agent, false)?;
    if !app.dispatch.report_images(&agent, &report) {
        return Err(ApiErr::not_found(format!("agent session `{agent}`: register again")));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The context of a live lease of a job attempt (files belong to attempts only) that the
/// caller's session holds.
fn live_lease(
    app: &App,
    caller: &Caller,
    lease: &str,
) -> ApiResult<(std::sync::Arc<TaskCtx>, bool)> {
    agent_caller(caller)?;
    own_lease(app, caller, lease)?;
    let (ctx, cancel) = app.dispatch.lease(lease).ok_or_else(|| {
        ApiErr::not_found(format!("lease `{lease}` is not live (lost, canceled or ended)"))
    })?;
    if ctx.attempt().is_none() {
        return Err(ApiErr::not_found(format!(
            "lease `{lease}` is a service instance: it has no inputs, caches or artifacts"
        )));
    }
    Ok((ctx, cancel))
}

/// The attempt of a context [`live_lease`] returned.
fn attempt_of(ctx: &TaskCtx) -> &crate::dispatch::AttemptCtx {
    ctx.attempt().expect("live_lease returns attempts only")
}

/// Reports events of a lease, in order: `started`, `log`/`output` lines, one `exited`.
#[utoipa::path(post, path = "/api/v1/leases/{lease}/events", tag = "agents",
    params(("lease" = String, Path)), request_body = Vec<AgentEvent>,
    responses((status = 200, body = EventsResponse), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(app): State<App>,
    caller: Caller,
    Path(lease): Path<String>,
    Body(events): Body<Vec<AgentEvent>>,
) -> ApiResult<Json<EventsResponse>> {
    agent_caller(&caller)?;
    own_lease(&app, &caller, &lease)?;
    let mut stored = Vec::new();
    let cancel = report(&app, &lease, events, &mut stored)?;
    wait_stored(stored).await?;
    Ok(Json(EventsResponse { cancel }))
}

/// Reports the events of several leases in one request (each lease's in order), as
/// `POST /api/v1/leases/{lease}/events` does for one; leases that are not live are listed
/// as `unknown` and their events dropped.
#[utoipa::path(post, path = "/api/v1/agents/{agent}/events", tag = "agents",
    params(("agent" = String, Path)), request_body = Vec<LeaseReport>,
    responses((status = 200, body = ReportsResponse), (status = 403, body = ErrorBody)))]
pub async fn reports(
    State(app): State<App>,
    caller: Caller,
    Path(_agent): Path<String>,
    Body(reports): Body<Vec<LeaseReport>>,
) -> ApiResult<Json<ReportsResponse>> {
    agent_caller(&caller)?;
    let owner = caller.agent_owner();
    let mut resp = ReportsResponse::default();
    let mut stored = Vec::new();
    for r in reports {
        // Only the leases of this token's sessions: others are unknown to it.
        if !app.dispatch.lease_owned(&r.lease, &owner, None) {
            resp.unknown.push(r.lease);
            continue;
        }
        match report(&app, &r.lease, r.events, &mut stored) {
            Ok(true) => resp.cancel.push(r.lease),
            Ok(false) => {}
            Err(_) => resp.unknown.push(r.lease),
        }
    }
    wait_stored(stored).await?;
    Ok(Json(resp))
}

/// Waits until the reported ends of array indexes are stored, so that what the agent hears
/// acknowledged survives a crash. A run that ended or restarted meanwhile drops its sender:
/// that index runs again if it matters, so it is not an error for the agent.
async fn wait_stored(stored: Vec<crate::reports::Stored>) -> ApiResult<()> {
    for rx in stored {
        if let Ok(Err(e)) = rx.await {
            return Err(e);
        }
    }
    Ok(())
}

/// Takes a lease's events through [`crate::reports::Reports`]; not found when the lease is
/// not live.
fn report(
    app: &App,
    lease: &str,
    events: Vec<AgentEvent>,
    stored: &mut Vec<crate::reports::Stored>,
) -> ApiResult<bool> {
    let reports =
        crate::reports::Reports { logs: &app.logs, dispatch: &app.dispatch, metrics: &app.metrics };
    reports.take(lease, events, stored).map_err(|e| ApiErr::not_found(e.to_string()))
}

fn file_response(file: tokio::fs::File) -> Response {
    let stream = tokio_util::io::ReaderStream::new(file);
    ([(axum::http::header::CONTENT_TYPE, "application/gzip")], RawBody::from_stream(stream))
        .into_response()
}

async fn open_blob(app: &App, rel: &str) -> ApiResult<Option<Response>> {
    let path = app.blobs.path(rel);
    match tokio::fs::File::open(&path).await {
        Ok(f) => Ok(Some(file_response(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Downloads the artifacts of a needed job into a lease's workspace; 404
/// `artifacts_expired` if they expired (also those a retry would have reused).
#[utoipa::path(get, path = "/api/v1/leases/{lease}/inputs/{job}", tag = "agents",
    params(("lease" = String, Path), ("job" = String, Path)),
    responses((status = 200, content_type = "application/gzip", description = "tar.gz"),
              (status = 404, description = "none, or expired (`artifacts_expired`)", body = ErrorBody)))]
pub async fn input(
    State(app): State<App>,
    caller: Caller,
    Path((lease, job)): Path<(String, String)>,
) -> ApiResult<Response> {
    agent_caller(&caller)?;
    let (ctx, _) = live_lease(&app, &caller, &lease)?;
    let job_id = job.as_str().into();
    let run_id = attempt_of(&ctx).run;
    let rec = match app.store.artifact(&run_id, &job_id).await {
        Ok(rec) => rec,
        Err(StoreError::NotFound(m)) => {
            // A retry copies the live artifacts of the jobs it reuses: if there were none to
            // copy because they expired, say so (the job needs them and fails).
            let run = app.store.run(&run_id).await?;
            if let Some(from) = run.retry_of
                && let Ok(old) = app.store.artifact(&from, &job_id).await
                && old.expired_at.is_some()
            {
                return Err(expired(&app, &from.to_string(), &old));
            }
            return Err(ApiErr::not_found(m));
        }
        Err(e) => return Err(e.into()),
    };
    live_blob(&app, &run_id.to_string(), &rec).await
}

/// The answer for artifacts the garbage collector removed.
fn expired(app: &App, run: &str, rec: &ArtifactRecord) -> ApiErr {
    let when = rec.expired_at.map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")));
    ApiErr::new(
        StatusCode::NOT_FOUND,
        kiln_api::codes::ARTIFACTS_EXPIRED,
        format!(
            "the artifacts of job `{}` of run {run} expired: they are removed {} after the run ends (removed{})",
            rec.job,
            crate::gc::short(app.gc.artifact_max_age),
            when.unwrap_or_default()
        ),
    )
}

/// The archive of an artifact record, or why not (expired, or its file gone).
async fn live_blob(app: &App, run: &str, rec: &ArtifactRecord) -> ApiResult<Response> {
    if rec.expired_at.is_some() {
        return Err(expired(app, run, rec));
    }
    open_blob(app, &rec.blob).await?.ok_or_else(|| {
        ApiErr::not_found(format!(
            "the artifacts of job `{}` of run {run} are gone from the blob store",
            rec.job
        ))
    })
}

/// Downloads a project cache for a lease (404 on a miss).
#[utoipa::path(get, path = "/api/v1/leases/{lease}/cache", tag = "agents",
    params(("lease" = String, Path), CacheQuery),
    responses((status = 200, content_type = "application/gzip", description = "tar.gz"),
              (status = 404, description = "cache miss", body = ErrorBody)))]
pub async fn get_cache(
    State(app): State<App>,
    caller: Caller,
    Path(lease): Path<String>,
    Query(q): Query<CacheQuery>,
) -> ApiResult<Response> {
    agent_caller(&caller)?;
    let (ctx, _) = live_lease(&app, &caller, &lease)?;
    let miss = || ApiErr::not_found(format!("no cache `{}`", q.key));
    let rec = app.store.cache(&ctx.project, &q.key).await?.ok_or_else(miss)?;
    open_blob(&app, &rec.blob).await?.ok_or_else(miss)
}

/// Stores a project cache from a lease (replacing an older one of the same key).
#[utoipa::path(put, path = "/api/v1/leases/{lease}/cache", tag = "agents",
    params(("lease" = String, Path), CacheQuery), request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn put_cache(
    State(app): State<App>,
    caller: Caller,
    Path(lease): Path<String>,
    Query(q): Query<CacheQuery>,
    body: RawBody,
) -> ApiResult<StatusCode> {
    agent_caller(&caller)?;
    let (ctx, _) = live_lease(&app, &caller, &lease)?;
    if q.key.is_empty() || q.key.len() > 512 {
        return Err(ApiErr::bad_request("a cache key has 1 to 512 characters"));
    }
    let rel = Blobs::cache_rel(&ctx.project.to_string(), &q.key);
    let written = write_blob(&app, &rel, body).await?;
    app.store.put_cache(&ctx.project, &q.key, &rel, written.size).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn write_blob(app: &App, rel: &str, body: RawBody) -> ApiResult<blobs::Written> {
    app.blobs.write(rel, body.into_data_stream(), MAX_ARCHIVE).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            ApiErr::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                kiln_api::codes::TOO_LARGE,
                format!("archive {e}"),
            )
        } else {
            ApiErr::internal(format!("store archive: {e}"))
        }
    })
}

/// Stores a job's artifacts (tar.gz) from its lease; the server lists the files itself.
#[utoipa::path(put, path = "/api/v1/leases/{lease}/artifacts", tag = "agents",
    params(("lease" = String, Path)), request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses((status = 200, body = Artifact), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_artifacts(
    State(app): State<App>,
    caller: Caller,
    Path(lease): Path<String>,
    body: RawBody,
) -> ApiResult<Json<Artifact>> {
    agent_caller(&caller)?;
    let (ctx, _) = live_lease(&app, &caller, &lease)?;
    let a = attempt_of(&ctx);
    let rel = Blobs::artifact_rel(&a.run.to_string(), a.job_index, a.attempt);
    let written = write_blob(&app, &rel, body).await?;
    let path = app.blobs.path(&rel);
    let files = tokio::task::spawn_blocking(move || blobs::list_tar_gz(&path))
        .await
        .map_err(|e| ApiErr::internal(e.to_string()))?
        .map_err(|e| {
            ApiErr::bad_request(format!("the artifact archive is not a readable tar.gz: {e}"))
        })?;
    let rec = app
        .store
        .record_artifact(&NewArtifact {
            run: a.run,
            job: a.job.clone(),
            attempt: a.attempt,
            blob: rel,
            size: written.size,
            sha256: written.digest.trim_start_matches("sha256:").to_string(),
            files: files
                .iter()
                .map(|(p, s)| kiln_store::ArtifactFile { path: p.clone(), size: *s })
                .collect(),
        })
        .await?;
    Ok(Json(artifact_dto(rec)))
}

/// The API form of an artifact record.
pub fn artifact_dto(rec: kiln_store::ArtifactRecord) -> Artifact {
    Artifact {
        job: rec.job.to_string(),
        attempt: rec.attempt,
        size: rec.size,
        digest: format!("sha256:{}", rec.sha256),
        files: rec.files.into_iter().map(|f| ArtifactFile { path: f.path, size: f.size }).collect(),
        created_at: rec.created_at,
    }
}

/// Lists a run's artifacts; 404 `artifacts_expired` once the garbage collector removed them.
#[utoipa::path(get, path = "/api/v1/runs/{run}/artifacts", tag = "artifacts",
    params(("run" = String, Path)),
    responses((status = 200, body = Vec<Artifact>),
              (status = 404, description = "no such run, or its artifacts expired (`artifacts_expired`)", body = ErrorBody)))]
pub async fn run_artifacts(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Artifact>>> {
    let run = super::runs::run_for(&app, &caller, &id, Role::Viewer).await?;
    let list = app.store.artifacts(&run.id).await?;
    if let Some(gone) = list.iter().find(|a| a.expired_at.is_some())
        && list.iter().all(|a| a.expired_at.is_some())
    {
        let jobs: Vec<String> = list.iter().map(|a| format!("`{}`", a.job)).collect();
        let when = gone.expired_at.map(|t| format!(" on {}", t.format("%Y-%m-%d %H:%M UTC")));
        return Err(ApiErr::new(
            StatusCode::NOT_FOUND,
            kiln_api::codes::ARTIFACTS_EXPIRED,
            format!(
                "the artifacts of run {id} (jobs {}) expired: they are removed {} after the run ends (removed{})",
                jobs.join(", "),
                crate::gc::short(app.gc.artifact_max_age),
                when.unwrap_or_default()
            ),
        ));
    }
    Ok(Json(list.into_iter().filter(|a| a.expired_at.is_none()).map(artifact_dto).collect()))
}

/// Downloads a job's artifacts as tar.gz; 404 `artifacts_expired` once the garbage
/// collector removed them.
#[utoipa::path(get, path = "/api/v1/runs/{run}/artifacts/{job}", tag = "artifacts",
    params(("run" = String, Path), ("job" = String, Path)),
    responses((status = 200, content_type = "application/gzip", description = "tar.gz"),
              (status = 404, description = "none, or expired (`artifacts_expired`)", body = ErrorBody)))]
pub async fn download(
    State(app): State<App>,
    caller: Caller,
    Path((id, job)): Path<(String, String)>,
) -> ApiResult<Response> {
    let run = super::runs::run_for(&app, &caller, &id, Role::Viewer).await?;
    let rec = app.store.artifact(&run.id, &job.as_str().into()).await?;
    live_blob(&app, &id, &rec).await
}
