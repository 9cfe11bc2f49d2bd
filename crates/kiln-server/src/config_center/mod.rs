//! The config center's part of the server: editing an application's items and values
//! (checked with `kiln-config` before anything is stored), renders and diffs, releases
//! (`releases.rs`) and their delivery to consumers (`hub.rs`). What a template renders to and
//! what a release does are decided by the pure `kiln-config`; this module reads and writes
//! the store around those decisions and publishes heads to the hub.

use std::sync::Arc;

use axum::http::StatusCode;
use kiln_api::Diagnostic;
use kiln_api::config::{
    AuditEntry, ConfigApp, ConfigAppSummary, ConfigDiff, ConfigItem, DeliveredConfig, EditResult,
    EnvValues, FileDiff, Rendered,
};
use kiln_config::{Files, Limits, Meta, Problem};
use kiln_store::{ConfigAppRecord, ConfigReleaseRecord, ConfigTarget, Store};
use tokio::sync::watch;

use crate::error::{ApiErr, ApiResult};

pub mod hub;
mod releases;

pub use hub::{Head, Hub, Served};

/// The config center: the store and the delivery hub.
#[derive(Debug, Clone)]
pub struct ConfigCenter {
    store: Store,
    hub: Arc<Hub>,
    limits: Limits,
}

/// What a diff compares the draft of an environment with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiffOf {
    /// The draft with the environment's current release.
    Current,
    /// The environment's draft with another environment's draft.
    Environment(String),
    /// Two releases of the environment.
    Releases(u32, u32),
}

/// The values file names diagnostics give.
fn values_label(env: Option<&str>) -> String {
    match env {
        None => "values/shared.yml".into(),
        Some(e) => format!("values/{e}.yml"),
    }
}

/// A problem as an API diagnostic.
fn diagnostic(p: &Problem) -> Diagnostic {
    Diagnostic {
        severity: "error".into(),
        file: p.file.clone(),
        line: p.line,
        column: p.column,
        message: p.message.clone(),
    }
}

/// 422 `invalid_config` listing every problem, for an edit (nothing was stored).
fn invalid(what: &str, problems: &[Problem]) -> ApiErr {
    invalid_as(what, problems, ", nothing was stored")
}

/// 422 `invalid_config` listing every problem; `outcome` says what did not happen.
fn invalid_as(what: &str, problems: &[Problem], outcome: &str) -> ApiErr {
    let first = problems.first().map(ToString::to_string).unwrap_or_default();
    let mut e = ApiErr::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        kiln_api::codes::INVALID_CONFIG,
        format!("{what} has {} error(s){outcome}; the first: {first}", problems.len()),
    );
    e.diagnostics = problems.iter().map(diagnostic).collect();
    e
}

/// Reads a values file, refusing the reserved `kiln`.
fn values(label: &str, yaml: &str) -> Result<serde_json::Value, Problem> {
    let v = kiln_config::parse_values(label, yaml)?;
    if v.get("kiln").is_some() {
        return Err(Problem {
            file: label.to_string(),
            line: 1,
            column: 1,
            message: "`kiln` is reserved (templates read `kiln.project`, `kiln.app` and \
                      `kiln.environment`): name the value otherwise"
                .into(),
        });
    }
    Ok(v)
}

/// What a draft is rendered from.
pub(crate) struct Draft {
    templates: Files,
    shared: String,
    values: String,
}

impl ConfigCenter {
    /// The config center of a server.
    pub fn new(store: Store) -> ConfigCenter {
        ConfigCenter { store, hub: Arc::default(), limits: Limits::default() }
    }

    /// The applications with config in `project`.
    pub async fn apps(&self, project: &str) -> ApiResult<Vec<ConfigAppSummary>> {
        let mut out = Vec::new();
        for a in self.store.config_apps(project).await? {
            let files = self.store.config_items(&a.id).await?.into_iter().map(|i| i.file);
            let envs = self.store.config_values(&a.id).await?.into_iter().map(|v| v.environment);
            out.push(ConfigAppSummary {
                project: a.project,
                name: a.name,
                files: files.collect(),
                environments: envs.collect(),
                updated_at: a.updated_at,
            });
        }
        Ok(out)
    }

