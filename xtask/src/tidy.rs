//! `cargo xtask tidy`: the invariants of ARCHITECTURE.md that a program can check, checked.
//!
//! Rules (each problem is printed as `file:line: [rule] what`):
//! - `pure-deps`: the normal (non-dev, non-build) dependency tree of a pure crate
//!   ([`PURE_CRATES`]) holds none of [`IO_CRATES`];
//! - `pure-source`: the non-test source of a pure crate (`src/`, minus `#[cfg(test)]` items;
//!   `tests/` and `benches/` are not read) names none of [`IO_PATTERNS`];
//! - `server-executor`: kiln-server's normal dependency tree holds none of
//!   [`EXECUTOR_CRATES`] (its tests may use them);
//! - `anyhow`: no crate but the binary and xtask ([`ANYHOW_ALLOWED`]) lists `anyhow` in its
//!   `Cargo.toml` (dev-dependencies too) or writes `anyhow::` in its source;
//! - `api-types`: the web UI's generated API types (`crates/kiln-ui/src/assets/lib/
//!   api-types.js`) are what `cargo xtask api-types` writes from `docs/openapi.json`;
//! - `module-doc`: every `.rs` file under a member's `src/`, `tests/`, `benches/` and
//!   `examples/` (and its `build.rs`) starts with a `//!` line. Like rust-analyzer's tidy, the
//!   doc comes first, before any `#![...]` attribute: the first line says what the file is.
//!
//! The dependency tree comes from `cargo metadata` (its `resolve` graph), never from parsing
//! `Cargo.toml`; manifests are read only to point at the line of the offending dependency.
//! Sources are matched as text, line by line, after comments and the contents of string and
//! char literals are blanked (a rough lexer, [`mask`]): prose about `Instant::now` is fine.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::step::{self, cargo};

/// The crates that do no I/O, read no clock and do not depend on tokio.
pub const PURE_CRATES: &[&str] = &[
    "kiln-workflow",
    "kiln-engine",
    "kiln-scheduler",
    "kiln-service",
    "kiln-scrape",
    "kiln-config",
    "kiln-scan",
];

/// Crates that do I/O (or exist to serve it), forbidden anywhere in a pure crate's normal
/// tree. Not exhaustive: the async runtimes and what is built on them, HTTP, databases, the
/// container engine, file-system walkers and watchers. `libc` and `chrono` stay allowed (too
/// many pure crates pull them in); the source rule catches the clock.
pub const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "async-std",
    "smol",
    "futures-executor",
    "hyper",
    "reqwest",
    "ureq",
    "axum",
    "tonic",
    "sqlx",
    "rusqlite",
    "bollard",
    "tempfile",
    "walkdir",
    "notify",
];

/// Text that, in a pure crate's non-test source, means a clock is read or I/O is done.
pub const IO_PATTERNS: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "Utc::now",
    "Local::now",
    "std::fs",
    "std::net",
    "std::process",
    "std::env::var",
    "tokio::",
];

/// Crates that run tasks; the server reaches them only through a lease to an agent.
pub const EXECUTOR_CRATES: &[&str] =
    &["kiln-exec", "kiln-exec-docker", "kiln-exec-process", "kiln-runtime", "kiln-agent"];

/// The only members that may use `anyhow`: the binary and this crate.
pub const ANYHOW_ALLOWED: &[&str] = &["kiln", "xtask"];

/// The crate whose normal tree must hold no executor.
const SERVER: &str = "kiln-server";

/// Runs every check on the workspace in the current directory; fails listing the problems.
pub fn run() -> Result<()> {
    let root = std::env::current_dir()?;
    let metadata = metadata()?;
    let mut problems = check(&root, &metadata)?;
    if let Some(message) = crate::api_types::stale(&root)? {
        problems.push(Problem {
            file: crate::api_types::OUT.to_string(),
            line: 1,
            rule: Rule::ApiTypes,
            message,
        });
    }
    if problems.is_empty() {
        println!(
            "tidy: no problem (dependency rules, pure crates, anyhow, module docs, API types)"
        );
        return Ok(());
    }
    for problem in &problems {
        println!("{problem}");
    }
    bail!("tidy found {} problem(s); the rules are in xtask/src/tidy.rs", problems.len())
}

