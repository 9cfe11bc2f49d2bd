//! oras (oras-py, the Python SDK from PyPI) pushes an artifact and a referrer to it, then pulls
//! the artifact back; the referrers API lists the referrer.

use std::process::Command;

use reqwest::Method;

use crate::support::Reg;

const SCRIPT: &str = r#"
import json, os, sys
import oras.client, oras.oci
host, token, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.chdir(work)
# Basic auth on every request: oras-py's token backend (0.2.43) asks for a new token only after
# a 403, while a token lacking a scope gets 401 `insufficient_scope` here, as in distribution.
c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend="basic")
c.auth.set_basic_auth("kiln", token)
with open("artifact.txt", "w") as f:
    f.write("hello from oras\n")
with open("sig.txt", "w") as f:
    f.write("signature bytes\n")
with open("sig-config.json", "w") as f:
    f.write("{}")
c.push(target=f"{host}/team/artifact:v1", files=["artifact.txt"], quiet=True)
r = c.do_request(f"http://{host}/v2/team/artifact/manifests/v1", "GET",
                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
subject = oras.oci.Subject(mediaType=r.headers["Content-Type"],
                           digest=r.headers["Docker-Content-Digest"], size=len(r.content))
sig = c.push(target=f"{host}/team/artifact:sig", files=["sig.txt"], subject=subject,
             manifest_config="sig-config.json:application/vnd.example.signature",
             manifest_annotations={"org.example.signed-by": "ci"}, quiet=True)
os.makedirs("out")
files = c.pull(target=f"{host}/team/artifact:v1", outdir="out")
print(json.dumps({"subject": subject.digest, "referrer": sig.headers["Docker-Content-Digest"],
                  "pulled": [open(p).read() for p in files]}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn oras_pushes_an_artifact_with_a_referrer_and_pulls_it() {
    let ok = Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("KILN_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "oras (Python) is missing but KILN_REQUIRE_DOCKER=1: run `cargo xtask images`"
        );
        eprintln!("skipped oras test: `python3 -c 'import oras.client'` failed (pip install oras)");
        return;
    }
    let reg = Reg::start().await;
    let dev = reg.token("dev", kiln_store::Role::Developer, Some("team")).await;
    let work = tempfile::tempdir().unwrap();
    let (host, token, dir) = (reg.host.clone(), dev.clone(), work.path().display().to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3").args(["-c", SCRIPT, &host, &token, &dir]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "oras failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["pulled"], serde_json::json!(["hello from oras\n"]));
    let subject = result["subject"].as_str().unwrap();
    let referrer = result["referrer"].as_str().unwrap();

    let list: serde_json::Value = reg
        .req(Method::GET, &format!("/v2/team/artifact/referrers/{subject}?artifactType=application/vnd.example.signature"), Some(&dev))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["manifests"][0]["digest"], referrer);
    assert_eq!(list["manifests"][0]["annotations"]["org.example.signed-by"], "ci");
    let none: serde_json::Value = reg
        .req(
            Method::GET,
            &format!("/v2/team/artifact/referrers/{subject}?artifactType=application/vnd.other"),
            Some(&dev),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["manifests"], serde_json::json!([]));
}
