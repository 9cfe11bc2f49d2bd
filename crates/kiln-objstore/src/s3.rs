//! Objects in an S3 bucket under a prefix ([`S3Objects`]), through any S3 API (AWS, MinIO,
//! Garage, Ceph RGW, s3s-fs…), and where and how to reach it ([`S3Config`]).
//!
//! Key `k` is the object `<prefix>/k`. A put is one `PutObject` (small files) or a multipart
//! upload completed at the end (big ones): S3 makes an object visible whole or not at all, so
//! a reader never sees part of one, and a crash mid-upload leaves at most an incomplete
//! multipart upload that no read sees (the bucket's lifecycle rule
//! `AbortIncompleteMultipartUpload` reclaims it; Kiln aborts it on errors).
//!
//! Requests go through hyper and rustls on the `ring` provider, passed explicitly, so no
//! process-wide crypto provider is needed or installed (kube uses ring too; see
//! ../shared/design/dependencies.md W2.0). [`S3Objects::open`] probes the bucket with a short
//! time-out and few retries, so a wrong endpoint, key or bucket is a one-line error at start.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};
use object_store::path::Path as Key;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::{ObjectMeta, ObjectRead, Objects, check_key};

/// Where and how to reach the bucket: `kiln server --object-store s3://bucket/prefix` (or
/// `--blob-store`, the registry's blobs only) with the `--s3-*` options.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// What the store is called in errors: `blob store` (the default) or `object store`.
    pub role: &'static str,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading or trailing `/` (empty: the bucket's root).
    pub prefix: String,
    /// The endpoint (`http://127.0.0.1:9000`, `https://s3.example.com`); `None`: AWS's
    /// endpoint of [`S3Config::region`].
    pub endpoint: Option<String>,
    /// The region (`us-east-1` unless set; most other S3 servers ignore it).
    pub region: String,
    /// The access key id and secret; `None`: unsigned requests (a public bucket).
    pub credentials: Option<S3Credentials>,
    /// Whether a plain `http://` endpoint is allowed (off by default).
    pub allow_http: bool,
    /// `https://bucket.endpoint/key` requests rather than `https://endpoint/bucket/key`
    /// (path style, the default: every S3 server takes it). The bucket is put in front of
    /// the endpoint's host unless it is there already.
    pub virtual_hosted_style: bool,
    /// Blobs larger than this are uploaded in parts of this size (at least 5 MiB, S3's
    /// smallest part); default 16 MiB.
    pub part_size: usize,
}

/// An S3 key pair (and session token, for temporary credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `AWS_SESSION_TOKEN`, if any.
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("url", &self.url())
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// The default [`S3Config::part_size`].
pub const DEFAULT_PART_SIZE: usize = 16 * 1024 * 1024;

/// S3's smallest part of a multipart upload (but the last).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;

impl S3Config {
    /// The config of `s3://bucket[/prefix]`, with the defaults: AWS's endpoint, region
    /// `us-east-1`, no credentials, https only, path style, 16 MiB parts; called a `blob
    /// store` in errors.
    pub fn from_url(url: &str) -> Result<S3Config, S3Error> {
        S3Config::from_url_as(url, "blob store")
    }

    /// [`S3Config::from_url`] for a store called `role` in errors (`object store`).
    pub fn from_url_as(url: &str, role: &'static str) -> Result<S3Config, S3Error> {
        let bad = |why: &str| S3Error::Url { role, url: url.to_string(), why: why.to_string() };
        let rest = url.strip_prefix("s3://").ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-_".contains(c);
        if bucket.is_empty() || !bucket.chars().all(valid) {
            return Err(bad("the bucket name must be lowercase letters, digits, `.`, `-`, `_`"));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|part| part.is_empty() || part == "." || part == "..")
            && !prefix.is_empty()
        {
            return Err(bad("the prefix has an empty, `.` or `..` part"));
        }
        Ok(S3Config {
            role,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: None,
            region: "us-east-1".into(),
            credentials: None,
            allow_http: false,
            virtual_hosted_style: false,
            part_size: DEFAULT_PART_SIZE,
        })
    }

    /// `s3://bucket/prefix`, as errors and logs show it.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The endpoint requests go to, as errors show it.
    pub fn shown_endpoint(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None => format!("https://s3.{}.amazonaws.com", self.region),
        }
    }
}

