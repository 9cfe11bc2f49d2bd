//! What a deploy, rollback or promotion is, decided without I/O: the service a deployment
//! runs as and its spec, an image reference read against Kiln's registry host, the deployment
//! a rollback returns to, whether a promotion goes to the next environment, and whether a
//! spec changed apart from its image.

use std::time::Duration;

use kiln_store::{DeploymentRecord, EnvironmentRecord};
use kiln_workflow::service::ServiceSpec;

/// The label naming the service file a deployed service runs.
pub const DEPLOY_LABEL: &str = "kiln.deploy";

/// The label naming the environment a deployed service runs in.
pub const ENV_LABEL: &str = "kiln.env";

/// The longest service name.
const MAX_NAME: usize = 63;

/// `text` as part of a service name: lowercase letters and digits, other runs of characters
/// as one `-`, none at either end.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The service that runs the deployments of `service` to `env`: `<service>-<env>`, the
/// service's part (then the environment's) shortened to fit 63 characters.
pub fn service_name(service: &str, env: &str) -> String {
    let mut env = slug(env);
    let mut name = slug(service);
    if name.len() + 1 + env.len() > MAX_NAME {
        let room = MAX_NAME - 1;
        let keep_env = env.len().min(room / 2).max(room.saturating_sub(name.len()));
        env.truncate(keep_env.min(env.len()));
        name.truncate(room - env.len());
    }
    let parts: Vec<&str> = [name.trim_matches('-'), env.trim_matches('-')]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    parts.join("-")
}

/// The spec a deployment of `file` (the service file's checked spec) to `env` runs: named
/// [`service_name`], `image` pinned to `image_ref`, `environment: env`, labelled with the
/// service and the environment, its config read from the file's application (its own name
/// when the file names none), and its update deadline `timeout` when given. `Err` when the
/// file sets another environment.
pub fn deployed_spec(
    file: &ServiceSpec,
    service: &str,
    env: &str,
    image_ref: &str,
    timeout: Option<Duration>,
) -> Result<ServiceSpec, String> {
    if let Some(other) = file.environment.as_deref().filter(|e| *e != env) {
        return Err(format!(
            "the service file sets `environment: {other}`: deploy it to `{other}`, or remove \
             that line to deploy it to any environment"
        ));
    }
    let mut spec = file.clone();
    spec.name = service_name(service, env);
    spec.image = Some(image_ref.to_string());
    spec.environment = Some(env.to_string());
    spec.labels.insert(DEPLOY_LABEL.into(), service.to_string());
    spec.labels.insert(ENV_LABEL.into(), env.to_string());
    if let Some(c) = &mut spec.config {
        c.app = Some(c.app_or(service).to_string());
    }
    if let Some(t) = timeout {
        spec.update.deadline = t;
    }
    Ok(spec)
}

/// An image as a deploy names it, read against Kiln's registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// The repository (`shop/web`).
    pub repo: String,
    /// A tag (`7`), or a digest (`sha256:…`).
    pub reference: Reference,
}

/// What names the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A manifest digest.
    Digest(String),
}

/// Reads `image` (`shop/web:7`, `<host>/shop/web:7`, `shop/web@sha256:…`; no tag means
/// `latest`). A host other than `registry_host` (or its loopback aliases) is refused: only
/// Kiln's registry is deployed from.
pub fn parse_image(image: &str, registry_host: &str) -> Result<ImageName, String> {
    let image = image.trim();
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let is_host = first.contains('.') || first.contains(':') || first == "localhost";
    let path = if is_host {
        if !same_host(first, registry_host) {
            return Err(format!(
                "image `{image}` is not in Kiln's registry ({registry_host}): push it there \
                 first (`docker push {registry_host}/<project>/<name>:<tag>`) and deploy that"
            ));
        }
        rest
    } else {
        image
    };
    let (repo, reference) = match path.split_once('@') {
        Some((repo, digest)) => (repo, Reference::Digest(digest.to_string())),
        None => match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Reference::Tag(tag.to_string())),
            _ => (path, Reference::Tag("latest".to_string())),
        },
    };
    if repo.is_empty() {
        return Err(format!("image `{image}`: expected `<project>/<name>:<tag>`"));
    }
    Ok(ImageName { repo: repo.to_string(), reference })
}

/// Whether `host` names `registry_host`: the same, or a loopback alias on the same port.
fn same_host(host: &str, registry_host: &str) -> bool {
    if host == registry_host {
        return true;
    }
    let split = |h: &str| h.rsplit_once(':').map(|(a, p)| (a.to_string(), p.to_string()));
    let loopback = |a: &str| matches!(a, "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0");
    match (split(host), split(registry_host)) {
        (Some((a, p)), Some((b, q))) => p == q && loopback(&a) && loopback(&b),
        _ => false,
    }
}

