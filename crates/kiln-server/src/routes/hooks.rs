//! Webhook endpoints for git providers: `POST /api/v1/hooks/{github,gitlab,gitea}`. No Kiln
//! token: a delivery is trusted for the projects whose `WEBHOOK_SECRET` secret checks its
//! signature (GitHub `X-Hub-Signature-256`, Gitea `X-Gitea-Signature`) or token (GitLab
//! `X-Gitlab-Token`). See `webhooks.rs` (reading, signatures) and `triggers.rs` (what starts).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use kiln_api::{ErrorBody, HookOutcome};

use crate::App;
use crate::error::{ApiErr, ApiResult};
use crate::triggers::{GitOutcome, on_git};
use crate::webhooks::{Provider, parse};

/// The largest delivery accepted: GitHub caps its payloads at 25 MB (other API bodies keep
/// the default 2 MB).
pub const MAX_BODY: usize = 25 * 1024 * 1024;

/// Receives a webhook delivery from GitHub, GitLab or Gitea and starts the runs it triggers:
/// every pipeline (in any project that trusts the delivery) whose `source:` is the delivered
/// repository and whose `on.push`/`on.pull_request` wants the event. A delivery id seen
/// before starts nothing again. A delivery for a repository no pipeline builds is answered
/// as one with a wrong signature (401), so the endpoint does not reveal which repositories
/// have pipelines.
#[utoipa::path(post, path = "/api/v1/hooks/{provider}", tag = "hooks",
    params(("provider" = String, Path, description = "`github`, `gitlab` or `gitea`")),
    security(()),
    request_body(content = Object, description = "The provider's JSON payload, as sent"),
    responses(
        (status = 200, body = HookOutcome, description = "Runs started, or why none"),
        (status = 400, body = ErrorBody, description = "Not a webhook of this provider"),
        (status = 401, body = ErrorBody, description = "Signature or token does not match that of a project building the repository (also when none builds it)"),
        (status = 404, body = ErrorBody, description = "Unknown provider")))]
pub async fn deliver(
    State(app): State<App>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<HookOutcome>> {
    let provider = Provider::from_name(&provider).ok_or_else(|| {
        ApiErr::not_found(format!(
            "no webhook endpoint for `{provider}`: use github, gitlab or gitea"
        ))
    })?;
    let delivery =
        parse(provider, &headers, &body).map_err(|e| ApiErr::bad_request(e.to_string()))?;
    match on_git(&app, &delivery, &headers, &body).await? {
        // The same answer whether or not pipelines build the repository, naming no project:
        // the endpoint tells a stranger nothing. The log keeps the whole cause.
        GitOutcome::NoPipeline(why) | GitOutcome::BadSignature(why) => {
            tracing::warn!(
                "{} webhook delivery {} for {} refused: {why}",
                provider.name(),
                delivery.id,
                delivery.repository
            );
            Err(ApiErr::unauthorized(format!(
                "the {} header does not match the WEBHOOK_SECRET of a project whose pipelines \
                 build {}",
                provider.signature_header(),
                delivery.repository
            )))
        }
        GitOutcome::Done(outcome, runs) => {
            Ok(Json(HookOutcome { delivery: delivery.id, outcome, runs }))
        }
    }
}
