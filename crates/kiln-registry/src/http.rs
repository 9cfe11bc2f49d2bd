//! The HTTP surface: `/v2/…` (distribution spec v1.1) and `/auth/token`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use base64::Engine as _;
use kiln_store::ManifestPut;

use crate::Registry;
use crate::auth::{self, Access, Action, Claims, Principal};
use crate::error::{Code, RegError, RegResult};
use crate::manifest::{self, OCI_INDEX};
use crate::names::{Algorithm, check_digest, check_repository, is_tag, parse_digest};
use crate::upload::{self, parse_content_range};

type Reg = Arc<Registry>;

/// Most entries one tags or catalog page returns.
const MAX_PAGE: u32 = 10_000;

pub(crate) fn router<S: Clone + Send + Sync + 'static>(reg: Reg) -> Router<S> {
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/v2/{*rest}", any(dispatch))
        .route("/auth/token", get(token).post(token))
        .with_state(reg)
}

/// Query parameters, in order (a parameter may repeat, like `scope`).
fn query_pairs(req: &Request) -> Vec<(String, String)> {
    let Some(q) = req.uri().query() else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The credentials of a request.
enum Cred {
    None,
    Bearer(Claims),
    Basic(Principal),
}

impl Registry {
    /// Reads the `Authorization` header: a registry token, or basic auth with a Kiln token.
    async fn credentials(&self, headers: &HeaderMap, challenge: &str) -> RegResult<Cred> {
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return Ok(Cred::None);
        };
        let unauthorized = |m: &str| {
            let mut e = RegError::new(Code::Unauthorized, m);
            e.challenge = Some(challenge.to_string());
            e
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            let claims = self.keys.verify(token.trim()).ok_or_else(|| {
                unauthorized("the registry token is invalid or expired; log in again")
            })?;
            if claims.kiln.as_ref().is_some_and(|p| self.auth.revoked(p)) {
                return Err(unauthorized(
                    "the Kiln token this registry token was issued for was revoked",
                ));
            }
            return Ok(Cred::Bearer(claims));
        }
        if let Some(b64) = value.strip_prefix("Basic ") {
            let principal = self.basic(b64).await.ok_or_else(|| {
                unauthorized("the Kiln token (the password) is unknown or revoked")
            })?;
            return Ok(Cred::Basic(not_agent(principal)?));
        }
        Err(unauthorized(
            "the Authorization header must be `Bearer <token>` or `Basic <user:token>`",
        ))
    }

    /// The caller behind basic credentials whose password is a Kiln or job token.
    async fn basic(&self, b64: &str) -> Option<Principal> {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (_, secret) = text.split_once(':')?;
        if secret.starts_with(auth::JOB_PREFIX) {
            return self.keys.verify_job_token(secret);
        }
        self.auth.authenticate(secret).await
    }

    /// The `WWW-Authenticate` challenge naming `scopes` (repository, actions), all in one
    /// space-separated `scope` parameter as CNCF distribution writes them.
    fn challenge(&self, headers: &HeaderMap, scopes: &[(&str, &str)]) -> String {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let proto =
            headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
        let mut c = format!(
            "Bearer realm=\"{proto}://{host}/auth/token\",service=\"{}\"",
            self.keys.service()
        );
        if !scopes.is_empty() {
            let list: Vec<String> = scopes
                .iter()
                .map(|(repo, actions)| format!("repository:{repo}:{actions}"))
                .collect();
            c.push_str(&format!(",scope=\"{}\"", list.join(" ")));
        }
        c
    }

    /// The actions a caller has on repository `repo`.
    async fn rights(&self, who: Option<&Principal>, repo: &str) -> RegResult<Vec<Action>> {
        let project = check_repository(repo)?;
        let project = self.project_id(project).await?;
        let public = self.is_public(repo).await?;
        Ok(auth::allowed(who, project.as_ref(), public))
    }

    /// Checks that the request may do `action` on `repo`; returns who it is.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        repo: &str,
        action: Action,
    ) -> RegResult<String> {
        self.authorize_with(headers, repo, action, &[]).await
    }

    /// [`Registry::authorize`], with the challenge of a refusal also naming the scopes `also`
    /// (a mount's source repository: a client following the challenge gets a token that can
    /// mount).
    async fn authorize_with(
        &self,
        headers: &HeaderMap,
        repo: &str,
        action: Action,
        also: &[(&str, &str)],
    ) -> RegResult<String> {
        check_repository(repo)?;
        let scope_actions = match action {
            Action::Pull => "pull",
            Action::Push => "pull,push",
            Action::Delete => "delete",
        };
        let mut scopes = vec![(repo, scope_actions)];
        scopes.extend_from_slice(also);
        let challenge = self.challenge(headers, &scopes);
        let denied_401 = |m: String| {
            let mut e = RegError::new(Code::Unauthorized, m);
            e.challenge = Some(challenge.clone());
            e
        };
        match self.credentials(headers, &challenge).await? {
            Cred::Bearer(claims) => {
                if claims.grants(repo, action) {
                    Ok(claims.sub)
                } else {
                    // A valid token lacking the scope is 401 `insufficient_scope`, as CNCF
                    // distribution answers: clients ask for a new token only after a 401, and
                    // the challenge names the scopes to ask for.
                    let mut e = RegError::new(
                        Code::Unauthorized,
                        format!(
                            "the registry token does not grant `{}` on `{repo}`: ask \
                             /auth/token for the scope the challenge names",
                            action.as_str()
                        ),
                    );
                    e.challenge = Some(format!("{challenge},error=\"insufficient_scope\""));
                    Err(e)
                }
            }
            Cred::Basic(p) => {
                let rights = self.rights(Some(&p), repo).await?;
                if rights.contains(&action) {
                    Ok(p.name)
                } else if !rights.contains(&Action::Pull) {
                    // A repository the caller may not see is answered as a missing one.
                    Err(self.no_project(repo))
                } else {
                    Err(RegError::new(
                        Code::Denied,
                        format!("token `{}` may not {} `{repo}`", p.name, action.as_str()),
                    ))
                }
            }
            Cred::None => {
                if action == Action::Pull && self.rights(None, repo).await?.contains(&Action::Pull)
                {
                    Ok("anonymous".to_string())
                } else {
                    Err(denied_401(format!(
                        "authentication required to {} `{repo}`",
                        action.as_str()
                    )))
                }
            }
        }
    }

    /// The answer for a repository whose project does not exist or that the caller may not
    /// see: the same in both cases, so it tells strangers nothing.
    fn no_project(&self, repo: &str) -> RegError {
        let project = repo.split('/').next().unwrap_or(repo);
        RegError::new(
            Code::NameUnknown,
            format!(
                "project `{project}` does not exist or your token may not see it: repositories \
                 are `<project>/<name>`"
            ),
        )
    }

    /// Creates repository `repo` on its first push (its project must exist).
    async fn ensure_repository(&self, repo: &str) -> RegResult<()> {
        let project = check_repository(repo)?;
        let id = self.project_id(project).await?.ok_or_else(|| self.no_project(repo))?;
        self.store.registry_ensure_repository(repo, &id).await?;
        Ok(())
    }
}

