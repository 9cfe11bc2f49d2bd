//! Kiln deployable where it runs (`deploy/`, docs/install.md): the OCI image built with
//! buildah (no Docker daemon) from this test's own `kiln` binary, pushed to a real server's
//! registry, inspected with skopeo and run by the Docker engine (`kiln --version`, and `kiln
//! server` answering `/healthz`); the Kubernetes manifests through `kubectl apply
//! --dry-run=client`, read back unchanged through k8s-openapi's types, their pods and
//! secrets created on the FAKE API server of `kiln_exec_kube::fake`, their `kiln`
//! arguments parsed by this binary; the systemd units through `systemd-analyze verify`. No
//! live cluster and no systemd as PID 1 are involved.

#[path = "../../../../xtask/src/kiln_image.rs"]
#[allow(dead_code)]
mod kiln_image;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kiln_exec_kube::fake::FakeApi;
use kiln_testkit::TestServer;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{kiln, require_docker, root};

/// Host port of the containerised server (this file's range: 44300-44399).
const SERVER_PORT: u16 = 44300;

/// Whether the test command's environment is required (`cargo xtask ci` sets
/// `KILN_REQUIRE_DOCKER=1` and installs buildah, skopeo and kubectl).
fn required() -> bool {
    std::env::var("KILN_REQUIRE_DOCKER").as_deref() == Ok("1")
}

/// Whether `program` runs; else skips `test` with a message, or fails when [`required`].
fn tool(test: &str, program: &str) -> bool {
    let ok = Command::new(program)
        .arg(if program == "kubectl" { "version" } else { "--version" })
        .args(if program == "kubectl" { &["--client"][..] } else { &[][..] })
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!required(), "{test}: {program} is missing (cargo xtask ci installs it)");
        eprintln!("{test}: skipped, {program} is not installed (cargo xtask ci installs it)");
    }
    ok
}

/// Runs `program ARGS` (stdin `input`), asserting exit 0; its stdout.
fn ok(program: &str, args: &[&str], input: Option<&str>, env: &[(&str, &Path)]) -> String {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The host's static busybox (Debian's busybox-static), for the image's shell.
fn static_busybox() -> Option<PathBuf> {
    let path = PathBuf::from("/bin/busybox");
    let ldd = Command::new("ldd").arg(&path).output().ok()?;
    let text =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    (path.is_file() && text.contains("not a dynamic executable")).then_some(path)
}

