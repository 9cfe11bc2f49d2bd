//! Placement benchmark (issue 4, item 9): 100,000 queued 8-CPU tasks with constraints placed
//! on 10,000 simulated nodes by `Pool::place_batch`; target: all placed in <= 2 s
//! (>= 50,000 placements/s). Anchors: kube-scheduler's own benchmark reports 680-810 pods/s at
//! 5,000 nodes; Nomad's C1M about 3,750 containers/s.
//!
//! Nodes: 128 CPUs, 512 GiB, 2 TiB disk, ports 31000-32000 (16 tasks each, 160,000 slots for
//! 100,000 tasks); `city` one of four, `storageType` SSD on half the nodes of each city,
//! `cores` a number. Tasks (8 CPUs, 16 GiB, 10 GiB disk), in four projects, interleaved:
//! - 40% (project web): `city LIKE shenzhen|shanghai`;
//! - 20% (db): `storageType LIKE SSD AND city UNLIKE shenzhen|shanghai`;
//! - 20% (distcc): daemons as in seed 000: groups of 100 with `hostname UNIQUE`, host network
//!   and two dynamic ports;
//! - 20% (batch): `cores GREATER 32 AND city LIKE chengdu|beijing`, spread.
//!
//! `cargo bench -p kiln-scheduler --bench placement` (or `cargo xtask bench placement`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kiln_scheduler::{
    Ask, AttrValue, Constraints, Network, Node, Options, Pool, PortAsk, Predicate, Resources,
    Strategy,
};

const NODES: usize = 10_000;
const TASKS: usize = 100_000;
const GI: u64 = 1 << 30;

fn nodes() -> Vec<Node> {
    let cities = ["shenzhen", "shanghai", "chengdu", "beijing"];
    (0..NODES)
        .map(|i| {
            let mut n = Node::new(
                &format!("node-{i:05}"),
                &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                Resources::new(128_000, 512 * GI, 2048 * GI),
            );
            let a = &mut n.attributes;
            a.insert("city".into(), AttrValue::Text(cities[i % 4].into()));
            let storage = if (i / 4) % 2 == 0 { "SSD" } else { "NORMAL" };
            a.insert("storageType".into(), AttrValue::Text(storage.into()));
            a.insert("cores".into(), AttrValue::Number(128.0));
            n
        })
        .collect()
}

fn all(tests: &[(&str, &str, Option<&str>)]) -> Constraints {
    let groups =
        tests.iter().map(|(a, o, v)| vec![Predicate::new(a, o, *v).expect("valid")]).collect();
    Constraints::new(groups).expect("valid")
}

fn queue() -> Vec<Ask> {
    let city = all(&[("city", "LIKE", Some("shenzhen|shanghai"))]);
    let ssd =
        all(&[("storageType", "LIKE", Some("SSD")), ("city", "UNLIKE", Some("shenzhen|shanghai"))]);
    let unique = all(&[("hostname", "UNIQUE", None)]);
    let cores = all(&[("cores", "GREATER", Some("32")), ("city", "LIKE", Some("chengdu|beijing"))]);
    let res = Resources::new(8_000, 16 * GI, 10 * GI);
    (0..TASKS)
        .map(|i| {
            let mut a = Ask::new(&format!("task-{i}"), "g", "p", res);
            match i % 5 {
                0 | 1 => {
                    a.project = "web".into();
                    a.group = format!("web-{}", i / 1000).into_group();
                    a.constraints = city.clone();
                }
                2 => {
                    a.project = "db".into();
                    a.constraints = ssd.clone();
                }
                3 => {
                    a.project = "distcc".into();
                    a.group = format!("distcc-{}", i / 500).into_group();
                    a.constraints = unique.clone();
                    a.network = Network::Host;
                    a.ports = ["SERVICE_PORT", "STATS_PORT"]
                        .iter()
                        .map(|n| PortAsk { name: n.to_string(), host: 0, container: None })
                        .collect();
                }
                _ => {
                    a.project = "batch".into();
                    a.constraints = cores.clone();
                    a.strategy = Strategy::Spread;
                }
            }
            a
        })
        .collect()
}

trait IntoGroup {
    fn into_group(self) -> kiln_scheduler::GroupKey;
}
impl IntoGroup for String {
    fn into_group(self) -> kiln_scheduler::GroupKey {
        kiln_scheduler::GroupKey(self)
    }
}

fn pool() -> Pool {
    Pool::with_nodes(Options::default(), nodes())
}

/// CPU time this thread has run, from Linux's `/proc/thread-self/schedstat` (the machine the
/// benches run on is shared: wall time includes waiting for a core, CPU time does not).
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// One timed run outside criterion, for the figure in docs/benchmarks.md.
fn report() {
    let queue = queue();
    let build = Instant::now();
    let mut p = pool();
    let built = build.elapsed();
    let (start, cpu0) = (Instant::now(), thread_cpu());
    let out = p.place_batch(&queue, &BTreeMap::new());
    let (took, cpu1) = (start.elapsed(), thread_cpu());
    assert_eq!(
        out.placed.len(),
        TASKS,
        "every task must be placed; first waiting: {:?}",
        out.waiting.first().map(|(i, w)| format!("{}: {w}", queue[*i].task))
    );
    let rate = TASKS as f64 / took.as_secs_f64();
    println!(
        "placement: {TASKS} tasks on {NODES} nodes placed in {:.3} s ({:.0} placements/s; target <= 2 s, >= 50,000/s); pool built in {:.3} s",
        took.as_secs_f64(),
        rate,
        built.as_secs_f64()
    );
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        let cpu = (b - a).as_secs_f64();
        println!("  on-CPU time {cpu:.3} s ({:.0} placements per CPU-second)", TASKS as f64 / cpu);
    }
    println!(
        "  vs kube-scheduler 680-810 pods/s: x{:.0}-x{:.0}; vs Nomad C1M 3,750/s: x{:.0}",
        rate / 810.0,
        rate / 680.0,
        rate / 3750.0
    );
}

fn bench(c: &mut Criterion) {
    report();
    let mut g = c.benchmark_group("placement");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let q = queue();
    g.bench_function("batch_100k_tasks_10k_nodes", |b| {
        b.iter_batched(
            pool,
            // The pool and the outcome are returned so that freeing them is not timed.
            |mut p| {
                let out = p.place_batch(&q, &BTreeMap::new());
                black_box((p, out))
            },
            BatchSize::LargeInput,
        )
    });
    // One decision on a pool half full: what a server pays per task it dequeues.
    let mut half = pool();
    half.place_batch(&q[..TASKS / 2], &BTreeMap::new());
    let probe = {
        let mut a = q[TASKS / 2].clone();
        a.task = kiln_scheduler::TaskId("probe".into());
        a
    };
    g.sample_size(100).measurement_time(Duration::from_secs(5));
    g.bench_function("place_one_half_full", |b| b.iter(|| black_box(half.place(&probe).is_ok())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
