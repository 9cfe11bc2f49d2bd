//! Metrics scraping by label selector, through the real server with agents on the process
//! executor: python3 exporters (Prometheus' text format) and, when installed, Debian's
//! distccd (its `name value` stats page) as instances; rules that pick some services and not
//! others; the one re-exposed endpoint, the history API, a target that stops answering; bad
//! rule files; and Debian's Prometheus following Kiln's `http_sd` targets and scraping the
//! re-exposed samples.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kiln_api::metric::{ApplyMetricRule, MetricRuleInfo, MetricSeries};
use kiln_api::service::ServiceInfo;
use kiln_scrape::{Dialect, Family};
use kiln_testkit::wait::until;

use crate::support::{Backend, TestServer, apply, on_loopback, wait_service};

/// An instance serving `/healthz` on `$KILN_PORT_WEB` and, on `$KILN_PORT_METRICS`, a
/// Prometheus text page whose counter counts the page's reads and whose gauge carries its own
/// `instance` label. The metrics listener closes (the target dies, the instance stays
/// healthy) when the file `mute-<slot>` appears in `$DIR`.
const EXPORTER: &str = r##"
import http.server, os, threading, time
d, slot = os.environ["DIR"], os.environ["KILN_SLOT"]
reads = [0]
class Web(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
class Metrics(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        reads[0] += 1
        body = ("# HELP requests_total Pages served.\n# TYPE requests_total counter\n"
                f'requests_total{{path="/metrics"}} {reads[0]}\n'
                "# TYPE temperature gauge\n"
                f'temperature{{instance="sensor-{slot}"}} 21.5\n').encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
metrics = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_METRICS"])), Metrics)
threading.Thread(target=metrics.serve_forever, daemon=True).start()
def mute():
    while not os.path.exists(f"{d}/mute-{slot}"):
        time.sleep(0.05)
    metrics.shutdown()
    metrics.server_close()
threading.Thread(target=mute, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["KILN_PORT_WEB"])), Web).serve_forever()
"##;

fn exporter_yaml(name: &str, dir: &Path, replicas: u32, labels: &str) -> String {
    format!(
        r#"kind: service
name: {name}
command: [python3, -c, {script}]
env: {{ DIR: "{dir}" }}
replicas: {replicas}
ports:
  - {{ name: web, container: 8080 }}
  - {{ name: metrics, container: 9100 }}
labels: {labels}
health:
  http: {{ port: web, path: /healthz }}
  grace: 2s
  interval: 100ms
  failures: 2
restart: {{ backoff: {{ initial: 200ms, max: 2s }} }}
"#,
        script = serde_json::to_string(EXPORTER).unwrap(),
        dir = dir.display(),
    )
}

/// Real distccd with its stats page on `$KILN_PORT_STATS`; the agents' TCP health checks on
/// its distcc port count as connections (`dcc_tcp_accept`).
fn distccd_yaml(dir: &Path) -> String {
    let run = format!(
        "exec /usr/bin/distccd --daemon --no-detach --stats --stats-port $KILN_PORT_STATS \
         --port $KILN_PORT_DISTCC --allow 127.0.0.1 --listen 127.0.0.1 \
         --log-file {}/distccd-$KILN_SLOT.log",
        dir.display()
    );
    format!(
        r#"kind: service
name: distccd
command: [sh, -c, {run}]
ports:
  - {{ name: distcc, container: 3632 }}
  - {{ name: stats, container: 3633 }}
labels: {{ app: distcc, team: build }}
health:
  tcp: distcc
  grace: 2s
  interval: 200ms
  failures: 2
"#,
        run = serde_json::to_string(&run).unwrap(),
    )
}

async fn apply_rule(s: &TestServer, yaml: &str) -> MetricRuleInfo {
    let name = yaml.lines().find_map(|l| l.strip_prefix("name: ")).unwrap();
    s.admin
        .apply_metric_rule("shop", name, &ApplyMetricRule { yaml: yaml.into(), file: None })
        .await
        .unwrap()
}

/// The re-exposed endpoint's text and its families (read by the text format's parser).
async fn scraped(s: &TestServer) -> (String, Vec<Family>) {
    let text = s.admin.scraped().await.unwrap();
    let families = kiln_scrape::parse(&text, Dialect::Text, 100_000)
        .unwrap_or_else(|e| panic!("the endpoint does not parse: {e}\n{text}"));
    (text, families)
}

