//! The windowed log viewer on a large log made by a real job (`seq 1 200000` on the process
//! executor; each script line is echoed before it runs, so `seq`'s line n is the log's n+1): the page opens at the tail with a bounded number of DOM nodes, follows new
//! lines while at the end and stops when scrolled up, shows each line's time from the API,
//! lands on a linked line (`#L150000`) not loaded before, links a range by Shift+click, scrolls to the last line, and
//! finds a match pages away. Only a few hundred rows are ever in the page.

use std::time::{Duration, Instant};

use serde_json::json;

use super::Browser;
use crate::support::TestServer;

/// Lines `seq` prints; the job then writes two more, each after a gate file appears.
const LINES: u64 = 200_000;

/// Whether the row of line `seq` is loaded and wholly inside the log's box (JS expression).
fn in_view(seq: u64) -> String {
    format!(
        "(() => {{ const e = document.getElementById('L{seq}'); if (!e || e.classList.contains('loading')) return false;
          const r = e.getBoundingClientRect(), b = document.getElementById('log').getBoundingClientRect();
          return r.height > 0 && r.top >= b.top - 1 && r.bottom <= b.bottom + 1; }})()"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200000_line_log_opens_at_its_tail_follows_links_to_a_line_and_shows_times() {
    let s = TestServer::start_with(1).await;
    let (one, two) = (s.dir().join("gate-one"), s.dir().join("gate-two"));
    let yaml = format!(
        "name: big\nstages:\n  - name: b\n    jobs:\n      big:\n        script:\n          - seq 1 {LINES}\n          - while [ ! -f {one} ]; do sleep 0.05; done\n          - echo after the gate\n          - while [ ! -f {two} ]; do sleep 0.05; done\n          - echo second after\n",
        one = one.display(),
        two = two.display()
    );
    s.apply("web", "big", &yaml).await;
    let run = s.admin.trigger("web", "big", &Default::default()).await.unwrap();
    let started = Instant::now();
    let last = loop {
        // `seq`'s last line, then the echo of the wait for the first gate.
        let page = s.admin.logs(&run.id, Some("big"), None, LINES + 1, 2).await.unwrap();
        if page.lines.len() == 2 {
            let l = &page.lines[0];
            assert_eq!(
                (page.last, l.text.as_str()),
                (LINES + 2, "200000"),
                "the page says its last line"
            );
            let echo = page.lines[1].mark.as_ref().map(|m| m.kind.as_str());
            assert_eq!(echo, Some("command"), "{:?}", page.lines[1]);
            break l.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job never printed {LINES} lines"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(b) = Browser::start("logview").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;

    // Opened without a link: at the tail, live, following; a few hundred rows in the DOM.
    b.c.goto(&format!("{}/runs/{}/jobs/big", s.url, run.id)).await.unwrap();
    b.wait(
        "the last line in view, live",
        &format!(
            "return {} && document.querySelector('.log-panel .status').dataset.state === 'live'",
            in_view(LINES + 2)
        ),
    )
    .await;
    let dom = b
        .js("return [document.querySelectorAll('#log .ln').length, document.getElementsByTagName('*').length,
                     document.getElementById('follow').checked, document.querySelector('#L200001 .txt').textContent]")
        .await;
    assert!(dom[0].as_u64().unwrap() < 400, "rows in the DOM: {dom}");
    assert!(dom[1].as_u64().unwrap() < 2000, "elements in the page: {dom}");
    assert_eq!((&dom[2], &dom[3]), (&json!(true), &json!("200000")), "{dom}");
    b.shot("01-tail").await;

    // Timestamps: each row shows its line's time; the tooltip is the API's.
    b.click("#timestamps").await;
    let ts = b
        .wait(
            "the times",
            "const t = document.querySelector('#L200001 .ts'); return t && [t.textContent, t.title]",
        )
        .await;
    assert!(
        ts[0].as_str().unwrap().len() == 12 && ts[0].as_str().unwrap().as_bytes()[8] == b'.',
        "HH:MM:SS.mmm: {ts}"
    );
    assert_eq!(ts[1], serde_json::to_value(last.time).unwrap(), "the API's time");
    let every = b.js("return [...document.querySelectorAll('#log .ln')].every(l => !!l.querySelector('.ts'))").await;
    assert_eq!(every, json!(true));
    b.shot("02-times").await;
    b.click("#timestamps").await;
    b.wait("no times", "return !document.querySelector('#log .ts')").await;

    // Follow: a new line arrives at the bottom and stays in view.
    std::fs::write(&one, "").unwrap();
    b.wait("the new line, followed", &format!("return {}", in_view(LINES + 5))).await;
    assert_eq!(
        b.js("return document.querySelector('#L200004 .txt').textContent").await,
        json!("after the gate")
    );
    // Scrolled up, following stops: the next line does not move the view.
    b.js("document.getElementById('log').scrollTop = 0; return true").await;
    b.wait(
        "follow off",
        "return !document.getElementById('follow').checked && !!document.getElementById('L1')",
    )
    .await;
    std::fs::write(&two, "").unwrap();
    s.wait_for(&run.id, "success", |d| d.run.state == "success").await;
    b.wait(
        "the end of the stream",
        "return document.querySelector('.log-panel .status').dataset.state === 'ended'",
    )
    .await;
    let stayed = b
        .js("return [document.getElementById('log').scrollTop, !!document.getElementById('L200006')]")
        .await;
    assert_eq!(stayed, json!([0, false]), "the view stayed at the top");
    // "Jump to end" shows the last line and follows again.
    b.click("#log-end").await;
    b.wait("the last line", &format!("return {}", in_view(LINES + 7))).await;
    assert_eq!(b.js("return document.getElementById('follow').checked").await, json!(true));
    // Without wrapping, long lines scroll sideways; the end stays in view.
    b.click("#wrap").await;
    b.wait(
        "the end, unwrapped",
        &format!(
            "return {} && document.getElementById('log').classList.contains('nowrap')",
            in_view(LINES + 7)
        ),
    )
    .await;
    b.click("#wrap").await;

    // A link to a line far from both ends: that line, highlighted, in view.
    b.c.goto(&format!("{}/runs/{}/jobs/big#L150000", s.url, run.id)).await.unwrap();
    b.wait("line 150000 in view", &format!("return {}", in_view(150_000))).await;
    let linked = b
        .js("const e = document.getElementById('L150000');
             return [e.classList.contains('target'), e.querySelector('.txt').textContent,
                     document.querySelectorAll('#log .ln.target').length, document.getElementById('follow').checked,
                     document.querySelectorAll('#log .ln').length]")
        .await;
    assert_eq!(
        &linked.as_array().unwrap()[..4],
        &[json!(true), json!("149999"), json!(1), json!(false)],
        "{linked}"
    );
    assert!(linked[4].as_u64().unwrap() < 400, "{linked}");
    b.shot("03-linked").await;
    // Shift+click on another line's number: the range, in the address.
    b.js("document.querySelector('#L150002 a.num').dispatchEvent(new MouseEvent('click', { bubbles: true, cancelable: true, shiftKey: true })); return true").await;
    let range = b
        .wait(
            "the range",
            "const t = [...document.querySelectorAll('#log .ln.target')].map(e => e.dataset.seq); return t.length === 3 && [location.hash, t]",
        )
        .await;
    assert_eq!(range, json!(["#L150000-L150002", ["150000", "150001", "150002"]]));

    // Search finds a match pages away (pages fetched as it goes), and says which line.
    b.type_into("#log-search", "199990").await;
    b.wait(
        "the match",
        &format!(
            "return {} && document.getElementById('L199991').classList.contains('cur')
                && document.querySelector('.log-tools .count').textContent === 'line 199991'",
            in_view(199_991)
        ),
    )
    .await;

    // Dragged to the very end by hand: the last line shows.
    b.js("const l = document.getElementById('log'); l.scrollTop = 0; return true").await;
    b.wait("the top", &format!("return {}", in_view(1))).await;
    b.js("const l = document.getElementById('log'); l.scrollTop = l.scrollHeight; return true")
        .await;
    b.wait("the last line again", &format!("return {}", in_view(LINES + 7))).await;
    b.shot("04-end").await;
    b.c.clone().close().await.unwrap();
    s.stop().await;
}

/// A real job's log (process executor) with echoed script lines, a failed line's exit status,
/// a `::group::` section (collapsed at first, expanded and collapsed again by its toggle, with
/// its duration) and stdout and stderr in the order the job wrote them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_lines_are_echoed_with_a_failed_ones_status_and_groups_collapse() {
    let s = TestServer::start_with(1).await;
    let yaml = "name: marks\nstages:\n  - name: b\n    jobs:\n      m:\n        script:\n          - echo \"word $SECRET_WORD\"\n          - |\n            echo '::group::Compile things'\n            echo inside one\n            echo inside two\n            echo '::endgroup::'\n          - for i in $(seq 50); do echo out$i; echo err$i >&2; done\n          - sh -c 'exit 2'\n        env: { SECRET_WORD: swordfish }\n";
    s.apply("web", "marks", yaml).await;
    let run = s.admin.trigger("web", "marks", &Default::default()).await.unwrap();
    s.wait_for(&run.id, "failure", |d| d.run.state == "failure").await;
    let page = s.admin.logs(&run.id, Some("m"), None, 1, 1000).await.unwrap();
    let kinds: Vec<(&str, Option<&str>)> = page
        .lines
        .iter()
        .map(|l| (l.text.as_str(), l.mark.as_ref().map(|m| m.kind.as_str())))
        .collect();
    // Lines 1-11: echo, its output, the block's four lines echoed, the group (its end hidden).
    assert_eq!(kinds[0].1, Some("command"), "{kinds:?}");
    assert_eq!(kinds[1], ("word swordfish", None));
    assert_eq!(
        kinds[2..6].iter().map(|k| k.1).collect::<Vec<_>>(),
        [Some("command"), Some("continued"), Some("continued"), Some("continued")]
    );
    assert_eq!(kinds[6], ("::group::Compile things", Some("section_start")));
    assert_eq!(kinds[9], ("::endgroup::", Some("section_end")));
    let mixed: Vec<&str> = kinds[11..111].iter().map(|k| k.0).collect();
    let want: Vec<String> = (1..=50).flat_map(|i| [format!("out{i}"), format!("err{i}")]).collect();
    assert_eq!(mixed, want, "stdout and stderr in the order written");
    assert_eq!(kinds[112].1, Some("exit"), "{kinds:?}");
    assert_eq!(page.lines[112].mark.as_ref().unwrap().status, Some(2));

    let Some(b) = Browser::start("logmarks").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;
    b.c.goto(&format!("{}/runs/{}/jobs/m#L1", s.url, run.id)).await.unwrap();
    b.wait("the first line", &format!("return {}", in_view(1))).await;
    let shown = b
        .js("const t = (n) => document.querySelector('#L' + n + ' .txt').textContent;
             return [t(1), document.getElementById('L1').classList.contains('mark-command'), t(2),
                     t(4), t(7), !!document.getElementById('L8'), !!document.getElementById('L10'),
                     document.querySelector('#L7 .sec-toggle').getAttribute('aria-expanded')]")
        .await;
    assert_eq!(
        shown,
        json!([
            "$ echo \"word $SECRET_WORD\"",
            true,
            "word swordfish",
            "> echo inside one",
            "Compile things",
            false,
            false,
            "false"
        ]),
        "echoes as written; the group collapsed, its lines and end marker hidden"
    );
    b.shot("marks-01-collapsed").await;
    b.click("#L7 .sec-toggle").await;
    let open = b
        .wait(
            "the group's lines",
            "const e = document.querySelector('#L8 .txt'); return e && [e.textContent, document.querySelector('#L9 .txt').textContent,
               !!document.getElementById('L10'), document.querySelector('#L7 .sec-toggle').getAttribute('aria-expanded'),
               !!document.querySelector('#L7 .sec-dur')]",
        )
        .await;
    assert_eq!(open, json!(["inside one", "inside two", false, "true", true]));
    b.shot("marks-02-expanded").await;
    b.click("#L7 .sec-toggle").await;
    b.wait("collapsed again", "return !document.getElementById('L8')").await;
    // The failed line's exit status, in view at the end of the log.
    b.js("const l = document.getElementById('log'); l.scrollTop = l.scrollHeight; return true")
        .await;
    b.wait("the exit status", &format!("return {}", in_view(113))).await;
    let exit = b
        .js("const e = document.getElementById('L113'); return [e.querySelector('.txt').textContent, e.classList.contains('mark-exit')]")
        .await;
    assert_eq!(exit, json!(["exit status 2: sh -c 'exit 2'", true]));
    b.shot("marks-03-exit").await;
    b.c.clone().close().await.unwrap();
    s.stop().await;
}
