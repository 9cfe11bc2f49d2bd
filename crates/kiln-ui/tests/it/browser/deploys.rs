//! The deploy pages against a real server: images pushed to its registry, a service file
//! deployed (through the API) to a project's environments and run by an agent on the process
//! executor. The environments board (what runs where, as the API's board says), a service's
//! deployments, a rollback from the page, a promotion (the dry run's changes, then confirmed),
//! a protected environment's deployment approved by a second person only, and a viewer.

use std::time::Duration;

use fantoccini::Locator;
use kiln_api::config::{ReleaseRequest, SetValues};
use kiln_api::deploy::{DeployRequest, Deployment, PromoteRequest};
use kiln_api::environments::CreateEnvironment;
use kiln_api::pool::PortRange;
use kiln_client::{Client, ClientError};
use serde_json::{Value, json};

use super::Browser;
use super::environments::token;
use crate::support::{TestServer, host};

/// The service file: a process that stays up, with the config application `web`.
const SERVICE: &str = "kind: service\nname: web\ncommand: [sleep, \"3600\"]\nreplicas: 1\nconfig: { app: web }\nupdate: { deadline: 2m }\n";

/// The board's cells as the page shows them: `service/env` to number, state, digest, who,
/// config release and healthy/replicas (a cell with nothing deployed: `null`).
const CELLS: &str = "return Object.fromEntries([...document.querySelectorAll('table.board td.cell')].map(c => [c.dataset.cell,
    c.dataset.number ? { number: Number(c.dataset.number), state: c.dataset.state, digest: c.dataset.digest,
      by: c.querySelector('.dep .by').textContent, config: c.querySelector('.dep .cfg')?.textContent ?? null,
      healthy: c.querySelector('.dep .healthy').textContent } : null]))";

/// The same from the API's board.
async fn cells_of(c: &Client) -> Value {
    let board = c.environment_board("shop").await.unwrap();
    let mut all = serde_json::Map::new();
    for env in &board.environments {
        let cell = board.cells.iter().find(|x| x.service == "web" && &x.environment == env);
        let v = cell.map_or(Value::Null, |x| {
            let d = &x.deployment;
            json!({ "number": d.number, "state": d.state, "digest": d.digest, "by": d.asked_by,
                "config": d.config.as_ref().map(|c| format!("r{}", c.release)),
                "healthy": format!("{}/{}", x.healthy, x.replicas) })
        });
        all.insert(format!("web/{env}"), v);
    }
    Value::Object(all)
}

/// The history table's rows: number, kind, state, digest, approved by, whether current.
const HISTORY: &str = "return [...document.querySelectorAll('table.deployments tr[data-deployment]')].map(r => [Number(r.dataset.deployment),
    r.querySelector('.kind').textContent, r.dataset.state, r.dataset.digest, r.querySelector('.approved').textContent, !!r.querySelector('.tag.cur')])";

/// The same from the API (newest first, as it answers).
async fn history_of(c: &Client, env: &str) -> Value {
    let list = c.deployment_history("shop", "web", env).await.unwrap();
    json!(
        list.iter()
            .map(|d| {
                let kind = match (d.kind.as_str(), d.rollback_of, &d.promoted_from) {
                    ("rollback", Some(n), _) => format!("rollback to {n}"),
                    ("promote", _, Some(from)) => format!("promote from {from}"),
                    (k, _, _) => k.to_string(),
                };
                json!([
                    d.number,
                    kind,
                    d.state,
                    d.digest,
                    d.approved_by.clone().unwrap_or_default(),
                    d.state == "succeeded"
                ])
            })
            .collect::<Vec<_>>()
    )
}

/// Waits until deployment `n` of `web` to `env` has ended; returns it.
async fn settled(c: &Client, env: &str, n: u32) -> Deployment {
    kiln_testkit::wait::until(
        &format!("deployment {n} of web to {env} to end"),
        Duration::from_secs(90),
        Duration::from_millis(100),
        || async {
            let d = c.deployment("shop", "web", env, n).await.unwrap();
            if d.is_final() { Ok(d) } else { Err(d) }
        },
    )
    .await
}