/// `cargo metadata --format-version 1` of the workspace in the current directory.
fn metadata() -> Result<Value> {
    let text = step::output(cargo().args(["metadata", "--format-version", "1"]))?;
    serde_json::from_str(&text).context("cargo metadata printed invalid JSON")
}

/// Which invariant a problem breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// A file does not start with a `//!` module doc.
    ModuleDoc,
    /// A pure crate's normal dependency tree holds an I/O crate.
    PureDeps,
    /// A pure crate's non-test source reads a clock or does I/O.
    PureSource,
    /// The server's normal dependency tree holds an executor crate.
    ServerExecutor,
    /// A library uses `anyhow`.
    Anyhow,
    /// The web UI's generated API types are not current.
    ApiTypes,
}

impl Rule {
    /// The rule's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Rule::ModuleDoc => "module-doc",
            Rule::PureDeps => "pure-deps",
            Rule::PureSource => "pure-source",
            Rule::ServerExecutor => "server-executor",
            Rule::Anyhow => "anyhow",
            Rule::ApiTypes => "api-types",
        }
    }
}

/// One broken rule at one place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// File, relative to the workspace root, with `/` separators.
    pub file: String,
    /// Line in `file`, from 1.
    pub line: usize,
    /// The rule broken.
    pub rule: Rule,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: [{}] {}", self.file, self.line, self.rule.name(), self.message)
    }
}

/// Runs every rule on the workspace at `root`, described by `metadata` (the JSON of
/// `cargo metadata --format-version 1`; its paths may come from another root, they are taken
/// relative to its `workspace_root`). Problems are sorted by file and line.
pub fn check(root: &Path, metadata: &Value) -> Result<Vec<Problem>> {
    let ws = Workspace::parse(root, metadata)?;
    let mut problems = Vec::new();
    for member in &ws.members {
        let files = rust_files(root, &member.dir)?;
        for file in &files {
            let text = std::fs::read_to_string(root.join(file))
                .with_context(|| format!("read {}", file.display()))?;
            check_module_doc(file, &text, &mut problems);
            if !ANYHOW_ALLOWED.contains(&member.name.as_str()) {
                check_patterns(
                    file,
                    &code_lines(&text),
                    &["anyhow::"],
                    Rule::Anyhow,
                    &mut problems,
                );
            }
        }
        if PURE_CRATES.contains(&member.name.as_str()) {
            for file in pure_source_files(root, member)? {
                let text = std::fs::read_to_string(root.join(&file))
                    .with_context(|| format!("read {}", file.display()))?;
                let lines = non_test_lines(&text);
                check_patterns(&file, &lines, IO_PATTERNS, Rule::PureSource, &mut problems);
            }
            ws.check_tree(root, member, IO_CRATES, Rule::PureDeps, &mut problems)?;
        }
        if member.name == SERVER {
            ws.check_tree(root, member, EXECUTOR_CRATES, Rule::ServerExecutor, &mut problems)?;
        }
        if !ANYHOW_ALLOWED.contains(&member.name.as_str())
            && member.declared.iter().any(|d| d == "anyhow")
        {
            let manifest = member.dir.join("Cargo.toml");
            problems.push(Problem {
                file: slashed(&manifest),
                line: manifest_line(root, &manifest, "anyhow")?,
                rule: Rule::Anyhow,
                message: format!(
                    "{} lists `anyhow`: libraries return `thiserror` types; anyhow is for the \
                     binary and xtask",
                    member.name
                ),
            });
        }
    }
    problems.sort();
    Ok(problems)
}

/// A workspace member.
#[derive(Debug)]
struct Member {
    id: String,
    name: String,
    /// Its directory, relative to the workspace root.
    dir: PathBuf,
    /// Every dependency its manifest lists, whatever the kind (package names).
    declared: Vec<String>,
}

