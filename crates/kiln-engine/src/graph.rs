//! The plan as index structures, computed once per run: needs as indices, reverse edges,
//! effective gates, and the defects that make a job fail without running.
//!
//! Invariant: every edge in `needs` / `dependents` points from a later job to an earlier one,
//! so counting unfinished needs can never deadlock; a job whose needs or gate break the plan's
//! contract gets a `defect` instead of edges.

use std::collections::HashMap;

use kiln_workflow::plan::{Plan, StageKind};

/// Needs, reverse edges and gates of a plan, by job index.
#[derive(Debug)]
pub(crate) struct Graph {
    /// Job id -> index (the first job with that id).
    pub index: HashMap<String, usize>,
    /// Base name (`test` of `test[a]`) -> indices, in plan order.
    pub by_base: HashMap<String, Vec<usize>>,
    /// Valid needs of each job, deduplicated, in the order written.
    pub needs: Vec<Vec<usize>>,
    /// Jobs that need each job, in plan order.
    pub dependents: Vec<Vec<usize>>,
    /// The approval stage each job waits for.
    pub gate: Vec<Option<usize>>,
    /// Jobs waiting for each stage (empty unless the stage is an approval).
    pub gated: Vec<Vec<usize>>,
    /// Approval stages, ascending.
    pub approvals: Vec<usize>,
    /// Stage bucket of each job: its stage, or `stages.len()` when out of range.
    pub stage: Vec<usize>,
    /// Why a job can not run at all, when the plan breaks its contract for it.
    pub defect: Vec<Option<String>>,
}

impl Graph {
    /// Indexes `plan`. Linear in jobs + needs.
    pub fn new(plan: &Plan) -> Graph {
        let n = plan.jobs.len();
        let stages = plan.stages.len();
        let mut index = HashMap::with_capacity(n);
        let mut by_base: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, job) in plan.jobs.iter().enumerate() {
            index.entry(job.id.0.clone()).or_insert(i);
            by_base.entry(job.base.clone()).or_default().push(i);
        }
        let approvals: Vec<usize> = plan
            .stages
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, StageKind::Approval { .. }))
            .map(|(i, _)| i)
            .collect();

        let mut needs = Vec::with_capacity(n);
        let mut dependents = vec![Vec::new(); n];
        let mut gate = Vec::with_capacity(n);
        let mut gated = vec![Vec::new(); stages];
        let mut stage = Vec::with_capacity(n);
        let mut defect = Vec::with_capacity(n);
        // `seen[j] == i + 1` when job `i` already lists `j`: linear deduplication.
        let mut seen = vec![0usize; n];
        for (i, job) in plan.jobs.iter().enumerate() {
            stage.push(job.stage.min(stages));
            let mut problem = None;
            let mut mine: Vec<usize> = Vec::with_capacity(job.needs.len());
            for need in &job.needs {
                match index.get(need.as_str()) {
                    Some(&j) if j < i => {
                        if seen[j] != i + 1 {
                            seen[j] = i + 1;
                            mine.push(j);
                        }
                    }
                    _ => {
                        problem = Some(format!(
                            "needs `{need}`, which is not an earlier job of the plan"
                        ));
                        break;
                    }
                }
            }
            // The nearest approval before the job's stage binds it even when `gate` is
            // missing: an approval can not be bypassed.
            let nearest = approvals.iter().rev().find(|&&g| g < job.stage).copied();
            let own = match job.gate {
                None => None,
                Some(g) if g < job.stage && approvals.binary_search(&g).is_ok() => Some(g),
                Some(g) => {
                    problem.get_or_insert_with(|| {
                        format!("its gate (stage {g}) is not an approval stage before its own")
                    });
                    None
                }
            };
            let effective = own.max(nearest);
            if problem.is_some() {
                mine.clear();
            } else {
                for &j in &mine {
                    dependents[j].push(i);
                }
                if let Some(g) = effective {
                    gated[g].push(i);
                }
            }
            needs.push(mine);
            gate.push(effective);
            defect.push(problem);
        }
        Graph { index, by_base, needs, dependents, gate, gated, approvals, stage, defect }
    }
}
