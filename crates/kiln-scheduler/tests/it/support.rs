//! Builders shared by the tests.

use kiln_scheduler::{Ask, AttrValue, Constraints, Node, Predicate, Resources};

pub const GI: u64 = 1 << 30;

/// `cores` CPUs and `mem_gi` GiB of memory, 100 GiB of disk.
pub fn res(cores: u64, mem_gi: u64) -> Resources {
    Resources::new(cores * 1000, mem_gi * GI, 100 * GI)
}

/// A node `id` with `cores`, `mem_gi` and text attributes.
pub fn node(id: &str, cores: u64, mem_gi: u64, attrs: &[(&str, &str)]) -> Node {
    let mut n = Node::new(id, &format!("10.0.0.{}", id.len()), res(cores, mem_gi));
    for (k, v) in attrs {
        n.attributes.insert(k.to_string(), AttrValue::Text(v.to_string()));
    }
    n
}

/// An ask of `cores` CPUs and `mem_gi` GiB, no disk.
pub fn ask(task: &str, group: &str, cores: u64, mem_gi: u64) -> Ask {
    Ask::new(task, group, "proj", Resources::new(cores * 1000, mem_gi * GI, 0))
}

/// Constraints from `(attribute, operator, value)` triples, each its own group.
pub fn all(tests: &[(&str, &str, Option<&str>)]) -> Constraints {
    Constraints::new(
        tests.iter().map(|(a, o, v)| vec![Predicate::new(a, o, *v).unwrap()]).collect(),
    )
    .unwrap()
}
