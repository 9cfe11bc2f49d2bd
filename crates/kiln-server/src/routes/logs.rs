//! Job, run and service instance logs: pages by line number, live follow over SSE (`id:`
//! is the line's seq, so a client that reconnects with `Last-Event-ID` resumes after the last
//! line it saw), and downloads as plain text. Every kind of log is served by the same three
//! functions, [`page`], [`sse`] and [`download`].
//!
//! Invariant: log files are read off the runtime's workers (`spawn_blocking`); a page costs
//! one seek through the log's index, whatever its length.

use std::convert::Infallible;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use kiln_api::{ErrorBody, LogLine, LogPage};
use kiln_logs::{LogKey, Record, Stream as OutStream};
use kiln_store::Role;
use serde::Deserialize;

use super::runs::run_for;
use crate::App;
use crate::auth::Caller;
use crate::coord::{job_log_key, run_log_key};
use crate::error::{ApiErr, ApiResult};

/// Most lines in one page.
const MAX_PAGE: usize = 10_000;

/// Range of a log page.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// First line (seq), from 1.
    from: Option<u64>,
    /// At most this many lines (default 1000, at most 10000).
    limit: Option<usize>,
    /// The last `tail` lines stored (at most 10000) instead of a page from `from`: a log
    /// opened at its end in one request.
    tail: Option<usize>,
    /// Attempt of the job (default: the latest).
    attempt: Option<u32>,
    /// For an array job: the index whose log this is (`attempt` is then the index's).
    index: Option<u32>,
}

/// Which attempt a download is of.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DownloadQuery {
    /// Attempt of the job (default: the latest).
    attempt: Option<u32>,
    /// For an array job: the index whose log this is (`attempt` is then the index's).
    index: Option<u32>,
}

/// Where a stream resumes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    /// First line (seq); `Last-Event-ID: n` means `from=n+1` and wins.
    from: Option<u64>,
    /// Attempt of the job (default: the latest).
    attempt: Option<u32>,
    /// For an array job: the index whose log this is (`attempt` is then the index's).
    index: Option<u32>,
}

fn line(r: Record, whole_run: bool) -> LogLine {
    let (job, text) = match (whole_run, r.text.split_once('\t')) {
        (true, Some((job, text))) => (Some(job.to_string()), text.to_string()),
        _ => (None, r.text),
    };
    LogLine {
        seq: r.seq,
        time: r.time,
        stream: match r.stream {
            OutStream::Stdout => "stdout",
            OutStream::Stderr => "stderr",
        }
        .to_string(),
        mark: log_mark(&text),
        job,
        text,
    }
}

/// What a stored line's text marks, as the API says it (parsed by [`kiln_logs::marks::mark`]).
fn log_mark(text: &str) -> Option<kiln_api::LogMark> {
    use kiln_logs::marks::Mark;
    let m = |kind: &str, name: &str| kiln_api::LogMark {
        kind: kind.to_string(),
        name: Some(name.to_string()),
        title: None,
        collapsed: false,
        status: None,
    };
    Some(match kiln_logs::marks::mark(text)? {
        Mark::Command { text, continued: false } => m("command", text),
        Mark::Command { text, continued: true } => m("continued", text),
        Mark::Exit { status, command } => {
            kiln_api::LogMark { status: Some(status), ..m("exit", command) }
        }
        Mark::SectionStart { name, title, collapsed } => kiln_api::LogMark {
            title: Some(title.to_string()),
            collapsed,
            ..m("section_start", name)
        },
        Mark::SectionEnd { name } => {
            kiln_api::LogMark { name: name.map(str::to_string), ..m("section_end", "") }
        }
    })
}

