//! Seed 000 end to end: a build farm of real distcc daemons as a run's service pool, one per
//! city, on dynamic ports, with the pool's clients as their allowlist; a real C project built
//! by `make -j` through them with nothing compiled locally; every daemon's own statistics
//! say it compiled, and the pool is gone after the run. And a pool that can never become
//! ready fails the run with its reason and is deleted too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use kiln_api::pool::AttrValue;
use kiln_testkit::{c_project, peer, wait};

use crate::support::on_loopback;
use crate::support::{Backend, TestAgent, TestServer, job, log_text};

/// Three agents on loopback, one per city, with their own host port ranges.
fn three_cities(s: &TestServer) -> Vec<TestAgent> {
    ["shenzhen", "shanghai", "beijing"]
        .iter()
        .enumerate()
        .map(|(n, city)| {
            let attrs = [("city", AttrValue::Text(city.to_string()))];
            let first = 45000 + 100 * u16::try_from(n).unwrap();
            s.agent(&format!("{city}-1"), 4, on_loopback(&attrs, first))
        })
        .collect()
}

/// The workflow: a pool of 3 distccd (one per city, `--allow` for every pool client, added
/// by a shell around the command Kiln expands `$(KILN_PORT_*)` in) and a job that builds
/// `src` with `make -j12 CC="distcc gcc"`, then waits for `dir/checked`.
fn workflow(src: &Path, dir: &Path) -> String {
    format!(
        r#"name: distcc build
service-pools:
  distcc:
    service:
      command:
        - sh
        - -c
        - '[ -n "$KILN_POOL_CLIENTS" ] || exit 2; for c in $KILN_POOL_CLIENTS; do set -- "$@" --allow "$c"; done; exec "$@"'
        - distccd-pool
      args: [distccd, --daemon, --no-detach, --log-stderr, --listen, 127.0.0.1, --port, "$(KILN_PORT_DISTCC)", --stats, --stats-port, "$(KILN_PORT_STATS)", --jobs, "2"]
      replicas: 3
      ports:
        - {{ name: distcc, container: 3632 }}
        - {{ name: stats, container: 3633 }}
      constraints: [[city, UNIQUE]]
      health: {{ tcp: distcc, interval: 200ms, timeout: 1s, grace: 10s }}
      labels: {{ app: distcc }}
    timeout: 1m
    export:
      DISTCC_HOSTS: "{{% for i in instances %}}{{{{ i.ip }}}}:{{{{ i.ports.distcc }}}}/2 {{% endfor %}}"
stages:
  - name: build
    jobs:
      build:
        env:
          SRC: "{src}"
          DIR: "{dir}"
          DISTCC_FALLBACK: "0"
        script:
          - export DISTCC_DIR="$(mktemp -d)"
          - echo "hosts $DISTCC_HOSTS"
          - cp -R "$SRC"/. .
          - make -j12 CC="distcc gcc"
          - ./prog
          - touch "$DIR/built"
          - while [ ! -e "$DIR/checked" ]; do sleep 0.1; done
"#,
        src = src.display(),
        dir = dir.display(),
    )
}

/// The value of `name` on a distccd statistics page.
fn stat(page: &str, name: &str) -> Option<u64> {
    page.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// distccd's statistics page on `port` (it answers any request with the page and closes,
/// too loosely for an HTTP client: read it raw).
async fn stats_page(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).await.unwrap();
    page
}