/// Every sample of `name` as its labels.
fn samples(families: &[Family], name: &str) -> Vec<BTreeMap<String, String>> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .filter(|s| s.name == name)
        .map(|s| s.labels.clone())
        .collect()
}

fn series<'a>(all: &'a [MetricSeries], name: &str, instance: &str) -> Option<&'a MetricSeries> {
    all.iter()
        .find(|s| s.name == name && s.labels.get("instance").map(String::as_str) == Some(instance))
}

/// The value of a line of the server's `/metrics` that starts with `prefix`.
async fn server_metric(s: &TestServer, prefix: &str) -> Option<f64> {
    let text = reqwest::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rule_scrapes_the_instances_its_selector_picks_and_keeps_their_history() {
    let distccd = kiln_testkit::peer("scrape", "/usr/bin/distccd").is_some();
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let a = s.agent("a", 4, on_loopback(&[], 43000));
    let b = s.agent("b", 4, on_loopback(&[], 43100));
    apply(&s, "shop", &exporter_yaml("exporter", dir.path(), 2, "{ app: exporter, team: build }"))
        .await;
    apply(&s, "shop", &exporter_yaml("other", dir.path(), 1, "{ app: exporter, team: web }")).await;
    if distccd {
        apply(&s, "shop", &distccd_yaml(dir.path())).await;
    }
    let up = |n: usize| move |i: &ServiceInfo| i.healthy as usize == n;
    let exporter = wait_service(&s, "exporter", "2 healthy", |_| {}, up(2)).await;
    wait_service(&s, "other", "1 healthy", |_| {}, up(1)).await;
    if distccd {
        wait_service(&s, "distccd", "1 healthy", |_| {}, up(1)).await;
    }

    let rule = apply_rule(
        &s,
        "kind: metric\nname: exporters\nselector: team=build,app!=distcc\nport: metrics\n\
         interval: 1s\nlabels: { env: test }\n",
    )
    .await;
    assert_eq!((rule.interval_ms, rule.timeout_ms, rule.path.as_str()), (1000, 1000, "/metrics"));
    if distccd {
        apply_rule(
            &s,
            "kind: metric\nname: distcc\nselector: { app: distcc }\nport: stats\npath: /\n\
             interval: 1s\nformat: plain\n",
        )
        .await;
    }

    // The one endpoint shows the matching instances' samples, labelled with where they came
    // from, and nothing of the service the selector leaves out.
    let by_id: BTreeMap<String, (u32, String)> = exporter
        .instances
        .iter()
        .map(|i| (i.id.clone(), (i.slot, i.node.clone().unwrap())))
        .collect();
    let (text, families) = until(
        "both exporters scraped",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (text, families) = scraped(&s).await;
            let seen: BTreeSet<String> = samples(&families, "requests_total")
                .iter()
                .map(|l| l["instance"].clone())
                .collect();
            let want: BTreeSet<String> = by_id.keys().cloned().collect();
            let distcc_seen = !distccd || !samples(&families, "dcc_tcp_accept").is_empty();
            if seen == want && distcc_seen { Ok((text, families)) } else { Err(text) }
        },
    )
    .await;
    assert_eq!(text.matches("# TYPE requests_total counter").count(), 1, "{text}");
    assert!(!text.contains("service=\"other\""), "the selector leaves `other` out:\n{text}");
    for l in samples(&families, "requests_total") {
        let (slot, node) = &by_id[&l["instance"]];
        let want = [
            ("project", "shop"),
            ("service", "exporter"),
            ("rule", "exporters"),
            ("env", "test"),
            ("path", "/metrics"),
            ("slot", &slot.to_string()),
            ("node", node.as_str()),
        ];
        for (k, v) in want {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "{k} of {l:?}");
        }
    }
    for l in samples(&families, "temperature") {
        let slot = &by_id[&l["instance"]].0;
        assert_eq!(
            l["exported_instance"],
            format!("sensor-{slot}"),
            "the page's own instance label is kept: {l:?}"
        );
    }
    if distccd {
        let d = samples(&families, "dcc_tcp_accept");
        assert_eq!(
            (d.len(), d[0]["service"].as_str(), d[0]["rule"].as_str()),
            (1, "distccd", "distcc")
        );
        assert!(
            samples(&families, "dcc_longest_job").is_empty(),
            "`none` is not a sample:\n{text}"
        );
    }

    // The history API: the counters advance as the targets change.
    let id0 = exporter.instances.iter().find(|i| i.slot == 0).unwrap().id.clone();
    let id1 = exporter.instances.iter().find(|i| i.slot == 1).unwrap().id.clone();
    let history = until(
        "3 points per instance",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let h = s.admin.service_metrics("shop", "exporter", None).await.unwrap();
            let enough = [&id0, &id1].iter().all(|id| {
                series(&h.series, "requests_total", id).is_some_and(|x| x.points.len() >= 3)
            });
            if enough { Ok(h) } else { Err(h) }
        },
    )
    .await;
    for id in [&id0, &id1] {
        let x = series(&history.series, "requests_total", id).unwrap();
        assert_eq!(
            (x.labels["service"].as_str(), x.labels["rule"].as_str()),
            ("exporter", "exporters")
        );
        assert!(x.points.windows(2).all(|w| w[0].0 < w[1].0), "ascending times: {x:?}");
        assert!(x.points.windows(2).all(|w| w[0].1 < w[1].1), "the counter advances: {x:?}");
    }
    assert!(history.series.iter().all(|x| x.labels["service"] == "exporter"), "{history:#?}");
    let newest = series(&history.series, "requests_total", &id0).unwrap().points.last().unwrap().0;
    let later = s.admin.service_metrics("shop", "exporter", Some(newest)).await.unwrap();
    let cut = series(&later.series, "requests_total", &id0).unwrap();
    assert!(cut.points.iter().all(|p| p.0 >= newest) && !cut.points.is_empty(), "{cut:?}");
    let other = s.admin.service_metrics("shop", "other", None).await.unwrap();
    assert!(other.series.is_empty(), "no rule scrapes `other`: {other:#?}");
    if distccd {
        let d = until(
            "distccd's accepts advance",
            Duration::from_secs(30),
            Duration::from_millis(300),
            || async {
                let h = s.admin.service_metrics("shop", "distccd", None).await.unwrap();
                let x = h.series.into_iter().find(|x| x.name == "dcc_tcp_accept");
                match x {
                    Some(x) if x.points.first().unwrap().1 < x.points.last().unwrap().1 => Ok(x),
                    other => Err(other),
                }
            },
        )
        .await;
        assert_eq!(d.labels["service"], "distccd");
    }

    // A target that dies counts an error; the others are still scraped.
    std::fs::write(dir.path().join("mute-1"), "").unwrap();
    let errors = r#"kiln_scrape_errors_total{project="shop",rule="exporters"}"#;
    let failed = until(
        "slot 1's target down",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let r = s.admin.metric_rule("shop", "exporters").await.unwrap();
            let counted = server_metric(&s, errors).await.is_some_and(|n| n >= 1.0);
            let down = r.targets.iter().any(|t| t.instance == id1 && !t.up);
            if counted && down { Ok(r) } else { Err(r) }
        },
    )
    .await;
    let t1 = failed.targets.iter().find(|t| t.instance == id1).unwrap();
    assert!(t1.error.as_deref().is_some_and(|e| e.contains("refused")), "{t1:#?}");
    let before = failed.targets.iter().find(|t| t.instance == id0).unwrap().last_scrape;
    let (text, families) = until(
        "slot 0 scraped again",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let r = s.admin.metric_rule("shop", "exporters").await.unwrap();
            let t0 = r.targets.iter().find(|t| t.instance == id0).unwrap();
            if t0.up && t0.last_scrape > before { Ok(scraped(&s).await) } else { Err(r) }
        },
    )
    .await;
    let seen: BTreeSet<String> =
        samples(&families, "requests_total").iter().map(|l| l["instance"].clone()).collect();
    assert_eq!(seen, BTreeSet::from([id0.clone()]), "only the live target's samples:\n{text}");
    assert!(
        server_metric(&s, r#"kiln_scrape_samples_total{project="shop",rule="exporters"}"#)
            .await
            .unwrap()
            > 0.0
    );
    let info = s.admin.service("shop", "exporter").await.unwrap();
    assert_eq!(info.healthy, 2, "the instance itself stays healthy: {info:#?}");

    // Deleting the rule stops it and forgets its samples.
    s.admin.delete_metric_rule("shop", "exporters").await.unwrap();
    let (text, _) = scraped(&s).await;
    assert!(!text.contains("requests_total"), "{text}");
    assert!(s.admin.service_metrics("shop", "exporter", None).await.unwrap().series.is_empty());
    // The agents first: the server's graceful stop would wait for their lease polls.
    a.stop().await;
    b.stop().await;
    s.stop().await;
}

