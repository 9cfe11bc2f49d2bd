//! The `KILN_*` variables every job of a run gets, built in one place so that a job sees the
//! same names wherever it runs (`kiln run` on a laptop, an agent of the server). Pure: the
//! caller gathers the facts (the run's id and number, its commit) and adds what only it has
//! (secrets, `KILN_REGISTRY`, host ports).

use std::collections::BTreeMap;

use crate::git::GitRef;

/// What identifies a run, for its jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFacts<'a> {
    /// The run's id (`KILN_RUN_ID`).
    pub run_id: &'a str,
    /// Its number in its pipeline (`KILN_RUN_NUMBER`).
    pub number: u64,
    /// The project (`KILN_PROJECT`).
    pub project: &'a str,
    /// The pipeline (`KILN_PIPELINE`).
    pub pipeline: &'a str,
    /// Who or what started it (`KILN_TRIGGERED_BY`).
    pub triggered_by: &'a str,
}

/// The commit a run builds (`source:`), for its jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitFacts {
    /// The repository (`owner/name` as the provider names it; a path or URL locally).
    pub repository: String,
    /// The full ref (`refs/heads/main`); may be empty (a detached HEAD).
    pub git_ref: String,
    /// The commit (40 hex digits).
    pub commit: String,
    /// Its message.
    pub message: String,
    /// Its author (`Name <email>`).
    pub author: String,
    /// `push` or `pull_request`; empty when no git event started the run.
    pub event: String,
    /// The branch (a pull request's source branch).
    pub branch: Option<String>,
    /// The tag.
    pub tag: Option<String>,
    /// Pull/merge request number and target branch.
    pub pull_request: Option<(u64, String)>,
}

/// The run's variables: `KILN_RUN_ID`, `KILN_RUN_NUMBER`, `KILN_PROJECT`, `KILN_PIPELINE`,
/// `KILN_TRIGGERED_BY`, and with a commit `KILN_REPOSITORY`, `KILN_REF`, `KILN_COMMIT_SHA`,
/// `KILN_COMMIT_MESSAGE`, `KILN_COMMIT_AUTHOR`, `KILN_EVENT` (when not empty), `KILN_BRANCH`,
/// `KILN_TAG`, `KILN_PULL_REQUEST` and `KILN_TARGET_BRANCH` (when known).
pub fn run_env(run: &RunFacts<'_>, commit: Option<&CommitFacts>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_string(), v.to_string());
    };
    set("KILN_RUN_ID", run.run_id);
    set("KILN_RUN_NUMBER", &run.number.to_string());
    set("KILN_PROJECT", run.project);
    set("KILN_PIPELINE", run.pipeline);
    set("KILN_TRIGGERED_BY", run.triggered_by);
    if let Some(c) = commit {
        set("KILN_REPOSITORY", &c.repository);
        set("KILN_REF", &c.git_ref);
        set("KILN_COMMIT_SHA", &c.commit);
        set("KILN_COMMIT_MESSAGE", &c.message);
        set("KILN_COMMIT_AUTHOR", &c.author);
        if !c.event.is_empty() {
            set("KILN_EVENT", &c.event);
        }
        if let Some(b) = &c.branch {
            set("KILN_BRANCH", b);
        }
        if let Some(t) = &c.tag {
            set("KILN_TAG", t);
        }
        if let Some((number, target)) = &c.pull_request {
            set("KILN_PULL_REQUEST", &number.to_string());
            set("KILN_TARGET_BRANCH", target);
        }
    }
    env
}

impl CommitFacts {
    /// `branch` and `tag` read from `git_ref` (`refs/heads/…`, `refs/tags/…`), for a commit
    /// no provider described.
    pub fn with_names_from_ref(mut self) -> CommitFacts {
        match GitRef::parse(&self.git_ref) {
            GitRef::Branch(b) => self.branch = Some(b),
            GitRef::Tag(t) => self.tag = Some(t),
            GitRef::Other(_) => {}
        }
        self
    }
}

/// One attempt's variables: `KILN_JOB` and `KILN_ATTEMPT`.
pub fn attempt_env(job: &str, attempt: u32) -> [(String, String); 2] {
    [("KILN_JOB".to_string(), job.to_string()), ("KILN_ATTEMPT".to_string(), attempt.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_run_of_a_branch_names_it() {
        let run = RunFacts {
            run_id: "0190",
            number: 1,
            project: "local",
            pipeline: "app",
            triggered_by: "local",
        };
        let commit = CommitFacts {
            repository: "/src/app".into(),
            git_ref: "refs/heads/main".into(),
            commit: "ab".repeat(20),
            message: "Fix it".into(),
            author: "Ada <ada@example.com>".into(),
            ..CommitFacts::default()
        }
        .with_names_from_ref();
        let env = run_env(&run, Some(&commit));
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let sha = "ab".repeat(20);
        assert_eq!(
            got,
            [
                ("KILN_BRANCH", "main"),
                ("KILN_COMMIT_AUTHOR", "Ada <ada@example.com>"),
                ("KILN_COMMIT_MESSAGE", "Fix it"),
                ("KILN_COMMIT_SHA", sha.as_str()),
                ("KILN_PIPELINE", "app"),
                ("KILN_PROJECT", "local"),
                ("KILN_REF", "refs/heads/main"),
                ("KILN_REPOSITORY", "/src/app"),
                ("KILN_RUN_ID", "0190"),
                ("KILN_RUN_NUMBER", "1"),
                ("KILN_TRIGGERED_BY", "local"),
            ]
        );
        let tag = CommitFacts { git_ref: "refs/tags/v1".into(), branch: None, ..commit }
            .with_names_from_ref();
        let env = run_env(&run, Some(&tag));
        assert_eq!(env.get("KILN_TAG").map(String::as_str), Some("v1"));
        assert!(!env.contains_key("KILN_BRANCH"));
        assert_eq!(run_env(&run, None).len(), 5);
    }
}
