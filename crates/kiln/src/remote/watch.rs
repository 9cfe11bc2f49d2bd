//! `kiln runs --watch`: after the table, one line per run event as it happens (started,
//! waiting for approval, ended): time, run, state, reason. Read from the server's SSE feed
//! `GET /api/v1/runs/events`; a dropped connection is resumed with `Last-Event-ID`.

use std::time::Duration;

use futures::StreamExt;
use kiln_api::RunEvent;
use kiln_client::Client;

use super::{CmdResult, local_time, outln, styled_state};

/// Which events `kiln runs --watch` prints.
#[derive(Debug, Clone, Default)]
pub struct WatchFilter {
    /// Only this project's runs (asked of the server).
    pub project: Option<String>,
    /// Only this pipeline's.
    pub pipeline: Option<String>,
    /// Only events leaving a run in this state.
    pub state: Option<String>,
}

impl WatchFilter {
    fn keeps(&self, e: &RunEvent) -> bool {
        self.pipeline.as_ref().is_none_or(|p| &e.run.pipeline == p)
            && self.state.as_ref().is_none_or(|s| &e.run.state == s)
    }
}

/// One line of the watch: `2026-11-22 14:02:03  demo/ci#3  failure  job `unit` failed`.
pub fn line(e: &RunEvent) -> String {
    let run = format!("{}/{}#{}", e.run.project, e.run.pipeline, e.run.number);
    let state = styled_state(&e.run.state);
    let pad = " ".repeat(9usize.saturating_sub(e.run.state.len()));
    let reason = e.run.reason.as_deref().unwrap_or("");
    format!("{}  {run}  {state}{pad}{reason}", local_time(e.at)).trim_end().to_string()
}

/// Prints run events until interrupted (JSON lines with `json`).
pub async fn watch(client: &Client, filter: WatchFilter, json: bool) -> CmdResult {
    let mut last: Option<String> = None;
    let mut first = true;
    loop {
        let events = match client.run_events(filter.project.as_deref(), last.as_deref()).await {
            Ok(s) => s,
            Err(e) if first => return Err(e.into()),
            Err(e) => {
                eprintln!("run events: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if first {
            eprintln!("watching run events (Ctrl-C to stop)");
            first = false;
        }
        let mut events = std::pin::pin!(events);
        while let Some(item) = events.next().await {
            match item {
                Ok((id, e)) => {
                    if !id.is_empty() {
                        last = Some(id);
                    }
                    if !filter.keeps(&e) {
                        continue;
                    }
                    if json {
                        outln!("{}", serde_json::to_string(&e).unwrap_or_default());
                    } else {
                        outln!("{}", line(&e));
                    }
                }
                Err(e) => {
                    eprintln!("run events: {e}");
                    break;
                }
            }
        }
        eprintln!("the server closed the run events; reconnecting");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
