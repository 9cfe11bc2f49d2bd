//! The client commands against a real `kiln server` (a child process on the process executor,
//! in a temporary data directory): apply, trigger and follow, failures and retries,
//! approvals, run lists, logs, artifacts, tokens, secrets and the registry commands.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::assert_code;

/// A `kiln server` child process, killed when dropped (also used by `parity.rs`).
pub(crate) struct Server {
    child: Child,
    /// Base URL.
    pub(crate) url: String,
    /// The first admin token.
    pub(crate) token: String,
    data: tempfile::TempDir,
    /// Where workflow files of the test are written, and the CLI's working directory.
    pub(crate) work: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts a server on a free port and waits until it says where it listens.
    pub(crate) fn start() -> Server {
        Server::start_on("process")
    }

    /// [`Server::start`] with the embedded agent on `executor` (`process`, `docker`).
    pub(crate) fn start_on(executor: &str) -> Server {
        Server::start_with(executor, &[])
    }

    /// [`Server::start_on`] with more `kiln server` flags.
    pub(crate) fn start_with(executor: &str, flags: &[&str]) -> Server {
        Server::start_full(executor, flags, false)
    }

    /// [`Server::start`] logging at debug level into a file that [`Server::log`] reads.
    pub(crate) fn start_logged() -> Server {
        Server::start_full("process", &[], true)
    }

    /// What the server wrote to its log file (see [`Server::start_logged`]).
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    fn start_full(executor: &str, flags: &[&str], logged: bool) -> Server {
        let data = tempfile::tempdir().unwrap();
        let stderr = if logged {
            Stdio::from(std::fs::File::create(data.path().join("server.log")).unwrap())
        } else {
            Stdio::inherit()
        };
        let work = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        if logged {
            command.env("KILN_LOG", "debug");
        }
        let mut child = command
            .args(["server", "--data"])
            .arg(data.path())
            .args(["--listen", "127.0.0.1:0", "--executor", executor])
            .args(flags)
            .env_remove("KILN_EXECUTOR")
            .env_remove("KILN_DATA")
            .env_remove("KILN_LISTEN")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("kiln server starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads stdout to the end so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on http://") {
                    let url = line[at + "listening on ".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(url);
                }
            }
        });
        let mut server = Server { child, url: String::new(), token: String::new(), data, work };
        server.url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let status = server.child.try_wait();
                panic!("kiln server did not say where it listens within 60s (status {status:?})")
            }
        };
        let token_file = server.data.path().join("admin.token");
        server.token = std::fs::read_to_string(&token_file)
            .unwrap_or_else(|e| panic!("{}: {e}", token_file.display()))
            .trim()
            .to_string();
        server
    }

    /// A `kiln` command aimed at this server with the admin token.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.args(args)
            .current_dir(self.work.path())
            .env("KILN_SERVER", &self.url)
            .env("KILN_TOKEN", &self.token)
            .env("NO_COLOR", "1")
            .env_remove("KILN_PROJECT")
            .env_remove("KILN_DATA")
            .env_remove("KILN_EXECUTOR")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `kiln ARGS` against this server.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("kiln runs")
    }

    /// Runs `kiln ARGS` and asserts its exit code.
    pub(crate) fn ok(&self, args: &[&str], code: i32) -> (String, String) {
        assert_code(&self.run(args), code)
    }

    /// Writes a workflow file into the working directory and returns its name there.
    pub(crate) fn file(&self, name: &str, yaml: &str) -> String {
        std::fs::write(self.work.path().join(name), yaml).unwrap();
        name.to_string()
    }

    /// Applies `yaml` as pipeline `name` of project `default`.
    pub(crate) fn pipeline(&self, name: &str, yaml: &str) {
        let file = self.file(&format!("{name}.yml"), yaml);
        let (stdout, _) = self.ok(&["pipeline", "apply", &file], 0);
        assert!(stdout.contains(&format!("pipeline default/{name} created")), "{stdout}");
    }

    /// `kiln run show RUN -o json`.
    pub(crate) fn show(&self, run: &str) -> serde_json::Value {
        let (stdout, _) = self.ok(&["run", "show", run, "-o", "json"], 0);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Polls the run until `done` holds of it (at most a minute).
    pub(crate) fn wait(
        &self,
        run: &str,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let doc = self.show(run);
            if done(&doc) {
                return doc;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "run {run} never {what}: {doc:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

const BUILD: &str = "\
name: build
params:
  greeting: { type: string, default: hello }
stages:
  - name: build
    jobs:
      compile:
        script:
          - echo \"${{ params.greeting }} from compile\"
          - echo \"JOB_OUT version=1.2.3\"
";

const FLAKY: &str = "\
name: flaky
stages:
  - name: test
    jobs:
      fine:
        script: echo fine
      broken:
        script:
          - echo about to fail
          - exit 3
";

const GATED: &str = "\
name: gated
stages:
  - name: build
    jobs:
      make:
        script: echo built
  - name: ship-it
    type: approval
    description: Deploy?
  - name: deploy
    jobs:
      ship:
        script: echo shipped
";

#[test]
fn apply_creates_then_leaves_unchanged_then_updates() {
    let s = Server::start();
    let file = s.file("build.yml", BUILD);
    let (stdout, stderr) = s.ok(&["pipeline", "apply", &file], 0);
    assert!(stdout.contains("pipeline default/build created (version 1, 1 job)"), "{stdout}");
    assert!(stderr.contains("created project default"), "{stderr}");
    let (stdout, _) = s.ok(&["pipeline", "apply", &file], 0);
    assert!(stdout.contains("pipeline default/build unchanged (version 1, 1 job)"), "{stdout}");
    s.file("build.yml", &BUILD.replace("from compile", "from the compiler"));
    let (stdout, _) = s.ok(&["pipeline", "apply", &file], 0);
    assert!(stdout.contains("pipeline default/build updated (version 2, 1 job)"), "{stdout}");

    // Another name and project; the list shows it.
    let (stdout, _) =
        s.ok(&["pipeline", "apply", &file, "--project", "team", "--name", "nightly"], 0);
    assert!(stdout.contains("pipeline team/nightly created"), "{stdout}");
    let (stdout, _) = s.ok(&["pipeline", "list", "--project", "team", "-o", "json"], 0);
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list[0]["name"], "nightly", "{list:#}");
    let (stdout, _) = s.ok(&["project", "list"], 0);
    assert!(stdout.contains("default") && stdout.contains("team"), "{stdout}");
}

#[test]
fn apply_names_the_pipeline_after_the_workflow_then_the_file() {
    let s = Server::start();
    // The workflow's `name:` wins over the file name.
    let file = s.file("ci-main.yml", BUILD);
    let (stdout, _) = s.ok(&["pipeline", "apply", &file], 0);
    assert!(stdout.contains("pipeline default/build created"), "{stdout}");
    // A workflow name that cannot name a pipeline falls back to the file name.
    let file = s.file("nightly.yml", &BUILD.replace("name: build", "name: Nightly build"));
    let (stdout, _) = s.ok(&["pipeline", "apply", &file], 0);
    assert!(stdout.contains("pipeline default/nightly created"), "{stdout}");
}

#[test]
fn apply_sends_the_templates_uses_names() {
    let s = Server::start();
    let examples = crate::support::root().join("examples");
    let api = examples.join("projects/api.yml").display().to_string();
    let (stdout, _) = s.ok(&["pipeline", "apply", &api, "--project", "shop"], 0);
    assert!(stdout.contains("pipeline shop/api created (version 1, 3 jobs)"), "{stdout}");
}

#[test]
fn an_invalid_file_is_refused_with_positions() {
    let s = Server::start();
    s.ok(&["project", "create", "default"], 0);
    let file = s.file(
        "bad.yml",
        "name: bad\nstages:\n  - name: s\n    jobs:\n      a:\n        scritp: echo hi\n        timeout: soon\n",
    );
    let (stdout, stderr) = s.ok(&["pipeline", "apply", &file], 2);
    assert!(stdout.is_empty(), "{stdout}");
    for (line, what) in [(6, "scritp"), (7, "soon")] {
        assert!(
            stderr.lines().any(|l| l.starts_with(&format!("bad.yml:{line}:"))
                && l.contains(": error: ")
                && l.contains(what)),
            "no `bad.yml:{line}:col: error:` naming {what:?} in:\n{stderr}"
        );
    }
    let (stdout, _) = s.ok(&["pipeline", "list", "-o", "json"], 0);
    assert_eq!(stdout.trim(), "[]");
}

#[test]
fn trigger_with_params_and_follow_prints_the_log_and_succeeds() {
    let s = Server::start();
    s.pipeline("build", BUILD);
    let (stdout, stderr) = s.ok(&["trigger", "default/build", "-p", "greeting=hi", "--follow"], 0);
    assert!(stdout.contains("started default/build#1 (id "), "{stdout}");
    assert!(stdout.contains("compile | hi from compile"), "{stdout}\n{stderr}");
    assert!(stdout.contains("run default/build#1 success"), "{stdout}");
    // A run is named by its id as well as by `project/pipeline#number`.
    let id = stdout.split("(id ").nth(1).and_then(|r| r.split(')').next()).unwrap();
    assert_eq!(s.show(id)["number"], 1);

    // The job's own log has no prefix; the whole run's has.
    let (stdout, _) = s.ok(&["logs", "default/build#1", "compile"], 0);
    assert!(stdout.lines().any(|l| l == "hi from compile"), "{stdout}");
    let (stdout, _) = s.ok(&["logs", "default/build#1"], 0);
    assert!(stdout.contains("compile | hi from compile"), "{stdout}");
    let (stdout, _) = s.ok(&["logs", "default/build#1", "compile", "-o", "json"], 0);
    let mut json = stdout.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let (echo, first) = (json.next().unwrap(), json.next().unwrap());
    assert_eq!((&echo["seq"], &echo["mark"]["kind"]), (&1.into(), &"command".into()), "{echo}");
    assert_eq!(first["seq"], 2, "{first}");
    assert_eq!(first["text"], "hi from compile", "{first}");

    let (stdout, _) = s.ok(&["run", "show", "default/build#1"], 0);
    assert!(stdout.contains("version=1.2.3") && stdout.contains("greeting=hi"), "{stdout}");

    // Without --follow: prints the run and returns at once.
    let (stdout, _) = s.ok(&["trigger", "default/build"], 0);
    assert!(stdout.contains("default/build#2 (id "), "{stdout}");
    let (stdout, _) = s.ok(&["runs", "-o", "json"], 0);
    let runs: serde_json::Value = serde_json::from_str(&stdout).expect("runs -o json is JSON");
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r["project"] == "default" && r["triggered_by"] == "admin"));
    let (stdout, _) = s.ok(&["runs", "--pipeline", "default/build", "--state", "success"], 0);
    assert!(stdout.contains("default/build#1") && stdout.contains("success"), "{stdout}");
}

