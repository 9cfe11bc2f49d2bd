//! `Follow`: the stream returned by `LogStore::follow`, replaying the file and then the live
//! channel with no gap and no duplicate.
//!
//! How: the follower subscribes to the channel and notes the last stored seq in one step under
//! the log's mutex (`KeyLog::snapshot`). Everything up to that seq is in the file, everything
//! after it is in the channel. It replays the file in batches, then the channel, and drops any
//! record whose seq it has already passed. If it lags behind the channel, it takes a new
//! snapshot and replays the file again from where it was.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::{self, BoxStream};
use tokio::sync::broadcast::error::RecvError;

use crate::store::{Event, KeyLog, Snapshot};
use crate::{LogError, Record};

/// Records read from the file per blocking read while replaying.
const REPLAY_BATCH: usize = 1024;

/// A live view of one log: yields `Ok(record)` for every record from the starting seq on, in
/// order and exactly once, and ends after the log is closed (or after an `Err`).
///
/// Dropping it unsubscribes.
pub struct Follow {
    inner: BoxStream<'static, Result<Record, LogError>>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow").finish_non_exhaustive()
    }
}

struct State {
    log: Arc<KeyLog>,
    /// The next seq to yield; anything below it was yielded or not wanted.
    next: u64,
    snapshot: Snapshot,
    buffer: VecDeque<Record>,
    done: bool,
}

impl Follow {
    pub(crate) fn new(log: Arc<KeyLog>, from_seq: u64, snapshot: Snapshot) -> Follow {
        let state =
            State { log, next: from_seq.max(1), snapshot, buffer: VecDeque::new(), done: false };
        Follow { inner: Box::pin(stream::unfold(state, step)) }
    }
}

impl Stream for Follow {
    type Item = Result<Record, LogError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

async fn step(mut st: State) -> Option<(Result<Record, LogError>, State)> {
    loop {
        if st.done {
            return None;
        }
        if let Some(record) = st.buffer.pop_front() {
            if record.seq < st.next {
                continue;
            }
            st.next = record.seq + 1;
            return Some((Ok(record), st));
        }
        if st.next <= st.snapshot.last_seq {
            let log = Arc::clone(&st.log);
            let from = st.next;
            let batch = tokio::task::spawn_blocking(move || log.read(from, REPLAY_BATCH)).await;
            match batch {
                Ok(Ok(records)) if records.is_empty() => {
                    // Nothing readable up to the snapshot (should not happen): go live rather
                    // than loop.
                    st.snapshot.last_seq = 0;
                }
                Ok(Ok(records)) => st.buffer.extend(records),
                Ok(Err(e)) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
                Err(join) => {
                    st.done = true;
                    let path = st.log.path().to_path_buf();
                    let e = LogError::io(path)(io::Error::other(join.to_string()));
                    return Some((Err(e), st));
                }
            }
            continue;
        }
        if st.snapshot.closed {
            return None;
        }
        match st.snapshot.rx.recv().await {
            Ok(Event::Line(record)) => st.buffer.push_back(record),
            Ok(Event::Closed) | Err(RecvError::Closed) => return None,
            Err(RecvError::Lagged(_)) => match st.log.snapshot() {
                Ok(snapshot) => st.snapshot = snapshot,
                Err(e) => {
                    st.done = true;
                    return Some((Err(e), st));
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_is_send_and_static() {
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Follow>();
    }
}
