//! `POST /api/v1/gc`: a garbage collection of caches and artifacts now (admin).

use axum::Json;
use axum::extract::State;
use kiln_api::{ErrorBody, GcReport};
use kiln_store::Role;

use crate::App;
use crate::auth::Caller;
use crate::error::{ApiErr, ApiResult};
use crate::gc::GcError;

/// Collects the garbage of caches and artifacts now (admin): caches past `--cache-max-age`
/// or over `--cache-max-size` (least recently used first), artifacts of runs ended longer
/// ago than `--artifact-max-age`, and blob files no record names older than
/// `--blob-gc-grace`. Answers what was removed.
#[utoipa::path(post, path = "/api/v1/gc", tag = "server",
    responses((status = 200, body = GcReport), (status = 403, body = ErrorBody)))]
pub async fn collect(State(app): State<App>, caller: Caller) -> ApiResult<Json<GcReport>> {
    caller.require(Role::Admin)?;
    match crate::gc::collect(&app).await {
        Ok(report) => Ok(Json(report)),
        Err(GcError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiErr::internal(e.to_string())),
    }
}
