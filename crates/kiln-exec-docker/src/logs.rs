//! Following the main container's output: Docker log frames to [`LogLine`]s, and the liveness
//! watch that turns a silent engine into an error.
//!
//! Invariant: a log stream is never cut by a timeout; it ends when the engine closes it (the
//! container exited and all output was replayed), or with an error when the connection breaks
//! or the engine stops answering pings.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use kiln_exec::lines::OutputSplitter;
use kiln_exec::{ExecError, LogLine, LogStream, Stream};
use tokio::sync::mpsc;

use crate::error::{cause, engine, timed_out};

/// Lines buffered between the reader task and the consumer.
const CHANNEL_LINES: usize = 1024;

/// Consecutive failed pings after which the engine counts as gone.
const PINGS_BEFORE_GIVING_UP: u32 = 3;

/// Resolves once the engine has failed [`PINGS_BEFORE_GIVING_UP`] pings in a row, spaced by
/// `interval` and each allowed `interval` to answer. Never resolves while the engine answers.
pub(crate) async fn engine_lost(docker: Docker, interval: Duration) -> ExecError {
    let mut failures = 0;
    let mut last = String::new();
    loop {
        tokio::time::sleep(interval).await;
        match tokio::time::timeout(interval, docker.ping()).await {
            Ok(Ok(_)) => failures = 0,
            Ok(Err(err)) => {
                failures += 1;
                last = cause(&err);
            }
            Err(_) => {
                failures += 1;
                last = "ping timed out".to_owned();
            }
        }
        if failures >= PINGS_BEFORE_GIVING_UP {
            return ExecError::Engine(format!(
                "docker: the engine stopped answering ({failures} pings failed, last: {last})"
            ));
        }
    }
}

/// Splits one log frame (`<RFC 3339 time> <bytes>`, as sent with `timestamps=1`) into its time
/// and payload. A frame without a readable time keeps all its bytes and gets `None`.
pub(crate) fn split_timestamp(frame: &[u8]) -> (Option<DateTime<Utc>>, &[u8]) {
    let Some(space) = frame.iter().position(|&b| b == b' ') else {
        return (None, frame);
    };
    let parsed = std::str::from_utf8(&frame[..space])
        .ok()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    match parsed {
        Some(time) => (Some(time.with_timezone(&Utc)), &frame[space + 1..]),
        None => (None, frame),
    }
}

/// One frame of the engine's log stream: which stream, and `<time> <bytes>`.
type Frame = (Stream, Bytes);

/// How many of the last log entries the catch-up read asks for first.
const CATCH_UP_TAIL: &str = "100";

/// What [`follow`] needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Follow {
    /// Client.
    pub docker: Docker,
    /// Container id.
    pub container: String,
    /// How errors refer to the container.
    pub name: String,
    /// Ping interval of the liveness watch.
    pub liveness: Duration,
    /// Limit for the catch-up read.
    pub call_timeout: Duration,
}

