//! Bearer-token authentication and role checks.
//!
//! Roles grow: a viewer reads; a developer also applies pipelines, triggers, cancels, retries,
//! approves and rejects; an admin also creates projects, tokens and secrets and runs agents.
//! A token limited to a project has its role on that project only. An `agent` token stands
//! apart: it may run an agent (the `/api/v1/agents` and `/api/v1/leases` paths) and nothing
//! else, not even read. A job's or an instance's discovery token (`task_token.rs`) reads its
//! own project's discovery only, while its task holds a lease. A request with an unknown or revoked token is refused and logged. Verified tokens are cached
//! for [`CACHE_TTL`] so a busy client does not cost a database write per request; revoking a
//! token clears the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use kiln_store::{ProjectId, Role, Token, TokenId};
use sha2::{Digest, Sha256};

use crate::App;
use crate::error::{ApiErr, ApiResult};

/// How long a verified token is trusted without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's name (recorded as "triggered by", "approved by").
    pub name: String,
    /// Its role.
    pub role: Role,
    /// The project it is limited to.
    pub project: Option<ProjectId>,
    /// The embedded agent's session token.
    pub internal: bool,
    /// The API token's id (not for the embedded agent or a task's discovery token): the
    /// runs it starts act with its rights (`Run::author`).
    pub token: Option<TokenId>,
}

impl Caller {
    /// Requires `role` on every project (unscoped tokens only).
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.project.is_some() {
            return Err(ApiErr::forbidden(format!(
                "token `{}` is limited to one project; this needs a {} token for all projects",
                self.name,
                role_text(role)
            )));
        }
        self.require_role(role)
    }

    /// Requires `role` on `project`. A project the token may not see is answered as a
    /// missing one (404, the store's words), so a stranger learns nothing of it.
    pub fn require_on(&self, role: Role, project: &kiln_store::Project) -> ApiResult<()> {
        if !self.may_see(&project.id) {
            return Err(ApiErr::not_found(format!("project `{}` does not exist", project.name)));
        }
        self.require_role(role)
    }

    /// Whether the token reaches project `id` at all (an agent token reaches none).
    pub fn may_see(&self, id: &ProjectId) -> bool {
        (self.internal || self.role > Role::Agent) && self.project.as_ref().is_none_or(|p| p == id)
    }

    /// The key of the agent sessions this caller may register and drive: its token's id
    /// (the embedded agent has its own).
    pub fn agent_owner(&self) -> String {
        match (&self.token, self.internal) {
            (_, true) => "embedded".to_string(),
            (Some(id), false) => id.to_string(),
            (None, false) => format!("name:{}", self.name),
        }
    }

    fn require_role(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiErr::forbidden(format!(
                "token `{}` has role {}; this needs {}",
                self.name,
                role_text(self.role),
                role_text(role)
            )))
        }
    }
}

/// The text of a role.
pub fn role_text(r: Role) -> &'static str {
    match r {
        Role::Agent => "agent",
        Role::Viewer => "viewer",
        Role::Developer => "developer",
        Role::Admin => "admin",
    }
}

/// Parses a role name.
pub fn parse_role(s: &str) -> ApiResult<Role> {
    match s {
        "viewer" => Ok(Role::Viewer),
        "developer" => Ok(Role::Developer),
        "admin" => Ok(Role::Admin),
        "agent" => Ok(Role::Agent),
        other => Err(ApiErr::bad_request(format!(
            "role `{other}` is not one of viewer, developer, admin, agent"
        ))),
    }
}

/// The paths an agent token may call: registration, lease polls and what a lease reports.
fn is_agent_path(path: &str) -> bool {
    ["/api/v1/agents", "/api/v1/leases/"].iter().any(|p| path.starts_with(p))
}

/// Verified tokens, by the hash of their secret.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Token, Instant)>>,
}

impl TokenCache {
    /// Forgets every cached token (after a revoke).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiErr;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> ApiResult<Caller> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiErr::unauthorized(
                    "no token: send `Authorization: Bearer <token>` (the CLI reads KILN_TOKEN)",
                )
            })?;
        let secret = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                ApiErr::unauthorized("the Authorization header must be `Bearer <token>`")
            })?
            .trim();
        if secret == app.agent_secret {
            return Ok(Caller {
                name: "embedded-agent".into(),
                role: Role::Admin,
                project: None,
                internal: true,
                token: None,
            });
        }
        if let Some(claims) = app.task_tokens.verify(secret) {
            return task_caller(app, parts, claims);
        }
        let hash = hex::encode(Sha256::digest(secret.as_bytes()));
        let cached = {
            let entries = app.tokens.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.get(&hash).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(t, _)| t.clone())
        };
        let token = match cached {
            Some(t) => t,
            None => {
                let Some(t) = app.store.verify_token(secret).await? else {
                    tracing::warn!(
                        "refused {} {}: the token is unknown or revoked",
                        parts.method,
                        parts.uri.path()
                    );
                    return Err(ApiErr::unauthorized("the token is unknown or revoked"));
                };
                app.tokens
                    .entries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(hash, (t.clone(), Instant::now()));
                t
            }
        };
        if token.role == Role::Agent && !is_agent_path(parts.uri.path()) {
            return Err(ApiErr::forbidden(format!(
                "token `{}` is an agent token: it may only run an agent",
                token.name
            )));
        }
        Ok(Caller {
            name: token.name,
            role: token.role,
            project: token.project,
            internal: false,
            token: Some(token.id),
        })
    }
}

/// The caller of a job's or an instance's discovery token: a viewer of its project, on the
/// discovery paths only, while its task holds a lease.
fn task_caller(app: &App, parts: &Parts, c: crate::task_token::TaskClaims) -> ApiResult<Caller> {
    if !app.dispatch.task_live(&c.task) {
        return Err(ApiErr::unauthorized(format!(
            "the discovery token of {} is no longer valid: its lease ended",
            c.name
        )));
    }
    if !crate::task_token::allowed(&parts.method, parts.uri.path()) {
        return Err(ApiErr::forbidden(format!(
            "the discovery token of {} only reads its project's discovery (GET \
             /api/v1/discovery/targets, /api/v1/discovery/watch, \
             /api/v1/projects/{{project}}/services[/{{service}}]), not {} {}",
            c.name,
            parts.method,
            parts.uri.path()
        )));
    }
    Ok(Caller {
        name: format!("discovery token of {}", c.name),
        role: Role::Viewer,
        project: Some(c.project),
        internal: false,
        token: None,
    })
}