fn api_version(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    resp
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `GET /v2/`: 200 for any valid credentials, else the challenge.
async fn base(State(reg): State<Reg>, headers: HeaderMap) -> Response {
    let challenge = reg.challenge(&headers, &[]);
    let result = match reg.credentials(&headers, &challenge).await {
        Ok(Cred::None) => {
            let mut e = RegError::new(Code::Unauthorized, "authentication required");
            e.challenge = Some(challenge);
            Err(e)
        }
        Ok(_) => Ok(api_version(axum::Json(serde_json::json!({})).into_response())),
        Err(e) => Err(e),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET|POST /auth/token`: a registry token for the requested scopes.
async fn token(State(reg): State<Reg>, req: Request) -> Response {
    issue_token(&reg, req).await.unwrap_or_else(IntoResponse::into_response)
}

async fn issue_token(reg: &Registry, req: Request) -> RegResult<Response> {
    let mut pairs = query_pairs(&req);
    if req.method() == Method::POST {
        // OAuth2 form posts carry the same parameters in the body.
        let body = axum::body::to_bytes(req.into_body(), 64 * 1024).await.map_err(|e| {
            // Past the cap (the only way a buffered body fails to read whole): 413.
            RegError::new(Code::Unsupported, format!("unreadable body (at most 65536 bytes): {e}"))
                .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        })?;
        let text = String::from_utf8_lossy(&body).to_string();
        for p in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            pairs.push((decode(k), decode(v)));
        }
        if let Some(password) = param(&pairs, "password").map(str::to_string) {
            let p = reg.auth_secret(&password).await.ok_or_else(|| {
                RegError::new(
                    Code::Unauthorized,
                    "the Kiln token (the password) is unknown or revoked",
                )
            })?;
            return grant(reg, Some(&not_agent(p)?), &pairs).await;
        }
        return Err(RegError::new(Code::Unsupported, "POST /auth/token needs a `password`"));
    }
    let headers = req.headers().clone();
    let challenge = reg.challenge(&headers, &[]);
    let who = match reg.credentials(&headers, &challenge).await {
        Ok(Cred::Basic(p)) => Some(p),
        Ok(Cred::Bearer(c)) => c.kiln,
        Ok(Cred::None) => None,
        Err(mut e) => {
            e.challenge = None;
            return Err(e);
        }
    };
    grant(reg, who.as_ref(), &pairs).await
}

/// Refuses an agent token: it runs agents and has no registry rights (it would pull every
/// private repository otherwise).
fn not_agent(p: Principal) -> RegResult<Principal> {
    if p.role == kiln_store::Role::Agent {
        return Err(RegError::new(
            Code::Denied,
            format!(
                "token `{}` is an agent token: it runs agents and has no registry rights",
                p.name
            ),
        ));
    }
    Ok(p)
}

impl Registry {
    async fn auth_secret(&self, secret: &str) -> Option<Principal> {
        if secret.starts_with(auth::JOB_PREFIX) {
            return self.keys.verify_job_token(secret);
        }
        self.auth.authenticate(secret).await
    }
}

async fn grant(
    reg: &Registry,
    who: Option<&Principal>,
    pairs: &[(String, String)],
) -> RegResult<Response> {
    let mut access = Vec::new();
    for (_, text) in pairs.iter().filter(|(k, _)| k == "scope") {
        for scope in auth::parse_scopes(text) {
            match scope.kind.as_str() {
                "repository" => {
                    if check_repository(&scope.name).is_err() {
                        continue;
                    }
                    let allowed = reg.rights(who, &scope.name).await?;
                    let mut actions: Vec<String> = Vec::new();
                    for a in allowed {
                        let asked = scope.actions.iter().any(|x| x == a.as_str() || x == "*");
                        if asked {
                            actions.push(a.as_str().to_string());
                        }
                    }
                    if !actions.is_empty() {
                        access.push(Access {
                            kind: "repository".into(),
                            name: scope.name,
                            actions,
                        });
                    }
                }
                "registry" if scope.name == "catalog" && who.is_some() => {
                    access.push(Access {
                        kind: "registry".into(),
                        name: "catalog".into(),
                        actions: vec!["*".into()],
                    });
                }
                _ => {}
            }
        }
    }
    let (token, claims) = reg.keys.issue(who, access);
    let issued = chrono::DateTime::<chrono::Utc>::from_timestamp(claims.iat as i64, 0)
        .unwrap_or_default()
        .to_rfc3339();
    Ok(axum::Json(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": auth::TOKEN_TTL.as_secs(),
        "issued_at": issued,
    }))
    .into_response())
}

/// What a `/v2/<rest>` path names.
enum Target<'a> {
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

fn target(rest: &str) -> Option<Target<'_>> {
    if rest == "_catalog" {
        return Some(Target::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Target::Tags(name));
    }
    if let Some(name) =
        rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Target::Uploads(name));
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        return Some(Target::Upload(name, id));
    }
    if let Some((name, r)) = rest.rsplit_once("/manifests/") {
        return Some(Target::Manifest(name, r));
    }
    if let Some((name, d)) = rest.rsplit_once("/blobs/") {
        return Some(Target::Blob(name, d));
    }
    if let Some((name, d)) = rest.rsplit_once("/referrers/") {
        return Some(Target::Referrers(name, d));
    }
    None
}

async fn dispatch(State(reg): State<Reg>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let rest = path.strip_prefix("/v2/").unwrap_or("").to_string();
    let result = route(&reg, &rest, req).await;
    api_version(result.unwrap_or_else(IntoResponse::into_response))
}

async fn route(reg: &Registry, rest: &str, req: Request) -> RegResult<Response> {
    let not_found = || RegError::new(Code::NameUnknown, format!("no such endpoint `/v2/{rest}`"));
    let method = req.method().clone();
    let unsupported =
        || RegError::new(Code::Unsupported, format!("{method} is not supported on `/v2/{rest}`"));
    match target(rest).ok_or_else(not_found)? {
        Target::Catalog if method == Method::GET => catalog(reg, req).await,
        Target::Tags(name) if method == Method::GET => tags(reg, name, req).await,
        Target::Manifest(name, r) => match method {
            Method::GET | Method::HEAD => get_manifest(reg, name, r, req).await,
            Method::PUT => put_manifest(reg, name, r, req).await,
            Method::DELETE => delete_manifest(reg, name, r, req).await,
            _ => Err(unsupported()),
        },
        Target::Uploads(name) if method == Method::POST => start_upload(reg, name, req).await,
        Target::Upload(name, id) => match method {
            Method::GET => upload_status(reg, name, id, req).await,
            Method::PATCH => patch_upload(reg, name, id, req).await,
            Method::PUT => put_upload(reg, name, id, req).await,
            Method::DELETE => cancel_upload(reg, name, id, req).await,
            _ => Err(unsupported()),
        },
        Target::Blob(name, d) => match method {
            Method::GET | Method::HEAD => get_blob(reg, name, d, req).await,
            Method::DELETE => delete_blob(reg, name, d, req).await,
            _ => Err(unsupported()),
        },
        Target::Referrers(name, d) if method == Method::GET => referrers(reg, name, d, req).await,
        _ => Err(unsupported()),
    }
}

fn page_size(q: &[(String, String)]) -> RegResult<u32> {
    match param(q, "n") {
        None | Some("") => Ok(MAX_PAGE),
        Some(n) => n.parse::<u32>().map(|n| n.min(MAX_PAGE)).map_err(|_| {
            RegError::new(Code::Unsupported, format!("`n={n}` is not a number"))
                .with_status(StatusCode::BAD_REQUEST)
        }),
    }
}

fn link_next(path: &str, n: u32, last: &str) -> HeaderValue {
    hv(&format!("<{path}?n={n}&last={}>; rel=\"next\"", encode(last)))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn catalog(reg: &Registry, req: Request) -> RegResult<Response> {
    let q = query_pairs(&req);
    let n = page_size(&q)?;
    let challenge = reg.challenge(req.headers(), &[]);
    let who = match reg.credentials(req.headers(), &challenge).await? {
        Cred::Basic(p) => Some(p),
        Cred::Bearer(c) => c.kiln,
        Cred::None => None,
    };
    let mut last = param(&q, "last").map(str::to_string);
    let mut names = Vec::new();
    'pages: loop {
        let page = reg.store.registry_repositories(last.as_deref(), 500).await?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            last = Some(r.name.clone());
            let visible = r.public
                || who
                    .as_ref()
                    .is_some_and(|p| p.project.is_none_or(|scope| scope == r.project_id));
            if visible {
                if names.len() as u32 == n {
                    break 'pages;
                }
                names.push(r.name.clone());
            }
        }
    }
    let more = names.len() as u32 == n && n > 0;
    let mut resp = axum::Json(serde_json::json!({ "repositories": names })).into_response();
    if more && let Some(l) = names.last() {
        resp.headers_mut().insert(header::LINK, link_next("/v2/_catalog", n, l));
    }
    Ok(resp)
}

async fn tags(reg: &Registry, name: &str, req: Request) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Pull).await?;
    if reg.store.registry_repository(name).await?.is_none() {
        return Err(RegError::new(Code::NameUnknown, format!("repository `{name}` not found")));
    }
    let q = query_pairs(&req);
    let n = page_size(&q)?;
    let tags = reg.store.registry_tags(name, param(&q, "last"), n).await?;
    let mut resp = axum::Json(serde_json::json!({ "name": name, "tags": tags })).into_response();
    if n > 0
        && tags.len() as u32 == n
        && let Some(l) = tags.last()
    {
        resp.headers_mut().insert(header::LINK, link_next(&format!("/v2/{name}/tags/list"), n, l));
    }
    Ok(resp)
}

/// Checks the reference of a manifest to look up (GET, HEAD, DELETE): one that is neither a
/// tag nor a digest names no manifest, so it is `MANIFEST_UNKNOWN` (404) as the spec's
/// endpoint table gives, not a 400.
fn check_lookup_reference(name: &str, reference: &str) -> RegResult<()> {
    if is_tag(reference) || parse_digest(reference).is_some() {
        return Ok(());
    }
    Err(RegError::new(
        Code::ManifestUnknown,
        format!(
            "manifest `{reference}` not found in `{name}`: it is neither a tag \
             (`[a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}`) nor a sha256 or sha512 digest"
        ),
    ))
}

/// Checks the reference of a manifest push and returns the algorithm its digest is computed
/// with: a digest's own, sha256 (canonical) for a tag. A bad digest is `DIGEST_INVALID`, a bad
/// tag `MANIFEST_INVALID` (the spec's codes have no `TAG_INVALID`); both 400.
fn check_push_reference(reference: &str) -> RegResult<Algorithm> {
    if reference.contains(':') {
        check_digest(reference)
    } else if is_tag(reference) {
        Ok(Algorithm::Sha256)
    } else {
        Err(RegError::new(
            Code::ManifestInvalid,
            format!(
                "tag `{reference}` is not valid: tags match `[a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}`"
            ),
        ))
    }
}

async fn get_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    req: Request,
) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Pull).await?;
    check_lookup_reference(name, reference)?;
    let m = reg.store.registry_manifest(name, reference).await?.ok_or_else(|| {
        RegError::new(
            Code::ManifestUnknown,
            format!("manifest `{reference}` not found in `{name}`"),
        )
    })?;
    let len = m.content.len();
    let mut resp = if req.method() == Method::HEAD {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(m.content))
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, hv(&m.media_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert("Docker-Content-Digest", hv(&m.digest));
    h.insert(header::ETAG, hv(&format!("\"{}\"", m.digest)));
    Ok(resp)
}

async fn put_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    req: Request,
) -> RegResult<Response> {
    let actor = reg.authorize(req.headers(), name, Action::Push).await?;
    let algorithm = check_push_reference(reference)?;
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
    let body =
        axum::body::to_bytes(req.into_body(), manifest::MAX_MANIFEST + 1).await.map_err(|e| {
            RegError::new(
                Code::ManifestInvalid,
                format!(
                    "the manifest body could not be read (at most {} bytes): {e}",
                    manifest::MAX_MANIFEST
                ),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
        })?;
    // Pushed by tag: the canonical sha256 digest; by digest: stored under that digest.
    let digest = algorithm.digest(&body);
    if reference.contains(':') && reference != digest {
        return Err(RegError::new(
            Code::DigestInvalid,
            format!("the manifest's digest is {digest}, not {reference} as the URL says"),
        ));
    }
    let parsed = manifest::parse(content_type.as_deref(), &body)?;
    reg.ensure_repository(name).await?;
    if let Some(policy) = reg.tag_policy.get()
        && !reference.contains(':')
    {
        policy
            .check_tag(name, reference, &digest, &parsed.media_type, &body)
            .await
            .map_err(|message| RegError::new(Code::Denied, message))?;
    }
    let new = kiln_store::NewRegistryManifest {
        repository: name.to_string(),
        digest: digest.clone(),
        media_type: parsed.media_type.clone(),
        content: body.to_vec(),
        artifact_type: parsed.artifact_type.clone(),
        subject: parsed.subject.clone(),
        annotations: parsed.annotations.clone(),
        blobs: parsed.blobs.clone(),
        children: parsed.children.clone(),
        tag: (!reference.contains(':')).then(|| reference.to_string()),
        actor,
    };
    match reg.store.registry_put_manifest(&new).await? {
        ManifestPut::Stored(event) => {
            let _ = reg.events.send(*event);
            reg.webhook_wake.notify_one();
        }
        ManifestPut::MissingBlob(d) => {
            return Err(RegError::new(
                Code::ManifestBlobUnknown,
                format!("blob {d} named by the manifest is not in `{name}`: push it first"),
            ));
        }
        ManifestPut::MissingManifest(d) => {
            return Err(RegError::new(
                Code::ManifestBlobUnknown,
                format!("manifest {d} named by the index is not in `{name}`: push it first"),
            ));
        }
    }
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/manifests/{digest}")));
    h.insert("Docker-Content-Digest", hv(&digest));
    if let Some(s) = &parsed.subject {
        h.insert("OCI-Subject", hv(s));
    }
    Ok(resp)
}

async fn delete_manifest(
    reg: &Registry,
    name: &str,
    reference: &str,
    req: Request,
) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Delete).await?;
    check_lookup_reference(name, reference)?;
    let gone = if reference.contains(':') {
        reg.store.registry_delete_manifest(name, reference).await?
    } else {
        reg.store.registry_delete_tag(name, reference).await?
    };
    if !gone {
        return Err(RegError::new(
            Code::ManifestUnknown,
            format!("manifest `{reference}` not found in `{name}`"),
        ));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Parses a `Range: bytes=a-b` request header against a blob of `size` bytes.
fn parse_range(text: &str, size: u64) -> Option<(u64, u64)> {
    let spec = text.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        return (n > 0 && size > 0).then(|| (size.saturating_sub(n), size));
    }
    let start: u64 = a.parse().ok()?;
    let end = if b.is_empty() { size } else { b.parse::<u64>().ok()?.saturating_add(1).min(size) };
    (start < end).then_some((start, end))
}

async fn get_blob(reg: &Registry, name: &str, digest: &str, req: Request) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Pull).await?;
    check_digest(digest)?;
    let unknown =
        || RegError::new(Code::BlobUnknown, format!("blob {digest} not found in `{name}`"));
    let size = reg.store.registry_repo_blob(name, digest).await?.ok_or_else(unknown)?;
    if req.method() == Method::HEAD {
        // A pusher checking for a blob may name it in a manifest next: keep it from collection.
        if req.headers().contains_key(header::AUTHORIZATION) {
            reg.store.registry_touch_blob(digest).await?;
        }
        let mut resp = Response::new(Body::empty());
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        h.insert("Docker-Content-Digest", hv(digest));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        return Ok(resp);
    }
    let range = match req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(text) => match parse_range(text, size) {
            Some(r) => Some(r),
            None => {
                let mut resp = RegError::new(
                    Code::BlobUnknown,
                    format!("range `{text}` is not satisfiable for a blob of {size} bytes"),
                )
                .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                .into_response();
                resp.headers_mut().insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
                return Ok(resp);
            }
        },
    };
    let read = reg.blobs.read(digest, range).await?.ok_or_else(unknown)?;
    let (start, end) = range.unwrap_or((0, read.size));
    let mut resp = Response::new(Body::from_stream(read.body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert("Docker-Content-Digest", hv(digest));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        resp.headers_mut()
            .insert(header::CONTENT_RANGE, hv(&format!("bytes {start}-{}/{}", end - 1, read.size)));
    }
    Ok(resp)
}

async fn delete_blob(
    reg: &Registry,
    name: &str,
    digest: &str,
    req: Request,
) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Delete).await?;
    check_digest(digest)?;
    if !reg.store.registry_unlink_blob(name, digest).await? {
        return Err(RegError::new(
            Code::BlobUnknown,
            format!("blob {digest} not found in `{name}`"),
        ));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

fn blob_created(name: &str, digest: &str) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/{digest}")));
    h.insert("Docker-Content-Digest", hv(digest));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

fn upload_accepted(name: &str, u: &upload::Upload, status: StatusCode) -> Response {
    let mut resp = status.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, hv(&format!("/v2/{name}/blobs/uploads/{}", u.id)));
    h.insert(header::RANGE, hv(&format!("0-{}", u.size.saturating_sub(1))));
    h.insert("Docker-Upload-UUID", hv(&u.id));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

async fn start_upload(reg: &Registry, name: &str, req: Request) -> RegResult<Response> {
    let q = query_pairs(&req);
    // A mount's challenge also names the source's pull scope, so the token a client gets by
    // following it can mount.
    let from = param(&q, "from")
        .filter(|f| param(&q, "mount").is_some() && *f != name && check_repository(f).is_ok());
    let also: Vec<(&str, &str)> = from.map(|f| (f, "pull")).into_iter().collect();
    reg.authorize_with(req.headers(), name, Action::Push, &also).await?;
    // The algorithm a resumable upload hashes with as chunks arrive (`end-4c`).
    let algorithm = match param(&q, "digest-algorithm").filter(|a| !a.is_empty()) {
        None => Algorithm::Sha256,
        Some(a) => Algorithm::from_name(a).ok_or_else(|| {
            RegError::new(
                Code::Unsupported,
                format!("digest algorithm `{a}` is not supported: use sha256 or sha512"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?,
    };
    reg.ensure_repository(name).await?;
    if let Some(digest) = param(&q, "mount") {
        check_digest(digest)?;
        let mounted = match param(&q, "from") {
            Some(from) if check_repository(from).is_ok() => {
                reg.authorize(req.headers(), from, Action::Pull).await.is_ok()
                    && reg.store.registry_repo_blob(from, digest).await?.is_some()
                    && reg.store.registry_link_blob(name, digest).await?
            }
            Some(_) => false,
            None => {
                let project = check_repository(name)?;
                match reg.project_id(project).await? {
                    Some(id) => {
                        reg.store.registry_blob_reachable(&id, digest).await?
                            && reg.store.registry_link_blob(name, digest).await?
                    }
                    None => false,
                }
            }
        };
        if mounted {
            return Ok(blob_created(name, digest));
        }
        // Not mountable: fall back to an ordinary upload, as the spec asks.
    }
    if let Some(digest) = param(&q, "digest").map(str::to_string) {
        let algorithm = check_digest(&digest)?;
        let path = reg.temp_path();
        tokio::fs::File::create(&path).await?;
        let mut u = upload::Upload::staged(name, path, algorithm);
        let result = commit_upload(reg, name, &mut u, &digest, req.into_body()).await;
        let _ = tokio::fs::remove_file(&u.path).await;
        result?;
        return Ok(blob_created(name, &digest));
    }
    let u = reg.new_upload(name, algorithm).await?;
    let u = u.lock().await;
    Ok(upload_accepted(name, &u, StatusCode::ACCEPTED))
}

/// Appends `body`, checks the whole upload against `digest`, and commits it.
async fn commit_upload(
    reg: &Registry,
    name: &str,
    u: &mut upload::Upload,
    digest: &str,
    body: Body,
) -> RegResult<()> {
    let algorithm = check_digest(digest)?;
    upload::append(u, body).await?;
    let actual = upload::finish(u, algorithm).await?;
    if actual != digest {
        return Err(RegError::new(
            Code::DigestInvalid,
            format!("the uploaded content ({} bytes) has digest {actual}, not {digest}", u.size),
        ));
    }
    let _commit = reg.gc_lock.read().await;
    reg.blobs.commit(digest, &u.path).await?;
    reg.store.registry_put_blob(name, digest, u.size).await?;
    Ok(())
}

async fn upload_status(reg: &Registry, name: &str, id: &str, req: Request) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Push).await?;
    let u = reg.upload(name, id).await?;
    let u = u.lock().await;
    Ok(upload_accepted(name, &u, StatusCode::NO_CONTENT))
}

/// Checks a chunk's `Content-Range` against what the upload has: it must start at its end.
fn check_chunk(headers: &HeaderMap, u: &upload::Upload, name: &str) -> RegResult<()> {
    let Some(text) = headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let out_of_order = |m: String| {
        RegError::new(Code::BlobUploadInvalid, m).with_status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let (start, end) = parse_content_range(text)
        .ok_or_else(|| out_of_order(format!("Content-Range `{text}` is not `<start>-<end>`")))?;
    if start != u.size {
        return Err(out_of_order(format!(
            "chunk starts at {start} but upload `{}` of `{name}` has {} bytes: send the chunk starting at {}",
            u.id, u.size, u.size
        )));
    }
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len != end - start + 1
    {
        return Err(RegError::new(
            Code::SizeInvalid,
            format!(
                "Content-Range `{text}` is {} bytes but Content-Length is {len}",
                end - start + 1
            ),
        ));
    }
    Ok(())
}

async fn patch_upload(reg: &Registry, name: &str, id: &str, req: Request) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Push).await?;
    let u = reg.upload(name, id).await?;
    let mut u = u.lock().await;
    if let Err(e) = check_chunk(req.headers(), &u, name) {
        let mut resp = e.into_response();
        if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            let ok = upload_accepted(name, &u, StatusCode::ACCEPTED);
            for key in [header::LOCATION, header::RANGE] {
                if let Some(v) = ok.headers().get(&key) {
                    resp.headers_mut().insert(key, v.clone());
                }
            }
        }
        return Ok(resp);
    }
    upload::append(&mut u, req.into_body()).await?;
    Ok(upload_accepted(name, &u, StatusCode::ACCEPTED))
}

async fn put_upload(reg: &Registry, name: &str, id: &str, req: Request) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Push).await?;
    let q = query_pairs(&req);
    let digest = param(&q, "digest")
        .ok_or_else(|| {
            RegError::new(Code::DigestInvalid, "the final PUT of an upload needs `?digest=`")
        })?
        .to_string();
    check_digest(&digest)?;
    let session = reg.upload(name, id).await?;
    let mut u = session.lock().await;
    check_chunk(req.headers(), &u, name)?;
    let result = commit_upload(reg, name, &mut u, &digest, req.into_body()).await;
    match &result {
        // A cut-off body leaves the session open for the client to resume.
        Err(e) if e.code == Code::BlobUploadInvalid => return Err(result.unwrap_err()),
        _ => reg.drop_upload(&u).await,
    }
    result?;
    Ok(blob_created(name, &digest))
}

async fn cancel_upload(reg: &Registry, name: &str, id: &str, req: Request) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Push).await?;
    let u = reg.upload(name, id).await?;
    let u = u.lock().await;
    reg.drop_upload(&u).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn referrers(reg: &Registry, name: &str, digest: &str, req: Request) -> RegResult<Response> {
    reg.authorize(req.headers(), name, Action::Pull).await?;
    check_digest(digest)?;
    let q = query_pairs(&req);
    let filter = param(&q, "artifactType").filter(|t| !t.is_empty());
    let list = reg.store.registry_referrers(name, digest).await?;
    let manifests: Vec<serde_json::Value> = list
        .into_iter()
        .filter(|r| filter.is_none_or(|f| r.artifact_type.as_deref() == Some(f)))
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type, "digest": r.digest, "size": r.size,
            });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = serde_json::Value::String(t);
            }
            if let Some(a) =
                r.annotations.and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        resp.headers_mut().insert("OCI-Filters-Applied", HeaderValue::from_static("artifactType"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9)));
        assert_eq!(parse_content_range("9-5"), None);
    }

    #[test]
    fn paths() {
        assert!(matches!(target("a/b/manifests/latest"), Some(Target::Manifest("a/b", "latest"))));
        assert!(matches!(target("a/blobs/x/blobs/uploads/"), Some(Target::Uploads("a/blobs/x"))));
        assert!(matches!(target("a/b/blobs/uploads/123"), Some(Target::Upload("a/b", "123"))));
        assert!(matches!(target("a/b/tags/list"), Some(Target::Tags("a/b"))));
        assert!(matches!(target("_catalog"), Some(Target::Catalog)));
        assert_eq!(decode("a%2Fb+c"), "a/b c");
    }
}
