//! Log storage through the API: each line stored once (a flooded run's data directory holds
//! little more than its output, and its run log still reads every line in order), pages of a
//! 2,000,000-line log served through its index, downloads, and gzip on text answers.

use std::path::Path;

use kiln_logs::{LogKey, LogLine, LogStore, Stream};

use crate::support::TestServer;

/// Lines each job of the flood prints, of `LINE` bytes with their line feed.
const FLOOD_LINES: usize = 40_000;
const LINE: usize = 100;

/// Bytes of the files under `dir`, the store's reserve file left out.
fn log_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            total += log_bytes(&entry.path());
        } else if entry.file_name() != ".reserve" {
            total += meta.len();
        }
    }
    total
}

/// What job `job` of the flood prints: line `i` is `<job> <i>` padded with dots.
fn flood_line(job: &str, i: usize) -> String {
    let head = format!("{job} {i:07} ");
    format!("{head}{}", ".".repeat(LINE - 1 - head.len()))
}

async fn get(s: &TestServer, path: &str, gzip: bool) -> reqwest::Response {
    let mut req =
        reqwest::Client::new().get(format!("{}{path}", s.url)).bearer_auth(&s.admin_token);
    if gzip {
        req = req.header("Accept-Encoding", "gzip");
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooded_run_stores_each_line_once_and_its_run_log_reads_every_line_in_order() {
    let s = TestServer::start().await;
    let script = |job: &str| {
        format!(
            "awk 'BEGIN {{ for (i = 1; i <= {FLOOD_LINES}; i++) {{ h = sprintf(\"{job} %07d \", i); printf \"%s\", h; for (j = length(h); j < {}; j++) printf \".\"; printf \"\\n\" }} }}'",
            LINE - 1
        )
    };
    let yaml = format!(
        "name: flood\nstages:\n  - name: s\n    jobs:\n      a:\n        script: \"{}\"\n      b:\n        script: \"{}\"\n",
        script("a").replace('\\', "\\\\").replace('"', "\\\""),
        script("b").replace('\\', "\\\\").replace('"', "\\\""),
    );
    s.apply("logs", "flood", &yaml).await;
    let run = s.trigger("logs", "flood", &[]).await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");

    // Stored once: the log directory holds at most 1.3 times the output.
    let output = (2 * FLOOD_LINES * LINE) as u64;
    let stored = log_bytes(&s.data.join("logs"));
    eprintln!(
        "{stored} bytes of logs for {output} bytes of output: {:.3}x",
        stored as f64 / output as f64
    );
    assert!(stored * 10 <= output * 13, "{stored} bytes of logs for {output} bytes of output");

    // The run's log has every line of both jobs, each job's in its order, named by its job.
    let mut next = 1;
    let mut seen = [0usize; 2];
    loop {
        let page = s.admin.logs(&run.id, None, None, next, 10_000).await.unwrap();
        for l in &page.lines {
            let job = l.job.as_deref().unwrap();
            assert_eq!(l.seq, next);
            next += 1;
            if l.mark.as_ref().is_some_and(|m| m.kind == "command") {
                continue; // the echo of the script's line, before its output
            }
            let k = if job == "a" { 0 } else { 1 };
            seen[k] += 1;
            assert_eq!(l.text, flood_line(job, seen[k]), "line {} of the run log", l.seq);
        }
        if page.closed || page.lines.is_empty() {
            break;
        }
    }
    assert_eq!(seen, [FLOOD_LINES, FLOOD_LINES]);

    // A job's log downloads whole, as plain text.
    let resp = get(&s, &format!("/api/v1/runs/{}/jobs/b/logs/download", run.id), false).await;
    let disposition = resp.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(disposition.starts_with("attachment; filename=\"flood-"), "{disposition}");
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let (echo, text) = text.split_once('\n').unwrap();
    assert!(echo.starts_with(kiln_logs::marks::COMMAND), "the echo of the script first: {echo:?}");
    let expected: String = (1..=FLOOD_LINES).map(|i| flood_line("b", i) + "\n").collect();
    assert!(text == expected, "the download is not the job's output ({} bytes)", text.len());
    // The run's log too, each line after its job's id and a tab.
    let text = get(&s, &format!("/api/v1/runs/{}/logs/download", run.id), false)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text.lines().count(), 2 * FLOOD_LINES + 2, "each job's lines and its echo");
    assert!(text.lines().all(|l| l.starts_with("a\ta ")
        || l.starts_with("b\tb ")
        || l.contains(&format!("\t{}", kiln_logs::marks::COMMAND))));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_at_the_end_of_a_2_000_000_line_log_and_gzip_on_text_answers() {
    let s = TestServer::start().await;
    s.apply(
        "logs",
        "big",
        "name: big\nstages:\n  - name: s\n    jobs:\n      big:\n        script: \"true\"\n",
    )
    .await;
    let run = s.trigger("logs", "big", &[]).await;
    s.wait_final(&run.id).await;
    // The job's (closed, empty) log is replaced by 2,000,000 lines written through the store.
    let store = LogStore::open(s.data.join("logs")).unwrap();
    let key = LogKey::from_segments(["runs", run.id.as_str(), "0", "1"]).unwrap();
    std::fs::remove_file(store.path(&key)).unwrap();
    for i in 1..=2_000_000u64 {
        let line =
            LogLine { stream: Stream::Stdout, time: chrono::Utc::now(), text: format!("line {i}") };
        store.append(&key, &line).unwrap();
    }
    store.close(&key).unwrap();
    assert!(store.index_path(&key).exists(), "no index beside the log");

    let page = s.admin.logs(&run.id, Some("big"), None, 1_999_000, 1000).await.unwrap();
    let texts: Vec<String> = page.lines.iter().map(|l| l.text.clone()).collect();
    let expected: Vec<String> = (1_999_000..2_000_000).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, expected);
    assert_eq!((page.next, page.closed), (2_000_000, false));
    let last = s.admin.logs(&run.id, Some("big"), None, 2_000_000, 1000).await.unwrap();
    assert_eq!(last.lines.len(), 1);
    assert!(last.closed);
    assert_eq!((page.last, last.last), (2_000_000, 2_000_000), "a page says the last line");
    // `tail`: the last lines in one request, as the web UI opens a log.
    let tail: kiln_api::LogPage =
        get(&s, &format!("/api/v1/runs/{}/jobs/big/logs?tail=3", run.id), false)
            .await
            .json()
            .await
            .unwrap();
    let texts: Vec<&str> = tail.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["line 1999998", "line 1999999", "line 2000000"]);
    assert_eq!((tail.next, tail.closed, tail.last), (2_000_001, true, 2_000_000));

    // Text answers are gzipped for a client that asks: API JSON, the UI's page, a log page.
    for path in [
        "/api/v1/info".to_string(),
        "/".to_string(),
        format!("/api/v1/runs/{}/jobs/big/logs?from=1&limit=1000", run.id),
    ] {
        let resp = get(&s, &path, true).await;
        assert_eq!(
            resp.headers().get("content-encoding").map(|v| v.to_str().unwrap()),
            Some("gzip"),
            "{path}"
        );
        let plain = get(&s, &path, false).await;
        assert!(plain.headers().get("content-encoding").is_none(), "{path} gzipped unasked");
    }
    // Never an event stream.
    let resp =
        get(&s, &format!("/api/v1/runs/{}/jobs/big/logs/stream?from=1999999", run.id), true).await;
    assert!(resp.headers().get("content-encoding").is_none());
    assert!(resp.text().await.unwrap().contains("line 2000000"));
    s.stop().await;
}
