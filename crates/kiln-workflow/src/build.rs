//! Image builds in jobs (`build:`): a Dockerfile of the job's workspace built with buildah
//! (daemonless, no Docker socket, no privileged container) and pushed to Kiln's registry with
//! the job's own registry token, or to another registry with a login from a project secret
//! (`credentials`). Its raw form as written (with the JSON Schema), reading it
//! with the workflow's [`Reader`], checking it with its [`Checker`], the checked
//! [`BuildSpec`] a plan carries in `RunSpec::Build`, and [`parse_tag`], the one reading of a
//! tag (the checker's and `kiln-runtime`'s, which turns a build into buildah commands).
//!
//! Invariants (after `compile`): a build has at least one tag; literal tags read by
//! [`parse_tag`] (Kiln's registry as `$KILN_REGISTRY/<project>/<name>:<tag>` or a short
//! `<name>:<tag>` of the run's project, or a literal host); `credentials` and
//! `insecure-registries` name hosts ([`check_host`]) and credentials name variables; context and Dockerfile are relative paths that stay in the workspace; values
//! may hold templates (checked again once rendered). A job with `build:` has no `image`,
//! `script`, `command`, `args`, `services` or `workdir` (the reader refuses them beside it).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::check::{Checker, RefScope, is_env_name};
use crate::plan::workspace_path_problem;
use crate::raw::{Entries, ScalarText, Sp};
use crate::read::Reader;
use crate::yaml::Node;

/// What a build job does: build `dockerfile` in `context` and push it under `tags`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildSpec {
    /// The build context, relative to the workspace (default `.`).
    pub context: String,
    /// The Dockerfile, relative to the workspace (default `<context>/Dockerfile`).
    pub dockerfile: String,
    /// Tags as written (templates until the job starts); see [`parse_tag`].
    pub tags: Vec<String>,
    /// `--build-arg` values (templates until the job starts).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (`--target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Layer cache in the registry (`<name>/cache` beside the first tag's repository).
    pub cache: bool,
    /// Push the tags (default true); `false` builds only.
    pub push: bool,
    /// Registries other than Kiln's, by host (`host[:port]`), and the variable (a project
    /// secret on a server) holding `username:password` to log in with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, String>,
    /// Registries other than Kiln's reached without TLS verification (plain HTTP or a
    /// self-signed certificate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure_registries: Vec<String>,
}

/// `build:` as written.
#[derive(Debug, Clone, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct RawBuild {
    /// The build context, relative to the workspace (default `.`); may use `${{ }}`.
    #[schemars(with = "Option<String>")]
    pub context: Option<Sp<String>>,
    /// The Dockerfile, relative to the workspace (default `<context>/Dockerfile`).
    #[schemars(with = "Option<String>")]
    pub dockerfile: Option<Sp<String>>,
    /// Where to push: `$KILN_REGISTRY/<project>/<name>:<tag>`, or `<name>:<tag>` for Kiln's
    /// registry and the run's project (no tag: `latest`); may use `${{ }}`.
    #[schemars(with = "Vec<String>")]
    pub tags: Option<Sp<Vec<Sp<String>>>>,
    /// `--build-arg` values; may use `${{ }}`.
    #[schemars(rename = "build-args", with = "Option<BTreeMap<String, ScalarText>>")]
    pub build_args: Option<Entries<Sp<String>>>,
    /// The stage of a multi-stage Dockerfile to build (default: the last).
    #[schemars(with = "Option<String>")]
    pub target: Option<Sp<String>>,
    /// Layer cache in the registry, `<name>/cache` of the first tag (default `true`): a
    /// rebuild with an unchanged Dockerfile and context reuses every layer.
    #[schemars(with = "Option<bool>")]
    pub cache: Option<Sp<bool>>,
    /// Push the tags (default `true`); `false` builds only.
    #[schemars(with = "Option<bool>")]
    pub push: Option<Sp<bool>>,
    /// Logins for registries other than Kiln's: `host[:port]` to the name of a variable (a
    /// project secret on a server) holding `username:password`.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub credentials: Option<Entries<Sp<String>>>,
    /// Registries other than Kiln's to reach without TLS verification (plain HTTP).
    #[schemars(rename = "insecure-registries", with = "Option<Vec<String>>")]
    pub insecure_registries: Option<Sp<Vec<Sp<String>>>>,
}

