//! The config editor against a real server: a new application made from the page, a
//! template with a syntax error refused with its line (nothing stored), values, the rendered
//! preview of an environment and a render error's line, diffs (the draft against the current
//! release, two environments) with coloured lines, releases with a note, a rollback, a
//! protected environment's release approved by another person, the audit log, and a viewer.

use kiln_api::config::SetValues;
use kiln_api::environments::CreateEnvironment;
use kiln_client::ClientError;
use serde_json::{Value, json};

use super::Browser;
use crate::support::TestServer;

/// The template typed first: line 3 does not close its `{{`.
const BROKEN: &str = "name: api\nenv: {{ kiln.environment }}\ndb: {{ db_host }\nport: {{ port }}\n";
/// The same, fixed.
const TEMPLATE: &str =
    "name: api\nenv: {{ kiln.environment }}\ndb: {{ db_host }}\nport: {{ port }}\n";

/// The diagnostics under the editor of `key`: file, line, column and the whole line of text.
fn diags(key: &str) -> String {
    format!(
        "const l = document.querySelectorAll('[data-editor=\"{key}\"] .ed-diags li');
         return l.length ? [...l].map(li => [li.dataset.file, Number(li.dataset.line), Number(li.dataset.column), li.textContent]) : null"
    )
}

/// The lines of a rendered or diffed file as the page shows them (the text cells).
fn lines(css: &str) -> String {
    format!(
        "const f = document.querySelector('{css}'); return f && [...f.querySelectorAll('td.tx')].map(t => t.textContent)"
    )
}

/// Clicks a tab of the application page and waits until it is the one shown.
async fn tab(b: &Browser, name: &str) {
    b.js("window.scrollTo(0, 0)").await;
    b.click(&format!("button[data-tab={name}]")).await;
    b.wait(
        &format!("the {name} tab"),
        &format!("return !document.querySelector('#tab-{name}').hidden"),
    )
    .await;
}

/// Picks an environment in the bar.
async fn env(b: &Browser, name: &str) {
    b.js("window.scrollTo(0, 0)").await;
    b.click(&format!("button.env-btn[data-env={name}]")).await;
}

/// Types `text` into the editor `key` (replacing what it holds) and saves it.
async fn edit_and_save(b: &Browser, key: &str, text: &str) {
    b.type_into(&format!("[data-editor=\"{key}\"] textarea"), text).await;
    b.click(&format!("[data-editor=\"{key}\"] .ed-save")).await;
}

/// Waits until the editor `key` has nothing unsaved.
async fn saved(b: &Browser, key: &str) {
    b.wait(
        &format!("{key} saved"),
        &format!(
            "const e = document.querySelector('[data-editor=\"{key}\"]'); return e.dataset.dirty === 'false' && !e.querySelector('.ed-diags .error')"
        ),
    )
    .await;
}

/// The history table's rows: number, state, kind, note, and whether it is current.
const HISTORY: &str = "return [...document.querySelectorAll('table.releases tr[data-release]')].map(r => [Number(r.dataset.release), r.dataset.state,
    r.querySelector('.kind').textContent, r.querySelector('.note').textContent, !!r.querySelector('.tag.cur')])";

/// The same from the API, newest first.
async fn history_of(s: &TestServer, env: &str) -> Value {
    let list = s.admin.config_history("shop", "api", env).await.unwrap();
    json!(
        list.iter()
            .rev()
            .map(|r| {
                let kind = match r.rollback_of {
                    Some(n) => format!("rollback to {n}"),
                    None => "release".to_string(),
                };
                json!([r.number, r.state, kind, r.note.clone().unwrap_or_default(), r.current])
            })
            .collect::<Vec<_>>()
    )
}