async fn job_key(
    app: &App,
    run: &kiln_store::Run,
    job: &str,
    attempt: Option<u32>,
    array_index: Option<u32>,
) -> ApiResult<LogKey> {
    let plan = app.coord.plan_of_run(run).await?;
    let index =
        plan.jobs.iter().position(|j| j.id.as_str() == job).ok_or_else(|| {
            ApiErr::not_found(format!("run {} has no job `{job}`", run.full_name()))
        })?;
    if let Some(i) = array_index {
        return index_key(app, run, &plan.jobs[index], index, i, attempt);
    }
    let jobs = app.store.jobs(&run.id).await?;
    let attempts = jobs.iter().find(|r| r.job.as_str() == job).map_or(0, |r| r.attempts);
    let attempt = match attempt {
        Some(a) if a >= 1 && a <= attempts.max(1) => a,
        Some(a) => {
            return Err(ApiErr::not_found(format!(
                "job `{job}` of run {} has no attempt {a} (it has {attempts})",
                run.full_name()
            )));
        }
        None => attempts.max(1),
    };
    Ok(job_log_key(&run.id, index, attempt))
}

/// The log of attempt `attempt` (default: the latest that printed) of index `i` of array
/// job `job` (the `index`th of the plan). An index's log exists only if it printed.
fn index_key(
    app: &App,
    run: &kiln_store::Run,
    job: &kiln_workflow::plan::Job,
    index: usize,
    i: u32,
    attempt: Option<u32>,
) -> ApiResult<LogKey> {
    let name = run.full_name();
    let Some(spec) = job.array else {
        return Err(ApiErr::bad_request(format!(
            "job `{}` of run {name} is not an array job: it has no index {i} (leave out index)",
            job.id
        )));
    };
    if i >= spec.size {
        return Err(ApiErr::not_found(format!(
            "job `{}` of run {name} has indexes 0 to {}, not {i}",
            job.id,
            spec.size - 1
        )));
    }
    let most = job.retry.max.saturating_add(1);
    let key = |a: u32| crate::coord::index_log_key(&run.id, index, i, a);
    match attempt {
        Some(a) if a >= 1 && a <= most => Ok(key(a)),
        Some(a) => Err(ApiErr::not_found(format!(
            "index {i} of job `{}` of run {name} has no attempt {a} (at most {most})",
            job.id
        ))),
        None => Ok((1..=most)
            .rev()
            .map(key)
            .find(|k| app.logs.path(k).exists())
            .unwrap_or_else(|| key(1))),
    }
}

/// A page of the log `key`: up to `limit` lines (default 1000) from line `from` (default 1),
/// or, with `tail`, its last `tail` lines.
async fn page(
    app: &App,
    key: LogKey,
    from: Option<u64>,
    limit: Option<usize>,
    tail: Option<usize>,
    whole_run: bool,
) -> ApiResult<Json<LogPage>> {
    let limit = tail.or(limit).unwrap_or(1000).clamp(1, MAX_PAGE);
    let logs = app.logs.clone();
    let (from, (records, info)) = tokio::task::spawn_blocking(move || {
        let from = match tail {
            Some(_) => logs.info(&key)?.last_seq.saturating_sub(limit as u64) + 1,
            None => from.unwrap_or(1).max(1),
        };
        logs.page(&key, from, limit).map(|page| (from, page))
    })
    .await
    .map_err(|e| ApiErr::internal(format!("reading a log page: {e}")))??;
    let next = records.last().map_or(from, |r| r.seq + 1);
    Ok(Json(LogPage {
        closed: info.closed && next > info.last_seq,
        lines: records.into_iter().map(|r| line(r, whole_run)).collect(),
        next,
        last: info.last_seq,
    }))
}

/// Chunks of a download in flight between the reading thread and the response.
const DOWNLOAD_CHUNKS: usize = 4;

