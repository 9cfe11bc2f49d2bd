//! Build-scoped service pools (`service-pools:` of a workflow or of a job): the checked
//! [`Pool`] a plan carries, and the one pure function that renders a pool's `export`
//! templates from its healthy instances ([`render_exports`]), shared by the server and
//! `kiln run`.
//!
//! Templates are minijinja (Jinja2) over `instances` (a list of [`PoolInstance`], by slot)
//! and `service` (the pool's service name), rendered with strict undefined (a missing value
//! is an error, not an empty string), no auto-escaping (a value is env text, not HTML or
//! JSON), a fuel budget (a template can not loop forever), and the result trimmed.

use std::collections::BTreeMap;
use std::time::Duration;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::service::ServiceSpec;

/// How long jobs wait for a pool's ready instances when the file says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The instructions one render of one export may take (each instance costs a few dozen).
const FUEL: u64 = 2_000_000;

/// A checked service pool: a service started for a run (top level) or for a job, that the
/// jobs using it wait for, and env rendered for them from its instances.
///
/// Invariants (after `compile`): `name` is a service name (`[a-z0-9-]`, 1 to 63);
/// `1 <= ready <= service.replicas`; every `export` name is an env name not starting with
/// `KILN_`, and its template parses and renders for `ready` sample instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// The pool's name in the file (`distcc`).
    pub name: String,
    /// What runs, as a `kind: service` file would say it; its `name` is the pool's.
    pub service: ServiceSpec,
    /// Healthy instances needed before the jobs that use the pool start.
    pub ready: u32,
    /// How long a job waits for them before it fails.
    pub timeout: Duration,
    /// Env of the jobs that use the pool, by name: templates over the instances.
    pub export: BTreeMap<String, String>,
}

/// One healthy instance of a pool, as its templates see it (`{{ i.ip }}`,
/// `{{ i.ports.distcc }}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInstance {
    /// The instance's id.
    pub id: String,
    /// The slot it fills (0 to replicas - 1).
    pub slot: u32,
    /// The node it runs on.
    pub node: String,
    /// The node's IP, where its host ports are reached.
    pub ip: String,
    /// Host ports by port name.
    pub ports: BTreeMap<String, u16>,
    /// The service's labels.
    pub labels: BTreeMap<String, String>,
}

/// Why an export did not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("export {name}: {message}")]
pub struct RenderError {
    /// The export's name.
    pub name: String,
    /// What went wrong, as minijinja says it.
    pub message: String,
    /// Where in the template, as a byte offset, when known.
    pub offset: Option<usize>,
}

/// The environment every export renders in.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    if let Ok(syntax) =
        minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build()
    {
        env.set_syntax(syntax);
    }
    env.set_fuel(Some(FUEL));
    env
}

fn render_error(name: &str, e: &minijinja::Error) -> RenderError {
    let message = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    RenderError { name: name.to_string(), message, offset: e.range().map(|r| r.start) }
}

/// Renders every export of `export` (name -> template) with `instances` (sorted by slot
/// here) and the pool's service name; each result is trimmed. The first template that fails
/// is the error.
pub fn render_exports(
    export: &BTreeMap<String, String>,
    service: &str,
    instances: &[PoolInstance],
) -> Result<BTreeMap<String, String>, RenderError> {
    let env = environment();
    let mut sorted = instances.to_vec();
    sorted.sort_by(|a, b| (a.slot, &a.id).cmp(&(b.slot, &b.id)));
    let ctx = minijinja::context! {
        instances => Value::from(minijinja::value::Serde(&sorted)),
        service => service,
    };
    export
        .iter()
        .map(|(name, template)| {
            env.render_str(template, ctx.clone())
                .map(|text| (name.clone(), text.trim().to_string()))
                .map_err(|e| render_error(name, &e))
        })
        .collect()
}

/// Checks one export template: it parses, and renders for `count` sample instances of
/// `spec` (its ports and labels, documentation IPs). Returns the rendered sample.
pub fn check_export(
    name: &str,
    template: &str,
    spec: &ServiceSpec,
    count: u32,
) -> Result<String, RenderError> {
    let env = environment();
    env.template_from_str(template).map_err(|e| render_error(name, &e))?;
    let sample = sample_instances(spec, count);
    let one = BTreeMap::from([(name.to_string(), template.to_string())]);
    let mut out = render_exports(&one, &spec.name, &sample)?;
    Ok(out.remove(name).unwrap_or_default())
}

