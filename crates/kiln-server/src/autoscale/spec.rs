//! Checks a node group as applied ([`NodeGroupSpec`]) into what the autoscaler runs with: the
//! scheduler's template, the times, the provider and the `kiln agent` flags that declare
//! the template. Every problem is reported at once, each naming its field.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_api::autoscale::{Amount, NodeGroupSpec};
use kiln_api::pool::{AttrValue, PortRange};
use kiln_scheduler::autoscale::{GROUP_ATTRIBUTE, NodeGroup};
use kiln_workflow::units;

/// Who adds and removes a group's machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// A program and its arguments, with more environment.
    Command {
        /// Program then arguments.
        argv: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
    },
    /// A URL `POST`ed JSON, with headers.
    Http {
        /// The hook.
        url: String,
        /// Extra headers.
        headers: BTreeMap<String, String>,
    },
}

/// A checked node group.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The scheduler's view: bounds and template.
    pub group: NodeGroup,
    /// Idle time before a node is drained.
    pub idle: Duration,
    /// Longest a provider call may take.
    pub timeout: Duration,
    /// Longest a node asked for may take to register.
    pub boot_timeout: Duration,
    /// First wait after a failed call.
    pub backoff: Duration,
    /// The provider.
    pub provider: Provider,
    /// `kiln agent` flags declaring the template.
    pub agent_args: Vec<String>,
}

/// Longest wait between provider calls after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Whether `name` is a group name: 1 to 63 letters, digits, `-` or `_`, starting with a
/// letter or digit.
pub fn is_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

fn amount(v: &Amount, field: &str, cpu: bool, errors: &mut Vec<String>) -> u64 {
    let parsed = match (v, cpu) {
        (Amount::Number(n), false) if *n >= 1.0 && n.fract() == 0.0 => Ok(*n as u64),
        (Amount::Number(_), false) => {
            Err("expected a whole number of bytes or a size such as 8Gi".to_string())
        }
        (_, true) => units::cpu_millis(&v.text()),
        (Amount::Text(t), false) => units::memory_bytes(t),
    };
    parsed.unwrap_or_else(|e| {
        errors.push(format!("{field}: {e}"));
        0
    })
}

fn duration(v: Option<&str>, default: Duration, field: &str, errors: &mut Vec<String>) -> Duration {
    match v {
        None => default,
        Some(t) => units::duration(t).unwrap_or_else(|e| {
            errors.push(format!("{field}: {e}"));
            default
        }),
    }
}

/// An attribute as `kiln agent --attribute` writes it.
fn flag_value(v: &AttrValue) -> String {
    match v {
        AttrValue::Number(n) => format!("{n}"),
        AttrValue::Text(t) => t.clone(),
        AttrValue::Set(items) => format!("{{{}}}", items.join(",")),
    }
}

