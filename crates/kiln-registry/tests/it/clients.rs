//! Real clients against the registry: the docker CLI (login, build, push, pull, run) and
//! skopeo (copy from a docker archive and between repositories, inspect, delete). A missing
//! tool skips its test with a printed reason, unless `KILN_REQUIRE_DOCKER=1`.

use std::path::Path;
use std::process::{Command, Output};

use kiln_store::Role;
use reqwest::Method;

use crate::support::Reg;

/// Whether `program args` runs and succeeds; if not, prints why the test is skipped (or
/// fails it under `KILN_REQUIRE_DOCKER=1`).
pub(crate) fn available(test: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program).args(args).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("KILN_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "{test}: `{program}` is not available but KILN_REQUIRE_DOCKER=1 \
             (run `cargo xtask images`, which starts an engine and installs the clients)"
        );
        let note = format!(
            "skipped {test}: `{program} {}` failed (not installed or no engine)\n",
            args.join(" ")
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
    }
    ok
}

pub(crate) fn docker_ok(test: &str) -> bool {
    available(test, "docker", &["version", "--format", "{{.Server.APIVersion}}"])
        && available(test, "docker", &["image", "inspect", "busybox:latest"])
}

pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).env("DOCKER_BUILDKIT", "0");
    if let Some(input) = stdin {
        use std::io::Write;
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    } else {
        cmd.output().unwrap()
    }
}

pub(crate) fn ok(program: &str, args: &[&str], stdin: Option<&str>) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.status.success(),
        "`{program} {}` failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Builds a three-layer image from busybox in `dir`, tagged `tag`.
