//! Services in an environment, through the real server with an agent on the process
//! executor: real HTTP servers (python3) that serve their config files from
//! `$KILN_CONFIG_DIR` and their env. Their instances get the environment's variables and
//! secrets (masked in their logs) and the release of their config application the config
//! center gives them (gray releases included); a new release is written in place (nothing
//! when the bytes did not change), then signalled, or replaces the instances by a rolling
//! update, as the service says; each instance's release is shown. A service that names a
//! missing environment, config without an environment or an application with no release yet
//! is refused, and nothing is stored.

use std::path::PathBuf;
use std::time::Duration;

use kiln_api::config::{ReleaseRequest, SetValues};
use kiln_api::environments::{CreateEnvironment, SetVariable};
use kiln_api::service::{ApplyService, ServiceInfo};
use kiln_client::ClientError;
use kiln_testkit::wait::until;

use crate::support::{Backend, TestServer, apply, healthy, host, wait_service};

/// An HTTP server on `$KILN_PORT_WEB`: `/config/FILE` answers the file read from
/// `$KILN_CONFIG_DIR` at that moment, `/env/NAME` the variable, `/hups` what `app.conf` held
/// at each SIGHUP it got (JSON), anything else its instance id. It prints the secret it got.
const SERVER: &str = r#"
import http.server, json, os, signal
cfg = os.environ["KILN_CONFIG_DIR"]
hups = []
def on_hup(sig, frame):
    hups.append(open(os.path.join(cfg, "app.conf")).read())
    print(f"got SIGHUP {len(hups)}", flush=True)
