//! A `build:` job as the script the image builder runs (pure: text in, text out): checks
//! before buildah starts (the Dockerfile exists, buildah is there, every tag is in Kiln's
//! registry and the run's project), `buildah login` with the job's registry token (Kiln's
//! registry alone marked insecure, as it may serve plain HTTP), `buildah bud --layers` with the layer cache in the registry (`--cache-from`/`--cache-to`
//! `<name>/cache`), the Dockerfile line of a failed step as the log's last line, how many
//! steps came from the cache, `buildah push --digestfile`, and the outputs
//! `JOB_OUT digest=sha256:…` and `JOB_OUT image=<registry>/<project>/<name>@sha256:…`.
//!
//! The same script runs everywhere ("one engine"): in the Docker executor's builder
//! container, on the host with the process executor, and under `kiln run`, where without a
//! registry (`KILN_REGISTRY` unset) it builds only and says "not pushed: no registry".
//! It needs a POSIX shell with `mktemp`, `tee`, `grep`, `sed`, `awk` and `tail` (busybox's do).

use kiln_workflow::build::{BuildSpec, TagRegistry, parse_tag};

/// Single-quotes `text` for a POSIX shell.
fn sq(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The awk program that finds the Dockerfile line of buildah's last `STEP`: instructions are
/// read with continuation lines joined and comments skipped, counted per stage (`FROM`
/// starts one), and compared with the step's text (whitespace folded); among equal ones,
/// the one at the step's stage and position wins. Prints the instruction's first line.
const FIND_LINE: &str = r#"
function norm(s) { gsub(/[ \t]+/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s); return s }
BEGIN {
  stage = 1; step = 0; want = last
  if (match(last, /\[[0-9]+\/[0-9]+\] STEP/)) stage = substr(last, RSTART + 1) + 0
  if (match(last, /STEP [0-9]+\//)) step = substr(last, RSTART + 5) + 0
  sub(/^.*STEP [0-9]+\/[0-9]+: /, "", want); want = norm(want)
}
{
  line = $0
  if (cont == "") { if (line ~ /^[ \t]*(#|$)/) next; start = NR }
  else if (line ~ /^[ \t]*#/) next
  if (line ~ /\\[ \t]*$/) { sub(/\\[ \t]*$/, "", line); cont = cont line " "; next }
  text = norm(cont line); cont = ""
  if (toupper(substr(text, 1, 5)) == "FROM ") { st++; k = 0 }
  k++
  if (text == want) { if (first == "") first = start; if (st == stage && k == step) exact = start }
  if (prefix == "" && want != "" && index(text, substr(want, 1, 24)) == 1) prefix = start
}
END { if (exact != "") print exact; else if (first != "") print first; else if (prefix != "") print prefix }
"#;

/// The script of a build job (run as `sh -e -c`).
pub fn script(spec: &BuildSpec) -> String {
    let mut s = String::new();
    let mut line = |l: &str| {
        s.push_str(l);
        s.push('\n');
    };
    let df = sq(&spec.dockerfile);
    let ctx = sq(&spec.context);
    line(&format!("# kiln build: {} in {}", spec.dockerfile, spec.context));
    line(r#"kiln_fail() { echo "kiln build: $*" >&2; exit 2; }"#);
    line(&format!(
        "[ -d {ctx} ] || kiln_fail \"the build context {ctx} is not a directory of the \
         workspace (build.context)\""
    ));
    line(&format!(
        "[ -f {df} ] || kiln_fail \"no Dockerfile at {df} in the workspace (build.dockerfile, \
         relative to the workspace): check the path and the commit checked out\""
    ));
    line(
        "command -v buildah >/dev/null 2>&1 || kiln_fail \"buildah is not installed here: \
         install it (Debian: apt-get install buildah) or run the job on an agent with the \
         Docker executor\"",
    );
    line("export BUILDAH_ISOLATION=chroot");
    line(r#"if [ -n "${KILN_BUILDAH_ROOT:-}" ]; then"#);
    line(
        r#"  kiln_b() { buildah --root "$KILN_BUILDAH_ROOT/root" --runroot "$KILN_BUILDAH_ROOT/run" --storage-driver vfs "$@"; }"#,
    );
    line("else");
    line(r#"  kiln_b() { buildah --storage-driver vfs "$@"; }"#);
    line("fi");
    line("kiln_tmp=$(mktemp -d)");
    line(r#"trap 'rm -rf "$kiln_tmp"' EXIT"#);
    line(r#"kiln_project=${KILN_PROJECT:-local}"#);
    // Kiln's registry: pushed to when the job has one (`kiln run` has none).
    line(r#"if [ -n "${KILN_REGISTRY:-}" ]; then kiln_reg=$KILN_REGISTRY; kiln_here=1; else"#);
    line(r#"  kiln_reg=localhost; kiln_here=0"#);
    line("fi");
    let push = if spec.push { 1 } else { 0 };
    line(&format!("kiln_push={push}"));
    if !spec.push {
        line(r#"echo "kiln build: not pushed (build.push is false)""#);
    }

    // Tags: each read as the checker read it (now rendered), placed in its registry:
    // `kiln_tN` the reference, `kiln_pN` 1 when it is pushed.
    let mut tags = Vec::new();
    let mut kiln_unpushed = false;
    for (i, written) in spec.tags.iter().enumerate() {
        let var = format!("kiln_t{i}");
        let pushed = format!("kiln_p{i}");
        let shown = sq(written);
        let tag = match parse_tag(written) {
            Ok(tag) => tag,
            Err(e) => {
                line(&format!("kiln_fail {}", sq(&format!("build tag: {e}"))));
                continue;
            }
        };
        let kiln = |line: &mut dyn FnMut(&str), indent: &str| {
            let project = match &tag.project {
                Some(p) => {
                    line(&format!(
                        "{indent}[ \"$kiln_project\" = {p} ] || kiln_fail \"tag \"{shown}\" is in \
                         project \"{p}\": this job's registry token pushes to project \
                         $kiln_project only; tag it <name>:<tag> or \
                         \\$KILN_REGISTRY/$kiln_project/<name>:<tag>\"",
                        p = sq(p)
                    ));
                    sq(p)
                }
                None => "\"$kiln_project\"".to_owned(),
            };
            line(&format!(
                "{indent}{var}=\"$kiln_reg\"/{project}/{}:{}",
                sq(&tag.name),
                sq(&tag.tag)
            ));
            line(&format!("{indent}{pushed}=$((kiln_push * kiln_here))"));
        };
        match &tag.registry {
            TagRegistry::Host(host) => {
                // Kiln's registry written out, or another one.
                let path = match &tag.project {
                    Some(p) => format!("{p}/{}", tag.name),
                    None => tag.name.clone(),
                };
                line(&format!(
                    "if [ \"$kiln_here\" = 1 ] && [ \"$kiln_reg\" = {} ]; then",
                    sq(host)
                ));
                kiln(&mut line, "  ");
                line("else");
                line(&format!("  {var}={}/{}:{}", sq(host), sq(&path), sq(&tag.tag)));
                line(&format!("  {pushed}=$kiln_push"));
                if !spec.credentials.contains_key(host) {
                    line(&format!(
                        "  [ \"$kiln_push\" = 0 ] || echo \"kiln build: no credentials for {h} \
                         (build.credentials): pushing {shown} without a login\"",
                        h = host.replace(['"', '$', '`', '\\'], "_")
                    ));
                }
                line("fi");
            }
            _ => {
                kiln(&mut line, "");
                kiln_unpushed = true;
            }
        }
        tags.push((var, pushed));
    }
    if kiln_unpushed && spec.push {
        line(
            r#"[ "$kiln_here" = 1 ] || echo "kiln build: not pushed: no registry (KILN_REGISTRY is not set); building only""#,
        );
    }

    line(&format!("set -- bud --isolation chroot --layers -f {df} --iidfile \"$kiln_tmp/iid\""));
    for (var, _) in &tags {
        line(&format!("set -- \"$@\" -t \"${var}\""));
    }
    for (k, v) in &spec.build_args {
        line(&format!("set -- \"$@\" --build-arg {}", sq(&format!("{k}={v}"))));
    }
    if let Some(t) = &spec.target {
        line(&format!("set -- \"$@\" --target {}", sq(t)));
    }
    // Kiln's registry may serve plain HTTP: it is marked insecure, with the registries the
    // build names in `insecure-registries` (TLS is still verified for every other registry,
    // such as the base images' ones).
    line(r#"kiln_conf="$kiln_tmp/registries.conf""#);
    line(r#"{ cat /etc/containers/registries.conf 2>/dev/null || true"#);
    line(
        r#"  [ "$kiln_here" = 0 ] || printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$kiln_reg""#,
    );
    for host in &spec.insecure_registries {
        line(&format!(
            r#"  printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' {}"#,
            sq(host)
        ));
    }
    line(r#"} >"$kiln_conf""#);
    line(r#"export CONTAINERS_REGISTRIES_CONF="$kiln_conf""#);
    line(r#"export REGISTRY_AUTH_FILE="$kiln_tmp/auth.json""#);
    line(r#"if [ "$kiln_push" = 1 ] && [ "$kiln_here" = 1 ]; then"#);
    line(
        r#"  [ -n "${KILN_REGISTRY_TOKEN:-}" ] || kiln_fail "KILN_REGISTRY_TOKEN is not set: the job has no token to push to $kiln_reg with""#,
    );
    line(
        r#"  printf '%s\n' "$KILN_REGISTRY_TOKEN" | kiln_b login --tls-verify=false -u kiln --password-stdin "$kiln_reg" >/dev/null"#,
    );
    line("fi");
    // Other registries: `username:password` from the named variable, the password on stdin
    // (never on a command line).
    for (host, var) in &spec.credentials {
        if !var.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') || var.is_empty() {
            line(&format!(
                "kiln_fail {}",
                sq(&format!("build credentials: '{var}' is no variable name"))
            ));
            continue;
        }
        let h = sq(host);
        let shown = host.replace(['"', '$', '`', '\\'], "_");
        let verify =
            if spec.insecure_registries.contains(host) { " --tls-verify=false" } else { "" };
        line(r#"if [ "$kiln_push" = 1 ]; then"#);
        line(&format!("  kiln_v=${{{var}:-}}"));
        line(&format!(
            "  [ -n \"$kiln_v\" ] || kiln_fail \"build.credentials: {var} (for {shown}) is not \
             set: set a project secret {var} to username:password\""
        ));
        line(&format!(
            "  case \"$kiln_v\" in *:*) ;; *) kiln_fail \"build.credentials: {var} (for {shown}) \
             must be username:password\" ;; esac"
        ));
        line(&format!(
            "  printf '%s\\n' \"${{kiln_v#*:}}\" | kiln_b login{verify} -u \"${{kiln_v%%:*}}\" \
             --password-stdin {h} >/dev/null 2>\"$kiln_tmp/login\" || kiln_fail \"login to \
             {shown} refused with the credentials in {var}: $(tail -n 1 \"$kiln_tmp/login\")\""
        ));
        line("  kiln_v=");
        line("fi");
    }
    if spec.cache
        && let Some((first, pushed)) = tags.first()
    {
        line(&format!("if [ \"${pushed}\" = 1 ]; then"));
        line(&format!("  kiln_cache=\"${{{first}%:*}}/cache\""));
        line(r#"  echo "kiln build: layer cache $kiln_cache""#);
        line(r#"  set -- "$@" --cache-from "$kiln_cache" --cache-to "$kiln_cache""#);
        line("fi");
    }
    line(&format!("set -- \"$@\" {ctx}"));
    line(r#"echo "kiln build: buildah $*""#);
    // `sh -e` would end the group at a failed buildah: its status is taken by `if` instead.
    line(
        r#"{ if kiln_b "$@" 2>&1; then kiln_s=0; else kiln_s=$?; fi; echo "$kiln_s" >"$kiln_tmp/rc"; } | tee "$kiln_tmp/log""#,
    );
    line(r#"kiln_rc=$(cat "$kiln_tmp/rc")"#);
    line(r#"if [ "$kiln_rc" != 0 ]; then"#);
    line(r#"  kiln_last=$(grep 'STEP [0-9]*/[0-9]*: ' "$kiln_tmp/log" | tail -n 1 || true)"#);
    line(&format!("  kiln_line=$(awk -v last=\"$kiln_last\" {} {df} || true)", sq(FIND_LINE)));
    line(r#"  if [ -n "$kiln_line" ]; then"#);
    line(&format!(
        "    echo \"kiln build: failed at {}:$kiln_line: $(sed -n \"${{kiln_line}}p\" {df})\" >&2",
        spec.dockerfile.replace(['"', '$', '`', '\\'], "_")
    ));
    line("  else");
    line(
        r#"    echo "kiln build: failed (buildah exited $kiln_rc): $(tail -n 1 "$kiln_tmp/log")" >&2"#,
    );
    line("  fi");
    line(r#"  exit "$kiln_rc""#);
    line("fi");
    line(r#"kiln_steps=$(grep -c 'STEP [0-9]*/[0-9]*: ' "$kiln_tmp/log" || true)"#);
    line(r#"kiln_from=$(grep -ci 'STEP [0-9]*/[0-9]*: FROM ' "$kiln_tmp/log" || true)"#);
    line(r#"kiln_cached=$(grep -c -e '--> Using cache ' "$kiln_tmp/log" || true)"#);
    line(r#"echo "kiln build: $kiln_cached of $((kiln_steps - kiln_from)) steps from the cache""#);
    // Each pushed tag; the outputs name the first one pushed.
    line("kiln_image=");
    for (i, (var, pushed)) in tags.iter().enumerate() {
        line(&format!("if [ \"${pushed}\" = 1 ]; then"));
        line(&format!(
            "  kiln_b push --digestfile \"$kiln_tmp/digest{i}\" \"${var}\" \"docker://${var}\""
        ));
        line(&format!("  echo \"kiln build: pushed ${var}\""));
        line(&format!(
            "  [ -n \"$kiln_image\" ] || {{ kiln_image=\"${{{var}%:*}}\"; \
             kiln_digest=$(cat \"$kiln_tmp/digest{i}\"); }}"
        ));
        line("fi");
    }
    line(r#"if [ -n "$kiln_image" ]; then"#);
    line(r#"  echo "JOB_OUT digest=$kiln_digest""#);
    line(r#"  echo "JOB_OUT image=$kiln_image@$kiln_digest""#);
    line("else");
    line(r#"  echo "JOB_OUT image-id=$(cat "$kiln_tmp/iid")""#);
    line("fi");
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn spec(tags: &[&str]) -> BuildSpec {
        BuildSpec {
            context: ".".into(),
            dockerfile: "Dockerfile".into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            build_args: BTreeMap::new(),
            target: None,
            cache: true,
            push: true,
            credentials: BTreeMap::new(),
            insecure_registries: Vec::new(),
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sq("it's"), r"'it'\''s'");
    }

    /// A stand-in `buildah` on `PATH` that records each call (`login` also its stdin, the
    /// password) in `calls`, and answers `bud` and `push` with an image id and a digest.
    const FAKE_BUILDAH: &str = r#"#!/bin/sh
calls="$(dirname "$0")/calls"
printf '%s\n' "$*" >>"$calls"
while [ $# -gt 0 ]; do
  case "$1" in
    login) read -r pw; printf 'password %s\n' "$pw" >>"$calls"; [ "$pw" != bad ] || { echo "Error: authentication required" >&2; exit 1; } ;;
    --iidfile) echo iid123 >"$2" ;;
    --digestfile) echo "sha256:$(printf %s "$4" | sha256sum | cut -c1-64)" >"$2" ;;
  esac
  shift
done
"#;

    /// What running the script for `spec` did: its exit status, its output, the recorded
    /// buildah calls, and the `registries.conf` it wrote (read by the fake at `bud`).
    struct Ran {
        ok: bool,
        out: String,
        calls: Vec<String>,
    }

    fn run(spec: &BuildSpec, env: &[(&str, &str)]) -> Ran {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let fake = bin.join("buildah");
        // Also keep the registries.conf each call sees.
        let recording = FAKE_BUILDAH.replacen(
            "printf '%s\\n' \"$*\" >>\"$calls\"",
            "printf '%s\\n' \"$*\" >>\"$calls\"; [ -z \"$CONTAINERS_REGISTRIES_CONF\" ] || \
             grep location \"$CONTAINERS_REGISTRIES_CONF\" | sed 's/^/conf /' >>\"$calls\"",
            1,
        );
        std::fs::write(&fake, recording).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new("sh")
            .args(["-e", "-c", &script(spec)])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", path)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let calls = std::fs::read_to_string(bin.join("calls")).unwrap_or_default();
        Ran {
            ok: out.status.success(),
            out: String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
            calls: calls.lines().map(|l| l.replace(&bin.display().to_string(), "BIN")).collect(),
        }
    }

    fn calls_of<'a>(ran: &'a Ran, verb: &str) -> Vec<&'a str> {
        ran.calls.iter().map(String::as_str).filter(|c| c.contains(verb)).collect()
    }

    const KILN: &[(&str, &str)] = &[
        ("KILN_REGISTRY", "127.0.0.1:7171"),
        ("KILN_REGISTRY_TOKEN", "tok"),
        ("KILN_PROJECT", "shop"),
    ];

    #[test]
    fn a_build_logs_in_builds_with_the_registry_cache_and_pushes() {
        let mut s = spec(&["web:1", "$KILN_REGISTRY/shop/web:latest"]);
        s.build_args.insert("V".into(), "a b".into());
        s.target = Some("release".into());
        let ran = run(&s, KILN);
        assert!(ran.ok, "{}\n{:#?}", ran.out, ran.calls);
        // The token went on stdin to Kiln's registry, marked insecure (plain HTTP) alone.
        assert_eq!(
            calls_of(&ran, "login"),
            [
                "--storage-driver vfs login --tls-verify=false -u kiln --password-stdin 127.0.0.1:7171"
            ]
        );
        assert!(ran.calls.contains(&"password tok".to_string()), "{:#?}", ran.calls);
        assert!(ran.calls.contains(&"conf location = \"127.0.0.1:7171\"".to_string()));
        let bud = calls_of(&ran, " bud ");
        assert_eq!(bud.len(), 1, "{:#?}", ran.calls);
        for part in [
            "-t 127.0.0.1:7171/shop/web:1 -t 127.0.0.1:7171/shop/web:latest",
            "--build-arg V=a b --target release",
            "--cache-from 127.0.0.1:7171/shop/web/cache --cache-to 127.0.0.1:7171/shop/web/cache",
        ] {
            assert!(bud[0].contains(part), "{part} in {}", bud[0]);
        }
        assert_eq!(calls_of(&ran, " push ").len(), 2, "{:#?}", ran.calls);
        // The outputs name the first tag's repository, at its digest.
        assert!(ran.out.contains("JOB_OUT image=127.0.0.1:7171/shop/web@sha256:"), "{}", ran.out);
        assert!(ran.out.contains("JOB_OUT digest=sha256:"), "{}", ran.out);
    }

    #[test]
    fn another_registry_is_logged_in_to_with_its_secret_on_stdin() {
        let mut s = spec(&["harbor.example:8443/team/web:2", "web:2"]);
        s.credentials.insert("harbor.example:8443".into(), "HARBOR_AUTH".into());
        s.insecure_registries.push("harbor.example:8443".into());
        let env = [KILN, &[("HARBOR_AUTH", "robot$ci:s3cret:x")]].concat();
        let ran = run(&s, &env);
        assert!(ran.ok, "{}\n{:#?}", ran.out, ran.calls);
        assert_eq!(
            calls_of(&ran, "login"),
            [
                "--storage-driver vfs login --tls-verify=false -u kiln --password-stdin 127.0.0.1:7171",
                "--storage-driver vfs login --tls-verify=false -u robot$ci --password-stdin harbor.example:8443",
            ]
        );
        // The password (everything after the first ':') only on stdin, never in arguments.
        assert!(ran.calls.contains(&"password s3cret:x".to_string()), "{:#?}", ran.calls);
        assert!(!ran.calls.iter().any(|c| !c.starts_with("password") && c.contains("s3cret")));
        assert!(ran.calls.contains(&"conf location = \"harbor.example:8443\"".to_string()));
        let push = calls_of(&ran, " push ");
        assert!(push[0].ends_with("docker://harbor.example:8443/team/web:2"), "{push:#?}");
        assert!(push[1].ends_with("docker://127.0.0.1:7171/shop/web:2"), "{push:#?}");
        // The first tag is the output and holds the layer cache.
        assert!(
            ran.out.contains("JOB_OUT image=harbor.example:8443/team/web@sha256:"),
            "{}",
            ran.out
        );
        assert!(
            calls_of(&ran, " bud ")[0].contains("--cache-to harbor.example:8443/team/web/cache")
        );
        assert!(!ran.out.contains("s3cret"), "{}", ran.out);
    }

    #[test]
    fn a_registry_without_credentials_is_pushed_to_without_a_login_and_tls_verified() {
        let s = spec(&["registry.example.com/web:1"]);
        let ran = run(&s, KILN);
        assert!(ran.ok, "{}\n{:#?}", ran.out, ran.calls);
        assert!(
            ran.out.contains(
                "kiln build: no credentials for registry.example.com (build.credentials): \
                 pushing 'registry.example.com/web:1' without a login"
            ),
            "{}",
            ran.out
        );
        assert!(!ran.calls.iter().any(|c| c.contains("conf location = \"registry.example.com\"")));
        assert!(calls_of(&ran, " push ")[0].ends_with("docker://registry.example.com/web:1"));
    }

    #[test]
    fn missing_or_refused_credentials_fail_the_build_with_their_cause() {
        let mut s = spec(&["r.example/team/web:1"]);
        s.credentials.insert("r.example".into(), "R_AUTH".into());
        let ran = run(&s, KILN);
        assert!(!ran.ok);
        assert!(
            ran.out.contains(
                "kiln build: build.credentials: R_AUTH (for r.example) is not set: set a project \
                 secret R_AUTH to username:password"
            ),
            "{}",
            ran.out
        );
        let ran = run(&s, &[KILN, &[("R_AUTH", "nocolon")]].concat());
        assert!(
            ran.out.contains("R_AUTH (for r.example) must be username:password"),
            "{}",
            ran.out
        );
        let ran = run(&s, &[KILN, &[("R_AUTH", "u:bad")]].concat());
        assert!(!ran.ok);
        assert!(
            ran.out.contains(
                "kiln build: login to r.example refused with the credentials in R_AUTH: Error: \
                 authentication required"
            ),
            "{}",
            ran.out
        );
        assert!(calls_of(&ran, " bud ").is_empty(), "nothing built: {:#?}", ran.calls);
    }

    #[test]
    fn without_a_registry_or_with_push_off_nothing_is_pushed() {
        let mut s = spec(&["web"]);
        s.cache = false;
        s.push = false;
        let ran = run(&s, KILN);
        assert!(ran.ok, "{}", ran.out);
        assert!(ran.out.contains("kiln build: not pushed (build.push is false)"));
        assert!(calls_of(&ran, " push ").is_empty() && calls_of(&ran, "login").is_empty());
        assert!(!calls_of(&ran, " bud ")[0].contains("--cache-to"));
        assert!(ran.out.contains("JOB_OUT image-id=iid123"), "{}", ran.out);
        // `kiln run`: no KILN_REGISTRY.
        let ran = run(&spec(&["web"]), &[]);
        assert!(ran.ok, "{}", ran.out);
        assert!(ran.out.contains("kiln build: not pushed: no registry (KILN_REGISTRY is not set)"));
        assert!(calls_of(&ran, " push ").is_empty(), "{:#?}", ran.calls);
        assert!(ran.calls.iter().any(|c| c.contains("-t localhost/local/web:latest")));
    }

    #[test]
    fn a_bad_rendered_tag_or_another_project_fails_before_buildah() {
        let ran = run(&spec(&["Bad:1"]), KILN);
        assert!(!ran.ok);
        assert!(ran.out.contains("kiln build: build tag: 'Bad:1': 'Bad' is not"), "{}", ran.out);
        let ran = run(&spec(&["127.0.0.1:7171/other/web:1"]), KILN);
        assert!(!ran.ok);
        assert!(
            ran.out.contains("is in project 'other'") || ran.out.contains("is in project other"),
            "{}",
            ran.out
        );
        assert!(ran.calls.is_empty(), "{:#?}", ran.calls);
    }
}