#[test]
fn a_failed_run_exits_one_shows_the_failed_job_and_can_be_retried() {
    let s = Server::start();
    s.pipeline("flaky", FLAKY);
    let (stdout, _) = s.ok(&["trigger", "default/flaky", "-f"], 1);
    assert!(stdout.contains("broken | about to fail"), "{stdout}");
    assert!(stdout.contains("run default/flaky#1 failure"), "{stdout}");

    let (stdout, _) = s.ok(&["run", "show", "default/flaky#1"], 0);
    let broken = stdout.lines().find(|l| l.starts_with("│ broken ")).expect("broken job row");
    assert!(broken.contains("failure") && broken.contains(" 3 "), "{stdout}");
    let fine = stdout.lines().find(|l| l.starts_with("│ fine ")).expect("fine job row");
    assert!(fine.contains("success"), "{stdout}");
    // Why it failed, without opening the log: the entry, its status, the node, the lines.
    assert!(
        stdout.contains("job broken failure: `exit 3` exited with status 3 on node embedded-"),
        "{stdout}"
    );
    let excerpt: Vec<&str> =
        stdout.lines().skip_while(|l| !l.starts_with("job broken failure: `")).skip(2).collect();
    assert!(excerpt[0].ends_with("1 | $ echo about to fail"), "{excerpt:?}");
    assert!(excerpt[1].ends_with("| about to fail"), "{excerpt:?}");
    assert!(excerpt[3].contains("exit status 3: exit 3"), "{excerpt:?}");
    // The runs list names the failed job.
    let (stdout, _) = s.ok(&["runs", "--pipeline", "default/flaky"], 0);
    let row = stdout.lines().find(|l| l.contains("default/flaky#1")).expect("the run's row");
    assert!(row.contains("broken"), "{stdout}");

    let (stdout, _) = s.ok(&["retry", "default/flaky#1"], 0);
    assert!(stdout.contains("default/flaky#2"), "{stdout}");
    let first = s.show("default/flaky#1");
    let second = s.wait("default/flaky#2", "ended", |r| r["finished_at"].is_string());
    assert_eq!(second["retry_of"], first["id"], "{second:#}");
    assert_eq!(second["state"], "failure", "{second:#}");
    let (stdout, _) = s.ok(&["run", "show", "default/flaky#2"], 0);
    assert!(stdout.contains("retry of"), "{stdout}");
}