/// Checks `spec`; the error lists every problem, one per line, each naming its field.
pub fn check(spec: &NodeGroupSpec) -> Result<Checked, String> {
    let mut errors = Vec::new();
    if let Some(kind) = spec.kind.as_deref().filter(|k| *k != "node-group") {
        errors.push(format!("kind: expected `node-group`, found `{kind}`"));
    }
    if !is_group_name(&spec.name) {
        errors.push(format!(
            "name: expected 1 to 63 letters, digits, '-' or '_' (starting with a letter or digit), found `{}`",
            spec.name
        ));
    }
    if spec.min > spec.max {
        errors.push(format!("min: {} is more than max {}", spec.min, spec.max));
    }
    let n = &spec.node;
    let cpu = amount(&n.cpus, "node.cpus", true, &mut errors);
    let memory = amount(&n.memory, "node.memory", false, &mut errors);
    let disk = n.disk.as_ref().map_or(0, |d| amount(d, "node.disk", false, &mut errors));
    let ports = match n.ports.as_deref() {
        None => PortRange::DEFAULT,
        Some(t) => PortRange::parse(t).unwrap_or_else(|e| {
            errors.push(format!("node.ports: {e}"));
            PortRange::DEFAULT
        }),
    };
    let capacity = n.capacity.unwrap_or(4);
    if capacity == 0 {
        errors.push("node.capacity: expected at least 1 job at once".to_string());
    }
    let mut attributes = BTreeMap::new();
    for (k, v) in &n.attributes {
        let field = format!("node.attributes.{k}");
        if k == GROUP_ATTRIBUTE {
            errors.push(format!("{field}: `group` is set to the group's name, leave it out"));
            continue;
        }
        if let Err(e) = kiln_api::pool::check_attr_key(k) {
            errors.push(format!("{field}: {e}"));
            continue;
        }
        let text = flag_value(v);
        if text.is_empty() || text.contains(char::is_whitespace) {
            errors.push(format!(
                "{field}: expected a value without blanks (it is passed to `kiln agent --attribute`), found `{text}`"
            ));
            continue;
        }
        attributes.insert(k.clone(), crate::pool::sched_value(v.clone()));
    }
    let p = &spec.provider;
    let provider = match (&p.command, &p.http) {
        (Some(argv), None) if argv.first().is_some_and(|a| !a.trim().is_empty()) => {
            for k in p.env.keys() {
                if k.is_empty() || k.contains('=') || k.starts_with("KILN_") {
                    errors.push(format!(
                        "provider.env.{k}: expected a variable name without '=' and not starting with KILN_"
                    ));
                }
            }
            Provider::Command { argv: argv.clone(), env: p.env.clone() }
        }
        (Some(_), None) => {
            errors.push(
                "provider.command: expected a program and its arguments, found an empty list"
                    .into(),
            );
            Provider::Command { argv: Vec::new(), env: BTreeMap::new() }
        }
        (None, Some(url)) => {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => errors.push(format!(
                    "provider.http: expected an http:// or https:// URL, found `{url}`"
                )),
            }
            Provider::Http { url: url.clone(), headers: p.env.clone() }
        }
        (Some(_), Some(_)) => {
            errors.push("provider: expected one of `command` and `http`, found both".into());
            Provider::Command { argv: Vec::new(), env: BTreeMap::new() }
        }
        (None, None) => {
            errors.push("provider: expected `command: [PROGRAM, ARGS...]` or `http: URL`".into());
            Provider::Command { argv: Vec::new(), env: BTreeMap::new() }
        }
    };
    let idle =
        duration(spec.idle_time.as_deref(), Duration::from_secs(600), "idle-time", &mut errors);
    let timeout =
        duration(p.timeout.as_deref(), Duration::from_secs(60), "provider.timeout", &mut errors);
    let boot_timeout = duration(
        p.boot_timeout.as_deref(),
        Duration::from_secs(600),
        "provider.boot-timeout",
        &mut errors,
    );
    let backoff =
        duration(p.backoff.as_deref(), Duration::from_secs(10), "provider.backoff", &mut errors);
    if !errors.is_empty() {
        return Err(format!("node group `{}`:\n  {}", spec.name, errors.join("\n  ")));
    }
    let mut agent_args =
        vec!["--attribute".to_string(), format!("{GROUP_ATTRIBUTE}={}", spec.name)];
    for (k, v) in &n.attributes {
        agent_args.push("--attribute".into());
        agent_args.push(format!("{k}={}", flag_value(v)));
    }
    agent_args.extend([
        "--cpus".to_string(),
        kiln_scheduler::model::format_cpu(cpu),
        "--memory".to_string(),
        memory.to_string(),
        "--disk".to_string(),
        disk.to_string(),
        "--ports".to_string(),
        ports.to_string(),
        "--capacity".to_string(),
        capacity.to_string(),
    ]);
    let group = NodeGroup {
        name: spec.name.clone(),
        min: spec.min,
        max: spec.max,
        resources: kiln_scheduler::Resources::new(cpu, memory, disk),
        ports: kiln_scheduler::PortRange { start: ports.start, end: ports.end },
        slots: capacity,
        attributes,
    };
    Ok(Checked { group, idle, timeout, boot_timeout, backoff, provider, agent_args })
}

/// The wait after `failures` failed calls in a row: `first`, doubled each time, at most
/// [`MAX_BACKOFF`] (or `first`, when that is longer).
pub fn backoff(first: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    first.saturating_mul(factor).min(MAX_BACKOFF.max(first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::autoscale::{NodeTemplate, ProviderSpec};

    fn spec() -> NodeGroupSpec {
        NodeGroupSpec {
            kind: Some("node-group".into()),
            name: "big".into(),
            min: 0,
            max: 3,
            idle_time: Some("30s".into()),
            node: NodeTemplate {
                cpus: Amount::Number(4.0),
                memory: Amount::Text("8Gi".into()),
                disk: None,
                ports: None,
                capacity: Some(2),
                attributes: BTreeMap::from([("city".into(), AttrValue::Text("paris".into()))]),
            },
            provider: ProviderSpec {
                command: Some(vec!["/bin/hook".into()]),
                http: None,
                env: BTreeMap::new(),
                timeout: None,
                boot_timeout: None,
                backoff: Some("1s".into()),
            },
        }
    }

    #[test]
    fn a_group_becomes_a_template_and_agent_flags() {
        let c = check(&spec()).unwrap();
        assert_eq!(c.group.resources.cpu_millis, 4000);
        assert_eq!(c.group.resources.memory_bytes, 8 << 30);
        assert_eq!(c.group.slots, 2);
        assert_eq!(c.idle, Duration::from_secs(30));
        assert_eq!(
            c.agent_args.join(" "),
            "--attribute group=big --attribute city=paris --cpus 4 --memory 8589934592 --disk 0 --ports 31000-32000 --capacity 2"
        );
    }

    #[test]
    fn every_problem_is_named_by_its_field() {
        let mut s = spec();
        s.min = 5;
        s.node.memory = Amount::Text("lots".into());
        s.node.attributes.insert("group".into(), AttrValue::Text("x".into()));
        s.provider.http = Some("ftp://x".into());
        s.idle_time = Some("soon".into());
        let e = check(&s).unwrap_err();
        assert!(e.starts_with("node group `big`:\n"), "{e}");
        for want in [
            "min: 5 is more than max 3",
            "node.memory: expected memory",
            "node.attributes.group",
            "provider: expected one of",
            "idle-time: expected a duration",
        ] {
            assert!(e.contains(want), "{want} missing in {e}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let s = Duration::from_secs(1);
        assert_eq!(backoff(s, 1), s);
        assert_eq!(backoff(s, 3), Duration::from_secs(4));
        assert_eq!(backoff(s, 40), MAX_BACKOFF);
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(hour, 3), hour, "a first wait past the cap is kept");
    }
}
