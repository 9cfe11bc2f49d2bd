//! `kiln deploy`, `deploy history`, `rollback` and `promote` against a real `kiln server`
//! (its embedded agent on the process executor, which runs a deployed service's `command`
//! and ignores its image): images pushed to its registry, deployments followed to their end
//! with the exit code saying how it ended, the history as a table and as JSON, a promotion
//! refused without a terminal or `--yes` and done with it.

use crate::server::Server;

/// A service that runs until stopped (no health check: running is healthy); `VERSION` tells
/// its versions apart.
fn web(version: &str, command: &str) -> String {
    format!(
        "kind: service\nname: web\ncommand: {command}\nenv:\n  VERSION: \"{version}\"\nreplicas: 1\n"
    )
}

const SLEEP: &str = r#"[python3, -c, "import time; time.sleep(600)"]"#;

/// `kiln ARGS -p shop` with its exit code checked.
fn shop(s: &Server, args: &[&str], code: i32) -> (String, String) {
    let mut all = args.to_vec();
    all.extend(["-p", "shop"]);
    s.ok(&all, code)
}

/// The cells of the table rows of `stdout` that start with a number.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .map(|l| {
            l.split(['│', '┆'])
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.first().is_some_and(|c| c.parse::<u32>().is_ok()))
        .collect()
}

#[test]
fn deploy_history_rollback_and_promote_from_the_command_line() {
    let s = Server::start();
    s.ok(&["project", "create", "shop"], 0);
    shop(&s, &["env", "create", "dev"], 0);
    shop(&s, &["env", "create", "prod", "--after", "dev"], 0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let push =
        |tag: &str| rt.block_on(kiln_testkit::push_image(&s.url, &s.token, "shop/web", tag, tag));
    let (d1, d2) = (push("1"), push("2"));
    let short = |d: &str| d[..19].to_string();

    let v1 = s.file("v1.yml", &web("1", SLEEP));
    let (stdout, stderr) = shop(&s, &["deploy", &v1, "--env", "dev", "--image", "shop/web:1"], 0);
    assert!(
        stdout.contains(&format!(
            "deployment 1 of web to dev succeeded ({}, service web-dev version 1)",
            short(&d1)
        )),
        "{stdout}"
    );
    assert!(stderr.starts_with("deployment 1 of web to dev: "), "progress on stderr: {stderr}");
    let v2 = s.file("v2.yml", &web("2", SLEEP));
    shop(&s, &["deploy", &v2, "--env", "dev", "--image", "shop/web:2", "--note", "second"], 0);

    let (stdout, _) = shop(&s, &["deploy", "history", "web", "--env", "dev"], 0);
    let table = rows(&stdout);
    assert_eq!(table.len(), 2, "{stdout}");
    assert_eq!(
        table[0][..5],
        ["2", "deploy", "succeeded", "shop/web:2", short(&d2).as_str()],
        "{stdout}"
    );
    assert_eq!(
        table[1][..5],
        ["1", "deploy", "superseded", "shop/web:1", short(&d1).as_str()],
        "{stdout}"
    );
    assert_eq!(table[0].last().map(String::as_str), Some("second"), "{stdout}");
    let (json, _) = shop(&s, &["deploy", "history", "web", "--env", "dev", "-o", "json"], 0);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list[0]["digest"], d2.as_str());
    assert_eq!(
        (list[1]["number"].as_u64(), list[1]["state"].as_str()),
        (Some(1), Some("superseded"))
    );

    // Only deploys change the deployed service, and `service list` says whose it is.
    let (stdout, _) = shop(&s, &["service", "list"], 0);
    let line = stdout.lines().find(|l| l.contains("web-dev")).unwrap_or_default();
    assert!(line.contains("deploy web to dev"), "{stdout}");

    let (stdout, _) = shop(&s, &["rollback", "web", "--env", "dev"], 0);
    assert!(
        stdout.contains(&format!("deployment 3 of web to dev succeeded ({}", short(&d1))),
        "{stdout}"
    );
    let (json, _) = shop(&s, &["deploy", "show", "web", "--env", "dev", "3", "-o", "json"], 0);
    let three: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (three["kind"].as_str(), three["rollback_of"].as_u64()),
        (Some("rollback"), Some(1))
    );
    assert_eq!(three["digest"], d1.as_str());

    // A promotion shows what changes first; without a terminal it needs --yes.
    let (_, stderr) = shop(&s, &["promote", "web", "--from", "dev", "--to", "prod"], 2);
    assert!(stderr.contains(&format!("digest  none -> {}", short(&d1))), "{stderr}");
    assert!(stderr.contains("pass --yes"), "{stderr}");
    let (stdout, _) = shop(&s, &["deploy", "list", "--env", "prod"], 0);
    assert!(stdout.contains("no deployments"), "{stdout}");
    let (stdout, _) = shop(&s, &["promote", "web", "--from", "dev", "--to", "prod", "--yes"], 0);
    assert!(
        stdout.contains(&format!("deployment 1 of web to prod succeeded ({}", short(&d1))),
        "{stdout}"
    );
    let (json, _) = shop(&s, &["deploy", "list", "-o", "json"], 0);
    let all: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (all[0]["environment"].as_str(), all[0]["promoted_from"].as_str()),
        (Some("prod"), Some("dev"))
    );
    assert_eq!(all.as_array().unwrap().len(), 4);

    // One that never passes its health check is rolled back at its deadline: exit 1.
    let never = "health: { command: [python3, -c, \"raise SystemExit(1)\"], interval: 100ms }\n";
    let bad = s.file("bad.yml", &format!("{}{never}", web("3", SLEEP)));
    let (stdout, _) =
        shop(&s, &["deploy", &bad, "--env", "dev", "--image", "shop/web:2", "--timeout", "2s"], 1);
    assert!(stdout.contains("deployment 4 of web to dev rolled_back:"), "{stdout}");
    let (_, stderr) = shop(&s, &["deploy", &v1, "--env", "dev", "--image", "shop/web:9"], 2);
    assert!(stderr.contains("no tag `9` in `shop/web` (tags: 1, 2)"), "{stderr}");
}
