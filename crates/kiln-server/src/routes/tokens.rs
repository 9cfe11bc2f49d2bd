//! API tokens (admin): create with a role and an optional project, list, revoke; and `info`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use kiln_api::{CreateToken, CreatedToken, ErrorBody, ServerInfo, Token};
use kiln_store::{NewToken, Role, TokenId};

use super::Body;
use crate::App;
use crate::auth::{Caller, parse_role, role_text};
use crate::error::{ApiErr, ApiResult};

async fn dto(app: &App, t: kiln_store::Token) -> ApiResult<Token> {
    let project = match t.project {
        Some(id) => app.store.projects().await?.into_iter().find(|p| p.id == id).map(|p| p.name),
        None => None,
    };
    Ok(Token {
        id: t.id.to_string(),
        name: t.name,
        role: role_text(t.role).to_string(),
        project,
        created_at: t.created_at,
        last_used_at: t.last_used_at,
        revoked_at: t.revoked_at,
    })
}

/// Lists tokens (admin); secrets are never shown again.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<Token>), (status = 403, body = ErrorBody)))]
pub async fn list(State(app): State<App>, caller: Caller) -> ApiResult<Json<Vec<Token>>> {
    caller.require(Role::Admin)?;
    let mut out = Vec::new();
    for t in app.store.tokens().await? {
        out.push(dto(&app, t).await?);
    }
    Ok(Json(out))
}

/// Creates a token (admin); the answer holds its secret, shown this once.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn create(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<CreateToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    caller.require(Role::Admin)?;
    crate::error::check_name("token name", &req.name)?;
    let role = parse_role(&req.role)?;
    if role == Role::Agent && req.project.is_some() {
        return Err(ApiErr::bad_request(
            "an agent token serves the whole pool: create it without a project",
        ));
    }
    let project = match &req.project {
        Some(name) => Some(app.store.project(name).await?.id),
        None => None,
    };
    let (token, secret) =
        app.store.create_token(&NewToken { name: req.name.clone(), role, project }).await?;
    let token = dto(&app, token).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret: secret.expose().to_string() })))
}

/// Revokes a token (admin); it stops working at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 200, body = Token), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Token>> {
    caller.require(Role::Admin)?;
    let id: TokenId =
        id.parse().map_err(|_| ApiErr::bad_request(format!("`{id}` is not a token id")))?;
    let t = app.store.revoke_token(&id).await?;
    app.tokens.clear();
    app.token_auth.revoke(id);
    Ok(Json(dto(&app, t).await?))
}

/// Who the caller is, the server's version and its agents.
#[utoipa::path(get, path = "/api/v1/info", tag = "server",
    responses((status = 200, body = ServerInfo), (status = 401, body = ErrorBody)))]
pub async fn info(State(app): State<App>, caller: Caller) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        token: caller.name,
        role: role_text(caller.role).to_string(),
        agents: app.dispatch.agents(),
    })
}