/// Reads S3 credentials from a file: an AWS shared credentials file (`[default]` /
/// `[profile]` sections with `aws_access_key_id`, `aws_secret_access_key`,
/// `aws_session_token`), or plain `KEY=value` lines (`AWS_ACCESS_KEY_ID=…`,
/// `AWS_SECRET_ACCESS_KEY=…`, as an env file has them). `profile` picks the section
/// (`default` when `None`).
pub fn read_credentials_file(path: &Path, profile: Option<&str>) -> Result<S3Credentials, S3Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| S3Error::Credentials { path: path.to_path_buf(), why: e.to_string() })?;
    parse_credentials(&text, profile)
        .map_err(|why| S3Error::Credentials { path: path.to_path_buf(), why })
}

/// [`read_credentials_file`] on the text of the file.
pub fn parse_credentials(text: &str, profile: Option<&str>) -> Result<S3Credentials, String> {
    let wanted = profile.unwrap_or("default");
    let mut section: Option<String> = None;
    let mut sections_seen = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            section = Some(name.strip_prefix("profile ").unwrap_or(name).trim().to_string());
            sections_seen = true;
            continue;
        }
        if section.as_deref().is_some_and(|s| s != wanted) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("`{line}` is neither `[section]` nor `key = value`"));
        };
        let key = key.trim().trim_start_matches("export ").trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"').trim_matches('\'').to_string();
        match key.as_str() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            "aws_session_token" => token = Some(value),
            _ => {}
        }
    }
    let place = if sections_seen { format!("profile `{wanted}`") } else { "the file".into() };
    match (id, secret) {
        (Some(access_key_id), Some(secret_access_key)) => {
            Ok(S3Credentials { access_key_id, secret_access_key, session_token: token })
        }
        (None, _) => Err(format!("{place} has no aws_access_key_id")),
        (_, None) => Err(format!("{place} has no aws_secret_access_key")),
    }
}

/// Why the S3 blob store cannot be used, in one line.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The `s3://` URL is malformed.
    #[error("{role} `{url}`: {why} (expected s3://bucket/prefix)")]
    Url {
        /// What the store is called ([`S3Config::role`]).
        role: &'static str,
        /// The URL given.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The credentials file is unreadable or incomplete.
    #[error("S3 credentials file `{}`: {why}", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The store could not be set up or the probe at start failed.
    #[error("{role} {url}: {why}")]
    Unusable {
        /// What the store is called ([`S3Config::role`]).
        role: &'static str,
        /// `s3://bucket/prefix`.
        url: String,
        /// The cause, naming the endpoint.
        why: String,
    },
}

/// [`Objects`] in an S3 bucket under [`S3Config::prefix`].
#[derive(Debug, Clone)]
pub struct S3Objects {
    store: Arc<AmazonS3>,
    config: Arc<S3Config>,
    /// The prefix of keys: the config's, and the parts it was scoped to.
    prefix: String,
}

/// How long the probe at start waits for a connection, and for an answer.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl S3Objects {
    /// Sets up the store and probes the bucket (a one-key listing of the prefix, with a short
    /// time-out and one retry): an unreachable endpoint, refused credentials or a missing
    /// bucket are an [`S3Error::Unusable`] within seconds. Nothing is written.
    pub async fn open(config: S3Config) -> Result<S3Objects, S3Error> {
        let probe = build(
            &config,
            Connector { connect_timeout: PROBE_CONNECT_TIMEOUT, timeout: PROBE_TIMEOUT },
            RetryConfig {
                max_retries: 1,
                retry_timeout: PROBE_TIMEOUT,
                backoff: object_store::BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_millis(500),
                    base: 2.0,
                },
            },
        )?;
        let prefix = Key::from(config.prefix.as_str());
        let listing = tokio::time::timeout(
            PROBE_TIMEOUT * 2,
            probe.list_with_delimiter(if config.prefix.is_empty() { None } else { Some(&prefix) }),
        )
        .await;
        let unusable =
            |why: String| S3Error::Unusable { role: config.role, url: config.url(), why };
        match listing {
            Err(_) => {
                return Err(unusable(format!(
                    "no answer from {} within {}s",
                    config.shown_endpoint(),
                    (PROBE_TIMEOUT * 2).as_secs()
                )));
            }
            Ok(Err(e)) => return Err(unusable(explain(&e, &config))),
            Ok(Ok(_)) => {}
        }
        let store = build(
            &config,
            Connector { connect_timeout: Duration::from_secs(5), timeout: Duration::from_secs(60) },
            RetryConfig::default(),
        )?;
        let prefix = config.prefix.clone();
        Ok(S3Objects { store: Arc::new(store), config: Arc::new(config), prefix })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// The prefix of its keys in the bucket (empty: the bucket's root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// [`Objects::scoped`], as an `S3Objects`.
    pub fn scope(&self, part: &str) -> S3Objects {
        S3Objects {
            store: self.store.clone(),
            config: self.config.clone(),
            prefix: crate::join(&self.prefix, part.trim_matches('/')),
        }
    }

    /// The object of key `key`: `<prefix>/<key>`.
    fn key(&self, key: &str) -> io::Result<Key> {
        check_key(key)?;
        Ok(Key::from(crate::join(&self.prefix, key)))
    }

    async fn upload_parts(&self, key: &Key, mut file: tokio::fs::File) -> io::Result<()> {
        let upload = self.store.put_multipart(key).await.map_err(to_io)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.config.part_size);
        let mut buf = vec![0u8; 1024 * 1024];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            };
            // At most a few parts in flight, so a big file does not sit in memory whole.
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(to_io(e));
            }
            writer.write(&buf[..n]);
        }
        // An error here aborts the upload (WriteMultipart::finish does).
        writer.finish().await.map_err(to_io)?;
        Ok(())
    }
}

