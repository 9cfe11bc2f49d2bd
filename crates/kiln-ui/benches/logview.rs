//! The job log page on a large log, in a real headless Chromium, beside the floor of the
//! same browser showing the same lines as one plain page (the raw download opened as a
//! `file://` text file: one `<pre>`).
//!
//! A real server (the test kit's, with its agent on the process executor) runs a job that
//! prints `KILN_BENCH_LINES` lines (default 1,000,000; `seq`-numbered build-like lines of
//! about 70 bytes). Then, each in a fresh browser:
//! - **viewer, tail**: the log page opened without a link (at its end, following);
//! - **viewer, link**: the page opened at `#L<middle>`;
//! - **floor**: the raw log as a text file.
//!
//! Figures per page: time from navigation start to the first screen of log lines painted (the
//! viewer's `kiln-log-painted` mark; the floor's first contentful paint, and its load end, after
//! which its last lines can be shown), elements in the DOM, the JS heap, and the browser's
//! memory growth (PSS of chromedriver's process tree, from `about:blank` to the page shown).
//! Ratios viewer/floor are printed side by side; the viewer's figures are the median round of
//! `KILN_BENCH_ROUNDS` (3). Needs `/usr/bin/chromium` and
//! `/usr/bin/chromedriver` (`cargo xtask bench logview` installs them).
//!
//! Run: `cargo xtask bench logview`, or `cargo bench -p kiln-ui --bench logview`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use kiln_testkit::TestServer;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver, its headless Chromium session and profile; the driver is killed on drop.
struct Browser {
    c: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
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
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,800",
                    "--enable-precise-memory-info", "--allow-file-access-from-files",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let c = ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session of headless chromium");
        c.goto("about:blank").await.unwrap();
        Browser { c, driver, _profile: profile }
    }

    async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    /// Runs `script` until it returns something truthy (at most 10 minutes).
    async fn wait(&self, what: &str, script: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(script).await;
            if !matches!(v, Value::Null | Value::Bool(false)) {
                return v;
            }
            assert!(started.elapsed() < Duration::from_secs(600), "waited 10 min for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// PSS in KiB of chromedriver and every process under it (the browser, its renderers).
    fn pss_kib(&self) -> u64 {
        let mut parent = std::collections::HashMap::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            if let Some(ppid) = after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) {
                parent.insert(pid, ppid);
            }
        }
        let root = self.driver.id();
        let under = |mut pid: u32| loop {
            if pid == root {
                return true;
            }
            match parent.get(&pid) {
                Some(&p) if p > 1 => pid = p,
                _ => return false,
            }
        };
        let mut total = 0;
        for &pid in parent.keys().filter(|&&p| under(p)) {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
                continue;
            };
            for line in text.lines().filter(|l| l.starts_with("Pss:")) {
                total +=
                    line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        total
    }
}

/// What one page cost.
#[derive(Debug)]
struct Figures {
    /// Navigation start to the first screen of lines painted, ms.
    first_ms: f64,
    /// Navigation start to the page loaded (for the floor: all of the text), ms.
    load_ms: f64,
    elements: u64,
    heap_mib: f64,
    browser_mib: f64,
}

async fn settle(b: &Browser) {
    // Two frames and a little idle time, so memory reflects the page shown, not one in flight.
    b.js("return true").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
}

async fn signed_in(url: &str, token: &str) -> Browser {
    let b = Browser::start().await;
    b.c.goto(&format!("{url}/signin")).await.unwrap();
    b.js(&format!("sessionStorage.setItem('kiln.token', {}); return true", json!(token))).await;
    b.c.goto("about:blank").await.unwrap();
    b
}