/// Deploys the service file to `env` with `image` as `c`'s user and waits for it to succeed.
async fn deploy(c: &Client, env: &str, image: &str) -> Deployment {
    let req = DeployRequest {
        yaml: SERVICE.into(),
        file: Some("web.yml".into()),
        environment: env.into(),
        image: image.into(),
        note: None,
        timeout_ms: None,
    };
    let d = c.deploy("shop", &req).await.unwrap();
    let d = settled(c, env, d.number).await;
    assert_eq!(d.state, "succeeded", "{d:#?}");
    d
}

/// Releases the config draft of `web` to `env` as `c`'s user.
async fn release(c: &Client, env: &str) {
    let req = ReleaseRequest { note: None, instances: vec![], all: false };
    c.config_release("shop", "web", env, &req).await.unwrap();
}

/// A script expression: the cell `key` shows deployment `n` in state `state`.
fn cell_shows(key: &str, n: u32, state: &str) -> String {
    format!(
        "const c = document.querySelector('td.cell[data-cell=\"{key}\"]'); return !!c && c.dataset.number === '{n}' && c.dataset.state === '{state}'"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_board_shows_what_runs_where_and_rolls_back_promotes_and_approves() {
    let s = TestServer::start_with(0).await;
    let mut facts = host("127.0.0.1", 8, &[]);
    // Host ports of its own (the service asks for none): kiln-server's tests/it/support.rs
    // lists the ranges other tests take.
    facts.ports = Some(PortRange { start: 47900, end: 47999 });
    let _agent = s.agent("node-1", 4, facts);
    s.admin.create_project("shop").await.unwrap();
    for (name, after, protected) in
        [("dev", None, false), ("staging", Some("dev"), false), ("prod", Some("staging"), true)]
    {
        let req = CreateEnvironment { name: name.into(), after: after.map(Into::into), protected };
        s.admin.create_environment("shop", &req).await.unwrap();
    }
    let dana_token = token(&s, "dana", "developer").await;
    let erin_token = token(&s, "erin", "developer").await;
    let dana = Client::new(&s.url, &dana_token).unwrap();
    let erin = Client::new(&s.url, &erin_token).unwrap();
    let d1 = kiln_testkit::push_image(&s.url, &s.admin_token, "shop/web", "1", "one").await;
    let d2 = kiln_testkit::push_image(&s.url, &s.admin_token, "shop/web", "2", "two").await;
    assert_ne!(d1, d2);

    // Config `web` released everywhere (prod's approved by a second person), dev twice.
    s.admin.set_config_template("shop", "web", "app.yaml", "level: {{ level }}\n").await.unwrap();
    let values = |yaml: &str| SetValues { yaml: yaml.into(), file: None };
    s.admin.set_config_values("shop", "web", None, &values("level: info\n")).await.unwrap();
    release(&dana, "dev").await;
    release(&dana, "staging").await;
    release(&dana, "prod").await;
    erin.config_decide("shop", "web", "prod", 1, true).await.unwrap();

    // dana deploys image 1 to dev, then (with dev's config release 2) image 2.
    let one = deploy(&dana, "dev", "shop/web:1").await;
    assert_eq!((one.number, one.digest.as_str()), (1, d1.as_str()));
    s.admin.set_config_values("shop", "web", Some("dev"), &values("level: debug\n")).await.unwrap();
    release(&dana, "dev").await;
    let two = deploy(&dana, "dev", "shop/web:2").await;
    assert_eq!((two.number, two.digest.as_str()), (2, d2.as_str()));
    assert_eq!(two.config.as_ref().map(|c| c.release), Some(2));

    let Some(b) = Browser::start("deploys").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &dana_token).await;

    // From the nav to the project's environments: the board, as the API's.
    b.click("#nav a[data-nav=projects]").await;
    b.wait("the projects", "return !!document.querySelector('tr[data-project=shop]')").await;
    b.click("tr[data-project=shop] a.pl-name").await;
    b.wait("the project", "return !!document.querySelector('a.tab[data-tab=environments]')").await;
    b.click("a.tab[data-tab=environments]").await;
    b.wait("deployment 2 in dev, healthy", &format!("{} && document.querySelector('td.cell[data-cell=\"web/dev\"] .healthy').textContent === '1/1'", cell_shows("web/dev", 2, "succeeded"))).await;
    assert_eq!(b.path().await, "/projects/shop/environments");
    let cells = b.js(CELLS).await;
    assert_eq!(cells, cells_of(&dana).await);
    assert_eq!(cells["web/dev"]["digest"], json!(d2));
    assert_eq!(cells["web/dev"]["by"], json!("dana"));
    assert_eq!(cells["web/dev"]["config"], json!("r2"));
    let heads = b.js("return [...document.querySelectorAll('table.board thead th[data-env]')].map(t => [t.dataset.env, !!t.querySelector('[data-protected]')])").await;
    assert_eq!(heads, json!([["dev", false], ["staging", false], ["prod", true]]));
    let shown = b
        .js("const c = document.querySelector('td.cell[data-cell=\"web/dev\"]'); return [c.querySelector('.img').textContent,
            c.querySelector('.digest').textContent, c.querySelector('.svc-link').getAttribute('href'), c.querySelector('.promote').textContent]")
        .await;
    assert_eq!(
        shown,
        json!([
            "web:2",
            format!("sha256:{}", &d2[7..19]),
            "/services/shop/web-dev",
            "Promote to staging"
        ])
    );
    b.shot("board").await;

    // Its history: both deployments, newest first, as the API's; Roll back to 1 only.
    b.click("td.cell[data-cell=\"web/dev\"] a.dep-num").await;
    b.wait(
        "the history",
        "return document.querySelectorAll('table.deployments tr[data-deployment]').length === 2",
    )
    .await;
    assert_eq!(b.path().await, "/projects/shop/deploys/web/dev");
    let history = b.js(HISTORY).await;
    assert_eq!(history, history_of(&dana, "dev").await);
    assert_eq!(
        (&history[0][0], &history[0][2], &history[1][0], &history[1][2]),
        (&json!(2), &json!("succeeded"), &json!(1), &json!("superseded"))
    );
    let offered = b.js("return [...document.querySelectorAll('button[data-rollback]')].map(x => Number(x.dataset.rollback))").await;
    assert_eq!(offered, json!([1]));
    b.shot("history").await;

    // Roll back to 1 (after confirming): deployment 3, a rollback with image 1 and config
    // release 1's files again (a config rollback release, 3).
    b.click("button[data-rollback=\"1\"]").await;
    let question = b.c.get_alert_text().await.unwrap();
    assert!(
        question.starts_with("Roll web in dev back to deployment 1? It runs deployment 1’s image (shop/web:1, sha256:")
            && question.contains("with config release r1 again"),
        "{question}"
    );
    b.c.accept_alert().await.unwrap();
    b.wait(
        "deployment 3, a rollback, current",
        "return !!document.querySelector('tr[data-deployment=\"3\"][data-kind=rollback][data-state=succeeded] .tag.cur')",
    )
    .await;
    let three = dana.deployment("shop", "web", "dev", 3).await.unwrap();
    assert_eq!(
        (three.kind.as_str(), three.rollback_of, three.digest.as_str()),
        ("rollback", Some(1), d1.as_str())
    );
    assert_eq!(three.config.as_ref().map(|c| c.release), Some(3));
    let (r1, r3) = (
        s.admin.config_release_detail("shop", "web", "dev", 1).await.unwrap(),
        s.admin.config_release_detail("shop", "web", "dev", 3).await.unwrap(),
    );
    assert_eq!(r3.files, r1.files, "the config rollback serves release 1's files");
    assert_eq!(b.js(HISTORY).await, history_of(&dana, "dev").await);
    let offered = b.js("return [...document.querySelectorAll('button[data-rollback]')].map(x => Number(x.dataset.rollback))").await;
    assert_eq!(offered, json!([2]), "not to 1, which deployment 3 brings back");
    b.shot("rolled-back").await;

    // The board shows deployment 3 in dev.
    b.click(".crumbs a[href=\"/projects/shop/environments\"]").await;
    b.wait("deployment 3 in dev", &cell_shows("web/dev", 3, "succeeded")).await;
    let cells = b.js(CELLS).await;
    assert_eq!(cells, cells_of(&dana).await);
    assert_eq!(
        (&cells["web/dev"]["digest"], &cells["web/dev"]["config"]),
        (&json!(d1), &json!("r3"))
    );
    let kind = b.js("return document.querySelector('td.cell[data-cell=\"web/dev\"] .dep .kind').textContent").await;
    assert_eq!(kind, json!("rollback to 1"));

    // Promote dev to staging: the dry run's changes (as the API's), then confirmed.
    b.click("button[data-promote=\"web/dev\"]").await;
    b.wait("the promotion's changes", "return !!document.querySelector('#promote-confirm')").await;
    let changes = b
        .js("return [...document.querySelectorAll('table.changes tr[data-change]')].map(r => [r.dataset.change,
            r.querySelector('.from [data-digest]')?.dataset.digest ?? r.querySelector('.from')?.textContent ?? null,
            r.querySelector('.to [data-digest]')?.dataset.digest ?? r.querySelector('.to')?.textContent ?? null, r.dataset.changed === 'true'])")
        .await;
    let dry =
        PromoteRequest { from: "dev".into(), to: "staging".into(), note: None, dry_run: true };
    let api = dana.promote("shop", "web", &dry).await.unwrap();
    assert!(api.deployment.is_none());
    let c = &api.changes;
    let rel = |n: Option<u32>| n.map_or_else(|| "–".to_string(), |n| format!("r{n}"));
    assert_eq!(
        changes,
        json!([
            [
                "digest",
                c.digest_from.clone().unwrap_or_else(|| "nothing deployed yet".into()),
                c.digest_to,
                c.digest_from.as_ref() != Some(&c.digest_to)
            ],
            ["config", rel(c.config_from), rel(c.config_to), c.config_from != c.config_to],
            ["spec", null, null, c.spec_changed],
        ])
    );
    assert_eq!((c.digest_to.as_str(), c.config_to), (d1.as_str(), Some(1)));
    let target = b.js("return [document.querySelector('#promote-to').textContent, document.querySelector('#promote-from').value, !!document.querySelector('.notice.waits')]").await;
    assert_eq!(target, json!(["staging", "dev", false]));
    b.shot("promote").await;

    // Picking staging (nothing succeeded there yet) shows the server's refusal.
    let refused =
        PromoteRequest { from: "staging".into(), to: "prod".into(), note: None, dry_run: true };
    let Err(ClientError::Api { status: 409, error }) = dana.promote("shop", "web", &refused).await
    else {
        panic!("promoting an empty staging is refused");
    };
    b.c.find(Locator::Css("#promote-from"))
        .await
        .unwrap()
        .select_by_value("staging")
        .await
        .unwrap();
    let said = b
        .wait(
            "the refusal",
            "const e = document.querySelector('.promote .error'); return e && e.textContent",
        )
        .await;
    let said = said.as_str().unwrap();
    assert!(
        said.contains("answered 409 conflict") && said.ends_with(&error.message),
        "{said} / {}",
        error.message
    );
    b.c.find(Locator::Css("#promote-from")).await.unwrap().select_by_value("dev").await.unwrap();
    b.wait("dev's promotion again", "return !!document.querySelector('#promote-confirm') && document.querySelector('#promote-to').textContent === 'staging'").await;
    b.type_into("#promote-note", "ready for staging").await;
    b.click("#promote-confirm").await;
    let outcome = b.wait("the promotion", "const o = document.querySelector('.promote-area .notice.outcome'); return o && o.dataset.outcome").await;
    assert_eq!(outcome, json!("promoted"));
    b.wait("deployment 1 in staging", &cell_shows("web/staging", 1, "succeeded")).await;
    let staged = dana.deployment("shop", "web", "staging", 1).await.unwrap();
    assert_eq!(
        (
            staged.kind.as_str(),
            staged.promoted_from.as_deref(),
            staged.digest.as_str(),
            staged.note.as_deref()
        ),
        ("promote", Some("dev"), d1.as_str(), Some("ready for staging"))
    );
    assert_eq!(staged.config.as_ref().map(|c| c.release), Some(1), "staging's own config");
    assert_eq!(b.js(CELLS).await, cells_of(&dana).await);

    // Promote staging to prod, which is protected: it waits; dana, who asked, cannot approve.
    b.click("button[data-promote=\"web/staging\"]").await;
    b.wait("the promotion to prod", "return !!document.querySelector('#promote-confirm') && document.querySelector('#promote-to').textContent === 'prod'").await;
    let waits = b.js("return document.querySelector('.notice.waits').textContent").await;
    assert_eq!(
        waits,
        json!("prod is protected: the deployment waits until someone other than you approves it.")
    );
    b.click("#promote-confirm").await;
    let outcome = b.wait("the pending promotion", "const o = document.querySelector('.promote-area .notice.outcome'); return o && o.dataset.outcome").await;
    assert_eq!(outcome, json!("pending"));
    let pending = b
        .wait(
            "prod's pending deployment",
            "const c = document.querySelector('td.cell.pending[data-cell=\"web/prod\"]'); const a = c && c.querySelector('.dep-active[data-state=pending]');
             return a && { number: a.dataset.active, approve: !!c.querySelector('[data-approve]'), reject: !!c.querySelector('[data-reject]'),
               mine: c.querySelector('.mine')?.textContent ?? null, asker: a.querySelector('.asker').textContent }",
        )
        .await;
    assert_eq!(
        pending,
        json!({ "number": "1", "approve": false, "reject": true, "mine": "Someone other than you must approve it.", "asker": "dana" })
    );
    let prod = dana.deployment("shop", "web", "prod", 1).await.unwrap();
    assert_eq!((prod.state.as_str(), prod.asked_by.as_str()), ("pending", "dana"));
    b.shot("pending").await;

    // erin sees Approve and approves: it runs, and is prod's current deployment.
    b.click(".who button").await;
    b.sign_in(&s.url, &erin_token).await;
    b.c.goto(&format!("{}/projects/shop/environments", s.url)).await.unwrap();
    b.wait(
        "Approve for erin",
        "return !!document.querySelector('button[data-approve=\"web/prod/1\"]')",
    )
    .await;
    b.click("button[data-approve=\"web/prod/1\"]").await;
    b.wait("deployment 1 in prod", &cell_shows("web/prod", 1, "succeeded")).await;
    let approver = b.js("return document.querySelector('td.cell[data-cell=\"web/prod\"] .approver').textContent").await;
    assert_eq!(approver, json!("erin"));
    let prod = settled(&erin, "prod", 1).await;
    assert_eq!((prod.state.as_str(), prod.approved_by.as_deref()), ("succeeded", Some("erin")));
    assert_eq!(b.js(CELLS).await, cells_of(&erin).await);
    assert_eq!(b.js("return document.querySelectorAll('td.cell.pending').length").await, json!(0));
    b.shot("approved").await;

    // The services list names the deployment that owns each deployed service.
    b.click("#nav a[data-nav=services]").await;
    let owner = b
        .wait("web-prod's owner", "const a = document.querySelector('tr[data-service=\"shop/web-prod\"] a.owner'); return a && [a.textContent, a.getAttribute('href')]")
        .await;
    assert_eq!(owner, json!(["deploy web to prod", "/projects/shop/deploys/web/prod"]));

    // A phone: the board scrolls inside its box, the page does not.
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.goto(&format!("{}/projects/shop/environments", s.url)).await.unwrap();
    b.wait("the board", &cell_shows("web/prod", 1, "succeeded")).await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let shot = b.shot("phone").await;
    assert!(widths[1].as_u64() <= widths[0].as_u64(), "{widths}; see {}", shot.display());
    b.c.set_window_size(1280, 800).await.unwrap();

    // A viewer sees the board and the history, and changes nothing.
    let viewer = token(&s, "watcher", "viewer").await;
    b.click(".who button").await;
    b.sign_in(&s.url, &viewer).await;
    b.c.goto(&format!("{}/projects/shop/environments", s.url)).await.unwrap();
    b.wait("the board", &cell_shows("web/dev", 3, "succeeded")).await;
    assert_eq!(b.js("return document.querySelectorAll('[data-promote], [data-approve], [data-reject]').length").await, json!(0));
    b.c.goto(&format!("{}/projects/shop/deploys/web/dev", s.url)).await.unwrap();
    b.wait(
        "the history",
        "return document.querySelectorAll('table.deployments tr[data-deployment]').length === 3",
    )
    .await;
    assert_eq!(
        b.js("return document.querySelectorAll('button[data-rollback]').length").await,
        json!(0)
    );

    b.c.clone().close().await.unwrap();
    s.stop().await;
}
