//! Webhook deliveries from git providers (GitHub, GitLab, Gitea), pure: their headers and
//! JSON turned into a [`Delivery`] (which repository, which event, the commit to build), and
//! their signature or token checked against a secret. The route (`routes/hooks.rs`) and the
//! triggering (`triggers.rs`) do the I/O.
//!
//! - GitHub: `X-GitHub-Event`, `X-GitHub-Delivery`, `X-Hub-Signature-256: sha256=<hex HMAC-SHA256
//!   of the body>`.
//! - Gitea: `X-Gitea-Event`, `X-Gitea-Delivery`, `X-Gitea-Signature: <hex HMAC-SHA256>`;
//!   payloads shaped like GitHub's.
//! - GitLab: `X-Gitlab-Event` (`Push Hook`, `Tag Push Hook`, `Merge Request Hook`),
//!   `X-Gitlab-Event-UUID`, `X-Gitlab-Token: <the secret itself>`.
//!
//! A delivery without an id header is identified by the SHA-256 of its body, so a replay of
//! the same bytes is still caught.

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use kiln_store::{PullRequestRef, RunSource};
use kiln_workflow::git::{GitEvent, GitRef, PullRequestAction};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A git provider whose webhooks Kiln reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// GitHub (and GitHub Enterprise).
    GitHub,
    /// GitLab.
    GitLab,
    /// Gitea (and Forgejo).
    Gitea,
}

impl Provider {
    /// The provider of a path segment (`github`, `gitlab`, `gitea`).
    pub fn from_name(name: &str) -> Option<Provider> {
        match name {
            "github" => Some(Provider::GitHub),
            "gitlab" => Some(Provider::GitLab),
            "gitea" => Some(Provider::Gitea),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
        }
    }

    fn event_header(self) -> &'static str {
        match self {
            Provider::GitHub => "x-github-event",
            Provider::GitLab => "x-gitlab-event",
            Provider::Gitea => "x-gitea-event",
        }
    }

    fn delivery_header(self) -> &'static str {
        match self {
            Provider::GitHub => "x-github-delivery",
            Provider::GitLab => "x-gitlab-event-uuid",
            Provider::Gitea => "x-gitea-delivery",
        }
    }

    /// The header that carries the signature or token.
    pub fn signature_header(self) -> &'static str {
        match self {
            Provider::GitHub => "X-Hub-Signature-256",
            Provider::GitLab => "X-Gitlab-Token",
            Provider::Gitea => "X-Gitea-Signature",
        }
    }
}

/// A delivery, read but not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Provider.
    pub provider: Provider,
    /// The provider's delivery id (or `sha256:<hex of the body>` when it sent none).
    pub id: String,
    /// The provider's event name, as sent.
    pub event_name: String,
    /// The repository's full name (`owner/name`).
    pub repository: String,
    /// Its clone URLs (http and ssh) and web URL.
    pub urls: Vec<String>,
    /// What happened, when it is an event triggers can match: `None` for others (ping, issues,
    /// a branch deletion).
    pub event: Option<(GitEvent, RunSource)>,
}

/// Why a delivery could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// A required header is missing.
    #[error("the {0} header is missing: is this a {1} webhook?")]
    MissingHeader(&'static str, &'static str),
    /// The body is not the JSON expected.
    #[error("the body is not a {0} webhook payload: {1}")]
    Payload(&'static str, String),
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// Whether the delivery's signature (GitHub, Gitea) or token (GitLab) matches `secret`.
/// Compared in constant time.
pub fn verify(provider: Provider, headers: &HeaderMap, body: &[u8], secret: &str) -> bool {
    let Some(given) = header(headers, provider.signature_header()) else { return false };
    match provider {
        Provider::GitLab => {
            // The token is the secret itself; compare digests so the time does not depend on
            // where they differ.
            Sha256::digest(given.as_bytes()) == Sha256::digest(secret.as_bytes())
        }
        Provider::GitHub | Provider::Gitea => {
            let hex_sig = match provider {
                Provider::GitHub => given.strip_prefix("sha256=").unwrap_or(""),
                _ => given.strip_prefix("sha256=").unwrap_or(given),
            };
            let Ok(sig) = hex::decode(hex_sig) else { return false };
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(body);
            mac.verify_slice(&sig).is_ok()
        }
    }
}

/// The signature header value a provider would send for `body` with `secret` (GitLab: the
/// token itself). What tests and `kiln` users simulating a delivery need.
pub fn sign(provider: Provider, body: &[u8], secret: &str) -> String {
    match provider {
        Provider::GitLab => secret.to_string(),
        Provider::GitHub | Provider::Gitea => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(body);
            let hex = hex::encode(mac.finalize().into_bytes());
            if provider == Provider::GitHub { format!("sha256={hex}") } else { hex }
        }
    }
}

