//! The web UI's modules type-checked by TypeScript's `tsc` (`--checkJs`, no emit) against the
//! API's types generated from docs/openapi.json (`src/assets/lib/api-types.js`), with
//! `crates/kiln-ui/tsconfig.json`.
//!
//! `tsc` is `KILN_TSC`, else the one `cargo xtask ci` installs (`~/.cache/kiln-tools/
//! typescript-5.9.3`); without it (or without `node`) the test passes without running, with a
//! note; with `KILN_REQUIRE_BROWSER=1` (as in `cargo xtask ci`) it fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned TypeScript (xtask's `api_types::TYPESCRIPT`).
const TYPESCRIPT: &str = "5.9.3";

fn tsc() -> Option<PathBuf> {
    let path = std::env::var_os("KILN_TSC").map(PathBuf::from).or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from)?;
        let tools = std::env::var_os("KILN_TOOLS_DIR")
            .map_or_else(|| home.join(".cache/kiln-tools"), PathBuf::from);
        Some(tools.join(format!("typescript-{TYPESCRIPT}/node_modules/typescript/bin/tsc")))
    });
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    match path.filter(|p| p.is_file() && node) {
        Some(p) => Some(p),
        None => {
            assert!(
                std::env::var("KILN_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "KILN_REQUIRE_BROWSER=1 but there is no tsc (KILN_TSC, or `cargo xtask ci` \
                 installs typescript@{TYPESCRIPT}) or no node"
            );
            eprintln!("note: no tsc or node: the UI's type check did not run");
            None
        }
    }
}

/// Runs `node tsc ARGS` in `dir`: (success, stdout and stderr).
fn run(tsc: &Path, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("node").arg(tsc).args(args).current_dir(dir).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_ui_modules_type_check_against_the_api_types() {
    let Some(tsc) = tsc() else { return };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (ok, out) = run(&tsc, crate_dir, &["-p", "tsconfig.json", "--listFilesOnly"]);
    assert!(ok, "{out}");
    // The check reads every module, the generated types included.
    for module in
        ["app.js", "lib/api.js", "lib/api-types.js", "lib/graph.js", "pages/run.js", "log_view.js"]
    {
        assert!(
            out.contains(&format!("src/assets/{module}")),
            "tsc does not read {module}:\n{out}"
        );
    }
    let (ok, out) = run(&tsc, crate_dir, &["-p", "tsconfig.json"]);
    assert!(ok, "tsc finds type errors in the UI's modules:\n{out}");
}

#[test]
fn a_wrong_use_of_an_api_type_is_an_error() {
    let Some(tsc) = tsc() else { return };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let types = crate_dir.join("src/assets/lib/api-types.js");
    std::fs::write(
        dir.path().join("bad.js"),
        format!(
            "// @ts-check\n/** @param {{import('{}').JobInfo}} j */\n\
             export function f(j) {{ return j.exit_status + j.stage.length; }}\n",
            types.display()
        ),
    )
    .unwrap();
    let (ok, out) = run(
        &tsc,
        dir.path(),
        &[
            "--noEmit",
            "--allowJs",
            "--checkJs",
            "--target",
            "ES2023",
            "--module",
            "ES2022",
            "bad.js",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("Property 'exit_status' does not exist on type 'JobInfo'"), "{out}");
}
