//! Image builds in jobs (`build:`), with real containers: a job on a Docker agent builds a
//! two-stage Dockerfile of its checkout with buildah in the builder image (no Docker socket,
//! not privileged: its container is inspected while it runs) and pushes it to Kiln's
//! registry with the job's token; a second job runs the pushed image by the digest output;
//! a rebuild of the same commit takes every step from the layer cache in the registry.
//! Bad input fails the job with a clear last line: a broken Dockerfile (its line), a
//! Dockerfile that does not exist, a tag in another project. A process agent builds with
//! the host's buildah, and pushes to another registry (CNCF distribution with a password
//! file) with a login from a project secret. Ports 48200-48299.

use std::time::Duration;

use kiln_api::pool::AttrValue;
use kiln_testkit::wait::until;
use kiln_testkit::{DISTRIBUTION_PASSWORD, DISTRIBUTION_USER, Distribution};

use crate::git::{GitServer, TOKEN, USER, WorkingCopy};
use crate::support::{Backend, TestServer, job, log_text, on_loopback};

/// Two stages on `FROM scratch` (nothing to pull): the first runs a command on the commit's
/// `version`, the second keeps its result and busybox, and links busybox's applets so a job
/// can run a script in it.
const DOCKERFILE: &str = r#"FROM scratch AS build
COPY busybox /bin/busybox
COPY version /src/version
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir /out && /bin/busybox sed 's/^/built version /' /src/version > /out/greeting"]

FROM scratch
COPY --from=build /out/greeting /greeting
COPY --from=build /bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"#;

/// Build steps of [`DOCKERFILE`] that make a layer (every step but the two `FROM`s).
const STEPS: usize = 6;

/// A Dockerfile whose third line fails.
const BROKEN: &str = "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"false\"]\n";

/// Builds the commit's Dockerfile, then runs what it pushed, by digest.
const WORKFLOW: &str = r#"name: images
params:
  version: { type: string, default: "1" }
source: { repository: '@URL@', credentials: GIT_TOKEN }
stages:
  - name: build
    jobs:
      image:
        build:
          tags: [app:latest, "$KILN_REGISTRY/shop/app:${{ params.version }}"]
  - name: use
    jobs:
      run-it:
        image: ${{ jobs.image.outputs.image }}
        script: |
          cat /greeting
          echo "ran ${{ jobs.image.outputs.digest }}"
"#;

/// Jobs that fail before or while building, one per pipeline.
const BAD: &[(&str, &str)] = &[
    ("broken", "build: { dockerfile: broken/Dockerfile, context: broken, tags: [broken:1] }"),
    ("missing", "build: { dockerfile: nope/Dockerfile, tags: [app:1] }"),
    ("elsewhere", "build: { tags: [\"$KILN_REGISTRY/other/app:1\"] }"),
];

/// The Docker agent's name (its containers carry it as `kiln.agent`).
const AGENT: &str = "builds-runner";

/// A working copy of `shop/app` with the test's Dockerfile, busybox and `version`, pushed.
fn repository(gits: &GitServer) -> String {
    let url = gits.create("shop/app");
    let work = WorkingCopy::new(&gits.path("shop/app"));
    std::fs::copy("/usr/bin/busybox", work.dir().join("busybox")).expect("busybox on this host");
    std::fs::create_dir_all(work.dir().join("broken")).unwrap();
    std::fs::copy("/usr/bin/busybox", work.dir().join("broken/busybox")).unwrap();
    work.push(
        "main",
        &[("Dockerfile", DOCKERFILE), ("version", "1\n"), ("broken/Dockerfile", BROKEN)],
        "An image",
    );
    url
}