/// `kiln --version` of this test's binary.
fn host_version() -> String {
    let out = kiln().arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_builds_without_a_daemon_pushes_to_kiln_and_runs_kiln() {
    let test = "the_image_builds_without_a_daemon_pushes_to_kiln_and_runs_kiln";
    require_docker();
    if !tool(test, "buildah") || !tool(test, "skopeo") || !tool(test, "strip") {
        return;
    }
    let s = TestServer::start_with(0).await;
    s.admin.create_project("deploy").await.unwrap();
    let host = s.url.trim_start_matches("http://").to_string();
    let reference = format!("{host}/deploy/kiln:test");
    let creds = format!("admin:{}", s.admin_token);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("kiln.oci.tar");

    // The build: buildah only (its own vfs storage), the debug binary stripped of debug info.
    let spec = kiln_image::ImageSpec {
        binary: PathBuf::from(env!("CARGO_BIN_EXE_kiln")),
        busybox: static_busybox(),
        strip: true,
    };
    let destinations = [
        kiln_image::Destination::Registry {
            reference: reference.clone(),
            creds: Some(creds.clone()),
            tls_verify: false,
        },
        kiln_image::Destination::Archive(archive.clone()),
    ];
    let built = tokio::task::spawn_blocking(move || kiln_image::build(&spec, &destinations))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the image builds: {e:#}"));
    let version = host_version();
    assert_eq!(built.version, version);
    assert!(archive.is_file(), "the OCI archive is written");

    // What the registry holds, as skopeo sees it.
    let tls = "--tls-verify=false";
    let target = format!("docker://{reference}");
    let inspect: Value = serde_json::from_str(&ok(
        "skopeo",
        &["inspect", tls, "--creds", &creds, &target],
        None,
        &[],
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], built.digests[0], "{inspect:#}");
    let number = version.trim_start_matches("kiln ");
    assert_eq!(inspect["Labels"]["org.opencontainers.image.version"], number, "{inspect:#}");
    assert_eq!(inspect["Labels"]["org.opencontainers.image.title"], "kiln", "{inspect:#}");
    let config: Value = serde_json::from_str(&ok(
        "skopeo",
        &["inspect", "--config", tls, "--creds", &creds, &target],
        None,
        &[],
    ))
    .unwrap();
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/kiln"]));
    assert_eq!(config["config"]["User"], "10001:10001", "{config:#}");
    let archived: Value = serde_json::from_str(&ok(
        "skopeo",
        &["inspect", "--config", &format!("oci-archive:{}", archive.display())],
        None,
        &[],
    ))
    .unwrap();
    assert_eq!(archived["config"], config["config"], "the archive holds the same image");

    // The Docker engine pulls it from Kiln's registry and runs the binary inside.
    let docker_config = tempfile::tempdir().unwrap();
    let env = [("DOCKER_CONFIG", docker_config.path())];
    ok("docker", &["login", &host, "-u", "admin", "--password-stdin"], Some(&s.admin_token), &env);
    ok("docker", &["pull", "-q", &reference], None, &env);
    let inside = ok("docker", &["run", "--rm", &reference, "--version"], None, &env);
    assert_eq!(inside.trim(), version, "kiln --version inside the image");
    let agent_help = ok("docker", &["run", "--rm", &reference, "agent", "--help"], None, &env);
    assert!(agent_help.contains("--executor"), "{agent_help}");

    // Its default command is a server (user 10001, data in /var/lib/kiln) that answers.
    let name = format!("kiln-deploy-test-{}", std::process::id());
    remove_labelled();
    // The test engine has no bridge (`--bridge=none`): the host's network, the listen
    // address set as a deployment would, through the environment.
    let listen = format!("KILN_LISTEN=127.0.0.1:{SERVER_PORT}");
    let run = [
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        LABEL,
        "--network",
        "host",
        "-e",
        &listen,
        &reference,
    ];
    ok("docker", &run, None, &env);
    let healthy = wait_healthz(SERVER_PORT).await;
    let logs = Command::new("docker").args(["logs", &name]).output().unwrap();
    let whoami = Command::new("docker").args(["exec", &name, "id", "-u"]).output().unwrap();
    let _ = Command::new("docker").args(["rm", "-f", &name]).output();
    let _ = Command::new("docker").args(["rmi", &reference]).output();
    assert!(
        healthy,
        "the containerised server answers /healthz\n{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&whoami.stdout).trim(), "10001");
    s.stop().await;
}

/// The label of this test's server container.
const LABEL: &str = "kiln.deploy-test=server";

/// Removes the containers a killed run of this test left (they would hold its port).
fn remove_labelled() {
    let filter = format!("label={LABEL}");
    let out = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output().unwrap();
    for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = Command::new("docker").args(["rm", "-f", id]).output();
    }
}

/// Whether `GET /healthz` on the host port answers `ok` within a minute.
async fn wait_healthz(port: u16) -> bool {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(resp) = http.get(format!("http://127.0.0.1:{port}/healthz")).send().await
            && resp.status() == 200
            && resp.text().await.is_ok_and(|t| t.trim() == "ok")
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The manifests' directory.
fn manifests() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// Every YAML document of the `.yaml` files directly in `dir`, with its file name.
fn documents(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let values: Vec<Value> = serde_saphyr::from_str_multiple(&text)
            .unwrap_or_else(|e| panic!("{name} is YAML: {e}"));
        docs.extend(values.into_iter().filter(|v| !v.is_null()).map(|v| (name.clone(), v)));
    }
    docs
}

/// `kind/name` of a document, as kubectl names objects.
fn object_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["kind"].as_str().unwrap_or("?").to_lowercase(),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// A document read into k8s-openapi's type of its kind and written back: a misspelt or
/// misplaced field (which the type drops) or a wrong type (which fails) shows.
fn typed_round_trip(doc: &Value) -> Result<Value, String> {
    fn through<T: serde::de::DeserializeOwned + serde::Serialize>(
        doc: &Value,
    ) -> Result<Value, String> {
        let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some("v1"), Some("Namespace")) => through::<Namespace>(doc),
        (Some("v1"), Some("ServiceAccount")) => through::<ServiceAccount>(doc),
        (Some("v1"), Some("ConfigMap")) => through::<ConfigMap>(doc),
        (Some("v1"), Some("Secret")) => through::<Secret>(doc),
        (Some("v1"), Some("PersistentVolumeClaim")) => through::<PersistentVolumeClaim>(doc),
        (Some("v1"), Some("Service")) => through::<Service>(doc),
        (Some("apps/v1"), Some("Deployment")) => through::<Deployment>(doc),
        (Some("rbac.authorization.k8s.io/v1"), Some("Role")) => through::<Role>(doc),
        (Some("rbac.authorization.k8s.io/v1"), Some("RoleBinding")) => through::<RoleBinding>(doc),
        (version, kind) => Err(format!("no type for {version:?} {kind:?} in this test")),
    }
}

/// The paths where `written` differs from `read` (`spec.template.spec.containers[0].x: …`).
fn differences(read: &Value, written: &Value, at: String, out: &mut Vec<String>) {
    match (read, written) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                match b.get(key) {
                    Some(other) => differences(value, other, path, out),
                    None => out.push(format!("{path}: not a field of its type, dropped")),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{at}.{key}: added by the type"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{at}: {a} read, {b} written")),
        _ => {}
    }
}

