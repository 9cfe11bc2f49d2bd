//! `kiln env` and `kiln config` against a real `kiln server`: environments with secrets that
//! show as *** and never reach the server's log; config items and values checked with
//! file:line, renders, diffs, releases (a no-op when nothing changed), a protected environment
//! approved by a second user, rollbacks, gray releases, the history and the audit log; a
//! service serving its config release, then the next one.

use std::io::Write;
use std::process::Stdio;

use crate::server::Server;
use crate::support::assert_code;

const TEMPLATE: &str = "\
name: {{ kiln.app }}
env: {{ kiln.environment }}
port: {{ port }}
db: {{ db.host }}
";

/// `kiln ARGS -p shop` as the admin, with its exit code checked.
fn shop(s: &Server, args: &[&str], code: i32) -> (String, String) {
    let mut all = args.to_vec();
    all.extend(["-p", "shop"]);
    s.ok(&all, code)
}

/// A developer token named `name`: its secret.
fn developer(s: &Server, name: &str) -> String {
    let (stdout, _) = s.ok(&["token", "create", name, "--role", "developer", "-o", "json"], 0);
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    created["secret"].as_str().unwrap().to_string()
}

#[test]
fn env_commands_keep_the_order_and_show_secrets_as_stars_only() {
    let s = Server::start_logged();
    s.ok(&["project", "create", "shop"], 0);
    shop(&s, &["env", "create", "dev"], 0);
    shop(&s, &["env", "create", "staging", "--after", "dev"], 0);
    let (stdout, _) = shop(&s, &["env", "create", "prod", "--after", "staging", "--protected"], 0);
    assert!(stdout.contains("environment shop/prod created after staging, protected"), "{stdout}");
    let (_, stderr) = shop(&s, &["env", "create", "qa", "--after", "nope"], 2);
    assert!(stderr.contains("project `shop` has no environment `nope`"), "{stderr}");

    shop(&s, &["env", "set-var", "prod", "LOG_LEVEL=warn", "REGION=eu"], 0);
    let mut child = s
        .cmd(&["env", "set-secret", "prod", "DB_PASSWORD", "-p", "shop"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cr3t-env-value\n").unwrap();
    let (stdout, _) = assert_code(&child.wait_with_output().unwrap(), 0);
    assert!(stdout.contains("secret DB_PASSWORD of shop/prod set"), "{stdout}");

    let (stdout, _) = shop(&s, &["env", "list"], 0);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| l.contains("dev") || l.contains("staging") || l.contains("prod"))
        .map(|l| l.split(['│', '┆']).map(str::trim).filter(|c| !c.is_empty()).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["dev", "-", "no", "0", "0"],
            vec!["staging", "dev", "no", "0", "0"],
            vec!["prod", "staging", "yes", "2", "1"]
        ],
        "{stdout}"
    );
    let (stdout, _) = shop(&s, &["env", "show", "prod"], 0);
    assert!(stdout.contains("DB_PASSWORD") && stdout.contains("***"), "{stdout}");
    assert!(stdout.contains("warn"), "{stdout}");
    let (json, _) = shop(&s, &["env", "show", "prod", "-o", "json"], 0);
    let shown: serde_json::Value = serde_json::from_str(&json).unwrap();
    let secret =
        shown["variables"].as_array().unwrap().iter().find(|v| v["name"] == "DB_PASSWORD").unwrap();
    assert_eq!((secret["value"].as_str(), secret["secret"].as_bool()), (Some("***"), Some(true)));
    for out in [&stdout, &json] {
        assert!(!out.contains("s3cr3t"), "{out}");
    }
    shop(&s, &["env", "unset", "prod", "REGION"], 0);
    let (_, stderr) = shop(&s, &["env", "delete", "staging"], 2);
    assert!(stderr.contains("`prod` comes after `staging`"), "{stderr}");
    let log = s.log();
    assert!(
        log.contains("DEBUG") || log.contains("INFO") || !log.is_empty(),
        "the server logged at debug level"
    );
    assert!(!log.contains("s3cr3t"), "a secret reached the server's log:\n{log}");
}

