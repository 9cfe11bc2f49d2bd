//! The web UI in a real headless Chromium (Debian's `chromium` and `chromium-driver`) over
//! WebDriver, against a real server whose agent runs jobs as host processes. Screenshots are
//! kept under `<target>/ui-screenshots/` and checked not to be blank.
//!
//! Without `/usr/bin/chromedriver` these tests pass without running, with a note; with
//! `KILN_REQUIRE_BROWSER=1` (as in `cargo xtask ci`) they fail instead.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{CuttableProxy, TestServer, host};

mod config;
mod contrast;
mod deploys;
mod elastic;
mod environments;
mod live;
mod logview;
mod scans;
mod services;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process and a browser session of it; the process is killed on drop.
struct Browser {
    c: Client,
    driver: Child,
    test: &'static str,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn screenshots_dir() -> PathBuf {
    // `<target>/tmp` is where cargo lets integration tests write; keep the shots beside it.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or returns `None` (with a note) when
    /// they are not installed and not required.
    async fn start(test: &'static str) -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var("KILN_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "{test}: KILN_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing \
                 (apt-get install chromium chromium-driver)"
            );
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "note: {test}: {CHROMEDRIVER} or {CHROMIUM} is missing: the browser test \
                     passes without running (apt-get install chromium chromium-driver)\n"
                )
                .as_bytes(),
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-device-scale-factor=1",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let c = ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session of headless chromium");
        Some(Browser { c, driver, test, _profile: profile })
    }

    /// Runs `script` (a function body) until it returns something truthy; returns that. A
    /// script that throws (what it reads is not on the page yet) is tried again.
    async fn wait(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = match self.c.execute(script, vec![]).await {
                Ok(v) => v,
                Err(e) if e.is_javascript_error() => Value::Null,
                Err(e) => panic!("{}: waiting for {what}: {e}", self.test),
            };
            let ok = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if ok {
                return v;
            }
            if started.elapsed() > Duration::from_secs(45) {
                let shot = self.shot_unchecked("timeout").await;
                let text = self.js("return document.body.innerText").await;
                panic!(
                    "{}: waited 45 s for {what}; screenshot {}; the page said:\n{text}",
                    self.test,
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    async fn shot_unchecked(&self, name: &str) -> PathBuf {
        let png = self.c.screenshot().await.unwrap();
        let path = screenshots_dir().join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, &png).unwrap();
        path
    }

    /// Saves a screenshot and checks it is not blank: many colours, no one colour filling
    /// nearly all of it.
    async fn shot(&self, name: &str) -> PathBuf {
        let path = self.shot_unchecked(name).await;
        let (colours, dominant) = colour_stats(&std::fs::read(&path).unwrap());
        assert!(
            colours >= 16 && dominant < 0.97,
            "{} looks blank: {colours} colours, the commonest covers {:.1}%",
            path.display(),
            dominant * 100.0
        );
        path
    }

    /// Clicks the element `css` names. Pages redraw live (the run graph every second), so an
    /// element found just before a redraw can be stale by the click: it is found again, up to
    /// five times.
    async fn click(&self, css: &str) {
        let mut tries = 0;
        loop {
            let el = self.c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
            match el.click().await {
                Ok(()) => return,
                Err(e) if tries < 5 && e.to_string().contains("stale element") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.c.find(Locator::Css(css)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Presses Tab.
    async fn tab(&self) {
        let tab: char = Key::Tab.into();
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: tab })
            .then(KeyAction::Up { value: tab });
        self.c.perform_actions(keys).await.unwrap();
    }

    async fn sign_in(&self, url: &str, token: &str) {
        self.c.goto(&format!("{url}/")).await.unwrap();
        self.wait("the sign-in form", "return !!document.querySelector('#token')").await;
        self.type_into("#token", token).await;
        self.click("form button[type=submit]").await;
        self.wait("the pipelines page", "return location.pathname === '/' && !!document.querySelector('h1') && document.querySelector('h1').textContent === 'Pipelines'").await;
    }
}

/// Distinct colours (of an RGB(A) 8-bit PNG) and the share of the commonest one.
fn colour_stats(png_bytes: &[u8]) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let mut counts = std::collections::HashMap::new();
    let px = &buf[..info.buffer_size()];
    for p in px.chunks(channels) {
        *counts.entry((p[0], p[1], p[2.min(channels - 1)])).or_insert(0usize) += 1;
    }
    let total = px.len() / channels;
    let max = counts.values().copied().max().unwrap_or(0);
    (counts.len(), max as f64 / total.max(1) as f64)
}

const SHIP: &str = r#"
name: ship
params:
  version: { type: string, default: "1.0", description: Version to build }
  target: { type: choice, options: [staging, prod], default: staging, description: Where to deploy }
stages:
  - name: build
    jobs:
      compile:
        script:
          - printf '\033[32mcompiling\033[0m version %s\n' "${{ params.version }}"
          - mkdir -p out && echo binary > out/app
          - echo '<b>markup</b> stays text'
          - printf '\033[1;31mbold red\033[0m \033[38;5;208morange\033[0m plain\033[K\n'
          - echo "waiting for the go file"
          - while [ ! -f GATE ]; do sleep 0.05; done
          - echo "build done"
        artifacts: { paths: [out/] }
      lint: { script: echo lint ok }
  - name: test
    jobs:
      unit: { needs: [compile], script: echo unit ok }
  - name: approve
    type: approval
    description: Deploy to the target environment?
  - name: deploy
    jobs:
      ship: { script: "echo deploying ${{ params.version }} to ${{ params.target }}" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_trigger_with_params_watch_the_graph_and_a_live_log_then_approve() {
    let s = TestServer::start_with(4).await;
    let gate = s.dir().join("go");
    s.apply("web", "ship", &SHIP.replace("GATE", &gate.display().to_string())).await;
    let Some(b) = Browser::start("main-flow").await else {
        s.stop().await;
        return;
    };

    // Sign in: any page leads there; a wrong token is refused with a message.
    b.c.goto(&format!("{}/p/web/ship", s.url)).await.unwrap();
    b.wait("the sign-in form", "return !!document.querySelector('#token')").await;
    assert_eq!(b.path().await, "/signin");
    b.shot("01-signin").await;
    b.type_into("#token", "kiln_not_a_token").await;
    b.click("form button[type=submit]").await;
    b.wait(
        "the refusal",
        "const e = document.querySelector('.error'); return e && e.textContent.includes('not accepted')",
    )
    .await;
    b.type_into("#token", &s.admin_token).await;
    b.click("form button[type=submit]").await;

    // Back to the page asked for first: the pipeline, with its trigger form.
    b.wait("the trigger form", "return !!document.querySelector('#trigger-form')").await;
    assert_eq!(b.path().await, "/p/web/ship");
    let labels = b.js("return [...document.querySelectorAll('#trigger-form label')].map(l => l.textContent).join('|')").await;
    assert!(labels.as_str().unwrap().contains("version"), "{labels}");
    b.type_into("#param-version", "2.5").await;
    b.c.find(Locator::Css("#param-target")).await.unwrap().select_by_value("prod").await.unwrap();
    b.shot("02-trigger-form").await;
    b.click("#trigger-submit").await;

    // The run page: the graph shows compile running while it waits for the gate file.
    b.wait("the run page", "return location.pathname.startsWith('/runs/')").await;
    let run_id = b.path().await.trim_start_matches("/runs/").to_string();
    b.wait(
        "compile running in the graph",
        "return !!document.querySelector('svg.graph a.node[data-job=\"compile\"][data-state=\"running\"]')",
    )
    .await;
    let graph = b
        .js("return {
            nodes: [...document.querySelectorAll('svg.graph .node')].map(n => n.getAttribute('data-job') || n.getAttribute('data-gate')),
            edges: document.querySelectorAll('svg.graph path.edge').length,
            titles: [...document.querySelectorAll('svg.graph .stage-title')].map(t => t.textContent) }")
        .await;
    assert_eq!(graph["nodes"], json!(["compile", "lint", "unit", "approve", "ship"]), "{graph}");
    assert_eq!(graph["titles"], json!(["build", "test", "approve", "deploy"]), "{graph}");
    // unit needs compile (1), the gate has two jobs before it (unit) and after it (ship): 3.
    assert_eq!(graph["edges"], json!(3), "{graph}");
    b.shot("03-run-running").await;

    // The job's log: a line appears while the job runs, colours rendered.
    b.click("svg.graph a.node[data-job=\"compile\"]").await;
    b.wait("the log page", "return location.pathname.endsWith('/jobs/compile')").await;
    b.wait(
        "the lines before the job waits",
        "return [...document.querySelectorAll('#log .ln')].some(l => l.textContent.includes('waiting for the go file'))",
    )
    .await;
    let first = b.js("return document.querySelector('#L2 .txt').textContent").await;
    assert_eq!(first, json!("compiling version 2.5"), "the param reached the job");
    let d = s.admin.run(&run_id).await.unwrap();
    assert_eq!(d.jobs[0].state, "running", "the line was seen while the job ran");
    let green =
        b.js("const e = document.querySelector('#log .ln:not(.mark-command) .f2'); return e && e.textContent").await;
    assert_eq!(green, json!("compiling"), "ANSI green is a span of class f2");
    assert_eq!(
        b.js("return document.querySelector('#log .ln .num').textContent").await,
        json!("1")
    );
    let markup = b.js("return [!!document.querySelector('#log b'), document.querySelector('#L5 .txt').textContent]").await;
    assert_eq!(markup, json!([false, "<b>markup</b> stays text"]), "log text is never markup");
    let colours = b
        .js("const l = document.querySelector('#L7 .txt'); return [l.textContent,
            l.querySelector('.a-b.f1').textContent, l.querySelector('span[style]').textContent,
            l.querySelector('span[style]').style.color]")
        .await;
    assert_eq!(
        colours,
        json!(["bold red orange plain", "bold red", "orange", "rgb(255, 135, 0)"]),
        "SGR bold, red and 256 colours are spans; other escapes are dropped"
    );
    b.wait(
        "the live status",
        "return document.querySelector('.log-panel .status').dataset.state === 'live'",
    )
    .await;
    b.shot("04-log-live").await;
    std::fs::write(&gate, "go").unwrap();
    b.wait(
        "the last line and the end of the log",
        "return [...document.querySelectorAll('#log .ln')].some(l => l.textContent.includes('build done'))
            && document.querySelector('.log-panel .status').dataset.state === 'ended'",
    )
    .await;
    b.type_into("#log-search", "build").await;
    b.wait(
        "a search hit",
        "return document.querySelector('.log-tools .count').textContent === '1 of 2'",
    )
    .await;
    // The echoed `$ echo build done` and what it printed.
    assert_eq!(b.js("return document.querySelectorAll('#log .ln.hit').length").await, json!(2));
    b.shot("05-log-done").await;

    // Back on the run: it pauses at the approval; approve it from the page.
    b.click(&format!(".crumbs a[href=\"/runs/{run_id}\"]")).await;
    b.wait("the approve button", "return !!document.querySelector('#approve')").await;
    let banner = b.js("return document.querySelector('.approval').textContent").await;
    assert!(banner.as_str().unwrap().contains("Deploy to the target environment?"), "{banner}");
    b.shot("06-paused").await;
    b.click("#approve").await;
    b.wait(
        "the run to succeed on the page",
        "return !!document.querySelector('.head .badge[data-state=\"success\"]')
            && !!document.querySelector('svg.graph a.node[data-job=\"ship\"][data-state=\"success\"]')",
    )
    .await;
    b.wait("the artifact", "return [...document.querySelectorAll('section[aria-label=Artifacts] td')].some(t => t.textContent === 'compile')").await;
    b.shot("07-success").await;

    let d = s.admin.run(&run_id).await.unwrap();
    assert_eq!(d.run.state, "success");
    assert_eq!(d.params["version"], json!("2.5"));
    assert_eq!(d.params["target"], json!("prod"));
    let gate = d.stages.iter().find(|st| st.name == "approve").unwrap();
    assert_eq!(
        gate.decision.as_ref().map(|a| (a.decision.as_str(), a.by.as_str())),
        Some(("approved", "admin"))
    );
    let ship = s.admin.logs(&run_id, Some("ship"), None, 1, 100).await.unwrap();
    assert!(ship.lines.iter().any(|l| l.text == "deploying 2.5 to prod"), "{ship:?}");

    // The pipelines page now shows the run's state and its duration plot.
    b.click("#nav a[data-nav=pipelines]").await;
    b.wait(
        "the last run's state",
        "return !!document.querySelector('tr[data-pipeline=\"web/ship\"] .badge[data-state=\"success\"]')
            && !!document.querySelector('svg.plot circle')",
    )
    .await;
    b.shot("08-pipelines").await;
    b.c.clone().close().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_retry_errors_that_say_what_failed_missing_apis_keyboard_and_a_phone_width() {
    let s = TestServer::start_with(1).await;
    s.apply(
        "web",
        "quick",
        "name: quick\nstages:\n  - name: b\n    jobs:\n      hello: { script: \"echo hello\" }\n",
    )
    .await;
    let run = s.admin.trigger("web", "quick", &Default::default()).await.unwrap();
    s.wait_for(&run.id, "success", |d| d.run.state == "success").await;
    let Some(b) = Browser::start("checks").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;

    // Keyboard: the first Tab lands on the skip link; focus is visible.
    b.c.goto(&format!("{}/", s.url)).await.unwrap();
    b.wait("the pipelines", "return !!document.querySelector('tr[data-pipeline=\"web/quick\"]')")
        .await;
    b.tab().await;
    assert_eq!(b.js("return document.activeElement.className").await, json!("skip"));
    b.tab().await;
    let focused = b.js("return document.activeElement.getAttribute('aria-label')").await;
    assert_eq!(focused, json!("Kiln home"));
    let outline = b.js("return getComputedStyle(document.activeElement).outlineStyle").await;
    assert_eq!(outline, json!("solid"), "focus is visible");

    // A run that does not exist: the page says which call failed and what the server said.
    b.c.goto(&format!("{}/runs/0190f0a1-aaaa-7bbb-8ccc-000000000001", s.url)).await.unwrap();
    let err = b
        .wait("the error", "const e = document.querySelector('.error'); return e && e.textContent")
        .await;
    let err = err.as_str().unwrap();
    assert!(
        err.contains("GET /runs/0190f0a1-aaaa-7bbb-8ccc-000000000001 answered 404 not_found"),
        "{err}"
    );
    b.shot("error").await;

    // One slot, taken by a long job: the next run's job waits.
    s.apply("web", "slow", "name: slow\nstages:\n  - name: b\n    jobs:\n      wait: { script: \"echo waiting; sleep 30\" }\n").await;
    let slow = s.admin.trigger("web", "slow", &Default::default()).await.unwrap();
    s.wait_for(&slow.id, "its job running", |d| d.jobs[0].state == "running").await;
    let second = s.admin.trigger("web", "slow", &Default::default()).await.unwrap();
    s.wait_for(&second.id, "its job queued", |d| d.jobs[0].state == "queued").await;
    // A server without a registry (`GET /v2/` answers 404, as older ones do) says so. Stand-in:
    // the page's fetch of `/v2/` is answered 404 in the browser; every other call reaches the
    // server. The pool page lists the node and the waiting job with the server's reason.
    b.c.goto(&format!("{}/", s.url)).await.unwrap();
    b.wait("the pipelines", "return !!document.querySelector('tr[data-pipeline]')").await;
    b.js("const f = window.fetch;
          window.fetch = (u, o) => String(u) === '/v2/'
            ? Promise.resolve(new Response('{}', { status: 404 })) : f(u, o);
          return true")
        .await;
    b.click("#nav a[data-nav=registry]").await;
    b.wait("the registry notice", "return !!document.querySelector('[data-unavailable=registry]')")
        .await;
    assert_eq!(b.js("return document.querySelectorAll('table.repos').length").await, json!(0));
    b.c.goto(&format!("{}/pool", s.url)).await.unwrap();
    b.wait(
        "the embedded node",
        "return !!document.querySelector('tr[data-node=embedded][data-state=ready]')
            && !document.querySelector('[data-unavailable=pool]')",
    )
    .await;
    let why = b
        .wait(
            "the waiting job",
            "const r = document.querySelector('tr[data-waiting=\"slow#2/wait\"] td.why'); return r && r.textContent",
        )
        .await;
    let reason = s.admin.run(&second.id).await.unwrap().jobs[0].waiting.clone().unwrap();
    assert_eq!(why, json!(format!("waits for a node: {reason}")), "the server's reason");
    b.c.goto(&format!("{}/pool", s.url)).await.unwrap();
    b.wait("the nodes table", "return !!document.querySelector('table.nodes')").await;
    b.wait(
        "the queue plot",
        "return !!document.querySelector('svg.plot polyline, svg.plot circle')",
    )
    .await;
    b.shot("pool").await;

    // Cancel the running run from its page (after confirming), then retry it.
    b.c.goto(&format!("{}/runs/{}", s.url, slow.id)).await.unwrap();
    b.wait(
        "the running job",
        "return !!document.querySelector('svg.graph a.node[data-state=running]')",
    )
    .await;
    b.click("#cancel-run").await;
    assert!(b.c.get_alert_text().await.unwrap().contains("Cancel slow #1"));
    b.c.accept_alert().await.unwrap();
    b.wait("the canceled run", "return !!document.querySelector('.head .badge[data-state=canceled]') && !!document.querySelector('#retry-run')").await;
    assert_eq!(s.admin.run(&slow.id).await.unwrap().run.state, "canceled");
    b.shot("canceled").await;
    b.click("#retry-run").await;
    let retry_path = format!("/runs/{}", slow.id);
    b.wait("the retry's page", &format!("return location.pathname.startsWith('/runs/') && location.pathname !== '{retry_path}' && !!document.querySelector('.head h1')")).await;
    let retry_id = b.path().await.trim_start_matches("/runs/").to_string();
    let retry = s.admin.run(&retry_id).await.unwrap();
    assert_eq!((retry.run.number, retry.run.retry_of.as_deref()), (3, Some(slow.id.as_str())));
    b.wait(
        "the retry's heading",
        "return document.querySelector('.head h1').textContent === 'slow #3'",
    )
    .await;
    s.admin.cancel(&retry_id).await.unwrap();
    s.admin.cancel(&second.id).await.unwrap();

    // A pipeline started only by its triggers shows them instead of a trigger form.
    s.apply("web", "nightly", "name: nightly\non:\n  schedule: { cron: \"0 2 * * *\" }\n  api: false\nstages:\n  - name: s\n    jobs:\n      a: { script: echo }\n").await;
    b.c.goto(&format!("{}/p/web/nightly", s.url)).await.unwrap();
    let listed = b
        .wait("the triggers", "const p = document.querySelector('#trigger[data-manual=off]'); return p && p.textContent")
        .await;
    assert!(listed.as_str().unwrap().contains("schedule \"0 2 * * *\" in UTC"), "{listed}");
    assert_eq!(b.js("return document.querySelectorAll('#trigger-form').length").await, json!(0));

    // Reject a paused stage: the run ends canceled, saying who rejected it.
    s.apply("web", "gated", "name: gated\nstages:\n  - name: build\n    jobs:\n      build: { script: echo built }\n  - name: approve\n    type: approval\n  - name: deploy\n    jobs:\n      deploy: { script: echo deployed }\n").await;
    let gated = s.admin.trigger("web", "gated", &Default::default()).await.unwrap();
    b.c.goto(&format!("{}/runs/{}", s.url, gated.id)).await.unwrap();
    b.wait("the reject button", "return !!document.querySelector('#reject')").await;
    b.click("#reject").await;
    b.c.accept_alert().await.unwrap();
    let head = b
        .wait(
            "the rejected run",
            "return document.querySelector('.head .badge[data-state=canceled]') && document.querySelector('.meta').textContent",
        )
        .await;
    assert!(head.as_str().unwrap().contains("rejected by admin"), "{head}");
    b.wait("the gate shown rejected", "return !!document.querySelector('svg.graph g.node[data-gate=approve][data-state=rejected]')").await;
    assert_eq!(s.admin.run(&gated.id).await.unwrap().run.state, "canceled");

    // A phone: the log page and the run page fit 390 px without scrolling sideways (the graph scrolls in its box).
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.goto(&format!("{}/runs/{}", s.url, run.id)).await.unwrap();
    b.wait("the graph", "return !!document.querySelector('svg.graph a.node[data-state=success]')")
        .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let (inner, scroll) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
    assert!(inner <= 400, "the window is phone-sized: {widths}");
    assert!(scroll <= inner, "nothing sticks out sideways at {inner} px: {scroll}");
    b.shot("phone-run").await;
    b.c.goto(&format!("{}/runs/{}/jobs/hello", s.url, run.id)).await.unwrap();
    b.wait(
        "the log",
        "return document.querySelector('.log-panel .status').dataset.state === 'ended'",
    )
    .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    assert!(widths[1].as_u64() <= widths[0].as_u64(), "the log fits: {widths}");
    b.shot("phone-log").await;
    b.c.goto(&format!("{}/", s.url)).await.unwrap();
    b.wait("the pipelines", "return !!document.querySelector('tr[data-pipeline=\"web/quick\"]')")
        .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    assert!(widths[1].as_u64() <= widths[0].as_u64(), "pipelines fit: {widths}");
    b.shot("phone-pipelines").await;
    b.c.clone().close().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_log_resumes_after_a_dropped_connection_without_losing_or_repeating_lines() {
    let s = TestServer::start_with(1).await;
    let one = s.dir().join("one");
    let two = s.dir().join("two");
    let yaml = format!(
        "name: drip\nstages:\n  - name: b\n    jobs:\n      drip:\n        script:\n          - echo first\n          - while [ ! -f {one} ]; do sleep 0.05; done\n          - echo second\n          - while [ ! -f {two} ]; do sleep 0.05; done\n          - echo third\n",
        one = one.display(),
        two = two.display()
    );
    s.apply("web", "drip", &yaml).await;
    let run = s.admin.trigger("web", "drip", &Default::default()).await.unwrap();
    let proxy = CuttableProxy::start(s.server.as_ref().unwrap().addr).await;
    let Some(b) = Browser::start("resume").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&proxy.url, &s.admin_token).await;
    b.c.goto(&format!("{}/runs/{}/jobs/drip", proxy.url, run.id)).await.unwrap();
    b.wait(
        "the first line, live",
        "return document.querySelectorAll('#log .ln').length === 3
            && document.querySelector('.log-panel .status').dataset.state === 'live'",
    )
    .await;

    // The network drops; the job writes a line meanwhile.
    proxy.cut();
    std::fs::write(&one, "").unwrap();
    // (Each script line is echoed before it runs: `first` is line 2, after `$ echo first`.)
    b.wait("the second line", "return document.querySelectorAll('#log .ln').length >= 6").await;
    std::fs::write(&two, "").unwrap();
    b.wait(
        "the end of the log",
        "return document.querySelector('.log-panel .status').dataset.state === 'ended'",
    )
    .await;
    let rows = b
        .js("return [...document.querySelectorAll('#log .ln:not(.mark-command)')].map(l => l.dataset.seq + ' ' + l.querySelector('.txt').textContent)")
        .await;
    assert_eq!(rows, json!(["2 first", "5 second", "8 third"]), "no line lost or repeated");
    let resumed = proxy.requests.lock().unwrap().iter().any(|r| {
        r.contains("/logs/stream") && r.to_ascii_lowercase().contains("last-event-id: 3\r\n")
    });
    assert!(resumed, "the stream was asked again from after line 3");
    b.c.clone().close().await.unwrap();
    drop(proxy);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_page_shows_nodes_with_attributes_offers_as_bars_and_why_a_job_waits() {
    use kiln_api::pool::AttrValue;
    let s = TestServer::start_with(0).await;
    let text = |v: &str| AttrValue::Text(v.into());
    let _sz_agent = s.agent(
        "sz-build-01",
        2,
        host(
            "10.1.2.3",
            4,
            &[
                ("city", text("shenzhen")),
                ("cores", AttrValue::Number(32.0)),
                ("zones", AttrValue::Set(vec!["gz".into(), "sz".into()])),
            ],
        ),
    );
    let gz_agent = s.agent("gz-build-02", 1, host("10.1.2.4", 8, &[("city", text("guangzhou"))]));
    let started = Instant::now();
    while s.admin.nodes().await.unwrap().iter().filter(|n| n.state == "ready").count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "the two agents never registered");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // One job holds 3 CPUs and 4 GiB until told to end (only sz-build-01's 4 or gz-build-02's
    // 8 CPUs take it); another asks for 64 CPUs, which no node has.
    let gate = s.dir().join("gate");
    let yaml = format!(
        "name: crunch\nstages:\n  - name: b\n    jobs:\n      hold:\n        resources: {{ cpu: 3, memory: 4Gi }}\n        script: \"while [ ! -f {g} ]; do sleep 0.05; done\"\n      huge:\n        resources: {{ cpu: 64 }}\n        script: echo never\n",
        g = gate.display()
    );
    s.apply("web", "crunch", &yaml).await;
    let run = s.admin.trigger("web", "crunch", &Default::default()).await.unwrap();
    let d = s
        .wait_for(&run.id, "hold running and huge waiting", |d| {
            d.jobs.iter().any(|j| j.id == "hold" && j.state == "running")
                && d.jobs.iter().any(|j| j.id == "huge" && j.waiting.is_some())
        })
        .await;
    let reason = d.jobs.iter().find(|j| j.id == "huge").unwrap().waiting.clone().unwrap();
    assert!(reason.contains("64 CPUs asked"), "{reason}");
    let holder = s
        .admin
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.running == 1)
        .expect("a node runs hold")
        .name;

    let Some(b) = Browser::start("pool").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;
    b.c.goto(&format!("{}/pool", s.url)).await.unwrap();
    b.wait(
        "the nodes table",
        "return document.querySelectorAll('table.nodes tr[data-node][data-state=ready]').length === 2",
    )
    .await;

    // One column per attribute, as `kiln nodes` prints them; states in the state colours.
    let heads = b
        .js("return [...document.querySelectorAll('table.nodes th.attr')].map(t => t.textContent)")
        .await;
    assert_eq!(heads, json!(["city", "cores", "zones"]));
    let row = |node: &str| {
        format!(
            "return [...document.querySelectorAll('table.nodes tr[data-node=\"{node}\"] td')].map(t => t.textContent)"
        )
    };
    let sz = b.js(&row("sz-build-01")).await;
    let sz: Vec<&str> = sz.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(
        &sz[..6],
        ["1", "sz-build-01process", "10.1.2.3", "host-3", "ready", "no"],
        "{sz:?}"
    );
    assert_eq!(&sz[7..10], ["shenzhen", "32", "{gz,sz}"], "{sz:?}");
    let gz = b.js(&row("gz-build-02")).await;
    assert_eq!(gz[9], json!("–"), "gz-build-02 has no zones: {gz}");
    let colour = b
        .js("return getComputedStyle(document.querySelector('tr[data-node=\"sz-build-01\"] .badge[data-state=ready]')).color")
        .await;
    assert_eq!(colour, json!("rgb(26, 127, 55)"), "ready is the success green");

    // Offers: CPU, memory and disk bars, used of all, with free slots and ports.
    let cpu = b
        .wait(
            "the holder's CPU bar",
            &format!(
                "const r = document.querySelector('[data-offer=\"{holder}\"] [data-res=CPU]');
                 const s = r && r.querySelector('.bar > span');
                 return r && s && s.style.width && [r.dataset.used, r.dataset.total, s.style.width, r.textContent]"
            ),
        )
        .await;
    let total = if holder == "sz-build-01" { 4 } else { 8 };
    assert_eq!(cpu[0], json!("3000"), "{cpu}");
    assert_eq!(cpu[1], json!((total * 1000).to_string()), "{cpu}");
    assert_eq!(cpu[2], json!(format!("{}%", (300.0 / total as f64).round())), "{cpu}");
    assert!(cpu[3].as_str().unwrap().contains(&format!("3 of {total} CPUs in use")), "{cpu}");
    let mem = b
        .js(&format!(
            "return document.querySelector('[data-offer=\"{holder}\"] [data-res=Memory]').textContent"
        ))
        .await;
    assert!(mem.as_str().unwrap().contains("4.0 GiB of 16 GiB in use"), "{mem}");
    let foot = b
        .js("return [...document.querySelectorAll('[data-offer=\"sz-build-01\"] .offer-foot b')].map(t => t.textContent)")
        .await;
    let slots = if holder == "sz-build-01" { "1 of 2" } else { "2 of 2" };
    assert_eq!(foot, json!([slots, "31000–31099"]));

    // The waiting job, with the server's reason.
    let why = b
        .wait(
            "the waiting job",
            "const r = document.querySelector('tr[data-waiting=\"crunch#1/huge\"] td.why'); return r && r.textContent",
        )
        .await;
    assert_eq!(why, json!(format!("waits for a node: {reason}")));
    b.shot("1280").await;

    // Disable gz-build-02 from the page, after confirming.
    b.click("tr[data-node=\"gz-build-02\"] button[data-action=disable]").await;
    let ask = b.c.get_alert_text().await.unwrap();
    assert!(ask.contains("Disable node gz-build-02?"), "{ask}");
    b.c.accept_alert().await.unwrap();
    b.wait(
        "gz-build-02 shown disabled",
        "return !!document.querySelector('tr[data-node=\"gz-build-02\"][data-disabled=true] .badge[data-state=disabled]')
            && !!document.querySelector('tr[data-node=\"gz-build-02\"] button[data-action=enable]')",
    )
    .await;
    let nodes = s.admin.nodes().await.unwrap();
    assert!(nodes.iter().find(|n| n.name == "gz-build-02").unwrap().disabled, "{nodes:?}");
    assert!(!nodes.iter().find(|n| n.name == "sz-build-01").unwrap().disabled);
    let none = b
        .js("return document.querySelector('[data-offer=\"gz-build-02\"] .offer-head').textContent")
        .await;
    assert!(none.as_str().unwrap().contains("disabled: offers nothing"), "{none}");
    // The waiting reason follows: one node is now disabled.
    let why = b
        .wait(
            "the reason naming the disabled node",
            "const r = document.querySelector('tr[data-waiting=\"crunch#1/huge\"] td.why');
             return r && r.textContent.includes('disabled') && r.textContent",
        )
        .await;
    let d = s.admin.run(&run.id).await.unwrap();
    let huge = d.jobs.iter().position(|j| j.id == "huge").unwrap();
    let reason = d.jobs[huge].waiting.clone().unwrap();
    assert_eq!(why, json!(format!("waits for a node: {reason}")));

    // Set an attribute on sz-build-01 (a number), then unset it; a bad name shows the API's error.
    b.js("document.querySelector('#attr-node').value = 'sz-build-01'").await;
    b.type_into("#attr-key", "rack").await;
    b.type_into("#attr-value", "3").await;
    b.click("#attr-set").await;
    b.wait(
        "the rack column",
        "const c = document.querySelector('tr[data-node=\"sz-build-01\"] td.attr.op[data-attr=rack]'); return c && c.textContent === '3'",
    )
    .await;
    let sz = s.admin.nodes().await.unwrap().into_iter().find(|n| n.name == "sz-build-01").unwrap();
    assert_eq!(sz.operator_attributes.get("rack"), Some(&AttrValue::Number(3.0)));
    b.shot("attributes").await;
    b.click("#attr-unset").await;
    b.wait("the rack column gone", "return !document.querySelector('th.attr[data-attr=rack]')")
        .await;
    assert!(s.admin.nodes().await.unwrap().iter().all(|n| !n.attributes.contains_key("rack")));
    b.type_into("#attr-key", "9lives").await;
    b.type_into("#attr-value", "x").await;
    b.click("#attr-set").await;
    let err = b
        .wait("the error", "const e = document.querySelector('.error'); return e && e.textContent")
        .await;
    let err = err.as_str().unwrap();
    assert!(
        err.contains("Set failed")
            && err.contains("PATCH /nodes/sz-build-01 answered 400")
            && err.contains("9lives"),
        "{err}"
    );

    // The run page: the queued job says why it waits, in the table and on its graph node.
    b.c.goto(&format!("{}/runs/{}", s.url, run.id)).await.unwrap();
    let node = b
        .wait(
            "the waiting node",
            "const n = document.querySelector('svg.graph a.node[data-job=huge]');
             return n && [n.querySelector('title').textContent, n.querySelector('text.sub').textContent]",
        )
        .await;
    assert_eq!(node[0], json!(format!("job huge: queued; waits for a node: {reason}")));
    assert!(node[1].as_str().unwrap().starts_with("waits: "), "{node}");
    let note = b
        .js("return [...document.querySelectorAll('section[aria-label=Jobs] td.note')].map(t => t.textContent)")
        .await;
    assert_eq!(note[huge], json!(format!("waits for a node: {reason}")), "{note}");
    b.shot("run-waiting").await;

    // gz-build-02's agent stops (it says goodbye): its node goes down, in the grey of canceled.
    gz_agent.stop().await;
    b.c.goto(&format!("{}/pool", s.url)).await.unwrap();
    let colour = b
        .wait(
            "gz-build-02 down",
            "const e = document.querySelector('tr[data-node=\"gz-build-02\"][data-state=down] .badge[data-state=down]');
             return e && getComputedStyle(e).color",
        )
        .await;
    assert_eq!(colour, json!("rgb(75, 83, 93)"), "down is the canceled grey");
    let gz = s.admin.nodes().await.unwrap().into_iter().find(|n| n.name == "gz-build-02").unwrap();
    assert_eq!((gz.state.as_str(), gz.disabled), ("down", true));

    // A phone: the pool page fits (its tables scroll in their boxes).
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.goto(&format!("{}/pool", s.url)).await.unwrap();
    b.wait(
        "the nodes",
        "return document.querySelectorAll('table.nodes tr[data-node]').length === 2",
    )
    .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let shot = b.shot("phone").await;
    let wide = b
        .js("return [...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.scroll')).map(e => e.tagName + '.' + e.className).slice(0, 5)")
        .await;
    assert!(
        widths[1].as_u64() <= widths[0].as_u64(),
        "the pool fits: {widths}; sticking out: {wide}; see {}",
        shot.display()
    );

    // A developer sees the pool but cannot change it: no buttons, no attribute form.
    let dev = s
        .admin
        .create_token(&kiln_api::CreateToken {
            name: "dev".into(),
            role: "developer".into(),
            project: None,
        })
        .await
        .unwrap();
    b.click(".who button").await;
    b.sign_in(&s.url, &dev.secret).await;
    b.c.goto(&format!("{}/pool", s.url)).await.unwrap();
    b.wait(
        "the nodes",
        "return document.querySelectorAll('table.nodes tr[data-node]').length === 2",
    )
    .await;
    let controls = b
        .js("return document.querySelectorAll('button.node-toggle, #attr-node, #attr-set').length")
        .await;
    assert_eq!(controls, json!(0), "only admins change nodes");

    s.admin.cancel(&run.id).await.unwrap();
    std::fs::write(&gate, "").unwrap();
    b.c.clone().close().await.unwrap();
    s.stop().await;
}

/// Pushes a one-layer image to `repo:tag` through the distribution API (monolithic blob
/// uploads, then the manifest), with basic auth and a Kiln token as the password, as `docker
/// login` would. Returns the manifest's digest and the image's size (config and layer).
pub(crate) async fn push_image(
    url: &str,
    token: &str,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> (String, u64) {
    use sha2::Digest;
    let http = reqwest::Client::new();
    let digest = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
    for blob in [config.as_bytes(), layer] {
        let resp = http
            .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={}", digest(blob)))
            .basic_auth("kiln", Some(token))
            .header("Content-Type", "application/octet-stream")
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "push a blob: {}", resp.text().await.unwrap());
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": layer.len()}],
    }))
    .unwrap();
    let resp = http
        .put(format!("{url}/v2/{repo}/manifests/{tag}"))
        .basic_auth("kiln", Some(token))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "push the manifest: {}", resp.text().await.unwrap());
    (digest(&manifest), (config.len() + layer.len()) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_registry_page_lists_repositories_tags_with_digests_sizes_pull_commands_and_pushes() {
    let s = TestServer::start_with(0).await;
    s.admin.create_project("team").await.unwrap();
    let pusher = s
        .admin
        .create_token(&kiln_api::CreateToken {
            name: "laptop".into(),
            role: "developer".into(),
            project: Some("team".into()),
        })
        .await
        .unwrap();
    let layer = vec![7u8; 3 * 1024 + 17];
    let (d1, size) = push_image(&s.url, &pusher.secret, "team/app", "1.0", &layer).await;
    let (d2, _) =
        push_image(&s.url, &pusher.secret, "team/app", "latest", b"a small second layer").await;
    push_image(&s.url, &pusher.secret, "team/tools/lint", "v2", b"lint").await;

    let Some(b) = Browser::start("registry").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;
    b.click("#nav a[data-nav=registry]").await;
    b.wait(
        "the repositories",
        "return document.querySelectorAll('table.repos tr[data-repo]').length === 2",
    )
    .await;
    let rows = b
        .js("return [...document.querySelectorAll('table.repos tr[data-repo]')].map(r => [...r.querySelectorAll('td')].slice(0, 3).map(t => t.textContent))")
        .await;
    assert_eq!(
        rows,
        json!([["team/app", "team", "private"], ["team/tools/lint", "team", "private"]])
    );
    // The pushes, newest first, with who pushed.
    b.wait(
        "the pushes",
        "return document.querySelectorAll('table.events tr[data-event]').length === 3",
    )
    .await;
    let pushes = b
        .js("return [...document.querySelectorAll('table.events tr[data-event]')].map(r => [r.querySelector('td').textContent, r.querySelector('.tag').textContent, r.querySelector('.digest').title, r.querySelector('.actor').textContent])")
        .await;
    assert_eq!(pushes[1], json!(["team/app", "latest", d2, "laptop"]));
    assert_eq!(pushes[2], json!(["team/app", "1.0", d1, "laptop"]));
    b.shot("repositories").await;

    // The repository: its tags, short digests with the full one in the tooltip, the image's
    // size from its manifest, when and by whom it was pushed, the pull command.
    b.click("tr[data-repo=\"team/app\"] a").await;
    b.wait("the tags", "return document.querySelectorAll('table.tags tr[data-tag]').length === 2")
        .await;
    assert_eq!(b.path().await, "/registry/team/app");
    let row = b
        .wait(
            "the size of 1.0",
            "const r = document.querySelector('tr[data-tag=\"1.0\"]'); const z = r && r.querySelector('.size [data-bytes]');
             return z && { digest: r.querySelector('.digest').textContent, full: r.querySelector('.digest').title,
               bytes: z.dataset.bytes, size: z.textContent, pushed: r.querySelectorAll('td')[3].textContent,
               pull: r.querySelector('.pull-cmd').textContent }",
        )
        .await;
    let host = s.url.trim_start_matches("http://");
    assert_eq!(row["full"], json!(d1));
    assert_eq!(row["digest"], json!(format!("sha256:{}", &d1[7..19])));
    assert_eq!(row["bytes"], json!(size.to_string()));
    assert_eq!(row["size"], json!("3.1 KiB"));
    assert!(row["pushed"].as_str().unwrap().ends_with(" by laptop"), "{row}");
    assert_eq!(row["pull"], json!(format!("docker pull {host}/team/app:1.0")));
    assert_eq!(
        b.js("return document.querySelectorAll('section[aria-label=\"Recent pushes\"] tr[data-event]').length").await,
        json!(2),
        "only this repository's pushes"
    );

    // Copy: the command lands in the clipboard (what the browser's clipboard accepted is
    // recorded: a headless browser will not let a script read it back), or, where the
    // browser refuses, is selected for Ctrl+C (the refusal is a stand-in made in the page).
    let cmd = json!(format!("docker pull {host}/team/app:1.0"));
    b.js("const w = navigator.clipboard.writeText.bind(navigator.clipboard);
          navigator.clipboard.writeText = (t) => w(t).then(() => { window.copied = t; });
          return true")
        .await;
    b.click("tr[data-tag=\"1.0\"] button.copy").await;
    b.wait(
        "the copy toast",
        "return /^(Copied|Selected)/.test(document.getElementById('toast').textContent)",
    )
    .await;
    let copied = b.js("return [window.copied || null, String(window.getSelection())]").await;
    assert!(copied[0] == cmd || copied[1] == cmd, "neither copied nor selected: {copied}");
    b.js("navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));
          document.execCommand = () => false; window.getSelection().removeAllRanges();
          document.getElementById('toast').textContent = ''; return true")
        .await;
    b.click("tr[data-tag=\"1.0\"] button.copy").await;
    b.wait(
        "the select toast",
        "return document.getElementById('toast').textContent.startsWith('Selected')",
    )
    .await;
    assert_eq!(b.js("return String(window.getSelection())").await, cmd, "the command is selected");
    b.shot("repository").await;

    // Admins make it public, and private again (checked over the API).
    b.click("#visibility").await;
    b.wait("public", "return !!document.querySelector('.meta [data-visibility=public]') && document.querySelector('#visibility').dataset.public === 'true'").await;
    let public = |list: Vec<kiln_api::RegistryRepository>| {
        list.into_iter().find(|r| r.name == "team/app").unwrap().public
    };
    assert!(public(s.admin.registry_repositories().await.unwrap()));
    b.click("#visibility").await;
    b.wait("private", "return document.querySelector('#visibility').dataset.public === 'false'")
        .await;
    assert!(!public(s.admin.registry_repositories().await.unwrap()));

    // A phone: the tags fit (the table scrolls in its box).
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.refresh().await.unwrap();
    b.wait("the tags", "return document.querySelectorAll('table.tags tr[data-tag]').length === 2")
        .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let shot = b.shot("phone").await;
    assert!(
        widths[1].as_u64() <= widths[0].as_u64(),
        "the page fits: {widths}; see {}",
        shot.display()
    );
    let copy = b
        .js("const r = document.querySelector('tr[data-tag=\"1.0\"] button.copy').getBoundingClientRect(); return r.right <= window.innerWidth && r.width > 0")
        .await;
    assert_eq!(copy, json!(true), "the copy button is in view on a phone; see {}", shot.display());

    b.c.goto(&format!("{}/registry", s.url)).await.unwrap();
    b.wait(
        "the pushes",
        "return document.querySelectorAll('table.events tr[data-event]').length === 3",
    )
    .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let shot = b.shot("phone-repositories").await;
    assert!(
        widths[1].as_u64() <= widths[0].as_u64(),
        "the list fits: {widths}; see {}",
        shot.display()
    );

    // A repository that does not exist: the page says which call failed.
    b.c.goto(&format!("{}/registry/team/nope", s.url)).await.unwrap();
    let err = b
        .wait("the error", "const e = document.querySelector('.error'); return e && e.textContent")
        .await;
    assert!(err.as_str().unwrap().contains("answered 404 not_found"), "{err}");

    // A developer sees the repositories but no visibility toggle.
    b.click(".who button").await;
    b.sign_in(&s.url, &pusher.secret).await;
    b.c.goto(&format!("{}/registry/team/app", s.url)).await.unwrap();
    b.wait("the tags", "return document.querySelectorAll('table.tags tr[data-tag]').length === 2")
        .await;
    assert_eq!(b.js("return document.querySelectorAll('#visibility').length").await, json!(0));

    b.c.clone().close().await.unwrap();
    s.stop().await;
}