/// The discovery documents of an API server serving the kinds the manifests use: `kubectl
/// apply --dry-run=client` maps kinds to resources through discovery and reads each object
/// (404: to be created) even though it writes nothing. Every other path is a 404 Status.
fn discovery(path: &str) -> Option<Value> {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        serde_json::json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
    };
    let list = |group_version: &str, resources: Vec<Value>| {
        serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": group_version, "resources": resources})
    };
    let group = |name: &str| {
        let gv = format!("{name}/v1");
        serde_json::json!({"name": name, "versions": [{"groupVersion": gv, "version": "v1"}],
            "preferredVersion": {"groupVersion": gv, "version": "v1"}})
    };
    Some(match path {
        "/version" => serde_json::json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0",
            "platform": "linux/amd64"}),
        "/api" => serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        "/apis" => serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [group("apps"), group("rbac.authorization.k8s.io")]}),
        "/api/v1" => list(
            "v1",
            vec![
                resource("namespaces", "Namespace", false),
                resource("serviceaccounts", "ServiceAccount", true),
                resource("configmaps", "ConfigMap", true),
                resource("secrets", "Secret", true),
                resource("persistentvolumeclaims", "PersistentVolumeClaim", true),
                resource("services", "Service", true),
                resource("pods", "Pod", true),
            ],
        ),
        "/apis/apps/v1" => list("apps/v1", vec![resource("deployments", "Deployment", true)]),
        "/apis/rbac.authorization.k8s.io/v1" => list(
            "rbac.authorization.k8s.io/v1",
            vec![resource("roles", "Role", true), resource("rolebindings", "RoleBinding", true)],
        ),
        _ => return None,
    })
}

/// Serves [`discovery`] on a loopback port; returns its URL and the request lines seen.
async fn discovery_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let line = head.lines().next().unwrap_or_default().to_string();
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let path = path.split('?').next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line.clone());
                let (status, body) = match discovery(&path).filter(|_| line.starts_with("GET ")) {
                    Some(body) => ("200 OK", body),
                    None => (
                        "404 Not Found",
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "message": format!("{path} not found"),
                            "reason": "NotFound", "code": 404}),
                    ),
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    (url, seen)
}

/// `kubectl apply --dry-run=client -f DIR` against `server`: exit code, stdout, stderr.
fn kubectl_dry_run(config: &Path, dir: &Path) -> (Option<i32>, String, String) {
    let cache = config.with_file_name("kubectl-cache");
    let out = Command::new("kubectl")
        .args(["apply", "--dry-run=client", "--validate=false", "-o", "name", "-f"])
        .arg(dir)
        .arg("--cache-dir")
        .arg(&cache)
        .env("KUBECONFIG", config)
        .output()
        .expect("kubectl runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The `kiln` command lines of a Deployment's containers (the image's entrypoint is `kiln`).
fn kiln_args(doc: &Value) -> Vec<Vec<String>> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["command"].is_null(), "the image's entrypoint (kiln) runs: {c:#}");
            c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().expect("args are strings").to_string())
                .collect()
        })
        .collect()
}

