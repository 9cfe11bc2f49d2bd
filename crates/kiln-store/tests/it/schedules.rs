//! Schedules: an apply keeps what is stored about unchanged entries; a fire is claimed once.

use std::collections::BTreeMap;

use chrono::{TimeDelta, TimeZone, Utc};
use kiln_store::{NewRun, ScheduleEntry};

use crate::{on_both, pipeline};

fn entry(key: &str, next: Option<chrono::DateTime<Utc>>) -> ScheduleEntry {
    ScheduleEntry {
        key: key.into(),
        cron: key.into(),
        timezone: "Asia/Shanghai".into(),
        params: BTreeMap::from([("target".to_string(), "prod".to_string())]),
        missed: "skip".into(),
        next_fire_at: next,
    }
}

#[tokio::test]
async fn sync_keeps_unchanged_entries_and_claims_fire_once() {
    on_both(|store| async move {
        let p = pipeline(&store, "shop", "nightly").await;
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        store
            .sync_schedules(&p.id, &[entry("0 8 * * *", Some(t0)), entry("0 9 * * *", Some(t0))])
            .await
            .unwrap();
        let all = store.schedules(Some("shop")).await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].project.as_str(), all[0].pipeline.as_str()), ("shop", "nightly"));
        assert_eq!(all[0].params["target"], "prod");
        assert_eq!(all[0].next_fire_at, Some(t0));

        // Due: claimed once; a second claim of the same fire finds it moved.
        assert!(store.due_schedules(t0 - TimeDelta::seconds(1)).await.unwrap().is_empty());
        let due = store.due_schedules(t0).await.unwrap();
        assert_eq!(due.len(), 2);
        let t1 = t0 + TimeDelta::days(1);
        assert!(
            store.claim_schedule(&p.id, "0 8 * * *", t0, Some(t1), Some(t0), None).await.unwrap()
        );
        assert!(
            !store.claim_schedule(&p.id, "0 8 * * *", t0, Some(t1), Some(t0), None).await.unwrap()
        );
        let run = store
            .create_run(&NewRun {
                pipeline: p.id,
                params: serde_json::json!({}),
                triggered_by: "schedule".into(),
                retry_of: None,
                source: None,
            })
            .await
            .unwrap();
        store.schedule_started(&p.id, "0 8 * * *", &run.id).await.unwrap();
        assert_eq!(store.next_schedule_fire().await.unwrap(), Some(t0), "0 9 is still due");

        // Re-applied with 0 8 kept (moved second, policy changed), 0 9 dropped, 0 10 new.
        let mut kept = entry("0 8 * * *", Some(t0));
        kept.missed = "run-once".into();
        store.sync_schedules(&p.id, &[entry("0 10 * * *", Some(t1)), kept]).await.unwrap();
        let all = store.schedules(None).await.unwrap();
        let crons: Vec<&str> = all.iter().map(|s| s.cron.as_str()).collect();
        assert_eq!(crons, ["0 10 * * *", "0 8 * * *"]);
        let eight = &all[1];
        assert_eq!(eight.next_fire_at, Some(t1), "a kept entry keeps its next fire time");
        assert_eq!(eight.last_fired_at, Some(t0));
        assert_eq!(eight.last_run, Some((run.id, 1)));
        assert_eq!(eight.missed, "run-once");
        assert_eq!(store.next_schedule_fire().await.unwrap(), Some(t1));

        // Nothing left: no schedule, nothing due.
        store.sync_schedules(&p.id, &[]).await.unwrap();
        assert!(store.schedules(None).await.unwrap().is_empty());
        assert_eq!(store.next_schedule_fire().await.unwrap(), None);
        assert!(store.schedules(Some("other")).await.unwrap().is_empty());
    })
    .await;
}
