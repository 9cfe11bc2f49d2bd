//! The OCI registry's records: repositories (`<project>/<name>`), blobs (one row per digest,
//! shared by every repository holding it), manifests with their bytes and what they name,
//! tags, push events, webhooks and the webhook outbox. Blob bytes live in the registry's blob
//! store, never here.
//!
//! Invariants:
//! - a manifest is stored together with its tag, the rows naming its blobs and children, its
//!   push event and its webhook deliveries, in one transaction, and only if every blob and
//!   child it names is held by the repository;
//! - a blob named by a manifest cannot be deleted (foreign key), and garbage collection only
//!   deletes blobs untouched for the grace window, in one statement that re-checks both.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Ctx, is_foreign_key};
use crate::model::{db_int, int};
use crate::{ProjectId, Result, Store, StoreError, now};

/// A repository of the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryRepository {
    /// `<project>/<name>`.
    pub name: String,
    /// The project owning it.
    pub project_id: ProjectId,
    /// Anyone may pull.
    pub public: bool,
    /// When its first blob or manifest was pushed.
    pub created_at: DateTime<Utc>,
}

/// A stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryManifest {
    /// `sha256:<hex>` of `content`.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The bytes as pushed.
    pub content: Vec<u8>,
}

/// A manifest to store ([`Store::registry_put_manifest`]).
#[derive(Debug, Clone)]
pub struct NewRegistryManifest {
    /// Repository (must exist).
    pub repository: String,
    /// Digest of `content`.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// Bytes.
    pub content: Vec<u8>,
    /// Artifact type (for referrers).
    pub artifact_type: Option<String>,
    /// Digest of the manifest this one refers to.
    pub subject: Option<String>,
    /// Annotations as a JSON object text.
    pub annotations: Option<String>,
    /// Blobs it names (config, layers).
    pub blobs: Vec<String>,
    /// Manifests it names (an index's entries).
    pub children: Vec<String>,
    /// The tag it is pushed to, if any.
    pub tag: Option<String>,
    /// Who pushed it.
    pub actor: String,
}

/// What [`Store::registry_put_manifest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestPut {
    /// Stored; the push event.
    Stored(Box<RegistryEvent>),
    /// A blob it names is not in the repository.
    MissingBlob(String),
    /// A manifest it names is not in the repository.
    MissingManifest(String),
}

/// A manifest that refers to another (`subject`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryReferrer {
    /// Its digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its annotations (JSON object text).
    pub annotations: Option<String>,
}

/// A manifest push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEvent {
    /// Id (uuid v7).
    pub id: String,
    /// The project of the repository.
    pub project_id: ProjectId,
    /// Repository.
    pub repository: String,
    /// The tag pushed, if any.
    pub tag: Option<String>,
    /// The manifest's digest.
    pub digest: String,
    /// The manifest's media type.
    pub media_type: String,
    /// Who pushed (token name).
    pub actor: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// `push`, or `vulnerability`: newly imported advisories match this stored image.
    #[serde(default = "push_action")]
    pub action: String,
    /// A `vulnerability` event's image's tags (a push names its one `tag`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// A `vulnerability` event's new advisory ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisories: Vec<String>,
}

fn push_action() -> String {
    "push".to_string()
}

/// The kinds of events a webhook may take: `push` (registry pushes), `run` (runs
/// started, waiting for approval, ended) and `vulnerability` (newly imported advisories match
/// a stored image).
pub const WEBHOOK_EVENTS: [&str; 3] = ["push", "run", "vulnerability"];

/// Whether a webhook whose stored `events` list is `events` takes `kind`.
pub(crate) fn takes(events: &str, kind: &str) -> bool {
    events.split(',').any(|e| e.trim() == kind)
}

/// A webhook of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryWebhook {
    /// Id (uuid v7).
    pub id: String,
    /// Project.
    pub project_id: ProjectId,
    /// Where events are POSTed.
    pub url: String,
    /// What it takes, from [`WEBHOOK_EVENTS`].
    pub events: Vec<String>,
    /// The key of its deliveries' `X-Kiln-Signature` (none: unsigned, for webhooks made
    /// before signatures).
    #[serde(skip_serializing)]
    pub secret: Option<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// What a delivery carries, by kind of outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryPayload {
    /// A registry push.
    Push(RegistryEvent),
    /// A registry `vulnerability` event.
    Vulnerability(RegistryEvent),
    /// A run event.
    Run(crate::RunNotice),
}