/// Asserts `kiln ARGS --help` exits 0: every flag exists and every value parses (clap
/// stops at the first unknown flag or bad value, before `--help`); returns the help.
fn assert_parses(args: &[String], context: &str) -> String {
    let out = kiln().args(args).arg("--help").output().unwrap();
    let (stdout, stderr) = crate::support::text(&out);
    assert_eq!(out.status.code(), Some(0), "{context}: kiln {args:?} does not parse:\n{stderr}");
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_manifests_pass_kubectl_and_the_fake_api_server() {
    let test = "the_kubernetes_manifests_pass_kubectl_and_the_fake_api_server";
    let docs = documents(&manifests());
    let secrets = documents(&manifests().join("secrets"));
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|(_, d)| d["kind"].as_str()).collect();
    for kind in ["Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"] {
        assert!(kinds.contains(kind), "the manifests hold a {kind}: {kinds:?}");
    }

    // Every object reads into its Kubernetes type and writes back the same.
    for (file, doc) in docs.iter().chain(&secrets) {
        let back =
            typed_round_trip(doc).unwrap_or_else(|e| panic!("{file}: {}: {e}", object_name(doc)));
        let mut changed = Vec::new();
        differences(doc, &back, String::new(), &mut changed);
        assert!(
            changed.is_empty(),
            "{file}: {} changes through its Kubernetes type (a misspelt or misplaced field?):\n{}",
            object_name(doc),
            changed.join("\n")
        );
        let namespaced = doc["kind"] != "Namespace";
        if namespaced {
            assert_eq!(doc["metadata"]["namespace"], "kiln", "{file}: {}", object_name(doc));
        }
    }

    // The containers' command lines are real `kiln` command lines; their variables too.
    let deployments: Vec<&Value> =
        docs.iter().map(|(_, d)| d).filter(|d| d["kind"] == "Deployment").collect();
    let mut commands = BTreeSet::new();
    for deployment in &deployments {
        for args in kiln_args(deployment) {
            let help = assert_parses(&args, &object_name(deployment));
            commands.insert(args[0].clone());
            for container in
                deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap()
            {
                for var in container["env"].as_array().into_iter().flatten() {
                    let name = var["name"].as_str().unwrap();
                    if name != "KILN_LOG" {
                        assert!(help.contains(name), "kiln {} reads {name}:\n{help}", args[0]);
                    }
                }
            }
        }
    }
    assert_eq!(commands, BTreeSet::from(["agent".to_string(), "server".to_string()]));
    let agent =
        deployments.iter().find(|d| kiln_args(d)[0][0] == "agent").expect("an agent Deployment");
    let agent_args = &kiln_args(agent)[0];
    let flag =
        |name: &str| agent_args.iter().position(|a| a == name).map(|i| agent_args[i + 1].as_str());
    assert_eq!(flag("--executor"), Some("kubernetes"));
    assert!(!agent_args.iter().any(|a| a.starts_with("--token")), "no token on the command line");
    let token = &agent["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "KILN_TOKEN")
        .expect("KILN_TOKEN from a Secret")["valueFrom"]["secretKeyRef"];
    assert_eq!(token["name"], "kiln-agent-token");
    let server = deployments.iter().find(|d| kiln_args(d)[0][0] == "server").unwrap();
    let probe = &server["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(probe["httpGet"]["path"], "/healthz", "the server's health route");

    // kubectl: a dry run that writes nothing (only GETs reach the server).
    if tool(test, "kubectl") {
        let (url, seen) = discovery_server().await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("kubeconfig");
        std::fs::write(
            &config,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: stub\n  cluster:\n    server: {url}\n\
                 users:\n- name: u\n  user: {{}}\ncontexts:\n- name: stub\n  context:\n    cluster: stub\n\
                 \x20   user: u\ncurrent-context: stub\n"
            ),
        )
        .unwrap();
        for (dir, docs) in [(manifests(), &docs), (manifests().join("secrets"), &secrets)] {
            let (code, stdout, stderr) = tokio::task::spawn_blocking({
                let config = config.clone();
                let dir = dir.clone();
                move || kubectl_dry_run(&config, &dir)
            })
            .await
            .unwrap();
            assert_eq!(
                code,
                Some(0),
                "kubectl apply --dry-run=client -f {}:\n{stdout}\n{stderr}",
                dir.display()
            );
            // `deployment.apps/kiln-agent`: the kind before the group, then the name.
            let listed: BTreeSet<String> = stdout
                .lines()
                .filter_map(|l| l.split_once('/'))
                .map(|(kind, name)| format!("{}/{name}", kind.split('.').next().unwrap_or(kind)))
                .collect();
            let expected: BTreeSet<String> = docs.iter().map(|(_, d)| object_name(d)).collect();
            assert_eq!(listed, expected, "kubectl's objects of {}\n{stdout}", dir.display());
        }
        let writes: Vec<String> =
            seen.lock().unwrap().iter().filter(|l| !l.starts_with("GET ")).cloned().collect();
        assert!(writes.is_empty(), "a dry run writes nothing: {writes:?}");
    }

    // The fake API server takes the Deployments' pods and the Secrets.
    require_docker();
    let fake = FakeApi::start().await.expect("the fake API server starts");
    let client = kube::Client::try_from(fake.client_config("kiln")).unwrap();
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.clone(), "kiln");
    let secret_api: kube::Api<Secret> = kube::Api::namespaced(client, "kiln");
    for (_, doc) in &secrets {
        let secret: Secret = serde_json::from_value(doc.clone()).unwrap();
        secret_api
            .create(&kube::api::PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("the fake creates {}: {e}", object_name(doc)));
    }
    let mut created = Vec::new();
    for deployment in &deployments {
        let template = &deployment["spec"]["template"];
        let name = format!("{}-test", deployment["metadata"]["name"].as_str().unwrap());
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "kiln", "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        }))
        .unwrap();
        let made = pods.create(&kube::api::PostParams::default(), &pod).await.unwrap_or_else(|e| {
            panic!("the fake takes the pod of {}: {e}", object_name(deployment))
        });
        let args = made.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
        assert_eq!(args, kiln_args(deployment)[0], "the pod keeps its arguments");
        created.push(name);
    }
    let names = fake.pod_names("kiln");
    for name in &created {
        assert!(names.contains(name), "{name} in {names:?}");
        pods.delete(name, &kube::api::DeleteParams::default()).await.unwrap();
    }
    for (_, doc) in &secrets {
        let name = doc["metadata"]["name"].as_str().unwrap();
        secret_api.get(name).await.unwrap_or_else(|e| panic!("secret {name} reads back: {e}"));
        secret_api.delete(name, &kube::api::DeleteParams::default()).await.unwrap();
    }
    fake.shutdown().await;
}

