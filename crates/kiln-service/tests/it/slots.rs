//! One case per slot situation: the instances in, the decision out (one line per action).

use kiln_service::InstanceState::{Failed, Healthy, Lost, Staging, Starting, Stopping, Unhealthy};
use kiln_service::{Desired, Instance, Observed, RestartPolicy, reconcile};

use crate::support::{desired, inst, show};

const NOW: u64 = 1_000_000;

fn check(d: &Desired, stable: u32, started: Option<u64>, instances: &[Instance], want: &str) {
    let got = reconcile(Observed {
        desired: d,
        stable_version: stable,
        update_started_ms: started,
        instances,
        now_ms: NOW,
    });
    assert_eq!(show(&got), want.trim(), "instances: {instances:#?}");
}

#[test]
fn a_new_service_starts_every_slot() {
    check(
        &desired(3),
        1,
        None,
        &[],
        "start slot 0 v1 (restarts 0)\nstart slot 1 v1 (restarts 0)\nstart slot 2 v1 (restarts 0)",
    );
}

#[test]
fn a_healthy_service_is_left_alone() {
    let running = [inst("a", 0, 1, Healthy, 0), inst("b", 1, 1, Starting, 0)];
    check(&desired(2), 1, None, &running, "");
}

#[test]
fn an_instance_lost_with_its_node_is_replaced_at_once() {
    let mut lost = inst("b", 1, 1, Lost, NOW - 10);
    lost.restarts = 2;
    check(
        &desired(2),
        1,
        None,
        &[inst("a", 0, 1, Healthy, 0), lost],
        "forget b\nstart slot 1 v1 (restarts 2)",
    );
}

#[test]
fn a_failed_instance_is_replaced_after_its_backoff() {
    // Failed 500 ms ago with no failures before: the first wait is 1 s.
    let failed = Instance { exit_code: Some(1), ..inst("b", 1, 1, Failed, NOW - 500) };
    check(
        &desired(2),
        1,
        None,
        &[inst("a", 0, 1, Healthy, 0), failed.clone()],
        "wait slot 1: instance b exited with code 1; restarting in 500ms (backoff)\nwake at 1000500",
    );
    // Its third consecutive failure waits 1 s x 2^2 = 4 s.
    let third = Instance {
        restarts: 2,
        since_ms: NOW - 3_000,
        started_ms: Some(NOW - 3_100),
        ..failed.clone()
    };
    check(
        &desired(2),
        1,
        None,
        &[inst("a", 0, 1, Healthy, 0), third.clone()],
        "wait slot 1: instance b exited with code 1; restarting in 1s (backoff)\nwake at 1001000",
    );
    let due = Instance { since_ms: NOW - 4_000, ..third };
    check(
        &desired(2),
        1,
        None,
        &[inst("a", 0, 1, Healthy, 0), due],
        "forget b\nstart slot 1 v1 (restarts 3)",
    );
}

#[test]
fn a_failure_of_an_older_version_does_not_hold_the_new_one_back() {
    let mut d = desired(1);
    d.version = 2;
    let failed = Instance { restarts: 4, exit_code: Some(1), ..inst("a", 0, 1, Failed, NOW - 10) };
    check(&d, 1, Some(NOW), &[failed], "forget a\nstart slot 0 v2 (restarts 0)\nwake at 1300000");
}

#[test]
fn an_instance_that_ran_long_starts_its_slots_count_again() {
    // 5 failures before, but it ran for 2 minutes (longer than the 1 min maximum backoff).
    let failed = Instance {
        restarts: 5,
        started_ms: Some(NOW - 121_000),
        exit_code: Some(137),
        ..inst("b", 0, 1, Failed, NOW - 1_000)
    };
    check(&desired(1), 1, None, &[failed], "forget b\nstart slot 0 v1 (restarts 1)");
}

#[test]
fn restart_policies_say_which_endings_are_replaced() {
    let mut d = desired(1);
    d.restart.policy = RestartPolicy::Never;
    let exited = Instance { exit_code: Some(3), ..inst("a", 0, 1, Failed, 0) };
    check(
        &d,
        1,
        None,
        std::slice::from_ref(&exited),
        "wait slot 0: instance a exited with code 3; restart policy `never`",
    );
    d.restart.policy = RestartPolicy::OnFailure;
    let clean = Instance { exit_code: Some(0), ..exited.clone() };
    check(
        &d,
        1,
        None,
        &[clean],
        "wait slot 0: instance a exited with code 0; restart policy `on-failure`",
    );
    check(&d, 1, None, &[exited], "forget a\nstart slot 0 v1 (restarts 1)");
    // A lost instance is replaced whatever the policy.
    d.restart.policy = RestartPolicy::Never;
    check(&d, 1, None, &[inst("a", 0, 1, Lost, 0)], "forget a\nstart slot 0 v1 (restarts 0)");
}