#[test]
fn approval_stages_are_approved_and_rejected() {
    let s = Server::start();
    s.pipeline("gated", GATED);
    s.ok(&["trigger", "default/gated"], 0);
    s.wait("default/gated#1", "paused", |r| r["state"] == "paused");
    let (stdout, _) = s.ok(&["run", "show", "default/gated#1"], 0);
    assert!(stdout.contains("waiting"), "{stdout}");
    // The runs waiting for approval: a table, and JSON.
    let (stdout, _) = s.ok(&["approvals"], 0);
    let row = stdout.lines().find(|l| l.contains("default/gated#1")).expect("the run's row");
    assert!(row.contains("ship-it: Deploy?") && row.contains("admin"), "{stdout}");
    let (stdout, _) = s.ok(&["approvals", "-o", "json"], 0);
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list[0]["stage"], "ship-it", "{list:#}");
    let (stdout, _) = s.ok(&["approve", "default/gated#1", "ship-it", "-m", "looks good to me"], 0);
    assert!(stdout.contains("approved stage ship-it of default/gated#1"), "{stdout}");
    let run = s.wait("default/gated#1", "succeeded", |r| r["state"] == "success");
    let stage = run["stages"].as_array().unwrap().iter().find(|s| s["name"] == "ship-it").unwrap();
    assert_eq!(stage["gate"], "approved", "{run:#}");
    assert_eq!(stage["decision"]["by"], "admin", "{run:#}");
    assert_eq!(stage["decision"]["comment"], "looks good to me", "{run:#}");
    let (stdout, _) = s.ok(&["run", "show", "default/gated#1"], 0);
    assert!(stdout.contains("approved") && stdout.contains("admin"), "{stdout}");
    assert!(stdout.contains("looks good to me"), "{stdout}");
    let (_, stderr) = s.ok(&["approvals"], 0);
    assert!(stderr.contains("no run waits for approval"), "{stderr}");

    s.ok(&["trigger", "default/gated"], 0);
    s.wait("default/gated#2", "paused", |r| r["state"] == "paused");
    let (stdout, _) = s.ok(&["reject", "default/gated#2", "ship-it"], 0);
    assert!(stdout.contains("rejected stage ship-it"), "{stdout}");
    let run = s.wait("default/gated#2", "ended", |r| r["finished_at"].is_string());
    assert_eq!(run["state"], "canceled", "{run:#}");
    let ship = run["jobs"].as_array().unwrap().iter().find(|j| j["id"] == "ship").unwrap();
    assert_ne!(ship["state"], "success", "{run:#}");
    // A stage that is not waiting: a clear 4xx.
    let (_, stderr) = s.ok(&["approve", "default/gated#2", "ship-it"], 2);
    assert!(stderr.starts_with("error: "), "{stderr}");
}

/// Issue 18: `kiln cancel` of a run that waits for a place printed "(now running)".
#[test]
fn cancel_prints_the_state_the_run_is_in_after_the_cancel() {
    let s = Server::start();
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        let (stdout, _) = s.ok(&["nodes", "-o", "json"], 0);
        let nodes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if nodes.as_array().is_some_and(|n| n.len() == 1 && n[0]["state"] == "ready") {
            break nodes[0]["name"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "{nodes:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    s.pipeline(
        "slow",
        "name: slow\nstages:\n  - name: s\n    jobs:\n      wait:\n        script: sleep 30\n",
    );
    // Nowhere to run: the run is `scheduling`, and a cancel ends it at once.
    s.ok(&["nodes", "disable", &node], 0);
    s.ok(&["trigger", "default/slow"], 0);
    s.wait("default/slow#1", "scheduling", |r| r["state"] == "scheduling");
    let (stdout, _) = s.ok(&["cancel", "default/slow#1"], 0);
    assert_eq!(stdout.trim(), "default/slow#1 is canceled");

    // A running job is killed first: the run says so.
    s.ok(&["nodes", "enable", &node], 0);
    s.ok(&["trigger", "default/slow"], 0);
    s.wait("default/slow#2", "running", |r| r["jobs"][0]["state"] == "running");
    let (stdout, _) = s.ok(&["cancel", "default/slow#2"], 0);
    assert_eq!(
        stdout.trim(),
        "canceling default/slow#2: it is running until its running jobs are stopped"
    );
    let run = s.wait("default/slow#2", "ended", |r| r["finished_at"].is_string());
    assert_eq!(run["state"], "canceled", "{run:#}");
}

#[test]
fn artifacts_are_listed_and_downloaded() {
    let s = Server::start();
    s.pipeline(
        "art",
        "name: art\nstages:\n  - name: s\n    jobs:\n      make:\n        script:\n          - mkdir -p out/sub\n          - echo \"artifact content\" > out/sub/result.txt\n        artifacts: { paths: [out/] }\n",
    );
    s.ok(&["trigger", "default/art", "-f"], 0);
    let (stdout, _) = s.ok(&["artifacts", "default/art#1"], 0);
    assert!(stdout.contains("make") && stdout.contains("out/sub/result.txt"), "{stdout}");
    let (stdout, _) = s.ok(&["artifacts", "default/art#1", "-o", "json"], 0);
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list[0]["job"], "make", "{list:#}");

    let (stdout, _) = s.ok(&["artifacts", "default/art#1", "--download", "got"], 0);
    let file = s.work.path().join("got/make/out/sub/result.txt");
    assert_eq!(
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", file.display())),
        "artifact content\n"
    );
    assert!(stdout.contains("got/make/out/sub/result.txt"), "{stdout}");
    // Default directory: the working directory.
    s.ok(&["artifacts", "default/art#1", "--download", "--job", "make"], 0);
    assert!(s.work.path().join("make/out/sub/result.txt").is_file());
}

/// Symlinks leading out of the workspace are left out when the artifacts are packed, with a
/// warning in the job's log, so the jobs that need them and `kiln artifacts --download`
/// still get the rest (an absolute link used to be packed and then refused by every
/// consumer).
#[test]
fn links_leading_out_are_left_out_of_artifacts_and_every_consumer_gets_the_rest() {
    let s = Server::start();
    s.pipeline(
        "links",
        "name: links\nstages:\n  - name: s\n    jobs:\n      make:\n        script:\n          - mkdir -p out\n          - echo real > out/real.txt\n          - ln -s real.txt out/ok\n          - ln -s /etc/hostname out/abs\n          - ln -s ../../elsewhere out/up\n        artifacts: { paths: [out/] }\n  - name: t\n    jobs:\n      use:\n        script: cat out/ok && test ! -e out/abs\n",
    );
    let (stdout, _) = s.ok(&["trigger", "default/links", "-f"], 0);
    assert!(stdout.contains("use | real"), "the consumer read the kept link: {stdout}");
    let (log, _) = s.ok(&["logs", "default/links#1"], 0);
    assert!(
        log.contains("warning: artifacts: symlink \"out/abs\" -> \"/etc/hostname\" left out"),
        "{log}"
    );
    assert!(log.contains("symlink \"out/up\" -> \"../../elsewhere\" left out"), "{log}");

    let (stdout, _) =
        s.ok(&["artifacts", "default/links#1", "--download", "got", "--job", "make"], 0);
    let dir = s.work.path().join("got/make/out");
    assert_eq!(std::fs::read_to_string(dir.join("ok")).unwrap(), "real\n", "{stdout}");
    assert!(std::fs::symlink_metadata(dir.join("abs")).is_err(), "{stdout}");
    assert!(std::fs::symlink_metadata(dir.join("up")).is_err(), "{stdout}");
}

