//! Discovery tokens of jobs and instances. Every job attempt and every service instance gets
//! `KILN_DISCOVERY_TOKEN` (with `KILN_SERVER`, the server's URL as tasks reach it): a bearer
//! token that reads its own project's discovery (`GET /api/v1/discovery/targets`,
//! `/api/v1/discovery/watch`, `/api/v1/projects/{p}/services[/{s}]`) and nothing else,
//! valid while the task's lease lives.
//!
//! A token is signed, not stored: `kiln_task_<payload>.<signature>`, the payload naming the
//! project and the task ([`crate::dispatch::TaskCtx::key`]), HMAC-SHA256 with a key derived
//! from the server's secret key. So an instance adopted after a server restart keeps a token
//! that works, and a token outlives nothing: `auth.rs` checks that its task still holds a
//! lease on every request. Tokens are masked in the task's logs like secrets.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use kiln_store::ProjectId;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::secrets::SecretBox;

/// What every task token starts with.
pub const PREFIX: &str = "kiln_task_";

/// The env variable holding a task's discovery token.
pub const TOKEN_ENV: &str = "KILN_DISCOVERY_TOKEN";

/// The env variable holding the server's URL (the name the `kiln` CLI reads).
pub const SERVER_ENV: &str = "KILN_SERVER";

/// What a task token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskClaims {
    /// The task's project.
    pub project: ProjectId,
    /// The task's key (`run/job/attempt`, `svc/service/instance`).
    pub task: String,
    /// The task for people: `job build of run shop/ci#3`.
    pub name: String,
}

/// Mints and checks task tokens. Cheap to clone.
#[derive(Clone)]
pub struct TaskTokens {
    key: [u8; 32],
    server: String,
    /// The server's registry and its `host:port`, for pull tokens.
    registry: Option<(std::sync::Arc<kiln_registry::Registry>, String)>,
}

impl std::fmt::Debug for TaskTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTokens").field("server", &self.server).finish_non_exhaustive()
    }
}

impl TaskTokens {
    /// Tokens signed with a key derived from `secrets`; tasks reach the server at `server`
    /// (`http://host:port`).
    pub fn new(secrets: &SecretBox, server: String) -> TaskTokens {
        TaskTokens { key: secrets.derive_key("task-tokens"), server, registry: None }
    }

    /// These tokens, also minting pull credentials for `registry` at `host` (`host:port`).
    pub fn with_registry(
        mut self,
        registry: std::sync::Arc<kiln_registry::Registry>,
        host: String,
    ) -> TaskTokens {
        self.registry = Some((registry, host));
        self
    }

    /// The credentials the agent of a lease of `project` pulls the task's images from the
    /// server's registry with: a pull-only token (`name` says whose, for people), valid for
    /// [`crate::registry::PULL_TOKEN_TTL`].
    pub fn pull_auth(&self, project: ProjectId, name: &str) -> Option<kiln_api::agent::PullAuth> {
        let (registry, host) = self.registry.as_ref()?;
        Some(kiln_api::agent::PullAuth {
            registry: host.clone(),
            username: "kiln".into(),
            password: registry.pull_token(project, name, crate::registry::PULL_TOKEN_TTL),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.key).expect("any key length")
    }

    /// The token of task `task` of `project` (`name` is how people read it).
    pub fn mint(&self, project: ProjectId, task: &str, name: &str) -> String {
        let claims = TaskClaims { project, task: task.to_string(), name: name.to_string() };
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{PREFIX}{payload}.{sig}")
    }

    /// What a token says, if this server signed it (whether its task still runs is the
    /// caller's question).
    pub fn verify(&self, token: &str) -> Option<TaskClaims> {
        let (payload, sig) = token.strip_prefix(PREFIX)?.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        serde_json::from_slice(&B64.decode(payload).ok()?).ok()
    }

    /// A task's env (`KILN_DISCOVERY_TOKEN`, and `KILN_SERVER` unless the task's `own` env
    /// names it: a workflow's value wins) and its token (to be masked).
    pub fn env(
        &self,
        project: ProjectId,
        task: &str,
        name: &str,
        own: &BTreeMap<String, String>,
    ) -> (BTreeMap<String, String>, String) {
        let token = self.mint(project, task, name);
        let mut env = BTreeMap::from([(TOKEN_ENV.to_string(), token.clone())]);
        if !own.contains_key(SERVER_ENV) {
            env.insert(SERVER_ENV.to_string(), self.server.clone());
        }
        (env, token)
    }
}

/// Whether a task token may call `method path`: reading discovery and its project's services.
pub fn allowed(method: &axum::http::Method, path: &str) -> bool {
    if method != axum::http::Method::GET {
        return false;
    }
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        parts.as_slice(),
        ["", "api", "v1", "discovery", "targets" | "watch"]
            | ["", "api", "v1", "projects", _, "services"]
            | ["", "api", "v1", "projects", _, "services", _]
    )
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    fn tokens(key: u8) -> TaskTokens {
        TaskTokens::new(&SecretBox::new(&[key; 32]), "http://127.0.0.1:7171".into())
    }

    #[test]
    fn a_token_names_its_task_and_only_its_server_signed_it() {
        let t = tokens(1);
        let project = ProjectId::new();
        let token = t.mint(project, "svc/a/b", "instance b of service p/web");
        let claims = t.verify(&token).unwrap();
        assert_eq!((claims.project, claims.task.as_str()), (project, "svc/a/b"));
        assert!(tokens(2).verify(&token).is_none(), "another key");
        let (payload, sig) = token.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        let other = t.mint(ProjectId::new(), "svc/a/b", "x");
        let (other_payload, _) = other.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        assert!(t.verify(&format!("{PREFIX}{other_payload}.{sig}")).is_none(), "swapped payload");
        assert!(t.verify(payload).is_none());
        let (env, minted) = t.env(project, "r/j/1", "job j", &BTreeMap::new());
        assert_eq!(env[TOKEN_ENV], minted);
        assert_eq!(env[SERVER_ENV], "http://127.0.0.1:7171");
        let own = BTreeMap::from([(SERVER_ENV.to_string(), "http://elsewhere".to_string())]);
        let (env, _) = t.env(project, "r/j/1", "job j", &own);
        assert!(!env.contains_key(SERVER_ENV), "the job's own value wins");
    }

    #[test]
    fn only_discovery_reads_are_allowed() {
        for path in [
            "/api/v1/discovery/targets",
            "/api/v1/discovery/watch",
            "/api/v1/projects/shop/services",
            "/api/v1/projects/shop/services/web",
            "/api/v1/projects/shop/services/web/",
        ] {
            assert!(allowed(&Method::GET, path), "{path}");
        }
        for path in [
            "/api/v1/projects/shop/services/web/history",
            "/api/v1/projects/shop/services/web/instances/x/logs",
            "/api/v1/services",
            "/api/v1/projects",
            "/api/v1/runs",
            "/api/v1/projects/shop/secrets",
        ] {
            assert!(!allowed(&Method::GET, path), "{path}");
        }
        assert!(!allowed(&Method::PUT, "/api/v1/projects/shop/services/web"));
        assert!(!allowed(&Method::DELETE, "/api/v1/projects/shop/services/web"));
    }
}