impl RawBuild {
    /// The keys of `build`.
    pub const KEYS: &[&str] = &[
        "context",
        "dockerfile",
        "tags",
        "build-args",
        "target",
        "cache",
        "push",
        "credentials",
        "insecure-registries",
    ];
}

/// Keys of a job that mean nothing beside `build:` (the builder runs in the job's place).
pub(crate) const NOT_WITH_BUILD: &[&str] =
    &["image", "script", "command", "args", "services", "workdir", "array", "parallelism"];

/// Where a tag pushes to, as [`parse_tag`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagRegistry {
    /// `$KILN_REGISTRY/…` (or `${KILN_REGISTRY}/…`): Kiln's registry, as the job reaches it.
    Kiln,
    /// A short `<name>:<tag>`: Kiln's registry and the run's project.
    Short,
    /// A literal host (`127.0.0.1:7171/…`, `registry.example.com/…`): Kiln's registry when it
    /// is the job's `KILN_REGISTRY`, else another registry (logged in to with
    /// `credentials`).
    Host(String),
}

/// A tag of a build, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTag {
    /// Its registry.
    pub registry: TagRegistry,
    /// The project (the first path component); `None` for [`TagRegistry::Short`] and for a
    /// one-component path on a literal host (`localhost:5000/web`, another registry's).
    pub project: Option<String>,
    /// The repository in the project (may hold `/`).
    pub name: String,
    /// The tag (`latest` when none was written).
    pub tag: String,
}

/// Reads a build tag: `$KILN_REGISTRY/<project>/<name>[:<tag>]`, `<host>/<path>[:<tag>]` or
/// `<name>[:<tag>]`. The error says what was expected.
pub fn parse_tag(text: &str) -> Result<ImageTag, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a tag must not be empty".into());
    }
    if text.contains('@') {
        return Err(format!(
            "'{text}' names a digest; a build pushes tags (the digest is its output)"
        ));
    }
    let (registry, path) = if let Some(rest) =
        text.strip_prefix("$KILN_REGISTRY/").or_else(|| text.strip_prefix("${KILN_REGISTRY}/"))
    {
        (TagRegistry::Kiln, rest)
    } else {
        match text.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (TagRegistry::Host(first.to_owned()), rest)
            }
            _ => (TagRegistry::Short, text),
        }
    };
    let (repo, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (path, "latest"),
    };
    if !is_tag(tag) {
        return Err(format!(
            "'{text}': tag '{tag}' is not valid (letters, digits, '_', '.', '-', at most 128, \
             not starting with '.' or '-')"
        ));
    }
    let parts: Vec<&str> = repo.split('/').collect();
    if let Some(bad) = parts.iter().find(|p| !is_component(p)) {
        return Err(format!(
            "'{text}': '{bad}' is not a valid repository name component (lowercase letters and \
             digits, joined by '.', '_', '__' or '-')"
        ));
    }
    let (project, name) = match registry {
        TagRegistry::Short => (None, repo.to_owned()),
        TagRegistry::Host(_) if !repo.contains('/') => (None, repo.to_owned()),
        _ => match repo.split_once('/') {
            Some((project, name)) => (Some(project.to_owned()), name.to_owned()),
            None => {
                return Err(format!(
                    "'{text}': expected <registry>/<project>/<name>:<tag> (the project is \
                     missing), or a short <name>:<tag> for this run's project"
                ));
            }
        },
    };
    Ok(ImageTag { registry, project, name, tag: tag.to_owned() })
}

