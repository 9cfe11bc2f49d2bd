//! [`reconcile`]: one pass over a service's slots, budgets counted as actions are decided so
//! that the whole answer keeps the invariants of the crate doc.

use crate::{
    Action, Decision, Desired, Instance, InstanceState, Observed, RestartPolicy, Wait, backoff_ms,
};

/// The budgets of one pass, updated as actions are decided.
struct Budget {
    /// Instances holding room on nodes (live or stopping).
    room: u32,
    /// Healthy instances.
    healthy: u32,
    /// Most instances that may hold room: `replicas + max_surge`.
    max_room: u32,
    /// Fewest healthy instances an update or a replacement may leave:
    /// `replicas - max_unavailable`.
    min_healthy: u32,
}

impl Budget {
    fn of(desired: &Desired, instances: &[Instance]) -> Budget {
        let count = |f: &dyn Fn(&Instance) -> bool| {
            u32::try_from(instances.iter().filter(|i| f(i)).count()).unwrap_or(u32::MAX)
        };
        Budget {
            room: count(&|i| i.state.holds_room()),
            healthy: count(&|i| i.state == InstanceState::Healthy),
            max_room: desired.replicas.saturating_add(desired.max_surge),
            min_healthy: desired.replicas.saturating_sub(desired.max_unavailable),
        }
    }

    /// Whether one more instance may be started.
    fn may_start(&self) -> bool {
        self.room < self.max_room
    }

    /// Whether `instance` may be stopped without going below the healthy floor.
    fn may_stop(&self, instance: &Instance) -> bool {
        instance.state != InstanceState::Healthy || self.healthy > self.min_healthy
    }

    fn started(&mut self) {
        self.room += 1;
    }

    fn stopping(&mut self, instance: &Instance) {
        if instance.state == InstanceState::Healthy {
            self.healthy = self.healthy.saturating_sub(1);
        }
    }
}

/// Decides what to do for a service, from what it should be and what runs.
pub fn reconcile(o: Observed<'_>) -> Decision {
    let d = o.desired;
    let mut out = Decision::default();
    let updating = d.version != o.stable_version;

    // An update that missed its deadline goes back to the stable version, first of all. A
    // first version (none ran healthy everywhere yet) has nothing to go back to: it keeps
    // trying.
    if updating
        && o.stable_version > 0
        && let Some(started) = o.update_started_ms
    {
        let due = started.saturating_add(d.deadline_ms);
        if !complete(&o) {
            if o.now_ms >= due {
                let healthy = slots_done(&o);
                out.actions.push(Action::RollBack {
                    to_version: o.stable_version,
                    reason: format!(
                        "version {} was not healthy within its deadline of {}: {healthy} of {} \
                         instances healthy",
                        d.version,
                        human_ms(d.deadline_ms),
                        d.replicas
                    ),
                });
                return out;
            }
            wake(&mut out, due);
        }
    }

    let mut budget = Budget::of(d, o.instances);

    // Slots beyond `replicas`: scaled down (or the service stopped).
    for i in o.instances.iter().filter(|i| i.slot >= d.replicas) {
        if i.state.is_live() {
            budget.stopping(i);
            stop(&mut out, i, format!("scaled down to {} replicas", d.replicas));
        } else if i.state.has_ended() {
            out.actions.push(Action::Forget { instance: i.id.clone() });
        }
    }

    // Instances failing their health check are stopped; their slot is refilled once they
    // have ended, after its backoff.
    for i in o.instances.iter().filter(|i| i.slot < d.replicas) {
        if i.state == InstanceState::Unhealthy {
            stop(&mut out, i, "failed its health check".to_string());
        }
    }

    for slot in 0..d.replicas {
        reconcile_slot(&o, slot, &mut budget, &mut out);
    }

    if updating && complete(&o) {
        out.actions.push(Action::Completed { version: d.version });
        out.wake_at_ms = None;
    }
    out
}

