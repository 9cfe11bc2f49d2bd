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
    line(r#"if [ -n "${KILN_REGISTRY:-}" ]; then kiln_reg=$KILN_REGISTRY; kiln_push=1; else"#);
    line(r#"  kiln_reg=localhost; kiln_push=0"#);
    line(
        r#"  echo "kiln build: not pushed: no registry (KILN_REGISTRY is not set); building only""#,
    );
    line("fi");
    if !spec.push {
        line(r#"kiln_push=0; echo "kiln build: not pushed (build.push is false)""#);
    }

    // Tags: each read as the checker read it (now rendered), placed in the registry.
    let mut repos = Vec::new();
    for (i, written) in spec.tags.iter().enumerate() {
        let var = format!("kiln_t{i}");
        let shown = sq(written);
        let tag = match parse_tag(written) {
            Ok(tag) => tag,
            Err(e) => {
                line(&format!("kiln_fail {}", sq(&format!("build tag: {e}"))));
                continue;
            }
        };
        if let TagRegistry::Host(host) = &tag.registry {
            line(&format!(
                "[ \"$kiln_reg\" = {h} ] || kiln_fail \"tag \"{shown}\" is in registry \
                 \"{h}\", not Kiln's ($kiln_reg): a build pushes to Kiln's registry only\"",
                h = sq(host)
            ));
        }
        let project = match &tag.project {
            Some(p) => {
                line(&format!(
                    "[ \"$kiln_project\" = {p} ] || kiln_fail \"tag \"{shown}\" is in project \
                     \"{p}\": this job's registry token pushes to project $kiln_project only; \
                     tag it <name>:<tag> or \\$KILN_REGISTRY/$kiln_project/<name>:<tag>\"",
                    p = sq(p)
                ));
                sq(p)
            }
            None => "\"$kiln_project\"".to_owned(),
        };
        let repo = format!("\"$kiln_reg\"/{project}/{}", sq(&tag.name));
        line(&format!("{var}={repo}:{}", sq(&tag.tag)));
        repos.push((var, repo));
    }

    line(&format!("set -- bud --isolation chroot --layers -f {df} --iidfile \"$kiln_tmp/iid\""));
    for (var, _) in &repos {
        line(&format!("set -- \"$@\" -t \"${var}\""));
    }
    for (k, v) in &spec.build_args {
        line(&format!("set -- \"$@\" --build-arg {}", sq(&format!("{k}={v}"))));
    }
    if let Some(t) = &spec.target {
        line(&format!("set -- \"$@\" --target {}", sq(t)));
    }
    line(r#"if [ "$kiln_push" = 1 ]; then"#);
    // Kiln's registry may serve plain HTTP: it alone is marked insecure (TLS is still
    // verified for every other registry, such as the base images' ones).
    line(r#"  kiln_conf="$kiln_tmp/registries.conf""#);
    line(
        r#"  { cat /etc/containers/registries.conf 2>/dev/null || true; printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$kiln_reg"; } >"$kiln_conf""#,
    );
    line(r#"  export CONTAINERS_REGISTRIES_CONF="$kiln_conf""#);
    line(r#"  export REGISTRY_AUTH_FILE="$kiln_tmp/auth.json""#);
    line(
        r#"  [ -n "${KILN_REGISTRY_TOKEN:-}" ] || kiln_fail "KILN_REGISTRY_TOKEN is not set: the job has no token to push to $kiln_reg with""#,
    );
    line(
        r#"  printf '%s\n' "$KILN_REGISTRY_TOKEN" | kiln_b login --tls-verify=false -u kiln --password-stdin "$kiln_reg" >/dev/null"#,
    );
    if spec.cache
        && let Some((_, first)) = repos.first()
    {
        line(&format!("  kiln_cache={first}/cache"));
        line(r#"  echo "kiln build: layer cache $kiln_cache""#);
        line(r#"  set -- "$@" --cache-from "$kiln_cache" --cache-to "$kiln_cache""#);
    }
    line("fi");
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
    line(r#"if [ "$kiln_push" = 1 ]; then"#);
    for (var, _) in &repos {
        line(&format!(
            "  kiln_b push --digestfile \"$kiln_tmp/digest\" \"${var}\" \
             \"docker://${var}\""
        ));
        line(&format!("  echo \"kiln build: pushed ${var}\""));
    }
    line(r#"  kiln_digest=$(cat "$kiln_tmp/digest")"#);
    line(r#"  echo "JOB_OUT digest=$kiln_digest""#);
    if let Some((_, first)) = repos.first() {
        line(&format!("  kiln_image={first}"));
        line(r#"  echo "JOB_OUT image=$kiln_image@$kiln_digest""#);
    }
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
        }
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sq("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_build_logs_in_builds_with_the_registry_cache_and_pushes() {
        let mut s = spec(&["web:1", "$KILN_REGISTRY/shop/web:latest"]);
        s.build_args.insert("V".into(), "a b".into());
        s.target = Some("release".into());
        let text = script(&s);
        assert!(text.contains(r#"kiln_t0="$kiln_reg"/"$kiln_project"/'web':'1'"#), "{text}");
        assert!(text.contains(r#"kiln_t1="$kiln_reg"/'shop'/'web':'latest'"#), "{text}");
        assert!(text.contains(r#"[ "$kiln_project" = 'shop' ] || kiln_fail"#), "{text}");
        assert!(text.contains(r#"kiln_cache="$kiln_reg"/"$kiln_project"/'web'/cache"#));
        assert!(text.contains("--cache-from \"$kiln_cache\" --cache-to \"$kiln_cache\""));
        assert!(text.contains("--build-arg 'V=a b'"));
        assert!(text.contains("--target 'release'"));
        // TLS unverified only towards Kiln's registry: login, and the registry marked insecure
        // for bud (base images keep their checks) and push.
        assert!(text.contains("login --tls-verify=false -u kiln --password-stdin"));
        assert!(text.contains("insecure = true"), "{text}");
        assert_eq!(text.matches("tls-verify").count(), 1, "{text}");
        assert!(text.contains(r#"--digestfile "$kiln_tmp/digest" "$kiln_t1" "docker://$kiln_t1""#));
        assert!(text.contains(r#"kiln_image="$kiln_reg"/"$kiln_project"/'web'"#), "{text}");
    }

    #[test]
    fn without_cache_or_push_nothing_goes_to_the_registry() {
        let mut s = spec(&["web"]);
        s.cache = false;
        s.push = false;
        let text = script(&s);
        assert!(!text.contains("--cache-to"), "{text}");
        assert!(
            text.contains("kiln_push=0; echo \"kiln build: not pushed (build.push is false)\"")
        );
    }

    #[test]
    fn a_bad_rendered_tag_fails_before_buildah() {
        let text = script(&spec(&["Bad:1"]));
        assert!(
            text.contains("kiln_fail 'build tag: '\\''Bad:1'\\'': '\\''Bad'\\'' is not"),
            "{text}"
        );
    }
}
