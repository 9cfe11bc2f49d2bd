//! A short history of the queue and the pool for the web UI's plots: one sample every
//! [`INTERVAL`], the last [`KEEP`] kept in memory (lost on restart; Prometheus at `/metrics`
//! is the long-term record).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use kiln_api::QueueSample;
use kiln_engine::RunState;
use tokio_util::sync::CancellationToken;

use crate::App;

/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Samples kept: one hour.
pub const KEEP: usize = 720;

/// The ring of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<QueueSample>>,
}

impl History {
    /// Adds a sample, dropping the oldest beyond [`KEEP`].
    pub fn record(&self, sample: QueueSample) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.len() == KEEP {
            s.pop_front();
        }
        s.push_back(sample);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<QueueSample> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }
}

/// The queue and the pool now.
pub async fn sample(app: &App) -> QueueSample {
    let pending_runs = match app.store.run_state_counts().await {
        Ok(counts) => counts.iter().filter(|(s, _)| *s == RunState::Pending).map(|(_, n)| *n).sum(),
        Err(e) => {
            tracing::warn!("stats: count runs: {e}");
            0
        }
    };
    let agents = app.dispatch.agents();
    QueueSample {
        time: Utc::now(),
        queued_jobs: app.dispatch.queue_len() as u64,
        pending_runs,
        busy_slots: agents.iter().map(|a| u64::from(a.running.min(a.capacity))).sum(),
        total_slots: agents.iter().map(|a| u64::from(a.capacity)).sum(),
        agents: agents.len() as u64,
    }
}

/// Samples every [`INTERVAL`] until `stop`.
pub fn spawn_sampler(app: App, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let s = sample(&app).await;
            app.stats.record(s);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: u64) -> QueueSample {
        QueueSample {
            time: Utc::now(),
            queued_jobs: n,
            pending_runs: 0,
            busy_slots: 0,
            total_slots: 0,
            agents: 0,
        }
    }

    #[test]
    fn the_ring_keeps_the_last_hour() {
        let h = History::default();
        for n in 0..(KEEP as u64 + 10) {
            h.record(at(n));
        }
        let s = h.samples();
        assert_eq!(s.len(), KEEP);
        assert_eq!(s[0].queued_jobs, 10, "the oldest ten were dropped");
        assert_eq!(s[KEEP - 1].queued_jobs, KEEP as u64 + 9);
    }
}