/// One slot: keep one healthy instance of the desired version in it.
fn reconcile_slot(o: &Observed<'_>, slot: u32, budget: &mut Budget, out: &mut Decision) {
    let d = o.desired;
    let here: Vec<&Instance> = o.instances.iter().filter(|i| i.slot == slot).collect();
    let running = |i: &&&Instance| i.state.is_live() && i.state != InstanceState::Unhealthy;
    let mut new: Vec<&Instance> =
        here.iter().filter(running).filter(|i| i.version == d.version).copied().collect();
    let old: Vec<&Instance> =
        here.iter().filter(running).filter(|i| i.version != d.version).copied().collect();
    let mut ended: Vec<&Instance> = here.iter().filter(|i| i.state.has_ended()).copied().collect();
    ended.sort_by_key(|i| i.since_ms);
    let busy: Vec<&Instance> = here
        .iter()
        .filter(|i| matches!(i.state, InstanceState::Stopping | InstanceState::Unhealthy))
        .copied()
        .collect();

    // Never two live instances of one version in one slot: keep the most advanced.
    new.sort_by_key(|i| (progress(i.state), std::cmp::Reverse(i.since_ms)));
    while new.len() > 1 {
        let extra = new.remove(0);
        budget.stopping(extra);
        stop(out, extra, format!("slot {slot} already has an instance of version {}", d.version));
    }
    let forget_ended = |out: &mut Decision| {
        for e in &ended {
            out.actions.push(Action::Forget { instance: e.id.clone() });
        }
    };

    match (new.first(), old.is_empty()) {
        (Some(n), _) => {
            forget_ended(out);
            if n.state != InstanceState::Healthy {
                if !old.is_empty() {
                    waiting(
                        out,
                        slot,
                        format!(
                            "instance {} of version {} is {}",
                            n.id,
                            n.version,
                            n.state.as_str()
                        ),
                    );
                }
                return;
            }
            for old in old {
                if budget.may_stop(old) {
                    budget.stopping(old);
                    stop(out, old, format!("replaced by version {}", d.version));
                } else {
                    waiting(out, slot, floor_reason(budget, d));
                }
            }
        }
        (None, false) => {
            forget_ended(out);
            if budget.may_start() {
                budget.started();
                out.actions.push(Action::Start { slot, version: d.version, restarts: 0 });
            } else if let Some(old) = old.iter().copied().find(|i| budget.may_stop(i)) {
                budget.stopping(old);
                stop(out, old, format!("replaced by version {}", d.version));
            } else {
                waiting(
                    out,
                    slot,
                    format!(
                        "the update waits: {} instances hold room, at most {} may (replicas + \
                         max surge), and {} are healthy, at least {} must stay",
                        budget.room, budget.max_room, budget.healthy, budget.min_healthy
                    ),
                );
            }
        }
        (None, true) => {
            if let Some(b) = busy.first() {
                waiting(out, slot, format!("instance {} is being stopped", b.id));
                return;
            }
            let restarts = match ended.last() {
                None => 0,
                Some(last) => match refill(d, last, o.now_ms) {
                    Refill::Now(restarts) => restarts,
                    Refill::At(at) => {
                        wake(out, at);
                        waiting(
                            out,
                            slot,
                            format!(
                                "instance {} {}; restarting in {} (backoff)",
                                last.id,
                                ending(last),
                                human_ms(at.saturating_sub(o.now_ms))
                            ),
                        );
                        return;
                    }
                    Refill::Never(policy) => {
                        waiting(
                            out,
                            slot,
                            format!(
                                "instance {} {}; restart policy `{policy}`",
                                last.id,
                                ending(last)
                            ),
                        );
                        return;
                    }
                },
            };
            if budget.may_start() {
                forget_ended(out);
                budget.started();
                out.actions.push(Action::Start { slot, version: d.version, restarts });
            } else {
                waiting(
                    out,
                    slot,
                    format!(
                        "{} instances hold room, at most {} may (replicas + max surge)",
                        budget.room, budget.max_room
                    ),
                );
            }
        }
    }
}

/// When an ended instance's slot is filled again.
enum Refill {
    /// Now, with this many consecutive failures counted.
    Now(u32),
    /// Not before this time (backoff).
    At(u64),
    /// Not at all (the restart policy's name).
    Never(&'static str),
}

fn refill(d: &Desired, last: &Instance, now: u64) -> Refill {
    if last.version != d.version {
        // An ending of an older version says nothing of the new one (which may fix it).
        return Refill::Now(0);
    }
    if last.state == InstanceState::Lost {
        // The node's fault, not the instance's: replaced elsewhere at once.
        return Refill::Now(last.restarts);
    }
    match d.restart.policy {
        RestartPolicy::Never => return Refill::Never("never"),
        RestartPolicy::OnFailure if last.exit_code == Some(0) => {
            return Refill::Never("on-failure");
        }
        _ => {}
    }
    // An instance that ran as long as the longest backoff starts its slot's count again.
    let ran_long =
        last.started_ms.is_some_and(|s| last.since_ms.saturating_sub(s) >= d.restart.max_ms);
    let failures = if ran_long { 0 } else { last.restarts };
    let at = last.since_ms.saturating_add(backoff_ms(&d.restart, failures));
    if now >= at { Refill::Now(failures + 1) } else { Refill::At(at) }
}

/// Whether every slot runs exactly one healthy instance of the desired version and nothing
/// else holds room.
fn complete(o: &Observed<'_>) -> bool {
    let d = o.desired;
    slots_done(o) == d.replicas
        && o.instances.iter().filter(|i| i.state.holds_room()).count() == d.replicas as usize
}

/// Slots whose instance of the desired version is healthy.
fn slots_done(o: &Observed<'_>) -> u32 {
    let d = o.desired;
    let done = (0..d.replicas)
        .filter(|slot| {
            o.instances.iter().any(|i| {
                i.slot == *slot && i.version == d.version && i.state == InstanceState::Healthy
            })
        })
        .count();
    u32::try_from(done).unwrap_or(u32::MAX)
}

/// How far an instance got: a duplicate with less progress is the one stopped.
fn progress(s: InstanceState) -> u8 {
    match s {
        InstanceState::Healthy => 3,
        InstanceState::Starting => 2,
        InstanceState::Staging => 1,
        _ => 0,
    }
}

fn ending(i: &Instance) -> String {
    match (i.state, i.exit_code) {
        (InstanceState::Lost, _) => "was lost with its node".to_string(),
        (_, Some(code)) => format!("exited with code {code}"),
        _ => "failed".to_string(),
    }
}

fn floor_reason(budget: &Budget, d: &Desired) -> String {
    format!(
        "the update waits: {} instances healthy, at least {} must stay (replicas {} - max \
         unavailable {})",
        budget.healthy, budget.min_healthy, d.replicas, d.max_unavailable
    )
}

fn stop(out: &mut Decision, i: &Instance, reason: String) {
    out.actions.push(Action::Stop { instance: i.id.clone(), reason });
}

fn waiting(out: &mut Decision, slot: u32, reason: String) {
    out.waits.push(Wait { slot, reason });
}

fn wake(out: &mut Decision, at: u64) {
    out.wake_at_ms = Some(out.wake_at_ms.map_or(at, |w| w.min(at)));
}

/// `1.5s`, `2m`, `250ms`.
fn human_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = ms as f64 / 1000.0;
        if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{s:.1}s") }
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}