#[test]
fn a_viewer_token_cannot_trigger() {
    let s = Server::start();
    s.pipeline("build", BUILD);
    let (stdout, _) = s.ok(&["token", "create", "watcher", "--role", "viewer"], 0);
    let secret = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KILN_TOKEN="))
        .unwrap_or_else(|| panic!("no export hint in {stdout}"))
        .to_string();
    let out = s.cmd(&["trigger", "default/build"]).env("KILN_TOKEN", &secret).output().unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("error: forbidden") && stderr.contains("viewer"), "{stderr}");
    // Reading is allowed.
    let out = s.cmd(&["pipeline", "list"]).env("KILN_TOKEN", &secret).output().unwrap();
    assert_code(&out, 0);
    let (stdout, _) = s.ok(&["token", "list", "-o", "json"], 0);
    let tokens: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let watcher = tokens.as_array().unwrap().iter().find(|t| t["name"] == "watcher").unwrap();
    let id = watcher["id"].as_str().unwrap();
    s.ok(&["token", "revoke", id], 0);
    let out = s.cmd(&["pipeline", "list"]).env("KILN_TOKEN", &secret).output().unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("unauthorized"), "{stderr}");
}

#[test]
fn secrets_are_masked_in_logs() {
    let s = Server::start();
    s.pipeline(
        "leak",
        "name: leak\nstages:\n  - name: s\n    jobs:\n      talk:\n        script: echo \"the key is $API_KEY\"\n",
    );
    let mut child = s
        .cmd(&["secret", "set", "default", "API_KEY"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cr3t-value\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_code(&out, 0);
    let (stdout, _) = s.ok(&["secret", "list", "default"], 0);
    assert!(stdout.contains("API_KEY"), "{stdout}");

    let (stdout, _) = s.ok(&["trigger", "default/leak", "-f"], 0);
    assert!(!stdout.contains("s3cr3t-value"), "{stdout}");
    let (stdout, _) = s.ok(&["logs", "default/leak#1"], 0);
    assert!(stdout.contains("talk | the key is ***"), "{stdout}");
    assert!(!stdout.contains("s3cr3t"), "{stdout}");
    s.ok(&["secret", "rm", "default", "API_KEY"], 0);
    let (stdout, _) = s.ok(&["secret", "list", "default", "-o", "json"], 0);
    assert_eq!(stdout.trim(), "[]");
}

#[test]
fn connection_problems_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let kiln = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kiln"));
        cmd.current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env_remove("KILN_TOKEN")
            .env_remove("KILN_DATA")
            .env_remove("KILN_SERVER");
        cmd
    };
    let out = kiln().args(["runs"]).output().unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("KILN_TOKEN"), "{stderr}");

    // The token file a local server writes is found.
    std::fs::create_dir(dir.path().join("kiln-data")).unwrap();
    std::fs::write(dir.path().join("kiln-data/admin.token"), "kiln_x\n").unwrap();
    let out = kiln().args(["runs", "--server", "http://127.0.0.1:9"]).output().unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("cannot reach") && stderr.contains("KILN_SERVER"), "{stderr}");
}

#[test]
fn nodes_and_offers_show_the_embedded_agent_and_take_operators_attributes() {
    let s = Server::start();
    // The embedded agent registers right after the server starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let nodes = loop {
        let (stdout, _) = s.ok(&["nodes", "-o", "json"], 0);
        let nodes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if nodes.as_array().is_some_and(|n| n.len() == 1 && n[0]["state"] == "ready") {
            break nodes;
        }
        assert!(std::time::Instant::now() < deadline, "{nodes:#}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let name = nodes[0]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("embedded-"), "{name}");
    assert!(nodes[0]["resources"]["cpu_millis"].as_u64().unwrap() >= 1000, "{nodes:#}");

    let (stdout, _) =
        s.ok(&["nodes", "set", &name, "city=shenzhen", "cores=8", "zones={gz,sz}"], 0);
    assert!(stdout.contains("CITY") && stdout.contains("shenzhen"), "{stdout}");
    let (stdout, _) = s.ok(&["nodes"], 0);
    for column in ["INDEX", "IP", "HOSTNAME", "STATE", "DISABLED", "CITY", "CORES", "ZONES"] {
        assert!(stdout.contains(column), "{column} in {stdout}");
    }
    assert!(stdout.contains("{gz,sz}") && stdout.contains("ready"), "{stdout}");
    let (stdout, _) = s.ok(&["offers"], 0);
    for column in ["CPUS", "MEMORY", "DISK", "SLOTS", "PORTS", "CITY"] {
        assert!(stdout.contains(column), "{column} in {stdout}");
    }
    assert!(stdout.contains("31000-32000"), "{stdout}");
    let (stdout, _) = s.ok(&["nodes", "disable", &name], 0);
    assert!(stdout.contains("true"), "{stdout}");
    let (stdout, _) = s.ok(&["offers"], 0);
    assert!(stdout.contains("no offers"), "{stdout}");
    s.ok(&["nodes", "enable", &name], 0);
    let (stdout, _) = s.ok(&["nodes", "unset", &name, "cores", "-o", "json"], 0);
    let node: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(node["attributes"].get("cores").is_none(), "{node:#}");
    assert_eq!(node["attributes"]["zones"], serde_json::json!(["gz", "sz"]));

    // Bad input says what was wrong and changes nothing.
    let (_, stderr) = s.ok(&["nodes", "set", &name, "city"], 2);
    assert!(stderr.contains("attribute `city` is not key=value"), "{stderr}");
    let (_, stderr) = s.ok(&["nodes", "set", "10.255.0.1", "city=x"], 2);
    assert!(stderr.contains("no node is named `10.255.0.1`"), "{stderr}");
}

#[test]
fn gc_prints_what_it_removed_and_refuses_a_viewer() {
    // A budget of one byte: every cache is over it.
    let s = Server::start_with("process", &["--cache-max-size", "1B", "--blob-gc-grace", "1h"]);
    s.pipeline(
        "cached",
        "name: cached\nstages:\n  - name: s\n    jobs:\n      deps:\n        script: [\"mkdir -p .cache && echo x > .cache/x\"]\n        cache: { key: deps, paths: [.cache/] }\n",
    );
    s.ok(&["trigger", "default/cached", "-f"], 0);
    let (stdout, _) = s.ok(&["gc"], 0);
    assert!(stdout.contains("caches evicted") && stdout.contains("bytes freed"), "{stdout}");
    assert!(stdout.contains("evicted cache default/deps"), "{stdout}");
    assert!(stdout.contains("caches now hold 0 B of a 1 B budget"), "{stdout}");
    let (stdout, _) = s.ok(&["gc", "-o", "json"], 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["caches"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["cache_budget"], 1, "{report:#}");

    let (stdout, _) = s.ok(&["token", "create", "watcher", "--role", "viewer"], 0);
    let secret = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("export KILN_TOKEN="))
        .unwrap_or_else(|| panic!("no export hint in {stdout}"))
        .to_string();
    let out = s.cmd(&["gc"]).env("KILN_TOKEN", &secret).output().unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("error: forbidden"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["server", "--cache-max-size", "lots"])
        .output()
        .unwrap();
    let (_, stderr) = assert_code(&out, 2);
    assert!(stderr.contains("expected a size such as 10GiB"), "{stderr}");
}

#[test]
fn scan_commands_import_advisories_show_findings_and_set_the_image_policy() {
    let s = Server::start();
    s.ok(&["project", "create", "team"], 0);
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../kiln-scan/tests/fixtures/advisories");
    let count = std::fs::read_dir(&fixtures).unwrap().count() as u64;
    let dir = fixtures.to_str().unwrap();
    let (stdout, stderr) = s.ok(&["registry", "advisories", "import", dir], 0);
    assert!(stderr.contains(&format!("importing {count} files")), "{stderr}");
    assert!(stdout.contains("new") && stdout.contains("unchanged"), "{stdout}");
    let (stdout, _) = s.ok(&["registry", "advisories", "import", dir, "-o", "json"], 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (report["new"].as_u64(), report["unchanged"].as_u64()),
        (Some(0), report["read"].as_u64())
    );
    assert_eq!(report["files"], count);

    // A malformed file: its name and position, exit 2, nothing imported.
    let bad = tempfile::tempdir().unwrap();
    let file = bad.path().join("broken.json");
    std::fs::write(&file, "[\n  {\"id\": \"X-1\", \"modified\": \"2024-01-01T00:00:00Z\",}\n]\n")
        .unwrap();
    let (_, stderr) = s.ok(&["registry", "advisories", "import", file.to_str().unwrap()], 2);
    assert!(stderr.contains("broken.json:2:"), "{stderr}");
    let (_, stderr) =
        s.ok(&["registry", "advisories", "import", bad.path().join("nope").to_str().unwrap()], 2);
    assert!(stderr.contains("nope"), "{stderr}");

    let (_, stderr) = s.ok(&["registry", "vulns", "team/app:1"], 2);
    assert!(stderr.contains("image `team/app:1` is not in the registry"), "{stderr}");

    let (stdout, _) = s.ok(&["project", "policy", "team"], 0);
    assert!(stdout.contains("POLICY") && stdout.matches(" off ").count() == 2, "{stdout}");
    let (stdout, _) = s.ok(&["project", "policy", "team", "--no-critical-latest", "-o", "json"], 0);
    let policy: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"block_critical_deploys": false, "no_critical_latest": true})
    );
    let (stdout, _) = s.ok(
        &[
            "project",
            "policy",
            "team",
            "--block-critical-deploys",
            "--no-critical-latest=false",
            "-o",
            "json",
        ],
        0,
    );
    let policy: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        policy,
        serde_json::json!({"block_critical_deploys": true, "no_critical_latest": false})
    );
}