/// The `HostConfig` of the agent's running build container, as `docker inspect` shows it,
/// looked for until one runs.
async fn build_container_config() -> serde_json::Value {
    until("a build container runs", Duration::from_secs(120), Duration::from_millis(50), || async {
        let label = format!("label=kiln.agent={AGENT}");
        let ps = std::process::Command::new("docker")
            .args(["ps", "-q", "--filter", &label, "--filter", "label=kiln.job=image"])
            .output()
            .map_err(|e| e.to_string())?;
        let id = String::from_utf8_lossy(&ps.stdout).trim().to_string();
        if id.is_empty() {
            return Err("none yet".to_string());
        }
        let out = std::process::Command::new("docker")
            .args([
                "inspect",
                "--format",
                "{{json .HostConfig}}|{{json .Mounts}}|{{.Config.Image}}",
                &id,
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut parts = text.splitn(3, '|');
        let host: serde_json::Value =
            serde_json::from_str(parts.next().unwrap_or("")).map_err(|e| format!("{e}: {text}"))?;
        let mounts: serde_json::Value =
            serde_json::from_str(parts.next().unwrap_or("")).map_err(|e| format!("{e}: {text}"))?;
        let image = parts.next().unwrap_or("").to_string();
        Ok(serde_json::json!({ "host": host, "mounts": mounts, "image": image }))
    })
    .await
}

/// The number `N` of "kiln build: N of M steps from the cache" in `log`, and `M`.
fn cached(log: &[String]) -> (usize, usize) {
    let line = log
        .iter()
        .find_map(|l| {
            l.strip_prefix("kiln build: ").and_then(|l| l.strip_suffix(" steps from the cache"))
        })
        .unwrap_or_else(|| panic!("no cache summary in {log:#?}"));
    let (n, m) = line.split_once(" of ").unwrap();
    (n.parse().unwrap(), m.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_builds_pushes_and_a_later_job_runs_the_image_and_a_rebuild_is_all_cached() {
    let gits = GitServer::start().await;
    let url = repository(&gits);
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let attrs = [("kind", AttrValue::Text("docker".into()))];
    let _agent = s.docker_agent(AGENT, 4, on_loopback(&attrs, 48200)).await;
    s.admin.create_project("shop").await.unwrap();
    s.admin.set_secret("shop", "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    s.apply("shop", "images", &WORKFLOW.replace("@URL@", &url)).await;

    let run = s.trigger("shop", "images", &[]).await;
    let watch = tokio::spawn(build_container_config());
    let d = s.wait_final(&run.id).await;
    let build = log_text(&s, &run.id, Some("image")).await;
    assert_eq!(d.run.state, "success", "{d:#?}\n{build:#?}");

    // The build ran in the builder image, unprivileged, without the Docker socket.
    let inspected = watch.await.unwrap();
    let builder = format!("kiln-builder:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(inspected["image"], builder.as_str(), "the builder image");
    let host = &inspected["host"];
    assert_eq!(host["Privileged"], false, "{host:#}");
    assert_eq!(host["SecurityOpt"], serde_json::json!(["seccomp=unconfined"]), "{host:#}");
    assert!(host["CapAdd"].is_null() || host["CapAdd"] == serde_json::json!([]), "{host:#}");
    let mounts = inspected["mounts"].to_string() + &host["Binds"].to_string();
    assert!(!mounts.contains("docker.sock"), "{mounts}");

    // The outputs name what was pushed; the next job ran that image.
    let image_job = job(&d, "image");
    let digest = image_job.outputs["digest"].clone();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{image_job:#?}");
    let image = &image_job.outputs["image"];
    assert!(image.ends_with(&format!("/shop/app@{digest}")), "{image}");
    let ran = log_text(&s, &run.id, Some("run-it")).await;
    assert!(ran.contains(&"built version 1".to_string()), "{ran:#?}");
    assert!(ran.contains(&format!("ran {digest}")), "{ran:#?}");
    assert_eq!(cached(&build), (0, STEPS), "a cold build: {build:#?}");
    // Both tags are in the registry at that digest.
    let mut tags: Vec<(String, String)> = s
        .admin
        .registry_tags("shop/app")
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.tag, t.digest))
        .collect();
    tags.sort();
    assert_eq!(tags, [("1".to_string(), digest.clone()), ("latest".to_string(), digest.clone())]);

    // The same commit again: every step from the registry's layer cache (a new builder
    // container, empty storage), the same image.
    let again = s.trigger("shop", "images", &[]).await;
    let d = s.wait_final(&again.id).await;
    let rebuild = log_text(&s, &again.id, Some("image")).await;
    assert_eq!(d.run.state, "success", "{d:#?}\n{rebuild:#?}");
    assert_eq!(cached(&rebuild), (STEPS, STEPS), "{rebuild:#?}");
    let using = rebuild.iter().filter(|l| l.starts_with("--> Using cache ")).count();
    assert_eq!(using, STEPS, "{rebuild:#?}");
    assert_eq!(job(&d, "image").outputs["digest"], digest, "an all-cached build is the same image");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_or_missing_dockerfile_or_a_tag_of_another_project_fails_clearly() {
    let gits = GitServer::start().await;
    let url = repository(&gits);
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _agent = s.docker_agent("builds-errors", 4, on_loopback(&[], 48250)).await;
    s.admin.create_project("shop").await.unwrap();
    s.admin.create_project("other").await.unwrap();
    s.admin.set_secret("shop", "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    for (name, build) in BAD {
        let yaml = format!(
            "name: {name}\nsource: {{ repository: '{url}', credentials: GIT_TOKEN }}\n\
             stages:\n  - name: build\n    jobs:\n      image:\n        {build}\n"
        );
        s.apply("shop", name, &yaml).await;
    }
    let mut last = Vec::new();
    for (name, _) in BAD {
        let run = s.trigger("shop", name, &[]).await;
        let d = s.wait_final(&run.id).await;
        assert_eq!(d.run.state, "failure", "{name}: {d:#?}");
        let log = log_text(&s, &run.id, Some("image")).await;
        last.push(
            log.iter().rev().find(|l| l.starts_with("kiln build: ")).cloned().unwrap_or_default(),
        );
        assert!(job(&d, "image").outputs.is_empty(), "{name}: nothing pushed: {d:#?}");
    }
    assert_eq!(
        last,
        [
            "kiln build: failed at broken/Dockerfile:3: RUN [\"/bin/busybox\", \"false\"]"
                .to_string(),
            "kiln build: no Dockerfile at 'nope/Dockerfile' in the workspace (build.dockerfile, \
             relative to the workspace): check the path and the commit checked out"
                .to_string(),
            "kiln build: tag $KILN_REGISTRY/other/app:1 is in project other: this job's registry \
             token pushes to project shop only; tag it <name>:<tag> or \
             $KILN_REGISTRY/shop/<name>:<tag>"
                .to_string(),
        ]
    );
    // No image reached the registry: at most the layer cache of the steps that built
    // before the broken one.
    let repos = s.admin.registry_repositories().await.unwrap();
    let names: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["shop/broken/cache"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_agent_builds_with_the_hosts_buildah_and_pushes() {
    let gits = GitServer::start().await;
    let url = repository(&gits);
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _agent = s.agent("builds-host", 2, on_loopback(&[], 48280));
    s.admin.create_project("shop").await.unwrap();
    s.admin.set_secret("shop", "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    let yaml = format!(
        "name: host\nsource: {{ repository: '{url}', credentials: GIT_TOKEN }}\n\
         stages:\n  - name: build\n    jobs:\n      image:\n        build: {{ tags: [host:1] }}\n"
    );
    s.apply("shop", "host", &yaml).await;
    let run = s.trigger("shop", "host", &[]).await;
    let d = s.wait_final(&run.id).await;
    let log = log_text(&s, &run.id, Some("image")).await;
    assert_eq!(d.run.state, "success", "{d:#?}\n{log:#?}");
    let digest = &job(&d, "image").outputs["digest"];
    let tags = s.admin.registry_tags("shop/host").await.unwrap();
    assert_eq!(tags.len(), 1, "{tags:#?}");
    assert_eq!(&tags[0].digest, digest);
    // buildah's storage is the agent's, under its workspaces directory.
    assert!(s.dir().join("ws-builds-host/buildah").is_dir(), "{log:#?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_build_pushes_to_another_registry_with_a_login_from_a_project_secret() {
    let gits = GitServer::start().await;
    let url = repository(&gits);
    let registry = Distribution::start(48291).await;
    let other = registry.host.clone();
    let s = TestServer::start_full(Backend::Sqlite, 0, Duration::from_secs(30)).await;
    let _agent = s.agent("builds-other", 2, on_loopback(&[], 48285));
    s.admin.create_project("shop").await.unwrap();
    s.admin.set_secret("shop", "GIT_TOKEN", &format!("{USER}:{TOKEN}")).await.unwrap();
    s.admin
        .set_secret("shop", "OTHER_AUTH", &format!("{DISTRIBUTION_USER}:{DISTRIBUTION_PASSWORD}"))
        .await
        .unwrap();
    let build = |auth: &str| {
        [
            format!("name: other-{auth}"),
            format!("source: {{ repository: '{url}', credentials: GIT_TOKEN }}"),
            "stages:".into(),
            "  - name: build".into(),
            "    jobs:".into(),
            "      image:".into(),
            "        build:".into(),
            format!("          tags: ['{other}/team/app:1', app:1]"),
            format!("          credentials: {{ '{other}': {auth} }}"),
            format!("          insecure-registries: ['{other}']"),
        ]
        .join("\n")
    };
    s.admin.set_secret("shop", "WRONG_AUTH", "robot:not-the-password").await.unwrap();
    s.apply("shop", "other", &build("OTHER_AUTH")).await;
    s.apply("shop", "wrong", &build("WRONG_AUTH")).await;

    let run = s.trigger("shop", "other", &[]).await;
    let d = s.wait_final(&run.id).await;
    let log = log_text(&s, &run.id, Some("image")).await;
    assert_eq!(d.run.state, "success", "{d:#?}\n{log:#?}");
    let outputs = &job(&d, "image").outputs;
    let digest = outputs["digest"].clone();
    assert_eq!(outputs["image"], format!("{other}/team/app@{digest}"), "{outputs:#?}");
    // The other registry has it, behind its login; Kiln's registry has the second tag.
    assert_eq!(registry.digest("team/app:1", true), Ok(digest.clone()));
    let anonymous = registry.digest("team/app:1", false).unwrap_err();
    assert!(
        anonymous.contains("unauthorized") || anonymous.contains("authentication required"),
        "{anonymous}"
    );
    let tags = s.admin.registry_tags("shop/app").await.unwrap();
    assert_eq!(tags.len(), 1, "{tags:#?}");
    // The password is nowhere in the log.
    assert!(!log.iter().any(|l| l.contains(DISTRIBUTION_PASSWORD)), "{log:#?}");

    // A wrong password fails the job before anything is built, with the registry's answer.
    let run = s.trigger("shop", "wrong", &[]).await;
    let d = s.wait_final(&run.id).await;
    assert_eq!(d.run.state, "failure", "{d:#?}");
    let log = log_text(&s, &run.id, Some("image")).await;
    let last =
        log.iter().rev().find(|l| l.starts_with("kiln build: ")).cloned().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "kiln build: login to {other} refused with the credentials in WRONG_AUTH: "
        )),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains("not-the-password")), "{log:#?}");
    s.stop().await;
}