/// Follows the container's stdout and stderr from the beginning, with the engine's
/// timestamps.
///
/// Must be called after the container started: the engine replays everything already logged
/// (json-file) and then follows, so output of a container that exited before this call is
/// not lost. When the followed stream ends, a catch-up read delivers any entries the engine
/// logged after the follower stopped: Docker 20.10 sometimes ends `follow` before the last
/// entry of an exiting container (seen for a final line without newline, ~7 % of runs).
pub(crate) fn follow(follow: Follow) -> LogStream {
    let (tx, rx) = mpsc::channel::<Result<LogLine, ExecError>>(CHANNEL_LINES);
    tokio::spawn(async move {
        let mut out = Output { tx, splitter: OutputSplitter::new(), last: None };
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            ..Default::default()
        };
        let mut frames = follow.docker.logs(&follow.container, Some(options));
        let lost = engine_lost(follow.docker.clone(), follow.liveness);
        tokio::pin!(lost);
        loop {
            let frame: Option<Result<LogOutput, ExecError>> = tokio::select! {
                frame = frames.next() => frame.map(|r| {
                    r.map_err(|e| engine(format_args!("reading the logs of {}", follow.name), &e))
                }),
                err = &mut lost => Some(Err(err)),
                () = out.tx.closed() => return,
            };
            match frame {
                None => break,
                Some(Ok(output)) => {
                    if let Some(frame) = as_frame(output)
                        && !out.push(frame).await
                    {
                        return;
                    }
                }
                Some(Err(err)) => {
                    out.finish(Some(err)).await;
                    return;
                }
            }
        }
        match catch_up(&follow, out.last.as_ref()).await {
            Ok(missed) => {
                for frame in missed {
                    if !out.push(frame).await {
                        return;
                    }
                }
            }
            // Typically the container was removed meanwhile: nothing more to read.
            Err(e) => tracing::debug!(container = %follow.name, error = %e, "log catch-up"),
        }
        out.finish(None).await;
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
        .boxed()
}

/// Where frames go: split into lines and sent to the consumer.
struct Output {
    tx: mpsc::Sender<Result<LogLine, ExecError>>,
    splitter: OutputSplitter,
    /// The last frame pushed, to find where the catch-up read resumes.
    last: Option<Frame>,
}

impl Output {
    /// Splits `frame` into lines and sends them; `false` when the consumer is gone.
    async fn push(&mut self, frame: Frame) -> bool {
        let (time, payload) = split_timestamp(&frame.1);
        let lines = match time {
            Some(time) => self.splitter.push_at(frame.0, payload, time),
            None => self.splitter.push(frame.0, payload),
        };
        self.last = Some(frame);
        for line in lines {
            if self.tx.send(Ok(line)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Sends the partial last lines, then `err` if any.
    async fn finish(mut self, err: Option<ExecError>) {
        for line in self.splitter.finish() {
            if self.tx.send(Ok(line)).await.is_err() {
                return;
            }
        }
        if let Some(err) = err {
            let _ = self.tx.send(Err(err)).await;
        }
    }
}

/// The frame in a log output, if it is stdout or stderr (without a TTY or stdin the engine
/// sends nothing else).
fn as_frame(output: LogOutput) -> Option<Frame> {
    match output {
        LogOutput::StdOut { message } => Some((Stream::Stdout, message)),
        LogOutput::StdErr { message } => Some((Stream::Stderr, message)),
        LogOutput::StdIn { .. } | LogOutput::Console { .. } => None,
    }
}

/// Entries logged after `last` (all of them when `last` is `None`), read without `follow`:
/// first among the last [`CATCH_UP_TAIL`] entries, else among all.
async fn catch_up(follow: &Follow, last: Option<&Frame>) -> Result<Vec<Frame>, ExecError> {
    for tail in [CATCH_UP_TAIL, "all"] {
        if last.is_none() && tail != "all" {
            continue;
        }
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: tail.to_owned(),
            ..Default::default()
        };
        let what = format!("catching up on the logs of {}", follow.name);
        let read = follow.docker.logs(&follow.container, Some(options)).collect::<Vec<_>>();
        let read = tokio::time::timeout(follow.call_timeout, read)
            .await
            .map_err(|_| timed_out(&what, follow.call_timeout))?;
        let mut frames = Vec::with_capacity(read.len());
        for output in read {
            frames.extend(as_frame(output.map_err(|e| engine(&what, &e))?));
        }
        match last {
            None => return Ok(frames),
            Some(last) => {
                if let Some(at) = frames.iter().rposition(|f| f == last) {
                    return Ok(frames.split_off(at + 1));
                }
            }
        }
    }
    // The last frame seen is not in the log: nothing can be placed after it.
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use bollard::API_DEFAULT_VERSION;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{UnixListener, UnixStream};

    use super::*;

    /// What the fake engine does after sending the first log frame.
    #[derive(Clone, Copy)]
    enum AfterFirstFrame {
        /// Closes the connection mid-body, as a dying dockerd does.
        Close,
        /// Sends nothing more and stops answering pings, as a frozen dockerd does.
        Freeze,
        /// Ends the stream cleanly, but a later read without `follow` also holds a last
        /// line without newline, as Docker 20.10 sometimes does.
        EndEarly,
    }

    /// A fake engine on a unix socket: answers pings until frozen, and sends one log frame.
    async fn fake_engine(socket: &Path, after: AfterFirstFrame) {
        let listener = UnixListener::bind(socket).expect("bind the fake engine's socket");
        let frozen = Arc::new(AtomicBool::new(false));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, after, frozen.clone()));
            }
        });
    }

    async fn serve(mut conn: UnixStream, after: AfterFirstFrame, frozen: Arc<AtomicBool>) {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head);
        let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
        if path.ends_with("/_ping") {
            if frozen.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK").await;
            return;
        }
        let catching_up = path.contains("follow=false");
        let mut body = frame(b"2024-05-01T10:00:00.123456789Z hello\n");
        if catching_up {
            body.extend(frame(b"2024-05-01T10:00:00.2Z tail"));
        }
        let mut response =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream\r\n\
            Transfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        response.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        response.extend_from_slice(&body);
        response.extend_from_slice(b"\r\n");
        if catching_up {
            response.extend_from_slice(b"0\r\n\r\n");
            let _ = conn.write_all(&response).await;
            return;
        }
        let _ = conn.write_all(&response).await;
        match after {
            AfterFirstFrame::Close => drop(conn),
            AfterFirstFrame::Freeze => {
                frozen.store(true, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            AfterFirstFrame::EndEarly => {
                let _ = conn.write_all(b"0\r\n\r\n").await;
            }
        }
    }

    /// A stdout frame of the multiplexed stream.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![1u8, 0, 0, 0];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    async fn collect_with_fake(after: AfterFirstFrame) -> Vec<Result<LogLine, ExecError>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("docker.sock");
        fake_engine(&socket, after).await;
        let path = socket.to_str().expect("utf-8 path");
        let docker =
            Docker::connect_with_unix(path, 5, API_DEFAULT_VERSION).expect("client for the fake");
        let stream = follow(Follow {
            docker,
            container: "c1".to_owned(),
            name: "c1".to_owned(),
            liveness: Duration::from_millis(100),
            call_timeout: Duration::from_secs(5),
        });
        tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the log stream must end, not hang")
    }

    #[tokio::test]
    async fn a_broken_connection_ends_the_log_stream_with_an_error() {
        let items = collect_with_fake(AfterFirstFrame::Close).await;
        assert_eq!(items.len(), 2, "{items:?}");
        let line = items[0].as_ref().expect("the line sent before the break");
        assert_eq!(line.text, "hello");
        assert_eq!(line.stream, Stream::Stdout);
        assert_eq!(line.time.to_rfc3339(), "2024-05-01T10:00:00.123456789+00:00");
        assert!(matches!(items[1], Err(ExecError::Engine(_))), "{items:?}");
    }

    #[tokio::test]
    async fn a_frozen_engine_ends_the_log_stream_with_an_error() {
        let items = collect_with_fake(AfterFirstFrame::Freeze).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0].as_ref().map(|l| l.text.as_str()).ok(), Some("hello"));
        match &items[1] {
            Err(ExecError::Engine(message)) => {
                assert!(message.contains("stopped answering"), "{message}");
            }
            other => panic!("expected an engine error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn entries_the_follower_missed_are_caught_up() {
        let items = collect_with_fake(AfterFirstFrame::EndEarly).await;
        let texts: Vec<&str> =
            items.iter().map(|i| i.as_ref().expect("line").text.as_str()).collect();
        assert_eq!(texts, ["hello", "tail"]);
    }

    #[test]
    fn frames_lose_their_timestamp() {
        let (time, rest) = split_timestamp(b"2024-05-01T10:00:00.000000001Z a b\n");
        assert_eq!(time.map(|t| t.timestamp_subsec_nanos()), Some(1));
        assert_eq!(rest, b"a b\n");
        let (time, rest) = split_timestamp(b"no-time here\n");
        assert_eq!(time, None);
        assert_eq!(rest, b"no-time here\n");
        assert_eq!(split_timestamp(b""), (None, &b""[..]));
    }
}
