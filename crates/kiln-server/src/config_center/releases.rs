//! Releases of an application in an environment: release (to everyone or gray), roll back,
//! approve, reject, release a gray release to all, and the history. Each reads the head,
//! asks `kiln_config::release::decide`, stores the outcome only if the head did not move
//! (else reads and decides again), then publishes the new head to the hub.

use std::collections::BTreeSet;

use kiln_api::config::{
    ConfigRelease, ConfigReleaseDetail, ReleaseOutcome, ReleaseRequest, RollbackRequest,
};
use kiln_config::release::{Ask, Gray, Head as PureHead, Outcome, Ref, Refusal, Waiting, decide};
use kiln_store::{
    ConfigDecided, ConfigDecision, ConfigHead, ConfigReleaseRecord, ConfigSnapshot, ConfigTarget,
    NewConfigRelease, StoreError,
};

use super::ConfigCenter;
use crate::error::{ApiErr, ApiResult};

/// How often a decision is taken again when another change moved the head first.
const ATTEMPTS: usize = 5;

/// The most instances a gray release may name.
const MAX_GRAY: usize = 1000;

/// A try that stored its outcome, or found the head moved.
enum Step<T> {
    Done(T),
    Moved,
}

/// A store call whose `Moved` means "decide again".
fn step<T>(r: Result<T, StoreError>) -> ApiResult<Step<T>> {
    match r {
        Ok(v) => Ok(Step::Done(v)),
        Err(StoreError::Moved(_)) => Ok(Step::Moved),
        Err(e) => Err(e.into()),
    }
}

fn refused(r: Refusal) -> ApiErr {
    ApiErr::conflict(r.to_string())
}

/// The head as `kiln_config` decides on it.
fn pure(h: &ConfigHead) -> PureHead {
    let r = |r: &ConfigReleaseRecord| Ref { number: r.number, digest: r.digest.clone() };
    PureHead {
        current: h.current.as_ref().map(r),
        gray: h
            .gray
            .as_ref()
            .map(|g| Gray { release: r(g), instances: g.instances.iter().cloned().collect() }),
        pending: h
            .pending
            .as_ref()
            .map(|p| Waiting { number: p.number, requested_by: p.requested_by.clone() }),
    }
}

/// The API form of a release, with whether it is the head's current or gray one.
pub(crate) fn release_dto(r: &ConfigReleaseRecord, t: &ConfigTarget) -> ConfigRelease {
    ConfigRelease {
        number: r.number,
        state: r.state.clone(),
        kind: r.kind.clone(),
        rollback_of: r.rollback_of,
        instances: r.instances.clone(),
        current: t.current == Some(r.number),
        gray: t.gray == Some(r.number),
        digest: r.digest.clone(),
        files: r.files.keys().cloned().collect(),
        note: r.note.clone(),
        requested_by: r.requested_by.clone(),
        requested_at: r.requested_at,
        decided_by: r.decided_by.clone(),
        decided_at: r.decided_at,
        promoted_by: r.promoted_by.clone(),
        promoted_at: r.promoted_at,
    }
}

/// The gray release's instances as asked: trimmed, none empty, each once.
fn instances(asked: &[String]) -> ApiResult<BTreeSet<String>> {
    let set: BTreeSet<String> = asked.iter().map(|i| i.trim().to_string()).collect();
    if set.contains("") {
        return Err(ApiErr::bad_request("an instance of a gray release needs a name"));
    }
    if set.len() > MAX_GRAY {
        return Err(ApiErr::bad_request(format!(
            "a gray release names at most {MAX_GRAY} instances; release to everyone instead"
        )));
    }
    Ok(set)
}

impl ConfigCenter {
    /// Releases the draft of `app` in `env` (to everyone, or gray to `req.instances`), or the
    /// gray release to everyone (`req.all`).
    pub async fn release(
        &self,
        project: &str,
        app: &str,
        env: &str,
        req: &ReleaseRequest,
        by: &str,
    ) -> ApiResult<ReleaseOutcome> {
        if req.all && !req.instances.is_empty() {
            return Err(ApiErr::bad_request(
                "`all` releases the gray release that is out to everyone: it takes no instances",
            ));
        }
        let gray = instances(&req.instances)?;
        for _ in 0..ATTEMPTS {
            let head = self.store.config_head(project, app, env).await?;
            let step = if req.all {
                self.try_promote(&head, by).await?
            } else {
                self.try_release(&head, &gray, req.note.clone(), by).await?
            };
            if let Step::Done(outcome) = step {
                return Ok(outcome);
            }
        }
        Err(moved(app, env))
    }