#[test]
fn registry_commands_list_as_tables_and_json() {
    let s = Server::start_with("process", &["--allow-private-webhooks"]);
    s.ok(&["project", "create", "team"], 0);
    let (stdout, _) = s.ok(&["registry", "repos"], 0);
    assert!(stdout.contains("REPOSITORY") && stdout.contains("VISIBILITY"), "{stdout}");
    let (stdout, _) = s.ok(&["registry", "repos", "-o", "json"], 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), serde_json::json!([]));

    let (stdout, _) = s.ok(&["registry", "webhooks", "add", "team", "http://127.0.0.1:9/hook"], 0);
    assert!(stdout.contains("added webhook"), "{stdout}");
    let (stdout, _) = s.ok(&["registry", "webhooks", "list", "team", "-o", "json"], 0);
    let hooks: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(hooks[0]["url"], "http://127.0.0.1:9/hook");
    let id = hooks[0]["id"].as_str().unwrap().to_string();
    let (stdout, _) = s.ok(&["registry", "webhooks", "list", "team"], 0);
    assert!(stdout.contains(&id) && stdout.contains("URL"), "{stdout}");
    let (_, stderr) = s.ok(&["registry", "webhooks", "add", "team", "not-a-url"], 2);
    assert!(stderr.contains("http:// or https://"), "{stderr}");
    s.ok(&["registry", "webhooks", "rm", "team", &id], 0);

    let (stdout, _) = s.ok(&["registry", "gc", "--grace", "0s"], 0);
    assert!(stdout.contains("blobs") && stdout.contains("untagged manifests"), "{stdout}");
    let (stdout, _) = s.ok(&["registry", "gc", "-o", "json"], 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["blobs"], 0);
    let (_, stderr) = s.ok(&["registry", "tags", "team/nothing"], 2);
    assert!(stderr.contains("team/nothing"), "{stderr}");
    let (stdout, _) = s.ok(&["registry", "events", "-o", "json"], 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), serde_json::json!([]));
}

