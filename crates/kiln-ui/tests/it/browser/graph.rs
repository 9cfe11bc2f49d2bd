//! The run graph and the duration plot: edges that go around boxes (checked point by point
//! along every edge against every box), a matrix job as one box that opens and closes (mouse
//! and keyboard), the node each job ran on and how long it was queued, stages as rows at a
//! phone's width; the pipelines' duration plot with a series per pipeline that can be hidden,
//! in a colour that is a hash of its name, both kept after a reload.

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use serde_json::{Value, json};

use super::Browser;
use crate::support::TestServer;

/// Three stages: a matrix of six beside a plain job, a stage whose own needs make two layers,
/// and a job that needs the first stage over the second (its edges cross two layers).
const WIDE: &str = r#"
name: wide
stages:
  - name: build
    jobs:
      compile: { script: "echo compiling" }
      build:
        matrix: { os: [a, b, c, d, e, f] }
        script: "echo building ${{ matrix.os }}"
  - name: test
    jobs:
      unit: { needs: [compile], script: "echo unit" }
      lint: { needs: [], script: "echo lint" }
      smoke: { needs: [unit], script: "echo smoke" }
  - name: package
    jobs:
      pack: { needs: [compile, build], script: "echo pack" }
"#;

/// Every place where an edge runs inside a box (1 px in from its border), as
/// `from->to at x,y in BOX`; and how many edges and boxes were looked at.
const CROSSINGS: &str = "
    const boxes = [...document.querySelectorAll('svg.graph .node')].map(n => {
        const r = n.querySelector('rect.box');
        return { name: n.getAttribute('data-job') || n.getAttribute('data-group') || n.getAttribute('data-gate'),
            x: +r.getAttribute('x'), y: +r.getAttribute('y'), w: +r.getAttribute('width'), h: +r.getAttribute('height') };
    });
    const bad = [];
    const edges = [...document.querySelectorAll('svg.graph path.edge')];
    for (const e of edges) {
        const len = e.getTotalLength();
        for (let at = 0; at <= len; at += 1) {
            const p = e.getPointAtLength(at);
            for (const b of boxes) {
                if (p.x > b.x + 1 && p.x < b.x + b.w - 1 && p.y > b.y + 1 && p.y < b.y + b.h - 1) {
                    bad.push(e.dataset.from + '->' + e.dataset.to + ' at ' + Math.round(p.x) + ',' + Math.round(p.y) + ' in ' + b.name);
                    break;
                }
            }
        }
    }
    return { bad: [...new Set(bad)].slice(0, 10), edges: edges.length, boxes: boxes.length };";

