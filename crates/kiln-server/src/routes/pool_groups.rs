//! The elastic pool's API: node groups (applied, listed, shown, deleted by admins) and the
//! autoscaler's events. Providers' `env` values are answered as `***`: they may hold a
//! cloud's credentials.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use kiln_api::ErrorBody;
use kiln_api::autoscale::{AppliedNodeGroup, NodeGroupInfo, NodeGroupSpec, PoolEvent};
use kiln_store::Role;
use serde::Deserialize;

use super::Body;
use crate::App;
use crate::auth::Caller;
use crate::autoscale::GroupError;
use crate::error::{ApiErr, ApiResult};

fn masked(mut g: NodeGroupInfo) -> NodeGroupInfo {
    for v in g.spec.provider.env.values_mut() {
        *v = "***".to_string();
    }
    g
}

impl From<GroupError> for ApiErr {
    fn from(e: GroupError) -> ApiErr {
        match e {
            GroupError::Invalid(m) => ApiErr::bad_request(m),
            GroupError::NotFound(_) => ApiErr::not_found(e.to_string()),
            GroupError::Busy(m) => ApiErr::conflict(m),
            GroupError::Store(s) => s.into(),
        }
    }
}

/// Lists the node groups with their nodes and their providers' failures.
#[utoipa::path(get, path = "/api/v1/pool/groups", tag = "pool",
    responses((status = 200, body = Vec<NodeGroupInfo>), (status = 401, body = ErrorBody)))]
pub async fn list(State(app): State<App>, _caller: Caller) -> Json<Vec<NodeGroupInfo>> {
    Json(app.autoscaler.groups().into_iter().map(masked).collect())
}

/// Creates or replaces a node group (admin). Every problem of the spec is reported at once,
/// one per line, each naming its field; nothing is stored then.
#[utoipa::path(put, path = "/api/v1/pool/groups", tag = "pool", request_body = NodeGroupSpec,
    responses((status = 200, body = AppliedNodeGroup), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn apply(
    State(app): State<App>,
    caller: Caller,
    Body(spec): Body<NodeGroupSpec>,
) -> ApiResult<Json<AppliedNodeGroup>> {
    caller.require(Role::Admin)?;
    let (change, group) = app.autoscaler.apply(spec).await?;
    Ok(Json(AppliedNodeGroup { change, group: masked(group) }))
}

/// Shows one node group.
#[utoipa::path(get, path = "/api/v1/pool/groups/{group}", tag = "pool",
    params(("group" = String, Path)),
    responses((status = 200, body = NodeGroupInfo), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    _caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<Json<NodeGroupInfo>> {
    app.autoscaler
        .group(&group)
        .map(|g| Json(masked(g)))
        .ok_or_else(|| ApiErr::not_found(format!("node group `{group}` does not exist")))
}

/// Deletes a node group that has no node left (admin); apply it with `max: 0` first.
#[utoipa::path(delete, path = "/api/v1/pool/groups/{group}", tag = "pool",
    params(("group" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(app): State<App>,
    caller: Caller,
    Path(group): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Role::Admin)?;
    app.autoscaler.delete(&group).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which events.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only this group's.
    pub group: Option<String>,
    /// Only those after this id.
    pub after: Option<i64>,
    /// At most this many, the latest (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// The autoscaler's events, oldest first: its decisions (scale-out, drain, scale-in), what
/// became of them (node-registered, node-removed, provider-failed, boot-timeout) and tasks
/// that bring no node (no-group-fits, at-max), each with its reason.
#[utoipa::path(get, path = "/api/v1/pool/events", tag = "pool", params(EventsQuery),
    responses((status = 200, body = Vec<PoolEvent>), (status = 401, body = ErrorBody)))]
pub async fn events(
    State(app): State<App>,
    _caller: Caller,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Vec<PoolEvent>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(app.autoscaler.events(q.group.as_deref(), q.after, limit).await?))
}