signal.signal(signal.SIGHUP, on_hup)
print("the database password is", os.environ.get("DB_PASSWORD", "-"), flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        code = 200
        if self.path.startswith("/config/"):
            try:
                body = open(os.path.join(cfg, self.path[len("/config/"):]), "rb").read()
            except OSError as e:
                body, code = str(e).encode(), 404
        elif self.path.startswith("/env/"):
            body = os.environ.get(self.path[len("/env/"):], "-").encode()
        elif self.path == "/hups":
            body = json.dumps(hups).encode()
        else:
            body = os.environ["KILN_INSTANCE"].encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_WEB"])), H).serve_forever()
"#;

const SECRET: &str = "hunter2-but-longer";

/// Service `web` in `staging` with the config of application `site`, `on_change` as the
/// file writes it.
fn service_yaml(replicas: u32, on_change: &str) -> String {
    format!(
        r#"kind: service
name: web
command: [python3, -c, {script}]
replicas: {replicas}
env:
  LOG_LEVEL: info
  FROM_FILE: "yes"
ports:
  - {{ name: web, container: 8080 }}
health:
  http: {{ port: web, path: /id }}
  grace: 10s
  interval: 100ms
environment: staging
config:
  app: site
  path: /etc/site
  {on_change}
"#,
        script = serde_json::to_string(SERVER).unwrap(),
    )
}

/// A loopback host whose agent hands out the `count` host ports from `first` (this suite
/// owns 47000-47299; see `support.rs`).
fn loopback(first: u16, count: u16) -> kiln_agent::HostFacts {
    let mut h = host("127.0.0.1", 8, &[]);
    h.ports = Some(kiln_api::pool::PortRange { start: first, end: first + count - 1 });
    h
}

/// Project `shop` with environments `dev` and `staging`; staging has `LOG_LEVEL=debug` and
/// the secret `DB_PASSWORD`; application `site` has `app.conf` rendered from `greeting`,
/// `greeting: hello` shared, and release 1 in staging.
async fn setup(s: &TestServer) {
    let a = &s.admin;
    a.create_project("shop").await.unwrap();
    for (name, after) in [("dev", None), ("staging", Some("dev"))] {
        let req = CreateEnvironment {
            name: name.into(),
            after: after.map(str::to_string),
            protected: false,
        };
        a.create_environment("shop", &req).await.unwrap();
    }
    let var = |value: &str, secret| SetVariable { value: value.into(), secret };
    a.set_env_variable("shop", "staging", "LOG_LEVEL", &var("debug", false)).await.unwrap();
    a.set_env_variable("shop", "staging", "DB_PASSWORD", &var(SECRET, true)).await.unwrap();
    let template = "greeting={{ greeting }}\nenv={{ kiln.environment }}\n";
    a.set_config_template("shop", "site", "app.conf", template).await.unwrap();
    values(s, "greeting: hello\n").await;
    let r = release(s, ReleaseRequest::default()).await;
    assert_eq!((r.outcome.as_str(), r.release.number), ("released", 1), "{r:#?}");
}

async fn values(s: &TestServer, yaml: &str) {
    let v = SetValues { yaml: yaml.into(), file: None };
    s.admin.set_config_values("shop", "site", None, &v).await.unwrap();
}

async fn release(s: &TestServer, req: ReleaseRequest) -> kiln_api::config::ReleaseOutcome {
    s.admin.config_release("shop", "site", "staging", &req).await.unwrap()
}

async fn get(port: u16, path: &str) -> Result<String, String> {
    let resp =
        reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if status.is_success() { Ok(text) } else { Err(format!("{status}: {text}")) }
}

fn conf(greeting: &str) -> String {
    format!("greeting={greeting}\nenv=staging\n")
}

/// Waits until the instance on `port` serves `want` as `app.conf`.
async fn serves(port: u16, want: &str) {
    until(
        &format!("port {port} serves {want:?}"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            match get(port, "/config/app.conf").await {
                Ok(got) if got == want => Ok(()),
                other => Err(other),
            }
        },
    )
    .await
}

/// Waits until every instance of `web` reports config release `n`.
async fn at_release(s: &TestServer, n: u32) -> ServiceInfo {
    wait_service(
        s,
        "web",
        &format!("every instance at release {n}"),
        |_| {},
        |i| !i.instances.is_empty() && i.instances.iter().all(|x| x.config_release == Some(n)),
    )
    .await
}

/// The data directory `..data` names in an instance's config directory.
fn data_dir(dir: &str) -> String {
    std::fs::read_link(PathBuf::from(dir).join("..data")).unwrap().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_get_their_environment_and_config_and_releases_are_written_in_place() {
    instances_get_their_environment_and_config_and_releases_are_written_in_place_on(
        Backend::Sqlite,
        47000,
    )
    .await;
}

/// The test above on `backend` (`postgres.rs` runs it on PostgreSQL), its agent handing out
/// 50 host ports from `first_port`.
pub async fn instances_get_their_environment_and_config_and_releases_are_written_in_place_on(
    backend: Backend,
    first_port: u16,
) {
    let s = TestServer::start_full(backend, 0, Duration::from_secs(3)).await;
    let _agent = s.agent("a1", 4, loopback(first_port, 50));
    setup(&s).await;
    let applied = apply(&s, "shop", &service_yaml(2, "on-change: none")).await;
    assert_eq!(applied.version, 1);
    wait_service(&s, "web", "2 healthy", |_| {}, |i| healthy(i, 1) == 2).await;
    let info = at_release(&s, 1).await;
    let (a, b) = (&info.instances[0], &info.instances[1]);
    let (pa, pb) = (a.ports["web"], b.ports["web"]);

    // The environment's variables, over the file's; Kiln's own; the secret, masked in logs.
    for port in [pa, pb] {
        assert_eq!(get(port, "/config/app.conf").await.unwrap(), conf("hello"));
        assert_eq!(get(port, "/env/LOG_LEVEL").await.unwrap(), "debug", "the environment wins");
        assert_eq!(get(port, "/env/FROM_FILE").await.unwrap(), "yes");
        assert_eq!(get(port, "/env/KILN_ENVIRONMENT").await.unwrap(), "staging");
        assert_eq!(get(port, "/env/KILN_CONFIG_RELEASE").await.unwrap(), "1");
        assert_eq!(get(port, "/env/DB_PASSWORD").await.unwrap(), SECRET);
    }
    let log = until(
        "the secret line in a's log",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let page = s.admin.instance_logs("shop", "web", &a.id, 1, 100).await.unwrap();
            let text: Vec<String> = page.lines.into_iter().map(|l| l.text).collect();
            match text.iter().any(|l| l.starts_with("the database password is")) {
                true => Ok(text),
                false => Err(text),
            }
        },
    )
    .await;
    assert!(log.iter().any(|l| l == "the database password is ***"), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains(SECRET)), "{log:#?}");
    assert!(log.iter().any(|l| l.starts_with("kiln: config release 1 (sha256:")), "{log:#?}");
    let dir_a = get(pa, "/env/KILN_CONFIG_DIR").await.unwrap();
    assert!(dir_a.ends_with(&format!("instances/{}/config", a.id)), "{dir_a}");
    assert!(data_dir(&dir_a).starts_with("..1_"), "{}", data_dir(&dir_a));

    // A release to staging is written in place: the same instances serve the new bytes.
    values(&s, "greeting: hola\n").await;
    let r2 = release(&s, ReleaseRequest::default()).await;
    assert_eq!(r2.release.number, 2);
    serves(pa, &conf("hola")).await;
    serves(pb, &conf("hola")).await;
    let info = at_release(&s, 2).await;
    let ids: Vec<&str> = info.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [a.id.as_str(), b.id.as_str()], "no instance was replaced: {info:#?}");
    assert_eq!(info.version, 1, "no new version: {info:#?}");
    assert_eq!(get(pa, "/hups").await.unwrap(), "[]", "on-change: none sends no signal");
    let second = data_dir(&dir_a);
    assert!(second.starts_with("..2_"), "{second}");
    assert!(PathBuf::from(&dir_a).join(data_dir_of_release(&dir_a, 1)).exists(), "release 1 kept");

    // A gray release to instance a reaches a only.
    values(&s, "greeting: bonjour\n").await;
    let gray = ReleaseRequest { instances: vec![a.id.clone()], ..ReleaseRequest::default() };
    let r3 = release(&s, gray).await;
    assert_eq!((r3.outcome.as_str(), r3.release.number), ("gray", 3), "{r3:#?}");
    serves(pa, &conf("bonjour")).await;
    wait_service(
        &s,
        "web",
        "a at release 3",
        |_| {},
        |i| i.instances.iter().any(|x| x.id == a.id && x.config_release == Some(3)),
    )
    .await;
    assert_eq!(get(pb, "/config/app.conf").await.unwrap(), conf("hola"), "b keeps release 2");
    let info = s.admin.service("shop", "web").await.unwrap();
    let b_now = info.instances.iter().find(|x| x.id == b.id).unwrap();
    assert_eq!(b_now.config_release, Some(2), "{info:#?}");
    let gray_dir = data_dir(&dir_a);
    assert!(gray_dir.starts_with("..3_"), "{gray_dir}");

    // The same bytes to everyone as release 4: b gets them written, a has them and writes
    // nothing (its data directory is still release 3's) but is at release 4.
    let r4 = release(&s, ReleaseRequest::default()).await;
    assert_eq!((r4.outcome.as_str(), r4.release.number), ("released", 4), "{r4:#?}");
    serves(pb, &conf("bonjour")).await;
    at_release(&s, 4).await;
    assert_eq!(data_dir(&dir_a), gray_dir, "a wrote nothing");
    let dir_b = get(pb, "/env/KILN_CONFIG_DIR").await.unwrap();
    assert!(data_dir(&dir_b).starts_with("..4_"), "{}", data_dir(&dir_b));
    let log = s.admin.instance_logs("shop", "web", &a.id, 1, 1000).await.unwrap();
    let text: Vec<String> = log.lines.into_iter().map(|l| l.text).collect();
    assert!(
        text.iter().any(|l| l == "kiln: config release 4 has the files it has: nothing written"),
        "{text:#?}"
    );
}