/// Checks a registry host as `credentials` and `insecure-registries` name it: `host[:port]`,
/// no scheme and no path.
pub fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-'))
        && !name.starts_with(['.', '-']);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if name_ok && port_ok {
        Ok(())
    } else {
        Err(format!(
            "'{host}' is not a registry host: expected host[:port] such as \
             registry.example.com or 10.0.0.5:5000 (no scheme, no path)"
        ))
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, the distribution spec's tag.
fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A repository name component: lowercase letters and digits joined by `.`, `_`, `__` or
/// dashes.
fn is_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

impl Reader<'_> {
    /// `build: { context, dockerfile, tags, build-args, target, cache, push }`.
    pub(crate) fn build(&mut self, node: &Node) -> Option<Sp<RawBuild>> {
        let f = self.fields(node, "build", RawBuild::KEYS)?;
        let tags = f.get("tags").and_then(|n| self.text_or_list(n, "build tags", false));
        if f.get("tags").is_none() {
            self.error(
                f.pos(),
                "build has no 'tags': add tags: [<name>:<tag>] (pushed to Kiln's registry, in \
                 this run's project)",
            );
        }
        Some(Sp::new(
            RawBuild {
                context: f.get("context").and_then(|n| self.text(n, "build context")),
                dockerfile: f.get("dockerfile").and_then(|n| self.text(n, "build dockerfile")),
                tags,
                build_args: f.get("build-args").and_then(|n| self.text_map(n, "build build-args")),
                target: f.get("target").and_then(|n| self.text(n, "build target")),
                cache: f.get("cache").and_then(|n| self.bool(n, "build cache")),
                push: f.get("push").and_then(|n| self.bool(n, "build push")),
                credentials: f
                    .get("credentials")
                    .and_then(|n| self.text_map(n, "build credentials")),
                insecure_registries: f
                    .get("insecure-registries")
                    .and_then(|n| self.text_or_list(n, "build insecure-registries", false)),
            },
            node.origin,
        ))
    }
}