#[test]
fn config_commands_render_diff_release_approve_roll_back_and_audit() {
    let s = Server::start();
    s.ok(&["project", "create", "shop"], 0);
    shop(&s, &["env", "create", "staging"], 0);
    shop(&s, &["env", "create", "prod", "--after", "staging", "--protected"], 0);

    let bad = s.file("bad.tpl", "port: {{ port }}\ndb: {% if x %}\n");
    let (_, stderr) = shop(&s, &["config", "set-template", "api", "app.yaml", "--from", &bad], 2);
    assert!(stderr.contains("app.yaml:2:"), "{stderr}");
    assert!(stderr.contains("syntax error"), "{stderr}");
    let tpl = s.file("app.yaml.tpl", TEMPLATE);
    let (stdout, _) = shop(&s, &["config", "set-template", "api", "app.yaml", "--from", &tpl], 0);
    assert!(stdout.contains("item app.yaml of shop/api: changed"), "{stdout}");
    let shared = s.file("shared.yml", "port: 8080\n");
    shop(&s, &["config", "set-values", "api", "--from", &shared], 0);

    // A value missing: the error names the file, the line and the value; nothing released.
    let (_, stderr) = shop(&s, &["config", "release", "api", "--env", "staging"], 2);
    assert!(stderr.contains("app.yaml:4:8: error: `db.host` is undefined"), "{stderr}");
    let (stdout, _) = shop(&s, &["config", "history", "api", "--env", "staging"], 0);
    assert!(stdout.contains("no releases of api in staging yet"), "{stdout}");

    let staging = s.file("staging.yml", "db:\n  host: db.staging\n");
    shop(&s, &["config", "set-values", "api", "--env", "staging", "--from", &staging], 0);
    let (stdout, _) = shop(&s, &["config", "render", "api", "--env", "staging"], 0);
    assert_eq!(stdout, "==> app.yaml <==\nname: api\nenv: staging\nport: 8080\ndb: db.staging\n");
    let (stdout, _) =
        shop(&s, &["config", "release", "api", "--env", "staging", "--note", "first"], 0);
    assert!(stdout.contains("release 1 of `api` in `staging`: everyone gets it"), "{stdout}");
    let (stdout, _) = shop(&s, &["config", "release", "api", "--env", "staging"], 0);
    assert!(stdout.contains("nothing to release"), "{stdout}");

    let moved = s.file("staging2.yml", "db:\n  host: db2.staging\n");
    shop(&s, &["config", "set-values", "api", "--env", "staging", "--from", &moved], 0);
    let (stdout, _) = shop(&s, &["config", "diff", "api", "--env", "staging"], 0);
    assert_eq!(
        stdout,
        "--- release-1/app.yaml\n+++ draft/app.yaml\n@@ -1,4 +1,4 @@\n name: api\n env: staging\n port: 8080\n-db: db.staging\n+db: db2.staging\n"
    );
    shop(&s, &["config", "release", "api", "--env", "staging", "--note", "new db"], 0);
    let (stdout, _) =
        shop(&s, &["config", "diff", "api", "--env", "staging", "--from", "1", "--to", "2"], 0);
    assert!(stdout.contains("-db: db.staging\n+db: db2.staging\n"), "{stdout}");
    let (stdout, _) = shop(&s, &["config", "rollback", "api", "--env", "staging", "--to", "1"], 0);
    assert!(stdout.contains("release 3 of `api` in `staging`: everyone gets it"), "{stdout}");
    let (stdout, _) = shop(&s, &["config", "get", "api", "--env", "staging"], 0);
    assert!(stdout.starts_with("release 3 of api in staging, digest sha256:"), "{stdout}");
    assert!(stdout.contains("db: db.staging\n"), "{stdout}");

    // Gray: one instance, then everyone (the draft still has the second database).
    let (stdout, _) =
        shop(&s, &["config", "release", "api", "--env", "staging", "--to-instances", "api-1"], 0);
    assert!(
        stdout.contains(
            "gray release 4 of `api` in `staging`: api-1 gets it, the others keep release 3"
        ),
        "{stdout}"
    );
    let (stdout, _) =
        shop(&s, &["config", "get", "api", "--env", "staging", "--instance", "api-1"], 0);
    assert!(stdout.starts_with("release 4 (gray) of api in staging"), "{stdout}");
    let (stdout, _) =
        shop(&s, &["config", "get", "api", "--env", "staging", "--instance", "api-2"], 0);
    assert!(stdout.starts_with("release 3 of api in staging"), "{stdout}");
    let (stdout, _) = shop(&s, &["config", "release", "api", "--env", "staging", "--all"], 0);
    assert!(stdout.contains("release 4 of `api` in `staging`: everyone gets it now"), "{stdout}");

    // Protected: the admin asks, the admin may not approve, alice does.
    let prod = s.file("prod.yml", "port: 443\ndb:\n  host: db.prod\n");
    shop(&s, &["config", "set-values", "api", "--env", "prod", "--from", &prod], 0);
    let (stdout, _) =
        shop(&s, &["config", "release", "api", "--env", "prod", "--note", "go live"], 0);
    assert!(
        stdout.contains(
            "release 1 of `api` in `prod` waits for approval by someone other than admin"
        ),
        "{stdout}"
    );
    let (_, stderr) = shop(&s, &["config", "approve", "api", "--env", "prod", "1"], 2);
    assert!(
        stderr.contains("`admin` asked for this release: someone else must approve it"),
        "{stderr}"
    );
    let alice = developer(&s, "alice");
    let out = s
        .cmd(&["config", "approve", "api", "--env", "prod", "1", "-p", "shop"])
        .env("KILN_TOKEN", &alice)
        .output()
        .unwrap();
    let (stdout, _) = assert_code(&out, 0);
    assert!(
        stdout.contains("release 1 of `api` in `prod` approved by alice: everyone gets it"),
        "{stdout}"
    );

    let (stdout, _) = shop(&s, &["config", "history", "api", "--env", "prod"], 0);
    assert!(
        stdout.contains("1 (current)") && stdout.contains("alice") && stdout.contains("go live"),
        "{stdout}"
    );
    let (stdout, _) = shop(&s, &["config", "history", "api", "--env", "staging", "-o", "json"], 0);
    let history: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let kinds: Vec<(u64, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["number"].as_u64().unwrap(), r["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [(1, "release"), (2, "release"), (3, "rollback"), (4, "release")]);
    let (stdout, _) = shop(&s, &["config", "audit", "api", "-o", "json"], 0);
    let audit: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let actions: Vec<&str> =
        audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "template",
            "values",
            "values",
            "release",
            "values",
            "release",
            "rollback",
            "gray release",
            "release to all",
            "values",
            "release requested",
            "approve"
        ]
    );
    let (stdout, _) = shop(&s, &["config", "list"], 0);
    assert!(stdout.contains("api") && stdout.contains("app.yaml"), "{stdout}");
}

