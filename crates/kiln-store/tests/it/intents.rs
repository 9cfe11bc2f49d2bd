//! The trigger outbox: a claim records the runs it is to start in its own transaction, each
//! intended run is created once whatever calls `start_intent` (again, concurrently), a replayed
//! or lost claim records nothing, and a given-up intent starts nothing.

use std::collections::BTreeMap;

use chrono::{TimeDelta, TimeZone, Utc};
use kiln_store::{
    IntentRun, NewDelivery, Pipeline, RunFilter, RunIntent, RunSource, ScheduleEntry,
};

use crate::{new_run, on_both, pipeline};

fn intent(p: &Pipeline, claim: &str, params: &[(&str, &str)]) -> RunIntent {
    RunIntent {
        key: format!("{claim}:{}", p.id),
        claim: claim.to_string(),
        pipeline: p.id,
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        triggered_by: "github push of shop/app".to_string(),
        source: None,
    }
}

fn source() -> RunSource {
    RunSource {
        provider: "github".into(),
        event: "push".into(),
        repository: "shop/app".into(),
        clone_url: "https://github.example.com/shop/app.git".into(),
        git_ref: "refs/heads/main".into(),
        branch: Some("main".into()),
        tag: None,
        commit: "b".repeat(40),
        message: "Ship it".into(),
        author: "Ada <ada@example.com>".into(),
        pull_request: None,
    }
}

