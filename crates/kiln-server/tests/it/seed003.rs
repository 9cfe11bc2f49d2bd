//! Seed 003 end to end, with real containers: every push to `main` builds an image from the
//! repository's Dockerfile (`docker build` on a build agent) and pushes it to Kiln's registry;
//! the pipeline deploys it to dev, smoke-tests dev through discovery, deploys to staging, then
//! to prod once a second user approves. The service (busybox httpd in a container on a Docker
//! agent) serves its image's `version` and the config file the config center rendered for its
//! environment, which the test reads over HTTP. A config release to staging changes staging
//! only; a bad build (its health check fails) rolls back by itself; a rollback of prod to
//! deployment 1 serves deployment 1's image and config again.

use std::time::Duration;

use kiln_api::config::{ReleaseRequest, SetValues};
use kiln_api::deploy::{Deployment, RollbackDeployment};
use kiln_api::environments::CreateEnvironment;
use kiln_api::pool::AttrValue;
use kiln_server::webhooks::Provider;
use kiln_testkit::wait::until;
use reqwest::StatusCode;

use crate::environments::user;
use crate::git::{GitServer, HOOK_SECRET, TOKEN, USER, WorkingCopy, deliver, push_payload};
use crate::support::{Backend, TestServer, job, log_text, on_loopback};

/// The repository's Dockerfile: the version file next to where httpd serves, the config
/// files mounted below it (`config.path` of the service).
const DOCKERFILE: &str = "FROM busybox:latest\nCOPY version /www/version\n\
                          CMD [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// A Dockerfile whose image serves no `/version`: its health check fails.
const BROKEN: &str = "FROM busybox:latest\nCOPY version /www/v\n\
                      CMD [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// The service every deploy job deploys (a service file's mapping without `kind`).
const SERVICE: &str = r#"
            name: web
            replicas: 1
            ports: [{ name: http, container: 8080 }]
            constraints: [[kind, LIKE, runner]]
            health:
              http: { port: http, path: /version }
              interval: 200ms
              timeout: 1s
              failures: 3
            config: { path: /www/config, on-change: none }
            update: { max-surge: 1, max-unavailable: 0, deadline: 20s }
"#;

/// The pipeline: build and push on a build agent, deploy to dev, smoke-test dev (through
/// discovery, with the job's own token), deploy to staging, then to prod.
const WORKFLOW: &str = r#"name: ci
source: { repository: '@URL@', credentials: GIT_TOKEN }
on:
  push: { branches: [main] }
stages:
  - name: build
    jobs:
      image:
        constraints: [[kind, LIKE, builder]]
        env: { DOCKER_HOST: "@DOCKER@" }
        script: |
          export DOCKER_CONFIG="$PWD/.docker"
          tag="$KILN_REGISTRY/shop/web:$KILN_RUN_NUMBER"
          docker build -q -t "$tag" .
          echo "$KILN_REGISTRY_TOKEN" | docker login "$KILN_REGISTRY" -u kiln --password-stdin
          docker push "$tag"
          docker rmi "$tag"
          echo "JOB_OUT image=shop/web:$KILN_RUN_NUMBER"
  - name: dev
    jobs:
      deploy-dev:
        deploy:
          environment: dev
          image: ${{ jobs.image.outputs.image }}
          service:@SERVICE@
  - name: test
    jobs:
      smoke:
        constraints: [[kind, LIKE, builder]]
        script: |
          python3 - <<'PY'
          import json, os, urllib.request
          url = os.environ["KILN_SERVER"] + "/api/v1/discovery/targets?selector=kiln.deploy%3Dweb,kiln.env%3Ddev"
          auth = {"Authorization": "Bearer " + os.environ["KILN_DISCOVERY_TOKEN"]}
          groups = json.load(urllib.request.urlopen(urllib.request.Request(url, headers=auth)))
          addr = groups[0]["targets"][0]
          got = urllib.request.urlopen(f"http://{addr}/version").read().decode().strip()
          want = open("version").read().strip()
          print(f"dev at {addr} serves version {got}")
          assert got == want, f"dev serves {got}, the commit has {want}"
          PY
  - name: staging
    jobs:
      deploy-staging:
        deploy:
          environment: staging
          image: ${{ jobs.image.outputs.image }}
          service:@SERVICE@
  - name: prod
    jobs:
      deploy-prod:
        deploy:
          environment: prod
          image: ${{ jobs.image.outputs.image }}
          service:@SERVICE@
