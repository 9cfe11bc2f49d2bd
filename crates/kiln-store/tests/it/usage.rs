//! Usage records: opened with an attempt's start, completed with its end in the same
//! transaction as the step that records it, once; a run's final step closes what is left
//! open; the window query.

use chrono::{DateTime, Duration, Utc};
use kiln_engine::RunState;
use kiln_store::{Step, UsageEnd, UsageStart};
use kiln_workflow::plan::JobId;

use crate::{new_run, on_both, pipeline};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn start(p: &kiln_store::Pipeline, job: &str, attempt: u32, t: DateTime<Utc>) -> UsageStart {
    UsageStart {
        job: JobId::from(job),
        attempt,
        project: p.project_id,
        pipeline: p.name.clone(),
        environment: "staging".into(),
        node: "n1".into(),
        node_group: "ci".into(),
        cpu_millis: 500,
        memory_bytes: 256 << 20,
        disk_bytes: 0,
        started_at: t,
    }
}

fn end(job: &str, attempt: u32, t: DateTime<Utc>) -> UsageEnd {
    UsageEnd { job: JobId::from(job), attempt, ended_at: t }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attempt_is_recorded_once_and_a_final_step_closes_the_rest() {
    on_both(|store| async move {
        let p = pipeline(&store, "api", "build").await;
        let run = store.create_run(&new_run(&p)).await.unwrap();
        let t0 = at("2026-12-07T10:00:00Z");
        let running = Step {
            state: Some((RunState::Running, None)),
            usage_starts: vec![start(&p, "a", 1, t0), start(&p, "b", 1, t0)],
            ..Step::default()
        };
        assert!(store.record_step_notified(&run.id, &running).await.unwrap().usage.is_empty());
        // A start told twice keeps the first; an end completes the row once.
        let again = Step {
            usage_starts: vec![start(&p, "a", 1, t0 + Duration::seconds(5))],
            usage_ends: vec![end("a", 1, t0 + Duration::milliseconds(2_500))],
            ..Step::default()
        };
        let done = store.record_step_notified(&run.id, &again).await.unwrap().usage;
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].job.as_str(), done[0].started_at, done[0].seconds), ("a", t0, 3));
        let twice =
            Step { usage_ends: vec![end("a", 1, t0 + Duration::hours(1))], ..Step::default() };
        assert!(store.record_step_notified(&run.id, &twice).await.unwrap().usage.is_empty());
        // An attempt that never started has nothing to end.
        let never = Step { usage_ends: vec![end("c", 1, t0)], ..Step::default() };
        assert!(store.record_step_notified(&run.id, &never).await.unwrap().usage.is_empty());
        assert_eq!(store.open_usage_count(&run.id).await.unwrap(), 1);
        // The run ends: `b`, still open, is closed with it.
        let finish = Step { state: Some((RunState::Failure, None)), ..Step::default() };
        let closed = store.record_step_notified(&run.id, &finish).await.unwrap().usage;
        assert_eq!(closed.iter().map(|u| u.job.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(store.open_usage_count(&run.id).await.unwrap(), 0);
        // Where each job ran: its latest attempt's node, kept after it ended.
        let second = Step {
            usage_starts: vec![UsageStart { node: "n2".into(), ..start(&p, "a", 2, t0) }],
            ..Step::default()
        };
        store.record_step_notified(&run.id, &second).await.unwrap();
        let nodes = store.job_nodes(&run.id).await.unwrap();
        let nodes: Vec<(&str, &str)> =
            nodes.iter().map(|(j, n)| (j.as_str(), n.as_str())).collect();
        assert_eq!(nodes, [("a", "n2"), ("b", "n1")]);

        let all = store
            .usage_records(&p.project_id, t0 - Duration::days(1), Utc::now() + Duration::days(1))
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            (all[0].job.as_str(), all[0].environment.as_str(), all[0].node_group.as_str()),
            ("a", "staging", "ci")
        );
        assert_eq!((all[0].cpu_millis, all[0].memory_bytes), (500, 256 << 20));
        // The window is on the end, `[since, until)`.
        let a_end = t0 + Duration::milliseconds(2_500);
        let only_a =
            store.usage_records(&p.project_id, a_end, a_end + Duration::seconds(1)).await.unwrap();
        assert_eq!(only_a.iter().map(|u| u.job.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(store.usage_records(&p.project_id, t0, a_end).await.unwrap().is_empty());
    })
    .await;
}
