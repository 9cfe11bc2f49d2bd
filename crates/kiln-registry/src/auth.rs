//! Who may do what: the Docker token flow.
//!
//! A client without a token gets `401` with a `WWW-Authenticate: Bearer realm=…` challenge; it
//! asks the token endpoint with HTTP basic auth (a Kiln token as password, any user name) for
//! the scopes it needs, and gets a short-lived HS256 JWT listing only the actions granted. Kiln
//! tokens are checked through the [`Authenticator`] the server passes in; job tokens
//! (`kiln_job_…`, minted by [`Keys::job_token`] for each leased job) are checked here.
//!
//! Rights on a repository `<project>/<name>` come from the caller's role on the project:
//! viewer pulls, developer also pushes, admin also deletes; an agent token has no rights at
//! all. A public repository may be pulled by anyone, without a token. A registry token names
//! the Kiln token it was minted from, so revoking that token refuses it at once
//! ([`Authenticator::revoked`]).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use kiln_store::{ProjectId, Role, TokenId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long an issued registry token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Token name (recorded as the pusher).
    pub name: String,
    /// Role.
    pub role: Role,
    /// The project the token is limited to, if any.
    pub project: Option<ProjectId>,
    /// The Kiln token's id (none for job tokens): registry tokens minted from it die with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenId>,
}

/// Checks Kiln tokens for the registry (the server's token table).
#[async_trait]
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The caller whose secret is `secret`; `None` for an unknown or revoked one.
    async fn authenticate(&self, secret: &str) -> Option<Principal>;

    /// Whether the Kiln token behind `principal` was revoked since a registry token was
    /// minted from it (checked on every request that shows one, so a revoke takes effect at
    /// once).
    fn revoked(&self, principal: &Principal) -> bool {
        let _ = principal;
        false
    }
}

/// An action on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Read manifests, blobs, tags.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags, blobs.
    Delete,
}

impl Action {
    /// The scope text.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
}

/// The actions `principal` has on a repository of project `project` (`None`: no such
/// project), public or not. An agent token has none of its own: it runs agents only.
pub fn allowed(
    principal: Option<&Principal>,
    project: Option<&ProjectId>,
    public: bool,
) -> Vec<Action> {
    let mut out = Vec::new();
    if let (Some(p), Some(project)) = (principal, project)
        && p.role > Role::Agent
        && p.project.as_ref().is_none_or(|scope| scope == project)
    {
        out.push(Action::Pull);
        if p.role >= Role::Developer {
            out.push(Action::Push);
        }
        if p.role >= Role::Admin {
            out.push(Action::Delete);
        }
    }
    if public && !out.contains(&Action::Pull) {
        out.insert(0, Action::Pull);
    }
    out
}

/// One `access` entry of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (or `catalog`).
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

/// The claims of a registry token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: `kiln`.
    pub iss: String,
    /// Subject: the token name, or `anonymous`.
    pub sub: String,
    /// Audience: the service.
    pub aud: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    pub nbf: u64,
    /// Issued at.
    pub iat: u64,
    /// Unique id.
    pub jti: String,
    /// What was granted.
    pub access: Vec<Access>,
    /// The caller behind the token (for the catalog), if authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kiln: Option<Principal>,
}

impl Claims {
    /// Whether the token grants `action` on repository `repo`.
    pub fn grants(&self, repo: &str, action: Action) -> bool {
        self.access.iter().any(|a| {
            a.kind == "repository"
                && a.name == repo
                && a.actions.iter().any(|x| x == action.as_str() || x == "*")
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct JobClaims {
    project: ProjectId,
    name: String,
    exp: u64,
    /// A pull token (viewer rights), such as an instance's for its image.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pull_only: bool,
}

/// The registry's signing key (HS256: tokens are only ever verified by this server).
pub struct Keys {
    key: [u8; 32],
    service: String,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("service", &self.service).finish_non_exhaustive()
    }
}

/// The JWT header of every token this registry issues.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// Prefix of job tokens.
pub const JOB_PREFIX: &str = "kiln_job_";

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Keys {
    /// Loads `<dir>/registry.key` (32 random bytes, hex), creating it (mode 0600) if missing.
    pub fn load_or_create(dir: &Path, service: &str) -> std::io::Result<Keys> {
        let path = dir.join("registry.key");
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes =
                    hex::decode(text.trim()).ok().filter(|b| b.len() == 32).ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("`{}` is not 64 hex digits", path.display()),
                        )
                    })?;
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
                std::fs::create_dir_all(dir)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path)?;
                std::io::Write::write_all(&mut file, hex::encode(key).as_bytes())?;
                file.sync_all()?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(Keys { key, service: service.to_string() })
    }

    /// The service name tokens are issued for.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    fn check_mac(&self, data: &[u8], sig: &[u8]) -> bool {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(data);
        mac.verify_slice(sig).is_ok()
    }

    /// Signs a registry token granting `access` to `principal` (or anonymous).
    pub fn issue(&self, principal: Option<&Principal>, access: Vec<Access>) -> (String, Claims) {
        let now = now_secs();
        let claims = Claims {
            iss: "kiln".into(),
            sub: principal.map_or_else(|| "anonymous".to_string(), |p| p.name.clone()),
            aud: self.service.clone(),
            exp: now + TOKEN_TTL.as_secs(),
            nbf: now.saturating_sub(5),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            kiln: principal.cloned(),
        };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing = format!("{}.{}", B64.encode(HEADER), B64.encode(payload));
        let sig = B64.encode(self.mac(signing.as_bytes()));
        (format!("{signing}.{sig}"), claims)
    }

    /// The claims of a token this registry issued, if its signature, audience and times hold.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || B64.decode(h).ok()? != HEADER.as_bytes() {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        if !self.check_mac(format!("{h}.{p}").as_bytes(), &sig) {
            return None;
        }
        let claims: Claims = serde_json::from_slice(&B64.decode(p).ok()?).ok()?;
        let now = now_secs();
        (claims.aud == self.service && claims.exp > now && claims.nbf <= now + 30).then_some(claims)
    }

    /// A token a job uses to push to (and pull from) its project's repositories, valid for
    /// `ttl`. It is never stored: the signature proves it.
    pub fn job_token(&self, project: ProjectId, name: &str, ttl: Duration) -> String {
        self.task_token(project, name, ttl, false)
    }

    /// A token an agent pulls a task's images from its project's repositories with (viewer
    /// rights: pull only), valid for `ttl`.
    pub fn pull_token(&self, project: ProjectId, name: &str, ttl: Duration) -> String {
        self.task_token(project, name, ttl, true)
    }

    fn task_token(&self, project: ProjectId, name: &str, ttl: Duration, pull_only: bool) -> String {
        let claims = JobClaims {
            project,
            name: name.to_string(),
            exp: now_secs() + ttl.as_secs(),
            pull_only,
        };
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let sig = B64.encode(self.mac(format!("job.{payload}").as_bytes()));
        format!("{JOB_PREFIX}{payload}.{sig}")
    }

    /// The job a job token stands for (developer on its project), if valid.
    pub fn verify_job_token(&self, secret: &str) -> Option<Principal> {
        let rest = secret.strip_prefix(JOB_PREFIX)?;
        let (payload, sig) = rest.split_once('.')?;
        let sig = B64.decode(sig).ok()?;
        if !self.check_mac(format!("job.{payload}").as_bytes(), &sig) {
            return None;
        }
        let claims: JobClaims = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
        (claims.exp > now_secs()).then_some(Principal {
            name: claims.name,
            role: if claims.pull_only { Role::Viewer } else { Role::Developer },
            project: Some(claims.project),
            token: None,
        })
    }
}

