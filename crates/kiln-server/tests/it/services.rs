//! Services through the real server with agents on the process executor: real HTTP servers
//! (python3) as instances, placed by constraints, health-checked by their agents, replaced
//! when they exit, fail their check or lose their agent, updated by rolling updates that never
//! dip below the floor, and rolled back by themselves when the new version never gets healthy.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use kiln_api::pool::AttrValue;
use kiln_api::service::{ApplyService, ServiceInfo};

use crate::support::{Backend, TestServer, apply, healthy, on_loopback, wait_service};

/// An HTTP server on `$KILN_PORT_WEB`: `/` answers `<instance> v<VERSION>`, `/healthz` answers
/// 200 until the file `sick-<slot>` appears in `$DIR`, any other path 503; the process exits
/// with code 3 when `die-<slot>` appears.
const SERVER: &str = r#"
import http.server, os, threading, time
d, slot = os.environ["DIR"], os.environ["KILN_SLOT"]
def watch():
    while not os.path.exists(f"{d}/die-{slot}"):
        time.sleep(0.05)
    os.remove(f"{d}/die-{slot}")
    os._exit(3)
threading.Thread(target=watch, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        sick = os.path.exists(f"{d}/sick-{slot}")
        ok = self.path == "/" or (self.path == "/healthz" and not sick)
        code = 200 if ok else 503
        body = f"{os.environ['KILN_INSTANCE']} v{os.environ.get('VERSION', '1')}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_WEB"])), H).serve_forever()
"#;

fn service_yaml(name: &str, dir: &Path, extra: &str, version: &str, health_path: &str) -> String {
    format!(
        r#"kind: service
name: {name}
command: [python3, -c, {script}]
env:
  DIR: "{dir}"
  VERSION: "{version}"
ports:
  - {{ name: web, container: 8080 }}
health:
  http: {{ port: web, path: {health_path} }}
  grace: 2s
  interval: 100ms
  timeout: 1s
  failures: 2
restart:
  policy: always
  backoff: {{ initial: 200ms, max: 2s }}
{extra}"#,
        script = serde_json::to_string(SERVER).unwrap(),
        dir = dir.display(),
    )
}

/// Reads the discovery watch after revision `after` until `count` events came, or 2 s passed
/// without one.
async fn watch(s: &TestServer, after: u64, count: usize) -> Vec<serde_json::Value> {
    let mut resp = reqwest::Client::new()
        .get(format!("{}/api/v1/discovery/watch", s.url))
        .bearer_auth(&s.admin_token)
        .header("Last-Event-ID", after.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (mut text, mut events) = (String::new(), Vec::new());
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await;
        let Ok(Ok(Some(bytes))) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    events.push(serde_json::from_str(data.trim()).unwrap());
                }
            }
        }
    }
    events
}

