//! The operators' view of the pool: nodes (list, set and unset attributes, disable, enable,
//! forget) and offers (free capacity per node), like `bcs-client as` and `bcs-client offer`.

use axum::Json;
use axum::extract::{Path, State};
use kiln_api::ErrorBody;
use kiln_api::pool::{NodeInfo, NodeUpdate, Offer, PrepullRequest, PrepullStatus, check_attr_key};
use kiln_store::{NodeChange, Role};

use super::Body;
use crate::App;
use crate::auth::Caller;
use crate::dispatch::NodeLookup;
use crate::error::{ApiErr, ApiResult};

/// A node's name from its name or IP: 404 for none, 409 when several nodes share the IP.
fn resolve(app: &App, node: &str) -> ApiResult<String> {
    match app.dispatch.lookup(node) {
        NodeLookup::Found(name) => Ok(name),
        NodeLookup::Missing => Err(ApiErr::not_found(format!(
            "no node is named `{node}` or has that IP (`kiln nodes` lists them)"
        ))),
        NodeLookup::Ambiguous(names) => Err(ApiErr::conflict(format!(
            "nodes {} share the IP `{node}`: name one of them",
            names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Lists the nodes of the pool, by name, with their state and attributes.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "pool",
    responses((status = 200, body = Vec<NodeInfo>), (status = 401, body = ErrorBody)))]
pub async fn list(State(app): State<App>, _caller: Caller) -> Json<Vec<NodeInfo>> {
    Json(app.dispatch.nodes())
}

/// Shows one node, by name or IP.
#[utoipa::path(get, path = "/api/v1/nodes/{node}", tag = "pool", params(("node" = String, Path)),
    responses((status = 200, body = NodeInfo), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    _caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Json<NodeInfo>> {
    let name = resolve(&app, &node)?;
    app.dispatch
        .nodes()
        .into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("node `{name}`")))
}

/// Sets or removes attributes of a node and disables or enables it (admin). Every attribute
/// name is checked before anything is written.
#[utoipa::path(patch, path = "/api/v1/nodes/{node}", tag = "pool", params(("node" = String, Path)),
    request_body = NodeUpdate,
    responses((status = 200, body = NodeInfo), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(app): State<App>,
    caller: Caller,
    Path(node): Path<String>,
    Body(req): Body<NodeUpdate>,
) -> ApiResult<Json<NodeInfo>> {
    caller.require(Role::Admin)?;
    let name = resolve(&app, &node)?;
    for key in req.set.keys().chain(&req.unset) {
        check_attr_key(key).map_err(|e| ApiErr::bad_request(e.to_string()))?;
    }
    if let Some(both) = req.unset.iter().find(|k| req.set.contains_key(*k)) {
        return Err(ApiErr::bad_request(format!("attribute `{both}` is both set and unset")));
    }
    let mut set = std::collections::BTreeMap::new();
    for (k, v) in &req.set {
        let json = serde_json::to_value(v)
            .map_err(|e| ApiErr::bad_request(format!("attribute `{k}`: {e}")))?;
        set.insert(k.clone(), json);
    }
    let change = NodeChange { set, unset: req.unset.clone(), disabled: req.disabled };
    let record = app.store.update_node(&name, &change).await?;
    app.dispatch.node_changed(&record);
    app.dispatch
        .nodes()
        .into_iter()
        .find(|n| n.name == name)
        .map(Json)
        .ok_or_else(|| ApiErr::not_found(format!("node `{name}`")))
}

/// Forgets a node whose agent is not connected, with its attributes (admin).
#[utoipa::path(delete, path = "/api/v1/nodes/{node}", tag = "pool", params(("node" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn forget(
    State(app): State<App>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    caller.require(Role::Admin)?;
    let name = resolve(&app, &node)?;
    if !app.dispatch.forget_node(&name) {
        return Err(ApiErr::conflict(format!(
            "node `{name}` is connected or still holds tasks: stop its agent first (or `kiln nodes disable` it), and wait until its tasks ended or were lost"
        )));
    }
    app.store.delete_node(&name).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// The free capacity of every connected, enabled node: CPUs, memory, disk, slots, host port
/// ranges and attributes.
#[utoipa::path(get, path = "/api/v1/offers", tag = "pool",
    responses((status = 200, body = Vec<Offer>), (status = 401, body = ErrorBody)))]
pub async fn offers(State(app): State<App>, _caller: Caller) -> Json<Vec<Offer>> {
    Json(app.dispatch.offers())
}

/// Pulls an image onto the nodes the selector picks (admin), ahead of the jobs that need it:
/// each connected node whose executor holds images gets the order in its agent's next poll.
/// An image of Kiln's own registry is pulled with a pull-only token of its project. Answers
/// at once; `GET /api/v1/nodes/prepull/{id}` follows it.
#[utoipa::path(post, path = "/api/v1/nodes/prepull", tag = "pool", request_body = PrepullRequest,
    responses((status = 200, body = PrepullStatus), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn prepull(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<PrepullRequest>,
) -> ApiResult<Json<PrepullStatus>> {
    caller.require(Role::Admin)?;
    let image = req.image.trim();
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Err(ApiErr::bad_request(format!(
            "image `{}`: expected an image reference such as busybox:latest or {}/project/repo:tag",
            req.image, app.registry_host
        )));
    }
    for key in req.selector.keys() {
        if key != "name" {
            check_attr_key(key).map_err(|e| ApiErr::bad_request(format!("selector: {e}")))?;
        }
    }
    let pull = registry_pull(&app, image).await?;
    let selector = req.selector.clone();
    let select = |name: &str, node: &kiln_scheduler::Node| {
        selector.iter().all(|(k, v)| match k.as_str() {
            "name" => name == v,
            _ => node.attribute(k).is_some_and(|a| a.canonical() == *v),
        })
    };
    app.dispatch.prepull(image, select, pull).map(Json).ok_or_else(|| {
        let wanted = req.selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
        ApiErr::not_found(if wanted.is_empty() {
            "no node has registered: start an agent first".to_string()
        } else {
            format!("no node matches {} (`kiln nodes` lists them)", wanted.join(", "))
        })
    })
}

/// Pull credentials for `image` when it is in Kiln's registry: a pull token of its project
/// (`host:port/<project>/...`); 404 when that project does not exist.
pub async fn registry_pull(app: &App, image: &str) -> ApiResult<Option<kiln_api::agent::PullAuth>> {
    let Some(rest) = image.strip_prefix(&format!("{}/", app.registry_host)) else {
        return Ok(None);
    };
    let project = rest.split('/').next().unwrap_or_default();
    let record = app.store.project(project).await.map_err(|_| {
        ApiErr::not_found(format!(
            "image `{image}`: project `{project}` of Kiln's registry does not exist"
        ))
    })?;
    Ok(app.task_tokens.pull_auth(record.id, &format!("prepull of {image}")))
}

/// How far a prepull got on each of its nodes.
#[utoipa::path(get, path = "/api/v1/nodes/prepull/{id}", tag = "pool", params(("id" = String, Path)),
    responses((status = 200, body = PrepullStatus), (status = 404, body = ErrorBody)))]
pub async fn prepull_status(
    State(app): State<App>,
    _caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PrepullStatus>> {
    app.dispatch.prepull_status(&id).map(Json).ok_or_else(|| {
        ApiErr::not_found(format!("prepull `{id}` is not known (the last 100 are kept)"))
    })
}
