//! Projects and pipelines. A pipeline's version goes up by one on every change of its source
//! (YAML, file name or template files) and never otherwise.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::{Ctx, is_unique};
use crate::model::{check_name, int};
use crate::{
    Pipeline, PipelineId, PipelineSource, Project, ProjectId, Result, Store, StoreError, now,
};

#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: String,
    name: String,
    created_at: DateTime<Utc>,
}

impl ProjectRow {
    fn into_project(self) -> Result<Project> {
        Ok(Project {
            id: ProjectId::from_db(&self.id)?,
            name: self.name,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct PipelineRow {
    id: String,
    project_id: String,
    project: String,
    name: String,
    yaml: String,
    file: String,
    files: Json<BTreeMap<String, String>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl PipelineRow {
    fn into_pipeline(self) -> Result<Pipeline> {
        let file = if self.file.is_empty() { format!("{}.yml", self.name) } else { self.file };
        Ok(Pipeline {
            id: PipelineId::from_db(&self.id)?,
            project_id: ProjectId::from_db(&self.project_id)?,
            project: self.project,
            name: self.name,
            file,
            yaml: self.yaml,
            files: self.files.0,
            version: int(self.version, "pipeline version")?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// `SELECT` of a [`PipelineRow`]; append the `WHERE`.
macro_rules! pipeline_select {
    ($rest:literal) => {
        concat!(
            "SELECT pl.id, pl.project_id, pr.name AS project, pl.name, pl.yaml, pl.file, pl.files, \
             pl.version, \
             pl.created_at, pl.updated_at \
             FROM pipelines pl JOIN projects pr ON pr.id = pl.project_id ",
            $rest
        )
    };
}

#[derive(sqlx::FromRow)]
struct ExistingPipeline {
    id: String,
    yaml: String,
    file: String,
    files: Json<BTreeMap<String, String>>,
}

impl Store {
    /// Creates a project. `Conflict` if the name is taken, `Invalid` if it is not a valid name.
    pub async fn create_project(&self, name: &str) -> Result<Project> {
        check_name("project", name)?;
        let what = || format!("create project `{name}`");
        let id = ProjectId::new();
        let row = with_write!(self, p => sqlx::query_as::<_, ProjectRow>(
            "INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3) \
             RETURNING id, name, created_at")
            .bind(id.text())
            .bind(name)
            .bind(now())
            .fetch_one(p)
            .await);
        match row {
            Ok(row) => row.into_project(),
            Err(e) if is_unique(&e) => {
                Err(StoreError::Conflict(format!("project `{name}` already exists")))
            }
            Err(e) => Err(e).ctx(what),
        }
    }

    /// The project called `name`.
    pub async fn project(&self, name: &str) -> Result<Project> {
        let what = || format!("get project `{name}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, ProjectRow>(
            "SELECT id, name, created_at FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("project `{name}`")))?.into_project()
    }

    /// Every project, by name.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        let what = || "list projects".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, ProjectRow>(
            "SELECT id, name, created_at FROM projects ORDER BY name")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(ProjectRow::into_project).collect()
    }

    /// Creates the pipeline `project/name` from `source` at version 1, or replaces its source.
    /// Returns the pipeline and whether anything changed: the same YAML again changes nothing
    /// (neither the version nor `updated_at`); a different one bumps the version by one.
    pub async fn upsert_pipeline(
        &self,
        project: &str,
        name: &str,
        source: &PipelineSource,
    ) -> Result<(Pipeline, bool)> {
        let (yaml, file, files) = (&source.yaml, &source.file, &source.files);
        check_name("pipeline", name)?;
        let what = || format!("save pipeline `{project}/{name}`");
        let at = now();
        let result = with_tx!(self, what, tx => {
            let project_id: Option<String> =
                sqlx::query_scalar("SELECT id FROM projects WHERE name = $1")
                    .bind(project)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx(what)?;
            let project_id = project_id
                .ok_or_else(|| StoreError::NotFound(format!("project `{project}`")))?;
            let existing = sqlx::query_as::<_, ExistingPipeline>(
                "SELECT id, yaml, file, files FROM pipelines WHERE project_id = $1 AND name = $2")
                .bind(&project_id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .ctx(what)?;
            let (id, changed) = match existing {
                Some(old) if &old.yaml == yaml && &old.file == file && &old.files.0 == files => {
                    (old.id, false)
                }
                Some(old) => {
                    sqlx::query(
                        "UPDATE pipelines SET yaml = $2, file = $4, files = $5, version = version + 1, \
                         updated_at = $3 WHERE id = $1")
                        .bind(&old.id)
                        .bind(yaml)
                        .bind(at)
                        .bind(file)
                        .bind(Json(files))
                        .execute(&mut *tx)
                        .await
                        .ctx(what)?;
                    (old.id, true)
                }
                None => {
                    let id = PipelineId::new().text();
                    let inserted = sqlx::query(
                        "INSERT INTO pipelines \
                         (id, project_id, name, yaml, file, files, version, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $6, $7, 1, $5, $5)")
                        .bind(&id)
                        .bind(&project_id)
                        .bind(name)
                        .bind(yaml)
                        .bind(at)
                        .bind(file)
                        .bind(Json(files))
                        .execute(&mut *tx)
                        .await;
                    match inserted {
                        Ok(_) => (id, true),
                        Err(e) if is_unique(&e) => {
                            return Err(StoreError::Conflict(format!(
                                "pipeline `{project}/{name}` was created concurrently; retry"
                            )));
                        }
                        Err(e) => return Err(e).ctx(what),
                    }
                }
            };
            let row = sqlx::query_as::<_, PipelineRow>(pipeline_select!("WHERE pl.id = $1"))
                .bind(&id)
                .fetch_one(&mut *tx)
                .await
                .ctx(what)?;
            (row, changed)
        });
        let (row, changed) = result;
        Ok((row.into_pipeline()?, changed))
    }

    /// The pipeline `project/name`.
    pub async fn pipeline(&self, project: &str, name: &str) -> Result<Pipeline> {
        let what = || format!("get pipeline `{project}/{name}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, PipelineRow>(
            pipeline_select!("WHERE pr.name = $1 AND pl.name = $2"))
            .bind(project)
            .bind(name)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("pipeline `{project}/{name}`")))?
            .into_pipeline()
    }

    /// The pipeline with this id.
    pub async fn pipeline_by_id(&self, id: &PipelineId) -> Result<Pipeline> {
        let what = || format!("get pipeline {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, PipelineRow>(
            pipeline_select!("WHERE pl.id = $1"))
            .bind(id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("pipeline {id}")))?.into_pipeline()
    }

    /// The pipelines of `project`, by name. `NotFound` if the project does not exist.
    pub async fn pipelines(&self, project: &str) -> Result<Vec<Pipeline>> {
        let what = || format!("list pipelines of project `{project}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, PipelineRow>(
            pipeline_select!("WHERE pr.name = $1 ORDER BY pl.name"))
            .bind(project)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            // An empty list must still tell a missing project from an empty one.
            self.project(project).await?;
        }
        rows.into_iter().map(PipelineRow::into_pipeline).collect()
    }
}