async fn get(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/")).await.unwrap().text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_spread_serve_and_are_replaced_when_they_exit_fail_or_lose_their_node() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let city = |c: &str| [("city", AttrValue::Text(c.into()))];
    let mut agents: HashMap<String, crate::support::TestAgent> = HashMap::new();
    let cities = [("sz", "shenzhen"), ("sh", "shanghai"), ("bj", "beijing"), ("gz", "guangzhou")];
    for (n, (name, c)) in cities.into_iter().enumerate() {
        let first = 41000 + 100 * u16::try_from(n).unwrap();
        agents.insert(name.into(), s.agent(name, 2, on_loopback(&city(c), first)));
    }
    let yaml = service_yaml(
        "web",
        dir.path(),
        "replicas: 3\nconstraints:\n  - [city, UNIQUE]\nlabels: { app: web }\n",
        "1",
        "/healthz",
    );
    let applied = apply(&s, "shop", &yaml).await;
    assert_eq!((applied.version, applied.replicas), (1, 3));

    let info = wait_service(&s, "web", "3 healthy", |_| {}, |i| healthy(i, 1) == 3).await;
    let nodes: BTreeSet<_> = info.instances.iter().map(|i| i.node.clone().unwrap()).collect();
    assert_eq!(nodes.len(), 3, "one instance per city: {info:#?}");
    for i in &info.instances {
        let port = i.ports["web"];
        assert_eq!(
            get(port).await,
            format!("{} v1", i.id),
            "discovery names where it serves: {info:#?}"
        );
        assert_eq!(i.host_ip.as_deref(), Some("127.0.0.1"));
    }

    // Discovery: Prometheus http_sd targets for a selector, with the instance's labels.
    let sd = |selector: &str| {
        let url = format!("{}/api/v1/discovery/targets?selector={selector}", s.url);
        let token = s.admin_token.clone();
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap() }
    };
    let groups: serde_json::Value = sd("app%3Dweb").await.json().await.unwrap();
    let mut want: Vec<String> =
        info.instances.iter().map(|i| format!("127.0.0.1:{}", i.ports["web"])).collect();
    let mut got: Vec<String> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["targets"][0].as_str().unwrap().to_string())
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "{groups:#}");
    let g0 = &groups[0]["labels"];
    assert_eq!((g0["service"].as_str(), g0["app"].as_str()), (Some("web"), Some("web")));
    assert!(info.instances.iter().any(|i| Some(i.id.as_str()) == g0["instance"].as_str()));
    let none: serde_json::Value = sd("app%20notin%20(web)").await.json().await.unwrap();
    assert_eq!(none, serde_json::json!([]));
    let bad = sd("app%20in%20web").await;
    assert_eq!(bad.status(), 400);
    let watch_from = watch(&s, 0, 1).await[0]["revision"].as_u64().unwrap();

    // An instance that exits is replaced in its slot, after its backoff.
    let old = info.instances.iter().find(|i| i.slot == 1).unwrap().id.clone();
    std::fs::write(dir.path().join("die-1"), "").unwrap();
    let info = wait_service(
        &s,
        "web",
        "slot 1 replaced",
        |_| {},
        |i| i.instances.iter().any(|x| x.slot == 1 && x.id != old && x.state == "healthy"),
    )
    .await;
    let replaced = info.instances.iter().find(|i| i.slot == 1).unwrap();
    assert_eq!(replaced.restarts, 1, "{info:#?}");
    // The watch, resumed after its first event, tells every change in order, with no gap:
    // the old instance failing and its replacement becoming healthy included.
    let events = watch(&s, watch_from, 400).await;
    let revisions: Vec<u64> = events.iter().map(|e| e["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions[0], watch_from + 1);
    assert!(revisions.windows(2).all(|w| w[1] == w[0] + 1), "{revisions:?}");
    let saw = |id: &str, kind: &str| {
        events.iter().any(|e| e["instance"]["id"] == id && e["kind"] == kind)
    };
    assert!(saw(&old, "failed"), "{events:#?}");
    assert!(saw(&replaced.id, "healthy"), "{events:#?}");

    // One that fails its health check is stopped and replaced.
    let old = info.instances.iter().find(|i| i.slot == 2).unwrap().id.clone();
    std::fs::write(dir.path().join("sick-2"), "").unwrap();
    wait_service(
        &s,
        "web",
        "slot 2 unhealthy",
        |_| {},
        |i| i.instances.iter().any(|x| x.id == old && x.state != "healthy"),
    )
    .await;
    std::fs::remove_file(dir.path().join("sick-2")).unwrap();
    wait_service(
        &s,
        "web",
        "slot 2 replaced",
        |_| {},
        |i| i.instances.iter().any(|x| x.slot == 2 && x.id != old && x.state == "healthy"),
    )
    .await;

    // An agent killed: its instance is lost and replaced on the free city's node.
    let info = s.admin.service("shop", "web").await.unwrap();
    let victim = info.instances.iter().find(|i| i.slot == 0).unwrap().clone();
    let killed = victim.node.clone().unwrap();
    agents.remove(&killed).unwrap().kill();
    let info = wait_service(
        &s,
        "web",
        "slot 0 elsewhere",
        |_| {},
        |i| {
            i.instances.iter().any(|x| {
                x.slot == 0
                    && x.id != victim.id
                    && x.state == "healthy"
                    && x.node.as_deref() != Some(&killed)
            })
        },
    )
    .await;
    // The server's own metrics count what happened to the service.
    let metrics = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    let svc = r#"project="shop",service="web""#;
    assert!(value(&format!("kiln_service_restarts_total{{{svc}}}")) >= 3.0, "{metrics}");
    assert!(value(&format!("kiln_service_health_failures_total{{{svc}}}")) >= 1.0, "{metrics}");
    let nodes: BTreeSet<_> = info
        .instances
        .iter()
        .filter(|i| i.state == "healthy")
        .map(|i| i.node.clone().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3, "still one per city: {info:#?}");
    assert!(!nodes.contains(&killed));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_update_never_dips_below_the_floor_and_a_bad_one_rolls_back_by_itself() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let _a = s.agent("a", 4, on_loopback(&[], 42000));
    let _b = s.agent("b", 4, on_loopback(&[], 42100));
    let update = "replicas: 4\nupdate: { max-surge: 1, max-unavailable: 0, deadline: 3s }\n";
    // The floor is about what the controller stops: a check slowed by a loaded machine must
    // not turn a healthy instance unhealthy (5 slow answers in a row would).
    let service_yaml = |name: &str, dir: &Path, extra: &str, version: &str, path: &str| {
        service_yaml(name, dir, extra, version, path).replace("failures: 2", "failures: 5")
    };
    apply(&s, "shop", &service_yaml("api", dir.path(), update, "1", "/healthz")).await;
    wait_service(&s, "api", "4 healthy", |_| {}, |i| healthy(i, 1) == 4).await;

    // Version 2: replaced one by one, never fewer than 4 healthy (max-unavailable 0).
    let v2 = apply(&s, "shop", &service_yaml("api", dir.path(), update, "2", "/healthz")).await;
    assert_eq!(v2.template, 2);
    let floor = |i: &ServiceInfo| {
        let up = i.instances.iter().filter(|x| x.state == "healthy").count();
        assert!(up >= 4, "{up} healthy during the update: {i:#?}");
        assert!(
            i.instances.iter().filter(|x| x.state != "stopped").count() <= 5,
            "over surge: {i:#?}"
        );
    };
    let info =
        wait_service(&s, "api", "all on v2", floor, |i| healthy(i, 2) == 4 && i.stable == 2).await;
    // The serving instances (a replaced v1 may still be listed while it stops).
    for i in info.instances.iter().filter(|i| i.state == "healthy") {
        assert_eq!(get(i.ports["web"]).await, format!("{} v2", i.id));
    }

    // Version 3 never passes its check: after its 3 s deadline it rolls back by itself.
    apply(&s, "shop", &service_yaml("api", dir.path(), update, "3", "/never-healthy")).await;
    let info = wait_service(
        &s,
        "api",
        "rolled back",
        |_| {},
        |i| i.template == 2 && healthy(i, 2) == 4 && i.instances.iter().all(|x| x.version == 2),
    )
    .await;
    assert!(info.version >= 4);
    let history = s.admin.service_history("shop", "api").await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|v| v.kind.as_str()).collect();
    assert_eq!(kinds, ["apply", "apply", "apply", "auto-rollback"]);
    assert!(
        history[3].note.as_deref().unwrap().contains("version 3 was not healthy"),
        "{history:#?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_bad_service_file_is_refused_with_positions_and_nothing_is_stored() {
    let s = TestServer::start_with(0).await;
    s.admin.create_project("shop").await.unwrap();
    let yaml = "kind: service\nname: web\ncommand: [x]\nreplicas: 1000000\nports:\n  - { name: a, container: 1 }\n  - { name: a, container: 2 }\nhealth:\n  tcp: b\nbogus: 1\n";
    let err = s
        .admin
        .apply_service(
            "shop",
            "web",
            &ApplyService { yaml: yaml.into(), file: Some("web.yml".into()), note: None },
        )
        .await
        .unwrap_err();
    let kiln_client::ClientError::Api { status, error } = err else { panic!("{err}") };
    assert_eq!((status, error.code.as_str()), (422, "invalid_service"));
    let lines: Vec<String> = error.diagnostics.iter().map(|d| d.to_string()).collect();
    let text = lines.join("\n");
    for want in ["web.yml:4:", "web.yml:7:", "web.yml:9:", "web.yml:10:1"] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    assert!(s.admin.services(Some("shop")).await.unwrap().is_empty());
    s.stop().await;
}