async fn run_count(store: &kiln_store::Store, p: &Pipeline) -> usize {
    store.runs(&RunFilter { pipeline: Some(p.id), ..RunFilter::default() }).await.unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claimed_delivery_keeps_its_intended_runs_until_each_is_started_once() {
    on_both(|store| async move {
        let build = pipeline(&store, "shop", "build").await;
        let deploy = pipeline(&store, "ops", "deploy").await;
        let claim = "webhook:github:d-1";
        let first = RunIntent { source: Some(source()), ..intent(&build, claim, &[]) };
        let second = intent(&deploy, claim, &[("env", "prod")]);
        let delivery = NewDelivery {
            provider: "github".into(),
            id: "d-1".into(),
            event: "push".into(),
            repository: "shop/app".into(),
        };
        let claimed = store.claim_delivery(&delivery, &[first.clone(), second.clone()]).await;
        assert_eq!(claimed.unwrap(), None, "a new delivery");
        // "Crash" here: nothing started, yet both runs are remembered.
        assert_eq!(store.pending_intents().await.unwrap(), [first.clone(), second.clone()]);
        assert_eq!(run_count(&store, &build).await, 0);

        // A replay of the id is a duplicate and records no other intent.
        let other = intent(&build, "webhook:github:d-1-replay", &[]);
        assert!(store.claim_delivery(&delivery, &[other]).await.unwrap().is_some());
        assert_eq!(store.pending_intents().await.unwrap().len(), 2);

        let IntentRun::Created(run) = store.start_intent(&first.key).await.unwrap() else {
            panic!("the first start creates the run");
        };
        assert_eq!(run.source, Some(source()));
        assert_eq!(run.triggered_by, "github push of shop/app");
        assert_eq!(run.params, serde_json::json!({}));
        // Started again (the processor after a restart, another server): the same run.
        assert_eq!(store.start_intent(&first.key).await.unwrap(), IntentRun::Existed(run.clone()));
        assert_eq!(run_count(&store, &build).await, 1, "never two runs of one intent");
        assert_eq!(store.run_by_trigger(&first.key).await.unwrap(), Some(run.clone()));
        assert_eq!(store.pending_intents().await.unwrap(), std::slice::from_ref(&second));

        let IntentRun::Created(prod) = store.start_intent(&second.key).await.unwrap() else {
            panic!("the second intent has its own run");
        };
        assert_eq!(prod.params, serde_json::json!({ "env": "prod" }));
        assert!(store.pending_intents().await.unwrap().is_empty());
        let names: Vec<String> =
            store.claim_runs(claim).await.unwrap().iter().map(|r| r.full_name()).collect();
        assert_eq!(names, ["shop/build#1", "ops/deploy#1"]);

        // Runs without a trigger key are not limited by it.
        store.create_run(&new_run(&build)).await.unwrap();
        store.create_run(&new_run(&build)).await.unwrap();
        assert_eq!(run_count(&store, &build).await, 3);
        let missing = store.start_intent("webhook:github:nope:x").await.unwrap_err();
        assert!(matches!(missing, kiln_store::StoreError::NotFound(_)), "{missing}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_starts_of_one_intent_create_one_run() {
    on_both(|store| async move {
        let build = pipeline(&store, "shop", "build").await;
        let one = intent(&build, "webhook:gitea:race", &[]);
        let delivery = NewDelivery {
            provider: "gitea".into(),
            id: "race".into(),
            event: "push".into(),
            repository: "shop/app".into(),
        };
        store.claim_delivery(&delivery, std::slice::from_ref(&one)).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, key) = (store.clone(), one.key.clone());
            tasks.push(tokio::spawn(async move { store.start_intent(&key).await }));
        }
        let mut created = 0;
        let mut ids = Vec::new();
        for task in tasks {
            match task.await.unwrap().unwrap() {
                IntentRun::Created(run) => {
                    created += 1;
                    ids.push(run.id);
                }
                IntentRun::Existed(run) => ids.push(run.id),
                IntentRun::Abandoned(why) => panic!("not given up: {why}"),
            }
        }
        assert_eq!(created, 1, "exactly one start creates the run");
        ids.dedup();
        assert_eq!(ids.len(), 1, "every start answers with the same run");
        assert_eq!(run_count(&store, &build).await, 1);
    })
    .await;
}

#[tokio::test]
async fn a_schedule_fire_records_its_run_with_the_claim_and_a_given_up_one_starts_nothing() {
    on_both(|store| async move {
        let nightly = pipeline(&store, "shop", "nightly").await;
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let t1 = t0 + TimeDelta::days(1);
        let entry = ScheduleEntry {
            key: "0 0 * * *".into(),
            cron: "0 0 * * *".into(),
            timezone: "UTC".into(),
            params: BTreeMap::new(),
            missed: "skip".into(),
            next_fire_at: Some(t0),
        };
        store.sync_schedules(&nightly.id, &[entry]).await.unwrap();
        let claim = format!("schedule:{}:0 0 * * *", nightly.id);
        let fire = RunIntent {
            key: format!("{claim}:{}", t0.to_rfc3339()),
            triggered_by: "schedule \"0 0 * * *\" (UTC)".into(),
            ..intent(&nightly, &claim, &[])
        };
        let claimed = store
            .claim_schedule(&nightly.id, "0 0 * * *", t0, Some(t1), Some(t0), Some(&fire))
            .await
            .unwrap();
        assert!(claimed);
        // A second claim of the same fire loses, and records nothing.
        let late = RunIntent { key: format!("{claim}:late"), ..fire.clone() };
        let again = store
            .claim_schedule(&nightly.id, "0 0 * * *", t0, Some(t1), Some(t0), Some(&late))
            .await
            .unwrap();
        assert!(!again);
        assert_eq!(store.pending_intents().await.unwrap(), std::slice::from_ref(&fire));
        let schedule = &store.schedules(Some("shop")).await.unwrap()[0];
        assert_eq!(schedule.next_fire_at, Some(t1), "the fire is claimed with its intent");

        // Given up (its pipeline no longer takes these params): not pending, never started.
        store.abandon_intent(&fire.key, "param `who` is required").await.unwrap();
        assert!(store.pending_intents().await.unwrap().is_empty());
        assert_eq!(
            store.start_intent(&fire.key).await.unwrap(),
            IntentRun::Abandoned("param `who` is required".into())
        );
        assert_eq!(run_count(&store, &nightly).await, 0);
    })
    .await;
}