/// A service in `staging` with the config of `web`, as a user runs it: `kiln service apply`
/// is refused before the first release, then the instance serves release 1's file from
/// `$KILN_CONFIG_DIR`, `kiln service show` has its release in a `CONFIG` column, and a new
/// release is served by the same instance.
#[test]
fn a_service_serves_its_config_release_and_the_next_one_in_place() {
    let s = Server::start_on("process");
    s.ok(&["project", "create", "shop"], 0);
    shop(&s, &["env", "create", "staging"], 0);
    let template = s.file("app.conf.j2", "greeting={{ greeting }}\n");
    shop(&s, &["config", "set-template", "web", "app.conf", "--from", &template], 0);
    let values = s.file("shared.yml", "greeting: hello\n");
    shop(&s, &["config", "set-values", "web", "--from", &values], 0);
    let service = s.file(
        "web.yml",
        "kind: service\nname: web\ncommand: [sh, -c, 'exec python3 -m http.server --bind 127.0.0.1 --directory \"$KILN_CONFIG_DIR\" \"$KILN_PORT_WEB\"']\nports:\n  - { name: web, container: 8080 }\nhealth:\n  http: { port: web, path: /app.conf }\n  interval: 200ms\n  grace: 10s\nenvironment: staging\nconfig: { on-change: none }\n",
    );
    let (_, stderr) = shop(&s, &["service", "apply", &service], 2);
    assert!(
        stderr.contains(
            "no release of config `web` in `staging` yet: kiln config release web --env staging"
        ),
        "{stderr}"
    );
    shop(&s, &["config", "release", "web", "--env", "staging"], 0);
    shop(&s, &["service", "apply", &service], 0);
    let get = |port: u64| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode(), end='')"])
            .arg(format!("http://127.0.0.1:{port}/app.conf"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let at = |release: u64| {
        let started = std::time::Instant::now();
        loop {
            let (json, _) = shop(&s, &["service", "show", "web", "-o", "json"], 0);
            let info: serde_json::Value = serde_json::from_str(&json).unwrap();
            let i = &info["instances"][0];
            if i["state"] == "healthy" && i["config_release"] == release {
                break (i["id"].as_str().unwrap().to_string(), i["ports"]["web"].as_u64().unwrap());
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "{info:#}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let (id, port) = at(1);
    assert_eq!(get(port), "greeting=hello\n");
    let (table, _) = shop(&s, &["service", "show", "web"], 0);
    assert!(table.contains("CONFIG") && table.contains(" r1 "), "{table}");

    let values = s.file("shared.yml", "greeting: hola\n");
    shop(&s, &["config", "set-values", "web", "--from", &values], 0);
    shop(&s, &["config", "release", "web", "--env", "staging"], 0);
    assert_eq!(at(2), (id, port), "the same instance");
    assert_eq!(get(port), "greeting=hola\n");
    let (table, _) = shop(&s, &["service", "show", "web"], 0);
    assert!(table.contains(" r2 "), "{table}");
    shop(&s, &["service", "delete", "web"], 0);
}
