//! A typed client of Kiln's REST API (`/api/v1`) and of the agent lease protocol, over
//! reqwest. The CLI, the agents (the embedded one too) and the benchmarks use it.

use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use kiln_api::agent::{
    AgentEvent, AgentInfo, EventsResponse, LeaseReport, LeaseRequest, LeaseResponse, RegisterAgent,
    ReportsResponse,
};
use kiln_api::pool::{NodeInfo, NodeUpdate, Offer, QuotaInfo, QuotaLimits};
use kiln_api::triggers::TriggerInfo;
use kiln_api::{
    ApiError, ApplyPipeline, ApplyResult, Artifact, CreateProject, CreateToken, CreatedToken,
    DecisionRequest, ErrorBody, GcReport, LogLine, LogPage, Pipeline, Project, RunDetail,
    RunSummary, RunWorkflow, Secret, ServerInfo, SetSecret, Token, TriggerRequest,
};
use kiln_api::{
    CreateWebhook, RegistryEvent, RegistryGcReport, RegistryGcRequest, RegistryRepository,
    RegistryTag, RunEvent, SetVisibility, Webhook,
};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{} ({status}): {}", .error.code, .error.message)]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        error: ApiError,
    },
    /// No answer, or not one we understand.
    #[error("{0}")]
    Transport(String),
}

impl ClientError {
    /// The stable error code when the server answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            ClientError::Transport(_) => None,
        }
    }
}

/// Result of a client call.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A connection to one Kiln server with one bearer token.
#[derive(Debug, Clone)]
pub struct Client {
    base: Url,
    token: String,
    http: reqwest::Client,
}

/// Filters of `GET /api/v1/runs`.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Project name.
    pub project: Option<String>,
    /// Pipeline name (with `project`).
    pub pipeline: Option<String>,
    /// Run state.
    pub state: Option<String>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