#[test]
fn triggers_list_schedules_with_next_fires_and_api_false_refuses_trigger() {
    let s = Server::start();
    s.pipeline(
        "nightly",
        r#"name: nightly
params:
  target: { type: string, default: dev }
on:
  schedule:
    - { cron: "0 2 * * *", timezone: Asia/Shanghai, params: { target: prod }, missed: run-once }
  api: false
stages:
  - name: s
    jobs: { a: { script: echo } }
"#,
    );
    s.pipeline("plain", "name: plain\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n");
    let (stdout, _) = s.ok(&["triggers"], 0);
    for want in [
        "PIPELINE",
        "NEXT FIRES",
        "default/nightly",
        "schedule",
        "\"0 2 * * *\" in Asia/Shanghai, missed: run-once",
        "params: target=prod",
        "02:00:00 +08:00 (",
        " 18:00:00 UTC)",
        "default/plain",
        "api",
    ] {
        assert!(stdout.contains(want), "{want:?} missing:\n{stdout}");
    }
    let (stdout, _) = s.ok(&["triggers", "--project", "default", "-o", "json"], 0);
    let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let kinds: Vec<(&str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["pipeline"].as_str().unwrap(), t["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("nightly", "schedule"), ("plain", "api")], "api: false lists no api");
    let next = list[0]["schedule"]["next"].as_array().unwrap();
    assert_eq!(next.len(), 3);
    assert!(next[0]["local"].as_str().unwrap().ends_with("T02:00:00+08:00"), "{next:?}");
    assert!(next[0]["at"].as_str().unwrap().contains("T18:00:00"), "{next:?}");

    let (_, stderr) = s.ok(&["trigger", "default/nightly"], 2);
    assert!(stderr.contains("started only by its triggers"), "{stderr}");
    let (_, stderr) = s.ok(&["triggers", "--project", "nope"], 2);
    assert!(stderr.contains("nope"), "{stderr}");
}

#[test]
fn a_noop_agent_ends_the_jobs_placed_on_it_without_running_them() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let mut agent = s
        .cmd(&["agent", "--executor", "noop", "--name", "bench-noop", "-a", "kind=noop"])
        .arg("--work-dir")
        .arg(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kiln agent starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (stdout, _) = s.ok(&["nodes", "-o", "json"], 0);
        let nodes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let noop = nodes.as_array().and_then(|n| n.iter().find(|n| n["name"] == "bench-noop"));
        if noop.is_some_and(|n| n["state"] == "ready") {
            assert_eq!(noop.unwrap()["executor"], "noop", "{nodes:#}");
            break;
        }
        assert!(Instant::now() < deadline, "the noop agent never joined: {nodes:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Placed on the noop node only; the script would fail if it ran.
    s.pipeline(
        "skipped",
        "name: skipped\nstages:\n  - name: s\n    jobs:\n      j:\n        matrix: { n: [1, 2, 3] }\n        constraints: [[kind, LIKE, noop]]\n        script:\n          - echo ran\n          - exit 3\n",
    );
    let (stdout, _) = s.ok(&["trigger", "default/skipped", "-f"], 0);
    assert!(stdout.contains("run default/skipped#1 success"), "{stdout}");
    assert!(!stdout.contains("| ran"), "nothing ran: {stdout}");
    let run = s.show("default/skipped#1");
    let jobs = run["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{run:#}");
    assert!(jobs.iter().all(|j| j["exit_code"] == 0 && j["attempts"] == 1), "{run:#}");
    let _ = agent.kill();
    let _ = agent.wait();
}

/// Issue 20: a process-executor job of a server running as root runs as `nobody` and cannot
/// read the data directory (the database, the admin token) nor the agent's token.
#[test]
fn a_process_job_cannot_read_the_data_directory() {
    if !std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        eprintln!("skipped: the server must run as root to drop to another user");
        return;
    }
    let s = Server::start();
    let data = s.data.path().display().to_string();
    let script = [
        "id -un".to_string(),
        format!("cat {data}/admin.token || echo no token"),
        format!("head -c 16 {data}/kiln.db || echo no database"),
        format!("ls {data} || echo no listing"),
        "env | grep -c KILN_TOKEN || echo no agent token in the env".to_string(),
    ];
    let yaml = format!(
        "name: peek\nstages:\n  - name: s\n    jobs:\n      peek:\n        script:\n{}\n",
        script.iter().map(|l| format!("          - {l:?}")).collect::<Vec<_>>().join("\n")
    );
    s.pipeline("peek", &yaml);
    let (stdout, _) = s.ok(&["trigger", "default/peek", "-f"], 0);
    assert!(stdout.contains("run default/peek#1 success"), "{stdout}");
    for line in ["| nobody", "| no token", "| no database", "| no listing", "| no agent token"] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    assert!(!stdout.contains("SQLite format"), "{stdout}");
}

#[test]
fn an_agent_takes_its_token_from_a_file_or_the_environment_and_warns_about_the_flag() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    // A file that is not there is named.
    let out = s
        .cmd(&["agent", "--executor", "noop", "--token-file", "/nonexistent/agent.token"])
        .env_remove("KILN_TOKEN")
        .output()
        .unwrap();
    let (_, stderr) = (String::new(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/agent.token"), "{stderr}");

    let file = work.path().join("agent.token");
    std::fs::write(&file, format!("{}\n", s.token)).unwrap();
    let joined = |name: &str, args: &[&str], env: bool| {
        let log = work.path().join(format!("{name}.log"));
        let mut cmd = s.cmd(&["agent", "--executor", "noop", "--name", name]);
        cmd.args(args).arg("--work-dir").arg(work.path().join(name));
        if !env {
            cmd.env_remove("KILN_TOKEN");
        }
        let mut agent = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kiln agent starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (stdout, _) = s.ok(&["nodes", "-o", "json"], 0);
            let nodes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            let node = nodes.as_array().and_then(|n| n.iter().find(|n| n["name"] == name));
            if node.is_some_and(|n| n["state"] == "ready") {
                break;
            }
            assert!(Instant::now() < deadline, "agent {name} never joined: {nodes:#}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = agent.kill();
        let _ = agent.wait();
        std::fs::read_to_string(log).unwrap()
    };
    let file_arg = file.display().to_string();
    let from_file = joined("from-file", &["--token-file", &file_arg], false);
    assert!(!from_file.contains("warning"), "{from_file}");
    let from_env = joined("from-env", &[], true);
    assert!(!from_env.contains("warning"), "{from_env}");
    let from_flag = joined("from-flag", &["--token", &s.token], false);
    assert!(
        from_flag.contains("warning: --token shows the token to every local user"),
        "{from_flag}"
    );
}

/// Reads `child`'s stdout lines on a thread; lines arrive on the returned channel.
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (at most a minute) for a line of `lines` that contains every one of `parts`.
fn line_with(lines: &mpsc::Receiver<String>, parts: &[&str], seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if parts.iter().all(|p| line.contains(p)) {
                    return line;
                }
            }
            Err(_) => panic!("no line with {parts:?}; printed so far:\n{}", seen.join("\n")),
        }
    }
}

#[test]
fn runs_watch_prints_a_line_when_a_run_starts_and_one_when_it_ends() {
    let s = Server::start();
    s.pipeline("flaky", FLAKY);
    let mut watcher = s
        .cmd(&["runs", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln runs --watch starts");
    // It says on stderr once it is subscribed: what happens from then on is printed.
    let stderr = BufReader::new(watcher.stderr.take().unwrap());
    let mut err_lines = stderr.lines();
    loop {
        match err_lines.next() {
            Some(Ok(line)) if line.contains("watching run events") => break,
            Some(Ok(_)) => continue,
            other => panic!("kiln runs --watch stopped before watching: {other:?}"),
        }
    }
    std::thread::spawn(move || for _ in err_lines {});
    let lines = stdout_lines(&mut watcher);
    s.ok(&["trigger", "default/flaky"], 0);
    let mut seen = Vec::new();
    let started = line_with(&lines, &["default/flaky#1"], &mut seen);
    assert!(started.contains("scheduling") || started.contains("running"), "{started}");
    let ended = line_with(&lines, &["default/flaky#1", "failure"], &mut seen);
    assert!(ended.contains("broken"), "the reason names the failed job: {ended}");
    assert!(ended.starts_with("20"), "each line starts with the time: {ended}");
    assert_eq!(seen.iter().filter(|l| l.contains("flaky#1")).count(), 2, "{seen:?}");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[test]
fn webhook_commands_add_list_and_remove_run_webhooks() {
    let s = Server::start_with("process", &["--allow-private-webhooks"]);
    s.ok(&["project", "create", "team"], 0);
    let (stdout, _) = s.ok(&["webhook", "add", "team", "http://127.0.0.1:9/hook"], 0);
    assert!(stdout.contains("added webhook") && stdout.contains("(push,run)"), "{stdout}");
    assert!(stdout.contains("signing secret (shown once): whsec_"), "{stdout}");
    let (stdout, _) =
        s.ok(&["webhook", "add", "team", "http://127.0.0.1:9/runs", "--events", "run"], 0);
    assert!(stdout.contains("(run)"), "{stdout}");
    let (stdout, _) = s.ok(&["webhook", "list", "team"], 0);
    assert!(stdout.contains("EVENTS") && stdout.contains("SIGNED"), "{stdout}");
    assert!(!stdout.contains("whsec_"), "the secret is never listed: {stdout}");
    let (stdout, _) = s.ok(&["webhook", "list", "team", "-o", "json"], 0);
    let hooks: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(hooks[1]["events"], serde_json::json!(["run"]));
    assert_eq!(hooks[1]["signed"], true);
    let id = hooks[0]["id"].as_str().unwrap().to_string();
    let (_, stderr) = s.ok(&["webhook", "add", "team", "http://x", "--events", "deploy"], 2);
    assert!(stderr.contains("deploy"), "{stderr}");
    s.ok(&["webhook", "rm", "team", &id], 0);
    let (stdout, _) = s.ok(&["webhook", "list", "team", "-o", "json"], 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap().as_array().unwrap().len(),
        1
    );
}

/// `kiln service apply|show` as a user runs them, then SIGTERM (what `systemctl stop` and
/// `docker stop` send): the server stops gracefully and its instances with it, nothing left
/// listening on their ports.
#[test]
fn service_commands_run_an_instance_and_sigterm_stops_it_with_the_server() {
    let mut s = Server::start_on("process");
    s.ok(&["project", "create", "shop"], 0);
    // The directory it serves marks its process (other tests' instances may take the same
    // host port once this one is gone).
    // A host port of its own: the embedded agents of the tests running beside this one hand
    // out the same default range (31000-32000) from its bottom, so take a free one at its top.
    let served = tempfile::tempdir().unwrap();
    let marker = served.path().display().to_string();
    let host_port = (31900..32000)
        .rev()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 31900-31999");
    let file = s.file(
        "web.yml",
        &format!("kind: service\nname: web\ncommand: [sh, -c, \"exec python3 -m http.server --bind 127.0.0.1 --directory {marker} $KILN_PORT_WEB\"]\nports:\n  - {{ name: web, container: 8000, host: {host_port} }}\nhealth:\n  tcp: web\n  grace: 3s\n  interval: 200ms\n"),
    );
    let (out, _) = s.ok(&["service", "apply", &file, "--project", "shop"], 0);
    assert!(out.contains("service shop/web at version 1 (template 1), 1 replica"), "{out}");
    let started = std::time::Instant::now();
    let port = loop {
        let (json, _) = s.ok(&["service", "show", "web", "--project", "shop", "-o", "json"], 0);
        let info: serde_json::Value = serde_json::from_str(&json).unwrap();
        let i = &info["instances"][0];
        if i["state"] == "healthy" {
            break i["ports"]["web"].as_u64().unwrap();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "never healthy: {info:#}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (table, _) = s.ok(&["service", "show", "web", "--project", "shop"], 0);
    assert!(table.contains("healthy") && table.contains(&format!("web={port}")), "{table}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_ok());
    assert_eq!(crate::adoption::marked(&marker).len(), 1, "one instance process");
    let killed = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = s.child.wait().unwrap();
    assert!(status.success(), "a SIGTERM stops the server gracefully: {status:?}");
    assert_eq!(
        crate::adoption::marked(&marker),
        std::collections::BTreeSet::new(),
        "the instance stopped with the server"
    );
}

/// `kiln service logs`: every instance's lines prefixed by its id (like `docker compose
/// logs`), one instance's unprefixed, JSON lines with `-o json`, and `-f` following an
/// instance until it stops.
#[test]
fn service_logs_show_each_instance_and_follow_one_until_it_stops() {
    let s = Server::start_on("process");
    s.ok(&["project", "create", "shop"], 0);
    let file = s.file(
        "echo.yml",
        "kind: service\nname: echo\nreplicas: 2\ncommand: [sh, -c, \"echo hello from $KILN_INSTANCE; echo oops >&2; exec sleep 600\"]\n",
    );
    s.ok(&["service", "apply", &file, "--project", "shop"], 0);
    let logs = |args: &[&str]| {
        let mut all = vec!["service", "logs", "echo", "--project", "shop"];
        all.extend_from_slice(args);
        s.ok(&all, 0).0
    };
    // Both instances run and have printed both lines.
    let started = Instant::now();
    let ids: Vec<String> = loop {
        let (json, _) = s.ok(&["service", "show", "echo", "--project", "shop", "-o", "json"], 0);
        let info: serde_json::Value = serde_json::from_str(&json).unwrap();
        let ids: Vec<String> = info["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect();
        let text = logs(&[]);
        if ids.len() == 2 && text.lines().count() == 4 {
            break ids;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{info:#}\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = logs(&[]);
    for id in &ids {
        assert!(text.lines().any(|l| l == format!("{id} | hello from {id}")), "{text}");
        assert!(text.lines().any(|l| l == format!("{id} | oops")), "{text}");
    }
    // Stdout and stderr are read apart: their lines come in either order.
    let mut one: Vec<String> = logs(&["--instance", &ids[0]]).lines().map(String::from).collect();
    one.sort();
    assert_eq!(one, [format!("hello from {}", ids[0]), "oops".into()]);
    let json = logs(&["--instance", &ids[1], "-o", "json"]);
    let lines: Vec<serde_json::Value> =
        json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{json}");
    assert!(lines.iter().all(|l| l["instance"] == ids[1].as_str()), "{json}");
    let out = lines.iter().find(|l| l["stream"] == "stdout").unwrap();
    assert_eq!(out["text"], format!("hello from {}", ids[1]));
    let (_, stderr) =
        s.ok(&["service", "logs", "echo", "--instance", "nope", "--project", "shop"], 2);
    assert!(stderr.contains("has no instance `nope`"), "{stderr}");

    // Followed, the log ends when the instance stops.
    let mut follow = s
        .cmd(&["service", "logs", "echo", "-f", "--instance", &ids[0], "--project", "shop"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!([format!("hello from {}", ids[0]), "oops".into()].contains(&line), "{line}");
    s.ok(&["service", "stop", "echo", "--project", "shop"], 0);
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = follow.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "`service logs -f` never ended");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
}

/// `kiln metric apply|list|show|delete` as a user runs them: a rule scraping a service's
/// instance shows it up with its samples; a bad rule file is refused with positions.
#[test]
fn metric_commands_apply_show_and_delete_a_scraping_rule() {
    let mut s = Server::start_on("process");
    s.ok(&["project", "create", "shop"], 0);
    let service = s.file(
        "web.yml",
        "kind: service\nname: web\ncommand: [sh, -c, \"printf 'builds_total 3\\\\n' > metrics && exec python3 -m http.server --bind 127.0.0.1 $KILN_PORT_WEB\"]\nports:\n  - { name: web, container: 8000 }\nlabels: { app: web }\nhealth:\n  tcp: web\n  grace: 3s\n  interval: 200ms\n",
    );
    s.ok(&["service", "apply", &service, "--project", "shop"], 0);
    let rule = s.file(
        "web-metrics.yml",
        "kind: metric\nname: web-metrics\nselector: app=web\nport: web\ninterval: 1s\n",
    );
    let (out, _) = s.ok(&["metric", "apply", &rule, "--project", "shop"], 0);
    assert!(
        out.contains("metric rule shop/web-metrics: /metrics every 1s on port web of the services with app=web"),
        "{out}"
    );
    let started = std::time::Instant::now();
    let target = loop {
        let (json, _) = s.ok(&["metric", "show", "web-metrics", "-p", "shop", "-o", "json"], 0);
        let info: serde_json::Value = serde_json::from_str(&json).unwrap();
        let t = &info["targets"][0];
        if t["up"] == true && t["samples"] == 1 {
            break t.clone();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "never scraped: {info:#}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let (table, _) = s.ok(&["metric", "list", "-p", "shop"], 0);
    assert!(table.contains("web-metrics") && table.contains("1/1"), "{table}");
    let (table, _) = s.ok(&["metric", "show", "web-metrics", "-p", "shop"], 0);
    assert!(table.contains(target["url"].as_str().unwrap()) && table.contains(" up "), "{table}");

    let bad =
        s.file("bad.yml", "kind: metric\nname: bad\nselector: app=web\nport: web\ntimeout: 30s\n");
    let (_, err) = s.ok(&["metric", "apply", &bad, "-p", "shop"], 2);
    assert!(
        err.contains("bad.yml:5:10: error: timeout (30s) is longer than interval (15s)"),
        "{err}"
    );
    let (json, _) = s.ok(&["metric", "list", "-p", "shop", "-o", "json"], 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap().as_array().unwrap().len(),
        1
    );

    s.ok(&["metric", "delete", "web-metrics", "-p", "shop"], 0);
    let (out, _) = s.ok(&["metric", "list", "-p", "shop"], 0);
    assert!(out.contains("no metric rules"), "{out}");
    let killed = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(s.child.wait().unwrap().success());
}

/// A job on a docker agent whose image is a private image of the server's own registry: the
/// agent pulls it with the pull-only token its lease carries (no `docker login` on the agent).
#[test]
fn a_docker_job_pulls_a_private_image_of_the_registry() {
    crate::support::require_docker();
    let s = Server::start_on("docker");
    let host = s.url.trim_start_matches("http://").to_string();
    let image = format!("{host}/default/tools:1");
    // The test's own docker CLI logs in with its own config, pushes, and forgets the image, so
    // that the agent has to pull it.
    let config = tempfile::tempdir().unwrap();
    let docker = |args: &[&str], input: Option<&str>| {
        let mut c = Command::new("docker");
        c.args(args).env("DOCKER_CONFIG", config.path()).stdin(Stdio::piped());
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("docker CLI runs");
        if let Some(text) = input {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "docker {args:?}: {err}");
    };
    s.ok(&["project", "create", "default"], 0);
    docker(&["login", &host, "-u", "admin", "--password-stdin"], Some(&s.token));
    docker(&["tag", "busybox:latest", &image], None);
    docker(&["push", &image], None);
    docker(&["rmi", &image], None);
    let gone = Command::new("docker").args(["image", "inspect", &image]).output().unwrap();
    assert!(!gone.status.success(), "{image} is still on the engine");

    s.pipeline(
        "private",
        &format!(
            "name: private\nstages:\n  - name: s\n    jobs:\n      hello:\n        image: {image}\n        script: echo pulled and ran\n"
        ),
    );
    let (stdout, stderr) = s.ok(&["trigger", "default/private", "--follow"], 0);
    assert!(stdout.contains("pulled and ran"), "{stdout}\n{stderr}");
    assert!(stdout.contains("run default/private#1 success"), "{stdout}");
    let _ = Command::new("docker").args(["rmi", &image]).output();
}

/// `kiln nodes prepull` and `kiln nodes images` on a server whose only node runs processes:
/// it holds no images, so the prepull skips it and says why (the pulls themselves are
/// kiln-server's `images.rs`, in real containers).
#[test]
fn nodes_prepull_and_images_say_what_a_process_node_does() {
    let s = Server::start();
    let deadline = Instant::now() + Duration::from_secs(20);
    let node = loop {
        let (stdout, _) = s.ok(&["nodes", "-o", "json"], 0);
        let nodes: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if nodes.as_array().is_some_and(|n| n.len() == 1 && n[0]["state"] == "ready") {
            break nodes[0]["name"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "{nodes:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = s.ok(&["nodes", "prepull", "busybox:latest"], 0);
    assert!(stderr.contains("pulling busybox:latest onto 1 node(s)"), "{stderr}");
    assert!(stderr.contains(&format!("[1/1] {node} skipped")), "{stderr}");
    assert!(
        stdout.contains("NODE") && stdout.contains("its process executor holds no images"),
        "{stdout}"
    );
    let (stdout, _) = s.ok(&["nodes", "prepull", "busybox:latest", "-o", "json"], 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(status["done"], true, "{status:#}");
    assert_eq!(status["nodes"][0]["state"], "skipped", "{status:#}");
    let (stdout, _) = s.ok(&["nodes", "images", &node], 0);
    assert_eq!(stdout.trim(), format!("node {node} reports no images"));
    let (stdout, _) = s.ok(&["nodes", "images", &node, "-o", "json"], 0);
    assert_eq!(stdout.trim(), "[]");
    // Bad input: a selector no node matches, a selector that is not key=value.
    let (_, stderr) =
        s.ok(&["nodes", "prepull", "busybox:latest", "--selector", "city=nowhere"], 2);
    assert!(stderr.contains("no node matches city=nowhere"), "{stderr}");
    let (_, stderr) = s.ok(&["nodes", "prepull", "busybox:latest", "--selector", "city"], 2);
    assert!(stderr.contains("expected key=value"), "{stderr}");
}
