//! Contrast at WCAG 2.1 AA on every page: each visible piece of text (an element with text of
//! its own) against the background it is drawn on (the nearest backgrounds up the tree,
//! translucent ones composited, and the element's opacity applied) must reach 4.5:1, or 3:1
//! for large text (24 px, or 18.66 px bold). Checked in the browser on the pages a user goes
//! through: pipelines, approvals, a pipeline, runs, a failed run (why it failed) with its log
//! (line numbers, error lines), the pool, the registry, services, projects, the sign-in form and an error.

use serde_json::Value;

use super::Browser;
use crate::support::TestServer;

/// Returns the texts below AA on the current page: `{ text, color, background, ratio, need }`.
const CHECK: &str = r#"
const parse = s => {
  const m = /rgba?\(([^)]+)\)/.exec(s || '');
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
};
const over = (top, under) => {
  const a = top[3];
  return [0, 1, 2].map(i => top[i] * a + under[i] * (1 - a)).concat([1]);
};
const lum = c => {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
};
const background = el => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
  }
  let base = [255, 255, 255, 1];
  for (let i = layers.length - 1; i >= 0; i--) base = over(layers[i], base);
  return base;
};
const opacity = el => {
  let o = 1;
  for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
  return o;
};
const bad = [];
for (const el of document.body.querySelectorAll('*')) {
  if (el.closest('svg') || el.disabled || el.closest('[aria-hidden=true]')) continue;
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const st = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  if (st.visibility !== 'visible' || st.display === 'none' || r.width <= 1 || r.height <= 1) continue;
  const o = opacity(el);
  if (o === 0) continue;
  const bg = background(el);
  const c = parse(st.color);
  const fg = over([c[0], c[1], c[2], c[3] * o], bg);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  const size = parseFloat(st.fontSize);
  const large = size >= 24 || (size >= 18.66 && Number(st.fontWeight) >= 700);
  const need = large ? 3 : 4.5;
  if (ratio + 1e-6 < need) {
    const cls = typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\s+/).join('.') : '';
    bad.push({ element: el.tagName.toLowerCase() + cls, text: el.textContent.trim().slice(0, 40),
               color: st.color, background: 'rgb(' + bg.slice(0, 3).map(Math.round).join(', ') + ')',
               ratio: Math.round(ratio * 100) / 100, need });
  }
}
return bad;
"#;

/// Fails with every text below AA on the page `name`.
async fn assert_contrast(b: &Browser, name: &str) {
    let bad = b.js(CHECK).await;
    let list = bad.as_array().cloned().unwrap_or_default();
    assert!(
        list.is_empty(),
        "{name}: {} texts below WCAG AA contrast:\n{}",
        list.len(),
        list.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    );
}

const FAILING: &str = r#"name: failing
stages:
  - name: b
    jobs:
      ok: { script: "echo fine" }
      broken:
        needs: [ok]
        script: |
          for i in 1 2 3; do echo "line $i"; done
          echo "error: the build broke" >&2
          exit 3
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_has_aa_contrast_line_numbers_and_error_text_included() {
    let s = TestServer::start_with(2).await;
    s.apply("web", "failing", FAILING).await;
    let run = s.admin.trigger("web", "failing", &Default::default()).await.unwrap();
    s.wait_for(&run.id, "failure", |d| d.run.state == "failure").await;
    let Some(b) = Browser::start("contrast").await else {
        s.stop().await;
        return;
    };
    // The sign-in form, with its refusal.
    b.c.goto(&format!("{}/", s.url)).await.unwrap();
    b.wait("the sign-in form", "return !!document.querySelector('#token')").await;
    b.type_into("#token", "kiln_not_a_token").await;
    b.click("form button[type=submit]").await;
    b.wait("the refusal", "return !!document.querySelector('.error')").await;
    assert_contrast(&b, "sign-in").await;
    b.sign_in(&s.url, &s.admin_token).await;

    let pages: [(&str, String, &str); 8] = [
        ("pipelines", "/".into(), "tr[data-pipeline]"),
        ("approvals", "/approvals".into(), "main .empty"),
        ("pipeline", "/p/web/failing".into(), "#trigger-form"),
        ("runs", "/runs".into(), "table tr td"),
        ("pool", "/pool".into(), "tr[data-node]"),
        ("registry", "/registry".into(), "h1"),
        ("services", "/services".into(), "h1"),
        ("projects", "/projects".into(), "h1"),
    ];
    for (name, path, ready) in &pages {
        b.c.goto(&format!("{}{path}", s.url)).await.unwrap();
        b.wait(name, &format!("return !!document.querySelector('{ready}')")).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_contrast(&b, name).await;
    }

    // The failed run and its log: line numbers, the echoed script lines and the failed line's
    // exit status (a script's stderr is in its stdout, in order).
    b.c.goto(&format!("{}/runs/{}", s.url, run.id)).await.unwrap();
    b.wait(
        "the graph and why the job failed",
        "return !!document.querySelector('svg.graph a.node[data-job=\"broken\"]')
            && !!document.querySelector('#failures .excerpt .ln.mark-exit')",
    )
    .await;
    assert_contrast(&b, "run").await;
    b.c.goto(&format!("{}/runs/{}/jobs/broken", s.url, run.id)).await.unwrap();
    b.wait(
        "the error line",
        "return [...document.querySelectorAll('.log .ln.mark-exit')].some(l => l.textContent.includes('exit status 3'))
            && [...document.querySelectorAll('.log .ln')].some(l => l.textContent.includes('the build broke'))",
    )
    .await;
    assert_contrast(&b, "log").await;

    // An error page.
    b.c.goto(&format!("{}/runs/0190f0a1-aaaa-7bbb-8ccc-000000000001", s.url)).await.unwrap();
    b.wait("the error", "return !!document.querySelector('.error')").await;
    assert_contrast(&b, "error").await;

    // The check sees what falls short: grey #999 on white is 2.85:1.
    b.js("const p = document.createElement('p'); p.textContent = 'too faint'; \
          p.style.color = '#999'; p.style.background = '#fff'; \
          document.querySelector('main').append(p); return true")
        .await;
    let bad = b.js(CHECK).await;
    assert_eq!(bad.as_array().map(Vec::len), Some(1), "{bad}");
    assert_eq!(bad[0]["text"], "too faint");
    assert_eq!(bad[0]["ratio"], 2.85);
    s.stop().await;
}
