//! A running deployment's driver: applies its spec to its service (once: the version it made
//! is stored, so a restarted server only waits), then watches the service until the version
//! is healthy everywhere (`succeeded`), rolled back by the service controller at its deadline
//! (`rolled_back`, and an `auto-rollback` deployment of what came back, driven in turn), or
//! lost (`failed`: a first version past its deadline, a service changed or deleted meanwhile).
//!
//! Invariant: one driver per deployment in this server (a set of those being driven); a
//! deployment another server ended first is left as it is (`Moved`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kiln_store::{
    DeployedAs, DeploymentEnd, DeploymentRecord, NewDeployment, ServiceVersionRecord, StoreError,
};
use kiln_workflow::service::ServiceSpec;

use super::{KILN, POLL, Shared, lock, plan, ran};
use crate::error::{ApiErr, ApiResult};

/// How long past its deadline an update may stay incomplete before the deployment gives up
/// waiting for the controller's rollback.
const GRACE: Duration = Duration::from_secs(30);

/// How a deployment ended.
enum End {
    Succeeded,
    Failed(String),
    /// The controller made `version` (an `auto-rollback`) to go back.
    RolledBack(ServiceVersionRecord),
}

fn key(d: &DeploymentRecord) -> (String, String, String, u32) {
    (d.project.clone(), d.service.clone(), d.environment.clone(), d.number)
}

/// Starts driving `d` unless this server already does.
pub(super) fn spawn(sh: &Arc<Shared>, d: DeploymentRecord) {
    if !lock(&sh.drivers).insert(key(&d)) {
        return;
    }
    let sh = sh.clone();
    tokio::spawn(async move {
        let k = key(&d);
        tokio::select! {
            () = sh.stop.cancelled() => {}
            () = drive(&sh, d) => {}
        }
        lock(&sh.drivers).remove(&k);
    });
}