#[test]
fn an_unhealthy_instance_is_stopped_and_its_slot_waits_for_the_stop() {
    check(
        &desired(2),
        1,
        None,
        &[inst("a", 0, 1, Healthy, 0), inst("b", 1, 1, Unhealthy, 0)],
        "stop b: failed its health check\nwait slot 1: instance b is being stopped",
    );
    check(
        &desired(2),
        1,
        None,
        &[inst("a", 0, 1, Healthy, 0), inst("b", 1, 1, Stopping, 0)],
        "wait slot 1: instance b is being stopped",
    );
}

#[test]
fn scaling_down_stops_the_highest_slots() {
    let running = [
        inst("a", 0, 1, Healthy, 0),
        inst("b", 1, 1, Healthy, 0),
        inst("c", 2, 1, Healthy, 0),
        inst("d", 3, 1, Failed, 0),
    ];
    check(
        &desired(1),
        1,
        None,
        &running,
        "stop b: scaled down to 1 replicas\nstop c: scaled down to 1 replicas\nforget d",
    );
    check(&desired(0), 1, None, &running[..1], "stop a: scaled down to 0 replicas");
}

#[test]
fn a_rolling_update_surges_then_replaces_slot_by_slot() {
    let mut d = desired(2);
    d.version = 2;
    let started = Some(NOW - 1_000);
    // Surge 1, unavailable 0: one new instance beside the old ones.
    let old = [inst("a", 0, 1, Healthy, 0), inst("b", 1, 1, Healthy, 0)];
    check(
        &d,
        1,
        started,
        &old,
        "start slot 0 v2 (restarts 0)\nwait slot 1: the update waits: 3 instances hold room, at most 3 may (replicas + max surge), and 2 are healthy, at least 2 must stay\nwake at 1299000",
    );
    // Not healthy yet: the old one stays.
    let mut mid = old.to_vec();
    mid.push(inst("c", 0, 2, Starting, 0));
    check(
        &d,
        1,
        started,
        &mid,
        "wait slot 0: instance c of version 2 is starting\nwait slot 1: the update waits: 3 instances hold room, at most 3 may (replicas + max surge), and 2 are healthy, at least 2 must stay\nwake at 1299000",
    );
    // Healthy: the old one of its slot is stopped (the next slot waits for that room).
    mid[2].state = Healthy;
    check(
        &d,
        1,
        started,
        &mid,
        "stop a: replaced by version 2\nwait slot 1: the update waits: 3 instances hold room, at most 3 may (replicas + max surge), and 2 are healthy, at least 2 must stay\nwake at 1299000",
    );
    // Every slot healthy at v2 and nothing else: completed.
    let done = [inst("c", 0, 2, Healthy, 0), inst("e", 1, 2, Healthy, 0)];
    check(&d, 1, started, &done, "completed v2");
}

#[test]
fn without_surge_an_update_stops_first_within_max_unavailable() {
    let mut d = desired(3);
    d.version = 2;
    d.max_surge = 0;
    d.max_unavailable = 1;
    let old =
        [inst("a", 0, 1, Healthy, 0), inst("b", 1, 1, Healthy, 0), inst("c", 2, 1, Healthy, 0)];
    check(
        &d,
        1,
        Some(NOW),
        &old,
        "stop a: replaced by version 2\nwait slot 1: the update waits: 3 instances hold room, at most 3 may (replicas + max surge), and 2 are healthy, at least 2 must stay\nwait slot 2: the update waits: 3 instances hold room, at most 3 may (replicas + max surge), and 2 are healthy, at least 2 must stay\nwake at 1300000",
    );
}

#[test]
fn an_update_past_its_deadline_rolls_back() {
    let mut d = desired(2);
    d.version = 3;
    let running =
        [inst("a", 0, 2, Healthy, 0), inst("b", 1, 2, Healthy, 0), inst("c", 0, 3, Unhealthy, 0)];
    check(
        &d,
        2,
        Some(NOW - 300_000),
        &running,
        "roll back to v2: version 3 was not healthy within its deadline of 5m: 0 of 2 instances healthy",
    );
}

#[test]
fn a_first_version_past_its_deadline_has_nothing_to_roll_back_to_and_keeps_trying() {
    // Version 1 of a new service: no stable version (0) to go back to.
    let failed = Instance { exit_code: Some(1), ..inst("a", 0, 1, Failed, NOW - 2_000) };
    check(&desired(1), 0, Some(NOW - 300_000), &[failed], "forget a\nstart slot 0 v1 (restarts 1)");
}

#[test]
fn a_second_instance_of_one_version_in_a_slot_is_stopped() {
    check(
        &desired(1),
        1,
        None,
        &[inst("a", 0, 1, Staging, 5), inst("b", 0, 1, Healthy, 0)],
        "stop a: slot 0 already has an instance of version 1",
    );
}
