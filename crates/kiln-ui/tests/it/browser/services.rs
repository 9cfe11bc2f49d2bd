//! The services pages against a real service: python3 HTTP servers as its instances, run by
//! three agents on the process executor, one instance per rack.

use std::time::Duration;

use kiln_api::pool::{AttrValue, PortRange};
use kiln_api::service::{ApplyService, ServiceInfo};
use serde_json::{Value, json};

use super::Browser;
use crate::support::{TestServer, host};

/// An HTTP server on `$KILN_PORT_WEB` that answers every GET with its instance's id.
const WEB: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = os.environ["KILN_INSTANCE"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_WEB"])), H).serve_forever()
"#;

fn service_yaml() -> String {
    format!(
        r#"kind: service
name: web
command: [python3, -c, {script}]
replicas: 2
constraints:
  - [rack, UNIQUE]
ports:
  - {{ name: web, container: 8080 }}
  - {{ name: stats, container: 9100 }}
labels: {{ app: web, team: build }}
health:
  http: {{ port: web, path: / }}
  grace: 2s
  interval: 100ms
  timeout: 1s
  failures: 2
update:
  max-surge: 50%
  max-unavailable: 0
  deadline: 5m
"#,
        script = serde_json::to_string(WEB).unwrap(),
    )
}

/// Polls the service over the API until `done` holds (at most 60 s).
async fn wait_service(
    s: &TestServer,
    what: &str,
    done: impl Fn(&ServiceInfo) -> bool,
) -> ServiceInfo {
    kiln_testkit::wait::until(what, Duration::from_secs(60), Duration::from_millis(50), || async {
        let info = s.admin.service("shop", "web").await.unwrap();
        if done(&info) { Ok(info) } else { Err(info) }
    })
    .await
}

/// The instance groups as the page shows them: node, and per instance its id, slot, state
/// and ports.
const GROUPS: &str = "return [...document.querySelectorAll('.node-group')].map(g => ({ node: g.dataset.node,
    instances: [...g.querySelectorAll('tr[data-instance]')].map(r => ({ id: r.dataset.instance, slot: Number(r.dataset.slot),
      state: r.querySelector('.badge').dataset.state, ports: [...r.querySelectorAll('[data-port]')].map(p => p.textContent) })) }))";

/// The same, from the API: a group per node (by name), instances by slot, ports by name.
fn groups_of(info: &ServiceInfo) -> Value {
    let mut nodes: Vec<String> = info.instances.iter().filter_map(|i| i.node.clone()).collect();
    nodes.sort();
    nodes.dedup();
    let groups: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let mut mine: Vec<_> =
                info.instances.iter().filter(|i| i.node.as_ref() == Some(n)).collect();
            mine.sort_by_key(|i| i.slot);
            let instances: Vec<Value> = mine
                .iter()
                .map(|i| {
                    let ip = i.host_ip.clone().unwrap();
                    let ports: Vec<String> = i
                        .ports
                        .iter()
                        .map(|(name, port)| format!("{name} → {ip}:{port}"))
                        .collect();
                    json!({ "id": i.id, "slot": i.slot, "state": i.state, "ports": ports })
                })
                .collect();
            json!({ "node": n, "instances": instances })
        })
        .collect();
    json!(groups)
}