async fn press(b: &Browser, key: Key) {
    let k: char = key.into();
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: k })
        .then(KeyAction::Up { value: k });
    b.c.perform_actions(keys).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_run_graph_routes_edges_around_boxes_groups_a_matrix_and_stands_up_on_a_phone() {
    let s = TestServer::start_with(4).await;
    s.apply("web", "wide", WIDE).await;
    let run = s.trigger("web", "wide", &[]).await;
    let done = s.wait_final(&run.id).await;
    assert_eq!(done.run.state, "success", "{done:#?}");
    let Some(b) = Browser::start("graph").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;
    b.c.goto(&format!("{}/runs/{}", s.url, run.id)).await.unwrap();
    b.wait(
        "the graph",
        "return !!document.querySelector('svg.graph a.node[data-job=pack][data-state=success]')",
    )
    .await;

    // The matrix is one box, closed: `build ×6`, all six succeeded; no instance box.
    let group = b
        .js("const g = document.querySelector('svg.graph g.node.group[data-group=build]');
             return g && { expanded: g.getAttribute('aria-expanded'), name: g.querySelector('text.name').textContent,
                 sub: g.querySelector('text.sub').textContent, state: g.dataset.state,
                 instances: document.querySelectorAll('svg.graph a.node[data-job^=\"build[\"]').length }")
        .await;
    assert_eq!(
        group,
        json!({"expanded": "false", "name": "build ×6", "sub": "6 success", "state": "success", "instances": 0})
    );
    // Edges: unit <- compile, smoke <- unit (a layer of its own in its stage), and pack's two
    // over the test stage: one from compile, one from the matrix box.
    let edges = b
        .js("return [...document.querySelectorAll('svg.graph path.edge')].map(e => e.dataset.from + '->' + e.dataset.to).sort()")
        .await;
    assert_eq!(
        edges,
        json!([
            "group:build->job:pack",
            "job:compile->job:pack",
            "job:compile->job:unit",
            "job:unit->job:smoke"
        ])
    );
    let long = b.js("return document.querySelector('path.edge[data-from=\"job:compile\"][data-to=\"job:pack\"]').getAttribute('d')").await;
    assert!(long.as_str().unwrap().contains(" L"), "an edge over a stage runs in a lane: {long}");
    let check = b.js(CROSSINGS).await;
    assert_eq!(check["bad"], json!([]), "edges through boxes: {check}");
    assert_eq!(check["edges"], json!(4));
    // smoke sits right of unit (its own layer), so the stage has two columns.
    let xs = b
        .js("const x = (j) => +document.querySelector('svg.graph a.node[data-job=' + j + '] rect.box').getAttribute('x');
             return [x('compile'), x('unit'), x('smoke'), x('pack')]")
        .await;
    let xs: Vec<f64> = xs.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(xs[0] < xs[1] && xs[1] < xs[2] && xs[2] < xs[3], "{xs:?}");
    b.shot("01-closed").await;

    // Each job says where it ran and how long it was queued: the API's node.
    let compile = done.jobs.iter().find(|j| j.id == "compile").unwrap();
    let node = compile.node.clone().expect("the API names the node compile ran on");
    let facts = b
        .js("const n = document.querySelector('svg.graph a.node[data-job=compile]');
             return [n.querySelector('text.facts').textContent, n.querySelector('title').textContent, n.dataset.node]")
        .await;
    assert!(facts[0].as_str().unwrap().starts_with(&format!("on {node} · queued ")), "{facts}");
    let title = facts[1].as_str().unwrap();
    assert!(title.starts_with(&format!("job compile: success; on {node}; queued ")), "{title}");
    assert!(title.contains("; ran "), "{title}");
    assert_eq!(facts[2], json!(node));

    // Opened by a click: a header and the six instances (named by their values), in a frame;
    // edges still go around every box; pack's edges now come from each instance.
    b.click("svg.graph g.node.group[data-group=build]").await;
    let open = b
        .wait(
            "the matrix opened",
            "const h = document.querySelector('svg.graph g.node.group[data-group=build][aria-expanded=true]');
             const i = [...document.querySelectorAll('svg.graph a.node[data-job^=\"build[\"]')];
             return h && i.length === 6 && { names: i.map(n => n.querySelector('text.name').textContent),
                 frame: !!document.querySelector('svg.graph rect.group-frame[data-group=build]'),
                 focused: document.activeElement === h }",
        )
        .await;
    assert_eq!(open["names"].as_array().unwrap().len(), 6, "{open}");
    assert!(open["names"][0].as_str().unwrap().starts_with('['), "{open}");
    assert_eq!(open["frame"], json!(true));
    assert_eq!(open["focused"], json!(true), "the focus stays on the group's header");
    let check = b.js(CROSSINGS).await;
    assert_eq!(check["bad"], json!([]), "edges through boxes, opened: {check}");
    assert_eq!(check["edges"], json!(3 + 6), "{check}");
    b.shot("02-opened").await;
    // Closed again with the keyboard (Enter on the focused header).
    press(&b, Key::Enter).await;
    b.wait(
        "the matrix closed",
        "return !!document.querySelector('svg.graph g.node.group[data-group=build][aria-expanded=false]')
            && !document.querySelector('svg.graph a.node[data-job^=\"build[\"]')",
    )
    .await;

    // A phone: the stages become rows, top to bottom; still no edge through a box.
    b.c.set_window_size(400, 844).await.unwrap();
    b.wait(
        "the graph standing up",
        "return !!document.querySelector('svg.graph[data-layout=vertical]')",
    )
    .await;
    let ys = b
        .js("const y = (j) => +document.querySelector('svg.graph a.node[data-job=' + j + '] rect.box').getAttribute('y');
             const x = (j) => +document.querySelector('svg.graph a.node[data-job=' + j + '] rect.box').getAttribute('x');
             return { y: [y('compile'), y('unit'), y('smoke'), y('pack')], x: [x('compile'), x('pack')] }")
        .await;
    let y: Vec<f64> = ys["y"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert!(y[0] < y[1] && y[1] < y[2] && y[2] < y[3], "stages top to bottom: {ys}");
    assert_eq!(ys["x"][0], ys["x"][1], "the first box of each stage on the left: {ys}");
    let check = b.js(CROSSINGS).await;
    assert_eq!(check["bad"], json!([]), "edges through boxes, standing up: {check}");
    b.shot("03-phone").await;
    b.c.set_window_size(1280, 800).await.unwrap();
    b.wait(
        "the graph lying down again",
        "return !!document.querySelector('svg.graph[data-layout=horizontal]')",
    )
    .await;
    s.stop().await;
}

/// The colour the UI gives a series: FNV-1a of its name over its list (lib/plot.js
/// `colourOf`), computed here the same way.
fn colour_of(name: &str) -> &'static str {
    const COLOURS: [&str; 12] = [
        "#0b5cad", "#c4231c", "#1a7f37", "#8250df", "#b04500", "#1b7c83", "#bf3989", "#57606a",
        "#6e5a00", "#0a6b4f", "#a1287a", "#3d4db7",
    ];
    let mut hash: u32 = 0x811c_9dc5;
    for unit in name.encode_utf16() {
        hash ^= u32::from(unit);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    COLOURS[(hash % 12) as usize]
}

const ECHO: &str = "name: NAME\nstages:\n  - name: s\n    jobs:\n      j: { script: echo hi }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_duration_plot_has_a_series_per_pipeline_to_hide_and_colours_that_stay() {
    let s = TestServer::start_with(2).await;
    for name in ["alpha", "beta"] {
        s.apply("web", name, &ECHO.replace("NAME", name)).await;
        for _ in 0..2 {
            let run = s.trigger("web", name, &[]).await;
            s.wait_final(&run.id).await;
        }
    }
    let Some(b) = Browser::start("plot").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &s.admin_token).await;
    let legend = "return [...document.querySelectorAll('.duration-plot .plot-legend button')].map(b =>
        [b.dataset.series, b.dataset.colour, b.getAttribute('aria-pressed'), getComputedStyle(b.querySelector('i')).backgroundColor])";
    let series = "return [...document.querySelectorAll('.duration-plot g.series-g')].map(g =>
        [g.dataset.series, g.querySelector('circle').getAttribute('stroke'), g.querySelectorAll('circle').length])";
    b.wait(
        "the plot's legend",
        "return document.querySelectorAll('.duration-plot .plot-legend button').length === 2",
    )
    .await;
    let rgb = |hex: &str| {
        let v = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap();
        format!("rgb({}, {}, {})", v(1), v(3), v(5))
    };
    let want = |alpha: &str, beta: &str| {
        json!([
            ["web/beta", colour_of("web/beta"), beta, rgb(colour_of("web/beta"))],
            ["web/alpha", colour_of("web/alpha"), alpha, rgb(colour_of("web/alpha"))],
        ])
    };
    // Newest first: beta ran last. Both shown, each in its name's colour, two runs each.
    assert_eq!(b.js(legend).await, want("true", "true"));
    let mut shown = b.js(series).await;
    shown.as_array_mut().unwrap().sort_by_key(|v| v[0].as_str().unwrap().to_string());
    assert_eq!(
        shown,
        json!([["web/alpha", colour_of("web/alpha"), 2], ["web/beta", colour_of("web/beta"), 2]])
    );
    b.shot("01-both").await;

    // Hide alpha: its line goes, beta's stays; the focus stays on the button.
    b.click(".duration-plot button[data-series=\"web/alpha\"]").await;
    b.wait(
        "alpha hidden",
        "return !document.querySelector('.duration-plot g.series-g[data-series=\"web/alpha\"]')
            && !!document.querySelector('.duration-plot g.series-g[data-series=\"web/beta\"]')",
    )
    .await;
    assert_eq!(b.js(legend).await, want("false", "true"));
    let focused = b.js("return document.activeElement.dataset.series").await;
    assert_eq!(focused, json!("web/alpha"));

    // After a reload: still hidden, same colours.
    b.c.refresh().await.unwrap();
    b.wait(
        "the plot again",
        "return document.querySelectorAll('.duration-plot .plot-legend button').length === 2",
    )
    .await;
    assert_eq!(b.js(legend).await, want("false", "true"));
    assert!(
        b.js(
            "return !document.querySelector('.duration-plot g.series-g[data-series=\"web/alpha\"]')"
        )
        .await
            == Value::Bool(true)
    );
    // Shown again.
    b.click(".duration-plot button[data-series=\"web/alpha\"]").await;
    b.wait(
        "alpha shown",
        "return !!document.querySelector('.duration-plot g.series-g[data-series=\"web/alpha\"]')",
    )
    .await;
    assert_eq!(b.js(legend).await, want("true", "true"));

    // The pipeline's own page plots it in the same colour.
    b.c.goto(&format!("{}/p/web/alpha", s.url)).await.unwrap();
    let own = b
        .wait("alpha's plot", "const g = document.querySelector('.duration-plot g.series-g'); return g && [g.dataset.series, g.dataset.colour]")
        .await;
    assert_eq!(own, json!(["web/alpha", colour_of("web/alpha")]));
    s.stop().await;
}