/// A one-line cause for a failed probe.
fn explain(e: &object_store::Error, config: &S3Config) -> String {
    let endpoint = config.shown_endpoint();
    let text = format!("{e}");
    let (chain, deepest) = {
        let mut all = text.clone();
        let mut deepest = text.clone();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            all.push_str(": ");
            all.push_str(&s.to_string());
            deepest = s.to_string();
            source = s.source();
        }
        (all, deepest.replace('\n', " "))
    };
    let has = |needle: &str| chain.contains(needle);
    // The S3 error code of the answer, if any (`<Code>NoSuchBucket</Code>`).
    let code = chain
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string());
    match code.as_deref() {
        Some("NoSuchBucket") => {
            return format!("the bucket `{}` does not exist at {endpoint}", config.bucket);
        }
        // AWS says InvalidAccessKeyId; s3s NotSignedUp.
        Some(c @ ("InvalidAccessKeyId" | "NotSignedUp")) => {
            return format!("the access key id was refused by {endpoint} ({c})");
        }
        Some(c @ "SignatureDoesNotMatch") => {
            return format!("the secret access key was refused by {endpoint} ({c})");
        }
        Some(c @ ("AccessDenied" | "AllAccessDisabled" | "AccountProblem")) => {
            return format!(
                "access to bucket `{}` denied by {endpoint} ({c}: check the credentials and the bucket policy)",
                config.bucket
            );
        }
        Some(c) => return format!("{endpoint} refused the listing of the prefix ({c})"),
        None => {}
    }
    if has("403 Forbidden") {
        format!(
            "access to bucket `{}` denied by {endpoint} (403: check the credentials and the bucket policy)",
            config.bucket
        )
    } else if has("Connection refused") || has("connection refused") {
        format!("cannot connect to {endpoint}: connection refused")
    } else if has("dns error") || has("failed to lookup") {
        format!("cannot resolve the host of {endpoint}")
    } else if has("onnect") && has("timed out") || has("connect timeout") {
        format!(
            "cannot connect to {endpoint}: timed out after {}s",
            PROBE_CONNECT_TIMEOUT.as_secs()
        )
    } else if has("URL scheme is not allowed") || has("plain http") {
        format!("{endpoint} is plain HTTP; allow it with --s3-allow-http")
    } else if has("404") {
        format!("the bucket `{}` does not exist at {endpoint} (404)", config.bucket)
    } else if has("no answer in time") {
        format!("no answer from {endpoint} within {}s", PROBE_TIMEOUT.as_secs())
    } else if has("(Connect)") {
        // TLS failures land here (a plain-HTTP server, an unknown certificate authority).
        format!("cannot connect to {endpoint}: {deepest}")
    } else {
        // The last resort: the innermost cause, on one line.
        format!("{endpoint}: {deepest}")
    }
}

fn build(config: &S3Config, connector: Connector, retry: RetryConfig) -> Result<AmazonS3, S3Error> {
    let mut builder = AmazonS3Builder::new()
        .with_client_options(ClientOptions::new().with_allow_http(config.allow_http))
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_virtual_hosted_style_request(config.virtual_hosted_style)
        .with_retry(retry)
        .with_http_connector(HyperConnector { timeouts: connector, allow_http: config.allow_http });
    if let Some(endpoint) = &config.endpoint {
        if endpoint.starts_with("http://") && !config.allow_http {
            return Err(S3Error::Unusable {
                role: config.role,
                url: config.url(),
                why: format!("{endpoint} is plain HTTP; allow it with --s3-allow-http"),
            });
        }
        builder = builder.with_endpoint(bucket_endpoint(endpoint, config));
    }
    match &config.credentials {
        Some(c) => {
            builder = builder
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
            if let Some(token) = &c.session_token {
                builder = builder.with_token(token);
            }
        }
        None => builder = builder.with_skip_signature(true),
    }
    builder.build().map_err(|e| S3Error::Unusable {
        role: config.role,
        url: config.url(),
        why: e.to_string().replace('\n', " "),
    })
}