    async fn try_promote(&self, head: &ConfigHead, by: &str) -> ApiResult<Step<ReleaseOutcome>> {
        let (project, app, env) = names(head);
        let Outcome::Promote { number } =
            decide(&pure(head), head.environment.protected, &Ask::Promote).map_err(refused)?
        else {
            return Err(ApiErr::internal("a promotion decided something else"));
        };
        let stored = self
            .store
            .decide_config_release(
                project,
                app,
                env,
                head.target.revision,
                &ConfigDecided { number, decision: ConfigDecision::Promote, by },
            )
            .await;
        let Step::Done(r) = step(stored)? else { return Ok(Step::Moved) };
        let target = self.refresh(project, app, env).await?;
        let message = format!(
            "release {number} of `{app}` in `{env}`: everyone gets it now (it was gray for {})",
            r.instances.join(", ")
        );
        Ok(Step::Done(ReleaseOutcome {
            outcome: "promoted".into(),
            message,
            release: release_dto(&r, &target),
        }))
    }

    async fn try_release(
        &self,
        head: &ConfigHead,
        gray: &BTreeSet<String>,
        note: Option<String>,
        by: &str,
    ) -> ApiResult<Step<ReleaseOutcome>> {
        let env = &head.environment.name;
        let draft = self.draft(&head.app, env).await?;
        let rendered = self.render_draft(&head.app, env, &draft)?;
        let ask = Ask::Release { digest: &rendered.digest, instances: gray };
        let outcome = decide(&pure(head), head.environment.protected, &ask).map_err(refused)?;
        let new = NewConfigRelease {
            pending: false,
            kind: "release".into(),
            rollback_of: None,
            instances: gray.iter().cloned().collect(),
            digest: rendered.digest.clone(),
            files: rendered.files,
            snapshot: ConfigSnapshot {
                templates: draft.templates,
                shared_values: draft.shared,
                values: draft.values,
            },
            note,
            by: by.to_string(),
        };
        self.record(head, outcome, new).await
    }

    /// Releases release `req.to`'s files again, in a new release.
    pub async fn rollback(
        &self,
        project: &str,
        app: &str,
        env: &str,
        req: &RollbackRequest,
        by: &str,
    ) -> ApiResult<ReleaseOutcome> {
        self.roll_back(project, app, env, req, by, true).await
    }

    /// A rollback that a deploy rollback makes: released at once even on a protected
    /// environment (it returns to the release a deployment approved there ran with). Still
    /// refused while another release waits for approval.
    pub(crate) async fn rollback_for_deploy(
        &self,
        project: &str,
        app: &str,
        env: &str,
        req: &RollbackRequest,
        by: &str,
    ) -> ApiResult<ReleaseOutcome> {
        self.roll_back(project, app, env, req, by, false).await
    }

