//! `kill -9` of a real `kiln server` with a service of three instances on two real `kiln
//! agent`s (process executor): started again on the same data directory, the server adopts
//! the instances that run (same ids, same processes on the same ports, none lost or
//! started twice); an agent that does not come back has its instances replaced elsewhere
//! once the agent-lost window has passed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_api::service::{ApplyService, ServiceInfo};
use kiln_client::Client;

use crate::recovery::ServerProc;

/// The agent-lost window of the test's server.
const LOST_AFTER: Duration = Duration::from_secs(5);

/// An HTTP server on `$KILN_PORT_WEB` answering its pid; it says where it serves on stdout.
pub(crate) const SERVER: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
port = int(os.environ["KILN_PORT_WEB"])
print(f"instance {os.environ['KILN_INSTANCE']} serves on {port}", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// A `kiln agent` child process (process executor), killed when dropped.
struct Agent {
    child: Child,
}

impl Agent {
    fn start(url: &str, token: &str, name: &str, capacity: u32, ports: &str, dir: &Path) -> Agent {
        let log = std::fs::File::create(dir.join(format!("agent-{name}.log"))).unwrap();
        let child = crate::support::kiln()
            .args(["agent", "--server", url, "--name", name, "--executor", "process"])
            .args(["--capacity", &capacity.to_string(), "--ports", ports, "--work-dir"])
            .arg(dir.join(format!("work-{name}")))
            .env("KILN_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kiln agent starts");
        Agent { child }
    }

    /// SIGTERM (what `systemctl stop` sends), and wait for it to be gone.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the agent stops gracefully on SIGTERM: {status:?}");
    }
}

impl Drop for Agent {
    /// SIGTERM, so that the agent stops its instances; SIGKILL if it lingers.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills, when dropped, whatever process of the test is left (by the marker in its
/// arguments): a failed test leaves no instance running.
pub(crate) struct Leftovers(pub(crate) String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for pid in marked(&self.0) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }
}

/// A port nothing listens on now (for a server that must come back at the same address).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The pids of the processes with `marker` among their arguments.
pub(crate) fn marked(marker: &str) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()) {
            out.insert(pid);
        }
    }
    out
}

/// What answers on `port`: the pid of the instance serving there.
pub(crate) async fn pid_on(port: u16) -> Option<u32> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let body = client.get(format!("http://127.0.0.1:{port}/")).send().await.ok()?.text().await;
    body.ok()?.trim().parse().ok()
}

/// Every discovery event after revision `after` (the watch read until it is quiet).
async fn events(url: &str, token: &str, after: u64) -> Vec<serde_json::Value> {
    let mut resp = reqwest::Client::new()
        .get(format!("{url}/api/v1/discovery/watch?after={after}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (mut text, mut out) = (String::new(), Vec::new());
    while let Ok(Ok(Some(bytes))) =
        tokio::time::timeout(Duration::from_millis(1500), resp.chunk()).await
    {
        text.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    out.push(serde_json::from_str(data.trim()).unwrap());
                }
            }
        }
    }
    out
}

/// `(kind, instance id)` of events.
fn kinds(events: &[serde_json::Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            let id = e["instance"]["id"].as_str().unwrap_or_default().to_string();
            (e["kind"].as_str().unwrap().to_string(), id)
        })
        .collect()
}

