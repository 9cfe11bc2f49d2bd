//! A real Kiln server on loopback (temporary data directory, SQLite) and a small raw client of
//! the distribution API.

use std::path::PathBuf;

use base64::Engine as _;
use kiln_store::{NewToken, Role};
use reqwest::{Method, RequestBuilder, Response};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub struct Reg {
    pub server: Option<kiln_server::Server>,
    pub url: String,
    /// `127.0.0.1:port`.
    pub host: String,
    pub admin: String,
    pub data: PathBuf,
    pub http: reqwest::Client,
    _dir: TempDir,
}

impl Reg {
    /// A server with projects `team` and `other`.
    pub async fn start() -> Reg {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Reg::start_in(dir, data, None).await
    }

    pub async fn start_in(dir: TempDir, data: PathBuf, database: Option<String>) -> Reg {
        Reg::start_with(dir, data, database, None).await
    }

    /// A server whose registry keeps its blobs in S3 (`s3`), with projects `team` and
    /// `other`.
    pub async fn start_s3(s3: kiln_registry::S3Config) -> Reg {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Reg::start_with(dir, data, None, Some(s3)).await
    }

    async fn start_with(
        dir: TempDir,
        data: PathBuf,
        database: Option<String>,
        registry_blobs: Option<kiln_registry::S3Config>,
    ) -> Reg {
        let server = kiln_server::start(kiln_server::ServerConfig {
            database,
            registry_blobs,
            // The tests' webhook receivers listen on loopback.
            allow_private_webhooks: true,
            ..kiln_server::ServerConfig::new(data.clone(), "127.0.0.1:0".parse().unwrap())
        })
        .await
        .unwrap();
        let admin = match &server.first_admin_token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string(),
        };
        for p in ["team", "other"] {
            let _ = server.app.store.create_project(p).await;
        }
        Reg {
            url: server.url.clone(),
            host: server.addr.to_string(),
            server: Some(server),
            admin,
            data,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Stops the server and starts it again on the same data directory and port.
    pub async fn restart(mut self) -> Reg {
        let server = self.server.take().unwrap();
        let addr = server.addr;
        server.stop().await;
        let server = kiln_server::start(kiln_server::ServerConfig {
            allow_private_webhooks: true,
            ..kiln_server::ServerConfig::new(self.data.clone(), addr)
        })
        .await
        .unwrap();
        self.server = Some(server);
        self
    }

    pub fn app(&self) -> &kiln_server::App {
        &self.server.as_ref().unwrap().app
    }

    /// A new token with `role`, limited to `project` if given.
    pub async fn token(&self, name: &str, role: Role, project: Option<&str>) -> String {
        let store = &self.app().store;
        let project = match project {
            Some(p) => Some(store.project(p).await.unwrap().id),
            None => None,
        };
        let (_, secret) =
            store.create_token(&NewToken { name: name.into(), role, project }).await.unwrap();
        secret.expose().to_string()
    }

    /// A request with basic auth (the password is a Kiln token), or none.
    pub fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let url =
            if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.url) };
        let r = self.http.request(method, url);
        match token {
            Some(t) => r.header("Authorization", basic(t)),
            None => r,
        }
    }

    /// Pushes `data` as a blob of `repo` (monolithic POST+PUT); returns its digest.
    pub async fn push_blob(&self, repo: &str, token: &str, data: &[u8]) -> String {
        let digest = digest(data);
        let resp = self
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), Some(token))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "start upload: {}", text(resp).await);
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = self
            .req(Method::PUT, &format!("{location}{sep}digest={digest}"), Some(token))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "finish upload: {}", text(resp).await);
        assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
        digest
    }

    /// Pushes an image manifest naming `config` and `layers` (pushed first); returns the
    /// manifest's digest.
    pub async fn push_image(&self, repo: &str, tag: &str, token: &str, layers: &[&[u8]]) -> String {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
        let config_digest = self.push_blob(repo, token, config.as_bytes()).await;
        let mut descs = Vec::new();
        for l in layers {
            let d = self.push_blob(repo, token, l).await;
            descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()}));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": descs,
        });
        self.put_manifest(repo, tag, token, &manifest).await
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        token: &str,
        m: &serde_json::Value,
    ) -> String {
        let body = serde_json::to_vec(m).unwrap();
        let resp = self
            .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"), Some(token))
            .header(
                "Content-Type",
                m["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
            )
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "put manifest: {}", text(resp).await);
        let d = digest(&body);
        assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
        d
    }

    /// Files in the blob store.
    pub fn blob_files(&self) -> Vec<String> {
        let root = self.data.join("registry/blobs/sha256");
        let mut out = Vec::new();
        for dir in std::fs::read_dir(root).unwrap() {
            for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
                out.push(f.unwrap().file_name().to_string_lossy().to_string());
            }
        }
        out.sort();
        out
    }
}

pub fn basic(token: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("kiln:{token}")))
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub async fn text(resp: Response) -> String {
    resp.text().await.unwrap_or_default()
}

/// The spec's error code of an error answer.
pub async fn code(resp: Response) -> String {
    let v: serde_json::Value = resp.json().await.unwrap();
    v["errors"][0]["code"].as_str().unwrap().to_string()
}

impl Reg {
    /// A server on a fresh database of the PostgreSQL server `KILN_STORE_TEST_POSTGRES`
    /// names, or `None` with a note when it is unset (a failure under
    /// `KILN_REQUIRE_POSTGRES=1`).
    pub async fn start_postgres(test: &str) -> Option<Reg> {
        let db = kiln_testkit::postgres::fresh_database("kiln_test_registry", test).await?;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Some(Reg::start_in(dir, data, Some(db.url())).await)
    }
}