/// `count` made-up instances of `spec`: slots 0.., IPs of 192.0.2.0/24 (documentation), host
/// ports from 31000.
fn sample_instances(spec: &ServiceSpec, count: u32) -> Vec<PoolInstance> {
    (0..count.max(1))
        .map(|slot| PoolInstance {
            id: format!("sample{slot}"),
            slot,
            node: format!("node-{slot}"),
            ip: format!("192.0.2.{}", slot % 250 + 1),
            ports: spec
                .scheduling
                .ports
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let n = u16::try_from(i).unwrap_or(0);
                    (p.name.clone(), if p.host != 0 { p.host } else { 31000 + n })
                })
                .collect(),
            labels: spec.labels.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(slot: u32, ip: &str, port: u16) -> PoolInstance {
        PoolInstance {
            id: format!("i{slot}"),
            slot,
            node: format!("n{slot}"),
            ip: ip.into(),
            ports: BTreeMap::from([("distcc".into(), port), ("stats".into(), port + 1)]),
            labels: BTreeMap::from([("app".into(), "distcc".into())]),
        }
    }

    fn export(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn distcc_hosts_from_the_instances_in_slot_order_trimmed() {
        let instances = [
            instance(2, "10.0.0.3", 31200),
            instance(0, "10.0.0.1", 31000),
            instance(1, "10.0.0.2", 31100),
        ];
        let out = render_exports(
            &export(&[
                (
                    "DISTCC_HOSTS",
                    "{% for i in instances %}{{ i.ip }}:{{ i.ports.distcc }}/4 {% endfor %}",
                ),
                ("COUNT", "{{ instances | length }}\n"),
                ("FIRST", "{{ instances[0].node }} {{ instances[0].labels.app }} {{ service }}"),
                ("JOINED", "{{ instances | map(attribute='ip') | join(',') }}"),
            ]),
            "ci-7-distcc",
            &instances,
        )
        .unwrap();
        assert_eq!(out["DISTCC_HOSTS"], "10.0.0.1:31000/4 10.0.0.2:31100/4 10.0.0.3:31200/4");
        assert_eq!(out["COUNT"], "3");
        assert_eq!(out["FIRST"], "n0 distcc ci-7-distcc");
        assert_eq!(out["JOINED"], "10.0.0.1,10.0.0.2,10.0.0.3");
    }

    #[test]
    fn nothing_is_escaped() {
        let out = render_exports(
            &export(&[("X", "{{ '<a & \"b\">' }}")]),
            "s",
            &[instance(0, "10.0.0.1", 1)],
        )
        .unwrap();
        assert_eq!(out["X"], "<a & \"b\">");
    }

    #[test]
    fn an_undefined_value_is_an_error_not_empty_text() {
        let e = render_exports(
            &export(&[("H", "{{ instances[0].ports.distc }}")]),
            "s",
            &[instance(0, "10.0.0.1", 1)],
        )
        .unwrap_err();
        assert_eq!(e.name, "H");
        assert!(e.message.contains("undefined"), "{e}");
        let e = render_exports(&export(&[("H", "{{ nothing }}")]), "s", &[]).unwrap_err();
        assert!(e.message.contains("undefined"), "{e}");
        assert_eq!(e.offset, Some(3));
    }

    #[test]
    fn a_template_that_does_not_parse_says_where() {
        let spec = ServiceSpec {
            name: "distcc".into(),
            image: None,
            run: crate::service::ServiceRun::default(),
            env: BTreeMap::new(),
            resources: crate::plan::Resources::default(),
            replicas: 3,
            scheduling: crate::plan::Scheduling {
                ports: vec![crate::plan::PortSpec {
                    name: "distcc".into(),
                    host: 0,
                    container: Some(3632),
                }],
                ..Default::default()
            },
            labels: BTreeMap::new(),
            health: None,
            restart: crate::service::RestartPolicy::default(),
            update: crate::service::UpdatePolicy::default(),
            environment: None,
            config: None,
        };
        let e = check_export("H", "{% for i in instances %}{{ i.ip }", &spec, 3).unwrap_err();
        assert!(e.message.contains("syntax error"), "{e}");
        assert!(e.offset.is_some());
        let ok = check_export(
            "H",
            "{% for i in instances %}{{ i.ip }}:{{ i.ports.distcc }} {% endfor %}",
            &spec,
            3,
        );
        assert_eq!(ok.unwrap(), "192.0.2.1:31000 192.0.2.2:31000 192.0.2.3:31000");
        let e = check_export("H", "{{ instances[0].ports.stats }}", &spec, 3).unwrap_err();
        assert!(e.message.contains("undefined"), "{e}");
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel() {
        let e = render_exports(
            &export(&[(
                "X",
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            )]),
            "s",
            &[],
        )
        .unwrap_err();
        assert!(e.message.contains("fuel"), "{e}");
    }
}