/// Polls the service until `done` holds of it (at most `secs`).
async fn wait_service(
    client: &Client,
    what: &str,
    secs: u64,
    done: impl Fn(&ServiceInfo) -> bool,
) -> ServiceInfo {
    let started = Instant::now();
    loop {
        if let Ok(info) = client.service("shop", "web").await
            && done(&info)
        {
            return info;
        }
        if started.elapsed() > Duration::from_secs(secs) {
            let info = client.service("shop", "web").await;
            panic!("the service never got {what}: {info:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Instance id → (node, web port) of healthy instances.
fn placed(info: &ServiceInfo) -> BTreeMap<String, (String, u16)> {
    info.instances
        .iter()
        .filter(|i| i.state == "healthy")
        .map(|i| (i.id.clone(), (i.node.clone().unwrap_or_default(), i.ports["web"])))
        .collect()
}

fn all_healthy(info: &ServiceInfo) -> bool {
    info.instances.len() == 3 && info.instances.iter().all(|i| i.state == "healthy")
}

/// What the agents logged, for a failing assertion's message.
fn agent_logs(dir: &Path) -> String {
    ["a1", "a2"]
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(format!("agent-{n}.log"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_server_adopts_running_instances_and_replaces_those_of_a_gone_agent() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let lost_after = format!("{}s", LOST_AFTER.as_secs());
    let flags = ["--listen", &listen, "--capacity", "0", "--agent-lost-after", &lost_after];
    let mut server = ServerProc::launch(&data, &flags);
    let url = server.url.clone();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_string();
    let client = Client::new(&url, &admin).unwrap();
    let req = kiln_api::CreateToken { name: "agents".into(), role: "agent".into(), project: None };
    let agent_token = client.create_token(&req).await.unwrap().secret;

    // Two instances on a1 (two slots), the third on a2 once it comes.
    let marker = format!("kiln-adoption-{}-{port}", std::process::id());
    let _leftovers = Leftovers(marker.clone());
    let mut a1 = Agent::start(&url, &agent_token, "a1", 2, "43000-43099", dir.path());
    client.create_project("shop").await.unwrap();
    let yaml = format!(
        "kind: service\nname: web\nreplicas: 3\ncommand: [python3, -c, {script}, {marker}]\n\
         ports:\n  - {{ name: web, container: 8080 }}\n\
         health:\n  http: {{ port: web, path: / }}\n  grace: 3s\n  interval: 200ms\n",
        script = serde_json::to_string(SERVER).unwrap(),
    );
    let body = ApplyService { yaml, file: None, note: None };
    client.apply_service("shop", "web", &body).await.unwrap();
    wait_service(&client, "two healthy instances on a1", 60, |s| placed(s).len() == 2).await;
    let a2 = Agent::start(&url, &agent_token, "a2", 3, "43100-43199", dir.path());
    let before = wait_service(&client, "three healthy instances", 60, all_healthy).await;
    let before = placed(&before);
    let nodes: BTreeSet<&str> = before.values().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["a1", "a2"]), "{before:?}");
    let mut pids = BTreeMap::new();
    for (id, (_, port)) in &before {
        pids.insert(id.clone(), pid_on(*port).await.expect("the instance answers"));
    }
    assert_eq!(marked(&marker), pids.values().copied().collect(), "one process per instance");

    // kill -9, then the same server again.
    server.kill9();
    assert_eq!(marked(&marker).len(), 3, "the instances outlive the server");
    let restarted = Instant::now();
    let mut server = ServerProc::launch(&data, &flags);
    assert_eq!(server.url, url);
    // Each agent registers again listing its instances: all three are adopted.
    let adopted = Instant::now();
    loop {
        let seen = kinds(&events(&url, &admin, 0).await);
        let ids: BTreeSet<String> =
            seen.iter().filter(|(k, _)| k == "adopted").map(|(_, id)| id.clone()).collect();
        if ids.len() == 3 {
            assert_eq!(ids, before.keys().cloned().collect(), "{seen:?}");
            break;
        }
        assert!(
            adopted.elapsed() < Duration::from_secs(60),
            "not every instance was adopted: {seen:?}\n{}",
            agent_logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Past the agent-lost window (and a reaper pass), nothing was lost or started again.
    while restarted.elapsed() < LOST_AFTER + Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = wait_service(&client, "three healthy instances", 30, all_healthy).await;
    assert_eq!(placed(&after), before, "the same instances, on the same nodes and ports");
    assert!(after.instances.iter().all(|i| i.restarts == 0), "{after:#?}");
    for (id, (_, port)) in &before {
        assert_eq!(pid_on(*port).await, Some(pids[id]), "instance {id} is the same process");
    }
    assert_eq!(marked(&marker), pids.values().copied().collect(), "none started twice");
    let seen = kinds(&events(&url, &admin, 0).await);
    let ids: BTreeSet<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, before.keys().map(String::as_str).collect(), "no other instance: {seen:?}");
    for bad in ["lost", "failed", "stopping", "stopped"] {
        assert!(seen.iter().all(|(k, _)| k != bad), "an instance was {bad}: {seen:?}");
    }
    let history = client.service_history("shop", "web").await.unwrap();
    assert_eq!(history.len(), 1, "no new version: {history:#?}");

    // kill -9 again; a1 stops for good while the server is down (its instances with it).
    let seen = events(&url, &admin, 0).await;
    let revision = seen.last().and_then(|e| e["revision"].as_u64()).unwrap();
    server.kill9();
    a1.stop();
    let on_a1: BTreeSet<&String> =
        before.iter().filter(|(_, (n, _))| n == "a1").map(|(i, _)| i).collect();
    let kept: Vec<&String> = before.keys().filter(|i| !on_a1.contains(i)).collect();
    let [kept] = kept[..] else { panic!("one instance on a2: {before:?}") };
    assert_eq!(marked(&marker), BTreeSet::from([pids[kept]]), "a1 stopped its instances");
    let restarted = Instant::now();
    let _server = ServerProc::launch(&data, &flags);
    // a2's instance is adopted; a1's two are lost once the window passed, and replaced on a2.
    let replaced = wait_service(&client, "three healthy instances on a2", 90, |s| {
        all_healthy(s) && s.instances.iter().all(|i| i.node.as_deref() == Some("a2"))
    })
    .await;
    assert!(restarted.elapsed() >= LOST_AFTER, "replaced before the window passed");
    let now = placed(&replaced);
    assert_eq!(now.get(kept), before.get(kept), "a2's instance kept its id, node and port");
    assert_eq!(pid_on(before[kept].1).await, Some(pids[kept]), "and its process");
    assert!(on_a1.iter().all(|i| !now.contains_key(*i)), "{now:?}");
    let seen = events(&url, &admin, revision).await;
    for id in &on_a1 {
        let lost = seen
            .iter()
            .find(|e| e["kind"] == "lost" && e["instance"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("instance {id} was never lost: {:?}", kinds(&seen)));
        let reason = lost["instance"]["reason"].as_str().unwrap();
        assert!(reason.contains("`a1` did not come back within 5s"), "{reason}");
    }
    assert!(kinds(&seen).contains(&("adopted".to_string(), kept.clone())), "{:?}", kinds(&seen));
    // One process per instance, the two new ones on a2.
    let started = Instant::now();
    loop {
        let mut want = BTreeSet::new();
        for (_, port) in now.values() {
            want.extend(pid_on(*port).await);
        }
        if want.len() == 3 && marked(&marker) == want {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{want:?} vs {:?}", marked(&marker));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(a2);
    assert_eq!(marked(&marker), BTreeSet::new(), "a2 stopped its instances with it");
}