async fn token(s: &TestServer, name: &str, role: &str) -> String {
    let req = kiln_api::CreateToken { name: name.into(), role: role.into(), project: None };
    s.admin.create_token(&req).await.unwrap().secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_editor_edits_previews_diffs_releases_and_rolls_back() {
    let s = TestServer::start_with(0).await;
    s.admin.create_project("shop").await.unwrap();
    for (name, after, protected) in
        [("dev", None, false), ("staging", Some("dev"), false), ("prod", Some("staging"), true)]
    {
        let req = CreateEnvironment { name: name.into(), after: after.map(Into::into), protected };
        s.admin.create_environment("shop", &req).await.unwrap();
    }
    let alice = token(&s, "alice", "developer").await;
    let bob = token(&s, "bob", "developer").await;

    let Some(b) = Browser::start("config").await else {
        s.stop().await;
        return;
    };
    b.sign_in(&s.url, &alice).await;

    // A new application from the project's Config tab: the editor opens on its first file.
    b.click("#nav a[data-nav=projects]").await;
    b.wait("the projects", "return !!document.querySelector('tr[data-project=shop]')").await;
    b.click("tr[data-project=shop] a[href$=config]").await;
    b.wait("the new application form", "return !!document.querySelector('#app-create')").await;
    b.type_into("#app-name", "api").await;
    b.click("#app-create button[type=submit]").await;
    b.wait(
        "the editor of app.yaml",
        "return !!document.querySelector('[data-editor=\"template:app.yaml\"] textarea')",
    )
    .await;
    assert_eq!(b.path().await, "/projects/shop/config/api");

    // A syntax error: the error and its line under the editor, the line marked, nothing stored.
    edit_and_save(&b, "template:app.yaml", BROKEN).await;
    let shown = b.wait("the syntax error", &diags("template:app.yaml")).await;
    let Err(ClientError::Api { status: 422, error }) =
        s.admin.set_config_template("shop", "api", "app.yaml", BROKEN).await
    else {
        panic!("the API takes the broken template");
    };
    let expected: Vec<Value> = error
        .diagnostics
        .iter()
        .map(|d| {
            json!([
                d.file,
                d.line,
                d.column,
                format!("{}:{}:{}: {}", d.file, d.line, d.column, d.message)
            ])
        })
        .collect();
    assert_eq!(shown, json!(expected), "the page lists what the API says");
    assert_eq!(error.diagnostics[0].line, 3, "{error:?}");
    let marked = b.js("return [...document.querySelectorAll('[data-editor=\"template:app.yaml\"] .ed-gutter .bad')].map(l => l.textContent)").await;
    assert_eq!(marked, json!(["3"]));
    let cursor = b.js("const t = document.activeElement; return t.matches('[data-editor=\"template:app.yaml\"] textarea') && t.value.slice(0, t.selectionStart).split('\\n').length").await;
    assert_eq!(cursor, json!(3), "the cursor is on the line in error");
    let err = b.js("return document.querySelector('[data-editor=\"template:app.yaml\"] .ed-diags .error').textContent").await;
    assert!(err.as_str().unwrap().contains("nothing was stored"), "{err}");
    let stored = s.admin.config_app("shop", "api").await;
    assert!(
        matches!(stored, Err(ClientError::Api { status: 404, .. })),
        "nothing stored: {stored:?}"
    );
    let dirty = b
        .js("return document.querySelector('[data-editor=\"template:app.yaml\"]').dataset.dirty")
        .await;
    assert_eq!(dirty, json!("true"), "the text stays in the editor, unsaved");
    b.shot("syntax-error").await;

    edit_and_save(&b, "template:app.yaml", TEMPLATE).await;
    saved(&b, "template:app.yaml").await;
    let app = s.admin.config_app("shop", "api").await.unwrap();
    assert_eq!(
        (app.items[0].file.as_str(), app.items[0].template.as_str()),
        ("app.yaml", TEMPLATE)
    );

    // Values: shared, then staging's; a values file that is not YAML is refused with its line.
    tab(&b, "values").await;
    edit_and_save(&b, "values:shared", "port: [8080\n").await;
    let shown = b.wait("the values error", &diags("values:shared")).await;
    assert_eq!(shown[0][0], json!("values/shared.yml"), "{shown}");
    let marked = b.js("return [...document.querySelectorAll('[data-editor=\"values:shared\"] .ed-gutter .bad')].map(l => Number(l.textContent))").await;
    assert_eq!(marked, json!([shown[0][1]]));
    assert_eq!(s.admin.config_app("shop", "api").await.unwrap().shared_values, "");
    edit_and_save(&b, "values:shared", "port: 8080\n").await;
    saved(&b, "values:shared").await;
    env(&b, "staging").await;
    edit_and_save(&b, "values:staging", "db_host: db.staging\n").await;
    saved(&b, "values:staging").await;
    let app = s.admin.config_app("shop", "api").await.unwrap();
    assert_eq!(app.shared_values, "port: 8080\n");
    assert_eq!(
        (app.values[0].environment.as_str(), app.values[0].yaml.as_str()),
        ("staging", "db_host: db.staging\n")
    );

    // The preview of staging is the rendered file.
    tab(&b, "preview").await;
    let shown = b
        .wait("the rendered app.yaml", &lines("#tab-preview .code-file[data-file=\"app.yaml\"]"))
        .await;
    let rendered = s.admin.config_render("shop", "api", "staging").await.unwrap();
    let file: Vec<&str> = rendered.files["app.yaml"].lines().collect();
    assert_eq!(shown, json!(file));
    assert!(file.contains(&"db: db.staging") && file.contains(&"env: staging"), "{file:?}");
    b.shot("preview").await;
    // dev has no db_host: the render error names the file and line; its button shows it in the editor.
    env(&b, "dev").await;
    let line = b
        .wait(
            "the render error",
            "const li = document.querySelector('#tab-preview .error li[data-file=\"app.yaml\"]'); return li && Number(li.dataset.line)",
        )
        .await;
    assert_eq!(line, json!(3), "db: {{{{ db_host }}}} is line 3");
    b.click("#tab-preview .error li[data-file=\"app.yaml\"] button").await;
    b.wait("the templates tab", "return !document.querySelector('#tab-templates').hidden").await;
    let marked = b.js("return [...document.querySelectorAll('[data-editor=\"template:app.yaml\"] .ed-gutter .bad')].map(l => l.textContent)").await;
    assert_eq!(marked, json!(["3"]));

    // Release staging with a note: the history lists it, current.
    env(&b, "staging").await;
    tab(&b, "releases").await;
    b.wait("the release form", "return !!document.querySelector('#release')").await;
    b.type_into("#release-note", "first release").await;
    b.click("#release").await;
    b.wait("release 1", "return !!document.querySelector('tr[data-release=\"1\"] .tag.cur')").await;
    assert_eq!(b.js(HISTORY).await, history_of(&s, "staging").await);
    assert_eq!(b.js(HISTORY).await[0], json!([1, "released", "release", "first release", true]));
    let bar = b
        .js("return document.querySelector('button.env-btn[data-env=staging] .rel').textContent")
        .await;
    assert_eq!(bar, json!("r1"));

    // A changed value: the diff against release 1 shows the line, removed in red, added in green.
    s.admin
        .set_config_values(
            "shop",
            "api",
            Some("dev"),
            &SetValues { yaml: "db_host: db.dev\n".into(), file: None },
        )
        .await
        .unwrap();
    tab(&b, "values").await;
    edit_and_save(&b, "values:staging", "db_host: db2.staging\n").await;
    saved(&b, "values:staging").await;
    tab(&b, "diff").await;
    let shown = b
        .wait("the diff", "const f = document.querySelector('#tab-diff .diff-file[data-file=\"app.yaml\"]'); return f && {
            del: [...f.querySelectorAll('tr.del td.tx')].map(t => t.textContent),
            add: [...f.querySelectorAll('tr.add td.tx')].map(t => t.textContent),
            from: document.querySelector('#tab-diff .diff-from').textContent, to: document.querySelector('#tab-diff .diff-to').textContent,
            red: getComputedStyle(f.querySelector('tr.del td.tx')).backgroundColor,
            green: getComputedStyle(f.querySelector('tr.add td.tx')).backgroundColor }")
        .await;
    let d = s.admin.config_diff("shop", "api", "staging", None, None).await.unwrap();
    let changed = |sign: char| -> Vec<&str> {
        d.unified
            .lines()
            .filter(|l| l.starts_with(sign) && !l.starts_with("+++") && !l.starts_with("---"))
            .collect()
    };
    assert_eq!((&shown["from"], &shown["to"]), (&json!(d.from), &json!(d.to)));
    assert_eq!(shown["del"], json!(changed('-')));
    assert_eq!(shown["add"], json!(changed('+')));
    assert_eq!(shown["del"], json!(["-db: db.staging"]));
    assert_eq!(
        (&shown["red"], &shown["green"]),
        (&json!("rgb(255, 235, 233)"), &json!("rgb(230, 255, 236)"))
    );
    b.shot("diff").await;
    // Between two environments: dev's draft (staging comes after dev) against staging's.
    b.click("#tab-diff input[value=env]").await;
    let shown = b
        .wait("the diff of dev and staging", "const f = document.querySelector('#tab-diff .diff-file[data-file=\"app.yaml\"]');
            return f && document.querySelector('#tab-diff .diff-from').textContent === 'dev' && [...f.querySelectorAll('tr.del td.tx, tr.add td.tx')].map(t => t.textContent)")
        .await;
    let d = s.admin.config_diff("shop", "api", "staging", Some("dev"), None).await.unwrap();
    let both: Vec<&str> = d
        .unified
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(shown, json!(both));
    assert!(both.contains(&"-env: dev") && both.contains(&"+db: db2.staging"), "{both:?}");

    // Release 2, then roll back to 1: a new release 3 with release 1's files.
    tab(&b, "releases").await;
    b.wait("the changes to release", "return !!document.querySelector('#tab-releases .diff-file')")
        .await;
    b.type_into("#release-note", "new database").await;
    b.click("#release").await;
    b.wait("release 2", "return !!document.querySelector('tr[data-release=\"2\"] .tag.cur')").await;
    b.click("button[data-rollback=\"1\"]").await;
    assert_eq!(
        b.c.get_alert_text().await.unwrap(),
        "Roll back api in staging to release 1? A new release with release 1’s files."
    );
    b.c.accept_alert().await.unwrap();
    b.wait(
        "release 3, a rollback",
        "return !!document.querySelector('tr[data-release=\"3\"][data-kind=rollback] .tag.cur')",
    )
    .await;
    let history = b.js(HISTORY).await;
    assert_eq!(history, history_of(&s, "staging").await);
    assert_eq!(
        (&history[0][0], &history[0][2], &history[0][4]),
        (&json!(3), &json!("rollback to 1"), &json!(true))
    );
    let offered = b
        .js("return [...document.querySelectorAll('button[data-rollback]')].map(x => Number(x.dataset.rollback))")
        .await;
    assert_eq!(offered, json!([2]), "release 1's files are current again: only 2 differs");
    let one = s.admin.config_release_detail("shop", "api", "staging", 1).await.unwrap();
    let three = s.admin.config_release_detail("shop", "api", "staging", 3).await.unwrap();
    assert_eq!(three.files, one.files, "the rollback serves release 1's files");
    b.shot("rolled-back").await;

    // prod is protected: alice's release waits; she cannot approve it, bob can.
    s.admin
        .set_config_values(
            "shop",
            "api",
            Some("prod"),
            &SetValues { yaml: "db_host: db.prod\n".into(), file: None },
        )
        .await
        .unwrap();
    env(&b, "prod").await;
    b.wait("prod's release form", "return !!document.querySelector('#release') && document.querySelector('#tab-releases h2').textContent.startsWith('Release the draft to prod')")
        .await;
    b.type_into("#release-note", "to prod").await;
    b.click("#release").await;
    let outcome = b
        .wait("the release waiting", "const o = document.querySelector('.notice.outcome'); return o && document.querySelector('[data-pending=\"1\"]') && o.dataset.outcome")
        .await;
    assert_eq!(outcome, json!("pending"));
    assert_eq!(
        b.js("return !!document.querySelector('#approve-release')").await,
        json!(false),
        "not by who asked"
    );
    let waits = b
        .js("return document.querySelector('button.env-btn[data-env=prod] .pend').textContent")
        .await;
    assert_eq!(waits, json!("1 waiting"));
    let prod = s.admin.config_history("shop", "api", "prod").await.unwrap();
    assert_eq!((prod[0].state.as_str(), prod[0].requested_by.as_str()), ("pending", "alice"));
    b.shot("pending").await;
    b.click(".who button").await;
    b.sign_in(&s.url, &bob).await;
    b.c.goto(&format!("{}/projects/shop/config/api?env=prod&tab=releases", s.url)).await.unwrap();
    b.wait("Approve", "return !!document.querySelector('#approve-release')").await;
    b.click("#approve-release").await;
    b.wait(
        "release 1 of prod current",
        "return !!document.querySelector('tr[data-release=\"1\"][data-state=released] .tag.cur')",
    )
    .await;
    let prod = s.admin.config_history("shop", "api", "prod").await.unwrap();
    assert_eq!((prod[0].state.as_str(), prod[0].decided_by.as_deref()), ("released", Some("bob")));
    assert_eq!(b.js(HISTORY).await, history_of(&s, "prod").await);

    // Leaving the page with unsaved changes asks first; Revert brings back what is stored.
    tab(&b, "templates").await;
    b.type_into("[data-editor=\"template:app.yaml\"] textarea", "name: changed\n").await;
    b.click("#nav a[data-nav=runs]").await;
    assert_eq!(
        b.c.get_alert_text().await.unwrap(),
        "Leave this page? Your unsaved changes are lost."
    );
    b.c.dismiss_alert().await.unwrap();
    assert_eq!(b.path().await, "/projects/shop/config/api");
    b.click("[data-editor=\"template:app.yaml\"] .ed-revert").await;
    let text = b
        .js("const e = document.querySelector('[data-editor=\"template:app.yaml\"]'); return [e.dataset.dirty, e.querySelector('textarea').value]")
        .await;
    assert_eq!(text, json!(["false", TEMPLATE]));

    // The audit log, newest first, is the API's.
    tab(&b, "audit").await;
    let shown = b
        .wait("the audit log", "const r = document.querySelectorAll('table.audit tr[data-audit]'); return r.length ? [...r].map(t => [t.querySelector('.action').textContent, t.querySelector('.detail').textContent]) : null")
        .await;
    let audit = s.admin.config_audit("shop", "api").await.unwrap();
    let expected: Vec<Value> = audit.iter().rev().map(|a| json!([a.action, a.detail])).collect();
    assert_eq!(shown, json!(expected));
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    for a in ["template", "values", "release", "rollback", "release requested", "approve"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }

    // A phone: the editor and its tabs fit the width.
    b.c.set_window_size(390, 844).await.unwrap();
    b.c.goto(&format!("{}/projects/shop/config/api", s.url)).await.unwrap();
    b.wait(
        "the editor",
        "return !!document.querySelector('[data-editor=\"template:app.yaml\"] textarea')",
    )
    .await;
    let widths = b.js("return [window.innerWidth, document.documentElement.scrollWidth]").await;
    let shot = b.shot("phone").await;
    assert!(widths[1].as_u64() <= widths[0].as_u64(), "{widths}; see {}", shot.display());
    b.c.set_window_size(1280, 800).await.unwrap();

    // A viewer reads everything and changes nothing.
    let viewer = token(&s, "watcher", "viewer").await;
    b.click(".who button").await;
    b.sign_in(&s.url, &viewer).await;
    b.c.goto(&format!("{}/projects/shop/config/api?env=staging&tab=releases", s.url))
        .await
        .unwrap();
    b.wait(
        "the history",
        "return document.querySelectorAll('table.releases tr[data-release]').length === 3",
    )
    .await;
    let controls = b
        .js("return document.querySelectorAll('.ed-save, .ed-remove, #new-file, #release, button[data-rollback], #approve-release').length")
        .await;
    assert_eq!(controls, json!(0), "viewers change nothing");
    let readonly = b.js("return document.querySelector('[data-editor=\"template:app.yaml\"] textarea').readOnly").await;
    assert_eq!(readonly, json!(true));

    b.c.clone().close().await.unwrap();
    s.stop().await;
}
