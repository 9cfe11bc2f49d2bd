//! Git: a workflow's source repository (`source:`) and the git triggers of `on:` (`push`,
//! `pull_request` alias `merge_request`): their raw form (read by `read`, in the JSON Schema),
//! their checked form (in the [`crate::plan::Plan`]), and the pure matching of a git event
//! against them. Webhook payloads are turned into a [`GitEvent`] by the server.
//!
//! Matching follows GitHub Actions: `branches`/`tags` are globs (`*` stops at `/`, `**` does
//! not); a push trigger with only `tags` ignores branch pushes and one with only `branches`
//! ignores tag pushes; `paths` (at least one changed file matches) and `paths-ignore` (not
//! every changed file matches) apply to branch pushes only, and a push whose changed files are
//! unknown passes them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::raw::Sp;

// ---------------------------------------------------------------------------------------------
// Raw (as written)

/// `on.push`: pushes to the workflow's `source` repository that start a run. Empty (`push:`
/// or `push: {}`): every branch and tag push.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPushTrigger {
    /// Branch globs (`main`, `release/**`); with only `tags` given, branch pushes start none.
    #[schemars(with = "Option<Vec<String>>")]
    pub branches: Option<Sp<Vec<Sp<String>>>>,
    /// Tag globs (`v*`); with only `branches` given, tag pushes start none.
    #[schemars(with = "Option<Vec<String>>")]
    pub tags: Option<Sp<Vec<Sp<String>>>>,
    /// Path globs: a branch push starts a run only if it changed a matching file.
    #[schemars(with = "Option<Vec<String>>")]
    pub paths: Option<Sp<Vec<Sp<String>>>>,
    /// Path globs: a branch push that changed only matching files starts none. Not with
    /// `paths`.
    #[schemars(rename = "paths-ignore", with = "Option<Vec<String>>")]
    pub paths_ignore: Option<Sp<Vec<Sp<String>>>>,
}

impl RawPushTrigger {
    /// The keys of `on.push`.
    pub const KEYS: &[&str] = &["branches", "tags", "paths", "paths-ignore"];
}

/// `on.pull_request` (alias `merge_request`): pull/merge request activity on the `source`
/// repository. Empty: `opened`, `synchronize` and `reopened` on every target branch.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawPullRequestTrigger {
    /// Globs of the target (base) branch.
    #[schemars(with = "Option<Vec<String>>")]
    pub branches: Option<Sp<Vec<Sp<String>>>>,
    /// Activity: `opened`, `synchronize` (new commits), `reopened`, `closed`, `merged`
    /// (default: opened, synchronize, reopened). A merged request is also `closed`.
    #[schemars(with = "Option<Vec<PullRequestAction>>")]
    pub types: Option<Sp<Vec<Sp<String>>>>,
}

impl RawPullRequestTrigger {
    /// The keys of `on.pull_request`.
    pub const KEYS: &[&str] = &["branches", "types"];
}

/// `source`: the git repository the workflow builds. Its pushes and pull requests start runs
/// (`on.push`, `on.pull_request`) and every job gets the commit checked out into its
/// workspace before its first step (unless `checkout: false`).
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawSource {
    /// Clone URL (`https://git.example.com/shop/app.git`, `git@git.example.com:shop/app.git`)
    /// or the provider's full name (`shop/app`).
    pub repository: Option<Sp<String>>,
    /// The project secret that holds the credentials for cloning: a token, or `user:token`.
    pub credentials: Option<Sp<String>>,
}

impl RawSource {
    /// The keys of `source`.
    pub const KEYS: &[&str] = &["repository", "credentials"];
}

/// Schema of `source`: a mapping, or the repository alone.
#[derive(JsonSchema)]
#[schemars(untagged)]
pub enum SourceSchema {
    /// Just the repository.
    Repository(String),
    /// Repository and credentials.
    Full(RawSource),
}