fn text(v: &Value, path: &[&str]) -> String {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or_default().to_string()
}

fn author(v: &Value) -> String {
    let (name, email) = (text(v, &["name"]), text(v, &["email"]));
    match (name.is_empty(), email.is_empty()) {
        (false, false) => format!("{name} <{email}>"),
        (false, true) => name,
        _ => email,
    }
}

/// Files a push changed, from its `commits` (added, modified, removed); `None` when the
/// payload lists no commits or leaves out the file lists.
fn changed_files(payload: &Value) -> Option<Vec<String>> {
    let commits = payload["commits"].as_array().filter(|c| !c.is_empty())?;
    let mut files = Vec::new();
    for c in commits {
        let mut any = false;
        for key in ["added", "modified", "removed"] {
            if let Some(list) = c[key].as_array() {
                any = true;
                files.extend(list.iter().filter_map(|f| f.as_str().map(str::to_string)));
            }
        }
        if !any {
            return None;
        }
    }
    files.sort();
    files.dedup();
    Some(files)
}

/// Reads a delivery. `Err` only when the headers or JSON are not the provider's at all.
pub fn parse(provider: Provider, headers: &HeaderMap, body: &[u8]) -> Result<Delivery, HookError> {
    let event_name = header(headers, provider.event_header())
        .ok_or(HookError::MissingHeader(provider.event_header(), provider.name()))?
        .to_string();
    let id = match header(headers, provider.delivery_header()) {
        Some(id) => id.to_string(),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    };
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| HookError::Payload(provider.name(), e.to_string()))?;
    let (repository, urls) = match provider {
        Provider::GitLab => {
            let p = &payload["project"];
            let full = text(p, &["path_with_namespace"]);
            let urls = ["git_http_url", "git_ssh_url", "web_url"].map(|k| text(p, &[k]));
            (full, urls.to_vec())
        }
        Provider::GitHub | Provider::Gitea => {
            let r = &payload["repository"];
            let full = text(r, &["full_name"]);
            let urls = ["clone_url", "ssh_url", "html_url"].map(|k| text(r, &[k]));
            (full, urls.to_vec())
        }
    };
    if repository.is_empty() && urls.iter().all(String::is_empty) {
        return Err(HookError::Payload(provider.name(), "it names no repository".into()));
    }
    let urls: Vec<String> = urls.into_iter().filter(|u| !u.is_empty()).collect();
    let base = RunSource {
        provider: provider.name().to_string(),
        event: String::new(),
        repository: repository.clone(),
        clone_url: urls.first().cloned().unwrap_or_default(),
        git_ref: String::new(),
        branch: None,
        tag: None,
        commit: String::new(),
        message: String::new(),
        author: String::new(),
        pull_request: None,
    };
    let event = match (provider, event_name.as_str()) {
        (Provider::GitHub | Provider::Gitea, "push")
        | (Provider::GitLab, "Push Hook" | "Tag Push Hook") => push(provider, &payload, base),
        (Provider::GitHub | Provider::Gitea, "pull_request")
        | (Provider::GitLab, "Merge Request Hook") => pull_request(provider, &payload, base),
        _ => None,
    };
    Ok(Delivery { provider, id, event_name, repository, urls, event })
}