/// What the checks need from `cargo metadata`.
#[derive(Debug)]
struct Workspace {
    members: Vec<Member>,
    /// Package id to package name.
    names: HashMap<String, String>,
    /// Package id to the ids of its normal (non-dev, non-build) dependencies.
    normal: HashMap<String, Vec<String>>,
}

impl Workspace {
    fn parse(root: &Path, metadata: &Value) -> Result<Workspace> {
        let meta_root = PathBuf::from(str_at(metadata, "workspace_root")?);
        let member_ids: Vec<&str> =
            array_at(metadata, "workspace_members")?.iter().filter_map(Value::as_str).collect();
        let mut names = HashMap::new();
        let mut members = Vec::new();
        for package in array_at(metadata, "packages")? {
            let id = str_at(package, "id")?;
            let name = str_at(package, "name")?;
            names.insert(id.to_owned(), name.to_owned());
            if !member_ids.contains(&id) {
                continue;
            }
            let manifest = PathBuf::from(str_at(package, "manifest_path")?);
            let dir = manifest
                .parent()
                .and_then(|d| d.strip_prefix(&meta_root).ok())
                .with_context(|| {
                    format!("{} is outside {}", manifest.display(), meta_root.display())
                })?
                .to_path_buf();
            if !root.join(&dir).is_dir() {
                bail!("member {name}: no directory {}", root.join(&dir).display());
            }
            let declared = array_at(package, "dependencies")?
                .iter()
                .filter_map(|d| d.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect();
            members.push(Member { id: id.to_owned(), name: name.to_owned(), dir, declared });
        }
        members.sort_by(|a, b| a.dir.cmp(&b.dir));
        let mut normal = HashMap::new();
        let resolve = metadata.get("resolve").context("cargo metadata: no `resolve` graph")?;
        for node in array_at(resolve, "nodes")? {
            let mut deps = Vec::new();
            for dep in array_at(node, "deps")? {
                // `kind` is null for a normal dependency, "dev" or "build" otherwise.
                let is_normal = array_at(dep, "dep_kinds")?
                    .iter()
                    .any(|k| k.get("kind").is_none_or(Value::is_null));
                if is_normal {
                    deps.push(str_at(dep, "pkg")?.to_owned());
                }
            }
            normal.insert(str_at(node, "id")?.to_owned(), deps);
        }
        Ok(Workspace { members, names, normal })
    }

    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }

    /// Reports every crate of `denied` reached from `member` through normal dependencies, by
    /// a shortest path, at the manifest line of the path's first step. The walk does not go
    /// on through a denied crate: what it pulls in is its own business.
    fn check_tree(
        &self,
        root: &Path,
        member: &Member,
        denied: &[&str],
        rule: Rule,
        problems: &mut Vec<Problem>,
    ) -> Result<()> {
        let mut parent: HashMap<&str, &str> = HashMap::new();
        let mut queue = VecDeque::from([member.id.as_str()]);
        let mut found: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        while let Some(id) = queue.pop_front() {
            for dep in self.normal.get(id).into_iter().flatten() {
                let dep = dep.as_str();
                if dep == member.id || parent.contains_key(dep) {
                    continue;
                }
                parent.insert(dep, id);
                let name = self.name(dep);
                if denied.contains(&name) {
                    let mut path = vec![dep];
                    while let Some(&up) = parent.get(path[path.len() - 1]) {
                        path.push(up);
                    }
                    path.reverse();
                    found.entry(name).or_insert(path);
                } else {
                    queue.push_back(dep);
                }
            }
        }
        let manifest = member.dir.join("Cargo.toml");
        for (name, path) in found {
            let chain: Vec<&str> = path.iter().map(|id| self.name(id)).collect();
            let what = match rule {
                Rule::ServerExecutor => "the executor crate",
                _ => "the I/O crate",
            };
            problems.push(Problem {
                file: slashed(&manifest),
                line: manifest_line(root, &manifest, chain[1])?,
                rule,
                message: format!(
                    "{} depends on {what} `{name}` ({})",
                    member.name,
                    chain.join(" -> ")
                ),
            });
        }
        Ok(())
    }
}

fn str_at<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value.get(key).and_then(Value::as_str).with_context(|| format!("cargo metadata: no `{key}`"))
}