/// The command lines of the running `distccd` processes listening on `port`.
fn distccd_cmdlines(port: u16) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let listens = args.windows(2).any(|w| w[0] == "--port" && w[1] == port.to_string());
        if args.first().is_some_and(|a| a.ends_with("distccd")) && listens {
            out.push(args);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_distcc_farm_pool_builds_a_c_project_on_every_daemon_and_goes_away() {
    let test = "a_distcc_farm_pool_builds_a_c_project_on_every_daemon_and_goes_away";
    if peer(test, "/usr/bin/distccd").is_none() || peer(test, "/usr/bin/distcc").is_none() {
        return;
    }
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _agents = three_cities(&s);
    let work = tempfile::tempdir().unwrap();
    let (src, dir) = (work.path().join("src"), work.path().join("signals"));
    std::fs::create_dir_all(&dir).unwrap();
    let prints = c_project(&src, 120).unwrap();
    s.apply("ci", "distcc", &workflow(&src, &dir)).await;
    let run = s.trigger("ci", "distcc", &[]).await;

    // The build has run; the run waits for the test to look at the farm.
    let built = dir.join("built");
    let d = s
        .wait_for(&run.id, "the build done", |d| built.exists() || wait::is_final(&d.run.state))
        .await;
    assert!(built.exists(), "the build failed: {d:#?}\n{:?}", log_text(&s, &run.id, None).await);

    // The pool is a service of the project, owned by the run, found through discovery.
    let services = s.admin.services(Some("ci")).await.unwrap();
    assert_eq!(services.len(), 1, "{services:#?}");
    let pool = &services[0];
    assert_eq!(pool.name, format!("distcc-{}-distcc", run.number));
    let owner = pool.owner.as_ref().expect("owned by the run");
    assert_eq!((owner.run.as_str(), owner.pool.as_str()), (run.id.as_str(), "distcc"));
    assert_eq!(pool.labels["kiln.run"], run.id);
    let healthy: Vec<_> = pool.instances.iter().filter(|i| i.state == "healthy").collect();
    assert_eq!(healthy.len(), 3, "{pool:#?}");
    let nodes: BTreeSet<_> = healthy.iter().map(|i| i.node.clone().unwrap()).collect();
    assert_eq!(nodes.len(), 3, "one daemon per city: {pool:#?}");

    // The job got the farm as DISTCC_HOSTS and the program it built runs.
    let log = log_text(&s, &run.id, Some("build")).await.join("\n");
    for i in &healthy {
        let host = format!("127.0.0.1:{}/2", i.ports["distcc"]);
        assert!(log.contains(&host), "{host} not in DISTCC_HOSTS:\n{log}");
    }
    assert!(log.contains(&prints), "the program printed something else:\n{log}");

    // Every daemon compiled, by its own statistics, and was started with the allowlist.
    let mut compiled = BTreeMap::new();
    for i in &healthy {
        let page = stats_page(i.ports["stats"]).await;
        let ok = stat(&page, "dcc_compile_ok").unwrap_or_else(|| panic!("no counter:\n{page}"));
        compiled.insert(i.node.clone().unwrap(), ok);
        let cmdlines = distccd_cmdlines(i.ports["distcc"]);
        assert!(!cmdlines.is_empty(), "no distccd on port {}", i.ports["distcc"]);
        for args in cmdlines {
            let allowed: Vec<&str> =
                args.windows(2).filter(|w| w[0] == "--allow").map(|w| w[1].as_str()).collect();
            assert_eq!(allowed, ["127.0.0.1/32"], "{args:?}");
        }
    }
    eprintln!("compiles per daemon: {compiled:?}");
    assert!(compiled.values().all(|n| *n > 0), "every daemon compiles: {compiled:?}");
    assert!(
        compiled.values().sum::<u64>() >= 121,
        "every file was compiled remotely (DISTCC_FALLBACK=0): {compiled:?}"
    );

    std::fs::write(dir.join("checked"), "").unwrap();
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    wait::until(
        "the pool deleted",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let left = s.admin.services(Some("ci")).await.unwrap();
            if left.is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await;
    wait::until("the daemons stopped", Duration::from_secs(20), Duration::from_millis(100), || {
        let ports: Vec<u16> = healthy.iter().map(|i| i.ports["distcc"]).collect();
        async move {
            let left: Vec<_> = ports.iter().flat_map(|p| distccd_cmdlines(*p)).collect();
            if left.is_empty() { Ok(()) } else { Err(left) }
        }
    })
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_that_never_gets_ready_fails_the_run_with_its_reason_and_is_deleted() {
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _agents = three_cities(&s);
    let yaml = r#"name: no farm
service-pools:
  farm:
    service:
      command: [sleep, "600"]
      replicas: 2
      constraints: [[city, LIKE, chengdu]]
    timeout: 2s
    export:
      FARM: "{{ instances | length }}"
stages:
  - name: build
    jobs:
      build:
        script: [echo "never here"]
"#;
    s.apply("ci", "nofarm", yaml).await;
    let run = s.trigger("ci", "nofarm", &[]).await;
    // Waiting, the pool is there with its slots unplaced.
    let name = format!("nofarm-{}-farm", run.number);
    wait::until("the pool created", Duration::from_secs(10), Duration::from_millis(50), || async {
        s.admin.service("ci", &name).await.map(|_| ())
    })
    .await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let reason = job(&d, "build").reason.clone().unwrap_or_default();
    eprintln!("the job failed: {reason}");
    for want in [
        "service pool `farm`",
        &format!("(service `{name}`)"),
        "was not ready after 2s: 0 of 2 needed instances healthy",
        "waits for a node",
        "chengdu",
    ] {
        assert!(reason.contains(want), "`{want}` not in the reason: {reason}");
    }
    assert!(d.run.reason.as_deref().unwrap_or("").contains("service pool `farm`"), "{d:#?}");
    let log = log_text(&s, &run.id, Some("build")).await;
    assert!(!log.iter().any(|l| l.contains("never here")), "{log:?}");
    wait::until(
        "the pool deleted",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || async {
            let left = s.admin.services(Some("ci")).await.unwrap();
            if left.is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await;
    s.stop().await;
}