impl Checker<'_> {
    /// Checks `build:`: paths that stay in the workspace, literal tags read by [`parse_tag`],
    /// build-arg names, templates where they stand.
    pub(crate) fn build(&mut self, raw: &Sp<RawBuild>, scope: &RefScope<'_>) -> Option<BuildSpec> {
        let b = &raw.value;
        let path = |this: &mut Self, p: &Sp<String>, what: &str| {
            this.template(p, scope, false);
            if let Some(problem) = workspace_path_problem(&crate::check::mask_templates(&p.value)) {
                let pos = p.at.locate(&p.value, problem.offset());
                this.error(pos, format!("{what}: '{}' {problem}", p.value));
            }
        };
        if let Some(c) = &b.context {
            path(self, c, "build context");
        }
        if let Some(d) = &b.dockerfile {
            path(self, d, "build dockerfile");
        }
        let tags = b.tags.as_ref()?;
        if tags.value.is_empty() {
            self.error(tags.at.pos, "build tags: name at least one, such as [web:1]");
        }
        for t in &tags.value {
            self.template(t, scope, false);
            if t.value.contains("${{") {
                continue; // read again by the runtime once rendered
            }
            if let Err(e) = parse_tag(&t.value) {
                self.error(t.at.pos, format!("build tag: {e}"));
            }
        }
        let mut build_args = BTreeMap::new();
        for (key, value) in b.build_args.iter().flat_map(|a| &a.0) {
            if !is_env_name(&key.value) {
                self.error(
                    key.at.pos,
                    format!(
                        "build-args '{}': expected a name (letters, digits and _, not starting \
                         with a digit)",
                        key.value
                    ),
                );
            }
            self.template(value, scope, false);
            build_args.insert(key.value.clone(), value.value.clone());
        }
        if let Some(t) = &b.target {
            self.template(t, scope, false);
            if t.value.trim().is_empty() {
                self.error(
                    t.at.pos,
                    "build target: must not be empty (remove it for the last stage)",
                );
            }
        }
        let mut credentials = BTreeMap::new();
        for (host, var) in b.credentials.iter().flat_map(|c| &c.0) {
            if let Err(e) = check_host(&host.value) {
                self.error(host.at.pos, format!("build credentials: {e}"));
            }
            if !is_env_name(&var.value) {
                self.error(
                    var.at.pos,
                    format!(
                        "build credentials '{}': expected the name of a variable holding \
                         username:password (a project secret on a server), such as \
                         REGISTRY_AUTH, not '{}'",
                        host.value, var.value
                    ),
                );
            }
            credentials.insert(host.value.clone(), var.value.clone());
        }
        let mut insecure_registries = Vec::new();
        for host in b.insecure_registries.iter().flat_map(|h| &h.value) {
            if let Err(e) = check_host(&host.value) {
                self.error(host.at.pos, format!("build insecure-registries: {e}"));
            }
            insecure_registries.push(host.value.clone());
        }
        let context = b.context.as_ref().map_or_else(|| ".".to_owned(), |c| c.value.clone());
        let dockerfile = b.dockerfile.as_ref().map_or_else(
            || match context.trim_end_matches('/') {
                "." | "" => "Dockerfile".to_owned(),
                dir => format!("{dir}/Dockerfile"),
            },
            |d| d.value.clone(),
        );
        Some(BuildSpec {
            context,
            dockerfile,
            tags: tags.value.iter().map(|t| t.value.clone()).collect(),
            build_args,
            target: b.target.as_ref().map(|t| t.value.clone()),
            cache: b.cache.as_ref().is_none_or(|c| c.value),
            push: b.push.as_ref().is_none_or(|p| p.value),
            credentials,
            insecure_registries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(registry: TagRegistry, project: Option<&str>, name: &str, t: &str) -> ImageTag {
        ImageTag { registry, project: project.map(str::to_owned), name: name.into(), tag: t.into() }
    }

    #[test]
    fn tags_are_read_in_each_form() {
        assert_eq!(parse_tag("web:1"), Ok(tag(TagRegistry::Short, None, "web", "1")));
        assert_eq!(parse_tag("web"), Ok(tag(TagRegistry::Short, None, "web", "latest")));
        assert_eq!(
            parse_tag("tools/web:v1.2"),
            Ok(tag(TagRegistry::Short, None, "tools/web", "v1.2"))
        );
        assert_eq!(
            parse_tag("$KILN_REGISTRY/shop/web:7"),
            Ok(tag(TagRegistry::Kiln, Some("shop"), "web", "7"))
        );
        assert_eq!(
            parse_tag("${KILN_REGISTRY}/shop/a/b"),
            Ok(tag(TagRegistry::Kiln, Some("shop"), "a/b", "latest"))
        );
        assert_eq!(
            parse_tag("localhost:5000/web"),
            Ok(tag(TagRegistry::Host("localhost:5000".into()), None, "web", "latest"))
        );
        assert_eq!(
            parse_tag("127.0.0.1:7171/shop/web:2"),
            Ok(tag(TagRegistry::Host("127.0.0.1:7171".into()), Some("shop"), "web", "2"))
        );
    }

    #[test]
    fn bad_tags_say_what_was_expected() {
        let err = |t: &str| parse_tag(t).unwrap_err();
        assert!(err("Web:1").contains("'Web' is not a valid repository"), "{}", err("Web:1"));
        assert!(err("web:-x").contains("tag '-x' is not valid"));
        assert!(err("$KILN_REGISTRY/web:1").contains("the project is missing"));
        assert!(err("web@sha256:00").contains("names a digest"));
        assert!(err(" ").contains("must not be empty"));
    }

    #[test]
    fn registry_hosts_are_host_and_port_only() {
        assert_eq!(check_host("registry.example.com"), Ok(()));
        assert_eq!(check_host("127.0.0.1:5000"), Ok(()));
        for bad in ["https://r.example", "r.example/team", "r.example:0", "r.example:x", ""] {
            let e = check_host(bad).unwrap_err();
            assert!(e.contains("expected host[:port]"), "{bad}: {e}");
        }
    }
}