    /// An application's items and values.
    pub async fn app(&self, project: &str, app: &str) -> ApiResult<ConfigApp> {
        let a = self.store.config_app(project, app).await?;
        let items = self.store.config_items(&a.id).await?;
        let values = self.store.config_values(&a.id).await?;
        Ok(ConfigApp {
            project: a.project,
            name: a.name,
            items: items
                .into_iter()
                .map(|i| ConfigItem {
                    file: i.file,
                    template: i.template,
                    updated_by: i.updated_by,
                    updated_at: i.updated_at,
                })
                .collect(),
            shared_values: a.shared_values,
            values: values
                .into_iter()
                .map(|v| EnvValues {
                    environment: v.environment,
                    yaml: v.yaml,
                    updated_by: v.updated_by,
                    updated_at: v.updated_at,
                })
                .collect(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        })
    }

    /// Sets the template of item `file` (its name and syntax checked first).
    pub async fn set_template(
        &self,
        project: &str,
        app: &str,
        file: &str,
        template: &str,
        by: &str,
    ) -> ApiResult<EditResult> {
        kiln_config::check_file_name(file).map_err(ApiErr::bad_request)?;
        kiln_config::check_template(file, template)
            .map_err(|p| invalid(&format!("template `{file}`"), &[p]))?;
        let changed = self.store.set_config_item(project, app, file, template, by).await?;
        Ok(edit(changed))
    }

    /// Removes item `file`.
    pub async fn remove_template(
        &self,
        project: &str,
        app: &str,
        file: &str,
        by: &str,
    ) -> ApiResult<()> {
        Ok(self.store.delete_config_item(project, app, file, by).await?)
    }

    /// Sets the shared values, or environment `env`'s (a YAML map, read first; `file` names
    /// it in diagnostics).
    pub async fn set_values(
        &self,
        project: &str,
        app: &str,
        env: Option<&str>,
        yaml: &str,
        file: Option<&str>,
        by: &str,
    ) -> ApiResult<EditResult> {
        let label = file.map_or_else(|| values_label(env), str::to_string);
        values(&label, yaml).map_err(|p| invalid(&label, &[p]))?;
        let changed = self.store.set_config_values(project, app, env, yaml, by).await?;
        Ok(edit(changed))
    }

    /// What the draft of `app` in `env` is rendered from: its items, the shared values and
    /// the environment's (the environment must exist).
    pub(crate) async fn draft(&self, a: &ConfigAppRecord, env: &str) -> ApiResult<Draft> {
        self.store.environment(&a.project, env).await?;
        let templates: Files = self
            .store
            .config_items(&a.id)
            .await?
            .into_iter()
            .map(|i| (i.file, i.template))
            .collect();
        let values = self
            .store
            .config_values(&a.id)
            .await?
            .into_iter()
            .find(|v| v.environment == env)
            .map(|v| v.yaml)
            .unwrap_or_default();
        Ok(Draft { templates, shared: a.shared_values.clone(), values })
    }

    /// Renders a draft (or a release's snapshot) of `app` in `env`; every problem found is a
    /// 422 with positions, its message saying what did not happen (`outcome`, such as
    /// `, nothing was released`; empty for a preview).
    pub(crate) fn render_draft(
        &self,
        a: &ConfigAppRecord,
        env: &str,
        d: &Draft,
        outcome: &str,
    ) -> ApiResult<kiln_config::Rendered> {
        let what = format!("the config of `{}` in `{env}`", a.name);
        if d.templates.is_empty() {
            return Err(ApiErr::conflict(format!(
                "`{}` has no config items yet: add one with `kiln config set-template`",
                a.name
            )));
        }
        let shared = values(&values_label(None), &d.shared);
        let over = values(&values_label(Some(env)), &d.values);
        let (shared, over) = match (shared, over) {
            (Ok(s), Ok(o)) => (s, o),
            (s, o) => {
                let problems: Vec<Problem> = [s.err(), o.err()].into_iter().flatten().collect();
                return Err(invalid_as(&what, &problems, outcome));
            }
        };
        let merged = kiln_config::merge(&shared, &over);
        let meta = Meta { project: &a.project, app: &a.name, environment: env };
        kiln_config::render(&d.templates, &merged, &meta, &self.limits)
            .map_err(|problems| invalid_as(&what, &problems, outcome))
    }

    /// A preview of `app` in `env`: its draft rendered, nothing stored.
    pub async fn render(&self, project: &str, app: &str, env: &str) -> ApiResult<Rendered> {
        let a = self.store.config_app(project, app).await?;
        let draft = self.draft(&a, env).await?;
        let r = self.render_draft(&a, env, &draft, "")?;
        Ok(Rendered {
            project: a.project,
            app: a.name,
            environment: env.to_string(),
            files: r.files,
            digest: r.digest,
        })
    }

    /// A diff of `app` in `env` with what `of` names.
    pub async fn diff(
        &self,
        project: &str,
        app: &str,
        env: &str,
        of: &DiffOf,
    ) -> ApiResult<ConfigDiff> {
        let a = self.store.config_app(project, app).await?;
        let (from, old, to, new) = match of {
            DiffOf::Current => {
                let head = self.store.config_head(project, app, env).await?;
                let draft = self.draft(&a, env).await?;
                let new = self.render_draft(&a, env, &draft, "")?.files;
                match head.current {
                    Some(r) => (format!("release-{}", r.number), r.files, "draft".into(), new),
                    None => ("none".into(), Files::new(), "draft".into(), new),
                }
            }
            DiffOf::Environment(other) => {
                let old = self.render_draft(&a, other, &self.draft(&a, other).await?, "")?.files;
                let new = self.render_draft(&a, env, &self.draft(&a, env).await?, "")?.files;
                (other.clone(), old, env.to_string(), new)
            }
            DiffOf::Releases(x, y) => {
                let old = self.store.config_release(project, app, env, *x).await?.files;
                let new = self.store.config_release(project, app, env, *y).await?.files;
                (format!("release-{x}"), old, format!("release-{y}"), new)
            }
        };
        let diffs = kiln_config::diff(&old, &new, &from, &to);
        Ok(ConfigDiff {
            unified: kiln_config::unified(&diffs),
            files: diffs
                .into_iter()
                .map(|d| FileDiff {
                    file: d.file,
                    change: d.change.as_str().into(),
                    unified: d.unified,
                })
                .collect(),
            from,
            to,
        })
    }

    /// The audit log of `app`.
    pub async fn audit(&self, project: &str, app: &str) -> ApiResult<Vec<AuditEntry>> {
        let list = self.store.config_audit(project, app).await?;
        if list.is_empty() {
            // An empty log must still tell an unknown application.
            self.store.config_app(project, app).await?;
        }
        Ok(list
            .into_iter()
            .map(|a| AuditEntry {
                id: a.id,
                app: a.app,
                environment: a.environment,
                action: a.action,
                detail: a.detail,
                by: a.by,
                at: a.at,
            })
            .collect())
    }

    /// A receiver of the head of `app` in `env`: the hub's, unless the store holds a newer
    /// head (a release through another server sharing the database), which is loaded first.
    /// `NotFound` for an unknown project, application or environment.
    pub async fn watch(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> ApiResult<watch::Receiver<Arc<Head>>> {
        if let Some(rx) = self.hub.get(project, app, env) {
            let held = rx.borrow().revision;
            match self.store.config_revision(project, app, env).await? {
                Some(stored) if stored <= held => return Ok(rx),
                Some(_) => {}
                // Deleted meanwhile (through another server): forget it, and say so below.
                None => self.hub.forget_environment(project, env),
            }
        }
        Ok(self.publish(project, app, env).await?.1)
    }

    /// Reads the head of `app` in `env` from the store and hands it to the hub (which keeps
    /// the newer of it and what it holds), waking its consumers if it is newer; returns the
    /// head as read and a receiver of the hub's.
    pub(crate) async fn publish(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> ApiResult<(ConfigTarget, watch::Receiver<Arc<Head>>)> {
        let h = self.store.config_head(project, app, env).await?;
        let body = |r: &ConfigReleaseRecord, gray: bool| -> ApiResult<Arc<Served>> {
            let delivered = DeliveredConfig {
                project: project.to_string(),
                app: app.to_string(),
                environment: env.to_string(),
                release: r.number,
                digest: r.digest.clone(),
                gray,
                files: r.files.clone(),
            };
            let body = serde_json::to_vec(&delivered)
                .map_err(|e| ApiErr::internal(format!("encode release {}: {e}", r.number)))?;
            Ok(Arc::new(Served { number: r.number, digest: r.digest.clone(), body: body.into() }))
        };
        let head = Head {
            revision: h.target.revision,
            current: h.current.as_ref().map(|r| body(r, false)).transpose()?,
            gray: match &h.gray {
                Some(r) => Some((body(r, true)?, r.instances.iter().cloned().collect())),
                None => None,
            },
        };
        Ok((h.target, self.hub.put(project, app, env, head)))
    }

    /// What consumer `instance` (a service instance's id) gets of `app` in `env` now, gray
    /// releases naming it included; `None` before the first release. `NotFound` for an
    /// unknown project, application or environment.
    pub async fn served(
        &self,
        project: &str,
        app: &str,
        env: &str,
        instance: &str,
    ) -> ApiResult<Option<DeliveredConfig>> {
        let rx = self.watch(project, app, env).await?;
        let served = rx.borrow().serves(Some(instance)).cloned();
        served
            .map(|s| s.delivered())
            .transpose()
            .map_err(|e| ApiErr::internal(format!("read release of `{app}` in `{env}`: {e}")))
    }

    /// Forgets the delivery heads of a deleted environment (their watches end).
    pub fn forget_environment(&self, project: &str, env: &str) {
        self.hub.forget_environment(project, env);
    }
}

fn edit(changed: bool) -> EditResult {
    EditResult { change: if changed { "changed" } else { "unchanged" }.into() }
}