fn push(
    provider: Provider,
    payload: &Value,
    mut source: RunSource,
) -> Option<(GitEvent, RunSource)> {
    let full_ref = text(payload, &["ref"]);
    let after = text(payload, &["after"]);
    // A deletion pushes the zero commit: nothing to build.
    if after.is_empty() || after.bytes().all(|b| b == b'0') || payload["deleted"] == true {
        return None;
    }
    let head = match provider {
        Provider::GitLab => payload["commits"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == after.as_str()))
            .cloned()
            .unwrap_or(Value::Null),
        _ => payload["head_commit"].clone(),
    };
    let git_ref = GitRef::parse(&full_ref);
    match &git_ref {
        GitRef::Branch(b) => source.branch = Some(b.clone()),
        GitRef::Tag(t) => source.tag = Some(t.clone()),
        GitRef::Other(_) => return None,
    }
    source.event = "push".into();
    source.git_ref = full_ref;
    source.commit = after;
    source.message = text(&head, &["message"]);
    source.author = author(&head["author"]);
    Some((GitEvent::Push { git_ref, changed: changed_files(payload) }, source))
}

fn pull_request(
    provider: Provider,
    payload: &Value,
    mut source: RunSource,
) -> Option<(GitEvent, RunSource)> {
    let (action, number, target, branch, commit, merge_commit, title) = match provider {
        Provider::GitLab => {
            let a = &payload["object_attributes"];
            let action = match a["action"].as_str().unwrap_or_default() {
                "open" => PullRequestAction::Opened,
                "update" => PullRequestAction::Synchronize,
                "reopen" => PullRequestAction::Reopened,
                "close" => PullRequestAction::Closed,
                "merge" => PullRequestAction::Merged,
                _ => return None,
            };
            (
                action,
                a["iid"].as_u64().unwrap_or_default(),
                text(a, &["target_branch"]),
                text(a, &["source_branch"]),
                text(a, &["last_commit", "id"]),
                text(a, &["merge_commit_sha"]),
                text(a, &["title"]),
            )
        }
        Provider::GitHub | Provider::Gitea => {
            let pr = &payload["pull_request"];
            let action = match payload["action"].as_str().unwrap_or_default() {
                "opened" => PullRequestAction::Opened,
                "synchronize" | "synchronized" => PullRequestAction::Synchronize,
                "reopened" => PullRequestAction::Reopened,
                "closed" if pr["merged"] == true => PullRequestAction::Merged,
                "closed" => PullRequestAction::Closed,
                _ => return None,
            };
            (
                action,
                payload["number"].as_u64().or(pr["number"].as_u64()).unwrap_or_default(),
                text(pr, &["base", "ref"]),
                text(pr, &["head", "ref"]),
                text(pr, &["head", "sha"]),
                text(pr, &["merge_commit_sha"]),
                text(pr, &["title"]),
            )
        }
    };
    // A merged request builds the merge commit on the target branch; otherwise its head.
    let merged = action == PullRequestAction::Merged && !merge_commit.is_empty();
    source.event = "pull_request".into();
    if merged {
        source.git_ref = format!("refs/heads/{target}");
        source.branch = Some(target.clone());
        source.commit = merge_commit;
    } else {
        source.git_ref = format!("refs/heads/{branch}");
        source.branch = Some(branch);
        source.commit = commit;
    }
    if source.commit.is_empty() {
        return None;
    }
    source.message = title;
    source.author = match provider {
        Provider::GitLab => text(&payload["user"], &["username"]),
        _ => text(&payload["pull_request"]["user"], &["login"]),
    };
    source.pull_request =
        Some(PullRequestRef { number, target: target.clone(), action: action.name().to_string() });
    Some((GitEvent::PullRequest { action, target }, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn signatures_check_the_body_with_the_secret() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        for p in [Provider::GitHub, Provider::Gitea, Provider::GitLab] {
            let sig = sign(p, body, "s3cret");
            let h = headers(&[(p.signature_header(), &sig)]);
            assert!(verify(p, &h, body, "s3cret"), "{p:?}");
            assert!(!verify(p, &h, body, "other"), "{p:?}: another secret");
            if p != Provider::GitLab {
                assert!(!verify(p, &h, b"{}", "s3cret"), "{p:?}: another body");
            }
            assert!(!verify(p, &HeaderMap::new(), body, "s3cret"), "{p:?}: no header");
        }
        // GitHub's header always carries the algorithm.
        let bare = sign(Provider::Gitea, body, "s3cret");
        let h = headers(&[("X-Hub-Signature-256", &bare)]);
        assert!(!verify(Provider::GitHub, &h, body, "s3cret"));
    }

    #[test]
    fn a_github_push_is_read() {
        let body = serde_json::json!({
            "ref": "refs/tags/v1.0", "before": "0".repeat(40), "after": "b".repeat(40),
            "repository": { "full_name": "shop/app", "clone_url": "https://github.com/shop/app.git",
                            "ssh_url": "git@github.com:shop/app.git" },
            "head_commit": { "id": "b".repeat(40), "message": "Release",
                             "author": { "name": "Ada", "email": "ada@example.com" } },
            "commits": []
        });
        let h = headers(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]);
        let d = parse(Provider::GitHub, &h, body.to_string().as_bytes()).unwrap();
        assert_eq!(d.id, "d-1");
        assert_eq!(d.repository, "shop/app");
        let (event, source) = d.event.unwrap();
        assert_eq!(event, GitEvent::Push { git_ref: GitRef::Tag("v1.0".into()), changed: None });
        assert_eq!(source.tag.as_deref(), Some("v1.0"));
        assert_eq!(source.author, "Ada <ada@example.com>");
    }

    #[test]
    fn deletions_pings_and_unknown_events_trigger_nothing() {
        let deleted = serde_json::json!({
            "ref": "refs/heads/gone", "after": "0".repeat(40), "deleted": true,
            "repository": { "full_name": "shop/app" }
        });
        let h = headers(&[("x-gitea-event", "push")]);
        let d = parse(Provider::Gitea, &h, deleted.to_string().as_bytes()).unwrap();
        assert!(d.event.is_none());
        assert!(d.id.starts_with("sha256:"), "no delivery header: the body's digest");
        let h = headers(&[("x-github-event", "ping")]);
        let ping = serde_json::json!({ "zen": "x", "repository": { "full_name": "shop/app" } });
        assert!(parse(Provider::GitHub, &h, ping.to_string().as_bytes()).unwrap().event.is_none());
        assert!(matches!(
            parse(Provider::GitLab, &HeaderMap::new(), b"{}"),
            Err(HookError::MissingHeader(..))
        ));
    }

    #[test]
    fn a_gitlab_merge_builds_the_merge_commit() {
        let body = serde_json::json!({
            "object_kind": "merge_request",
            "user": { "username": "ada" },
            "project": { "path_with_namespace": "shop/app",
                         "git_http_url": "https://gitlab.example.com/shop/app.git" },
            "object_attributes": { "iid": 12, "action": "merge", "source_branch": "feature",
                                   "target_branch": "main", "title": "Cart",
                                   "last_commit": { "id": "c".repeat(40) },
                                   "merge_commit_sha": "d".repeat(40) }
        });
        let h = headers(&[("x-gitlab-event", "Merge Request Hook")]);
        let d = parse(Provider::GitLab, &h, body.to_string().as_bytes()).unwrap();
        let (event, source) = d.event.unwrap();
        assert_eq!(
            event,
            GitEvent::PullRequest { action: PullRequestAction::Merged, target: "main".into() }
        );
        assert_eq!(source.commit, "d".repeat(40));
        assert_eq!(source.branch.as_deref(), Some("main"));
        assert_eq!(source.pull_request.unwrap().number, 12);
    }
}
