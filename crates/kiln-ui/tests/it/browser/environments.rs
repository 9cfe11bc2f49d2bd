//! The environments page against a real server: a project's environments in their order
//! with their protected badges and variables (secrets as `***`), a developer setting and
//! unsetting plain variables, an admin creating an environment and setting a secret, and a
//! viewer who sees everything and changes nothing.

use kiln_api::environments::{CreateEnvironment, SetVariable};
use serde_json::{Value, json};

use super::Browser;
use crate::support::TestServer;

/// The environment cards as the page shows them, in page order: name, protected, what it
/// comes after, and each variable's name, value and secret flag.
const CARDS: &str = "return [...document.querySelectorAll('section.env')].map(c => ({
    name: c.dataset.env,
    protected: !!c.querySelector('h2 [data-protected]'),
    after: c.querySelector('h2 .after').textContent,
    variables: [...c.querySelectorAll('tr[data-var]')].map(r => [r.dataset.var, r.querySelector('.v').textContent, r.dataset.secret === 'true']) }))";

/// The same from the API.
async fn cards_of(s: &TestServer) -> Value {
    let envs = s.admin.environments("shop").await.unwrap();
    json!(
        envs.iter()
            .map(|e| json!({
                "name": e.name,
                "protected": e.protected,
                "after": e.after.as_ref().map_or_else(|| "first".to_string(), |a| format!("after {a}")),
                "variables": e.variables.iter().map(|v| json!([v.name, v.value, v.secret])).collect::<Vec<_>>(),
            }))
            .collect::<Vec<_>>()
    )
}

pub(super) async fn token(s: &TestServer, name: &str, role: &str) -> String {
    let req = kiln_api::CreateToken { name: name.into(), role: role.into(), project: None };
    s.admin.create_token(&req).await.unwrap().secret
}