/// A requested scope: `repository:<name>:<actions>` or `registry:catalog:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry`.
    pub kind: String,
    /// The name.
    pub name: String,
    /// The actions asked for.
    pub actions: Vec<String>,
}

/// Parses one `scope` parameter (which may hold several space-separated scopes).
pub fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split(' ')
        .filter_map(|one| {
            let (kind, rest) = one.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(Scope {
                kind: kind.to_string(),
                name: name.to_string(),
                actions: actions.split(',').filter(|a| !a.is_empty()).map(String::from).collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let dir = tempfile_dir();
        Keys::load_or_create(&dir, "kiln").unwrap()
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("kiln-registry-keys-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn tokens_verify_and_tampering_fails() {
        let k = keys();
        let access = vec![Access {
            kind: "repository".into(),
            name: "a/b".into(),
            actions: vec!["pull".into()],
        }];
        let (token, _) = k.issue(None, access);
        let claims = k.verify(&token).unwrap();
        assert!(claims.grants("a/b", Action::Pull));
        assert!(!claims.grants("a/b", Action::Push));
        assert!(!claims.grants("a/c", Action::Pull));
        // Changing the payload breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let forged = serde_json::to_vec(&serde_json::json!({"iss":"kiln","sub":"x","aud":"kiln",
            "exp": u64::MAX, "nbf": 0, "iat": 0, "jti": "j",
            "access": [{"type":"repository","name":"a/b","actions":["push"]}]}))
        .unwrap();
        parts[1] = B64.encode(forged);
        assert!(k.verify(&parts.join(".")).is_none());
        // Another key does not verify it.
        assert!(keys().verify(&token).is_none());
    }

    #[test]
    fn job_tokens() {
        let k = keys();
        let project = ProjectId::new();
        let t = k.job_token(project, "job p/x#1 build", Duration::from_secs(60));
        let p = k.verify_job_token(&t).unwrap();
        assert_eq!(p.project, Some(project));
        assert_eq!(p.role, Role::Developer);
        assert!(k.verify_job_token(&t.replace("kiln_job_e", "kiln_job_f")).is_none());
        let pull = k.verify_job_token(&k.pull_token(project, "web/0", Duration::from_secs(60)));
        assert_eq!(pull.map(|p| (p.project, p.role)), Some((Some(project), Role::Viewer)));
        let expired = k.job_token(project, "old", Duration::ZERO);
        assert!(k.verify_job_token(&expired).is_none());
    }

    #[test]
    fn rights_follow_roles_and_projects() {
        let a = ProjectId::new();
        let b = ProjectId::new();
        let dev =
            Principal { name: "d".into(), role: Role::Developer, project: Some(a), token: None };
        assert_eq!(allowed(Some(&dev), Some(&a), false), vec![Action::Pull, Action::Push]);
        assert!(allowed(Some(&dev), Some(&b), false).is_empty());
        assert_eq!(allowed(Some(&dev), Some(&b), true), vec![Action::Pull]);
        assert_eq!(allowed(None, Some(&a), true), vec![Action::Pull]);
        assert!(allowed(None, Some(&a), false).is_empty());
        let admin =
            Principal { name: "root".into(), role: Role::Admin, project: None, token: None };
        let agent = Principal { role: Role::Agent, name: "runner".into(), ..admin.clone() };
        assert!(allowed(Some(&agent), Some(&a), false).is_empty());
        assert_eq!(allowed(Some(&admin), Some(&b), false).len(), 3);
    }

    #[test]
    fn scopes() {
        let s = parse_scopes("repository:team/app:pull,push registry:catalog:*");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "team/app");
        assert_eq!(s[0].actions, vec!["pull", "push"]);
        assert_eq!(s[1].kind, "registry");
    }
}