/// Sends what is written to it to a response body, from a blocking thread.
struct ToBody(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl std::io::Write for ToBody {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The whole log `key` as plain text, one line each, streamed from the file as a download
/// named `name`.
fn download(app: &App, key: LogKey, name: &str) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel(DOWNLOAD_CHUNKS);
    let logs = app.logs.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = ToBody(tx.clone());
        if let Err(e) = logs.export(&key, 1, &mut out) {
            // Cuts the response short: the client sees a failed download, not a short log.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    let body = Body::from_stream(stream::poll_fn(move |cx| rx.poll_recv(cx)));
    let file: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file}.log\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

fn resume_from(headers: &HeaderMap, from: Option<u64>) -> ApiResult<u64> {
    if let Some(v) = headers.get("last-event-id") {
        let text = v.to_str().unwrap_or("");
        let seq: u64 = text.trim().parse().map_err(|_| {
            ApiErr::bad_request(format!("Last-Event-ID `{text}` is not a line number"))
        })?;
        return Ok(seq + 1);
    }
    Ok(from.unwrap_or(1).max(1))
}

async fn sse(
    app: &App,
    key: LogKey,
    from: u64,
    whole_run: bool,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>> + use<>>> {
    let logs = app.logs.clone();
    // Blocking: the first use of a log reads its index.
    let follow = tokio::task::spawn_blocking(move || logs.follow(&key, from))
        .await
        .map_err(|e| ApiErr::internal(format!("following a log: {e}")))??;
    let lines = follow.map(move |r| match r {
        Ok(rec) => {
            let seq = rec.seq;
            let data = serde_json::to_string(&line(rec, whole_run)).expect("a log line is JSON");
            Ok(SseEvent::default().id(seq.to_string()).event("line").data(data))
        }
        Err(e) => Ok(SseEvent::default().event("error").data(e.to_string())),
    });
    let end = stream::once(async { Ok(SseEvent::default().event("end").data("{}")) });
    Ok(Sse::new(lines.chain(end)).keep_alive(KeepAlive::default()))
}

/// A page of a job's log.
#[utoipa::path(get, path = "/api/v1/runs/{run}/jobs/{job}/logs", tag = "logs",
    params(("run" = String, Path), ("job" = String, Path), PageQuery),
    responses((status = 200, body = LogPage), (status = 404, body = ErrorBody)))]
pub async fn job_page(
    State(app): State<App>,
    caller: Caller,
    Path((id, job)): Path<(String, String)>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<LogPage>> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    let key = job_key(&app, &run, &job, q.attempt, q.index).await?;
    if q.index.is_some() && !app.logs.path(&key).exists() {
        // An index that printed nothing has no log file: an empty, ended log.
        return Ok(Json(LogPage { closed: true, lines: Vec::new(), next: 1, last: 0 }));
    }
    page(&app, key, q.from, q.limit, q.tail, false).await
}

/// A job's log, live (SSE): `line` events (`id` = seq, data = a LogLine), then `end`.
#[utoipa::path(get, path = "/api/v1/runs/{run}/jobs/{job}/logs/stream", tag = "logs",
    params(("run" = String, Path), ("job" = String, Path), StreamQuery,
           ("Last-Event-ID" = Option<u64>, Header, description = "resume after this line")),
    responses((status = 200, content_type = "text/event-stream", description = "SSE of LogLine"),
              (status = 404, body = ErrorBody)))]
pub async fn job_stream(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    let key = job_key(&app, &run, &job, q.attempt, q.index).await?;
    if let Some(i) = q.index
        && !app.logs.path(&key).exists()
    {
        return Err(ApiErr::not_found(format!(
            "index {i} of job `{job}` of run {} printed nothing (yet)",
            run.full_name()
        )));
    }
    sse(&app, key, resume_from(&headers, q.from)?, false).await
}

/// A job's stored log as plain text (one line each, as far as it is written now), as a
/// download; `attempt` picks the attempt (default: the latest).
#[utoipa::path(get, path = "/api/v1/runs/{run}/jobs/{job}/logs/download", tag = "logs",
    params(("run" = String, Path), ("job" = String, Path), DownloadQuery),
    responses((status = 200, content_type = "text/plain", body = String,
               description = "the log's lines, `Content-Disposition: attachment`"),
              (status = 404, body = ErrorBody)))]
pub async fn job_download(
    State(app): State<App>,
    caller: Caller,
    Path((id, job)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult<Response> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    let key = job_key(&app, &run, &job, q.attempt, q.index).await?;
    let name = format!("{}-{}-{job}", run.pipeline, run.number);
    Ok(download(&app, key, &name))
}

/// A run's stored log as plain text, every job's lines in the order they came, each as the
/// job's id, a tab and the text; as a download.
#[utoipa::path(get, path = "/api/v1/runs/{run}/logs/download", tag = "logs",
    params(("run" = String, Path)),
    responses((status = 200, content_type = "text/plain", body = String,
               description = "the log's lines, `Content-Disposition: attachment`"),
              (status = 404, body = ErrorBody)))]