/// The data directory of release `n` in `dir` (`..N_<digest>`).
fn data_dir_of_release(dir: &str, n: u32) -> String {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_string())
        .find(|name| name.starts_with(&format!("..{n}_")))
        .unwrap_or_else(|| panic!("no data directory of release {n} in {dir}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signal_mode_sends_the_signal_after_the_files_changed() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(3)).await;
    let _agent = s.agent("a1", 4, loopback(47100, 50));
    setup(&s).await;
    apply(&s, "shop", &service_yaml(1, "on-change: signal\n  signal: HUP")).await;
    wait_service(&s, "web", "1 healthy", |_| {}, |i| healthy(i, 1) == 1).await;
    let info = at_release(&s, 1).await;
    let (id, port) = (info.instances[0].id.clone(), info.instances[0].ports["web"]);
    assert_eq!(get(port, "/hups").await.unwrap(), "[]");

    values(&s, "greeting: hola\n").await;
    release(&s, ReleaseRequest::default()).await;
    // The handler read the file when the signal came: the new bytes were there already.
    let hups = until("a SIGHUP", Duration::from_secs(30), Duration::from_millis(50), || async {
        let text = get(port, "/hups").await?;
        let hups: Vec<String> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if hups.is_empty() { Err(text) } else { Ok(hups) }
    })
    .await;
    assert_eq!(hups, [conf("hola")]);
    let info = at_release(&s, 2).await;
    assert_eq!(info.instances[0].id, id, "the same instance: {info:#?}");
    let log = s.admin.instance_logs("shop", "web", &id, 1, 1000).await.unwrap();
    let text: Vec<String> = log.lines.into_iter().map(|l| l.text).collect();
    let at = |want: &dyn Fn(&str) -> bool| text.iter().position(|l| want(l));
    let written = at(&|l| l.starts_with("kiln: config release 2 written"));
    let sent = at(&|l| l == "kiln: sent SIGHUP");
    assert!(matches!((written, sent), (Some(w), Some(s)) if w < s), "{text:#?}");
    assert!(at(&|l| l == "got SIGHUP 1").is_some(), "{text:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_mode_replaces_the_instances_by_a_rolling_update() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(3)).await;
    let _agent = s.agent("a1", 6, loopback(47150, 50));
    setup(&s).await;
    apply(&s, "shop", &service_yaml(2, "on-change: restart")).await;
    wait_service(&s, "web", "2 healthy", |_| {}, |i| healthy(i, 1) == 2).await;
    let before = at_release(&s, 1).await;
    let old: Vec<String> = before.instances.iter().map(|i| i.id.clone()).collect();

    values(&s, "greeting: hola\n").await;
    release(&s, ReleaseRequest::default()).await;
    let info = wait_service(
        &s,
        "web",
        "2 new instances healthy at release 2",
        |_| {},
        |i| {
            i.template == 2
                && healthy(i, 2) == 2
                && i.instances.len() == 2
                && i.instances.iter().all(|x| x.config_release == Some(2) && !old.contains(&x.id))
        },
    )
    .await;
    for i in &info.instances {
        assert_eq!(get(i.ports["web"], "/config/app.conf").await.unwrap(), conf("hola"));
        assert_eq!(get(i.ports["web"], "/env/KILN_CONFIG_RELEASE").await.unwrap(), "2");
    }
    let history = s.admin.service_history("shop", "web").await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        (last.version, last.kind.as_str(), last.note.as_deref(), last.by.as_str()),
        (2, "restart", Some("config release 2 of site"), "kiln"),
        "{history:#?}"
    );
}

#[tokio::test]
async fn a_service_naming_a_missing_environment_or_release_is_refused_and_nothing_is_stored() {
    let s = TestServer::start_on_with(Backend::Sqlite, 0).await;
    let a = &s.admin;
    a.create_project("shop").await.unwrap();
    let req = CreateEnvironment { name: "staging".into(), after: None, protected: false };
    a.create_environment("shop", &req).await.unwrap();
    let refused = |yaml: String| async move {
        let req = ApplyService { yaml, file: None, note: None };
        match a.apply_service("shop", "web", &req).await {
            Err(ClientError::Api { status, error }) => {
                assert_eq!((status, error.code.as_str()), (422, "invalid_service"));
                error.message
            }
            other => panic!("not refused: {other:?}"),
        }
    };
    let base = "kind: service\nname: web\ncommand: [sleep, '600']\n";
    let msg = refused(format!("{base}environment: prod\n")).await;
    assert_eq!(
        msg,
        "service `web`: environment `prod` is not an environment of project `shop` (it has \
         staging): create it with `kiln env create prod --project shop`, or name another"
    );
    let msg = refused(format!("{base}config: {{ app: site }}\n")).await;
    assert_eq!(
        msg,
        "service `web`: config needs an environment: add environment: <name>, or deploy the \
         service to one"
    );
    let want = "service `web`: no release of config `site` in `staging` yet: kiln config release \
                site --env staging";
    // An application that does not exist, then one with items but no release.
    let msg = refused(format!("{base}environment: staging\nconfig: {{ app: site }}\n")).await;
    assert_eq!(msg, want);
    a.set_config_template("shop", "site", "app.conf", "x\n").await.unwrap();
    let msg = refused(format!("{base}environment: staging\nconfig: {{ app: site }}\n")).await;
    assert_eq!(msg, want);
    // `app` defaults to the service's name.
    let msg = refused(format!("{base}environment: staging\nconfig: {{ path: /etc/web }}\n")).await;
    assert!(msg.contains("no release of config `web` in `staging` yet"), "{msg}");
    assert!(a.services(Some("shop")).await.unwrap().is_empty(), "nothing stored");
}
