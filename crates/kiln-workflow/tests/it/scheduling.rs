//! The scheduling keys of a compiled job become a `kiln_scheduler::Ask` that places on a pool
//! as the file says (seed 000: distcc daemons in shenzhen, one per machine, two dynamic ports).

use kiln_scheduler::{AttrValue, Network, Node, Options, Pool, Resources};

use crate::support::FsLoader;

fn machine(id: &str, city: &str) -> Node {
    let mut n =
        Node::new(id, &format!("10.0.0.{}", id.len()), Resources::new(24_000, 76 << 30, 200 << 30));
    for (k, v) in [("city", city), ("storageType", "SSD"), ("rack", id), ("gcc", "12")] {
        n.attributes.insert(k.into(), AttrValue::Text(v.into()));
    }
    n
}

#[test]
fn compiled_job_places_on_the_pool() {
    let compiled = kiln_workflow::compile("test_data/ok/scheduling.yml", &FsLoader);
    let plan = compiled.plan.expect("compiles");
    let job = plan.jobs.iter().find(|j| j.id.as_str() == "distcc").expect("distcc job");
    let defaults = Resources::new(1000, 1 << 30, 0);
    let ask = |n: usize| {
        job.ask(&format!("run-1/distcc/{n}"), "run-1/distcc", "build", defaults).unwrap()
    };
    let first = ask(0);
    assert_eq!(
        first.constraints.to_string(),
        "city LIKE shenzhen AND hostname UNIQUE AND (storageType LIKE SSD OR cores GREATER 32) AND rack MAX_PER 2 AND gcc EXISTS"
    );
    assert_eq!(first.resources, Resources::new(8000, 16 << 30, 10 << 30));
    assert_eq!(first.network, Network::Host);
    assert_eq!(first.priority, 10);

    let mut pool = Pool::with_nodes(
        Options::default(),
        [machine("sz1", "shenzhen"), machine("sz2", "shenzhen"), machine("sh1", "shanghai")],
    );
    let p0 = pool.reserve(&first).unwrap();
    let p1 = pool.reserve(&ask(1)).unwrap();
    assert_ne!(p0.node, p1.node, "hostname UNIQUE");
    assert_eq!(p0.env()["KILN_PORT_SERVICE_PORT"], "31000");
    assert_eq!(p0.env()["KILN_PORT_STATS_PORT"], "31001");
    let waits = pool.place(&ask(2)).unwrap_err();
    assert_eq!(
        waits.summary(),
        "2 nodes: hostname UNIQUE failed; 1 node: city LIKE shenzhen failed"
    );

    // A job with no scheduling keys asks the defaults, anywhere.
    let plain = kiln_workflow::compile("test_data/ok/minimal.yml", &FsLoader).plan.unwrap();
    let a = plain.jobs[0].ask("t", "g", "p", defaults).unwrap();
    assert_eq!(a.resources, defaults);
    assert!(a.constraints.is_empty() && a.ports.is_empty());
}
