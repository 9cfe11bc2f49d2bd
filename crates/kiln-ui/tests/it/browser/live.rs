//! A UI that survives: the connection banner while the server cannot be reached (a proxy in
//! front of the server drops every connection, as a stopped server would), pages that load
//! themselves again when it comes back, and the runs list kept fresh by the server's run
//! events (no polling), with its filters in the URL.

use std::time::Duration;

use serde_json::json;

use super::Browser;
use crate::support::{CuttableProxy, TestServer};

/// A pipeline whose one job waits for the file `GATE`.
fn gated(name: &str, gate: &std::path::Path) -> String {
    format!(
        "name: {name}\nstages:\n  - name: b\n    jobs:\n      wait:\n        script:\n          - while [ ! -f {} ]; do sleep 0.05; done\n          - echo done\n",
        gate.display()
    )
}

/// The list requests (`GET /api/v1/runs?…`) that went through the proxy.
fn list_requests(proxy: &CuttableProxy) -> usize {
    proxy.requests.lock().unwrap().iter().filter(|r| r.starts_with("GET /api/v1/runs?")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banner_while_the_server_is_away_and_pages_that_recover_when_it_returns() {
    let s = TestServer::start_with(2).await;
    let gate = s.dir().join("gate-a");
    s.apply("web", "slow", &gated("slow", &gate)).await;
    let first = s.trigger("web", "slow", &[]).await;
    let proxy = CuttableProxy::start(s.server.as_ref().unwrap().addr).await;
    let Some(b) = Browser::start("live-banner").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&proxy.url, &s.admin_token).await;

    // The runs list, then the server goes away: one banner, with a countdown and a button.
    b.c.goto(&format!("{}/runs", proxy.url)).await.unwrap();
    b.wait(
        "the run in the list",
        &format!("return !!document.querySelector('tr[data-run=\"{}\"]')", first.id),
    )
    .await;
    assert_eq!(b.js("return document.querySelector('#conn-banner')").await, json!(null));
    proxy.down();
    let text = b
        .wait(
            "the banner",
            "const e = document.querySelector('#conn-banner'); return e && /Trying again in \\d+ s/.test(e.textContent) && e.textContent",
        )
        .await;
    assert!(text.as_str().unwrap().contains("The server cannot be reached."), "{text}");
    assert_eq!(b.js("return document.querySelectorAll('.conn-banner').length").await, json!(1));
    assert_eq!(
        b.js("return document.querySelector('#conn-retry').textContent").await,
        json!("Retry now")
    );
    b.shot("01-banner").await;

    // A run starts meanwhile; the server comes back and "Retry now" brings the list back
    // with it, without a reload.
    let second = s.trigger("web", "slow", &[]).await;
    b.js("window.stillThisPage = true; return 1").await;
    proxy.up();
    b.click("#conn-retry").await;
    b.wait(
        "the banner gone and the new run listed",
        &format!(
            "return !document.querySelector('#conn-banner') && !!document.querySelector('tr[data-run=\"{}\"]')",
            second.id
        ),
    )
    .await;
    assert_eq!(b.js("return window.stillThisPage === true").await, json!(true), "no reload");

    // The run page, and the server goes away again; the run ends meanwhile. When the server
    // is back the page finds it by itself (no button) and shows the run's end.
    b.c.goto(&format!("{}/runs/{}", proxy.url, first.id)).await.unwrap();
    b.wait("the run page", "return !!document.querySelector('.head .badge')").await;
    proxy.down();
    b.wait("the banner on the run page", "return !!document.querySelector('#conn-banner')").await;
    std::fs::write(&gate, "go").unwrap();
    assert_eq!(s.wait_final(&first.id).await.run.state, "success");
    assert_eq!(s.wait_final(&second.id).await.run.state, "success");
    b.js("window.stillThisPage = true; return 1").await;
    proxy.up();
    b.wait(
        "the banner gone and the run's end shown",
        "return !document.querySelector('#conn-banner')
            && !!document.querySelector('.head .badge[data-state=\"success\"]')",
    )
    .await;
    assert_eq!(b.js("return window.stillThisPage === true").await, json!(true), "no reload");
    assert_eq!(
        b.js("return document.querySelectorAll('.error').length").await,
        json!(0),
        "no error box is left over"
    );
    b.shot("02-recovered").await;
    b.c.clone().close().await.unwrap();
    drop(proxy);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runs_list_follows_run_events_without_polling_and_keeps_its_filters_in_the_url() {
    let s = TestServer::start_with(2).await;
    let gate = s.dir().join("gate-b");
    s.apply("web", "slow", &gated("slow", &gate)).await;
    s.apply(
        "web",
        "quick",
        "name: quick\nstages:\n  - name: b\n    jobs:\n      hi: { script: echo hi }\n",
    )
    .await;
    let quick = s.trigger("web", "quick", &[]).await;
    assert_eq!(s.wait_final(&quick.id).await.run.state, "success");
    let proxy = CuttableProxy::start(s.server.as_ref().unwrap().addr).await;
    let Some(b) = Browser::start("live-list").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&proxy.url, &s.admin_token).await;
    b.c.goto(&format!("{}/runs", proxy.url)).await.unwrap();
    b.wait(
        "the quick run",
        &format!("return !!document.querySelector('tr[data-run=\"{}\"]')", quick.id),
    )
    .await;
    let before = list_requests(&proxy);

    // A run started through the API shows up, then its end, without a reload.
    b.js("window.stillThisPage = true; return 1").await;
    let run = s.trigger("web", "slow", &[]).await;
    b.wait(
        "the new run, not ended",
        &format!(
            "const r = document.querySelector('tr[data-run=\"{}\"]'); return r && ['pending', 'scheduling', 'running'].includes(r.dataset.state)",
            run.id
        ),
    )
    .await;
    std::fs::write(&gate, "go").unwrap();
    b.wait(
        "the new run's success",
        &format!(
            "return !!document.querySelector('tr[data-run=\"{}\"][data-state=\"success\"]')",
            run.id
        ),
    )
    .await;
    assert_eq!(b.js("return window.stillThisPage === true").await, json!(true), "no reload");
    // Two events (started, succeeded): at most one list load each.
    let during = list_requests(&proxy) - before;
    assert!((1..=2).contains(&during), "{during} list loads for two run events");
    // Nothing happens: nothing is asked (the old list asked every 3 s).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(list_requests(&proxy) - before, during, "no polling");

    // Filters: in the URL, applied by the server (pipeline, state) or the page (trigger).
    b.c.goto(&format!("{}/runs?pipeline=web/quick", proxy.url)).await.unwrap();
    b.wait("the quick run only", &format!(
        "const ids = [...document.querySelectorAll('tr[data-run]')].map(r => r.dataset.run); return ids.length === 1 && ids[0] === '{}'",
        quick.id
    ))
    .await;
    assert_eq!(
        b.js("return document.querySelector('#pipeline-filter').value").await,
        json!("web/quick")
    );
    b.wait(
        "the pipelines to pick from",
        "return document.querySelectorAll('#pipeline-filter option').length === 3",
    )
    .await;
    b.c.find(fantoccini::Locator::Css("#pipeline-filter"))
        .await
        .unwrap()
        .select_by_value("web/slow")
        .await
        .unwrap();
    b.wait("the slow run only", &format!(
        "const ids = [...document.querySelectorAll('tr[data-run]')].map(r => r.dataset.run); return ids.length === 1 && ids[0] === '{}'",
        run.id
    ))
    .await;
    assert_eq!(b.js("return location.search").await, json!("?pipeline=web%2Fslow"));
    b.c.find(fantoccini::Locator::Css("#state-filter"))
        .await
        .unwrap()
        .select_by_value("failure")
        .await
        .unwrap();
    b.wait("no run", "return location.search.includes('state=failure') && document.querySelector('section.panel .empty')").await;
    b.c.goto(&format!("{}/runs?trigger=schedule", proxy.url)).await.unwrap();
    b.wait("no scheduled run", "return !!document.querySelector('section.panel .empty')").await;
    b.c.goto(&format!("{}/runs?trigger=api", proxy.url)).await.unwrap();
    b.wait(
        "both runs started through the API",
        "return document.querySelectorAll('tr[data-run]').length === 2",
    )
    .await;

    // Pages (of one run here): older, then back to the newest; the filters stay.
    b.c.goto(&format!("{}/runs?trigger=api&per_page=1", proxy.url)).await.unwrap();
    let only = |id: &str| {
        format!(
            "const ids = [...document.querySelectorAll('tr[data-run]')].map(r => r.dataset.run); return ids.length === 1 && ids[0] === '{id}'"
        )
    };
    b.wait("the newest run", &only(&run.id)).await;
    assert_eq!(b.js("return !!document.querySelector('#newest-runs')").await, json!(false));
    b.click("#older-runs").await;
    b.wait("the run before it", &only(&quick.id)).await;
    let search = b.js("return location.search").await;
    assert_eq!(search, json!(format!("?trigger=api&per_page=1&before={}", run.id)));
    b.click("#newest-runs").await;
    b.wait("the newest run again", &only(&run.id)).await;
    b.shot("03-filtered").await;
    b.c.clone().close().await.unwrap();
    drop(proxy);
    s.stop().await;
}