    /// The number of the release everyone gets of `app` in `env` (none before the first).
    /// `NotFound` for an unknown project, application or environment.
    pub(crate) async fn current_release(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> ApiResult<Option<u32>> {
        Ok(self.store.config_head(project, app, env).await?.target.current)
    }

    async fn roll_back(
        &self,
        project: &str,
        app: &str,
        env: &str,
        req: &RollbackRequest,
        by: &str,
        gated: bool,
    ) -> ApiResult<ReleaseOutcome> {
        let source = self.store.config_release(project, app, env, req.to).await?;
        if source.state != "released" {
            return Err(ApiErr::conflict(format!(
                "release {} of `{app}` in `{env}` was {}, never released: roll back to a released one (`kiln config history`)",
                req.to, source.state
            )));
        }
        for _ in 0..ATTEMPTS {
            let head = self.store.config_head(project, app, env).await?;
            let to = Ref { number: source.number, digest: source.digest.clone() };
            let protected = head.environment.protected && gated;
            let outcome =
                decide(&pure(&head), protected, &Ask::Rollback { to: &to }).map_err(refused)?;
            let new = NewConfigRelease {
                pending: false,
                kind: "rollback".into(),
                rollback_of: Some(source.number),
                instances: Vec::new(),
                digest: source.digest.clone(),
                files: source.files.clone(),
                snapshot: source.snapshot.clone(),
                note: req.note.clone(),
                by: by.to_string(),
            };
            if let Step::Done(outcome) = self.record(&head, outcome, new).await? {
                return Ok(outcome);
            }
        }
        Err(moved(app, env))
    }

    /// Stores a decided release (or says why nothing was) and publishes the head.
    async fn record(
        &self,
        head: &ConfigHead,
        outcome: Outcome,
        mut new: NewConfigRelease,
    ) -> ApiResult<Step<ReleaseOutcome>> {
        let (project, app, env) = names(head);
        let (pending, gray) = match outcome {
            Outcome::Unchanged { number } => {
                let r = self.store.config_release(project, app, env, number).await?;
                let message = format!(
                    "nothing to release: `{app}` in `{env}` already gets these files from release {number}"
                );
                let release = release_dto(&r, &head.target);
                return Ok(Step::Done(ReleaseOutcome {
                    outcome: "unchanged".into(),
                    message,
                    release,
                }));
            }
            Outcome::Record { pending, gray } => (pending, gray),
            other => return Err(ApiErr::internal(format!("a release decided {other:?}"))),
        };
        new.pending = pending;
        let stored =
            self.store.add_config_release(project, app, env, head.target.revision, &new).await;
        let Step::Done(r) = step(stored)? else { return Ok(Step::Moved) };
        let target = self.refresh(project, app, env).await?;
        let n = r.number;
        let (outcome, message) = if pending {
            (
                "pending",
                format!(
                    "release {n} of `{app}` in `{env}` waits for approval by someone other than {} \
                 (`kiln config approve {app} --env {env} {n}`)",
                    r.requested_by
                ),
            )
        } else if gray {
            (
                "gray",
                format!(
                    "gray release {n} of `{app}` in `{env}`: {} {} it, the others keep release {}",
                    r.instances.join(", "),
                    gets(&r.instances),
                    target.current.map_or_else(|| "-".into(), |c| c.to_string())
                ),
            )
        } else {
            (
                "released",
                format!("release {n} of `{app}` in `{env}`: everyone gets it ({})", r.digest),
            )
        };
        Ok(Step::Done(ReleaseOutcome {
            outcome: outcome.into(),
            message,
            release: release_dto(&r, &target),
        }))
    }

    /// Approves (a second person) or rejects the waiting release `number`.
    pub async fn decide(
        &self,
        project: &str,
        app: &str,
        env: &str,
        number: u32,
        approve: bool,
        by: &str,
    ) -> ApiResult<ReleaseOutcome> {
        for _ in 0..ATTEMPTS {
            let head = self.store.config_head(project, app, env).await?;
            let ask = if approve { Ask::Approve { number, by } } else { Ask::Reject { number } };
            decide(&pure(&head), head.environment.protected, &ask).map_err(refused)?;
            let decision = if approve { ConfigDecision::Approve } else { ConfigDecision::Reject };
            let stored = self
                .store
                .decide_config_release(
                    project,
                    app,
                    env,
                    head.target.revision,
                    &ConfigDecided { number, decision, by },
                )
                .await;
            let Step::Done(r) = step(stored)? else { continue };
            let target = self.refresh(project, app, env).await?;
            let (outcome, message) = match (approve, r.instances.is_empty()) {
                (true, true) => (
                    "released",
                    format!(
                        "release {number} of `{app}` in `{env}` approved by {by}: everyone gets it"
                    ),
                ),
                (true, false) => (
                    "gray",
                    format!(
                        "release {number} of `{app}` in `{env}` approved by {by}: {} {} it",
                        r.instances.join(", "),
                        gets(&r.instances)
                    ),
                ),
                (false, _) => (
                    "rejected",
                    format!(
                        "release {number} of `{app}` in `{env}` rejected by {by}; release {} stays",
                        target.current.map_or_else(|| "-".into(), |c| c.to_string())
                    ),
                ),
            };
            return Ok(ReleaseOutcome {
                outcome: outcome.into(),
                message,
                release: release_dto(&r, &target),
            });
        }
        Err(moved(app, env))
    }

    /// Every release of `app` in `env`, oldest first.
    pub async fn history(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> ApiResult<Vec<ConfigRelease>> {
        let head = self.store.config_head(project, app, env).await?;
        let list = self.store.config_releases(project, app, env).await?;
        Ok(list.iter().map(|r| release_dto(r, &head.target)).collect())
    }

    /// Release `number` with its files and what they were rendered from.
    pub async fn release_detail(
        &self,
        project: &str,
        app: &str,
        env: &str,
        number: u32,
    ) -> ApiResult<ConfigReleaseDetail> {
        let head = self.store.config_head(project, app, env).await?;
        let r = self.store.config_release(project, app, env, number).await?;
        Ok(ConfigReleaseDetail {
            release: release_dto(&r, &head.target),
            files: r.files,
            templates: r.snapshot.templates,
            shared_values: r.snapshot.shared_values,
            values: r.snapshot.values,
        })
    }

    /// Publishes the stored head of `app` in `env` and returns it.
    async fn refresh(&self, project: &str, app: &str, env: &str) -> ApiResult<ConfigTarget> {
        Ok(self.publish(project, app, env).await?.0)
    }
}

/// `gets` after one instance, `get` after several.
fn gets(instances: &[String]) -> &'static str {
    if instances.len() == 1 { "gets" } else { "get" }
}

fn names(h: &ConfigHead) -> (&str, &str, &str) {
    (&h.app.project, &h.app.name, &h.environment.name)
}

fn moved(app: &str, env: &str) -> ApiErr {
    ApiErr::conflict(format!(
        "the config of `{app}` in `{env}` kept changing while this was decided; try again"
    ))
}