/// Drives `d` to its end, trying again after a failure of the store.
async fn drive(sh: &Arc<Shared>, mut d: DeploymentRecord) {
    loop {
        match attempt(sh, &mut d).await {
            Ok(Some(next)) => {
                spawn(sh, next);
                return;
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(
                    "deployment {} of {}/{} to {}: {}; trying again in 1s",
                    d.number,
                    d.project,
                    d.service,
                    d.environment,
                    e.message
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Applies `d` if it was not yet, waits for its end and stores it; the deployment to drive
/// next (an automatic rollback), if any.
async fn attempt(
    sh: &Arc<Shared>,
    d: &mut DeploymentRecord,
) -> ApiResult<Option<DeploymentRecord>> {
    let version = match d.service_version {
        Some(v) => v,
        None => match apply(sh, d).await {
            Ok(v) => {
                sh.store.set_deployment_version(d, v).await?;
                d.service_version = Some(v);
                v
            }
            // Refused (a service of that name that is not this deployment's, say): it ends.
            Err(e) if e.status.is_client_error() => {
                return finish(sh, d, End::Failed(e.message)).await;
            }
            Err(e) => return Err(e),
        },
    };
    let end = watch(sh, d, version).await?;
    finish(sh, d, end).await
}

/// Applies `d`'s spec to its service; the version that runs it (made, or found unchanged).
async fn apply(sh: &Shared, d: &DeploymentRecord) -> ApiResult<u32> {
    let spec: ServiceSpec = serde_json::from_value(d.spec.clone())
        .map_err(|e| ApiErr::internal(format!("deployment {}: its spec: {e}", d.number)))?;
    let deployed = DeployedAs { service: d.service.clone(), environment: d.environment.clone() };
    let note =
        format!("deployment {} of {} to {} ({})", d.number, d.service, d.environment, d.kind);
    let (info, _) = sh
        .services
        .apply_spec(&d.project, &spec, (&d.file, &d.yaml), Some(note), &d.asked_by, Some(&deployed))
        .await?;
    Ok(info.version)
}

/// Watches the service of `d` from its `version` on, until the deployment's end.
async fn watch(sh: &Shared, d: &DeploymentRecord, version: u32) -> ApiResult<End> {
    let gone = || {
        End::Failed(format!("service `{}` was deleted while the deployment waited", d.service_name))
    };
    let first = match sh.store.service(&d.project, &d.service_name).await {
        Ok(s) => s,
        Err(StoreError::NotFound(_)) => return Ok(gone()),
        Err(e) => return Err(e.into()),
    };
    let ours = sh.store.service_version(&first.id, version).await?;
    let mut specs: HashMap<u32, serde_json::Value> = HashMap::new();
    let ours_spec = sh.store.service_version(&first.id, ours.template).await?.spec;
    specs.insert(ours.template, ours_spec.clone());
    let deadline = serde_json::from_value::<ServiceSpec>(d.spec.clone())
        .map(|s| s.update.deadline)
        .unwrap_or(kiln_workflow::service::UpdatePolicy::DEFAULT_DEADLINE);
    loop {
        let s = match sh.store.service(&d.project, &d.service_name).await {
            Ok(s) if s.id == first.id => s,
            Ok(_) | Err(StoreError::NotFound(_)) => return Ok(gone()),
            Err(e) => return Err(e.into()),
        };
        let later: Vec<ServiceVersionRecord> = if s.version > version {
            sh.store
                .service_versions(&s.id)
                .await?
                .into_iter()
                .filter(|v| v.version > version)
                .collect()
        } else {
            Vec::new()
        };
        if let Some(back) = later.iter().find(|v| v.kind == "auto-rollback") {
            return Ok(End::RolledBack(back.clone()));
        }
        let current = match specs.get(&s.template) {
            Some(spec) => spec.clone(),
            None => {
                let spec = sh.store.service_version(&s.id, s.template).await?.spec;
                specs.insert(s.template, spec.clone());
                spec
            }
        };
        if current != ours_spec {
            let by = later
                .last()
                .map(|v| format!("version {} ({}, by {})", v.version, v.kind, v.by))
                .unwrap_or_else(|| format!("version {}", s.template));
            return Ok(End::Failed(format!(
                "service `{}` was changed by {by} while the deployment waited",
                d.service_name
            )));
        }
        if s.stable == s.template {
            return Ok(End::Succeeded);
        }
        if let Some(started) = s.update_started_at {
            let past = (Utc::now() - started).to_std().unwrap_or_default();
            if past >= deadline && (s.stable == 0 || past >= deadline + GRACE) {
                let (healthy, replicas) = match sh.services.get(&d.project, &d.service_name).await {
                    Ok(i) => (i.healthy, i.replicas),
                    Err(_) => (0, s.replicas),
                };
                let why = if s.stable == 0 {
                    "there is no earlier version to go back to, so it keeps trying"
                } else {
                    "the service controller did not roll it back"
                };
                return Ok(End::Failed(format!(
                    "version {} of service `{}` was not healthy within its deadline of {}: \
                     {healthy} of {replicas} instances healthy; {why}",
                    s.template,
                    d.service_name,
                    humantime::format_duration(deadline)
                )));
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Stores how `d` ended (with the automatic rollback that follows a rollback by the
/// controller); the deployment to drive next.
async fn finish(
    sh: &Shared,
    d: &DeploymentRecord,
    end: End,
) -> ApiResult<Option<DeploymentRecord>> {
    let end = match end {
        End::Succeeded => DeploymentEnd { state: "succeeded", reason: None, then: None },
        End::Failed(reason) => DeploymentEnd { state: "failed", reason: Some(reason), then: None },
        End::RolledBack(back) => rolled_back(sh, d, &back).await?,
    };
    match sh.store.finish_deployment(d, &end).await {
        Ok((ended, then)) => {
            tracing::info!(
                "deployment {} of {}/{} to {}: {}",
                ended.number,
                ended.project,
                ended.service,
                ended.environment,
                ended.state
            );
            Ok(then)
        }
        // Another server ended it first.
        Err(StoreError::Moved(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `d` rolled back by the controller's version `back`: its end, and the `auto-rollback`
/// deployment of what came back (the deployment that ran healthy with that spec, when there
/// is one).
async fn rolled_back(
    sh: &Shared,
    d: &DeploymentRecord,
    back: &ServiceVersionRecord,
) -> ApiResult<DeploymentEnd> {
    let service = sh.store.service(&d.project, &d.service_name).await?;
    let spec = sh.store.service_version(&service.id, back.template).await?.spec;
    let history = sh.store.deployments(&d.project, Some(&d.service), Some(&d.environment)).await?;
    let without_replicas = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("replicas");
        }
        v
    };
    let earlier = history
        .iter()
        .filter(|x| x.number < d.number && ran(x))
        .find(|x| without_replicas(&x.spec) == spec);
    let image_ref = spec.get("image").and_then(|i| i.as_str()).unwrap_or_default().to_string();
    let mut full = spec.clone();
    if let Some(m) = full.as_object_mut() {
        m.insert("replicas".into(), serde_json::Value::from(back.replicas.max(1)));
    }
    let config = match &d.config {
        Some((app, release)) => {
            let now = sh.config.current_release(&d.project, app, &d.environment).await?;
            Some((app.clone(), now.unwrap_or(*release)))
        }
        None => None,
    };
    let then = NewDeployment {
        service: d.service.clone(),
        environment: d.environment.clone(),
        kind: "auto-rollback".into(),
        pending: false,
        image: earlier.map_or_else(|| image_ref.clone(), |e| e.image.clone()),
        digest: plan::digest_of(&image_ref).unwrap_or_default().to_string(),
        image_ref,
        config,
        service_name: d.service_name.clone(),
        service_version: Some(back.version),
        spec: earlier.map_or(full, |e| e.spec.clone()),
        yaml: earlier.map_or_else(|| back.yaml.clone(), |e| e.yaml.clone()),
        file: earlier.map_or_else(|| back.file.clone(), |e| e.file.clone()),
        run: None,
        asked_by: KILN.into(),
        note: Some(format!("automatic rollback of deployment {}", d.number)),
        rollback_of: earlier.map(|e| e.number),
        promoted_from: None,
    };
    let to = earlier.map_or_else(
        || format!("rolled back to version {} of the service", back.template),
        |e| format!("rolled back to deployment {}", e.number),
    );
    let why = back.note.clone().unwrap_or_else(|| "not healthy by its deadline".into());
    Ok(DeploymentEnd {
        state: "rolled_back",
        reason: Some(format!("service `{}`: {why}; {to}", d.service_name)),
        then: Some(then),
    })
}
