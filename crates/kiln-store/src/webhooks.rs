//! Webhook deliveries from git providers: one row per delivery id whose signature or token
//! checked out. Claiming an id is an insert, so of two deliveries with the same id (a replay,
//! or a provider's retry racing the first) exactly one goes on; the runs it is to start are
//! recorded in the same transaction (the trigger outbox, `intents.rs`).

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::error::Ctx;
use crate::intents::IntentTx;
use crate::{Result, RunIntent, Store, now};

/// A delivery to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// `github`, `gitlab` or `gitea`.
    pub provider: String,
    /// The provider's delivery id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`, …).
    pub id: String,
    /// The provider's event name.
    pub event: String,
    /// The repository it is about (`owner/name`).
    pub repository: String,
}

/// A recorded delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Provider.
    pub provider: String,
    /// Delivery id.
    pub id: String,
    /// Event name.
    pub event: String,
    /// Repository.
    pub repository: String,
    /// What Kiln did with it.
    pub outcome: String,
    /// Runs it started (`project/pipeline#number`).
    pub runs: Vec<String>,
    /// When it first arrived.
    pub received_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    provider: String,
    id: String,
    event: String,
    repository: String,
    outcome: String,
    runs: Json<Vec<String>>,
    received_at: DateTime<Utc>,
}

impl From<DeliveryRow> for Delivery {
    fn from(r: DeliveryRow) -> Self {
        Delivery {
            provider: r.provider,
            id: r.id,
            event: r.event,
            repository: r.repository,
            outcome: r.outcome,
            runs: r.runs.0,
            received_at: r.received_at,
        }
    }
}

impl Store {
    /// Records a delivery as being handled and, in the same transaction, the runs it is to
    /// start (`intents`, see [`Store::start_intent`]). `None`: it is new and the caller goes
    /// on; `Some(earlier)`: this id was delivered before (a replay), nothing is changed.
    pub async fn claim_delivery(
        &self,
        new: &NewDelivery,
        intents: &[RunIntent],
    ) -> Result<Option<Delivery>> {
        let what = || format!("record {} delivery {}", new.provider, new.id);
        let inserted = with_tx!(self, what, tx => {
            let inserted = sqlx::query(
                "INSERT INTO webhook_deliveries (provider, id, event, repository, outcome, runs, \
                 received_at) VALUES ($1, $2, $3, $4, 'received', $5, $6) \
                 ON CONFLICT (provider, id) DO NOTHING")
                .bind(&new.provider)
                .bind(&new.id)
                .bind(&new.event)
                .bind(&new.repository)
                .bind(Json(Vec::<String>::new()))
                .bind(now())
                .execute(&mut *tx)
                .await
                .ctx(what)?
                .rows_affected();
            if inserted == 1 {
                tx.insert_intents(intents).await?;
            }
            inserted
        });
        if inserted == 1 {
            return Ok(None);
        }
        Ok(Some(self.delivery(&new.provider, &new.id).await?.ok_or_else(|| {
            crate::StoreError::NotFound(format!("{} delivery {}", new.provider, new.id))
        })?))
    }

    /// Records what a claimed delivery did.
    pub async fn finish_delivery(
        &self,
        provider: &str,
        id: &str,
        outcome: &str,
        runs: &[String],
    ) -> Result<()> {
        let what = || format!("record the outcome of {provider} delivery {id}");
        with_write!(self, p => sqlx::query(
            "UPDATE webhook_deliveries SET outcome = $3, runs = $4 WHERE provider = $1 AND id = $2")
            .bind(provider)
            .bind(id)
            .bind(outcome)
            .bind(Json(runs))
            .execute(p)
            .await
            .map(|_| ()))
        .ctx(what)?;
        Ok(())
    }

    /// One delivery, if recorded.
    pub async fn delivery(&self, provider: &str, id: &str) -> Result<Option<Delivery>> {
        let what = || format!("get {provider} delivery {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, DeliveryRow>(
            "SELECT provider, id, event, repository, outcome, runs, received_at \
             FROM webhook_deliveries WHERE provider = $1 AND id = $2")
            .bind(provider)
            .bind(id)
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        Ok(row.map(Delivery::from))
    }

    /// The latest deliveries, newest first (at most `limit`).
    pub async fn deliveries(&self, limit: u32) -> Result<Vec<Delivery>> {
        let what = || "list webhook deliveries".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, DeliveryRow>(
            "SELECT provider, id, event, repository, outcome, runs, received_at \
             FROM webhook_deliveries ORDER BY received_at DESC, id LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(p)
            .await)
        .ctx(what)?;
        Ok(rows.into_iter().map(Delivery::from).collect())
    }
}
