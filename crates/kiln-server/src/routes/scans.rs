//! Vulnerability scanning's API: advisory imports (admin), an image's findings and a rescan,
//! and a project's image policy.

use axum::Json;
use axum::extract::{Path, Query, State};
use kiln_api::ErrorBody;
use kiln_api::scan::{AdvisoryImportReport, ImagePolicy, ImageScan, ImportAdvisories};
use kiln_scan::Severity;
use kiln_store::Role;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::Body;
use super::projects::project_for;
use crate::App;
use crate::auth::Caller;
use crate::deploys::plan::{Reference, parse_image};
use crate::error::{ApiErr, ApiResult};
use crate::scans::{finding_dto, severity_of};

/// The largest import body (the OSV files, JSON-encoded).
pub const MAX_IMPORT: usize = 256 * 1024 * 1024;

/// Imports OSV advisories (admin), all or nothing: a malformed file is refused with its
/// name and the line and column of the error. Stored images newly matched get a
/// `vulnerability` registry event and webhook delivery each.
#[utoipa::path(post, path = "/api/v1/registry/advisories", tag = "registry",
    request_body = ImportAdvisories,
    responses((status = 200, body = AdvisoryImportReport), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn import(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<ImportAdvisories>,
) -> ApiResult<Json<AdvisoryImportReport>> {
    caller.require(Role::Admin)?;
    Ok(Json(app.scanner.import(&req.files).await?))
}

/// Which image, and which findings.
#[derive(Debug, Deserialize, IntoParams)]
pub struct VulnsQuery {
    /// `<project>/<name>:<tag>`, `<project>/<name>@sha256:…` (a `<registry host>/` prefix
    /// allowed; no tag means `latest`).
    pub image: String,
    /// Only findings at least this severe: `low`, `medium`, `high`, `critical`.
    pub severity: Option<String>,
}

/// Body of `POST /api/v1/registry/scan`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ScanRequest {
    /// The image, as for `GET /api/v1/registry/vulns`.
    pub image: String,
}

/// The repository and manifest digest of `image`, checking the caller's `role` on its
/// project.
async fn manifest_for(
    app: &App,
    caller: &Caller,
    image: &str,
    role: Role,
) -> ApiResult<(String, String)> {
    let name = parse_image(image, &app.registry_host).map_err(ApiErr::bad_request)?;
    let project = name.repo.split('/').next().unwrap_or_default();
    project_for(app, caller, project, role).await?;
    let reference = match &name.reference {
        Reference::Tag(t) => t.as_str(),
        Reference::Digest(d) => d.as_str(),
    };
    let m = app.store.registry_manifest(&name.repo, reference).await?.ok_or_else(|| {
        ApiErr::not_found(format!(
            "image `{image}` is not in the registry: no manifest `{reference}` in `{}`",
            name.repo
        ))
    })?;
    Ok((name.repo, m.digest))
}

async fn image_scan(
    app: &App,
    image: &str,
    repository: String,
    digest: String,
    min: Severity,
) -> ApiResult<ImageScan> {
    let scan = app.store.image_scan(&digest).await?;
    let mut findings: Vec<_> = app
        .store
        .image_findings(&digest)
        .await?
        .into_iter()
        .filter(|f| severity_of(f) >= min)
        .collect();
    findings.sort_by(|a, b| {
        severity_of(b).cmp(&severity_of(a)).then_with(|| a.advisory.cmp(&b.advisory))
    });
    Ok(ImageScan {
        repository,
        image: image.trim().to_string(),
        state: scan.as_ref().map_or("unscanned".to_string(), |s| s.state.clone()),
        packages: scan.as_ref().map_or(0, |s| s.packages),
        scanned_at: scan.as_ref().and_then(|s| s.scanned_at),
        error: scan.and_then(|s| s.error),
        digest,
        findings: findings.into_iter().map(finding_dto).collect(),
    })
}

fn min_severity(s: Option<&str>) -> ApiResult<Severity> {
    match s {
        None => Ok(Severity::Unknown),
        Some(s) => s.parse().map_err(|_| {
            ApiErr::bad_request(format!(
                "severity `{s}` is not known: use low, medium, high or critical"
            ))
        }),
    }
}

/// An image's scan and findings (viewer of its project), most severe first.
#[utoipa::path(get, path = "/api/v1/registry/vulns", tag = "registry", params(VulnsQuery),
    responses((status = 200, body = ImageScan), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn vulns(
    State(app): State<App>,
    caller: Caller,
    Query(q): Query<VulnsQuery>,
) -> ApiResult<Json<ImageScan>> {
    let min = min_severity(q.severity.as_deref())?;
    let (repo, digest) = manifest_for(&app, &caller, &q.image, Role::Viewer).await?;
    Ok(Json(image_scan(&app, &q.image, repo, digest, min).await?))
}

/// Scans an image again now (developer of its project) and answers its findings.
#[utoipa::path(post, path = "/api/v1/registry/scan", tag = "registry", request_body = ScanRequest,
    responses((status = 200, body = ImageScan), (status = 404, body = ErrorBody)))]
pub async fn scan(
    State(app): State<App>,
    caller: Caller,
    Body(req): Body<ScanRequest>,
) -> ApiResult<Json<ImageScan>> {
    let (repo, digest) = manifest_for(&app, &caller, &req.image, Role::Developer).await?;
    app.scanner.scan(&repo, &digest).await?;
    Ok(Json(image_scan(&app, &req.image, repo, digest, Severity::Unknown).await?))
}

/// A project's image policy (viewer).
#[utoipa::path(get, path = "/api/v1/projects/{project}/image-policy", tag = "registry",
    params(("project" = String, Path)),
    responses((status = 200, body = ImagePolicy), (status = 404, body = ErrorBody)))]
pub async fn policy(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
) -> ApiResult<Json<ImagePolicy>> {
    let p = project_for(&app, &caller, &project, Role::Viewer).await?;
    let s = app.store.image_policy(&p.id).await?;
    Ok(Json(ImagePolicy {
        block_critical_deploys: s.block_critical_deploys,
        no_critical_latest: s.no_critical_latest,
    }))
}

/// Sets a project's image policy (admin of the project).
#[utoipa::path(put, path = "/api/v1/projects/{project}/image-policy", tag = "registry",
    params(("project" = String, Path)), request_body = ImagePolicy,
    responses((status = 200, body = ImagePolicy), (status = 403, body = ErrorBody)))]
pub async fn set_policy(
    State(app): State<App>,
    caller: Caller,
    Path(project): Path<String>,
    Body(req): Body<ImagePolicy>,
) -> ApiResult<Json<ImagePolicy>> {
    let p = project_for(&app, &caller, &project, Role::Admin).await?;
    let s = app
        .store
        .set_image_policy(
            &p.id,
            &kiln_store::ImagePolicy {
                block_critical_deploys: req.block_critical_deploys,
                no_critical_latest: req.no_critical_latest,
            },
        )
        .await?;
    Ok(Json(ImagePolicy {
        block_critical_deploys: s.block_critical_deploys,
        no_critical_latest: s.no_critical_latest,
    }))
}