/// `concurrency` per group, as GitHub Actions writes it.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawConcurrencyGroup {
    /// The group of a run, such as `${{ source.branch }}`: runs of this workflow in the same
    /// group share the `limit`. May read `source.branch`, `source.tag`, `source.ref`,
    /// `source.event`, `source.repository` and `params.NAME`.
    #[schemars(with = "String")]
    pub group: Option<Sp<String>>,
    /// At most this many runs of a group at once (default 1).
    #[schemars(with = "Option<u32>")]
    pub limit: Option<Sp<u32>>,
    /// A new run cancels the unfinished older runs of its group (default false).
    #[schemars(rename = "cancel-in-progress", with = "Option<bool>")]
    pub cancel_in_progress: Option<Sp<bool>>,
}

impl RawConcurrencyGroup {
    /// The keys of `concurrency` as a mapping.
    pub const KEYS: &[&str] = &["group", "limit", "cancel-in-progress"];
}

// ---------------------------------------------------------------------------------------------
// Checked (in the plan)

/// `concurrency` per group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencyGroup {
    /// The group template (`${{ source.branch }}`).
    pub group: String,
    /// A new run cancels the older unfinished runs of its group.
    pub cancel_in_progress: bool,
}

/// The `source.*` names a concurrency group may read.
pub const GROUP_SOURCE_FIELDS: &[&str] = &["branch", "tag", "ref", "event", "repository"];

impl ConcurrencyGroup {
    /// The `${{ … }}` references of a group template (trimmed), or the unclosed rest.
    pub fn references(template: &str) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("${{") {
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else {
                return Err(format!("'{}' has no closing }}}}", &rest[start..]));
            };
            out.push(after[..end].trim().to_string());
            rest = &after[end + 2..];
        }
        Ok(out)
    }

    /// The group of a run: each reference replaced by `value(name)` (empty when none).
    pub fn render(&self, value: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        let mut rest = self.group.as_str();
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else { break };
            out.push_str(&value(after[..end].trim()).unwrap_or_default());
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// The repository a workflow builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// As written: a clone URL or `owner/name`.
    pub repository: String,
    /// Name of the project secret holding clone credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

impl Source {
    /// Whether a repository known by these clone URLs and full name is this source: URLs are
    /// compared by host and path (scheme, user, port and `.git` ignored, host in any case);
    /// a source written as `owner/name` matches the full name. A `file://` URL (no host)
    /// is compared as a URL too.
    pub fn is_repository(&self, urls: &[&str], full_name: &str) -> bool {
        let mine = repository_key(&self.repository);
        if mine.host.is_empty() && !self.repository.contains("://") {
            return !full_name.is_empty()
                && mine.path.eq_ignore_ascii_case(full_name.trim_matches('/'));
        }
        urls.iter().map(|u| repository_key(u)).any(|k| k == mine)
    }
}

/// A repository reference reduced to what identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryKey {
    /// Host, lower case; empty for `owner/name`.
    pub host: String,
    /// Path without leading or trailing `/` and without `.git`.
    pub path: String,
}

/// Reduces a clone URL (`https://u@host:3000/a/b.git`, `ssh://git@host:22/a/b`,
/// `git@host:a/b.git`) or a full name (`a/b`) to its host and path.
pub fn repository_key(text: &str) -> RepositoryKey {
    let text = text.trim();
    let (host_part, path) = if let Some((_, rest)) = text.split_once("://") {
        rest.split_once('/').unwrap_or((rest, ""))
    } else if let Some((before, after)) = text.split_once(':')
        && !before.contains('/')
    {
        // scp-like `user@host:path`
        (before, after)
    } else {
        ("", text)
    };
    let host = host_part.rsplit_once('@').map_or(host_part, |(_, h)| h);
    let host = host.split_once(':').map_or(host, |(h, _)| h).to_ascii_lowercase();
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_end_matches('/');
    RepositoryKey { host, path: path.to_string() }
}

/// A push trigger, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTrigger {
    /// Branch globs (`None`: not given).
    pub branches: Option<Vec<String>>,
    /// Tag globs (`None`: not given).
    pub tags: Option<Vec<String>>,
    /// Path globs, one must match a changed file (empty: no filter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Path globs, a push changing only these starts nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths_ignore: Vec<String>,
}

/// A pull request trigger, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestTrigger {
    /// Target branch globs (empty: any).
    pub branches: Vec<String>,
    /// Activity that starts a run.
    pub types: Vec<PullRequestAction>,
}