/// The text of the first `.error` box once there is one.
async fn error_text(b: &Browser) -> String {
    let v = b
        .wait("an error", "const e = document.querySelector('.error'); return e && e.textContent")
        .await;
    v.as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environments_page_lists_them_in_order_with_their_variables_and_changes_them() {
    let s = TestServer::start_with(0).await;
    s.admin.create_project("shop").await.unwrap();
    for (name, after, protected) in
        [("dev", None, false), ("staging", Some("dev"), false), ("prod", Some("staging"), true)]
    {
        let req = CreateEnvironment { name: name.into(), after: after.map(Into::into), protected };
        s.admin.create_environment("shop", &req).await.unwrap();
    }
    let set = |value: &str, secret: bool| SetVariable { value: value.into(), secret };
    s.admin.set_env_variable("shop", "dev", "LOG_LEVEL", &set("debug", false)).await.unwrap();
    s.admin.set_env_variable("shop", "prod", "REGION", &set("eu", false)).await.unwrap();
    s.admin.set_env_variable("shop", "prod", "DB_PASSWORD", &set("hunter2", true)).await.unwrap();
    let developer = token(&s, "dana", "developer").await;

    let Some(b) = Browser::start("environments").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &developer).await;

    // From the nav: Projects, the project, its Environments tab.
    b.click("#nav a[data-nav=projects]").await;
    b.wait("the projects", "return !!document.querySelector('tr[data-project=shop]')").await;
    b.click("tr[data-project=shop] a.pl-name").await;
    let order = b
        .wait(
            "the project's environments in order",
            "const o = document.querySelector('.env-order'); return o && [...o.querySelectorAll('.env-chip')].map(c => c.dataset.env)",
        )
        .await;
    assert_eq!(order, json!(["dev", "staging", "prod"]));
    b.click(".project-tabs a[data-tab=environments]").await;
    b.wait("three environments", "return document.querySelectorAll('section.env').length === 3")
        .await;
    assert_eq!(b.path().await, "/projects/shop/environments");
    let cards = b.js(CARDS).await;
    assert_eq!(cards, cards_of(&s).await, "the page shows what the API says, in its order");
    assert_eq!(cards[2]["variables"][0], json!(["DB_PASSWORD", "***", true]), "{cards}");
    assert_eq!(
        cards.as_array().unwrap().iter().map(|c| &c["protected"]).collect::<Vec<_>>(),
        [false, false, true]
    );
    let text = b.js("return document.body.innerText").await;
    assert!(!text.as_str().unwrap().contains("hunter2"), "a secret's value is never shown");
    b.shot("list").await;

    // A developer sets a plain variable, and unsets one (after confirming).
    b.type_into("section[data-env=staging] .var-name", "FEATURE_X").await;
    b.type_into("section[data-env=staging] .var-value", "on").await;
    b.click("section[data-env=staging] .set-var").await;
    b.wait(
        "FEATURE_X in staging",
        "const r = document.querySelector('section[data-env=staging] tr[data-var=FEATURE_X] .v'); return r && r.textContent === 'on'",
    )
    .await;
    let focused =
        b.js("return document.activeElement.matches('section[data-env=staging] .var-name')").await;
    assert_eq!(focused, json!(true), "the focus is back in the form for the next one");
    b.click("section[data-env=dev] button[data-unset=LOG_LEVEL]").await;
    assert_eq!(b.c.get_alert_text().await.unwrap(), "Unset LOG_LEVEL in dev?");
    b.c.accept_alert().await.unwrap();
    b.wait(
        "LOG_LEVEL gone from dev",
        "return !!document.querySelector('section[data-env=dev] [data-vars=none]')",
    )
    .await;
    assert_eq!(b.js(CARDS).await, cards_of(&s).await);
    let staging = s.admin.environment("shop", "staging").await.unwrap();
    let v = &staging.variables[0];
    assert_eq!((v.name.as_str(), v.value.as_str(), v.secret), ("FEATURE_X", "on", false));

    // A refused name shows the API's answer; nothing changes.
    b.type_into("section[data-env=staging] .var-name", "log level").await;
    b.type_into("section[data-env=staging] .var-value", "x").await;
    b.click("section[data-env=staging] .set-var").await;
    let err = error_text(&b).await;
    assert!(
        err.contains("Setting log level failed")
            && err.contains(
                "PUT /projects/shop/environments/staging/variables/log%20level answered 400"
            ),
        "{err}"
    );
    assert_eq!(b.js(CARDS).await, cards_of(&s).await);

    // A developer changes no secret and makes no environment.
    let admin_only = b
        .js("return document.querySelectorAll('button[data-unset=DB_PASSWORD], .var-secret, #env-create').length")
        .await;
    assert_eq!(admin_only, json!(0));

    // An admin creates an environment after prod, protected, and sets a secret there.
    b.click(".who button").await;
    b.sign_in(&s.url, &s.admin_token).await;
    b.c.goto(&format!("{}/projects/shop/environments", s.url)).await.unwrap();
    b.wait("the form", "return !!document.querySelector('#env-create')").await;
    let after = b.js("return document.querySelector('#env-after').value").await;
    assert_eq!(after, json!("prod"), "a new one comes after the last by default");
    b.type_into("#env-name", "qa").await;
    b.click("#env-protected").await;
    b.click("#env-create button[type=submit]").await;
    b.wait("qa", "return !!document.querySelector('section[data-env=qa] h2 [data-protected]')")
        .await;
    let qa = s.admin.environment("shop", "qa").await.unwrap();
    assert_eq!((qa.after.as_deref(), qa.protected), (Some("prod"), true));
    b.type_into("section[data-env=qa] .var-name", "API_KEY").await;
    b.click("section[data-env=qa] .var-secret").await;
    let kind = b.js("return document.querySelector('section[data-env=qa] .var-value').type").await;
    assert_eq!(kind, json!("password"), "a secret is not shown while it is typed");
    b.type_into("section[data-env=qa] .var-value", "s3cr3t").await;
    b.click("section[data-env=qa] .set-var").await;
    b.wait(
        "API_KEY as a secret",
        "return !!document.querySelector('section[data-env=qa] tr[data-var=API_KEY][data-secret=true]')",
    )
    .await;
    assert_eq!(b.js(CARDS).await, cards_of(&s).await);
    let text = b.js("return document.body.innerText").await;
    assert!(!text.as_str().unwrap().contains("s3cr3t"));
    // Another environment after prod: refused with the API's reason.
    b.type_into("#env-name", "qa").await;
    b.click("#env-create button[type=submit]").await;
    let err = error_text(&b).await;
    assert!(
        err.contains("Creating the environment failed") && err.contains("answered 409"),
        "{err}"
    );
    b.shot("admin").await;

    // A phone: the environments stack; the page does not scroll sideways.
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.refresh().await.unwrap();
    b.wait("four environments", "return document.querySelectorAll('section.env').length === 4")
        .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let shot = b.shot("phone").await;
    assert!(widths[1].as_u64() <= widths[0].as_u64(), "{widths}; see {}", shot.display());
    b.c.set_window_size(1280, 800).await.unwrap();

    // A viewer sees them all and no form or button.
    let viewer = token(&s, "watcher", "viewer").await;
    b.click(".who button").await;
    b.sign_in(&s.url, &viewer).await;
    b.c.goto(&format!("{}/projects/shop/environments", s.url)).await.unwrap();
    b.wait("four environments", "return document.querySelectorAll('section.env').length === 4")
        .await;
    assert_eq!(b.js(CARDS).await, cards_of(&s).await);
    let controls =
        b.js("return document.querySelectorAll('section.env form, section.env button, #env-create').length").await;
    assert_eq!(controls, json!(0), "viewers change nothing");

    b.c.clone().close().await.unwrap();
    s.stop().await;
}