impl Client {
    /// A client of the server at `base` (`http://127.0.0.1:7171`) using `token`.
    pub fn new(base: &str, token: &str) -> Result<Client> {
        let mut base = Url::parse(base)
            .map_err(|e| ClientError::Transport(format!("server URL `{base}`: {e}")))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Client { base, token: token.to_string(), http })
    }

    /// The server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` + `api/v1/` + the segments, each percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("http URLs have paths");
            path.pop_if_empty().push("api").push("v1");
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    async fn send(&self, req: RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| ClientError::Transport(transport(&e)))?;
        // 304 answers a conditional request (a config long poll): not an error.
        if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        let error = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) => b.error,
            Err(_) => ApiError {
                code: status_code_name(status).to_string(),
                message: String::from_utf8_lossy(&body).trim().to_string(),
                diagnostics: Vec::new(),
            },
        };
        Err(ClientError::Api { status: status.as_u16(), error })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = self.send(req).await?;
        resp.json::<T>().await.map_err(|e| ClientError::Transport(format!("bad answer: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.json(self.request(Method::GET, self.url(segments))).await
    }

    /// `GET /info`: the caller's identity and the connected agents.
    pub async fn info(&self) -> Result<ServerInfo> {
        self.get(&["info"]).await
    }

    /// Lists projects.
    pub async fn projects(&self) -> Result<Vec<Project>> {
        self.get(&["projects"]).await
    }

    /// Creates a project.
    pub async fn create_project(&self, name: &str) -> Result<Project> {
        let body = CreateProject { name: name.to_string() };
        self.json(self.request(Method::POST, self.url(&["projects"])).json(&body)).await
    }

    /// Creates or updates a pipeline from YAML.
    pub async fn apply_pipeline(
        &self,
        project: &str,
        pipeline: &str,
        body: &ApplyPipeline,
    ) -> Result<ApplyResult> {
        let url = self.url(&["projects", project, "pipelines", pipeline]);
        self.json(self.request(Method::PUT, url).json(body)).await
    }

    /// Lists a project's pipelines.
    pub async fn pipelines(&self, project: &str) -> Result<Vec<Pipeline>> {
        self.get(&["projects", project, "pipelines"]).await
    }

    /// One pipeline.
    pub async fn pipeline(&self, project: &str, pipeline: &str) -> Result<Pipeline> {
        self.get(&["projects", project, "pipelines", pipeline]).await
    }

    /// Every trigger of every pipeline the token can see (of one project when given), with
    /// schedules' next fire times.
    pub async fn triggers(&self, project: Option<&str>) -> Result<Vec<TriggerInfo>> {
        let mut url = self.url(&["triggers"]);
        if let Some(project) = project {
            url.query_pairs_mut().append_pair("project", project);
        }
        self.json(self.request(Method::GET, url)).await
    }

    /// A project's usage of attempts that ended in `[since, until)` (RFC 3339, a day or an
    /// age: [`kiln_api::usage::parse_time`]; the server's defaults when `None`), grouped `by`.
    pub async fn usage(
        &self,
        project: &str,
        since: Option<&str>,
        until: Option<&str>,
        by: kiln_api::usage::UsageBy,
    ) -> Result<kiln_api::usage::UsageReport> {
        let mut url = self.url(&["projects", project, "usage"]);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(s) = since {
                pairs.append_pair("since", s);
            }
            if let Some(u) = until {
                pairs.append_pair("until", u);
            }
            pairs.append_pair("by", by.as_str());
        }
        self.json(self.request(Method::GET, url)).await
    }

    /// Triggers a run.
    pub async fn trigger(
        &self,
        project: &str,
        pipeline: &str,
        req: &TriggerRequest,
    ) -> Result<RunSummary> {
        let url = self.url(&["projects", project, "pipelines", pipeline, "runs"]);
        self.json(self.request(Method::POST, url).json(req)).await
    }

    /// Lists runs, newest first.
    pub async fn runs(&self, q: &RunQuery) -> Result<Vec<RunSummary>> {
        let mut url = self.url(&["runs"]);
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in [
                ("project", q.project.clone()),
                ("pipeline", q.pipeline.clone()),
                ("state", q.state.clone()),
                ("limit", q.limit.map(|l| l.to_string())),
            ] {
                if let Some(v) = v {
                    pairs.append_pair(k, &v);
                }
            }
        }
        self.json(self.request(Method::GET, url)).await
    }

    /// One run by id, or by `project/pipeline#number`.
    pub async fn run(&self, run: &str) -> Result<RunDetail> {
        match parse_run_name(run) {
            Some((project, pipeline, number)) => {
                self.get(&["projects", project, "pipelines", pipeline, "runs", number]).await
            }
            None => self.get(&["runs", run]).await,
        }
    }

    /// The workflow a run ran (entry file and template files, as when it was created).
    pub async fn run_source(&self, run_id: &str) -> Result<RunWorkflow> {
        self.get(&["runs", run_id, "source"]).await
    }

    /// Resolves `project/pipeline#number` (or an id) to a run id.
    pub async fn run_id(&self, run: &str) -> Result<String> {
        if parse_run_name(run).is_none() {
            return Ok(run.to_string());
        }
        Ok(self.run(run).await?.run.id)
    }

    async fn post_run(&self, run: &str, tail: &[&str]) -> Result<RunSummary> {
        let id = self.run_id(run).await?;
        let mut segs = vec!["runs", id.as_str()];
        segs.extend_from_slice(tail);
        self.json(self.request(Method::POST, self.url(&segs)).json(&serde_json::json!({}))).await
    }

    /// Starts pipelines together as one group (`kiln group start`).
    pub async fn start_group(&self, req: &kiln_api::StartGroup) -> Result<kiln_api::RunGroup> {
        self.json(self.request(Method::POST, self.url(&["run-groups"])).json(req)).await
    }

    /// A group of runs with their states.
    pub async fn group(&self, id: &str) -> Result<kiln_api::RunGroup> {
        self.get(&["run-groups", id]).await
    }

    /// Cancels a run.
    pub async fn cancel(&self, run: &str) -> Result<RunSummary> {
        self.post_run(run, &["cancel"]).await
    }

    /// Retries a run's failed jobs in a new run that keeps the passed jobs' outputs.
    pub async fn retry(&self, run: &str) -> Result<RunSummary> {
        self.post_run(run, &["retry"]).await
    }

    /// Approves (`approve = true`) or rejects a waiting approval stage.
    pub async fn decide(&self, run: &str, stage: &str, approve: bool) -> Result<RunSummary> {
        let id = self.run_id(run).await?;
        let url = self.url(&["runs", &id, "stages", stage, "decision"]);
        let body = DecisionRequest {
            decision: Some(if approve { "approve" } else { "reject" }.to_string()),
        };
        self.json(self.request(Method::POST, url).json(&body)).await
    }

    fn log_url(&self, run_id: &str, job: Option<&str>, attempt: Option<u32>, tail: &[&str]) -> Url {
        let mut segs = vec!["runs", run_id];
        if let Some(job) = job {
            segs.extend_from_slice(&["jobs", job]);
        }
        segs.push("logs");
        segs.extend_from_slice(tail);
        let mut url = self.url(&segs);
        if let Some(a) = attempt {
            url.query_pairs_mut().append_pair("attempt", &a.to_string());
        }
        url
    }

    /// A page of a run's log (`job: None`: every job, interleaved) from line `from`.
    pub async fn logs(
        &self,
        run_id: &str,
        job: Option<&str>,
        attempt: Option<u32>,
        from: u64,
        limit: u32,
    ) -> Result<LogPage> {
        self.log_page(self.log_url(run_id, job, attempt, &[]), from, limit).await
    }

    /// A page of the log of index `index` of array job `job` from line `from` (`attempt`:
    /// the index's; default the latest that printed).
    pub async fn index_logs(
        &self,
        run_id: &str,
        job: &str,
        index: u32,
        attempt: Option<u32>,
        from: u64,
        limit: u32,
    ) -> Result<LogPage> {
        let mut url = self.log_url(run_id, Some(job), attempt, &[]);
        url.query_pairs_mut().append_pair("index", &index.to_string());
        self.log_page(url, from, limit).await
    }

    /// Follows the log of index `index` of array job `job` live from line `from`.
    pub async fn follow_index(
        &self,
        run_id: &str,
        job: &str,
        index: u32,
        attempt: Option<u32>,
        from: u64,
    ) -> Result<impl Stream<Item = Result<LogLine>> + use<>> {
        let mut url = self.log_url(run_id, Some(job), attempt, &["stream"]);
        url.query_pairs_mut().append_pair("index", &index.to_string());
        self.follow_url(url, from).await
    }

    /// A page of the log at `url` from line `from`, at most `limit` lines.
    async fn log_page(&self, mut url: Url, from: u64, limit: u32) -> Result<LogPage> {
        url.query_pairs_mut()
            .append_pair("from", &from.to_string())
            .append_pair("limit", &limit.to_string());
        self.json(self.request(Method::GET, url)).await
    }

    /// Follows a log live over SSE from line `from` (resuming with `Last-Event-ID`): yields
    /// lines until the log is closed.
    pub async fn follow(
        &self,
        run_id: &str,
        job: Option<&str>,
        attempt: Option<u32>,
        from: u64,
    ) -> Result<impl Stream<Item = Result<LogLine>> + use<>> {
        self.follow_url(self.log_url(run_id, job, attempt, &["stream"]), from).await
    }

    /// Follows the log stream at `url` (any of the API's `.../logs/stream`) from line `from`.
    async fn follow_url(
        &self,
        url: Url,
        from: u64,
    ) -> Result<impl Stream<Item = Result<LogLine>> + use<>> {
        use eventsource_stream::Eventsource;
        let mut req = self.request(Method::GET, url);
        if from > 1 {
            req = req.header("Last-Event-ID", (from - 1).to_string());
        }
        let resp = self.send(req).await?;
        let events = resp.bytes_stream().eventsource();
        Ok(events
            .take_while(|e| {
                let go = !matches!(e, Ok(ev) if ev.event == "end");
                async move { go }
            })
            .filter_map(|e| async move {
                match e {
                    Ok(ev) if ev.event == "line" || ev.event == "message" => Some(
                        serde_json::from_str::<LogLine>(&ev.data)
                            .map_err(|e| ClientError::Transport(format!("bad log event: {e}"))),
                    ),
                    Ok(_) => None,
                    Err(e) => Some(Err(ClientError::Transport(format!("log stream: {e}")))),
                }
            }))
    }

    /// Run events (started, waiting, ended) as they happen, of every project the token sees
    /// or of `project` only, over SSE; `last_id` (an id this stream yielded) resumes after it.
    /// Yields `(id, event)` until the server goes away.
    pub async fn run_events(
        &self,
        project: Option<&str>,
        last_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<(String, RunEvent)>> + use<>> {
        use eventsource_stream::Eventsource;
        let mut url = self.url(&["runs", "events"]);
        if let Some(p) = project {
            url.query_pairs_mut().append_pair("project", p);
        }
        let mut req = self.request(Method::GET, url);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = self.send(req).await?;
        Ok(resp.bytes_stream().eventsource().filter_map(|e| async move {
            match e {
                Ok(ev) if ev.event == "run" => Some(
                    serde_json::from_str::<RunEvent>(&ev.data)
                        .map(|r| (ev.id, r))
                        .map_err(|e| ClientError::Transport(format!("bad run event: {e}"))),
                ),
                Ok(_) => None,
                Err(e) => Some(Err(ClientError::Transport(format!("run events: {e}")))),
            }
        }))
    }

    /// A run's artifacts.
    pub async fn artifacts(&self, run: &str) -> Result<Vec<Artifact>> {
        let id = self.run_id(run).await?;
        self.get(&["runs", &id, "artifacts"]).await
    }

    /// Downloads a job's artifact archive (tar.gz) as a byte stream.
    pub async fn download_artifact(
        &self,
        run_id: &str,
        job: &str,
    ) -> Result<impl Stream<Item = Result<Bytes>> + use<>> {
        let url = self.url(&["runs", run_id, "artifacts", job]);
        let resp = self.send(self.request(Method::GET, url)).await?;
        Ok(resp.bytes_stream().map(|r| r.map_err(|e| ClientError::Transport(e.to_string()))))
    }

    /// Lists tokens.
    pub async fn tokens(&self) -> Result<Vec<Token>> {
        self.get(&["tokens"]).await
    }

    /// Creates a token; the secret is in the answer, once.
    pub async fn create_token(&self, req: &CreateToken) -> Result<CreatedToken> {
        self.json(self.request(Method::POST, self.url(&["tokens"])).json(req)).await
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, id: &str) -> Result<Token> {
        self.json(self.request(Method::DELETE, self.url(&["tokens", id]))).await
    }

    /// Lists a project's secrets (names only).
    pub async fn secrets(&self, project: &str) -> Result<Vec<Secret>> {
        self.get(&["projects", project, "secrets"]).await
    }

    /// Sets a project secret.
    pub async fn set_secret(&self, project: &str, name: &str, value: &str) -> Result<Secret> {
        let url = self.url(&["projects", project, "secrets", name]);
        self.json(self.request(Method::PUT, url).json(&SetSecret { value: value.to_string() }))
            .await
    }

    /// Deletes a project secret.
    pub async fn delete_secret(&self, project: &str, name: &str) -> Result<()> {
        let url = self.url(&["projects", project, "secrets", name]);
        self.send(self.request(Method::DELETE, url)).await.map(|_| ())
    }

    // ---- registry ----

    /// The registry's repositories the caller can see.
    pub async fn registry_repositories(&self) -> Result<Vec<RegistryRepository>> {
        self.get(&["registry", "repositories"]).await
    }

    /// The tags of a repository.
    pub async fn registry_tags(&self, repository: &str) -> Result<Vec<RegistryTag>> {
        let mut url = self.url(&["registry", "tags"]);
        url.query_pairs_mut().append_pair("repository", repository);
        self.json(self.request(Method::GET, url)).await
    }

    /// Makes a repository public or private.
    pub async fn registry_visibility(&self, req: &SetVisibility) -> Result<RegistryRepository> {
        let url = self.url(&["registry", "visibility"]);
        self.json(self.request(Method::PUT, url).json(req)).await
    }

    /// Collects the registry's garbage now.
    pub async fn registry_gc(&self, req: &RegistryGcRequest) -> Result<RegistryGcReport> {
        self.json(self.request(Method::POST, self.url(&["registry", "gc"])).json(req)).await
    }

    /// Imports OSV advisory files (admin), all or nothing.
    pub async fn import_advisories(
        &self,
        req: &kiln_api::scan::ImportAdvisories,
    ) -> Result<kiln_api::scan::AdvisoryImportReport> {
        let url = self.url(&["registry", "advisories"]);
        self.json(self.request(Method::POST, url).json(req)).await
    }

    /// An image's scan and findings, at least `severity` if given.
    pub async fn image_vulns(
        &self,
        image: &str,
        severity: Option<&str>,
    ) -> Result<kiln_api::scan::ImageScan> {
        let mut url = self.url(&["registry", "vulns"]);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("image", image);
            if let Some(s) = severity {
                pairs.append_pair("severity", s);
            }
        }
        self.json(self.request(Method::GET, url)).await
    }

    /// Scans an image again now and answers its findings.
    pub async fn scan_image(&self, image: &str) -> Result<kiln_api::scan::ImageScan> {
        let url = self.url(&["registry", "scan"]);
        self.json(self.request(Method::POST, url).json(&serde_json::json!({ "image": image })))
            .await
    }

    /// A project's image policy.
    pub async fn image_policy(&self, project: &str) -> Result<kiln_api::scan::ImagePolicy> {
        self.get(&["projects", project, "image-policy"]).await
    }

    /// Sets a project's image policy.
    pub async fn set_image_policy(
        &self,
        project: &str,
        policy: &kiln_api::scan::ImagePolicy,
    ) -> Result<kiln_api::scan::ImagePolicy> {
        let url = self.url(&["projects", project, "image-policy"]);
        self.json(self.request(Method::PUT, url).json(policy)).await
    }

    /// Collects caches' and artifacts' garbage now (admin): what was removed.
    pub async fn gc(&self) -> Result<GcReport> {
        self.json(self.request(Method::POST, self.url(&["gc"]))).await
    }

    /// Push events, newest first.
    pub async fn registry_events(
        &self,
        project: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<RegistryEvent>> {
        let mut url = self.url(&["registry", "events"]);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(p) = project {
                pairs.append_pair("project", p);
            }
            if let Some(l) = limit {
                pairs.append_pair("limit", &l.to_string());
            }
        }
        self.json(self.request(Method::GET, url)).await
    }

    /// A project's webhooks.
    pub async fn webhooks(&self, project: &str) -> Result<Vec<Webhook>> {
        self.get(&["projects", project, "webhooks"]).await
    }

    /// Adds a webhook to a project; the answer holds its signing secret (shown only here).
    pub async fn add_webhook(&self, project: &str, req: &CreateWebhook) -> Result<Webhook> {
        let u = self.url(&["projects", project, "webhooks"]);
        self.json(self.request(Method::POST, u).json(req)).await
    }

    /// Removes a webhook of a project.
    pub async fn delete_webhook(&self, project: &str, id: &str) -> Result<()> {
        let url = self.url(&["projects", project, "webhooks", id]);
        self.send(self.request(Method::DELETE, url)).await.map(|_| ())
    }

    // ---- services ----

    /// Applies a service file to `project` as service `name`.
    pub async fn apply_service(
        &self,
        project: &str,
        name: &str,
        body: &kiln_api::service::ApplyService,
    ) -> Result<kiln_api::service::ServiceInfo> {
        let u = self.url(&["projects", project, "services", name]);
        self.json(self.request(Method::PUT, u).json(body)).await
    }

    /// The services of `project` (every visible one when `None`).
    pub async fn services(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<kiln_api::service::ServiceInfo>> {
        let mut url = self.url(&["services"]);
        if let Some(p) = project {
            url.query_pairs_mut().append_pair("project", p);
        }
        self.json(self.request(Method::GET, url)).await
    }

    /// A service with its instances.
    pub async fn service(
        &self,
        project: &str,
        name: &str,
    ) -> Result<kiln_api::service::ServiceInfo> {
        self.json(self.request(Method::GET, self.url(&["projects", project, "services", name])))
            .await
    }

    /// `POST .../services/{name}/{action}` (`scale`, `restart`, `stop`, `rollback`) with `body`.
    pub async fn service_action<B: serde::Serialize + ?Sized>(
        &self,
        project: &str,
        name: &str,
        action: &str,
        body: &B,
    ) -> Result<kiln_api::service::ServiceInfo> {
        let u = self.url(&["projects", project, "services", name, action]);
        self.json(self.request(Method::POST, u).json(body)).await
    }

    /// Every version of a service.
    pub async fn service_history(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Vec<kiln_api::service::ServiceVersion>> {
        let u = self.url(&["projects", project, "services", name, "history"]);
        self.json(self.request(Method::GET, u)).await
    }

    /// Every change of every visible service's instances as it happens (the discovery watch,
    /// over SSE), after revision `after` (from the start when `None`). Yields events until
    /// the server goes away.
    pub async fn discovery_watch(
        &self,
        after: Option<u64>,
    ) -> Result<impl Stream<Item = Result<kiln_api::service::DiscoveryEvent>> + use<>> {
        use eventsource_stream::Eventsource;
        let mut url = self.url(&["discovery", "watch"]);
        if let Some(after) = after {
            url.query_pairs_mut().append_pair("after", &after.to_string());
        }
        let resp = self.send(self.request(Method::GET, url)).await?;
        Ok(resp.bytes_stream().eventsource().filter_map(|e| async move {
            match e {
                Ok(ev) if ev.event == "change" => Some(
                    serde_json::from_str(&ev.data)
                        .map_err(|e| ClientError::Transport(format!("bad discovery event: {e}"))),
                ),
                Ok(_) => None,
                Err(e) => Some(Err(ClientError::Transport(format!("discovery watch: {e}")))),
            }
        }))
    }

    fn instance_log_url(&self, project: &str, service: &str, instance: &str, tail: &[&str]) -> Url {
        let mut segs =
            vec!["projects", project, "services", service, "instances", instance, "logs"];
        segs.extend_from_slice(tail);
        self.url(&segs)
    }

    /// A page of a service instance's log from line `from`.
    pub async fn instance_logs(
        &self,
        project: &str,
        service: &str,
        instance: &str,
        from: u64,
        limit: u32,
    ) -> Result<LogPage> {
        self.log_page(self.instance_log_url(project, service, instance, &[]), from, limit).await
    }

    /// Follows a service instance's log live over SSE from line `from`: yields lines until
    /// the instance ends.
    pub async fn follow_instance(
        &self,
        project: &str,
        service: &str,
        instance: &str,
        from: u64,
    ) -> Result<impl Stream<Item = Result<LogLine>> + use<>> {
        self.follow_url(self.instance_log_url(project, service, instance, &["stream"]), from).await
    }

    /// Deletes a service (its instances are stopped first).
    pub async fn delete_service(&self, project: &str, name: &str) -> Result<()> {
        let u = self.url(&["projects", project, "services", name]);
        self.send(self.request(Method::DELETE, u)).await.map(|_| ())
    }

    // ---- metrics scraping ----

    /// Applies a metric rule file to `project` as rule `name`.
    pub async fn apply_metric_rule(
        &self,
        project: &str,
        name: &str,
        body: &kiln_api::metric::ApplyMetricRule,
    ) -> Result<kiln_api::metric::MetricRuleInfo> {
        let u = self.url(&["projects", project, "metrics", name]);
        self.json(self.request(Method::PUT, u).json(body)).await
    }

    /// The metric rules of `project`.
    pub async fn metric_rules(
        &self,
        project: &str,
    ) -> Result<Vec<kiln_api::metric::MetricRuleInfo>> {
        self.get(&["projects", project, "metrics"]).await
    }

    /// A metric rule with its targets as the scraper last saw them.
    pub async fn metric_rule(
        &self,
        project: &str,
        name: &str,
    ) -> Result<kiln_api::metric::MetricRuleInfo> {
        self.get(&["projects", project, "metrics", name]).await
    }

    /// Deletes a metric rule (its samples and history go with it).
    pub async fn delete_metric_rule(&self, project: &str, name: &str) -> Result<()> {
        let u = self.url(&["projects", project, "metrics", name]);
        self.send(self.request(Method::DELETE, u)).await.map(|_| ())
    }

    /// The scraped series of a service's instances, points at or after `since` (unix ms).
    pub async fn service_metrics(
        &self,
        project: &str,
        service: &str,
        since: Option<i64>,
    ) -> Result<kiln_api::metric::ServiceMetrics> {
        let mut u = self.url(&["projects", project, "services", service, "metrics"]);
        if let Some(since) = since {
            u.query_pairs_mut().append_pair("since", &since.to_string());
        }
        self.json(self.request(Method::GET, u)).await
    }

    /// The latest samples of every rule the caller can read, in Prometheus' text format.
    pub async fn scraped(&self) -> Result<String> {
        let resp = self.send(self.request(Method::GET, self.url(&["metrics", "scraped"]))).await?;
        resp.text().await.map_err(|e| ClientError::Transport(format!("bad answer: {e}")))
    }

    // ---- environments ----

    /// The environments of `project`, in their order (secrets' values masked).
    pub async fn environments(
        &self,
        project: &str,
    ) -> Result<Vec<kiln_api::environments::Environment>> {
        self.get(&["projects", project, "environments"]).await
    }

    /// Creates an environment.
    pub async fn create_environment(
        &self,
        project: &str,
        req: &kiln_api::environments::CreateEnvironment,
    ) -> Result<kiln_api::environments::Environment> {
        let u = self.url(&["projects", project, "environments"]);
        self.json(self.request(Method::POST, u).json(req)).await
    }

    /// One environment with its variables (secrets' values masked).
    pub async fn environment(
        &self,
        project: &str,
        env: &str,
    ) -> Result<kiln_api::environments::Environment> {
        self.get(&["projects", project, "environments", env]).await
    }

    /// Changes an environment's order or protected flag.
    pub async fn update_environment(
        &self,
        project: &str,
        env: &str,
        req: &kiln_api::environments::UpdateEnvironment,
    ) -> Result<kiln_api::environments::Environment> {
        let u = self.url(&["projects", project, "environments", env]);
        self.json(self.request(Method::PATCH, u).json(req)).await
    }

    /// Deletes an environment.
    pub async fn delete_environment(&self, project: &str, env: &str) -> Result<()> {
        let u = self.url(&["projects", project, "environments", env]);
        self.send(self.request(Method::DELETE, u)).await.map(|_| ())
    }

    /// Sets a variable (or, with `secret`, a sealed secret) of an environment.
    pub async fn set_env_variable(
        &self,
        project: &str,
        env: &str,
        name: &str,
        req: &kiln_api::environments::SetVariable,
    ) -> Result<kiln_api::environments::EnvVariable> {
        let u = self.url(&["projects", project, "environments", env, "variables", name]);
        self.json(self.request(Method::PUT, u).json(req)).await
    }

    /// Removes a variable of an environment.
    pub async fn unset_env_variable(&self, project: &str, env: &str, name: &str) -> Result<()> {
        let u = self.url(&["projects", project, "environments", env, "variables", name]);
        self.send(self.request(Method::DELETE, u)).await.map(|_| ())
    }

    // ---- deploys ----

    /// Deploys a service file to an environment with an image of the server's registry.
    pub async fn deploy(
        &self,
        project: &str,
        req: &kiln_api::deploy::DeployRequest,
    ) -> Result<kiln_api::deploy::Deployment> {
        let u = self.url(&["projects", project, "deployments"]);
        self.json(self.request(Method::POST, u).json(req)).await
    }

    /// The deployments of `project` (of one service and/or environment), newest first.
    pub async fn deployments(
        &self,
        project: &str,
        service: Option<&str>,
        env: Option<&str>,
    ) -> Result<Vec<kiln_api::deploy::Deployment>> {
        let mut u = self.url(&["projects", project, "deployments"]);
        if let Some(s) = service {
            u.query_pairs_mut().append_pair("service", s);
        }
        if let Some(e) = env {
            u.query_pairs_mut().append_pair("environment", e);
        }
        self.json(self.request(Method::GET, u)).await
    }

    /// The deployments of `service` to `env`, newest first.
    pub async fn deployment_history(
        &self,
        project: &str,
        service: &str,
        env: &str,
    ) -> Result<Vec<kiln_api::deploy::Deployment>> {
        self.get(&["projects", project, "deployments", service, env]).await
    }

    /// Deployment `number` of `service` to `env`.
    pub async fn deployment(
        &self,
        project: &str,
        service: &str,
        env: &str,
        number: u32,
    ) -> Result<kiln_api::deploy::Deployment> {
        self.get(&["projects", project, "deployments", service, env, &number.to_string()]).await
    }

    /// Approves (`approve`) or rejects a deployment waiting on a protected environment.
    pub async fn decide_deployment(
        &self,
        project: &str,
        service: &str,
        env: &str,
        number: u32,
        approve: bool,
    ) -> Result<kiln_api::deploy::Deployment> {
        let n = number.to_string();
        let action = if approve { "approve" } else { "reject" };
        let u = self.url(&["projects", project, "deployments", service, env, &n, action]);
        self.json(self.request(Method::POST, u)).await
    }

    /// Rolls `service` in `env` back to an earlier deployment.
    pub async fn rollback_deployment(
        &self,
        project: &str,
        service: &str,
        env: &str,
        req: &kiln_api::deploy::RollbackDeployment,
    ) -> Result<kiln_api::deploy::Deployment> {
        let u = self.url(&["projects", project, "deployments", service, env, "rollback"]);
        self.json(self.request(Method::POST, u).json(req)).await
    }

    /// Promotes `service` from one environment to the next (or says what would change).
    pub async fn promote(
        &self,
        project: &str,
        service: &str,
        req: &kiln_api::deploy::PromoteRequest,
    ) -> Result<kiln_api::deploy::PromoteOutcome> {
        let u = self.url(&["projects", project, "deployments", service, "promote"]);
        self.json(self.request(Method::POST, u).json(req)).await
    }

    /// The environments board of `project`: what runs where.
    pub async fn environment_board(
        &self,
        project: &str,
    ) -> Result<kiln_api::deploy::EnvironmentBoard> {
        self.get(&["projects", project, "environments", "board"]).await
    }

    // ---- config center ----

    /// The applications with config in `project`.
    pub async fn config_apps(
        &self,
        project: &str,
    ) -> Result<Vec<kiln_api::config::ConfigAppSummary>> {
        self.get(&["projects", project, "apps"]).await
    }

    /// An application's items and values.
    pub async fn config_app(
        &self,
        project: &str,
        app: &str,
    ) -> Result<kiln_api::config::ConfigApp> {
        self.get(&["projects", project, "apps", app]).await
    }

    /// Sets the template of config item `file`.
    pub async fn set_config_template(
        &self,
        project: &str,
        app: &str,
        file: &str,
        template: &str,
    ) -> Result<kiln_api::config::EditResult> {
        let u = self.url(&["projects", project, "apps", app, "templates", file]);
        let body = kiln_api::config::SetTemplate { template: template.to_string() };
        self.json(self.request(Method::PUT, u).json(&body)).await
    }

    /// Removes config item `file`.
    pub async fn remove_config_template(&self, project: &str, app: &str, file: &str) -> Result<()> {
        let u = self.url(&["projects", project, "apps", app, "templates", file]);
        self.send(self.request(Method::DELETE, u)).await.map(|_| ())
    }

    /// Sets the shared values (`env` None) or an environment's.
    pub async fn set_config_values(
        &self,
        project: &str,
        app: &str,
        env: Option<&str>,
        req: &kiln_api::config::SetValues,
    ) -> Result<kiln_api::config::EditResult> {
        let u = match env {
            None => self.url(&["projects", project, "apps", app, "values"]),
            Some(e) => self.url(&["projects", project, "apps", app, "values", e]),
        };
        self.json(self.request(Method::PUT, u).json(req)).await
    }

    fn app_env_url(&self, project: &str, app: &str, env: &str, rest: &[&str]) -> Url {
        let mut segments = vec!["projects", project, "apps", app, "environments", env];
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    /// The draft of an application in an environment, rendered (nothing is stored).
    pub async fn config_render(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> Result<kiln_api::config::Rendered> {
        self.json(self.request(Method::GET, self.app_env_url(project, app, env, &["render"]))).await
    }

    /// A diff: the draft against the current release (no option), against another
    /// environment (`against`), or two releases (`releases`).
    pub async fn config_diff(
        &self,
        project: &str,
        app: &str,
        env: &str,
        against: Option<&str>,
        releases: Option<(u32, u32)>,
    ) -> Result<kiln_api::config::ConfigDiff> {
        let mut u = self.app_env_url(project, app, env, &["diff"]);
        if let Some(a) = against {
            u.query_pairs_mut().append_pair("against", a);
        }
        if let Some((from, to)) = releases {
            u.query_pairs_mut()
                .append_pair("from", &from.to_string())
                .append_pair("to", &to.to_string());
        }
        self.json(self.request(Method::GET, u)).await
    }

    /// Releases the draft (or a gray release, or the gray release to all).
    pub async fn config_release(
        &self,
        project: &str,
        app: &str,
        env: &str,
        req: &kiln_api::config::ReleaseRequest,
    ) -> Result<kiln_api::config::ReleaseOutcome> {
        let u = self.app_env_url(project, app, env, &["releases"]);
        self.json(self.request(Method::POST, u).json(req)).await
    }

    /// Every release of an application in an environment, oldest first.
    pub async fn config_history(
        &self,
        project: &str,
        app: &str,
        env: &str,
    ) -> Result<Vec<kiln_api::config::ConfigRelease>> {
        self.json(self.request(Method::GET, self.app_env_url(project, app, env, &["releases"])))
            .await
    }

    /// One release with its files and what they were rendered from.
    pub async fn config_release_detail(
        &self,
        project: &str,
        app: &str,
        env: &str,
        number: u32,
    ) -> Result<kiln_api::config::ConfigReleaseDetail> {
        let n = number.to_string();
        self.json(self.request(Method::GET, self.app_env_url(project, app, env, &["releases", &n])))
            .await
    }

    /// Approves (`approve`) or rejects the release waiting for approval.
    pub async fn config_decide(
        &self,
        project: &str,
        app: &str,
        env: &str,
        number: u32,
        approve: bool,
    ) -> Result<kiln_api::config::ReleaseOutcome> {
        let n = number.to_string();
        let action = if approve { "approve" } else { "reject" };
        let u = self.app_env_url(project, app, env, &["releases", &n, action]);
        self.json(self.request(Method::POST, u)).await
    }

    /// Rolls back: a new release with an earlier release's files.
    pub async fn config_rollback(
        &self,
        project: &str,
        app: &str,
        env: &str,
        req: &kiln_api::config::RollbackRequest,
    ) -> Result<kiln_api::config::ReleaseOutcome> {
        let u = self.app_env_url(project, app, env, &["rollback"]);
        self.json(self.request(Method::POST, u).json(req)).await
    }

    /// The audit log of an application.
    pub async fn config_audit(
        &self,
        project: &str,
        app: &str,
    ) -> Result<Vec<kiln_api::config::AuditEntry>> {
        self.get(&["projects", project, "apps", app, "audit"]).await
    }

    /// The release consumer `instance` gets; with `known` (the digest it has) and `wait`, a
    /// long poll that returns `None` (304) when no other release came within `wait`.
    pub async fn fetch_config(
        &self,
        project: &str,
        app: &str,
        env: &str,
        instance: Option<&str>,
        known: Option<&str>,
        wait: Option<Duration>,
    ) -> Result<Option<kiln_api::config::DeliveredConfig>> {
        let mut u = self.url(&["projects", project, "config", app, env]);
        if let Some(i) = instance {
            u.query_pairs_mut().append_pair("instance", i);
        }
        if let Some(w) = wait {
            u.query_pairs_mut().append_pair("wait", &format!("{}ms", w.as_millis()));
        }
        let mut req = self.request(Method::GET, u);
        if let Some(k) = known {
            req = req.header(reqwest::header::IF_NONE_MATCH, format!("\"{k}\""));
        }
        let resp = self.send(req).await?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        resp.json().await.map(Some).map_err(|e| ClientError::Transport(format!("bad answer: {e}")))
    }

    /// Every release consumer `instance` gets, as it happens (the config watch, over SSE),
    /// after release `after` (the one it has). Yields releases until the server goes away.
    pub async fn watch_config(
        &self,
        project: &str,
        app: &str,
        env: &str,
        instance: Option<&str>,
        after: Option<u32>,
    ) -> Result<impl Stream<Item = Result<kiln_api::config::DeliveredConfig>> + use<>> {
        use eventsource_stream::Eventsource;
        let mut u = self.url(&["projects", project, "config", app, env, "watch"]);
        if let Some(i) = instance {
            u.query_pairs_mut().append_pair("instance", i);
        }
        if let Some(a) = after {
            u.query_pairs_mut().append_pair("after", &a.to_string());
        }
        let resp = self.send(self.request(Method::GET, u)).await?;
        Ok(resp.bytes_stream().eventsource().filter_map(|e| async move {
            match e {
                Ok(ev) if ev.event == "release" => Some(
                    serde_json::from_str(&ev.data)
                        .map_err(|e| ClientError::Transport(format!("bad config release: {e}"))),
                ),
                Ok(_) => None,
                Err(e) => Some(Err(ClientError::Transport(format!("config watch: {e}")))),
            }
        }))
    }

    // ---- agent protocol ----

    /// Registers an agent session.
    pub async fn register_agent(&self, req: &RegisterAgent) -> Result<AgentInfo> {
        self.json(self.request(Method::POST, self.url(&["agents"])).json(req)).await
    }

    /// Ends an agent session (the agent stops).
    pub async fn leave_agent(&self, agent: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, self.url(&["agents", agent]))).await.map(|_| ())
    }

    /// The nodes of the pool.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.json(self.request(Method::GET, self.url(&["nodes"]))).await
    }

    /// Changes a node (by name or IP): attributes, disabled.
    pub async fn update_node(&self, node: &str, update: &NodeUpdate) -> Result<NodeInfo> {
        self.json(self.request(Method::PATCH, self.url(&["nodes", node])).json(update)).await
    }

    /// Forgets a node whose agent is not connected.
    pub async fn forget_node(&self, node: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, self.url(&["nodes", node]))).await.map(|_| ())
    }

    /// Pulls an image onto the nodes the request selects; answers at once with each node's
    /// state (follow it with [`Client::prepull_status`]).
    pub async fn prepull(
        &self,
        req: &kiln_api::pool::PrepullRequest,
    ) -> Result<kiln_api::pool::PrepullStatus> {
        self.json(self.request(Method::POST, self.url(&["nodes", "prepull"])).json(req)).await
    }

    /// How far prepull `id` got on each node.
    pub async fn prepull_status(&self, id: &str) -> Result<kiln_api::pool::PrepullStatus> {
        self.json(self.request(Method::GET, self.url(&["nodes", "prepull", id]))).await
    }

    /// Reports what changed in an agent's image cache (images, finished prepulls).
    pub async fn report_images(
        &self,
        agent: &str,
        report: &kiln_api::agent::ImagesReport,
    ) -> Result<()> {
        let url = self.url(&["agents", agent, "images"]);
        self.send(self.request(Method::POST, url).json(report)).await.map(|_| ())
    }

    /// The free capacity of each connected, enabled node.
    pub async fn offers(&self) -> Result<Vec<Offer>> {
        self.json(self.request(Method::GET, self.url(&["offers"]))).await
    }

    /// Every project's quota and use (projects with a quota or with work on the pool).
    pub async fn quotas(&self) -> Result<Vec<QuotaInfo>> {
        self.json(self.request(Method::GET, self.url(&["quotas"]))).await
    }

    /// Sets a project's quota (replacing the one it had).
    pub async fn set_quota(&self, project: &str, limits: &QuotaLimits) -> Result<QuotaInfo> {
        let url = self.url(&["projects", project, "quota"]);
        self.json(self.request(Method::PUT, url).json(limits)).await
    }

    /// Removes a project's quota.
    pub async fn delete_quota(&self, project: &str) -> Result<()> {
        let url = self.url(&["projects", project, "quota"]);
        self.send(self.request(Method::DELETE, url)).await.map(|_| ())
    }

    /// One lease long poll.
    pub async fn lease(&self, agent: &str, req: &LeaseRequest) -> Result<LeaseResponse> {
        let url = self.url(&["agents", agent, "lease"]);
        let timeout = Duration::from_millis(req.wait_ms) + Duration::from_secs(30);
        self.json(self.request(Method::POST, url).timeout(timeout).json(req)).await
    }

    /// Reports a batch of events of one lease, in order.
    pub async fn lease_events(&self, lease: &str, events: &[AgentEvent]) -> Result<EventsResponse> {
        let url = self.url(&["leases", lease, "events"]);
        self.json(self.request(Method::POST, url).json(events)).await
    }

    /// Reports the events of several leases of agent session `agent` in one request.
    pub async fn lease_reports(
        &self,
        agent: &str,
        reports: &[LeaseReport],
    ) -> Result<ReportsResponse> {
        let url = self.url(&["agents", agent, "events"]);
        self.json(self.request(Method::POST, url).json(reports)).await
    }

    /// Downloads the artifacts of `job` for a lease's workspace; `None` if it stored none.
    /// Artifacts that expired are an error (`artifacts_expired`), not `None`: the job needs
    /// them and cannot have them.
    pub async fn lease_input(&self, lease: &str, job: &str) -> Result<Option<Bytes>> {
        let url = self.url(&["leases", lease, "inputs", job]);
        match self.send(self.request(Method::GET, url)).await {
            Ok(resp) => resp
                .bytes()
                .await
                .map(Some)
                .map_err(|e| ClientError::Transport(format!("download: {e}"))),
            Err(e) if e.code() == Some(kiln_api::codes::ARTIFACTS_EXPIRED) => Err(e),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Downloads a cache archive; `None` on a miss.
    pub async fn lease_cache(&self, lease: &str, key: &str) -> Result<Option<Bytes>> {
        let mut url = self.url(&["leases", lease, "cache"]);
        url.query_pairs_mut().append_pair("key", key);
        self.optional_bytes(url).await
    }

    async fn optional_bytes(&self, url: Url) -> Result<Option<Bytes>> {
        match self.send(self.request(Method::GET, url)).await {
            Ok(resp) => resp
                .bytes()
                .await
                .map(Some)
                .map_err(|e| ClientError::Transport(format!("download: {e}"))),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Uploads a cache archive (tar.gz) under `key`.
    pub async fn put_lease_cache(&self, lease: &str, key: &str, body: Vec<u8>) -> Result<()> {
        let mut url = self.url(&["leases", lease, "cache"]);
        url.query_pairs_mut().append_pair("key", key);
        self.send(self.request(Method::PUT, url).body(body)).await.map(|_| ())
    }

    /// Uploads a job's artifact archive (tar.gz).
    pub async fn put_lease_artifacts(&self, lease: &str, body: Vec<u8>) -> Result<Artifact> {
        let url = self.url(&["leases", lease, "artifacts"]);
        self.json(self.request(Method::PUT, url).body(body)).await
    }
}

/// Splits `project/pipeline#number`.
pub fn parse_run_name(s: &str) -> Option<(&str, &str, &str)> {
    let (path, number) = s.split_once('#')?;
    let (project, pipeline) = path.split_once('/')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((project, pipeline, number))
}

fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => kiln_api::codes::BAD_REQUEST,
        401 => kiln_api::codes::UNAUTHORIZED,
        403 => kiln_api::codes::FORBIDDEN,
        404 => kiln_api::codes::NOT_FOUND,
        409 => kiln_api::codes::CONFLICT,
        413 => kiln_api::codes::TOO_LARGE,
        _ => kiln_api::codes::INTERNAL,
    }
}

fn transport(e: &reqwest::Error) -> String {
    let url = e.url().map(|u| format!("{}://{}", u.scheme(), u.authority())).unwrap_or_default();
    if e.is_connect() {
        format!(
            "cannot reach the Kiln server at {url}: is `kiln server` running? (set --server or KILN_SERVER)"
        )
    } else if e.is_timeout() {
        format!("the Kiln server at {url} did not answer in time")
    } else {
        format!("talking to {url}: {e}")
    }
}