/// Pull/merge request activity, as GitHub names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PullRequestAction {
    /// Opened (GitLab `open`).
    Opened,
    /// New commits on the source branch (GitLab `update`, Gitea `synchronized`).
    Synchronize,
    /// Reopened.
    Reopened,
    /// Closed, merged or not.
    Closed,
    /// Merged (also counts as `closed`).
    Merged,
}

impl PullRequestAction {
    /// The names, as written.
    pub const NAMES: &[&str] = &["opened", "synchronize", "reopened", "closed", "merged"];
    /// The default `types`.
    pub const DEFAULT: &[PullRequestAction] =
        &[PullRequestAction::Opened, PullRequestAction::Synchronize, PullRequestAction::Reopened];

    /// The action of a name.
    pub fn from_name(name: &str) -> Option<PullRequestAction> {
        let all = [Self::Opened, Self::Synchronize, Self::Reopened, Self::Closed, Self::Merged];
        Self::NAMES.iter().position(|n| *n == name).map(|i| all[i])
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::Synchronize => "synchronize",
            Self::Reopened => "reopened",
            Self::Closed => "closed",
            Self::Merged => "merged",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events and matching

/// A git ref, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    /// `refs/heads/<name>`.
    Branch(String),
    /// `refs/tags/<name>`.
    Tag(String),
    /// Anything else, as written.
    Other(String),
}

impl GitRef {
    /// Classifies a full ref name.
    pub fn parse(full: &str) -> GitRef {
        if let Some(b) = full.strip_prefix("refs/heads/") {
            GitRef::Branch(b.to_string())
        } else if let Some(t) = full.strip_prefix("refs/tags/") {
            GitRef::Tag(t.to_string())
        } else {
            GitRef::Other(full.to_string())
        }
    }
}

/// What happened in a repository, as far as triggers care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitEvent {
    /// A push of a ref (not a deletion).
    Push {
        /// The pushed ref.
        git_ref: GitRef,
        /// Files the push changed, when the provider said (`None`: unknown, paths pass).
        changed: Option<Vec<String>>,
    },
    /// Pull/merge request activity.
    PullRequest {
        /// What happened.
        action: PullRequestAction,
        /// The target branch.
        target: String,
    },
}

fn glob_match(pattern: &str, text: &str) -> bool {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .is_ok_and(|g| g.compile_matcher().is_match(text))
}