"#;

/// The Docker agent's name: its containers carry it as `kiln.agent`.
const RUNNER: &str = "seed003-runner";

/// Removes the containers of [`RUNNER`] and the images it pulled when dropped (and when
/// made: a test that failed before leaves them running, holding their host ports), with the
/// docker CLI.
struct Containers;

impl Containers {
    fn sweep() -> Containers {
        Containers.remove();
        Containers
    }

    fn remove(&self) {
        let label = format!("label=kiln.agent={RUNNER}");
        let ids =
            std::process::Command::new("docker").args(["ps", "-aq", "--filter", &label]).output();
        let ids = ids.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker").args(["rm", "-f"]).args(&ids).output();
        }
        // The images the agent pulled from the test servers' registries.
        let images = std::process::Command::new("docker")
            .args(["images", "--format", "{{.Repository}} {{.ID}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let pulled: Vec<&str> = images
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(repo, _)| repo.starts_with("127.0.0.1:") && repo.ends_with("/shop/web"))
            .map(|(_, id)| id)
            .collect();
        if !pulled.is_empty() {
            let _ = std::process::Command::new("docker").args(["rmi", "-f"]).args(&pulled).output();
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What the instance of `web-<env>` serves at `path`, once its one instance is healthy at
/// the service's current template.
async fn served(s: &TestServer, env: &str, path: &str) -> String {
    let service = format!("web-{env}");
    let port = until(
        &format!("{service} healthy"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let i = s.admin.service("shop", &service).await.map_err(|e| e.to_string())?;
            let live: Vec<_> = i.instances.iter().filter(|x| x.state != "stopped").collect();
            match live.as_slice() {
                [one] if one.state == "healthy" && one.version == i.template => {
                    Ok(one.ports["http"])
                }
                _ => Err(format!("{i:#?}")),
            }
        },
    )
    .await;
    let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{service}{path}");
    resp.text().await.unwrap()
}

/// Waits until `web-<env>` serves `want` at `path` (a config file rewritten in place).
async fn serves(s: &TestServer, env: &str, path: &str, want: &str) {
    until(
        &format!("web-{env} serves {want:?} at {path}"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let got = served(s, env, path).await;
            if got == want { Ok(()) } else { Err(got) }
        },
    )
    .await;
}

/// Deployment `n` of web to `env`, once it is in `state`.
async fn deployment(s: &TestServer, env: &str, n: u32, state: &str) -> Deployment {
    until(
        &format!("deployment {n} of web to {env} is {state}"),
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async {
            match s.admin.deployment("shop", "web", env, n).await {
                Ok(d) if d.state == state => Ok(d),
                other => Err(format!("{other:?}\nthe pipeline's jobs: {}", jobs(s).await)),
            }
        },
    )
    .await
}

/// The jobs of the project's latest run, with their states and reasons (for failures).
async fn jobs(s: &TestServer) -> String {
    let query = kiln_client::RunQuery { project: Some("shop".into()), ..Default::default() };
    let Some(latest) = s.admin.runs(&query).await.ok().and_then(|r| r.into_iter().next()) else {
        return "no run".into();
    };
    let Ok(d) = s.admin.run(&latest.id).await else { return "no run".into() };
    let jobs: Vec<String> = d
        .jobs
        .iter()
        .map(|j| format!("{} {} {}", j.id, j.state, j.reason.as_deref().unwrap_or("")))
        .collect();
    let mut out = format!("{} {}: {}", d.run.full_name(), d.run.state, jobs.join("; "));
    for env in ["dev", "staging", "prod"] {
        if let Ok(i) = s.admin.service("shop", &format!("web-{env}")).await {
            for x in &i.instances {
                out.push_str(&format!("\nweb-{env} {} {} {:?}", x.id, x.state, x.reason));
            }
        }
    }
    out
}

/// The site config of `env` as rendered (the template and its values below).
fn site(greeting: &str, env: &str) -> String {
    format!("greeting={greeting}\nenvironment={env}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_003_builds_deploys_promotes_configures_and_rolls_back_in_containers() {
    let _containers = Containers::sweep();
    let gits = GitServer::start().await;
    let url = gits.create("shop/web");
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let kind = |k: &str| [("kind", AttrValue::Text(k.into()))];
    let _builder = s.agent("builder", 2, on_loopback(&kind("builder"), 48000));
    let _runner = s.docker_agent(RUNNER, 8, on_loopback(&kind("runner"), 48100)).await;
    let bob = user(&s, "bob", "developer").await;

    // The project: its environments, its secrets, and the config of `web` in each.
    s.admin.create_project("shop").await.unwrap();
    for (name, after, protected) in
        [("dev", None, false), ("staging", Some("dev"), false), ("prod", Some("staging"), true)]
    {
        let req =
            CreateEnvironment { name: name.into(), after: after.map(str::to_string), protected };
        s.admin.create_environment("shop", &req).await.unwrap();
    }
    s.admin.set_secret("shop", "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    s.admin.set_secret("shop", "WEBHOOK_SECRET", HOOK_SECRET).await.unwrap();
    let a = &s.admin;
    a.set_config_template(
        "shop",
        "web",
        "site.conf",
        "greeting={{ greeting }}\nenvironment={{ kiln.environment }}\n",
    )
    .await
    .unwrap();
    let values = |yaml: &str| SetValues { yaml: yaml.into(), file: None };
    a.set_config_values("shop", "web", None, &values("greeting: hello\n")).await.unwrap();
    let note = |n: &str| ReleaseRequest { note: Some(n.into()), instances: vec![], all: false };
    for env in ["dev", "staging", "prod"] {
        let r = a.config_release("shop", "web", env, &note("first")).await.unwrap();
        if env == "prod" {
            assert_eq!(r.outcome, "pending", "prod is protected: {r:?}");
            bob.config_decide("shop", "web", "prod", r.release.number, true).await.unwrap();
        }
    }

    let docker = std::env::var("DOCKER_HOST")
        .unwrap_or_else(|_| "unix:///run/kiln-docker/docker.sock".into());
    let workflow =
        WORKFLOW.replace("@URL@", &url).replace("@DOCKER@", &docker).replace("@SERVICE@", SERVICE);
    s.apply("shop", "ci", &workflow).await;

    // A push of version 1: built, deployed to dev, tested there, deployed to staging, and to
    // prod only once bob approves.
    let work = WorkingCopy::new(&gits.path("shop/web"));
    let push = |n: u32, files: &[(&str, &str)], message: &str| {
        let pushed = work.push("main", files, message);
        let payload = push_payload(Provider::GitHub, "shop/web", &url, &pushed);
        let s = &s;
        async move {
            let (status, answer) =
                deliver(s, Provider::GitHub, "push", &format!("push-{n}"), &payload, HOOK_SECRET)
                    .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["runs"], serde_json::json!([format!("shop/ci#{n}")]), "{answer}");
            let query =
                kiln_client::RunQuery { project: Some("shop".into()), ..Default::default() };
            let runs = s.admin.runs(&query).await.unwrap();
            runs.into_iter().find(|r| r.number == u64::from(n)).expect("the pushed run").id
        }
    };
    let run1 = push(1, &[("Dockerfile", DOCKERFILE), ("version", "1\n")], "Version 1").await;
    let pending = deployment(&s, "prod", 1, "pending").await;
    assert_eq!(pending.image, "shop/web:1");
    assert_eq!(served(&s, "dev", "/version").await, "1\n");
    assert_eq!(served(&s, "dev", "/config/site.conf").await, site("hello", "dev"));
    assert_eq!(served(&s, "staging", "/version").await, "1\n");
    assert!(s.admin.service("shop", "web-prod").await.is_err(), "nothing runs in prod yet");
    let smoke = log_text(&s, &run1, Some("smoke")).await;
    assert!(smoke.iter().any(|l| l.contains("serves version 1")), "{smoke:#?}");
    // The push asked for it (the run's author); a second user approves.
    let started = s.admin.run(&run1).await.unwrap().run;
    assert_eq!(pending.asked_by, started.triggered_by);
    assert!(pending.asked_by.contains("push"), "{pending:?}");
    bob.decide_deployment("shop", "web", "prod", 1, true).await.unwrap();
    let d = s.wait_final(&run1).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    assert_eq!(served(&s, "prod", "/version").await, "1\n");
    assert_eq!(served(&s, "prod", "/config/site.conf").await, site("hello", "prod"));

    // A config change released to staging changes staging only (the file rewritten in place).
    a.set_config_values("shop", "web", Some("staging"), &values("greeting: hola\n")).await.unwrap();
    a.config_release("shop", "web", "staging", &note("hola")).await.unwrap();
    serves(&s, "staging", "/config/site.conf", &site("hola", "staging")).await;
    assert_eq!(served(&s, "dev", "/config/site.conf").await, site("hello", "dev"));
    assert_eq!(served(&s, "prod", "/config/site.conf").await, site("hello", "prod"));

    // prod's config changes (release 2, approved), then version 2 goes all the way.
    a.set_config_values("shop", "web", Some("prod"), &values("greeting: bonjour\n")).await.unwrap();
    let r = a.config_release("shop", "web", "prod", &note("bonjour")).await.unwrap();
    bob.config_decide("shop", "web", "prod", r.release.number, true).await.unwrap();
    serves(&s, "prod", "/config/site.conf", &site("bonjour", "prod")).await;
    let run2 = push(2, &[("version", "2\n")], "Version 2").await;
    deployment(&s, "prod", 2, "pending").await;
    bob.decide_deployment("shop", "web", "prod", 2, true).await.unwrap();
    let d = s.wait_final(&run2).await;
    assert_eq!(d.run.state, "success", "{d:#?}");
    assert_eq!(served(&s, "prod", "/version").await, "2\n");
    let two = s.admin.deployment("shop", "web", "prod", 2).await.unwrap();
    assert_eq!(two.config.as_ref().map(|c| c.release), Some(r.release.number));

    // A bad build: its health check fails, dev's deployment rolls back by itself at its
    // deadline, the pipeline stops there, and dev serves version 2 again.
    let run3 = push(3, &[("Dockerfile", BROKEN), ("version", "3\n")], "Version 3").await;
    let d = s.wait_final(&run3).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let dev = job(&d, "deploy-dev");
    assert_eq!(dev.state, "failure");
    assert!(dev.reason.as_deref().unwrap_or_default().contains("rolled_back"), "{dev:#?}");
    assert_eq!(job(&d, "deploy-staging").state, "skipped", "{d:#?}");
    let history = s.admin.deployment_history("shop", "web", "dev").await.unwrap();
    assert_eq!(
        history.iter().map(|d| (d.kind.as_str(), d.state.as_str())).take(2).collect::<Vec<_>>(),
        [("auto-rollback", "succeeded"), ("deploy", "rolled_back")]
    );
    assert_eq!(served(&s, "dev", "/version").await, "2\n");

    // `kiln rollback web --env prod --to 1`: deployment 1's image and config again, at once
    // (no build, no gate, no approval: it was approved there before).
    let back = RollbackDeployment { to: Some(1), note: Some("back to 1".into()) };
    let r = s.admin.rollback_deployment("shop", "web", "prod", &back).await.unwrap();
    assert_eq!((r.kind.as_str(), r.rollback_of), ("rollback", Some(1)));
    deployment(&s, "prod", r.number, "succeeded").await;
    assert_eq!(served(&s, "prod", "/version").await, "1\n");
    serves(&s, "prod", "/config/site.conf", &site("hello", "prod")).await;
    s.stop().await;
}
