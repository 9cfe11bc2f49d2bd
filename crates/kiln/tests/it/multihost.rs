//! The pool across hosts: `kiln server` and three `kiln agent`s, each in its own container on a
//! private Docker network, the agents tagged `city=shenzhen`, `shanghai` and `chengdu` and
//! running jobs as processes in their containers. Constraints place jobs where they must; a
//! job's dynamic port is reached from this process at the host IP and port the API reports;
//! an agent killed mid-job is marked lost and its job completes on another node, once.
//!
//! The containers run the `kiln` binary under test from the `busybox` test image, with the
//! binary and the shared libraries it needs (as `ldd` lists them) mounted read-only.

use std::process::Command;
use std::time::{Duration, Instant};

use kiln_api::{ApplyPipeline, JobInfo, RunDetail, TriggerRequest};
use kiln_client::Client;

use crate::support::require_docker;

/// Port the server listens on in its container.
const PORT: u16 = 7171;
/// The three agents: name (and host name), city.
const AGENTS: [(&str, &str); 3] = [("sz", "shenzhen"), ("sh", "shanghai"), ("cd", "chengdu")];
/// How long any one step may take on a loaded machine before the test gives up.
const PATIENCE: Duration = Duration::from_secs(90);

/// Runs the docker CLI; panics with its stderr unless it succeeds. Returns stdout, trimmed.
fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker CLI runs");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `-v` arguments that mount the `kiln` binary at `/kiln` and each shared library it loads
/// (with the loader) at the path `ldd` names, read-only: the busybox image has no libc.
fn binary_mounts() -> Vec<String> {
    let bin = env!("CARGO_BIN_EXE_kiln");
    let mut args = vec!["-v".to_string(), format!("{bin}:/kiln:ro")];
    let out = Command::new("ldd").arg(bin).output().expect("ldd runs");
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, `/lib64/ld-linux-x86-64.so.2 (0x…)`;
    // a static binary has none.
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let target = line.rsplit("=>").next().unwrap_or("").trim();
        let path = target.split(" (").next().unwrap_or("").trim();
        if !path.starts_with('/') {
            continue;
        }
        let real = std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        args.push("-v".to_string());
        args.push(format!("{}:{path}:ro", real.display()));
    }
    args
}

/// The test's network and containers, removed when dropped (also when the test fails).
struct Cluster {
    network: String,
    containers: Vec<String>,
    mounts: Vec<String>,
    /// The admin token, masked in the output shown on a failure.
    token: Option<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // On a failure, what the server and the agents said is the first thing to read.
        if std::thread::panicking() {
            for name in &self.containers {
                let host = name.strip_prefix(&format!("{}-", self.network)).unwrap_or(name);
                let mut output = self.logs(host);
                if let Some(token) = self.token.as_deref().filter(|t| !t.is_empty()) {
                    output = output.replace(token, "***");
                }
                eprintln!("--- output of {host} ---\n{output}");
            }
        }
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = Command::new("docker").args(&args).output();
        }
        let _ = Command::new("docker").args(["network", "rm", &self.network]).output();
    }
}

impl Cluster {
    fn new() -> Cluster {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let network = format!("kiln-multihost-{}-{nanos:08x}", std::process::id());
        docker(&["network", "create", "--label", "kiln.test=multihost", &network]);
        Cluster { network, containers: Vec::new(), mounts: binary_mounts(), token: None }
    }

    /// Container name of host `host`.
    fn container(&self, host: &str) -> String {
        format!("{}-{host}", self.network)
    }

