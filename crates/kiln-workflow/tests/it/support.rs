//! Test loaders and renderings shared by the tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use kiln_workflow::plan::{Plan, RunSpec, StageKind};
use kiln_workflow::{Compiled, Loader, Source};

/// The crate's directory.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Resolves `path` against the directory of `from`, lexically (`a/b/../c` -> `a/c`).
pub fn resolve(from: &str, path: &str) -> String {
    let base = Path::new(from).parent().unwrap_or(Path::new(""));
    let mut out: Vec<String> = Vec::new();
    for part in base.join(path).components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(p) => out.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

/// Reads files below the crate directory; names stay relative to it (stable snapshots).
pub struct FsLoader;

impl Loader for FsLoader {
    fn load(&self, from: &str, path: &str) -> Result<Source, String> {
        let name = resolve(from, path);
        std::fs::read_to_string(crate_dir().join(&name))
            .map(|text| Source { name: name.clone(), text })
            .map_err(|e| format!("{name}: {}", e.kind()))
    }
}

/// Files in memory.
pub struct MapLoader(pub BTreeMap<String, String>);

impl MapLoader {
    /// A loader over `(name, text)` pairs.
    pub fn new(files: &[(&str, &str)]) -> Self {
        MapLoader(files.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect())
    }
}

impl Loader for MapLoader {
    fn load(&self, from: &str, path: &str) -> Result<Source, String> {
        let name = resolve(from, path);
        match self.0.get(&name) {
            Some(text) => Ok(Source { name, text: text.clone() }),
            None => Err(format!("no such file {name}")),
        }
    }
}

/// Diagnostics, one `file:line:col: severity: message` per line.
pub fn diagnostics(c: &Compiled) -> String {
    c.diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

/// A compact rendering of a plan: stages, then one line per job.
pub fn summary(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "plan {}", plan.name);
    for p in &plan.params {
        let default = p.default.as_ref().map(|d| format!(" = {d}")).unwrap_or_default();
        let req = if p.required { " (required)" } else { "" };
        let _ = writeln!(out, "param {}: {:?}{default}{req}", p.name, p.kind);
    }
    for (k, v) in &plan.env {
        let _ = writeln!(out, "env {k}={v}");
    }
    for (i, s) in plan.stages.iter().enumerate() {
        match &s.kind {
            StageKind::Jobs(ids) => {
                let ids: Vec<&str> = ids.iter().map(|j| j.as_str()).collect();
                let _ = writeln!(out, "stage {i} {}: {}", s.name, ids.join(" "));
            }
            StageKind::Approval { description } => {
                let d = description.as_deref().unwrap_or("-");
                let _ = writeln!(out, "stage {i} {}: approval ({d})", s.name);
            }
        }
    }
    for j in &plan.jobs {
        let needs: Vec<&str> = j.needs.iter().map(|n| n.as_str()).collect();
        let gate = j.gate.map(|g| g.to_string()).unwrap_or_else(|| "-".into());
        let run = match &j.run {
            RunSpec::Script(lines) => format!("script {lines:?}"),
            RunSpec::Command { command, args } => format!("command {command:?} args {args:?}"),
            RunSpec::Trigger(t) => format!("trigger {:?}", t.targets),
            RunSpec::Deploy(d) => format!("deploy {} to {}", d.service.name, d.environment),
            RunSpec::Build(b) => format!("build {} tags {:?}", b.dockerfile, b.tags),
        };
        let _ = writeln!(
            out,
            "job {} <- [{}] gate {gate} if {} | {run}",
            j.id,
            needs.join(" "),
            j.condition
        );
    }
    out
}

/// Compiles `main.yml` with `text` (and any other files) and renders the result.
pub fn check_files(files: &[(&str, &str)]) -> String {
    let loader = MapLoader::new(files);
    let compiled = kiln_workflow::compile("main.yml", &loader);
    let mut out = diagnostics(&compiled);
    if let Some(plan) = &compiled.plan {
        out.push_str(&summary(plan));
    }
    out
}

/// Compiles one file, `main.yml`, and renders the result.
pub fn check(text: &str) -> String {
    check_files(&[("main.yml", text)])
}