/// Why a rollback is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoRollback {
    /// No such deployment (404).
    Unknown(String),
    /// Nothing to roll back, or not to that one (409).
    Refused(String),
}

/// The deployment a rollback of `service` in `env` returns to, from its history (newest
/// first): `to`, or the succeeded one before the current one. Only one that ran healthy there
/// (`succeeded` or `superseded`) and is not the current one.
pub fn rollback_target<'a>(
    history: &'a [DeploymentRecord],
    service: &str,
    env: &str,
    to: Option<u32>,
) -> Result<&'a DeploymentRecord, NoRollback> {
    let current = history.iter().find(|d| d.state == "succeeded").ok_or_else(|| {
        NoRollback::Refused(format!(
            "`{service}` has no current deployment in `{env}` to roll back (none succeeded)"
        ))
    })?;
    let ran = |d: &DeploymentRecord| d.state == "succeeded" || d.state == "superseded";
    match to {
        Some(n) => {
            let d = history.iter().find(|d| d.number == n).ok_or_else(|| {
                NoRollback::Unknown(format!(
                    "`{service}` has no deployment {n} in `{env}` (`kiln deploy history {service} \
                     --env {env}`)"
                ))
            })?;
            if d.number == current.number {
                return Err(NoRollback::Refused(format!(
                    "deployment {n} is the current one of `{service}` in `{env}`: nothing to \
                     roll back"
                )));
            }
            if !ran(d) {
                return Err(NoRollback::Refused(format!(
                    "deployment {n} of `{service}` to `{env}` {}, it never ran healthy there: \
                     roll back to one that succeeded (`kiln deploy history {service} --env \
                     {env}`)",
                    state_words(&d.state)
                )));
            }
            Ok(d)
        }
        None => history
            .iter()
            .filter(|d| d.number < current.number && ran(d))
            .max_by_key(|d| d.number)
            .ok_or_else(|| {
                NoRollback::Refused(format!(
                    "`{service}` has no succeeded deployment in `{env}` before deployment {} to \
                     roll back to",
                    current.number
                ))
            }),
    }
}

/// `failed`, `was rolled back`… for a sentence.
fn state_words(state: &str) -> String {
    match state {
        "rolled_back" => "was rolled back".into(),
        "pending" | "running" => format!("is {state}"),
        other => format!("was {other}"),
    }
}

/// Refuses a promotion to `to` unless it comes right after `from` in the project's order.
pub fn check_promotion(to: &EnvironmentRecord, from: &str) -> Result<(), String> {
    match to.after.as_deref() {
        Some(a) if a == from => Ok(()),
        Some(a) => Err(format!("`{}` comes after `{a}`; promote from `{a}`", to.name)),
        None => Err(format!(
            "`{}` comes first in the project's order: nothing is promoted to it; deploy to it \
             (`kiln deploy`)",
            to.name
        )),
    }
}

/// Whether two deployed specs (as JSON) differ in anything but their image.
pub fn spec_changed(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("image");
        }
        v
    };
    strip(a) != strip(b)
}