    /// Starts `/kiln ARGS` in a busybox container with host name `host`, on the network.
    fn start(&mut self, host: &str, env: &[(&str, &str)], args: &[&str]) {
        let name = self.container(host);
        let mut all: Vec<String> = ["run", "-d", "--name", &name, "--hostname", host]
            .into_iter()
            .map(String::from)
            .collect();
        all.extend(["--network".into(), self.network.clone()]);
        all.extend(["--label".into(), "kiln.test=multihost".into()]);
        for (k, v) in env {
            all.extend(["-e".into(), format!("{k}={v}")]);
        }
        all.extend(self.mounts.iter().cloned());
        all.extend(["busybox:latest".into(), "/kiln".into()]);
        all.extend(args.iter().map(|a| a.to_string()));
        self.containers.push(name);
        docker(&all.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// The IP of `host`'s container on the network.
    fn ip(&self, host: &str) -> String {
        let format =
            format!("{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}", self.network);
        let ip = docker(&["inspect", "-f", &format, &self.container(host)]);
        assert!(!ip.is_empty(), "container of {host} has no IP on {}", self.network);
        ip
    }

    /// What `host`'s container printed so far (for failure messages).
    fn logs(&self, host: &str) -> String {
        let out = Command::new("docker").args(["logs", &self.container(host)]).output();
        out.map(|o| {
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
        })
        .unwrap_or_default()
    }

    /// Creates the file `path` in `host`'s container (the gates jobs wait on).
    fn touch(&self, host: &str, path: &str) {
        docker(&["exec", &self.container(host), "busybox", "touch", path]);
    }
}

/// Polls `what` until it gives `Some`, for at most [`PATIENCE`].
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < PATIENCE, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls run `id` until `ok` holds, then returns it.
async fn run_until(
    client: &Client,
    id: &str,
    what: &str,
    ok: impl Fn(&RunDetail) -> bool,
) -> RunDetail {
    let t = Instant::now();
    loop {
        let d = client.run(id).await.expect("run detail");
        if ok(&d) {
            return d;
        }
        assert!(t.elapsed() < PATIENCE, "gave up waiting for {what}: {d:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn final_run(client: &Client, id: &str) -> RunDetail {
    run_until(client, id, "the run to end", |d| {
        matches!(d.run.state.as_str(), "success" | "failure" | "canceled" | "timeout")
    })
    .await
}

fn job<'a>(d: &'a RunDetail, id: &str) -> &'a JobInfo {
    d.jobs.iter().find(|j| j.id == id).unwrap_or_else(|| panic!("no job {id}: {d:#?}"))
}

/// The text of the log lines of attempt `attempt` of `job`.
async fn log(client: &Client, run: &str, job: &str, attempt: u32) -> Vec<String> {
    let page = client.logs(run, Some(job), Some(attempt), 1, 1000).await.expect("job log");
    // What the job printed, without the echo of its script's lines.
    page.lines.into_iter().filter(|l| l.mark.is_none()).map(|l| l.text).collect()
}

/// Applies `yaml` as pipeline `name` of project `multihost` and triggers it.
async fn trigger(client: &Client, name: &str, yaml: &str) -> String {
    let body = ApplyPipeline { yaml: yaml.into(), file: None, files: Default::default() };
    client.apply_pipeline("multihost", name, &body).await.expect("apply");
    client.trigger("multihost", name, &TriggerRequest::default()).await.expect("trigger").id
}

/// Each job says which host it ran on; `spread` is one instance per city, held until the
/// test opens the gate so all three run at once.
const PLACED: &str = r#"
name: placed
stages:
  - name: place
    jobs:
      south:
        image: busybox
        constraints: [[city, LIKE, shenzhen]]
        script: echo "JOB_OUT host=$(hostname)"
      west:
        image: busybox
        constraints: [[city, UNLIKE, "sh.*"]]
        script: echo "JOB_OUT host=$(hostname)"
      spread:
        image: busybox
        matrix: { n: [1, 2, 3] }
        constraints: [[city, UNIQUE]]
        script:
          - echo "JOB_OUT host=$(hostname)"
          - while [ ! -f /tmp/gate-spread ]; do sleep 0.1; done
"#;

/// A web server on a dynamic host port of a chengdu node, until the gate opens.
const WEB: &str = r#"
name: web
stages:
  - name: serve
    jobs:
      web:
        image: busybox
        constraints: [[city, LIKE, chengdu]]
        network: host
        ports: [{ name: web }]
        script:
          - mkdir site
          - echo "served by $(hostname) at $KILN_HOST_IP:$KILN_PORT_WEB" > site/index.html
          - busybox httpd -f -p "$KILN_PORT_WEB" -h "$PWD/site" &
          - while [ ! -f /tmp/gate-web ]; do sleep 0.1; done
          - kill $!
"#;

/// A long job on shenzhen or shanghai with one retry for errors (an agent lost is one).
const FAILOVER: &str = r#"
name: failover
stages:
  - name: s
    jobs:
      long:
        image: busybox
        retry: { max: 1, on: [error] }
        constraints: [[city, LIKE, "shenzhen|shanghai"]]
        script:
          - echo "attempt $KILN_ATTEMPT on $(hostname)"
          - while [ ! -f /tmp/gate-failover ]; do sleep 0.1; done
          - echo "attempt $KILN_ATTEMPT done"
          - echo "JOB_OUT host=$(hostname)"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_place_by_city_serve_a_dynamic_port_and_fail_over() {
    require_docker();
    let image = Command::new("docker").args(["image", "inspect", "busybox:latest"]).output();
    assert!(
        image.is_ok_and(|o| o.status.success()),
        "the test image busybox:latest is missing: run `cargo xtask images`"
    );
    let mut cluster = Cluster::new();

    // The server, with no embedded agent: every job runs on one of the three agents. A short
    // `--agent-lost-after` keeps the failover quick (agents poll at least every half of it).
    cluster.start(
        "server",
        &[("NO_COLOR", "1")],
        &[
            "server",
            "--listen",
            &format!("0.0.0.0:{PORT}"),
            "--data",
            "/data",
            "--capacity",
            "0",
            "--agent-lost-after",
            "5s",
        ],
    );
    let server_ip = cluster.ip("server");
    let url = format!("http://{server_ip}:{PORT}");
    let server = cluster.container("server");
    let token = until("the server's admin token", || async {
        let out =
            Command::new("docker").args(["exec", &server, "cat", "/data/admin.token"]).output();
        out.ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|token| !token.is_empty())
    })
    .await;
    cluster.token = Some(token.clone());
    let client = Client::new(&url, &token).expect("client");
    until("the server to answer", || async { client.info().await.ok() }).await;

    for (name, city) in AGENTS {
        let server_url = url.clone();
        let attribute = format!("city={city}");
        cluster.start(
            name,
            &[("NO_COLOR", "1"), ("KILN_TOKEN", &token)],
            &[
                "agent",
                "--server",
                &server_url,
                "--name",
                name,
                "--executor",
                "process",
                "-a",
                &attribute,
            ],
        );
    }
    // Each node is ready with its city, at its container's IP (the agent found the address
    // it reaches the server from).
    let nodes = until("three ready nodes", || async {
        let nodes = client.nodes().await.ok()?;
        (nodes.len() == 3 && nodes.iter().all(|n| n.state == "ready")).then_some(nodes)
    })
    .await;
    for (name, city) in AGENTS {
        let node = nodes.iter().find(|n| n.name == name).unwrap_or_else(|| panic!("{nodes:#?}"));
        assert_eq!(node.ip, cluster.ip(name), "{node:#?}\n{}", cluster.logs(name));
        assert_eq!(node.hostname, name, "{node:#?}");
        assert_eq!(node.attributes.get("city").map(ToString::to_string).as_deref(), Some(city));
        assert_eq!(node.executor, "process", "{node:#?}");
    }
    client.create_project("multihost").await.expect("create project");

    // Constraints: shenzhen only; not `sh.*` (chengdu); one instance per city.
    let placed = trigger(&client, "placed", PLACED).await;
    let spread = ["spread[1]", "spread[2]", "spread[3]"];
    let d = run_until(&client, &placed, "three spread instances running", |d| {
        spread.iter().all(|id| job(d, id).state == "running")
    })
    .await;
    let mut nodes_of_spread: Vec<String> = spread
        .iter()
        .map(|id| {
            let p = job(&d, id).placement.clone().unwrap_or_else(|| panic!("{d:#?}"));
            assert_eq!(p.ip, cluster.ip(&p.node), "{p:?}");
            p.node
        })
        .collect();
    nodes_of_spread.sort();
    assert_eq!(nodes_of_spread, ["cd", "sh", "sz"], "UNIQUE city: one instance per node");
    for (name, _) in AGENTS {
        cluster.touch(name, "/tmp/gate-spread");
    }
    let d = final_run(&client, &placed).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let host =
        |d: &RunDetail, id: &str| job(d, id).outputs.get("host").cloned().unwrap_or_default();
    assert_eq!(host(&d, "south"), "sz", "{d:#?}");
    assert_eq!(host(&d, "west"), "cd", "{d:#?}");
    let mut hosts: Vec<String> = spread.iter().map(|id| host(&d, id)).collect();
    hosts.sort();
    assert_eq!(hosts, ["cd", "sh", "sz"], "{d:#?}");

    // A dynamic port, reached from here at the host IP and port the API reports.
    let web = trigger(&client, "web", WEB).await;
    let d = run_until(&client, &web, "the web job placed and running", |d| {
        job(d, "web").state == "running" && job(d, "web").placement.is_some()
    })
    .await;
    let p = job(&d, "web").placement.clone().expect("placement");
    assert_eq!((p.node.as_str(), p.ip.clone()), ("cd", cluster.ip("cd")), "{p:?}");
    assert_eq!(p.ports.len(), 1, "{p:?}");
    assert_eq!(p.ports[0].name, "web", "{p:?}");
    let port = p.ports[0].host;
    assert!((31000..=32000).contains(&port), "{p:?}");
    let address = format!("http://{}:{port}/", p.ip);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let body = until("the job's web server to answer", || async {
        let resp = http.get(&address).send().await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.text().await.ok()
    })
    .await;
    assert_eq!(body.trim(), format!("served by cd at {}:{port}", p.ip));
    // `kiln run show` says the same.
    let show = crate::support::kiln()
        .args(["run", "show", &web])
        .env("KILN_SERVER", &url)
        .env("KILN_TOKEN", &token)
        .output()
        .expect("kiln run show");
    let (stdout, _) = crate::support::assert_code(&show, 0);
    let line = format!("job web running on node cd at {}, ports web={}:{port}", p.ip, p.ip);
    assert!(stdout.contains(&line), "`{line}` missing:\n{stdout}");
    cluster.touch("cd", "/tmp/gate-web");
    let d = final_run(&client, &web).await;
    assert_eq!(d.run.state, "success", "{d:#?}");

    // Failover: the agent running the job dies with its container; the server marks it lost
    // and the retry runs on the other node of shenzhen|shanghai.
    let failover = trigger(&client, "failover", FAILOVER).await;
    let d = run_until(&client, &failover, "the long job running", |d| {
        job(d, "long").state == "running" && job(d, "long").placement.is_some()
    })
    .await;
    let first = job(&d, "long").placement.clone().expect("placement").node;
    let other = if first == "sz" { "sh" } else { "sz" };
    assert!(["sz", "sh"].contains(&first.as_str()), "placed on {first}");
    let started = format!("attempt 1 on {first}");
    until("the first attempt's start line", || async {
        log(&client, &failover, "long", 1).await.contains(&started).then_some(())
    })
    .await;
    docker(&["kill", &cluster.container(&first)]);
    until("the killed agent's node to be lost", || async {
        let nodes = client.nodes().await.ok()?;
        nodes.iter().any(|n| n.name == first && n.state == "lost").then_some(())
    })
    .await;
    let d = run_until(&client, &failover, "the second attempt running elsewhere", |d| {
        let j = job(d, "long");
        j.attempts == 2
            && j.state == "running"
            && j.placement.as_ref().is_some_and(|p| p.node == other)
    })
    .await;
    assert_eq!(job(&d, "long").placement.as_ref().unwrap().ip, cluster.ip(other));
    let restarted = format!("attempt 2 on {other}");
    until("the second attempt's start line", || async {
        log(&client, &failover, "long", 2).await.contains(&restarted).then_some(())
    })
    .await;
    cluster.touch(other, "/tmp/gate-failover");
    let d = final_run(&client, &failover).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    let long = job(&d, "long");
    assert_eq!(long.attempts, 2, "one lost attempt, one that finished: {long:#?}");
    assert_eq!(long.outputs.get("host").map(String::as_str), Some(other), "{long:#?}");
    assert_eq!(
        log(&client, &failover, "long", 1).await,
        [started],
        "the lost attempt never finished"
    );
    let second: Vec<String> = log(&client, &failover, "long", 2)
        .await
        .into_iter()
        .filter(|l| !l.starts_with("JOB_OUT"))
        .collect();
    assert_eq!(second, [restarted, "attempt 2 done".to_string()]);
    let nodes = client.nodes().await.expect("nodes");
    for n in &nodes {
        let want = if n.name == first { "lost" } else { "ready" };
        assert_eq!(n.state, want, "{nodes:#?}");
        assert_eq!(n.running, 0, "nothing holds a slot after the runs: {nodes:#?}");
    }
}
