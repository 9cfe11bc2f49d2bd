//! The elastic pool end to end: a real `kiln server` with no agent of its own, node groups
//! applied with `kiln pool group apply`, and a provider hook (a shell script) that starts
//! and stops REAL `kiln agent` processes. A queue that fits no node brings just the nodes it
//! needs, the work runs, and the pool returns to its min after the idle time; max holds; a
//! job no template takes says so and brings no node; a failing, garbage-printing or hanging
//! provider is retried with backoff and shown, leaving nothing behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::server::Server;

/// The hook: `up N` starts one agent per name in `KILN_POOL_NODES` (detached with setsid,
/// its output in a file), `down NODE...` stops them (SIGTERM: the agent leaves). Every call
/// is logged to `calls.log`; `fail_first` calls fail first with exit status 3.
fn hook(dir: &Path, fail_first: u32) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
dir='{dir}'
echo "$*" >> "$dir/calls.log"
n=$(cat "$dir/count" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$dir/count"
if [ "$n" -le {fail_first} ]; then echo "cloud quota exceeded (call $n)" >&2; exit 3; fi
pu=''; if [ "$(id -u)" = 0 ]; then pu='--process-user root'; fi
case "$1" in
  up)
    for name in $KILN_POOL_NODES; do
      setsid '{kiln}' agent --name "$name" --token-file "$dir/agent.token" --executor process \
        $pu --work-dir "$dir/work-$name" $KILN_AGENT_ARGS \
        > "$dir/$name.log" 2>&1 < /dev/null &
      echo $! > "$dir/$name.pid"
    done ;;
  down)
    shift
    for name in "$@"; do
      if [ -f "$dir/$name.pid" ]; then kill "$(cat "$dir/$name.pid")"; rm "$dir/$name.pid"; fi
    done ;;
esac
"#,
        dir = dir.display(),
        kiln = env!("CARGO_BIN_EXE_kiln"),
    );
    let path = dir.join("hook.sh");
    std::fs::write(&path, script).unwrap();
    path
}

/// Stops every agent the hook started and left running when a test ends, however it ends.
struct Agents(PathBuf);

impl Drop for Agents {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
                let _ = std::process::Command::new("kill").arg("-9").arg(pid.trim()).status();
            }
        }
    }
}

/// A server without an embedded agent, an agent token in `dir/agent.token`.
fn server(dir: &Path) -> Server {
    let s = Server::start_with("process", &["--capacity", "0"]);
    let (out, _) = s.ok(&["token", "create", "pool", "--role", "agent", "-o", "json"], 0);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    std::fs::write(dir.join("agent.token"), doc["secret"].as_str().unwrap()).unwrap();
    s
}

fn group_file(s: &Server, name: &str, body: &str) -> String {
    s.file(&format!("{name}.yml"), &format!("kind: node-group\nname: {name}\n{body}"))
}