fn array_at<'a>(value: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    value.get(key).and_then(Value::as_array).with_context(|| format!("cargo metadata: no `{key}`"))
}

/// The first line of `manifest` that declares `dependency` (`name = …`, `name.workspace = …`
/// or `package = "name"`), else 1.
fn manifest_line(root: &Path, manifest: &Path, dependency: &str) -> Result<usize> {
    let text = std::fs::read_to_string(root.join(manifest))
        .with_context(|| format!("read {}", manifest.display()))?;
    let package = format!("package = \"{dependency}\"");
    let found = text.lines().position(|line| {
        let line = line.trim_start();
        let declares =
            line.strip_prefix(dependency).is_some_and(|rest| rest.starts_with([' ', '=', '.']));
        declares || line.contains(&package)
    });
    Ok(found.map_or(1, |i| i + 1))
}

/// The `.rs` files of a member that must carry a module doc, relative to the workspace root.
fn rust_files(root: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for sub in ["src", "tests", "benches", "examples"] {
        walk(root, &dir.join(sub), &mut files)?;
    }
    let build = dir.join("build.rs");
    if root.join(&build).is_file() {
        files.push(build);
    }
    Ok(files)
}

/// A pure crate's source outside `tests/` and `benches/`, minus modules declared
/// `#[cfg(test)] mod name;` (their `name.rs` or `name/`).
fn pure_source_files(root: &Path, member: &Member) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    walk(root, &member.dir.join("src"), &mut files)?;
    let build = member.dir.join("build.rs");
    if root.join(&build).is_file() {
        files.push(build);
    }
    let mut test_only = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(root.join(file))
            .with_context(|| format!("read {}", file.display()))?;
        // `lib.rs`, `main.rs` and `mod.rs` own the modules of their directory; `a.rs` those
        // of `a/`.
        let owner = match file.file_stem().and_then(|s| s.to_str()) {
            Some("lib" | "main" | "mod") | None => file.parent().map(Path::to_path_buf),
            Some(stem) => file.parent().map(|p| p.join(stem)),
        };
        let Some(owner) = owner else { continue };
        for name in test_modules(&text) {
            test_only.push(owner.join(format!("{name}.rs")));
            test_only.push(owner.join(name));
        }
    }
    files.retain(|f| !test_only.iter().any(|t| f.starts_with(t)));
    Ok(files)
}