#[tokio::test]
async fn a_bad_rule_file_is_refused_with_positions_and_nothing_is_stored() {
    a_bad_rule_file_is_refused_with_positions_and_nothing_is_stored_on(Backend::Sqlite).await;
}

/// Bad files refused with every problem's position, nothing stored; a good one stored,
/// listed, applied again unchanged, deleted.
pub async fn a_bad_rule_file_is_refused_with_positions_and_nothing_is_stored_on(backend: Backend) {
    let s = TestServer::start_on_with(backend, 0).await;
    s.admin.create_project("shop").await.unwrap();
    let yaml = "kind: metric\nname: m\nselector: app in distcc\nport: stats\ninterval: 100ms\nformat: json\nevery: 1s\n";
    let err = s
        .admin
        .apply_metric_rule(
            "shop",
            "m",
            &ApplyMetricRule { yaml: yaml.into(), file: Some("m.yml".into()) },
        )
        .await
        .unwrap_err();
    let kiln_client::ClientError::Api { status, error } = err else { panic!("{err}") };
    assert_eq!((status, error.code.as_str()), (422, "invalid_metric"));
    let text: Vec<String> = error.diagnostics.iter().map(|d| d.to_string()).collect();
    let text = text.join("\n");
    for want in [
        "m.yml:3:11: error: selector:",
        "m.yml:5:11: error: interval:",
        "m.yml:6:9: error: format:",
        "m.yml:7:1: error: unknown key 'every'",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
    // A file whose name is not the path's is refused too.
    let other = "kind: metric\nname: n\nselector: app=x\nport: p\n";
    let err = s
        .admin
        .apply_metric_rule("shop", "m", &ApplyMetricRule { yaml: other.into(), file: None })
        .await
        .unwrap_err();
    assert!(matches!(err, kiln_client::ClientError::Api { status: 400, .. }), "{err}");
    assert!(s.admin.metric_rules("shop").await.unwrap().is_empty());

    let good = "kind: metric\nname: m\nselector: app=x\nport: p\n";
    let body = ApplyMetricRule { yaml: good.into(), file: Some("m.yml".into()) };
    let applied = s.admin.apply_metric_rule("shop", "m", &body).await.unwrap();
    assert_eq!((applied.interval_ms, applied.format.as_str()), (15_000, "prometheus"));
    assert_eq!(s.admin.apply_metric_rule("shop", "m", &body).await.unwrap(), applied);
    let listed = s.admin.metric_rules("shop").await.unwrap();
    assert_eq!(listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["m"]);
    assert!(listed[0].targets.is_empty(), "no service has app=x");
    s.admin.delete_metric_rule("shop", "m").await.unwrap();
    let gone = s.admin.metric_rule("shop", "m").await.unwrap_err();
    assert!(matches!(gone, kiln_client::ClientError::Api { status: 404, .. }), "{gone}");
    s.stop().await;
}

/// Debian's Prometheus, killed when the test ends however it ends.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prometheus' active targets of `pool`: address, health, labels.
async fn prom_targets(
    p: &Prometheus,
    pool: &str,
) -> Vec<(String, String, BTreeMap<String, String>)> {
    let body: serde_json::Value =
        match reqwest::get(format!("{}/api/v1/targets?state=active", p.url)).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return Vec::new(),
        };
    let Some(active) = body["data"]["activeTargets"].as_array() else { return Vec::new() };
    active
        .iter()
        .filter(|t| t["scrapePool"] == pool)
        .map(|t| {
            let labels = serde_json::from_value(t["labels"].clone()).unwrap_or_default();
            (
                t["discoveredLabels"]["__address__"].as_str().unwrap_or_default().to_string(),
                t["health"].as_str().unwrap_or_default().to_string(),
                labels,
            )
        })
        .collect()
}

