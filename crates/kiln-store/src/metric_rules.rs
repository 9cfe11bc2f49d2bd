//! Metric scraping rules of a project (`kind: metric` files): which services' instances the
//! server scrapes, where and how often. One row per rule, replaced by each apply; the samples
//! scraped live in the server's memory, not here.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::{Ctx, is_foreign_key};
use crate::model::check_name;
use crate::{Result, Store, StoreError, now};

/// A rule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRuleRecord {
    /// Its project's name.
    pub project: String,
    /// Its name (unique in the project).
    pub name: String,
    /// The rule as the server checked it (its JSON).
    pub spec: serde_json::Value,
    /// The YAML it came from.
    pub yaml: String,
    /// The file name the YAML came from.
    pub file: String,
    /// Who applied it last.
    pub by: String,
    /// When it was first applied.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What [`Store::put_metric_rule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleChange {
    /// There was no rule of that name.
    Created,
    /// The rule's spec or YAML changed.
    Updated,
    /// The same spec and YAML were stored already: nothing was written.
    Unchanged,
}

#[derive(sqlx::FromRow)]
struct RuleRow {
    project: String,
    name: String,
    spec: Json<serde_json::Value>,
    yaml: String,
    file: String,
    author: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl RuleRow {
    fn into_record(self) -> MetricRuleRecord {
        MetricRuleRecord {
            project: self.project,
            name: self.name,
            spec: self.spec.0,
            yaml: self.yaml,
            file: self.file,
            by: self.author,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// `SELECT` of a [`RuleRow`]; append the `WHERE` and `ORDER BY`.
macro_rules! rule_select {
    ($rest:literal) => {
        concat!(
            "SELECT p.name AS project, r.name, r.spec, r.yaml, r.file, r.author, r.created_at, \
             r.updated_at FROM metric_rules r JOIN projects p ON p.id = r.project_id ",
            $rest
        )
    };
}

impl Store {
    /// Stores rule `name` of `project` (replacing the one of that name); nothing is written
    /// when the same spec and YAML are stored already. `NotFound` for an unknown project.
    pub async fn put_metric_rule(
        &self,
        project: &str,
        name: &str,
        spec: &serde_json::Value,
        yaml: &str,
        file: &str,
        by: &str,
    ) -> Result<(MetricRuleRecord, RuleChange)> {
        check_name("metric rule", name)?;
        let p = self.project(project).await?;
        let existing = self.metric_rule(project, name).await.ok();
        if let Some(r) = &existing
            && &r.spec == spec
            && r.yaml == yaml
        {
            return Ok((r.clone(), RuleChange::Unchanged));
        }
        let what = || format!("store metric rule `{project}/{name}`");
        let at = now();
        let done = with_write!(self, c => sqlx::query(
            "INSERT INTO metric_rules (project_id, name, spec, yaml, file, author, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT (project_id, name) DO UPDATE SET spec = excluded.spec, \
             yaml = excluded.yaml, file = excluded.file, author = excluded.author, \
             updated_at = excluded.updated_at")
            .bind(p.id.text())
            .bind(name)
            .bind(Json(spec))
            .bind(yaml)
            .bind(file)
            .bind(by)
            .bind(at)
            .execute(c)
            .await
            .map(|_| ()));
        match done {
            Ok(()) => {}
            Err(e) if is_foreign_key(&e) => {
                return Err(StoreError::NotFound(format!("project `{project}`")));
            }
            Err(e) => return Err(e).ctx(what),
        }
        let change = if existing.is_some() { RuleChange::Updated } else { RuleChange::Created };
        Ok((self.metric_rule(project, name).await?, change))
    }

    /// Rule `name` of `project`.
    pub async fn metric_rule(&self, project: &str, name: &str) -> Result<MetricRuleRecord> {
        let what = || format!("get metric rule `{project}/{name}`");
        let row = with_db!(&self.db, c => sqlx::query_as::<_, RuleRow>(
            rule_select!("WHERE p.name = $1 AND r.name = $2"))
            .bind(project)
            .bind(name)
            .fetch_optional(c)
            .await)
        .ctx(what)?;
        row.map(RuleRow::into_record)
            .ok_or_else(|| StoreError::NotFound(format!("metric rule `{project}/{name}`")))
    }

    /// The rules of `project` (every project's when `None`), by project then name.
    pub async fn metric_rules(&self, project: Option<&str>) -> Result<Vec<MetricRuleRecord>> {
        let what = || "list metric rules".to_string();
        let rows = match project {
            Some(p) => with_db!(&self.db, c => sqlx::query_as::<_, RuleRow>(
                rule_select!("WHERE p.name = $1 ORDER BY p.name, r.name"))
                .bind(p)
                .fetch_all(c)
                .await),
            None => with_db!(&self.db, c => sqlx::query_as::<_, RuleRow>(
                rule_select!("ORDER BY p.name, r.name"))
                .fetch_all(c)
                .await),
        }
        .ctx(what)?;
        Ok(rows.into_iter().map(RuleRow::into_record).collect())
    }

    /// Removes rule `name` of `project`; `NotFound` if there is none.
    pub async fn delete_metric_rule(&self, project: &str, name: &str) -> Result<()> {
        let p = self.project(project).await?;
        let what = || format!("delete metric rule `{project}/{name}`");
        let done = with_write!(self, c => sqlx::query(
            "DELETE FROM metric_rules WHERE project_id = $1 AND name = $2")
            .bind(p.id.text())
            .bind(name)
            .execute(c)
            .await
            .map(|d| d.rows_affected()))
        .ctx(what)?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("metric rule `{project}/{name}`")));
        }
        Ok(())
    }
}
