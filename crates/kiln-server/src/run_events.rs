//! The feed of run events (started, waiting, ended) that `GET /api/v1/runs/events` streams.
//! The store decides and records them with each step (`Store::record_step_notified`, which
//! also queues the project's webhooks); the coordinator publishes what was recorded here,
//! after the commit. A short ring of recent events lets a client that reconnects with
//! `Last-Event-ID` resume without a gap, as long as it was away briefly and the server did
//! not restart (ids are `<boot>-<n>`; an id of another boot replays nothing).

use std::collections::VecDeque;
use std::sync::Mutex;

use kiln_store::RunNotice;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Recent events kept for resuming clients.
const RING: usize = 1024;

/// One published event and its feed id.
#[derive(Debug, Clone)]
pub struct FeedItem {
    /// `<boot>-<n>`: the SSE event id.
    pub id: String,
    /// Position in this boot's feed, from 1.
    pub n: u64,
    /// The event.
    pub notice: RunNotice,
}

#[derive(Debug, Default)]
struct Ring {
    next: u64,
    items: VecDeque<FeedItem>,
}

/// The in-process feed of run events.
#[derive(Debug)]
pub struct RunFeed {
    boot: String,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<FeedItem>,
    closed: CancellationToken,
}

impl Default for RunFeed {
    fn default() -> Self {
        RunFeed::new()
    }
}

impl RunFeed {
    /// An empty feed, its ids prefixed by this boot's time.
    pub fn new() -> RunFeed {
        RunFeed {
            boot: chrono::Utc::now().timestamp_millis().to_string(),
            ring: Mutex::new(Ring { next: 1, items: VecDeque::new() }),
            tx: broadcast::channel(RING).0,
            closed: CancellationToken::new(),
        }
    }

    /// Ends every stream of the feed (the server is stopping: it waits for open connections).
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Cancelled once the feed is closed.
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Publishes recorded events, in order.
    pub fn publish(&self, notices: Vec<RunNotice>) {
        if notices.is_empty() {
            return;
        }
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        for notice in notices {
            let n = ring.next;
            ring.next += 1;
            let item = FeedItem { id: format!("{}-{n}", self.boot), n, notice };
            if ring.items.len() == RING {
                ring.items.pop_front();
            }
            ring.items.push_back(item.clone());
            // Sent under the lock: subscribers see the ring's order.
            let _ = self.tx.send(item);
        }
    }

    /// Subscribes: the kept events after `last_id` (a `Last-Event-ID` of this boot; none for
    /// anything else), then a receiver of the events published from now on. Items of the
    /// receiver numbered at or below the last replayed one are duplicates to skip.
    pub fn subscribe(
        &self,
        last_id: Option<&str>,
    ) -> (Vec<FeedItem>, broadcast::Receiver<FeedItem>) {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.tx.subscribe();
        let after = last_id
            .and_then(|id| id.split_once('-'))
            .filter(|(boot, _)| *boot == self.boot)
            .and_then(|(_, n)| n.parse::<u64>().ok());
        let replay = match after {
            Some(after) => ring.items.iter().filter(|i| i.n > after).cloned().collect(),
            None => Vec::new(),
        };
        (replay, rx)
    }
}