/// Kiln's `http_sd` addresses for `app=exporter`, port `metrics`.
async fn kiln_targets(s: &TestServer) -> BTreeSet<String> {
    let url = format!("{}/api/v1/discovery/targets?selector=app%3Dexporter&port=metrics", s.url);
    let groups: Vec<kiln_api::service::SdTarget> = reqwest::Client::new()
        .get(url)
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    groups.into_iter().flat_map(|g| g.targets).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_follows_kiln_s_targets_and_reads_the_scraped_endpoint() {
    let Some(bin) = kiln_testkit::peer("prometheus", "/usr/bin/prometheus") else { return };
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let dir = tempfile::tempdir().unwrap();
    let a = s.agent("a", 4, on_loopback(&[], 46000));
    let b = s.agent("b", 4, on_loopback(&[], 46100));
    apply(&s, "shop", &exporter_yaml("exporter", dir.path(), 2, "{ app: exporter, team: build }"))
        .await;
    wait_service(&s, "exporter", "2 healthy", |_| {}, |i| i.healthy == 2).await;
    apply_rule(
        &s,
        "kind: metric\nname: exp\nselector: app=exporter\nport: metrics\ninterval: 1s\n",
    )
    .await;

    let kiln = s.url.trim_start_matches("http://").to_string();
    let port = free_port();
    let token = &s.admin_token;
    let config = format!(
        r#"global: {{ scrape_interval: 1s, scrape_timeout: 1s }}
scrape_configs:
  - job_name: exporters
    http_sd_configs:
      - url: "http://{kiln}/api/v1/discovery/targets?selector=app%3Dexporter&port=metrics"
        refresh_interval: 1s
        authorization: {{ type: Bearer, credentials: "{token}" }}
  - job_name: kiln-scraped
    honor_labels: true
    metrics_path: /api/v1/metrics/scraped
    authorization: {{ type: Bearer, credentials: "{token}" }}
    static_configs: [{{ targets: ["{kiln}"] }}]
"#
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let prom = Prometheus { child, url: format!("http://127.0.0.1:{port}") };
    let log_text =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();

    // Prometheus lists exactly Kiln's targets, up, with Kiln's labels.
    let ids: BTreeSet<String> = s
        .admin
        .service("shop", "exporter")
        .await
        .unwrap()
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let follows = |n: usize| {
        let (s, prom) = (&s, &prom);
        async move {
            until(
                &format!("Prometheus lists {n} targets, up"),
                Duration::from_secs(30),
                Duration::from_millis(250),
                || async move {
                    let kiln = kiln_targets(s).await;
                    let got = prom_targets(prom, "exporters").await;
                    let addresses: BTreeSet<String> = got.iter().map(|t| t.0.clone()).collect();
                    let all_up = got.iter().all(|t| t.1 == "up");
                    if kiln.len() == n && addresses == kiln && got.len() == n && all_up {
                        Ok(got)
                    } else {
                        Err((kiln, got, log_text()))
                    }
                },
            )
            .await
        }
    };
    let got = follows(2).await;
    for (_, _, labels) in &got {
        assert_eq!(labels["job"], "exporters");
        assert_eq!((labels["project"].as_str(), labels["service"].as_str()), ("shop", "exporter"));
        assert!(ids.contains(&labels["instance"]), "the instance label is Kiln's id: {labels:?}");
        assert_eq!(labels["team"], "build", "the service's labels too: {labels:?}");
    }

    // The re-exposed endpoint reads as Prometheus reads it, Kiln's labels kept.
    let query =
        format!("{}/api/v1/query?query=requests_total%7Bjob%3D%22kiln-scraped%22%7D", prom.url);
    let result = until(
        "Prometheus reads /api/v1/metrics/scraped",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || async {
            let body: serde_json::Value = reqwest::get(&query).await.unwrap().json().await.unwrap();
            let result = body["data"]["result"].as_array().cloned().unwrap_or_default();
            if result.len() == 2 { Ok(result) } else { Err((body, log_text())) }
        },
    )
    .await;
    for r in &result {
        let m = &r["metric"];
        assert_eq!(
            (m["service"].as_str(), m["rule"].as_str()),
            (Some("exporter"), Some("exp")),
            "{r}"
        );
        assert!(ids.contains(m["instance"].as_str().unwrap()), "{r}");
    }

    // A scale change: Prometheus follows.
    s.admin
        .service_action(
            "shop",
            "exporter",
            "scale",
            &kiln_api::service::ScaleService { replicas: 3 },
        )
        .await
        .unwrap();
    wait_service(&s, "exporter", "3 healthy", |_| {}, |i| i.healthy == 3).await;
    follows(3).await;
    s.admin
        .service_action(
            "shop",
            "exporter",
            "scale",
            &kiln_api::service::ScaleService { replicas: 1 },
        )
        .await
        .unwrap();
    follows(1).await;
    drop(prom);
    a.stop().await;
    b.stop().await;
    s.stop().await;
}
