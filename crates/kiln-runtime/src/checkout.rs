//! PreStart's first step: the workflow's `source` commit checked out into the seed directory
//! with the host's `git` (job images need no git; the executor copies the seed, `.git`
//! included, into the workspace). Used by the agent and by `kiln run` alike, through
//! [`crate::wrapper`].
//!
//! Credentials go to git only through its environment (`GIT_CONFIG_COUNT`: an
//! `http.extraHeader` with basic auth), never on its command line, in the remote URL or in
//! `.git/config`; any error text is masked before it is returned. Git never prompts and reads
//! neither the system's nor the user's configuration.

use std::path::Path;

use base64::Engine as _;
use tokio::process::Command;

/// User name sent with a token that has none (`user:token` sends its own): GitHub and Gitea
/// accept any name with a token, GitLab with a personal or project access token too.
const TOKEN_USER: &str = "x-access-token";

/// A commit to check out into a job's workspace (the workflow's `source`).
#[derive(Clone, PartialEq, Eq)]
pub struct Checkout {
    /// Clone URL (or a local path), as the workflow's `source` wrote it.
    pub repository: String,
    /// The ref (`refs/heads/main`); empty: the remote's default branch.
    pub git_ref: String,
    /// The commit; empty: whatever `git_ref` points at now.
    pub commit: String,
    /// HTTP credentials: a token, or `user:token` (never logged).
    pub credentials: Option<String>,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("repository", &self.repository)
            .field("git_ref", &self.git_ref)
            .field("commit", &self.commit)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What was checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedOut {
    /// The commit (`git rev-parse HEAD`).
    pub commit: String,
}

/// Checks out `c` into `dir` (created empty by the caller). Tries a shallow fetch of the
/// exact commit first, then the ref (servers that refuse unadvertised commits), and checks
/// that HEAD is the commit asked for.
pub async fn checkout(c: &Checkout, dir: &Path) -> Result<CheckedOut, String> {
    let git = Git { dir, credentials: c.credentials.as_deref() };
    git.run(&["init", "-q"]).await?;
    git.run(&["remote", "add", "origin", &c.repository]).await?;
    let fetched = if !c.commit.is_empty() {
        match git.run(&["fetch", "-q", "--depth=1", "origin", &c.commit]).await {
            Ok(_) => true,
            Err(_) if !c.git_ref.is_empty() => {
                git.run(&["fetch", "-q", "origin", &c.git_ref]).await?;
                false
            }
            Err(e) => return Err(e),
        }
    } else {
        let what = if c.git_ref.is_empty() { "HEAD" } else { c.git_ref.as_str() };
        git.run(&["fetch", "-q", "--depth=1", "origin", what]).await?;
        true
    };
    let target = if c.commit.is_empty() || fetched { "FETCH_HEAD" } else { c.commit.as_str() };
    git.run(&["checkout", "-q", "--detach", target]).await.map_err(|e| {
        if fetched { e } else { format!("commit {} is not on {}: {e}", c.commit, c.git_ref) }
    })?;
    let head = git.run(&["rev-parse", "HEAD"]).await?.trim().to_string();
    if !c.commit.is_empty() && !head.eq_ignore_ascii_case(&c.commit) {
        return Err(format!("checked out {head}, not the commit asked for ({})", c.commit));
    }
    Ok(CheckedOut { commit: head })
}

struct Git<'a> {
    dir: &'a Path,
    credentials: Option<&'a str>,
}

impl Git<'_> {
    /// Runs `git <args>` in the directory; stdout, or an error with git's message (masked).
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("git");
        cmd.arg("-C").arg(self.dir).args(args);
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ASKPASS", "true")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .kill_on_drop(true);
        let mut secrets = Vec::new();
        if let Some(creds) = self.credentials {
            let pair = if creds.contains(':') {
                creds.to_string()
            } else {
                format!("{TOKEN_USER}:{creds}")
            };
            let encoded = base64::engine::general_purpose::STANDARD.encode(&pair);
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env("GIT_CONFIG_VALUE_0", format!("Authorization: Basic {encoded}"));
            secrets = vec![creds.to_string(), encoded];
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("running git: {e} (is git installed on this host?)"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(s.as_str(), "***");
        }
        Err(format!("git {} failed: {text}", args.first().copied().unwrap_or_default()))
    }
}

/// A commit found in a repository on this machine, described as a git event would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCommit {
    /// The repository's top directory.
    pub toplevel: String,
    /// HEAD's commit.
    pub commit: String,
    /// The branch HEAD is on (`refs/heads/main`); empty when detached.
    pub git_ref: String,
    /// Its message (trailing blank lines trimmed).
    pub message: String,
    /// Its author, `Name <email>`.
    pub author: String,
    /// Whether the work tree has changes HEAD does not hold (they are not checked out).
    pub dirty: bool,
}

/// HEAD of the git repository that holds `dir`.
pub async fn local_head(dir: &Path) -> Result<LocalCommit, String> {
    let git = Git { dir, credentials: None };
    let toplevel = git.run(&["rev-parse", "--show-toplevel"]).await?.trim().to_string();
    let commit = git.run(&["rev-parse", "HEAD"]).await?.trim().to_string();
    let git_ref = git.run(&["symbolic-ref", "-q", "HEAD"]).await.unwrap_or_default();
    let message = git.run(&["log", "-1", "--format=%B", "HEAD"]).await?;
    let author = git.run(&["log", "-1", "--format=%an <%ae>", "HEAD"]).await?;
    let status = git.run(&["status", "--porcelain", "--untracked-files=no"]).await?;
    Ok(LocalCommit {
        toplevel,
        commit,
        git_ref: git_ref.trim().to_string(),
        message: message.trim_end().to_string(),
        author: author.trim().to_string(),
        dirty: !status.trim().is_empty(),
    })
}

/// What `git_ref` (a branch, tag or full ref; empty: the remote's HEAD) of `repository`
/// points at now: its full ref name (empty if HEAD is detached) and commit.
pub async fn remote_ref(
    repository: &str,
    git_ref: &str,
    credentials: Option<&str>,
) -> Result<(String, String), String> {
    let here = std::env::temp_dir();
    let git = Git { dir: &here, credentials };
    let what = if git_ref.is_empty() { "HEAD" } else { git_ref };
    let out = git.run(&["ls-remote", "--symref", repository, what]).await?;
    let mut symref = None;
    let mut found: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("ref: ") {
            symref = rest.split_whitespace().next().map(str::to_string);
        } else if let Some((sha, name)) = line.split_once('\t') {
            found.push((name.to_string(), sha.to_string()));
        }
    }
    // An exact full ref first, then a branch, then a tag (`git fetch`'s order).
    let pick = [what.to_string(), format!("refs/heads/{what}"), format!("refs/tags/{what}")]
        .into_iter()
        .find_map(|want| found.iter().find(|(name, _)| *name == want).cloned());
    let Some((name, mut sha)) = pick else {
        return Err(format!("{repository} has no ref `{what}`"));
    };
    // An annotated tag names a tag object; its commit is listed as `<tag>^{}`.
    let peeled = format!("{name}^{{}}");
    if let Some((_, commit)) = found.iter().find(|(n, _)| *n == peeled) {
        sha = commit.clone();
    }
    let name = match (name.as_str(), symref) {
        ("HEAD", Some(target)) => target,
        ("HEAD", None) => String::new(),
        _ => name,
    };
    Ok((name, sha))
}