/// Appends the `.rs` files under `dir` (relative to `root`), sorted; a missing `dir` is empty.
fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let full = root.join(dir);
    if !full.is_dir() {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&full).with_context(|| format!("list {}", full.display()))? {
        entries.push(entry?.file_name());
    }
    entries.sort();
    for name in entries {
        let path = dir.join(&name);
        if root.join(&path).is_dir() {
            walk(root, &path, files)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

fn slashed(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn check_module_doc(file: &Path, text: &str, problems: &mut Vec<Problem>) {
    if !text.starts_with("//!") {
        let first = text.lines().next().unwrap_or("").trim();
        let found =
            if first.is_empty() { "an empty line".to_owned() } else { format!("`{first}`") };
        problems.push(Problem {
            file: slashed(file),
            line: 1,
            rule: Rule::ModuleDoc,
            message: format!(
                "the file must start with a `//!` module doc saying what it is (found {found})"
            ),
        });
    }
}

fn check_patterns(
    file: &Path,
    lines: &[(usize, String)],
    patterns: &[&str],
    rule: Rule,
    problems: &mut Vec<Problem>,
) {
    for (number, line) in lines {
        for pattern in patterns {
            if line.contains(pattern) {
                let why = match rule {
                    Rule::Anyhow => "libraries return `thiserror` types or data",
                    _ => "a pure crate takes time and the world as parameters",
                };
                problems.push(Problem {
                    file: slashed(file),
                    line: *number,
                    rule,
                    message: format!("`{pattern}`: {why}"),
                });
            }
        }
    }
}

/// The lines of `text` (numbered from 1) as code only: comments and the contents of string
/// and char literals blanked (see [`mask`]).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    mask(text).lines().enumerate().map(|(i, line)| (i + 1, line.to_owned())).collect()
}

/// `text` with every comment and the inside of every string and char literal replaced by
/// spaces, line breaks kept: what is left is code, with its line numbers.
fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let ident_before = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && !ident_before && matches!(next, Some('"' | '#')) {
            // A raw string `r"…"`, `r#"…"#` (also after `b`/`c`): ends at `"` and as many `#`.
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let open = 2 + hashes;
            out.extend(&chars[i..i + open]);
            i += open;
            while i < chars.len() {
                let closes = chars[i] == '"'
                    && chars[i + 1..].iter().take(hashes).filter(|&&h| h == '#').count() == hashes;
                if closes {
                    out.extend(&chars[i..i + 1 + hashes]);
                    i += 1 + hashes;
                    break;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    out.push(' ');
                    i += 1;
                }
                out.push(blank(chars[i]));
                i += 1;
            }
            if i < chars.len() {
                out.push('"');
                i += 1;
            }
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal (`'x'`, `'\n'`, `'\''`); a lifetime has no closing quote.
            out.push('\'');
            i += 1;
            if chars.get(i) == Some(&'\\') {
                out.push(' ');
                i += 1;
            }
            while i < chars.len() && chars[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            if i < chars.len() {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The lines of `text` outside items marked `#[cfg(test)]`, as code only (see [`mask`]). An
/// item ends at its first `;` before any `{`, or where its braces balance again.
fn non_test_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut lines = code_lines(text).into_iter();
    while let Some((number, line)) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            out.push((number, line));
            continue;
        }
        let mut depth = 0i64;
        let mut opened = false;
        for (_, line) in lines.by_ref() {
            let trimmed = line.trim();
            if !opened && (trimmed.is_empty() || trimmed.starts_with("#[")) {
                continue;
            }
            let open = line.matches('{').count() as i64;
            let close = line.matches('}').count() as i64;
            depth += open - close;
            opened |= open > 0;
            if (opened && depth <= 0) || (!opened && trimmed.ends_with(';')) {
                break;
            }
        }
    }
    out
}

/// The names of the out-of-line modules `text` declares under `#[cfg(test)]`.
fn test_modules(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut gated = false;
    for line in text.lines().map(str::trim) {
        if line == "#[cfg(test)]" {
            gated = true;
            continue;
        }
        if gated && line.starts_with("#[") {
            continue;
        }
        if gated {
            let decl = line.strip_prefix("pub ").unwrap_or(line);
            if let Some(name) = decl.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                names.push(name.trim().to_owned());
            }
        }
        gated = false;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test_data/tidy/bad")
    }

    fn fixture_problems() -> Vec<String> {
        let root = fixture();
        let text = std::fs::read_to_string(root.join("metadata.json")).unwrap();
        let metadata: Value = serde_json::from_str(&text).unwrap();
        check(&root, &metadata).unwrap().iter().map(Problem::to_string).collect()
    }

    fn of_rule(problems: &[String], rule: Rule) -> Vec<String> {
        let tag = format!("[{}]", rule.name());
        problems.iter().filter(|p| p.contains(&tag)).cloned().collect()
    }

    #[test]
    fn the_broken_fixture_breaks_each_rule_exactly_where_it_should() {
        let problems = fixture_problems();
        assert_eq!(
            of_rule(&problems, Rule::ModuleDoc),
            [
                "crates/kiln-logs/src/store.rs:1: [module-doc] the file must start with a `//!` \
                 module doc saying what it is (found `use std::io;`)",
                "crates/kiln-server/tests/it/main.rs:1: [module-doc] the file must start with a \
                 `//!` module doc saying what it is (found `#![allow(missing_docs)]`)",
            ]
        );
        assert_eq!(
            of_rule(&problems, Rule::PureSource),
            [
                "crates/kiln-engine/src/lib.rs:9: [pure-source] `Instant::now`: a pure crate \
                 takes time and the world as parameters",
                "crates/kiln-engine/src/lib.rs:14: [pure-source] `std::env::var`: a pure crate \
                 takes time and the world as parameters",
            ]
        );
        assert_eq!(
            of_rule(&problems, Rule::PureDeps),
            [
                "crates/kiln-engine/Cargo.toml:6: [pure-deps] kiln-engine depends on the I/O \
                 crate `reqwest` (kiln-engine -> kiln-workflow -> reqwest)",
                "crates/kiln-engine/Cargo.toml:7: [pure-deps] kiln-engine depends on the I/O \
                 crate `tokio` (kiln-engine -> tokio)",
                "crates/kiln-workflow/Cargo.toml:6: [pure-deps] kiln-workflow depends on the \
                 I/O crate `reqwest` (kiln-workflow -> reqwest)",
            ]
        );
        assert_eq!(
            of_rule(&problems, Rule::ServerExecutor),
            ["crates/kiln-server/Cargo.toml:6: [server-executor] kiln-server depends on the \
              executor crate `kiln-exec` (kiln-server -> kiln-logs -> kiln-exec)"]
        );
        assert_eq!(
            of_rule(&problems, Rule::Anyhow),
            [
                "crates/kiln-logs/Cargo.toml:10: [anyhow] kiln-logs lists `anyhow`: libraries \
                 return `thiserror` types; anyhow is for the binary and xtask",
                "crates/kiln-logs/src/lib.rs:6: [anyhow] `anyhow::`: libraries return \
                 `thiserror` types or data",
            ]
        );
        assert_eq!(problems.len(), 10, "{problems:#?}");
    }

    #[test]
    fn test_items_comments_tests_and_benches_of_pure_crates_are_not_read() {
        let problems = fixture_problems();
        // kiln-scheduler reads clocks only in a `#[cfg(test)]` module, an out-of-line test
        // module, a comment, `tests/` and `benches/`, and uses tokio as a dev-dependency.
        assert!(!problems.iter().any(|p| p.contains("kiln-scheduler")), "{problems:#?}");
    }

    #[test]
    fn cfg_test_items_are_skipped_up_to_their_end() {
        let text = "a\n#[cfg(test)]\nuse std::fs;\nb\n#[cfg(test)]\n#[allow(x)]\nmod t {\n  \
                    fn f() { let c = '}'; let s = \"}\"; }\n}\nc\n";
        let kept: Vec<String> = non_test_lines(text).into_iter().map(|(_, l)| l).collect();
        assert_eq!(kept, ["a", "b", "c"]);
        // A string over two lines, a raw string and nested block comments hide their braces.
        let text = "#[cfg(test)]\nmod t {\n  let s = \"{\n}}\";\n  let r = r#\"}\"#;\n  /* } /* } */ */\n}\nd\n";
        let kept: Vec<String> = non_test_lines(text).into_iter().map(|(_, l)| l).collect();
        assert_eq!(kept, ["d"]);
        // Comments and literals are blanked, lifetimes and line breaks kept.
        let masked = mask("let x = 'a'; // Instant::now\nf::<'a>(\"\\\"\")");
        assert_eq!(masked, format!("let x = ' '; {}\nf::<'a>(\"  \")", " ".repeat(15)));
        assert_eq!(test_modules("#[cfg(test)]\nmod tests;\nmod real;\n"), ["tests"]);
    }

    #[test]
    fn the_workspace_is_tidy() {
        let root = crate::workspace_root();
        let text =
            step::output(cargo().current_dir(&root).args(["metadata", "--format-version", "1"]))
                .unwrap();
        let metadata: Value = serde_json::from_str(&text).unwrap();
        let problems = check(&root, &metadata).unwrap();
        let list: Vec<String> = problems.iter().map(Problem::to_string).collect();
        assert!(list.is_empty(), "cargo xtask tidy fails:\n{}", list.join("\n"));
        // The check did read the real tree: its members and the server's manifest.
        let ws = Workspace::parse(&root, &metadata).unwrap();
        let names: Vec<&str> = ws.members.iter().map(|m| m.name.as_str()).collect();
        for name in PURE_CRATES.iter().chain([&SERVER, &"xtask"]) {
            assert!(names.contains(name), "{name} is not a member: {names:?}");
        }
    }
}
