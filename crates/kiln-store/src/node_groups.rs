//! The elastic pool (migration 0027): node groups as applied, the nodes the autoscaler asked
//! their providers for (so a restart neither asks twice nor forgets a removal), and the
//! autoscaler's events with their reasons.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::Ctx;
use crate::{Result, Store, StoreError, now};

/// A node group as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeGroupRecord {
    /// Its name.
    pub name: String,
    /// Its spec as the server checked it (the API's JSON).
    pub spec: serde_json::Value,
    /// When it was last applied with a change.
    pub updated_at: DateTime<Utc>,
}

/// A node the autoscaler asked a provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolNodeRecord {
    /// The node's (agent's) name.
    pub name: String,
    /// Its group.
    pub group: String,
    /// `coming`, `ready`, `draining` or `removing`.
    pub state: String,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// When its state last changed.
    pub changed_at: DateTime<Utc>,
}

/// One of the autoscaler's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolEventRecord {
    /// Increasing id (the order they happened in).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The group it is about.
    pub group: String,
    /// What happened (`scale-out`, `scale-in`, `provider-failed`, ...).
    pub kind: String,
    /// The nodes it names.
    pub nodes: Vec<String>,
    /// Why, for people.
    pub reason: String,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    name: String,
    spec: Json<serde_json::Value>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct PoolNodeRow {
    name: String,
    node_group: String,
    state: String,
    requested_at: DateTime<Utc>,
    changed_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    at: DateTime<Utc>,
    node_group: String,
    kind: String,
    nodes: Json<Vec<String>>,
    reason: String,
}

impl EventRow {
    fn into_record(self) -> PoolEventRecord {
        PoolEventRecord {
            id: self.id,
            at: self.at,
            group: self.node_group,
            kind: self.kind,
            nodes: self.nodes.0,
            reason: self.reason,
        }
    }
}

const POOL_NODE_STATES: [&str; 4] = ["coming", "ready", "draining", "removing"];

impl Store {
    /// Stores node group `name` with `spec`, replacing what it had; `false` when the same
    /// spec was stored already (nothing written).
    pub async fn put_node_group(&self, name: &str, spec: &serde_json::Value) -> Result<bool> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a node group needs a name".into()));
        }
        let what = || format!("store node group `{name}`");
        let old = self.node_groups().await?.into_iter().find(|g| g.name == name);
        if old.is_some_and(|g| &g.spec == spec) {
            return Ok(false);
        }
        with_write!(self, p => sqlx::query(
            "INSERT INTO node_groups (name, spec, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at")
            .bind(name)
            .bind(Json(spec))
            .bind(now())
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)?;
        Ok(true)
    }

    /// Every node group, by name.
    pub async fn node_groups(&self) -> Result<Vec<NodeGroupRecord>> {
        let what = || "list node groups".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, GroupRow>(
            "SELECT name, spec, updated_at FROM node_groups ORDER BY name")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows
            .into_iter()
            .map(|r| NodeGroupRecord { name: r.name, spec: r.spec.0, updated_at: r.updated_at })
            .collect())
    }

    /// Forgets node group `name` (its nodes' records stay until they are removed).
    /// `NotFound` for an unknown group.
    pub async fn delete_node_group(&self, name: &str) -> Result<()> {
        let what = || format!("delete node group `{name}`");
        let n = with_write!(self, p => sqlx::query("DELETE FROM node_groups WHERE name = $1")
            .bind(name)
            .execute(p)
            .await
            .map(|d| d.rows_affected()))
        .ctx(what)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("node group `{name}`")));
        }
        Ok(())
    }

    /// Records node `name` of `group` in `state` (a new one is asked for now; a known one
    /// keeps its group and request time).
    pub async fn set_pool_node(&self, name: &str, group: &str, state: &str) -> Result<()> {
        if !POOL_NODE_STATES.contains(&state) {
            return Err(StoreError::Invalid(format!(
                "pool node state `{state}`: expected one of {}",
                POOL_NODE_STATES.join(", ")
            )));
        }
        let what = || format!("record pool node `{name}` as {state}");
        let at = now();
        with_write!(self, p => sqlx::query(
            "INSERT INTO pool_nodes (name, node_group, state, requested_at, changed_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (name) DO UPDATE SET state = excluded.state, changed_at = excluded.changed_at")
            .bind(name)
            .bind(group)
            .bind(state)
            .bind(at)
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)
    }

    /// Every node asked for and not removed yet, by name.
    pub async fn pool_nodes(&self) -> Result<Vec<PoolNodeRecord>> {
        let what = || "list pool nodes".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, PoolNodeRow>(
            "SELECT name, node_group, state, requested_at, changed_at FROM pool_nodes ORDER BY name")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows
            .into_iter()
            .map(|r| PoolNodeRecord {
                name: r.name,
                group: r.node_group,
                state: r.state,
                requested_at: r.requested_at,
                changed_at: r.changed_at,
            })
            .collect())
    }

    /// Forgets pool node `name` (removed, or never registered); nothing if unknown.
    pub async fn delete_pool_node(&self, name: &str) -> Result<()> {
        let what = || format!("forget pool node `{name}`");
        with_write!(self, p => sqlx::query("DELETE FROM pool_nodes WHERE name = $1")
            .bind(name)
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)
    }

    /// Appends an event of `group`.
    pub async fn add_pool_event(
        &self,
        group: &str,
        kind: &str,
        nodes: &[String],
        reason: &str,
    ) -> Result<PoolEventRecord> {
        let what = || format!("record pool event `{kind}` of group `{group}`");
        let row = with_write!(self, p => sqlx::query_as::<_, EventRow>(
            "INSERT INTO pool_events (at, node_group, kind, nodes, reason) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id, at, node_group, kind, nodes, reason")
            .bind(now())
            .bind(group)
            .bind(kind)
            .bind(Json(nodes))
            .bind(reason)
            .fetch_one(p)
            .await)
        .ctx(what)?;
        Ok(row.into_record())
    }

    /// The latest `limit` events (of `group` when given), oldest first; only those after
    /// id `after` when given.
    pub async fn pool_events(
        &self,
        group: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PoolEventRecord>> {
        let what = || "list pool events".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, EventRow>(
            "SELECT id, at, node_group, kind, nodes, reason FROM pool_events \
             WHERE ($1 IS NULL OR node_group = $1) AND id > $2 ORDER BY id DESC LIMIT $3")
            .bind(group)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        let mut events: Vec<PoolEventRecord> =
            rows.into_iter().map(EventRow::into_record).collect();
        events.reverse();
        Ok(events)
    }
}