pub(crate) fn build(dir: &Path, tag: &str, marker: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("a.txt"), format!("first {marker}\n")).unwrap();
    std::fs::write(dir.join("c.txt"), format!("third {marker}\n")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM busybox:latest\nCOPY a.txt /data/a.txt\nRUN echo \"built $(cat /data/a.txt)\" > /data/b.txt\nCOPY c.txt /data/c.txt\n",
    )
    .unwrap();
    ok("docker", &["build", "-q", "-t", tag, &dir.display().to_string()], None);
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_login_push_pull_run_and_concurrent_pushes_sharing_layers() {
    if !docker_ok("docker_login_push_pull") {
        return;
    }
    let reg = Reg::start().await;
    let dev = reg.token("ci", Role::Developer, Some("team")).await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("docker-config");
    let cfg = config.display().to_string();
    let host = reg.host.clone();
    let image = format!("{host}/team/app:v1");
    let (image2, image3) = (format!("{host}/team/app2:v1"), format!("{host}/team/app3:v1"));

    let (cfg2, host2, dev2) = (cfg.clone(), host.clone(), dev.clone());
    let work_path = work.path().to_path_buf();
    let (i1, i2, i3) = (image.clone(), image2.clone(), image3.clone());
    tokio::task::spawn_blocking(move || {
        // A wrong password is refused; the Kiln token logs in.
        let bad = run(
            "docker",
            &["--config", &cfg2, "login", &host2, "-u", "kiln", "--password-stdin"],
            Some("kiln_wrong\n"),
        );
        assert!(!bad.status.success());
        ok(
            "docker",
            &["--config", &cfg2, "login", &host2, "-u", "kiln", "--password-stdin"],
            Some(&format!("{dev2}\n")),
        );

        build(&work_path.join("one"), &i1, "one");
        ok("docker", &["--config", &cfg2, "push", &i1], None);
        ok("docker", &["rmi", &i1], None);
        ok("docker", &["--config", &cfg2, "pull", &i1], None);
        let out = ok(
            "docker",
            &["run", "--rm", &i1, "cat", "/data/a.txt", "/data/b.txt", "/data/c.txt"],
            None,
        );
        assert_eq!(out, "first one\nbuilt first one\nthird one\n");

        // Two images sharing the busybox layer, pushed at the same time.
        build(&work_path.join("two"), &i2, "two");
        build(&work_path.join("three"), &i3, "three");
        let pushes: Vec<_> = [i2.clone(), i3.clone()]
            .into_iter()
            .map(|i| {
                let cfg = cfg2.clone();
                std::thread::spawn(move || ok("docker", &["--config", &cfg, "push", &i], None))
            })
            .collect();
        for p in pushes {
            p.join().unwrap();
        }
        for i in [&i2, &i3] {
            ok("docker", &["rmi", i], None);
        }
        ok("docker", &["--config", &cfg2, "pull", &i3], None);
        let out = ok("docker", &["run", "--rm", &i3, "cat", "/data/c.txt"], None);
        assert_eq!(out, "third three\n");
        ok("docker", &["rmi", &i1, &i3], None);

        // Logged out, a private repository does not pull.
        ok("docker", &["--config", &cfg2, "logout", &host2], None);
        let anon = run("docker", &["--config", &cfg2, "pull", &i1], None);
        assert!(!anon.status.success());
    })
    .await
    .unwrap();

    // The registry saw three repositories sharing the base layer, stored once.
    let body: serde_json::Value = reg
        .req(Method::GET, "/v2/_catalog", Some(&reg.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["repositories"], serde_json::json!(["team/app", "team/app2", "team/app3"]));
    let manifest = |repo: &str| {
        let r = reg
            .req(Method::GET, &format!("/v2/{repo}/manifests/v1"), Some(&reg.admin))
            .header("Accept", "application/vnd.docker.distribution.manifest.v2+json")
            .send();
        async move { r.await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let (m1, m3) = (manifest("team/app").await, manifest("team/app3").await);
    assert_eq!(m1["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(m1["layers"].as_array().unwrap().len(), 4, "busybox + COPY + RUN + COPY");
    assert_eq!(m1["layers"][0]["digest"], m3["layers"][0]["digest"]);
    let base =
        m1["layers"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert_eq!(reg.blob_files().iter().filter(|f| **f == base).count(), 1);
    let events = reg.app().store.registry_events(None, 10).await.unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.actor == "ci" && e.tag.as_deref() == Some("v1")));
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_copy_inspect_delete() {
    if !docker_ok("skopeo_copy_inspect_delete")
        || !available("skopeo_copy_inspect_delete", "skopeo", &["--version"])
    {
        return;
    }
    let reg = Reg::start().await;
    let admin = reg.admin.clone();
    let host = reg.host.clone();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("busybox.tar").display().to_string();
    let creds = format!("kiln:{admin}");
    let out = tokio::task::spawn_blocking(move || {
        ok("docker", &["save", "-o", &archive, "busybox:latest"], None);
        let src = format!("docker://{host}/team/busybox:1");
        ok(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                "--dest-creds",
                &creds,
                &format!("docker-archive:{archive}"),
                &src,
            ],
            None,
        );
        // Registry to registry, converted to OCI on the way.
        let oci = format!("docker://{host}/other/busybox:oci");
        ok(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--src-creds",
                &creds,
                "--dest-creds",
                &creds,
                "--format",
                "oci",
                &src,
                &oci,
            ],
            None,
        );
        let inspect = |r: &str| {
            let out = ok("skopeo", &["inspect", "--tls-verify=false", "--creds", &creds, r], None);
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        let (a, b) = (inspect(&src), inspect(&oci));
        assert_eq!(a["Layers"].as_array().unwrap().len(), 1);
        let raw = ok(
            "skopeo",
            &["inspect", "--raw", "--tls-verify=false", "--creds", &creds, &oci],
            None,
        );
        let raw: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(raw["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        ok("skopeo", &["delete", "--tls-verify=false", "--creds", &creds, &oci], None);
        let gone = run("skopeo", &["inspect", "--tls-verify=false", "--creds", &creds, &oci], None);
        assert!(!gone.status.success(), "deleted image still inspects");
        (a, b)
    })
    .await
    .unwrap();
    let (a, _) = out;
    let digest = a["Digest"].as_str().unwrap();
    let resp = reg
        .req(Method::HEAD, &format!("/v2/team/busybox/manifests/{digest}"), Some(&reg.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        reg.req(Method::GET, "/v2/other/busybox/tags/list", Some(&reg.admin)).send().await.unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!([]));
}