pub async fn run_download(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    let name = format!("{}-{}", run.pipeline, run.number);
    Ok(download(&app, run_log_key(&run.id), &name))
}

/// A page of a run's log: every job's lines interleaved, each with its job.
#[utoipa::path(get, path = "/api/v1/runs/{run}/logs", tag = "logs",
    params(("run" = String, Path), PageQuery),
    responses((status = 200, body = LogPage), (status = 404, body = ErrorBody)))]
pub async fn run_page(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<LogPage>> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    page(&app, run_log_key(&run.id), q.from, q.limit, q.tail, true).await
}

/// A run's log, live (SSE), every job interleaved; ends when the run ends.
#[utoipa::path(get, path = "/api/v1/runs/{run}/logs/stream", tag = "logs",
    params(("run" = String, Path), StreamQuery,
           ("Last-Event-ID" = Option<u64>, Header, description = "resume after this line")),
    responses((status = 200, content_type = "text/event-stream", description = "SSE of LogLine"),
              (status = 404, body = ErrorBody)))]
pub async fn run_stream(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let run = run_for(&app, &caller, &id, Role::Viewer).await?;
    sse(&app, run_log_key(&run.id), resume_from(&headers, q.from)?, true).await
}

/// Range of a page of an instance's log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InstancePageQuery {
    /// First line (seq), from 1.
    from: Option<u64>,
    /// At most this many lines (default 1000, at most 10000).
    limit: Option<usize>,
}

/// Where an instance's stream resumes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct InstanceStreamQuery {
    /// First line (seq); `Last-Event-ID: n` means `from=n+1` and wins.
    from: Option<u64>,
}

/// The log of `instance` of service `project/service`, if the caller may read it.
async fn instance_key(
    app: &App,
    caller: &Caller,
    project: &str,
    service: &str,
    instance: &str,
) -> ApiResult<LogKey> {
    super::projects::project_for(app, caller, project, Role::Viewer).await?;
    let s = app.store.service(project, service).await?;
    let instances = app.store.instances(&s.id, true).await?;
    if !instances.iter().any(|i| i.id == instance) {
        return Err(ApiErr::not_found(format!(
            "service `{project}/{service}` has no instance `{instance}` (`kiln service show {service}` lists them)"
        )));
    }
    Ok(crate::services::instance_log_key(&s.id, instance))
}

/// A page of a service instance's log (its stdout and stderr, as its agent sent them).
#[utoipa::path(get, path = "/api/v1/projects/{project}/services/{service}/instances/{instance}/logs", tag = "logs",
    params(("project" = String, Path), ("service" = String, Path), ("instance" = String, Path), InstancePageQuery),
    responses((status = 200, body = LogPage), (status = 404, body = ErrorBody)))]
pub async fn instance_page(
    State(app): State<App>,
    caller: Caller,
    Path((project, service, instance)): Path<(String, String, String)>,
    Query(q): Query<InstancePageQuery>,
) -> ApiResult<Json<LogPage>> {
    let key = instance_key(&app, &caller, &project, &service, &instance).await?;
    page(&app, key, q.from, q.limit, None, false).await
}

/// A service instance's log, live (SSE): `line` events (`id` = seq, data = a LogLine), then
/// `end` once the instance ended.
#[utoipa::path(get, path = "/api/v1/projects/{project}/services/{service}/instances/{instance}/logs/stream", tag = "logs",
    params(("project" = String, Path), ("service" = String, Path), ("instance" = String, Path), InstanceStreamQuery,
           ("Last-Event-ID" = Option<u64>, Header, description = "resume after this line")),
    responses((status = 200, content_type = "text/event-stream", description = "SSE of LogLine"),
              (status = 404, body = ErrorBody)))]
pub async fn instance_stream(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Path((project, service, instance)): Path<(String, String, String)>,
    Query(q): Query<InstanceStreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let key = instance_key(&app, &caller, &project, &service, &instance).await?;
    sse(&app, key, resume_from(&headers, q.from)?, false).await
}
