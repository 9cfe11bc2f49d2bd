//! Nodes of the resource pool: what each agent declared when it last registered, whether an
//! operator disabled it, and the attributes operators set on it. Running work, reservations and
//! heartbeats live in the server's memory; this is what must outlive a restart.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::Ctx;
use crate::{Result, Store, StoreError, now};

/// A node as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// The agent's name (unique).
    pub name: String,
    /// What the agent declared when it last registered (the server's JSON).
    pub facts: serde_json::Value,
    /// Set by an operator: no new work is placed there.
    pub disabled: bool,
    /// Attributes operators set (JSON values: string, number or array of strings).
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// First registration.
    pub registered_at: DateTime<Utc>,
    /// Latest registration.
    pub last_seen: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct NodeRow {
    name: String,
    facts: Json<serde_json::Value>,
    disabled: bool,
    registered_at: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AttrRow {
    node: String,
    key: String,
    value: Json<serde_json::Value>,
}

fn assemble(rows: Vec<NodeRow>, attrs: Vec<AttrRow>) -> Vec<NodeRecord> {
    let mut by_node: BTreeMap<String, BTreeMap<String, serde_json::Value>> = BTreeMap::new();
    for a in attrs {
        by_node.entry(a.node).or_default().insert(a.key, a.value.0);
    }
    rows.into_iter()
        .map(|r| NodeRecord {
            attributes: by_node.remove(&r.name).unwrap_or_default(),
            name: r.name,
            facts: r.facts.0,
            disabled: r.disabled,
            registered_at: r.registered_at,
            last_seen: r.last_seen,
        })
        .collect()
}

/// What [`Store::update_node`] changes.
#[derive(Debug, Clone, Default)]
pub struct NodeChange {
    /// Attributes to set.
    pub set: BTreeMap<String, serde_json::Value>,
    /// Attributes to remove.
    pub unset: Vec<String>,
    /// New disabled flag, if it changes.
    pub disabled: Option<bool>,
}

impl Store {
    /// Records that agent `name` registered with `facts`: creates the node, or replaces its
    /// facts and moves `last_seen` (its disabled flag and operator attributes stay).
    pub async fn register_node(&self, name: &str, facts: &serde_json::Value) -> Result<NodeRecord> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid("a node needs a name".into()));
        }
        let what = || format!("register node `{name}`");
        let at = now();
        with_write!(self, p => sqlx::query(
            "INSERT INTO nodes (name, facts, disabled, registered_at, last_seen) \
             VALUES ($1, $2, FALSE, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET facts = excluded.facts, last_seen = excluded.last_seen")
            .bind(name)
            .bind(Json(facts))
            .bind(at)
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)?;
        self.node(name).await
    }

    /// Every node, by name, with its operator attributes.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let what = || "list nodes".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, NodeRow>(
            "SELECT name, facts, disabled, registered_at, last_seen FROM nodes ORDER BY name")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        let attrs = with_db!(&self.db, p => sqlx::query_as::<_, AttrRow>(
            "SELECT node, key, value FROM node_attributes ORDER BY node, key")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(assemble(rows, attrs))
    }

    /// One node. `NotFound` if no agent of that name ever registered.
    pub async fn node(&self, name: &str) -> Result<NodeRecord> {
        let what = || format!("load node `{name}`");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, NodeRow>(
            "SELECT name, facts, disabled, registered_at, last_seen FROM nodes WHERE name = $1")
            .bind(name)
            .fetch_optional(p)
            .await)
        .ctx(what)?
        .ok_or_else(|| StoreError::NotFound(format!("node `{name}`")))?;
        let attrs = with_db!(&self.db, p => sqlx::query_as::<_, AttrRow>(
            "SELECT node, key, value FROM node_attributes WHERE node = $1 ORDER BY key")
            .bind(name)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(assemble(vec![row], attrs).remove(0))
    }

    /// Sets and removes operator attributes of node `name` and changes its disabled flag, in
    /// one transaction. `NotFound` for an unknown node (nothing changes).
    pub async fn update_node(&self, name: &str, change: &NodeChange) -> Result<NodeRecord> {
        let what = || format!("update node `{name}`");
        let at = now();
        with_tx!(self, what, tx => {
            let found = sqlx::query("UPDATE nodes SET disabled = COALESCE($2, disabled) WHERE name = $1")
                .bind(name)
                .bind(change.disabled)
                .execute(&mut *tx)
                .await
                .ctx(what)?
                .rows_affected();
            if found == 0 {
                return Err(StoreError::NotFound(format!("node `{name}`")));
            }
            for key in &change.unset {
                sqlx::query("DELETE FROM node_attributes WHERE node = $1 AND key = $2")
                    .bind(name)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
            for (key, value) in &change.set {
                sqlx::query(
                    "INSERT INTO node_attributes (node, key, value, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (node, key) DO UPDATE SET value = excluded.value, \
                     updated_at = excluded.updated_at")
                    .bind(name)
                    .bind(key)
                    .bind(Json(value))
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .ctx(what)?;
            }
        });
        self.node(name).await
    }

    /// Forgets node `name` and its attributes. `NotFound` for an unknown node.
    pub async fn delete_node(&self, name: &str) -> Result<()> {
        let what = || format!("delete node `{name}`");
        let n = with_write!(self, p => sqlx::query("DELETE FROM nodes WHERE name = $1")
            .bind(name)
            .execute(p)
            .await
            .map(|d| d.rows_affected()))
        .ctx(what)?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("node `{name}`")));
        }
        Ok(())
    }
}