fn any_glob(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

impl PushTrigger {
    /// Whether a push of `git_ref` that changed `changed` (if known) starts a run.
    pub fn matches(&self, git_ref: &GitRef, changed: Option<&[String]>) -> bool {
        match git_ref {
            GitRef::Branch(b) => {
                let branch_ok = match (&self.branches, &self.tags) {
                    (None, Some(_)) => false,
                    (None, None) => true,
                    (Some(globs), _) => any_glob(globs, b),
                };
                branch_ok && self.paths_match(changed)
            }
            GitRef::Tag(t) => match (&self.branches, &self.tags) {
                (Some(_), None) => false,
                (None, None) => true,
                (_, Some(globs)) => any_glob(globs, t),
            },
            GitRef::Other(_) => false,
        }
    }

    fn paths_match(&self, changed: Option<&[String]>) -> bool {
        let Some(changed) = changed else { return true };
        if !self.paths.is_empty() && !changed.iter().any(|f| any_glob(&self.paths, f)) {
            return false;
        }
        if !self.paths_ignore.is_empty()
            && !changed.is_empty()
            && changed.iter().all(|f| any_glob(&self.paths_ignore, f))
        {
            return false;
        }
        true
    }
}

impl PullRequestTrigger {
    /// Whether this activity on a request into `target` starts a run.
    pub fn matches(&self, action: PullRequestAction, target: &str) -> bool {
        let wanted = self.types.contains(&action)
            || (action == PullRequestAction::Merged
                && self.types.contains(&PullRequestAction::Closed));
        wanted && (self.branches.is_empty() || any_glob(&self.branches, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_forms_reduce_to_host_and_path() {
        let key = |s| {
            let k = repository_key(s);
            format!("{}|{}", k.host, k.path)
        };
        assert_eq!(key("https://Git.Example.com/shop/app.git"), "git.example.com|shop/app");
        assert_eq!(
            key("http://kiln:secret@git.example.com:3000/shop/app/"),
            "git.example.com|shop/app"
        );
        assert_eq!(key("ssh://git@git.example.com:2222/shop/app.git"), "git.example.com|shop/app");
        assert_eq!(key("git@git.example.com:shop/app.git"), "git.example.com|shop/app");
        assert_eq!(key("shop/app"), "|shop/app");
    }

    #[test]
    fn a_source_matches_its_repository_in_any_form() {
        let s =
            Source { repository: "https://git.example.com/shop/app.git".into(), credentials: None };
        assert!(s.is_repository(&["git@git.example.com:shop/app.git"], "shop/app"));
        assert!(!s.is_repository(&["https://git.example.com/shop/api.git"], "shop/api"));
        assert!(!s.is_repository(&["https://other.example.com/shop/app.git"], "shop/app"));
        let short = Source { repository: "Shop/App".into(), credentials: None };
        assert!(short.is_repository(&["https://anything/x.git"], "shop/app"));
        assert!(!short.is_repository(&["https://git.example.com/shop/app.git"], ""));
        let local = Source { repository: "file:///srv/git/app.git".into(), credentials: None };
        assert!(local.is_repository(&["file:///srv/git/app"], "shop/app"));
        assert!(!local.is_repository(&["file:///srv/git/api.git"], "srv/git/app"));
    }

    #[test]
    fn push_filters_follow_github_actions() {
        let branch = |b: &str| GitRef::Branch(b.into());
        let tag = |t: &str| GitRef::Tag(t.into());
        let all = PushTrigger::default();
        assert!(all.matches(&branch("any/thing"), None));
        assert!(all.matches(&tag("v1"), None));
        assert!(!all.matches(&GitRef::Other("refs/notes/x".into()), None));

        let main = PushTrigger {
            branches: Some(vec!["main".into(), "release/*".into()]),
            ..Default::default()
        };
        assert!(main.matches(&branch("main"), None));
        assert!(main.matches(&branch("release/1.0"), None));
        assert!(!main.matches(&branch("release/1.0/hotfix"), None), "* stops at /");
        assert!(!main.matches(&tag("v1"), None), "only branches given: tags start nothing");

        let tags = PushTrigger { tags: Some(vec!["v*".into()]), ..Default::default() };
        assert!(tags.matches(&tag("v1.2"), None));
        assert!(!tags.matches(&tag("nightly"), None));
        assert!(!tags.matches(&branch("main"), None), "only tags given: branches start nothing");

        let paths = PushTrigger { paths: vec!["src/**".into()], ..Default::default() };
        let changed = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(paths.matches(&branch("main"), Some(&changed(&["README.md", "src/a/b.rs"]))));
        assert!(!paths.matches(&branch("main"), Some(&changed(&["README.md"]))));
        assert!(paths.matches(&branch("main"), None), "unknown changes pass");
        assert!(paths.matches(&tag("v1"), Some(&changed(&["README.md"]))), "tags ignore paths");

        let ignore = PushTrigger { paths_ignore: vec!["docs/**".into()], ..Default::default() };
        assert!(!ignore.matches(&branch("main"), Some(&changed(&["docs/a.md"]))));
        assert!(ignore.matches(&branch("main"), Some(&changed(&["docs/a.md", "main.go"]))));
    }

    #[test]
    fn pull_request_types_and_target_branches() {
        let t = PullRequestTrigger {
            branches: vec!["main".into()],
            types: PullRequestAction::DEFAULT.to_vec(),
        };
        assert!(t.matches(PullRequestAction::Opened, "main"));
        assert!(t.matches(PullRequestAction::Synchronize, "main"));
        assert!(!t.matches(PullRequestAction::Opened, "dev"));
        assert!(!t.matches(PullRequestAction::Merged, "main"));
        let closed =
            PullRequestTrigger { branches: vec![], types: vec![PullRequestAction::Closed] };
        assert!(closed.matches(PullRequestAction::Merged, "x"), "a merge is also a close");
        let merged =
            PullRequestTrigger { branches: vec![], types: vec![PullRequestAction::Merged] };
        assert!(!merged.matches(PullRequestAction::Closed, "x"));
    }
}