/// The endpoint object_store wants: with virtual-hosted-style requests, the bucket's own
/// host (`https://bucket.s3.example.com`), made from `https://s3.example.com` unless given so.
fn bucket_endpoint(endpoint: &str, config: &S3Config) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if !config.virtual_hosted_style {
        return endpoint.to_string();
    }
    let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    if host.starts_with(&format!("{}.", config.bucket)) {
        endpoint.to_string()
    } else {
        format!("{scheme}://{}.{host}", config.bucket)
    }
}

fn to_io(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

fn object_meta(prefix: &str, meta: object_store::ObjectMeta) -> ObjectMeta {
    let location = meta.location.as_ref();
    let key = if prefix.is_empty() {
        location.to_string()
    } else {
        location.strip_prefix(prefix).unwrap_or(location).trim_start_matches('/').to_string()
    };
    ObjectMeta { key, size: meta.size, modified: SystemTime::from(meta.last_modified) }
}

#[async_trait]
impl Objects for S3Objects {
    fn describe(&self) -> String {
        let url = if self.prefix.is_empty() {
            format!("s3://{}", self.config.bucket)
        } else {
            format!("s3://{}/{}", self.config.bucket, self.prefix)
        };
        format!("{url} at {}", self.config.shown_endpoint())
    }

    fn scoped(&self, part: &str) -> Arc<dyn Objects> {
        Arc::new(self.scope(part))
    }

    async fn head(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        match self.store.head(&self.key(key)?).await {
            Ok(meta) => Ok(Some(object_meta(&self.prefix, meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn get(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<Option<ObjectRead>> {
        let location = self.key(key)?;
        // S3 has no empty range: an empty read is a head.
        if let Some((start, end)) = range
            && start >= end
        {
            return Ok(self
                .head(key)
                .await?
                .map(|m| ObjectRead { size: m.size, body: Box::pin(futures::stream::empty()) }));
        }
        let options = GetOptions {
            range: range.map(|(start, end)| GetRange::Bounded(start..end)),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&location, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(to_io(e)),
        };
        let size = result.meta.size;
        let body = result.into_stream().map_err(to_io);
        Ok(Some(ObjectRead { size, body: Box::pin(body) }))
    }

    async fn put_file(&self, key: &str, staged: &Path) -> io::Result<()> {
        let location = self.key(key)?;
        let file = tokio::fs::File::open(staged).await?;
        let size = file.metadata().await?.len();
        if size as usize > self.config.part_size {
            self.upload_parts(&location, file).await?;
        } else {
            let bytes = tokio::fs::read(staged).await?;
            self.store.put(&location, PutPayload::from(Bytes::from(bytes))).await.map_err(to_io)?;
        }
        tokio::fs::remove_file(staged).await?;
        Ok(())
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> io::Result<()> {
        let location = self.key(key)?;
        self.store.put(&location, PutPayload::from(bytes)).await.map_err(to_io)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match self.store.delete(&self.key(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    }

    async fn list(&self, prefix: &str) -> io::Result<Vec<ObjectMeta>> {
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        let full = crate::join(&self.prefix, prefix);
        let location = Key::from(full.as_str());
        let mut objects = self.store.list(if full.is_empty() { None } else { Some(&location) });
        let mut out = Vec::new();
        while let Some(meta) = objects.next().await {
            out.push(object_meta(&self.prefix, meta.map_err(to_io)?));
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

/// Connection and answer time-outs of [`HyperConnector`].
#[derive(Debug, Clone, Copy)]
struct Connector {
    connect_timeout: Duration,
    /// For the answer's head (a body streams as long as it takes).
    timeout: Duration,
}

/// object_store's [`HttpConnector`] on hyper and rustls with the ring provider (object_store's
/// own connector is reqwest, whose TLS would need a process-wide provider; see the module).
#[derive(Debug)]
struct HyperConnector {
    timeouts: Connector,
    allow_http: bool,
}

type HyperClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    object_store::client::HttpRequestBody,
>;

#[derive(Debug)]
struct HyperService {
    client: HyperClient,
    timeout: Duration,
}

impl HttpConnector for HyperConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        #[allow(deprecated)] // rustls 0.23.48: ring has no post-quantum key exchange
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b,
            Err(e) => {
                // No system roots: https endpoints fail at the handshake with a clear error.
                tracing::warn!("no system CA certificates for S3 over https: {e}");
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
            }
        };
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(self.timeouts.connect_timeout));
        http.set_nodelay(true);
        let https = if self.allow_http {
            builder.https_or_http().enable_http1().wrap_connector(http)
        } else {
            builder.https_only().enable_http1().wrap_connector(http)
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https);
        Ok(HttpClient::new(HyperService { client, timeout: self.timeouts.timeout }))
    }
}

#[async_trait]
impl HttpService for HyperService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => {
                return Err(HttpError::new(
                    HttpErrorKind::Timeout,
                    io::Error::new(io::ErrorKind::TimedOut, "no answer in time"),
                ));
            }
            Ok(Err(e)) => {
                let kind =
                    if e.is_connect() { HttpErrorKind::Connect } else { HttpErrorKind::Request };
                return Err(HttpError::new(kind, e));
            }
            Ok(Ok(r)) => r,
        };
        let (parts, body) = response.into_parts();
        let body = body.map_err(|e| HttpError::new(HttpErrorKind::Request, e));
        Ok(http::Response::from_parts(parts, HttpResponseBody::new(body)))
    }
}

#[cfg(test)]
mod tests {
    use super::{S3Config, parse_credentials};

    #[test]
    fn an_s3_url_names_a_bucket_and_a_prefix() {
        let c = S3Config::from_url("s3://kiln-blobs/team/registry/").unwrap();
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("kiln-blobs", "team/registry"));
        assert_eq!(c.url(), "s3://kiln-blobs/team/registry");
        assert_eq!(c.shown_endpoint(), "https://s3.us-east-1.amazonaws.com");
        let root = S3Config::from_url("s3://bucket").unwrap();
        assert_eq!((root.prefix.as_str(), root.url().as_str()), ("", "s3://bucket"));
        for bad in
            ["kiln-blobs/x", "s3://", "s3:///x", "s3://Upper/x", "s3://b/a//c", "s3://b/../x"]
        {
            let e = S3Config::from_url(bad).expect_err(bad).to_string();
            assert!(e.starts_with(&format!("blob store `{bad}`: ")), "{e}");
        }
    }

    #[test]
    fn a_virtual_hosted_endpoint_is_the_buckets_host() {
        let mut c = S3Config::from_url("s3://kiln/reg").unwrap();
        assert_eq!(super::bucket_endpoint("https://s3.example.com/", &c), "https://s3.example.com");
        c.virtual_hosted_style = true;
        assert_eq!(
            super::bucket_endpoint("https://s3.example.com", &c),
            "https://kiln.s3.example.com"
        );
        assert_eq!(
            super::bucket_endpoint("https://kiln.s3.example.com", &c),
            "https://kiln.s3.example.com"
        );
    }

    #[test]
    fn credentials_come_from_an_aws_file_or_key_value_lines() {
        let aws = "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s1\n\n\
                   [profile ci]\naws_access_key_id=AKIA2\naws_secret_access_key=s2\naws_session_token=t2\n";
        let d = parse_credentials(aws, None).unwrap();
        assert_eq!((d.access_key_id.as_str(), d.secret_access_key.as_str()), ("AKIA1", "s1"));
        assert_eq!(d.session_token, None);
        let ci = parse_credentials(aws, Some("ci")).unwrap();
        assert_eq!((ci.access_key_id.as_str(), ci.session_token.as_deref()), ("AKIA2", Some("t2")));
        assert_eq!(
            parse_credentials(aws, Some("prod")).unwrap_err(),
            "profile `prod` has no aws_access_key_id"
        );
        let env = "# kiln\nexport AWS_ACCESS_KEY_ID=\"AKIA3\"\nAWS_SECRET_ACCESS_KEY='s3'\n";
        let e = parse_credentials(env, None).unwrap();
        assert_eq!((e.access_key_id.as_str(), e.secret_access_key.as_str()), ("AKIA3", "s3"));
        assert_eq!(
            parse_credentials("AWS_ACCESS_KEY_ID=x\n", None).unwrap_err(),
            "the file has no aws_secret_access_key"
        );
        assert!(parse_credentials("garbage\n", None).unwrap_err().contains("`garbage`"));
        // The secret never shows in debug output.
        assert!(!format!("{d:?}").contains("s1"));
    }
}
