//! Properties over whole services: random lives (instances starting, passing and failing
//! checks, exiting, lost with their nodes; updates, scaling, time) with the controller run
//! after every change, its invariants checked on every decision, and, once the world calms
//! down, the service converging to its desired version.

use kiln_service::{Action, Decision, InstanceState};
use proptest::prelude::*;

use crate::support::{World, desired};

/// Something that happens to a service.
#[derive(Debug, Clone)]
enum Op {
    /// Staging -> starting -> healthy for instance `n` (mod the count).
    Progress(usize),
    /// Instance `n` fails its health check.
    Sicken(usize),
    /// Instance `n` exits with a code.
    Exit(usize, i32),
    /// Instance `n`'s node is lost.
    Lose(usize),
    /// Every stop finishes and every instance advances one step.
    Settle,
    /// A new version is applied.
    Update,
    /// The service is scaled.
    Scale(u32),
    /// Time passes (milliseconds).
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<usize>().prop_map(Op::Progress),
        1 => any::<usize>().prop_map(Op::Sicken),
        1 => (any::<usize>(), 0..3i32).prop_map(|(n, c)| Op::Exit(n, c)),
        1 => any::<usize>().prop_map(Op::Lose),
        3 => Just(Op::Settle),
        1 => Just(Op::Update),
        1 => (0u32..6).prop_map(Op::Scale),
        2 => (0u64..120_000).prop_map(Op::Tick),
    ]
}

/// The invariants of one decision taken on `w` (before it is applied).
fn check(w: &World, d: &Decision) -> Result<(), TestCaseError> {
    let desired = &w.desired;
    let by_id = |id: &kiln_service::InstanceId| w.instances.iter().find(|i| &i.id == id);
    let room = w.instances.iter().filter(|i| i.state.holds_room()).count() as u32;
    let starts = d.actions.iter().filter(|a| matches!(a, Action::Start { .. })).count() as u32;
    if starts > 0 {
        prop_assert!(
            room + starts <= desired.replicas + desired.max_surge,
            "{starts} starts with {room} holding room: over replicas {} + surge {}",
            desired.replicas,
            desired.max_surge
        );
    }
    let healthy = w.instances.iter().filter(|i| i.state == InstanceState::Healthy).count() as u32;
    let (mut scaled_down, mut replaced) = (0u32, 0u32);
    for a in &d.actions {
        if let Action::Stop { instance, .. } = a {
            let i = by_id(instance);
            prop_assert!(
                i.is_some_and(|i| i.state.holds_room()),
                "stop of {instance}: not running"
            );
            let i = i.unwrap();
            if i.state == InstanceState::Healthy {
                if i.slot >= desired.replicas { scaled_down += 1 } else { replaced += 1 }
            }
        }
        if let Action::Forget { instance } = a {
            prop_assert!(
                by_id(instance).is_some_and(|i| i.state.has_ended()),
                "forget of {instance}"
            );
        }
    }
    let floor = desired.replicas.saturating_sub(desired.max_unavailable);
    let before = healthy - scaled_down;
    if replaced > 0 {
        prop_assert!(
            before - replaced >= floor.min(before),
            "{replaced} healthy stopped of {before}: below replicas {} - unavailable {}",
            desired.replicas,
            desired.max_unavailable
        );
    }
    Ok(())
}

/// No slot has two live instances of one version.
fn one_per_identity(w: &World) -> Result<(), TestCaseError> {
    let mut seen = std::collections::HashSet::new();
    for i in w.instances.iter().filter(|i| i.state.is_live()) {
        prop_assert!(
            seen.insert((i.slot, i.version)),
            "two live instances in slot {} of v{}",
            i.slot,
            i.version
        );
    }
    Ok(())
}

fn step(w: &mut World) -> Result<(), TestCaseError> {
    let d = w.decide();
    check(w, &d)?;
    w.apply(&d);
    one_per_identity(w)
}

