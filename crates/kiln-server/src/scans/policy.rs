//! The project image policy where images are used: the registry refuses the tag `latest` on
//! an image with a critical finding (`no_critical_latest`), deploys refuse such an image
//! (`block_critical_deploys`). An image not scanned yet is scanned first; one that cannot be
//! read is let through (its scan records why).

use kiln_registry::TagPolicy;
use kiln_scan::Severity;
use kiln_store::{FindingRecord, ImagePolicy, ProjectId, StoreError};

use super::{Scanner, severity_of};

/// The tag the `no_critical_latest` policy guards.
pub const LATEST: &str = "latest";

/// The critical findings' advisory ids, sorted, without repeats.
fn critical_ids(findings: &[FindingRecord]) -> Vec<String> {
    let mut ids: Vec<String> = findings
        .iter()
        .filter(|f| severity_of(f) == Severity::Critical)
        .map(|f| f.advisory.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

impl Scanner {
    /// The policy of the project owning `repository` (all off for an unknown project).
    async fn policy_of_repo(&self, repository: &str) -> Result<ImagePolicy, StoreError> {
        let project = repository.split('/').next().unwrap_or_default();
        match self.store().project(project).await {
            Ok(p) => self.store().image_policy(&p.id).await,
            Err(StoreError::NotFound(_)) => Ok(ImagePolicy::default()),
            Err(e) => Err(e),
        }
    }

    /// The critical advisories of stored manifest `digest` of `repository`, scanning it first
    /// if it was not scanned.
    pub async fn critical(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<String>, StoreError> {
        let scanned = self.store().image_scan(digest).await?;
        if scanned.is_none_or(|s| s.state == "queued") {
            self.scan(repository, digest).await?;
        }
        Ok(critical_ids(&self.store().image_findings(digest).await?))
    }

    /// For a deploy of `repository@digest` by `project`: the refusal's message if the
    /// project's policy blocks images with a critical finding and this one has some.
    pub async fn deploy_refusal(
        &self,
        project: &ProjectId,
        repository: &str,
        digest: &str,
    ) -> Result<Option<String>, StoreError> {
        if !self.store().image_policy(project).await?.block_critical_deploys {
            return Ok(None);
        }
        let ids = self.critical(repository, digest).await?;
        Ok((!ids.is_empty()).then(|| {
            format!(
                "image {repository}@{digest} has critical findings ({}): the project's image \
                 policy blocks deploying it (`kiln registry vulns {repository}@{digest}`; \
                 `kiln project policy` changes the policy)",
                ids.join(", ")
            )
        }))
    }
}

#[async_trait::async_trait]
impl TagPolicy for Scanner {
    async fn check_tag(
        &self,
        repository: &str,
        tag: &str,
        digest: &str,
        media_type: &str,
        content: &[u8],
    ) -> Result<(), String> {
        if tag != LATEST {
            return Ok(());
        }
        let check = async {
            if !self.policy_of_repo(repository).await?.no_critical_latest {
                return Ok(Vec::new());
            }
            let scanned = self.store().image_scan(digest).await?;
            if scanned.is_none_or(|s| s.state == "queued") {
                self.scan_content(repository, digest, media_type, content).await?;
            }
            Ok::<_, StoreError>(critical_ids(&self.store().image_findings(digest).await?))
        };
        match check.await {
            Ok(ids) if ids.is_empty() => Ok(()),
            Ok(ids) => Err(format!(
                "the tag `latest` is refused on {repository}@{digest}: it has critical findings \
                 ({}) and the project's image policy keeps `latest` free of them (push it \
                 under another tag, or fix them)",
                ids.join(", ")
            )),
            Err(e) => {
                tracing::warn!("image policy check of {repository}@{digest}: {e}");
                Ok(())
            }
        }
    }
}