/// A script expression: the page shows `n` instances, all healthy, in `n` node groups, and
/// the healthy count `n/n`.
fn all_healthy(n: usize) -> String {
    format!(
        "(() => {{ const rows = [...document.querySelectorAll('.node-group tr[data-instance]')];
           return document.querySelectorAll('.node-group').length === {n} && rows.length === {n}
             && rows.every(r => r.querySelector('.badge').dataset.state === 'healthy')
             && document.querySelector('#svc-healthy')?.textContent === '{n}/{n}'; }})()"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_services_pages_show_instances_by_node_and_scale_roll_back_restart_and_stop() {
    let s = TestServer::start_with(0).await;
    let mut agents = Vec::new();
    for (n, rack) in ["r1", "r2", "r3"].into_iter().enumerate() {
        // Agents share 127.0.0.1, each with its own host ports, as separate machines would.
        let mut facts = host("127.0.0.1", 8, &[("rack", AttrValue::Text(rack.into()))]);
        let first = 43000 + 100 * u16::try_from(n).unwrap();
        facts.ports = Some(PortRange { start: first, end: first + 99 });
        agents.push(s.agent(&format!("node-{}", n + 1), 2, facts));
    }
    s.admin.create_project("shop").await.unwrap();
    let apply = ApplyService { yaml: service_yaml(), file: None, note: None };
    s.admin.apply_service("shop", "web", &apply).await.unwrap();
    wait_service(&s, "2 healthy instances", |i| i.healthy == 2 && i.state == "running").await;

    let Some(b) = Browser::start("services").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;

    // The list: project, name, state, healthy/replicas, version, labels as chips.
    b.click("#nav a[data-nav=services]").await;
    let row = b
        .wait(
            "the service healthy 2/2",
            "const r = document.querySelector('tr[data-service=\"shop/web\"]');
             return r && r.querySelector('.healthy').textContent === '2/2' && {
               cells: [...r.querySelectorAll('td')].slice(0, 5).map(t => t.textContent),
               state: r.querySelector('.badge').dataset.state,
               labels: [...r.querySelectorAll('.chip')].map(c => c.textContent) }",
        )
        .await;
    assert_eq!(row["cells"], json!(["shop", "web", "running", "2/2", "1"]), "{row}");
    assert_eq!(row["labels"], json!(["app=web", "team=build"]), "{row}");
    assert_eq!(b.path().await, "/services");
    b.shot("list").await;

    // The service: its summary, and its instances grouped by node with their ports.
    b.click("tr[data-service=\"shop/web\"] a").await;
    b.wait("two healthy instances", &format!("return {}", all_healthy(2))).await;
    assert_eq!(b.path().await, "/services/shop/web");
    let info = s.admin.service("shop", "web").await.unwrap();
    assert_eq!(b.js(GROUPS).await, groups_of(&info), "the page shows what the API says");
    let summary = b
        .js("return ['#svc-version', '#svc-template', '#svc-replicas', '#svc-update b'].map(q => document.querySelector(q).textContent)")
        .await;
    assert_eq!(
        summary,
        json!(["1", "1", "2", "max-surge 50% (1), max-unavailable 0, deadline 5m"])
    );
    let green = b
        .js("return getComputedStyle(document.querySelector('.node-group .badge[data-state=healthy]')).color")
        .await;
    assert_eq!(green, json!("rgb(26, 127, 55)"), "healthy is the success green");
    // No scrape rule (this server has no scraping yet): the metrics say so.
    let none = b
        .wait(
            "the metrics note",
            "const n = document.querySelector('[data-metrics=none]'); return n && n.textContent",
        )
        .await;
    assert_eq!(
        none,
        json!("No scrape rule matches this service (see kiln metric apply FILE --project P).")
    );
    b.shot("service").await;

    // Scale to 3 (after confirming): a third instance, on the third rack, healthy.
    b.type_into("#scale-replicas", "3").await;
    b.click("#scale").await;
    assert_eq!(b.c.get_alert_text().await.unwrap(), "Scale shop/web to 3 replicas?");
    b.c.accept_alert().await.unwrap();
    b.wait("three healthy instances", &format!("return {}", all_healthy(3))).await;
    let info = wait_service(&s, "3 healthy", |i| i.healthy == 3).await;
    assert_eq!((info.version, info.replicas), (2, 3));
    assert_eq!(b.js(GROUPS).await, groups_of(&info));
    b.wait(
        "version 2, a scale",
        "return !!document.querySelector('tr[data-version=\"2\"][data-kind=scale]')",
    )
    .await;
    // 50% of 3 replicas is a surge of 2 (rounded up, as Kubernetes does).
    let update = b.js("return document.querySelector('#svc-update b').textContent").await;
    assert_eq!(update, json!("max-surge 50% (2), max-unavailable 0, deadline 5m"));
    b.shot("scaled").await;

    // A refused change shows the API's answer.
    b.type_into("#scale-replicas", "1001").await;
    b.click("#scale").await;
    b.c.accept_alert().await.unwrap();
    let err = b
        .wait(
            "the refusal",
            "const e = document.querySelector('.error'); return e && e.textContent",
        )
        .await;
    let err = err.as_str().unwrap();
    assert!(
        err.contains("Scale failed")
            && err.contains("POST /projects/shop/services/web/scale answered 400")
            && err.contains("replicas: expected 0 to 1000, found 1001"),
        "{err}"
    );
    assert_eq!(s.admin.service("shop", "web").await.unwrap().version, 2, "nothing changed");

    // Roll back to version 1: a new version of kind rollback, with version 1's 2 replicas.
    b.click("button[data-rollback=\"1\"]").await;
    assert!(b.c.get_alert_text().await.unwrap().starts_with("Roll back shop/web to version 1?"));
    b.c.accept_alert().await.unwrap();
    let note = b
        .wait(
            "version 3, a rollback",
            "const r = document.querySelector('tr[data-version=\"3\"][data-kind=rollback]'); return r && r.querySelector('.note').textContent",
        )
        .await;
    assert_eq!(note, json!("rolled back to version 1"));
    assert!(b.js("return !document.querySelector('.error')").await.as_bool().unwrap());
    b.wait("two healthy instances", &format!("return {}", all_healthy(2))).await;
    let history = s.admin.service_history("shop", "web").await.unwrap();
    let last = history.last().unwrap();
    assert_eq!((last.version, last.kind.as_str(), last.replicas), (3, "rollback", 2));

    // Restart: every instance replaced by a new one, healthy.
    let before = wait_service(&s, "2 instances", |i| i.instances.len() == 2).await;
    // (The controls are at the top, where the sticky bar would cover them scrolled.)
    b.js("window.scrollTo(0, 0)").await;
    b.click("#restart").await;
    assert!(b.c.get_alert_text().await.unwrap().starts_with("Restart shop/web?"));
    b.c.accept_alert().await.unwrap();
    let old: Vec<&str> = before.instances.iter().map(|i| i.id.as_str()).collect();
    b.wait(
        "two new healthy instances",
        &format!(
            "const old = {}; return {}
               && [...document.querySelectorAll('tr[data-instance]')].every(r => !old.includes(r.dataset.instance))",
            json!(old),
            all_healthy(2)
        ),
    )
    .await;
    b.wait(
        "version 4, a restart",
        "return !!document.querySelector('tr[data-version=\"4\"][data-kind=restart]')",
    )
    .await;

    // A phone: the instances scroll in their boxes; the page does not.
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.refresh().await.unwrap();
    b.wait("the instances", &format!("return {}", all_healthy(2))).await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let shot = b.shot("phone").await;
    assert!(
        widths[1].as_u64() <= widths[0].as_u64(),
        "the service page fits: {widths}; see {}",
        shot.display()
    );
    b.c.set_window_size(1280, 800).await.unwrap();

    // Stop: no instance left, the service stopped.
    b.js("window.scrollTo(0, 0)").await;
    b.click("#stop").await;
    assert!(b.c.get_alert_text().await.unwrap().starts_with("Stop shop/web?"));
    b.c.accept_alert().await.unwrap();
    b.wait(
        "the service stopped",
        "return !!document.querySelector('.head .badge[data-state=stopped]') && !document.querySelector('tr[data-instance]')",
    )
    .await;
    let info = wait_service(&s, "no instance", |i| i.instances.is_empty()).await;
    assert_eq!((info.state.as_str(), info.replicas), ("stopped", 0));

    // A service that does not exist: the page says which call failed.
    b.c.goto(&format!("{}/services/shop/nope", s.url)).await.unwrap();
    let err = b
        .wait("the error", "const e = document.querySelector('.error'); return e && e.textContent")
        .await;
    assert!(
        err.as_str().unwrap().contains("GET /projects/shop/services/nope answered 404 not_found"),
        "{err}"
    );

    // A viewer sees the service and its versions, and no control.
    let viewer = s
        .admin
        .create_token(&kiln_api::CreateToken {
            name: "watcher".into(),
            role: "viewer".into(),
            project: None,
        })
        .await
        .unwrap();
    b.click(".who button").await;
    b.sign_in(&s.url, &viewer.secret).await;
    b.c.goto(&format!("{}/services/shop/web", s.url)).await.unwrap();
    b.wait("the versions", "return document.querySelectorAll('tr[data-version]').length === 5")
        .await;
    let controls = b
        .js("return document.querySelectorAll('#scale-replicas, #scale, #restart, #stop, button[data-rollback]').length")
        .await;
    assert_eq!(controls, json!(0), "viewers change nothing");
    b.wait("the metrics note", "return !!document.querySelector('[data-metrics=none]')").await;

    b.c.clone().close().await.unwrap();
    for a in agents {
        a.stop().await;
    }
    s.stop().await;
}