/// A webhook delivery still to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryDelivery {
    /// Outbox id.
    pub id: String,
    /// Target.
    pub url: String,
    /// The key to sign the body with, if the webhook has one.
    pub secret: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// What to send.
    pub payload: DeliveryPayload,
}

/// A webhook delivery's state, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryDeliveryInfo {
    /// Outbox id.
    pub id: String,
    /// Webhook.
    pub webhook_id: String,
    /// `push` or `run`.
    pub kind: String,
    /// The registry event of a `push` delivery.
    pub event_id: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What one garbage collection pass of the database freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryGcRows {
    /// Manifests deleted (`repository@digest`).
    pub manifests: Vec<String>,
    /// Blobs deleted, with their sizes.
    pub blobs: Vec<(String, u64)>,
}

/// digest, media type, size, artifact type, annotations.
type ReferrerRow = (String, String, i64, Option<String>, Option<String>);
/// id, webhook, kind, event, state, attempts, last error, updated at.
type DeliveryRow =
    (String, String, String, Option<String>, String, i64, Option<String>, DateTime<Utc>);

#[derive(sqlx::FromRow)]
struct RepoRow {
    name: String,
    project_id: String,
    public: bool,
    created_at: DateTime<Utc>,
}

impl RepoRow {
    fn into_repo(self) -> Result<RegistryRepository> {
        Ok(RegistryRepository {
            name: self.name,
            project_id: ProjectId::from_db(&self.project_id)?,
            public: self.public,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: String,
    project_id: String,
    repository: String,
    tag: Option<String>,
    digest: String,
    media_type: String,
    actor: String,
    created_at: DateTime<Utc>,
    action: String,
    tags: Option<String>,
    advisories: Option<String>,
}

fn json_list(text: Option<&str>, what: &str) -> Result<Vec<String>> {
    match text {
        None => Ok(Vec::new()),
        Some(t) => serde_json::from_str(t)
            .map_err(|e| StoreError::Corrupt(format!("registry event {what}: {e}"))),
    }
}

impl EventRow {
    pub(crate) fn into_event(self) -> Result<RegistryEvent> {
        Ok(RegistryEvent {
            id: self.id,
            project_id: ProjectId::from_db(&self.project_id)?,
            repository: self.repository,
            tag: self.tag,
            digest: self.digest,
            media_type: self.media_type,
            actor: self.actor,
            created_at: self.created_at,
            tags: json_list(self.tags.as_deref(), "tags")?,
            advisories: json_list(self.advisories.as_deref(), "advisories")?,
            action: self.action,
        })
    }
}

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: String,
    project_id: String,
    url: String,
    events: String,
    secret: Option<String>,
    created_at: DateTime<Utc>,
}

impl WebhookRow {
    fn into_webhook(self) -> Result<RegistryWebhook> {
        Ok(RegistryWebhook {
            id: self.id,
            project_id: ProjectId::from_db(&self.project_id)?,
            url: self.url,
            events: self.events.split(',').map(|e| e.trim().to_string()).collect(),
            secret: self.secret,
            created_at: self.created_at,
        })
    }
}

impl Store {
    /// The repository `name`, if it exists.
    pub async fn registry_repository(&self, name: &str) -> Result<Option<RegistryRepository>> {
        let what = || format!("get repository `{name}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, RepoRow>(
            "SELECT name, project_id, public, created_at FROM registry_repositories WHERE name = $1")
            .bind(name)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.map(RepoRow::into_repo).transpose()
    }

    /// The repository `name`, created in `project_id` (private) if missing.
    pub async fn registry_ensure_repository(
        &self,
        name: &str,
        project_id: &ProjectId,
    ) -> Result<RegistryRepository> {
        if let Some(repo) = self.registry_repository(name).await? {
            return Ok(repo);
        }
        let what = || format!("create repository `{name}`");
        let done = with_write!(self, p => sqlx::query(
            "INSERT INTO registry_repositories (name, project_id, public, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(project_id.text())
            .bind(false)
            .bind(now())
            .execute(p)
            .await
            .map(|r| r.rows_affected()));
        match done {
            Ok(_) => {}
            Err(e) if is_foreign_key(&e) => {
                return Err(StoreError::NotFound(format!("project {project_id}")));
            }
            Err(e) => return Err(e).ctx(what),
        }
        self.registry_repository(name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("repository `{name}`")))
    }

    /// Marks a repository public (anonymous pulls) or private.
    pub async fn registry_set_public(
        &self,
        name: &str,
        public: bool,
    ) -> Result<RegistryRepository> {
        let what = || format!("set visibility of repository `{name}`");
        let row = with_write!(self, p => sqlx::query_as::<_, RepoRow>(
            "UPDATE registry_repositories SET public = $2 WHERE name = $1 \
             RETURNING name, project_id, public, created_at")
            .bind(name)
            .bind(public)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("repository `{name}`")))?.into_repo()
    }

    /// Repositories by name after `last` (exclusive), at most `limit`.
    pub async fn registry_repositories(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RegistryRepository>> {
        let what = || "list repositories".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, RepoRow>(
            "SELECT name, project_id, public, created_at FROM registry_repositories WHERE name > $1 ORDER BY name LIMIT $2")
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(RepoRow::into_repo).collect()
    }

    /// The size of blob `digest` if repository `repo` holds it.
    pub async fn registry_repo_blob(&self, repo: &str, digest: &str) -> Result<Option<u64>> {
        let what = || format!("look up blob {digest} in `{repo}`");
        let size: Option<i64> = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT b.size FROM registry_repository_blobs rb \
             JOIN registry_blobs b ON b.digest = rb.digest \
             WHERE rb.repository = $1 AND rb.digest = $2")
            .bind(repo)
            .bind(digest)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        size.map(|s| int(s, "blob size")).transpose()
    }

    /// Whether blob `digest` is stored at all (in any repository), and its size.
    pub async fn registry_blob(&self, digest: &str) -> Result<Option<u64>> {
        let what = || format!("look up blob {digest}");
        let size: Option<i64> = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT size FROM registry_blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        size.map(|s| int(s, "blob size")).transpose()
    }

    /// Moves the grace window of blob `digest` forward (a push may be about to name it).
    pub async fn registry_touch_blob(&self, digest: &str) -> Result<()> {
        let what = || format!("touch blob {digest}");
        with_write!(self, p => sqlx::query(
            "UPDATE registry_blobs SET touched_at = $2 WHERE digest = $1")
            .bind(digest)
            .bind(now())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        Ok(())
    }

    /// Records blob `digest` (`size` bytes, already in the blob store) and links it into
    /// repository `repo`; an existing blob is touched.
    pub async fn registry_put_blob(&self, repo: &str, digest: &str, size: u64) -> Result<()> {
        let size = db_int(size, "blob size")?;
        let what = || format!("record blob {digest} in `{repo}`");
        with_tx!(self, what, tx => {
            let at = now();
            sqlx::query(
                "INSERT INTO registry_blobs (digest, size, created_at, touched_at) \
                 VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at")
                .bind(digest)
                .bind(size)
                .bind(at)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            sqlx::query(
                "INSERT INTO registry_repository_blobs (repository, digest) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING")
                .bind(repo)
                .bind(digest)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
        });
        Ok(())
    }

    /// Links an already stored blob into `repo` (a cross-repository mount), touching it.
    /// `false` if the blob is not stored.
    pub async fn registry_link_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        let what = || format!("mount blob {digest} into `{repo}`");
        let linked = with_tx!(self, what, tx => {
            let touched = sqlx::query(
                "UPDATE registry_blobs SET touched_at = $2 WHERE digest = $1")
                .bind(digest)
                .bind(now())
                .execute(&mut *tx)
                .await
                .ctx(what)?
                .rows_affected();
            if touched == 1 {
                sqlx::query(
                    "INSERT INTO registry_repository_blobs (repository, digest) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING")
                    .bind(repo)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            touched == 1
        });
        Ok(linked)
    }

    /// Whether a repository of project `project_id`, or a public one, holds blob `digest`
    /// (a mount without `from`).
    pub async fn registry_blob_reachable(
        &self,
        project_id: &ProjectId,
        digest: &str,
    ) -> Result<bool> {
        let what = || format!("find blob {digest}");
        let found: Option<String> = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT rb.repository FROM registry_repository_blobs rb \
             JOIN registry_repositories r ON r.name = rb.repository \
             WHERE rb.digest = $1 AND (r.project_id = $2 OR r.public) LIMIT 1")
            .bind(digest)
            .bind(project_id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        Ok(found.is_some())
    }

    /// Removes blob `digest` from repository `repo` (the bytes stay while another repository
    /// holds them; garbage collection frees them). `false` if the repository did not hold it.
    pub async fn registry_unlink_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        let what = || format!("delete blob {digest} from `{repo}`");
        let n = with_write!(self, p => sqlx::query(
            "DELETE FROM registry_repository_blobs WHERE repository = $1 AND digest = $2")
            .bind(repo)
            .bind(digest)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        Ok(n > 0)
    }

    /// Stores a manifest (see [`ManifestPut`]): with its references, its tag, its push event
    /// and one outbox row per webhook of the project, in one transaction. Pushing a stored
    /// manifest again only moves the tag (and records a new event).
    pub async fn registry_put_manifest(&self, m: &NewRegistryManifest) -> Result<ManifestPut> {
        let size = db_int(m.content.len() as u64, "manifest size")?;
        let what = || format!("store manifest {} in `{}`", m.digest, m.repository);
        let put = with_tx!(self, what, tx => 'tx: {
            let at = now();
            let project: Option<String> = sqlx::query_scalar(
                "SELECT project_id FROM registry_repositories WHERE name = $1")
                .bind(&m.repository)
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?;
            let Some(project) = project else {
                return Err(StoreError::NotFound(format!("repository `{}`", m.repository)));
            };
            for digest in &m.blobs {
                // Touching locks the row: a concurrent collection waits, then sees it fresh.
                let held: Option<String> = sqlx::query_scalar(
                    "UPDATE registry_blobs SET touched_at = $3 WHERE digest = $2 AND EXISTS \
                     (SELECT 1 FROM registry_repository_blobs rb \
                      WHERE rb.repository = $1 AND rb.digest = $2) RETURNING digest")
                    .bind(&m.repository)
                    .bind(digest)
                    .bind(at)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
                if held.is_none() {
                    break 'tx ManifestPut::MissingBlob(digest.clone());
                }
            }
            for child in &m.children {
                let held: Option<String> = sqlx::query_scalar(
                    "SELECT digest FROM registry_manifests WHERE repository = $1 AND digest = $2")
                    .bind(&m.repository)
                    .bind(child)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
                if held.is_none() {
                    break 'tx ManifestPut::MissingManifest(child.clone());
                }
            }
            sqlx::query(
                "INSERT INTO registry_manifests (repository, digest, media_type, size, content, \
                 artifact_type, subject, annotations, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (repository, digest) DO UPDATE SET created_at = excluded.created_at")
                .bind(&m.repository)
                .bind(&m.digest)
                .bind(&m.media_type)
                .bind(size)
                .bind(&m.content)
                .bind(&m.artifact_type)
                .bind(&m.subject)
                .bind(&m.annotations)
                .bind(at)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
            for digest in &m.blobs {
                sqlx::query(
                    "INSERT INTO registry_manifest_blobs (repository, manifest, digest) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(&m.repository)
                    .bind(&m.digest)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            for child in &m.children {
                sqlx::query(
                    "INSERT INTO registry_manifest_children (repository, manifest, child) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                    .bind(&m.repository)
                    .bind(&m.digest)
                    .bind(child)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            if let Some(tag) = &m.tag {
                sqlx::query(
                    "INSERT INTO registry_tags (repository, tag, digest, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (repository, tag) \
                     DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at")
                    .bind(&m.repository)
                    .bind(tag)
                    .bind(&m.digest)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            let id = uuid::Uuid::now_v7().to_string();
            let event = sqlx::query_as::<_, EventRow>(
                "INSERT INTO registry_events (id, project_id, repository, tag, digest, media_type, actor, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id, project_id, repository, tag, digest, media_type, actor, created_at, \
                 action, tags, advisories")
                .bind(&id)
                .bind(&project)
                .bind(&m.repository)
                .bind(&m.tag)
                .bind(&m.digest)
                .bind(&m.media_type)
                .bind(&m.actor)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .ctx(what)?;
            enqueue_deliveries!(tx, what, &project, "push", &id, at);
            ManifestPut::Stored(Box::new(event.into_event()?))
        });
        Ok(put)
    }

    /// The manifest `reference` (a tag, or a `sha256:` digest) of `repo`.
    pub async fn registry_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<RegistryManifest>> {
        let what = || format!("get manifest `{reference}` of `{repo}`");
        let sql = if reference.contains(':') {
            "SELECT digest, media_type, content FROM registry_manifests \
             WHERE repository = $1 AND digest = $2"
        } else {
            "SELECT m.digest, m.media_type, m.content FROM registry_tags t \
             JOIN registry_manifests m ON m.repository = t.repository AND m.digest = t.digest \
             WHERE t.repository = $1 AND t.tag = $2"
        };
        let row: Option<(String, String, Vec<u8>)> = with_db!(&self.db, p => sqlx::query_as(sql)
            .bind(repo)
            .bind(reference)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        Ok(row.map(|(digest, media_type, content)| RegistryManifest {
            digest,
            media_type,
            content,
        }))
    }

    /// Tags of `repo` after `last` (exclusive), by name, at most `limit`.
    pub async fn registry_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let what = || format!("list tags of `{repo}`");
        let tags = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT tag FROM registry_tags WHERE repository = $1 AND tag > $2 \
             ORDER BY tag LIMIT $3")
            .bind(repo)
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(tags)
    }

    /// Tags of `repo` with the digest each names, by tag.
    pub async fn registry_tag_digests(&self, repo: &str) -> Result<Vec<(String, String)>> {
        let what = || format!("list tags of `{repo}`");
        let rows = with_db!(&self.db, p => sqlx::query_as(
            "SELECT tag, digest FROM registry_tags WHERE repository = $1 ORDER BY tag")
            .bind(repo)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows)
    }

    /// Deletes manifest `digest` of `repo` and its tags. `false` if there was none.
    pub async fn registry_delete_manifest(&self, repo: &str, digest: &str) -> Result<bool> {
        let what = || format!("delete manifest {digest} of `{repo}`");
        let n = with_write!(self, p => sqlx::query(
            "DELETE FROM registry_manifests WHERE repository = $1 AND digest = $2")
            .bind(repo)
            .bind(digest)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        Ok(n > 0)
    }

    /// Deletes tag `tag` of `repo` (the manifest stays). `false` if there was none.
    pub async fn registry_delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let what = || format!("delete tag `{tag}` of `{repo}`");
        let n = with_write!(self, p => sqlx::query(
            "DELETE FROM registry_tags WHERE repository = $1 AND tag = $2")
            .bind(repo)
            .bind(tag)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        Ok(n > 0)
    }

    /// The manifests of `repo` whose subject is `digest`, oldest first.
    pub async fn registry_referrers(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Vec<RegistryReferrer>> {
        let what = || format!("list referrers of {digest} in `{repo}`");
        let rows: Vec<ReferrerRow> = with_db!(&self.db, p => sqlx::query_as(
                "SELECT digest, media_type, size, artifact_type, annotations \
                 FROM registry_manifests WHERE repository = $1 AND subject = $2 \
                 ORDER BY created_at, digest")
                .bind(repo)
                .bind(digest)
                .fetch_all(p)
                .await)
        .ctx(what)?;
        rows.into_iter()
            .map(|(digest, media_type, size, artifact_type, annotations)| {
                Ok(RegistryReferrer {
                    digest,
                    media_type,
                    size: int(size, "manifest size")?,
                    artifact_type,
                    annotations,
                })
            })
            .collect()
    }

    /// One garbage-collection pass over the database, for things older than `cutoff`:
    /// deletes untagged manifests that no index names and whose subject (if any) is gone,
    /// repeating while that frees more, then blobs no manifest names and nothing touched
    /// since `cutoff`. The caller deletes the returned blobs' bytes.
    pub async fn registry_gc(&self, cutoff: DateTime<Utc>) -> Result<RegistryGcRows> {
        let what = || "collect registry garbage".to_string();
        let mut out = RegistryGcRows::default();
        loop {
            let gone: Vec<(String, String)> = with_write!(self, p => sqlx::query_as(
                "DELETE FROM registry_manifests WHERE created_at < $1 \
                 AND NOT EXISTS (SELECT 1 FROM registry_tags t \
                   WHERE t.repository = registry_manifests.repository \
                   AND t.digest = registry_manifests.digest) \
                 AND NOT EXISTS (SELECT 1 FROM registry_manifest_children c \
                   WHERE c.repository = registry_manifests.repository \
                   AND c.child = registry_manifests.digest) \
                 AND (subject IS NULL OR NOT EXISTS (SELECT 1 FROM registry_manifests s \
                   WHERE s.repository = registry_manifests.repository \
                   AND s.digest = registry_manifests.subject)) \
                 RETURNING repository, digest")
                .bind(cutoff)
                .fetch_all(p)
                .await)
            .ctx(what)?;
            if gone.is_empty() {
                break;
            }
            out.manifests.extend(gone.into_iter().map(|(r, d)| format!("{r}@{d}")));
        }
        let blobs: Vec<(String, i64)> = with_write!(self, p => sqlx::query_as(
            "DELETE FROM registry_blobs WHERE touched_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM registry_manifest_blobs mb \
               WHERE mb.digest = registry_blobs.digest) \
             RETURNING digest, size")
            .bind(cutoff)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        for (digest, size) in blobs {
            out.blobs.push((digest, int(size, "blob size")?));
        }
        Ok(out)
    }

    /// Every stored blob digest (to find files the database does not know).
    pub async fn registry_blob_digests(&self) -> Result<Vec<String>> {
        let what = || "list blobs".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_scalar(
            "SELECT digest FROM registry_blobs ORDER BY digest")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows)
    }

    /// Push events, newest first, of one project or all, at most `limit`.
    pub async fn registry_events(
        &self,
        project_id: Option<&ProjectId>,
        limit: u32,
    ) -> Result<Vec<RegistryEvent>> {
        let what = || "list registry events".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, EventRow>(
            "SELECT id, project_id, repository, tag, digest, media_type, actor, created_at, \
             action, tags, advisories FROM registry_events WHERE ($1 = '' OR project_id = $1) \
             ORDER BY id DESC LIMIT $2")
            .bind(project_id.map(|p| p.text()).unwrap_or_default())
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// Adds an unsigned webhook taking `push` events to a project.
    pub async fn registry_add_webhook(
        &self,
        project_id: &ProjectId,
        url: &str,
    ) -> Result<RegistryWebhook> {
        self.add_webhook(project_id, url, &["push".to_string()], None).await
    }

    /// Adds a webhook to a project taking `events` (from [`WEBHOOK_EVENTS`], at least one),
    /// its deliveries signed with `secret` if given.
    pub async fn add_webhook(
        &self,
        project_id: &ProjectId,
        url: &str,
        events: &[String],
        secret: Option<&str>,
    ) -> Result<RegistryWebhook> {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
            return Err(StoreError::Invalid(format!(
                "webhook URL `{url}` is not valid: use an http:// or https:// URL"
            )));
        }
        if let Some(bad) = events.iter().find(|e| !WEBHOOK_EVENTS.contains(&e.as_str())) {
            return Err(StoreError::Invalid(format!(
                "webhook event `{bad}` is not known: use {}",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        let mut kinds: Vec<&str> =
            WEBHOOK_EVENTS.iter().copied().filter(|k| events.iter().any(|e| e == k)).collect();
        kinds.dedup();
        if kinds.is_empty() {
            return Err(StoreError::Invalid(format!(
                "a webhook takes at least one kind of event: {}",
                WEBHOOK_EVENTS.join(", ")
            )));
        }
        let what = || format!("add webhook to project {project_id}");
        let row = with_write!(self, p => sqlx::query_as::<_, WebhookRow>(
            "INSERT INTO registry_webhooks (id, project_id, url, events, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id, project_id, url, events, secret, created_at")
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(project_id.text())
            .bind(url)
            .bind(kinds.join(","))
            .bind(secret)
            .bind(now())
            .fetch_one(p)
            .await);
        match row {
            Ok(row) => row.into_webhook(),
            Err(e) if is_foreign_key(&e) => {
                Err(StoreError::NotFound(format!("project {project_id}")))
            }
            Err(e) => Err(e).ctx(what),
        }
    }

    /// The webhooks of a project, oldest first.
    pub async fn registry_webhooks(&self, project_id: &ProjectId) -> Result<Vec<RegistryWebhook>> {
        let what = || format!("list webhooks of project {project_id}");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, WebhookRow>(
            "SELECT id, project_id, url, events, secret, created_at FROM registry_webhooks \
             WHERE project_id = $1 ORDER BY id")
            .bind(project_id.text())
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(WebhookRow::into_webhook).collect()
    }

    /// Removes a webhook of a project (and its pending deliveries).
    pub async fn registry_delete_webhook(&self, project_id: &ProjectId, id: &str) -> Result<()> {
        let what = || format!("delete webhook {id}");
        let n = with_write!(self, p => sqlx::query(
            "DELETE FROM registry_webhooks WHERE id = $1 AND project_id = $2")
            .bind(id)
            .bind(project_id.text())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        Ok(())
    }

    /// Pending deliveries due at `at`, oldest first, at most `limit`: registry pushes and run
    /// events alike.
    pub async fn registry_due_deliveries(
        &self,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<RegistryDelivery>> {
        let what = || "list due webhook deliveries".to_string();
        #[derive(sqlx::FromRow)]
        struct Row {
            id: String,
            url: String,
            secret: Option<String>,
            attempts: i64,
            kind: String,
            event_id: Option<String>,
            payload: Option<String>,
        }
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, Row>(
            "SELECT o.id, w.url, w.secret, o.attempts, o.kind, o.event_id, o.payload \
             FROM registry_outbox o JOIN registry_webhooks w ON w.id = o.webhook_id \
             WHERE o.state = 'pending' AND o.next_at <= $1 ORDER BY o.next_at, o.id LIMIT $2")
            .bind(at)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let corrupt = |why: &str| StoreError::Corrupt(format!("outbox row {}: {why}", r.id));
            let payload = match (r.kind.as_str(), &r.event_id, &r.payload) {
                (kind @ ("push" | "vulnerability"), Some(event), _) => {
                    let row = with_db!(&self.db, p => sqlx::query_as::<_, EventRow>(
                        "SELECT id, project_id, repository, tag, digest, media_type, actor, \
                         created_at, action, tags, advisories FROM registry_events WHERE id = $1")
                        .bind(event)
                        .fetch_optional(p)
                        .await)
                    .ctx(what)?;
                    match row {
                        Some(row) if kind == "push" => DeliveryPayload::Push(row.into_event()?),
                        Some(row) => DeliveryPayload::Vulnerability(row.into_event()?),
                        // Deleted since (with its project): the row goes with it.
                        None => continue,
                    }
                }
                ("run", _, Some(json)) => DeliveryPayload::Run(
                    serde_json::from_str(json).map_err(|e| corrupt(&e.to_string()))?,
                ),
                (kind, _, _) => return Err(corrupt(&format!("kind `{kind}` without its payload"))),
            };
            out.push(RegistryDelivery {
                id: r.id,
                url: r.url,
                secret: r.secret,
                attempts: int(r.attempts, "attempts")?,
                payload,
            });
        }
        Ok(out)
    }

    /// Records the outcome of one delivery attempt: delivered (`error` is `None`), to retry at
    /// `retry_at`, or failed for good (`retry_at` is `None`).
    pub async fn registry_delivery_attempted(
        &self,
        id: &str,
        error: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let what = || format!("record webhook delivery {id}");
        let state = match (error, retry_at) {
            (None, _) => "delivered",
            (Some(_), Some(_)) => "pending",
            (Some(_), None) => "failed",
        };
        let at = now();
        with_write!(self, p => sqlx::query(
            "UPDATE registry_outbox SET attempts = attempts + 1, state = $2, last_error = $3, \
             next_at = $4, updated_at = $5 WHERE id = $1")
            .bind(id)
            .bind(state)
            .bind(error)
            .bind(retry_at.unwrap_or(at))
            .bind(at)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .ctx(what)?;
        Ok(())
    }

    /// The deliveries of a webhook, newest first, at most `limit`.
    pub async fn registry_deliveries(
        &self,
        webhook_id: &str,
        limit: u32,
    ) -> Result<Vec<RegistryDeliveryInfo>> {
        let what = || format!("list deliveries of webhook {webhook_id}");
        let rows: Vec<DeliveryRow> = with_db!(&self.db, p => sqlx::query_as(
                "SELECT id, webhook_id, kind, event_id, state, attempts, last_error, updated_at \
                 FROM registry_outbox WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2")
                .bind(webhook_id)
                .bind(i64::from(limit))
                .fetch_all(p)
                .await)
        .ctx(what)?;
        rows.into_iter()
            .map(|(id, webhook_id, kind, event_id, state, attempts, last_error, updated_at)| {
                Ok(RegistryDeliveryInfo {
                    id,
                    webhook_id,
                    kind,
                    event_id,
                    state,
                    attempts: int(attempts, "attempts")?,
                    last_error,
                    updated_at,
                })
            })
            .collect()
    }
}