/// The digest of an image reference `…@sha256:…`.
pub fn digest_of(image_ref: &str) -> Option<&str> {
    image_ref.rsplit_once('@').map(|(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ServiceSpec {
        kiln_workflow::compile_service("api.yml", yaml).spec.expect("compiles")
    }

    #[test]
    fn service_names_fit_and_say_which_environment() {
        assert_eq!(service_name("api", "staging"), "api-staging");
        assert_eq!(service_name("api", "EU_prod.1"), "api-eu-prod-1");
        let long = "x".repeat(60);
        let name = service_name(&long, "production");
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("-production"), "{name}");
        let name = service_name(&long, &"e".repeat(64));
        assert!(name.len() <= 63 && name.starts_with("xxx") && name.ends_with("eee"), "{name}");
    }

    #[test]
    fn a_deployed_spec_pins_the_digest_and_names_its_environment() {
        let file = spec(
            "kind: service\nname: api\nimage: shop/api:1\ncommand: [x]\nconfig: { path: /c }\nlabels: { team: a }\n",
        );
        let d = deployed_spec(
            &file,
            "api",
            "dev",
            "h:1/shop/api@sha256:ab",
            Some(Duration::from_secs(7)),
        )
        .unwrap();
        assert_eq!(d.name, "api-dev");
        assert_eq!(d.image.as_deref(), Some("h:1/shop/api@sha256:ab"));
        assert_eq!(d.environment.as_deref(), Some("dev"));
        assert_eq!(d.labels[DEPLOY_LABEL], "api");
        assert_eq!(d.labels[ENV_LABEL], "dev");
        assert_eq!(d.labels["team"], "a");
        // Renamed, it still reads the file's application.
        assert_eq!(d.config.as_ref().and_then(|c| c.app.as_deref()), Some("api"));
        assert_eq!(d.update.deadline, Duration::from_secs(7));
        let pinned = spec("kind: service\nname: api\ncommand: [x]\nenvironment: prod\n");
        assert!(deployed_spec(&pinned, "api", "prod", "i", None).is_ok());
        let err = deployed_spec(&pinned, "api", "dev", "i", None).unwrap_err();
        assert!(err.contains("sets `environment: prod`"), "{err}");
    }

    #[test]
    fn images_are_read_against_the_registry_host() {
        let host = "127.0.0.1:7171";
        let tag = |repo: &str, t: &str| ImageName {
            repo: repo.into(),
            reference: Reference::Tag(t.into()),
        };
        assert_eq!(parse_image("shop/web:7", host), Ok(tag("shop/web", "7")));
        assert_eq!(parse_image("127.0.0.1:7171/shop/web:7", host), Ok(tag("shop/web", "7")));
        assert_eq!(parse_image("localhost:7171/shop/a/b", host), Ok(tag("shop/a/b", "latest")));
        assert_eq!(
            parse_image("shop/web@sha256:00", host),
            Ok(ImageName {
                repo: "shop/web".into(),
                reference: Reference::Digest("sha256:00".into())
            })
        );
        let err = parse_image("docker.io/library/nginx:1", host).unwrap_err();
        assert!(err.contains("not in Kiln's registry (127.0.0.1:7171)"), "{err}");
        assert!(parse_image("localhost:9/shop/web:1", host).is_err());
    }

    fn record(number: u32, state: &str) -> DeploymentRecord {
        DeploymentRecord {
            project_id: kiln_store::ProjectId::new(),
            project: "shop".into(),
            service: "api".into(),
            environment: "prod".into(),
            number,
            kind: "deploy".into(),
            state: state.into(),
            image: String::new(),
            digest: String::new(),
            image_ref: String::new(),
            config: None,
            service_name: "api-prod".into(),
            service_version: None,
            spec: serde_json::Value::Null,
            yaml: String::new(),
            file: String::new(),
            run: None,
            asked_by: "a".into(),
            asked_at: chrono::Utc::now(),
            approved_by: None,
            approved_at: None,
            finished_at: None,
            note: None,
            reason: None,
            rollback_of: None,
            promoted_from: None,
        }
    }

    #[test]
    fn a_rollback_returns_to_a_deployment_that_ran_healthy() {
        let history = [
            record(5, "running"),
            record(4, "succeeded"),
            record(3, "rolled_back"),
            record(2, "superseded"),
            record(1, "superseded"),
        ];
        let to = |n| rollback_target(&history, "api", "prod", n).map(|d| d.number);
        assert_eq!(to(None), Ok(2));
        assert_eq!(to(Some(1)), Ok(1));
        let refused = |n| match rollback_target(&history, "api", "prod", n) {
            Err(NoRollback::Refused(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(refused(Some(4)).contains("is the current one"));
        assert!(refused(Some(3)).contains("was rolled back, it never ran healthy"));
        assert!(matches!(
            rollback_target(&history, "api", "prod", Some(9)),
            Err(NoRollback::Unknown(_))
        ));
        let first = [record(1, "succeeded")];
        assert!(matches!(
            rollback_target(&first, "api", "prod", None),
            Err(NoRollback::Refused(_))
        ));
        assert!(matches!(rollback_target(&[], "api", "prod", None), Err(NoRollback::Refused(_))));
    }

    #[test]
    fn a_promotion_goes_to_the_next_environment_only() {
        let env = |name: &str, after: Option<&str>| EnvironmentRecord {
            id: kiln_store::EnvironmentId::new(),
            project_id: kiln_store::ProjectId::new(),
            project: "shop".into(),
            name: name.into(),
            after: after.map(Into::into),
            protected: false,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        assert_eq!(check_promotion(&env("prod", Some("staging")), "staging"), Ok(()));
        assert_eq!(
            check_promotion(&env("prod", Some("staging")), "dev"),
            Err("`prod` comes after `staging`; promote from `staging`".into())
        );
        assert!(check_promotion(&env("dev", None), "prod").unwrap_err().contains("comes first"));
    }

    #[test]
    fn a_spec_change_ignores_the_image() {
        let a = serde_json::json!({ "image": "x@sha256:1", "env": { "A": "1" } });
        let b = serde_json::json!({ "image": "x@sha256:2", "env": { "A": "1" } });
        let c = serde_json::json!({ "image": "x@sha256:2", "env": { "A": "2" } });
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&b, &c));
        assert_eq!(digest_of("h/x@sha256:2"), Some("sha256:2"));
    }
}