async fn viewer(url: &str, token: &str, path: &str, seq: u64) -> Figures {
    let b = signed_in(url, token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = b.pss_kib();
    b.c.goto(&format!("{url}{path}")).await.unwrap();
    let first = b
        .wait(
            "the first screen of lines",
            &format!(
                "const m = performance.getEntriesByName('kiln-log-painted')[0];
                 const e = document.getElementById('L{seq}');
                 return m && e && !e.classList.contains('loading') ? m.startTime : null"
            ),
        )
        .await;
    settle(&b).await;
    let v = b
        .js("const n = performance.getEntriesByType('navigation')[0];
             return [n.loadEventEnd, document.getElementsByTagName('*').length,
                     performance.memory ? performance.memory.usedJSHeapSize : 0]")
        .await;
    let after = b.pss_kib();
    let f = Figures {
        first_ms: first.as_f64().unwrap(),
        load_ms: v[0].as_f64().unwrap_or(0.0),
        elements: v[1].as_u64().unwrap_or(0),
        heap_mib: v[2].as_f64().unwrap_or(0.0) / 1048576.0,
        browser_mib: after.saturating_sub(before) as f64 / 1024.0,
    };
    b.c.clone().close().await.unwrap();
    f
}

async fn floor(file: &Path) -> Figures {
    let b = Browser::start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = b.pss_kib();
    b.c.goto(&format!("file://{}", file.display())).await.unwrap();
    b.wait("the text loaded", "return document.readyState === 'complete'").await;
    // Its end in view, as the viewer opens: the whole text is laid out first.
    b.js("window.scrollTo(0, document.documentElement.scrollHeight); return true").await;
    settle(&b).await;
    let v = b
        .js("const n = performance.getEntriesByType('navigation')[0];
             const p = performance.getEntriesByName('first-contentful-paint')[0];
             return [p ? p.startTime : n.responseEnd, n.loadEventEnd, document.getElementsByTagName('*').length,
                     performance.memory ? performance.memory.usedJSHeapSize : 0]")
        .await;
    let after = b.pss_kib();
    let f = Figures {
        first_ms: v[0].as_f64().unwrap(),
        load_ms: v[1].as_f64().unwrap_or(0.0),
        elements: v[2].as_u64().unwrap_or(0),
        heap_mib: v[3].as_f64().unwrap_or(0.0) / 1048576.0,
        browser_mib: after.saturating_sub(before) as f64 / 1024.0,
    };
    b.c.clone().close().await.unwrap();
    f
}

/// The round whose first lines came at the median time.
fn median(mut v: Vec<Figures>) -> Figures {
    v.sort_by(|a, b| a.first_ms.total_cmp(&b.first_ms));
    v.swap_remove(v.len() / 2)
}

fn row(name: &str, f: &Figures, floor: &Figures) {
    println!(
        "{name:<22} {:>9.0} ms {:>9.0} ms {:>9} {:>9.1} MiB {:>9.1} MiB   x{:.3} first, x{:.3} to the end, x{:.3} memory",
        f.first_ms,
        f.load_ms,
        f.elements,
        f.heap_mib,
        f.browser_mib,
        f.first_ms / floor.first_ms,
        f.first_ms.max(f.load_ms) / floor.load_ms,
        f.browser_mib / floor.browser_mib.max(0.1),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        eprintln!(
            "logview: {CHROMIUM} and {CHROMEDRIVER} are needed (cargo xtask bench logview installs them)"
        );
        std::process::exit(2);
    }
    let lines: u64 =
        std::env::var("KILN_BENCH_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let s = TestServer::start_with(1).await;
    let yaml = format!(
        "name: big\nstages:\n  - name: b\n    jobs:\n      big:\n        script:\n          - \"seq -f '%07g compiling src/module.rs: warning: unused variable (opt-level=3)' 1 {lines}\"\n"
    );
    s.apply("bench", "big", &yaml).await;
    let made = Instant::now();
    let run = s.admin.trigger("bench", "big", &Default::default()).await.unwrap();
    let d = wait_for_long(&s, &run.id, lines).await;
    println!("==> a job printed {lines} lines in {:.1} s ({d})", made.elapsed().as_secs_f64());

    // The raw log, as the server serves it, saved for the floor page.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.txt");
    let raw = reqwest::Client::new()
        .get(format!("{}/api/v1/runs/{}/jobs/big/logs/download", s.url, run.id))
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    std::fs::write(&file, &raw).unwrap();
    println!("    raw log: {:.1} MiB", raw.len() as f64 / 1048576.0);

    let page = format!("/runs/{}/jobs/big", run.id);
    let mid = lines / 2;
    let fl = floor(&file).await;
    let rounds: usize =
        std::env::var("KILN_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let (mut tails, mut links) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        tails.push(viewer(&s.url, &s.admin_token, &page, lines).await);
        links.push(viewer(&s.url, &s.admin_token, &format!("{page}#L{mid}"), mid).await);
    }
    let (tail, link) = (median(tails), median(links));
    println!(
        "    viewer: the median of {} rounds by first lines, each in a fresh browser",
        rounds.max(1)
    );
    println!(
        "{:<22} {:>12} {:>12} {:>9} {:>13} {:>13}   ratio to the floor",
        "page", "first lines", "loaded", "elements", "JS heap", "browser mem"
    );
    row("plain <pre> (floor)", &fl, &fl);
    row("viewer at the tail", &tail, &fl);
    row(&format!("viewer at #L{mid}"), &link, &fl);
    s.stop().await;
}

/// Waits up to 10 minutes for the run's job to have printed `lines` lines and succeeded.
async fn wait_for_long(s: &TestServer, run: &str, lines: u64) -> String {
    let started = Instant::now();
    loop {
        let d = s.admin.run(run).await.unwrap();
        let page = s.admin.logs(run, Some("big"), None, 1, 1).await.unwrap();
        if d.run.state == "success" && page.last >= lines {
            return format!("{} log lines stored", page.last);
        }
        assert!(
            !["failure", "canceled", "timeout"].contains(&d.run.state.as_str()),
            "the run ended {}",
            d.run.state
        );
        assert!(started.elapsed() < Duration::from_secs(600), "the job took over 10 minutes");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