fn happen(w: &mut World, op: &Op) {
    let pick = |n: usize, w: &World| {
        (!w.instances.is_empty()).then(|| w.instances[n % w.instances.len()].id.clone())
    };
    match op {
        Op::Progress(n) => {
            if let Some(id) = pick(*n, w) {
                let next = match w.instances.iter().find(|i| i.id == id).map(|i| i.state) {
                    Some(InstanceState::Staging) => InstanceState::Starting,
                    Some(InstanceState::Starting) => InstanceState::Healthy,
                    Some(s) => s,
                    None => return,
                };
                w.set(&id, next);
            }
        }
        Op::Sicken(n) => {
            if let Some(id) = pick(*n, w)
                && w.instances.iter().any(|i| i.id == id && i.state == InstanceState::Healthy)
            {
                w.set(&id, InstanceState::Unhealthy);
            }
        }
        Op::Exit(n, code) => {
            if let Some(id) = pick(*n, w)
                && w.instances.iter().any(|i| i.id == id && i.state.is_live())
            {
                w.set(&id, InstanceState::Failed);
                if let Some(i) = w.instances.iter_mut().find(|i| i.id == id) {
                    i.exit_code = Some(*code);
                }
            }
        }
        Op::Lose(n) => {
            if let Some(id) = pick(*n, w)
                && w.instances.iter().any(|i| i.id == id && i.state.holds_room())
            {
                w.set(&id, InstanceState::Lost);
            }
        }
        Op::Settle => w.settle(),
        Op::Update => w.update(),
        Op::Scale(n) => w.desired.replicas = *n,
        Op::Tick(ms) => w.now += ms,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invariants_hold_through_any_life_and_the_service_converges(
        replicas in 0u32..6,
        surge in 0u32..3,
        unavailable in 0u32..3,
        ops in proptest::collection::vec(op(), 0..80),
    ) {
        // Kubernetes refuses surge 0 with unavailable 0 (no update could move).
        prop_assume!(surge + unavailable > 0);
        let mut d = desired(replicas);
        d.max_surge = surge;
        d.max_unavailable = unavailable;
        let mut w = World::new(d);
        step(&mut w)?;
        for op in &ops {
            happen(&mut w, op);
            step(&mut w)?;
        }
        // Calm: stops finish, instances come up healthy, time passes backoffs and deadlines.
        for _ in 0..200 {
            w.settle();
            w.now += 10_000;
            step(&mut w)?;
        }
        let v = w.desired.version;
        prop_assert_eq!(w.stable, v, "history {:?}", w.history);
        prop_assert_eq!(w.healthy(v), w.desired.replicas as usize, "{:#?}", w.instances);
        prop_assert_eq!(
            w.instances.iter().filter(|i| i.state.holds_room()).count(),
            w.desired.replicas as usize
        );
    }

    #[test]
    fn a_rolling_update_of_healthy_instances_never_dips_below_the_floor(
        replicas in 1u32..8,
        surge in 0u32..3,
        unavailable in 0u32..3,
    ) {
        prop_assume!(surge + unavailable > 0);
        let mut d = desired(replicas);
        d.max_surge = surge;
        d.max_unavailable = unavailable;
        let mut w = World::new(d);
        for _ in 0..4 { step(&mut w)?; w.settle(); }
        prop_assert_eq!(w.healthy(1), replicas as usize);
        w.update();
        let floor = replicas.saturating_sub(unavailable) as usize;
        for _ in 0..(4 * replicas + 8) {
            step(&mut w)?;
            let healthy = w.instances.iter().filter(|i| i.state == InstanceState::Healthy).count();
            prop_assert!(healthy >= floor, "{healthy} healthy < {floor}: {:#?}", w.instances);
            w.settle();
        }
        prop_assert_eq!(w.stable, 2);
        prop_assert_eq!(w.healthy(2), replicas as usize);
    }
}

#[test]
fn an_update_that_never_becomes_healthy_is_rolled_back_and_the_old_version_restored() {
    let mut w = World::new(desired(4));
    for _ in 0..4 {
        w.apply(&w.decide());
        w.settle();
    }
    assert_eq!(w.healthy(1), 4);
    w.update();
    // Version 2 starts and never passes its check; 30 s steps reach the 5 min deadline.
    for _ in 0..12 {
        let d = w.decide();
        w.apply(&d);
        for i in
            w.instances.iter_mut().filter(|i| i.version == 2 && i.state == InstanceState::Staging)
        {
            i.state = InstanceState::Starting;
        }
        assert!(w.healthy(1) >= 4, "no old instance stopped while the new ones are unhealthy");
        w.now += 30_000;
    }
    assert_eq!(w.history, ["rollback to v1"]);
    for _ in 0..10 {
        w.apply(&w.decide());
        w.settle();
    }
    assert_eq!(w.desired.version, 1);
    assert_eq!(w.healthy(1), 4);
    assert!(w.instances.iter().all(|i| i.version == 1), "{:#?}", w.instances);
}