fn json(s: &Server, args: &[&str]) -> serde_json::Value {
    let (out, _) = s.ok(args, 0);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn events(s: &Server) -> Vec<serde_json::Value> {
    json(s, &["pool", "events", "--limit", "1000", "-o", "json"]).as_array().unwrap().clone()
}

fn kinds(events: &[serde_json::Value], group: &str, kind: &str) -> Vec<serde_json::Value> {
    events.iter().filter(|e| e["group"] == group && e["kind"] == kind).cloned().collect()
}

/// Waits (at most `secs`) until `done` holds, else fails with `what` and the events.
fn until(s: &Server, secs: u64, what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what} within {secs}s; events: {:#?}",
            events(s)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The nodes the hook was asked for in all (`up N` calls summed) and the `down` calls.
fn calls(dir: &Path) -> (u32, Vec<String>) {
    let log = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    let up =
        log.lines().filter_map(|l| l.strip_prefix("up ")).map(|n| n.parse::<u32>().unwrap()).sum();
    let down = log.lines().filter(|l| l.starts_with("down")).map(str::to_string).collect();
    (up, down)
}

fn group_nodes(s: &Server, group: &str) -> Vec<serde_json::Value> {
    json(s, &["pool", "group", "show", group, "-o", "json"])["nodes"].as_array().unwrap().clone()
}

fn registered(s: &Server) -> usize {
    json(s, &["nodes", "-o", "json"]).as_array().unwrap().len()
}

fn trigger(s: &Server, pipeline: &str) -> String {
    let doc = json(s, &["trigger", pipeline, "-o", "json"]);
    doc["id"].as_str().unwrap_or_else(|| panic!("{doc:#}")).to_string()
}

fn jobs(n: usize, cpu: &str, group: &str, script: &str) -> String {
    let mut yaml = String::from("name: work\nstages:\n  - name: work\n    jobs:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "      j{i}:\n        resources: {{ cpu: {cpu}, memory: 128Mi }}\n        constraints: [[group, LIKE, {group}]]\n        script: [\"{script}\"]\n"
        ));
    }
    yaml
}

/// `GET /metrics` of the server.
fn metrics(s: &Server) -> String {
    use std::io::{Read, Write};
    let addr = s.url.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(c, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n", s.token)
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_queue_brings_just_the_nodes_it_needs_and_the_pool_returns_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let _agents = Agents(dir.path().to_path_buf());
    let s = server(dir.path());
    let hook = hook(dir.path(), 0);
    let file = group_file(
        &s,
        "big",
        &format!(
            "min: 0\nmax: 4\nidle-time: 3s\nnode:\n  cpus: 2\n  memory: 2Gi\n  capacity: 4\n  attributes: {{ pool: elastic }}\nprovider:\n  command: [sh, '{}']\n  timeout: 30s\n  backoff: 1s\n",
            hook.display()
        ),
    );
    let (out, _) = s.ok(&["pool", "group", "apply", &file], 0);
    assert_eq!(out.trim(), "node group big created (min 0, max 4)");
    let (out, _) = s.ok(&["pool", "group", "apply", &file], 0);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(registered(&s), 0, "min 0: no node before work comes");

    // Four 1-CPU jobs on 2-CPU nodes: two nodes, no more.
    s.pipeline("work", &jobs(4, "1", "big", "sleep 2"));
    let (out, _) = s.ok(&["trigger", "default/work", "--follow"], 0);
    assert!(out.contains("success"), "{out}");
    assert_eq!(calls(dir.path()).0, 2, "exactly the nodes the queue needed");
    let ev = events(&s);
    let outs = kinds(&ev, "big", "scale-out");
    assert!(!outs.is_empty());
    assert!(outs[0]["reason"].as_str().unwrap().contains("fit no current node"), "{outs:#?}");
    assert_eq!(kinds(&ev, "big", "node-registered").len(), 2, "{ev:#?}");

    // Idle for 3 s: drained, removed through the hook, forgotten.
    until(&s, 60, "the pool returns to 0", || {
        group_nodes(&s, "big").is_empty() && registered(&s) == 0
    });
    let ev = events(&s);
    assert_eq!(kinds(&ev, "big", "drain").len(), 2, "{ev:#?}");
    assert!(kinds(&ev, "big", "drain")[0]["reason"].as_str().unwrap().starts_with("idle for "));
    assert_eq!(kinds(&ev, "big", "node-removed").len(), 2, "{ev:#?}");
    let (_, down) = calls(dir.path());
    let downed: usize = down.iter().map(|l| l.split_whitespace().count() - 1).sum();
    assert_eq!(downed, 2, "{down:?}");
    // The agents really stopped.
    let pids = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "pid"));
    assert_eq!(pids.count(), 0);

    // The table, the events table and the metrics.
    let (table, _) = s.ok(&["pool", "groups"], 0);
    assert!(table.contains("big") && table.contains("hook.sh"), "{table}");
    let (table, _) = s.ok(&["pool", "events", "--group", "big"], 0);
    for kind in
        ["group-applied", "scale-out", "node-registered", "drain", "scale-in", "node-removed"]
    {
        assert!(table.contains(kind), "{kind} missing in\n{table}");
    }
    let m = metrics(&s);
    assert!(m.contains(r#"kiln_pool_events_total{group="big",kind="scale-out"}"#), "{m}");
    assert!(m.contains(r#"kiln_pool_nodes_requested_total{group="big"} 2"#), "{m}");
}

#[test]
fn min_and_max_hold_and_a_job_no_template_takes_brings_no_node() {
    let dir = tempfile::tempdir().unwrap();
    let _agents = Agents(dir.path().to_path_buf());
    let s = server(dir.path());
    let hook = hook(dir.path(), 0);
    let file = group_file(
        &s,
        "small",
        &format!(
            "min: 1\nmax: 2\nidle-time: 2s\nnode:\n  cpus: 1\n  memory: 1Gi\n  capacity: 1\nprovider:\n  command: [sh, '{}']\n  backoff: 1s\n",
            hook.display()
        ),
    );
    s.ok(&["pool", "group", "apply", &file], 0);
    // A group whose template no job here uses: it asks for nothing, ever.
    let arm = group_file(
        &s,
        "arm",
        &format!(
            "max: 3\nnode: {{ cpus: 64, memory: 64Gi, attributes: {{ arch: arm64 }} }}\nprovider: {{ command: [sh, '{}'] }}\n",
            hook.display()
        ),
    );
    s.ok(&["pool", "group", "apply", &arm], 0);
    until(&s, 30, "min 1 is brought up", || registered(&s) == 1);
    let ev = events(&s);
    assert_eq!(kinds(&ev, "small", "scale-out")[0]["reason"], "asked for 1 node(s): below min 1");

    // Four 1-CPU jobs, max 2: one more node, and they run two at a time.
    s.pipeline("work", &jobs(4, "1", "small", "sleep 1"));
    let (out, _) = s.ok(&["trigger", "default/work", "--follow"], 0);
    assert!(out.contains("success"), "{out}");
    assert_eq!(calls(dir.path()).0, 2, "min 1 + 1 more = max 2");
    assert!(!kinds(&events(&s), "small", "at-max").is_empty(), "the rest waited at max");

    // Needs 8 CPUs: no template has them on `small`, `arm` fails the constraint.
    let huge = "name: huge\nstages:\n  - name: s\n    jobs:\n      huge:\n        resources: { cpu: 8 }\n        constraints: [[arch, LIKE, x86_64]]\n        script: [\"true\"]\n";
    s.pipeline("huge", huge);
    let run = trigger(&s, "default/huge");
    let doc = s.wait(&run, "says why it waits", |d| {
        d["jobs"][0]["waiting"]
            .as_str()
            .is_some_and(|w| w.contains("fits no node group's template"))
    });
    let why = doc["jobs"][0]["waiting"].as_str().unwrap();
    assert!(why.contains("arm: 1 node: arch LIKE x86_64 failed"), "{why}");
    assert!(why.contains("small: 1 node: "), "{why}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(calls(dir.path()).0, 2, "a job no template takes brings no node");
    let stuck = kinds(&events(&s), "", "no-group-fits");
    assert_eq!(stuck.len(), 1, "reported once: {stuck:#?}");
    assert!(kinds(&events(&s), "arm", "scale-out").is_empty());
    s.ok(&["cancel", &run], 0);

    // Back down to min 1, never 0.
    until(&s, 60, "the extra node is removed", || {
        registered(&s) == 1 && group_nodes(&s, "small").len() == 1
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(registered(&s), 1, "min 1 holds");
    assert_eq!(kinds(&events(&s), "small", "node-removed").len(), 1);

    // A group with nodes is not deleted; with max 0 it empties, then it is.
    let (_, err) = s.ok(&["pool", "group", "delete", "small"], 2);
    assert!(err.contains("still has 1 node(s): apply it with `max: 0` first"), "{err}");
    let zero = group_file(
        &s,
        "small",
        &format!(
            "min: 0\nmax: 0\nnode: {{ cpus: 1, memory: 1Gi, capacity: 1 }}\nprovider: {{ command: [sh, '{}'], backoff: 1s }}\n",
            hook.display()
        ),
    );
    s.ok(&["pool", "group", "apply", &zero], 0);
    until(&s, 60, "max 0 empties the group", || {
        registered(&s) == 0 && group_nodes(&s, "small").is_empty()
    });
    let above = kinds(&events(&s), "small", "drain");
    assert!(
        above.last().unwrap()["reason"].as_str().unwrap().contains("above its max 0"),
        "{above:#?}"
    );
    s.ok(&["pool", "group", "delete", "small"], 0);
    let (_, err) = s.ok(&["pool", "group", "show", "small"], 2);
    assert!(err.contains("node group `small` does not exist"), "{err}");
}

#[test]
fn a_failing_provider_is_retried_with_backoff_and_bad_providers_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let _agents = Agents(dir.path().to_path_buf());
    let s = server(dir.path());
    let hook = hook(dir.path(), 2);
    let file = group_file(
        &s,
        "flaky",
        &format!(
            "idle-time: 1h\nmax: 1\nnode: {{ cpus: 1, memory: 1Gi }}\nprovider: {{ command: [sh, '{}'], backoff: 1s }}\n",
            hook.display()
        ),
    );
    s.ok(&["pool", "group", "apply", &file], 0);
    s.pipeline("work", &jobs(1, "1", "flaky", "true"));
    let (out, _) = s.ok(&["trigger", "default/work", "--follow"], 0);
    assert!(out.contains("success"), "{out}");
    let failed = kinds(&events(&s), "flaky", "provider-failed");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    let first = failed[0]["reason"].as_str().unwrap();
    assert!(first.contains("up failed (1 in a row; next try in 1s)"), "{first}");
    assert!(first.contains("exited with status 3: cloud quota exceeded (call 1)"), "{first}");
    assert!(failed[1]["reason"].as_str().unwrap().contains("(2 in a row; next try in 2s)"));
    let g = json(&s, &["pool", "group", "show", "flaky", "-o", "json"]);
    assert!(g["failure"].is_null(), "a success clears the failure: {g:#}");

    // Garbage on stdout, and a hook that hangs: clear errors, no node left coming.
    let garbage = s.file("garbage.sh", "#!/bin/sh\necho 'started 1 VM, have fun'\n");
    let hang = s.file(
        "hang.sh",
        &format!("#!/bin/sh\necho $$ > '{}/hang.pidfile'\nsleep 300\n", dir.path().display()),
    );
    for (name, script) in [("garbage", &garbage), ("hang", &hang)] {
        let f = group_file(
            &s,
            name,
            &format!(
                "max: 2\nnode: {{ cpus: 1, memory: 1Gi }}\nprovider: {{ command: [sh, '{}/{script}'], timeout: 1s, backoff: 30s }}\n",
                s.work.path().display()
            ),
        );
        s.ok(&["pool", "group", "apply", &f], 0);
    }
    s.pipeline("g", &jobs(1, "1", "garbage", "true").replace("name: work", "name: g"));
    s.pipeline("h", &jobs(1, "1", "hang", "true").replace("name: work", "name: h"));
    let runs = [trigger(&s, "default/g"), trigger(&s, "default/h")];
    until(&s, 30, "both providers fail", || {
        let ev = events(&s);
        !kinds(&ev, "garbage", "provider-failed").is_empty()
            && !kinds(&ev, "hang", "provider-failed").is_empty()
    });
    let ev = events(&s);
    let g = kinds(&ev, "garbage", "provider-failed")[0]["reason"].as_str().unwrap().to_string();
    assert!(g.contains("answered something other than nothing or {\"nodes\": [NAME, ...]}"), "{g}");
    assert!(g.contains("`started 1 VM, have fun`"), "{g}");
    let h = kinds(&ev, "hang", "provider-failed")[0]["reason"].as_str().unwrap().to_string();
    assert!(h.contains("did not finish within 1s: killed"), "{h}");
    // The hung hook was killed; nothing is left coming; the failure is shown.
    let pid = std::fs::read_to_string(dir.path().join("hang.pidfile")).unwrap();
    until(&s, 10, "the hung hook is gone", || {
        !Path::new(&format!("/proc/{}", pid.trim())).exists()
    });
    for name in ["garbage", "hang"] {
        let g = json(&s, &["pool", "group", "show", name, "-o", "json"]);
        assert_eq!(g["nodes"].as_array().unwrap().len(), 0, "{g:#}");
        assert_eq!(g["failure"]["action"], "up", "{g:#}");
    }
    let (shown, _) = s.ok(&["pool", "group", "show", "hang"], 0);
    assert!(shown.contains("provider failing: `sh "), "{shown}");
    assert!(
        shown.contains("did not finish within 1s: killed (1 in a row; next try at "),
        "{shown}"
    );
    let doc = s.show(&runs[1]);
    let why = doc["jobs"][0]["waiting"].as_str().unwrap_or_default();
    assert!(why.contains("node group `hang` would take it; its provider is backing off"), "{why}");
    for run in &runs {
        s.ok(&["cancel", run], 0);
    }

    // Bad files: every problem named, nothing stored.
    let bad = s.file(
        "bad.yml",
        "kind: node-group\nname: bad\nmin: 3\nmax: 1\nnode: { cpus: lots, memory: 1Gi }\nprovider: {}\n",
    );
    let (_, err) = s.ok(&["pool", "group", "apply", &bad], 2);
    for want in [
        "min: 3 is more than max 1",
        "node.cpus: expected CPU cores",
        "provider: expected `command",
    ] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
    let typo = s.file("typo.yml", "kind: node-group\nname: t\nmax: 1\nnode: { cpus: 1, memory: 1Gi }\nprovider: { comand: [x] }\n");
    let (_, err) = s.ok(&["pool", "group", "apply", &typo], 2);
    assert!(err.contains("typo.yml") && err.contains("comand"), "{err}");
    let names: Vec<String> = json(&s, &["pool", "groups", "-o", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["spec"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["flaky", "garbage", "hang"]);
}
