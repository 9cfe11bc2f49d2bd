//! What jobs and instances may read of the server, and what people read of instances: every
//! job attempt and instance gets a discovery token (`KILN_DISCOVERY_TOKEN`, with
//! `KILN_SERVER`) that reads its own project's discovery and services while its lease lives,
//! nothing else, masked in logs; an instance's stdout and stderr are served like a job's log,
//! by pages and live.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kiln_api::service::{ApplyService, ServiceInfo};

use crate::support::{TestServer, host};

/// An HTTP server on `$KILN_PORT_WEB` that writes its discovery token to `$DIR/token` and
/// says so (the token itself on stdout, `ready` on stderr).
const INSTANCE: &str = r#"
import http.server, os, sys
with open(os.path.join(os.environ["DIR"], "token"), "w") as f:
    f.write(os.environ["KILN_DISCOVERY_TOKEN"])
print(f"serving {os.environ['KILN_INSTANCE']} token={os.environ['KILN_DISCOVERY_TOKEN']}", flush=True)
print("ready", file=sys.stderr, flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_WEB"])), H).serve_forever()
"#;

/// What a job runs: `GET` of each path with its token, the status and body printed.
const PROBE: &str = r#"
import os, sys, urllib.request, urllib.error
base, token = os.environ["KILN_SERVER"], os.environ["KILN_DISCOVERY_TOKEN"]
for path in sys.argv[1:]:
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, body = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    print(f"GET {path} -> {status} {body}", flush=True)
"#;

const PIPELINE: &str = r#"
name: probe
params:
  dir: { type: string }
stages:
  - name: s
    jobs:
      probe:
        script:
          - echo "my token is $KILN_DISCOVERY_TOKEN"
          - printf '%s' "$KILN_DISCOVERY_TOKEN" > "${{ params.dir }}/job-token"
          - >-
            python3 "${{ params.dir }}/probe.py" /api/v1/discovery/targets
            "/api/v1/discovery/targets?project=other" /api/v1/projects/shop/services/web
            /api/v1/projects/other/services /api/v1/runs
"#;

fn service(name: &str, dir: &Path) -> String {
    format!(
        "kind: service\nname: {name}\ncommand: [python3, -c, {script}]\nenv:\n  DIR: \"{dir}\"\n\
         ports:\n  - {{ name: web, container: 8080 }}\n\
         health:\n  tcp: web\n  grace: 3s\n  interval: 200ms\n",
        script = serde_json::to_string(INSTANCE).unwrap(),
        dir = dir.display(),
    )
}

async fn healthy(s: &TestServer, project: &str, name: &str) -> ServiceInfo {
    let started = Instant::now();
    loop {
        let info = s.admin.service(project, name).await.unwrap();
        if info.instances.len() == 1 && info.instances[0].state == "healthy" {
            return info;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "never healthy: {info:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url` with `token`: the status and the body.
async fn get(url: &str, token: &str) -> (u16, String) {
    let resp = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_and_instances_read_their_own_projects_discovery_and_instance_logs_are_served() {
    let s = TestServer::start_with(0).await;
    let mut h = host("127.0.0.1", 8, &[]);
    h.ports = Some(kiln_api::pool::PortRange { start: 43200, end: 43299 });
    let agent = s.agent("a", 4, h);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (project, name, dir) in [("shop", "web", &dirs[0]), ("other", "db", &dirs[1])] {
        s.admin.create_project(project).await.unwrap();
        let body = ApplyService { yaml: service(name, dir.path()), file: None, note: None };
        s.admin.apply_service(project, name, &body).await.unwrap();
    }
    let web = healthy(&s, "shop", "web").await.instances[0].clone();
    let db = healthy(&s, "other", "db").await.instances[0].clone();

    // A job reads its project's discovery with its token, and nothing else.
    let dir = dirs[0].path().display().to_string();
    std::fs::write(dirs[0].path().join("probe.py"), PROBE).unwrap();
    s.apply("shop", "probe", PIPELINE).await;
    let run = s.trigger("shop", "probe", &[("dir", &dir)]).await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    let log = crate::support::log_text(&s, &run.id, Some("probe")).await;
    let line = |prefix: &str| {
        log.iter()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line `{prefix}` in {log:#?}"))
            .clone()
    };
    let job_token = std::fs::read_to_string(dirs[0].path().join("job-token")).unwrap();
    assert!(job_token.starts_with("kiln_task_"), "{job_token}");
    assert_eq!(line("my token is"), "my token is ***", "masked like a secret");
    assert!(log.iter().all(|l| !l.contains(&job_token)), "{log:#?}");
    let targets = line("GET /api/v1/discovery/targets ->");
    assert!(targets.contains("-> 200") && targets.contains(&web.id), "{targets}");
    assert!(!targets.contains(&db.id), "another project's instance: {targets}");
    let other = line("GET /api/v1/discovery/targets?project=other ->");
    assert!(
        other.contains("-> 404") && other.contains("project `other` does not exist"),
        "{other}"
    );
    let own = line("GET /api/v1/projects/shop/services/web ->");
    assert!(own.contains("-> 200") && own.contains(&web.id), "{own}");
    assert!(line("GET /api/v1/projects/other/services ->").contains("-> 404"), "{log:#?}");
    let runs = line("GET /api/v1/runs ->");
    assert!(
        runs.contains("-> 403") && runs.contains("only reads its project's discovery"),
        "{runs}"
    );
    // Its lease ended with the job: the token is worth nothing now.
    let (status, body) = get(&format!("{}/api/v1/discovery/targets", s.url), &job_token).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("no longer valid"), "{body}");

    // An instance's token works the same, while the instance runs.
    let token = std::fs::read_to_string(dirs[0].path().join("token")).unwrap();
    let base = format!("{}/api/v1", s.url);
    let (status, body) = get(&format!("{base}/discovery/targets"), &token).await;
    assert!(status == 200 && body.contains(&web.id) && !body.contains(&db.id), "{body}");
    let (status, body) = get(&format!("{base}/projects/shop/services"), &token).await;
    assert!(status == 200 && body.contains(&web.id), "{body}");
    let (status, body) = get(&format!("{base}/discovery/targets?project=other"), &token).await;
    assert!(status == 404 && body.contains("project `other` does not exist"), "{body}");
    let (status, body) = get(&format!("{base}/projects/other/services/db"), &token).await;
    assert_eq!(status, 404, "{body}");
    let logs = format!("{base}/projects/shop/services/web/instances/{}/logs", web.id);
    let (status, body) = get(&logs, &token).await;
    assert!(status == 403 && body.contains("only reads its project's discovery"), "{body}");
    let resp = reqwest::Client::new()
        .put(format!("{base}/projects/shop/services/web"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "yaml": "kind: service" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let watch = reqwest::Client::new()
        .get(format!("{base}/discovery/watch"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    drop(watch);

    // The instance's log: stdout and stderr as it printed them, its token masked.
    let page = s.admin.instance_logs("shop", "web", &web.id, 1, 100).await.unwrap();
    let lines: Vec<(&str, &str)> =
        page.lines.iter().map(|l| (l.stream.as_str(), l.text.as_str())).collect();
    let serving = format!("serving {} token=***", web.id);
    assert!(lines.contains(&("stdout", serving.as_str())), "{lines:?}");
    assert!(lines.contains(&("stderr", "ready")), "{lines:?}");
    assert!(!page.closed, "the instance runs");
    assert!(page.lines.iter().all(|l| !l.text.contains(&token)));
    let missing = s.admin.instance_logs("shop", "web", "nope", 1, 100).await.unwrap_err();
    assert!(missing.to_string().contains("has no instance `nope`"), "{missing}");
    // Followed live, the log replays, then ends when the instance stops.
    let mut follow = Box::pin(s.admin.follow_instance("shop", "web", &web.id, 2).await.unwrap());
    let first = tokio::time::timeout(Duration::from_secs(10), follow.next()).await.unwrap();
    assert_eq!(first.unwrap().unwrap().seq, 2, "it resumes from the line asked");
    s.admin.service_action("shop", "web", "stop", &serde_json::json!({})).await.unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(30), follow.collect::<Vec<_>>()).await;
    assert!(rest.is_ok(), "the stream ends once the instance stopped");
    let page = s.admin.instance_logs("shop", "web", &web.id, 1, 100).await.unwrap();
    assert!(page.closed, "{page:?}");
    let (status, body) = get(&format!("{base}/discovery/targets"), &token).await;
    assert!(status == 401 && body.contains("no longer valid"), "{body}");

    agent.stop().await;
    s.stop().await;
}