#[test]
fn the_systemd_units_verify_and_their_command_lines_parse() {
    let test = "the_systemd_units_verify_and_their_command_lines_parse";
    let dir = tempfile::tempdir().unwrap();
    let binary = env!("CARGO_BIN_EXE_kiln");
    let analyze =
        Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !analyze {
        eprintln!("{test}: systemd-analyze is missing: only the command lines are checked");
    }
    for unit in ["kiln-server.service", "kiln-agent.service"] {
        let text = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).unwrap();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{unit} has an ExecStart"));
        let words: Vec<&str> = exec.split_whitespace().collect();
        assert_eq!(words[0], "/usr/local/bin/kiln", "{unit}: where docs/install.md puts kiln");
        // `${CREDENTIALS_DIRECTORY}` is systemd's; any directory parses.
        let args: Vec<String> = words[1..]
            .iter()
            .map(|w| w.replace("${CREDENTIALS_DIRECTORY}", "/run/credentials/kiln-agent.service"))
            .collect();
        assert_parses(&args, unit);
        assert!(!args.iter().any(|a| a == "--token"), "{unit}: no token on the command line");
        for line in text.lines().filter_map(|l| l.strip_prefix("EnvironmentFile=")) {
            let file = line.trim_start_matches('-');
            let example = Path::new(file).file_name().unwrap().to_string_lossy().into_owned();
            let example = root().join("deploy/systemd").join(format!("{example}.example"));
            assert!(example.is_file(), "{unit}: {} documents {file}", example.display());
        }
        if analyze {
            // The unit as installed, with this test's binary where kiln would be.
            let copy = dir.path().join(unit);
            std::fs::write(&copy, text.replace("/usr/local/bin/kiln", binary)).unwrap();
            let out = Command::new("systemd-analyze").arg("verify").arg(&copy).output().unwrap();
            let (stdout, stderr) = crate::support::text(&out);
            assert!(out.status.success(), "systemd-analyze verify {unit}:\n{stdout}{stderr}");
            assert!(stderr.trim().is_empty(), "systemd-analyze verify {unit} warns:\n{stderr}");
        }
    }
}
