//! The queue and pool history the web UI plots (kept by `crate::stats`).

use axum::Json;
use axum::extract::State;
use kiln_api::{ErrorBody, QueueHistory};

use crate::App;
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::stats::{INTERVAL, sample};

/// Queue depth and pool use over the last hour: one sample every 5 s, oldest first, and a
/// last one taken now.
#[utoipa::path(get, path = "/api/v1/stats/queue", tag = "server",
    responses((status = 200, body = QueueHistory), (status = 401, body = ErrorBody)))]
pub async fn queue(State(app): State<App>, _caller: Caller) -> ApiResult<Json<QueueHistory>> {
    let mut samples = app.stats.samples();
    samples.push(sample(&app).await);
    Ok(Json(QueueHistory { interval_ms: INTERVAL.as_millis() as u64, samples }))
}
