//! Services: versions numbered without gaps, template reuse and copies, the update clock,
//! instances upserted with a store-wide event log a watch resumes exactly, deletion.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeDelta, Utc};
use kiln_store::{
    InstanceRecord, NewServiceVersion, RunId, ServiceId, ServiceOwner, Store, StoreError,
};
use serde_json::json;
use tempfile::TempDir;

use crate::on_both;

fn spec(image: &str) -> serde_json::Value {
    json!({ "image": image, "ports": { "http": 8080 }, "env": { "A": "1", "B": "2" } })
}

fn apply(image: &str, replicas: u32) -> NewServiceVersion {
    NewServiceVersion {
        kind: "apply".into(),
        replicas,
        template: None,
        spec: spec(image),
        yaml: format!("image: {image}\n"),
        file: "web.yml".into(),
        note: None,
        by: "user:alice".into(),
        owner: None,
        deployed: None,
    }
}

fn on(template: u32, kind: &str, replicas: u32) -> NewServiceVersion {
    NewServiceVersion {
        kind: kind.into(),
        replicas,
        template: Some(template),
        spec: json!(null),
        yaml: String::new(),
        file: String::new(),
        note: Some(format!("{kind} to {replicas}")),
        by: "user:bob".into(),
        owner: None,
        deployed: None,
    }
}

fn instance(service: ServiceId, id: &str, slot: u32, version: u32) -> InstanceRecord {
    InstanceRecord {
        id: id.into(),
        service_id: service,
        slot,
        version,
        state: "staging".into(),
        reason: None,
        node: Some("n1".into()),
        host_ip: Some("10.0.0.1".into()),
        ports: BTreeMap::from([("http".to_string(), 20001)]),
        lease: Some(format!("lease-{id}")),
        since: micros(Utc::now()),
        started_at: None,
        restarts: 0,
        exit_code: None,
        forgotten: false,
    }
}

/// A time that round-trips through both databases.
fn micros(t: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_templates_and_the_update_clock() {
    on_both(|store| async move {
        store.create_project("shop").await.unwrap();
        let (s1, v1) = store.add_service_version("shop", "web", &apply("web:1", 2)).await.unwrap();
        assert_eq!((s1.version, s1.template, s1.stable, s1.replicas), (1, 1, 0, 2));
        assert_eq!((s1.project.as_str(), s1.name.as_str()), ("shop", "web"));
        assert!(s1.update_started_at.is_some(), "the first version starts an update");
        assert_eq!((v1.version, v1.template, v1.kind.as_str()), (1, 1, "apply"));
        assert_eq!(
            (v1.spec.clone(), v1.by.as_str(), v1.file.as_str()),
            (spec("web:1"), "user:alice", "web.yml")
        );
        assert_eq!(store.service("shop", "web").await.unwrap(), s1);
        assert_eq!(store.service_by_id(&s1.id).await.unwrap(), s1);

        // Stable: the clock stops.
        store.set_service_stable(&s1.id, 1).await.unwrap();
        let stable = store.service_by_id(&s1.id).await.unwrap();
        assert_eq!((stable.stable, stable.update_started_at), (1, None));
        assert!(stable.updated_at >= s1.updated_at);

        // An apply that changes nothing but replicas reuses its template: a scale.
        let found = store.service_version_with_spec(&s1.id, &spec("web:1")).await.unwrap();
        assert_eq!(found.map(|v| v.version), Some(1));
        let reordered: serde_json::Value = serde_json::from_str(
            r#"{"env":{"B":"2","A":"1"},"ports":{"http":8080},"image":"web:1"}"#,
        )
        .unwrap();
        let found = store.service_version_with_spec(&s1.id, &reordered).await.unwrap();
        assert_eq!(found.map(|v| v.version), Some(1), "JSON equality, not text");
        assert!(store.service_version_with_spec(&s1.id, &spec("web:9")).await.unwrap().is_none());
        let (s2, v2) = store.add_service_version("shop", "web", &on(1, "scale", 5)).await.unwrap();
        assert_eq!((s2.version, s2.template, s2.stable, s2.replicas), (2, 1, 1, 5));
        assert_eq!(s2.update_started_at, None, "same template: no update");
        assert_eq!((v2.template, v2.replicas, v2.note.as_deref()), (1, 5, Some("scale to 5")));
        assert_eq!(
            (&v2.spec, v2.yaml.as_str(), v2.file.as_str()),
            (&v1.spec, v1.yaml.as_str(), "web.yml")
        );

        // A new spec: its own template, an update starts.
        let (s3, v3) = store.add_service_version("shop", "web", &apply("web:2", 5)).await.unwrap();
        assert_eq!((s3.version, s3.template, s3.stable), (3, 3, 1));
        assert_eq!(v3.template, 3);
        let started = s3.update_started_at.expect("update started");

        // A scale during the update keeps its clock.
        let (s4, _) = store.add_service_version("shop", "web", &on(3, "scale", 4)).await.unwrap();
        assert_eq!((s4.version, s4.template), (4, 3));
        assert_eq!(s4.update_started_at, Some(started));

        // Rolling back to a scale version runs that version's template.
        let (s5, v5) =
            store.add_service_version("shop", "web", &on(2, "auto-rollback", 4)).await.unwrap();
        assert_eq!((s5.version, s5.template, v5.template), (5, 1, 1));
        assert_eq!(v5.spec, spec("web:1"));
        assert!(s5.update_started_at.is_some_and(|t| t >= started));

        // A restart: same spec, new template; the newest template with a spec wins.
        let mut restart = apply("web:1", 4);
        restart.kind = "restart".into();
        let (s6, _) = store.add_service_version("shop", "web", &restart).await.unwrap();
        assert_eq!((s6.version, s6.template), (6, 6));
        let found = store.service_version_with_spec(&s1.id, &spec("web:1")).await.unwrap();
        assert_eq!(found.map(|v| v.version), Some(6));

        let versions = store.service_versions(&s1.id).await.unwrap();
        assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(versions.iter().map(|v| v.template).collect::<Vec<_>>(), [1, 1, 3, 3, 1, 6]);
        assert_eq!(store.service_version(&s1.id, 3).await.unwrap(), v3);

        // Refused: nothing changes.
        for bad in [on(7, "rollback", 1), on(0, "rollback", 1)] {
            let err = store.add_service_version("shop", "web", &bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        }
        let mut odd = apply("web:3", 1);
        odd.kind = "deploy".into();
        let err = store.add_service_version("shop", "web", &odd).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        let err = store.add_service_version("shop", "a b", &apply("web:3", 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(store.service("shop", "web").await.unwrap().version, 6, "no gap after errors");
        let (s7, _) = store.add_service_version("shop", "web", &on(6, "stop", 0)).await.unwrap();
        assert_eq!((s7.version, s7.template, s7.replicas), (7, 6, 0));

        // Not found.
        let err = store.add_service_version("nope", "web", &apply("web:1", 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert_eq!(err.to_string(), "project `nope` not found");
        let err = store.service("shop", "api").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert_eq!(err.to_string(), "service `api` of project `shop` not found");
        let err = store.service("nope", "web").await.unwrap_err();
        assert_eq!(err.to_string(), "project `nope` not found");
        let ghost = ServiceId::new();
        let err = store.service_by_id(&ghost).await.unwrap_err();
        assert_eq!(err.to_string(), format!("service {ghost} not found"));
        let err = store.service_version(&s1.id, 99).await.unwrap_err();
        assert_eq!(err.to_string(), format!("version 99 of service {} not found", s1.id));
        for err in [
            store.service_versions(&ghost).await.unwrap_err(),
            store.service_version(&ghost, 1).await.unwrap_err(),
            store.set_service_stable(&ghost, 1).await.unwrap_err(),
            store.instances(&ghost, true).await.unwrap_err(),
            store.delete_service(&ghost).await.unwrap_err(),
        ] {
            assert_eq!(err.to_string(), format!("service {ghost} not found"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn versions_have_no_gaps_under_concurrency() {
    on_both(|store| async move {
        store.create_project("shop").await.unwrap();
        let mut tasks = Vec::new();
        for n in 0..12 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.add_service_version("shop", "web", &apply(&format!("web:{n}"), 1)).await
            }));
        }
        let mut numbers = BTreeSet::new();
        for task in tasks {
            let (_, v) = task.await.unwrap().unwrap();
            assert!(numbers.insert(v.version), "version {} twice", v.version);
        }
        assert_eq!(numbers, (1..=12).collect::<BTreeSet<u32>>());
        assert_eq!(store.services(None).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_are_listed_by_project_then_name() {
    on_both(|store| async move {
        for project in ["web", "api"] {
            store.create_project(project).await.unwrap();
        }
        store.create_project("empty").await.unwrap();
        for (project, name) in [("web", "b"), ("api", "z"), ("web", "a")] {
            store.add_service_version(project, name, &apply("x", 1)).await.unwrap();
        }
        let names = |list: Vec<kiln_store::ServiceRecord>| {
            list.into_iter().map(|s| format!("{}/{}", s.project, s.name)).collect::<Vec<_>>()
        };
        assert_eq!(names(store.services(None).await.unwrap()), ["api/z", "web/a", "web/b"]);
        assert_eq!(names(store.services(Some("web")).await.unwrap()), ["web/a", "web/b"]);
        assert!(store.services(Some("empty")).await.unwrap().is_empty());
        let err = store.services(Some("nope")).await.unwrap_err();
        assert_eq!(err.to_string(), "project `nope` not found");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_owns_the_services_it_creates_and_later_versions_keep_the_owner() {
    on_both(|store| async move {
        store.create_project("ci").await.unwrap();
        let run = RunId::new();
        let owner = |job: Option<&str>| ServiceOwner { run, job: job.map(str::to_string) };
        let owned = |job| NewServiceVersion { owner: Some(owner(job)), ..apply("distccd", 3) };
        let (pool, _) = store.add_service_version("ci", "b-1-distcc", &owned(None)).await.unwrap();
        assert_eq!(pool.owner, Some(owner(None)));
        let (job_pool, _) =
            store.add_service_version("ci", "b-1-test-cache", &owned(Some("test"))).await.unwrap();
        assert_eq!(job_pool.owner, Some(owner(Some("test"))));
        store.add_service_version("ci", "by-hand", &apply("web", 1)).await.unwrap();
        // A later version (a scale) neither drops nor changes the owner.
        let other = NewServiceVersion { owner: None, ..on(1, "scale", 2) };
        let (scaled, _) = store.add_service_version("ci", "b-1-distcc", &other).await.unwrap();
        assert_eq!(scaled.owner, Some(owner(None)));
        let names: Vec<String> =
            store.owned_services().await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["b-1-distcc", "b-1-test-cache"]);
        assert_eq!(store.service("ci", "by-hand").await.unwrap().owner, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_upsert_and_events_resume_exactly() {
    on_both(|store| async move {
        store.create_project("shop").await.unwrap();
        let (web, _) = store.add_service_version("shop", "web", &apply("web:1", 2)).await.unwrap();
        let (api, _) = store.add_service_version("shop", "api", &apply("api:1", 1)).await.unwrap();
        assert_eq!(store.service_revision().await.unwrap(), 0);
        assert!(store.service_events_after(0, 100).await.unwrap().is_empty());
        assert!(store.instances(&web.id, true).await.unwrap().is_empty());

        let mut a = instance(web.id, "a", 1, 1);
        let mut b = instance(web.id, "b", 0, 1);
        let c = instance(api.id, "c", 0, 1);
        let r1 = store.put_instance(&a, "instance").await.unwrap();
        let r2 = store.put_instance(&b, "instance").await.unwrap();
        let r3 = store.put_instance(&c, "instance").await.unwrap();
        assert!(r1 < r2 && r2 < r3, "{r1} {r2} {r3}");
        assert_eq!(store.service_revision().await.unwrap(), r3);

        // Upsert: same id, new state; still one row.
        a.state = "healthy".into();
        a.started_at = Some(micros(Utc::now()));
        a.ports.insert("admin".into(), 20002);
        a.exit_code = Some(-9);
        a.restarts = 3;
        let r4 = store.put_instance(&a, "instance").await.unwrap();
        assert!(r4 > r3);
        let listed = store.instances(&web.id, false).await.unwrap();
        assert_eq!(listed, [b.clone(), a.clone()], "by slot");

        // Forgotten: hidden from the live set unless asked.
        b.forgotten = true;
        b.state = "failed".into();
        let r5 = store.put_instance(&b, "instance").await.unwrap();
        let mut b2 = instance(web.id, "b2", 0, 1);
        b2.since = b.since + TimeDelta::seconds(1);
        let r6 = store.put_instance(&b2, "instance").await.unwrap();
        assert_eq!(store.instances(&web.id, false).await.unwrap(), [b2.clone(), a.clone()]);
        assert_eq!(
            store.instances(&web.id, true).await.unwrap(),
            [b.clone(), b2.clone(), a.clone()],
            "by slot, then since"
        );
        let live = store.live_instances().await.unwrap();
        let ids: BTreeSet<&str> = live.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, BTreeSet::from(["a", "b2", "c"]));

        // The log: every change with the instance as it was then.
        let all = store.service_events_after(0, 100).await.unwrap();
        assert_eq!(all.iter().map(|e| e.revision).collect::<Vec<_>>(), [r1, r2, r3, r4, r5, r6]);
        assert_eq!(all[0].instance.as_ref().map(|i| i.state.as_str()), Some("staging"));
        assert_eq!(all[3].instance.as_ref(), Some(&a));
        assert_eq!((all[2].project.as_str(), all[2].service.as_str()), ("shop", "api"));
        assert_eq!((all[2].service_id, all[2].kind.as_str()), (api.id, "instance"));

        // Resuming: after any revision, exactly the rest, in pages.
        for (k, event) in all.iter().enumerate() {
            let rest = store.service_events_after(event.revision, 100).await.unwrap();
            assert_eq!(rest, all[k + 1..]);
        }
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store.service_events_after(after, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.revision;
            seen.extend(page);
        }
        assert_eq!(seen, all);
        assert!(store.service_events_after(u64::MAX, 10).await.unwrap().is_empty());

        // Refused: an unknown service, another service's id, an empty id or kind.
        let err = store.put_instance(&instance(ServiceId::new(), "x", 0, 1), "instance").await;
        assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");
        let err = store.put_instance(&instance(api.id, "a", 0, 1), "instance").await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
        let err = store.put_instance(&instance(api.id, "", 0, 1), "instance").await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
        let err = store.put_instance(&instance(api.id, "y", 0, 1), " ").await;
        assert!(matches!(err, Err(StoreError::Invalid(_))), "{err:?}");
        assert_eq!(store.service_revision().await.unwrap(), r6, "refusals append nothing");
        assert_eq!(store.instances(&api.id, true).await.unwrap(), [c]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_puts_get_distinct_increasing_revisions() {
    on_both(|store| async move {
        store.create_project("shop").await.unwrap();
        let (web, _) = store.add_service_version("shop", "web", &apply("web:1", 20)).await.unwrap();
        // A watch tails the log while the writes happen: it must see every one exactly once.
        let watch = {
            let store = store.clone();
            tokio::spawn(async move {
                let (mut after, mut seen) = (0, Vec::new());
                while seen.len() < 40 {
                    let page = store.service_events_after(after, 3).await.unwrap();
                    if let Some(last) = page.last() {
                        after = last.revision;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    seen.extend(page);
                }
                seen
            })
        };
        let mut tasks = Vec::new();
        for slot in 0..40 {
            let store = store.clone();
            let i = instance(web.id, &format!("i{slot}"), slot % 20, 1);
            tasks.push(tokio::spawn(async move { store.put_instance(&i, "instance").await }));
        }
        let mut revisions = BTreeSet::new();
        for task in tasks {
            assert!(revisions.insert(task.await.unwrap().unwrap()));
        }
        let events = store.service_events_after(0, 100).await.unwrap();
        let logged: BTreeSet<u64> = events.iter().map(|e| e.revision).collect();
        assert_eq!(logged, revisions);
        let watched = tokio::time::timeout(std::time::Duration::from_secs(30), watch)
            .await
            .expect("the watch saw every event")
            .unwrap();
        assert_eq!(watched, events, "no gap, no duplicate");
        assert_eq!(store.service_revision().await.unwrap(), *revisions.last().unwrap());

        // On PostgreSQL, a writer holding a revision it has not committed yet makes the next
        // one wait, so no reader sees revision n + 1 before n.
        if let kiln_store::Db::Postgres(p) = store.db() {
            let mut open = p.begin().await.unwrap();
            let held: i64 = sqlx::query_scalar(
                "INSERT INTO service_events (service_id, project, service, kind, at) \
                 VALUES ($1, 'shop', 'web', 'test', now()) RETURNING revision",
            )
            .bind(web.id.to_string())
            .fetch_one(&mut *open)
            .await
            .unwrap();
            let put = {
                let store = store.clone();
                let i = instance(web.id, "late", 0, 1);
                tokio::spawn(async move { store.put_instance(&i, "instance").await })
            };
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            assert!(!put.is_finished(), "a later revision committed before an earlier one");
            open.commit().await.unwrap();
            let next = put.await.unwrap().unwrap();
            assert!(next > u64::try_from(held).unwrap());
            assert_eq!(store.service_revision().await.unwrap(), next);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_cascades_and_is_an_event() {
    on_both(|store| async move {
        store.create_project("shop").await.unwrap();
        let (web, _) = store.add_service_version("shop", "web", &apply("web:1", 1)).await.unwrap();
        store.add_service_version("shop", "web", &on(1, "scale", 2)).await.unwrap();
        let (api, _) = store.add_service_version("shop", "api", &apply("api:1", 1)).await.unwrap();
        let put = store.put_instance(&instance(web.id, "a", 0, 1), "instance").await.unwrap();
        store.put_instance(&instance(api.id, "b", 0, 1), "instance").await.unwrap();

        store.delete_service(&web.id).await.unwrap();
        let err = store.service("shop", "web").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
        assert!(matches!(store.service_versions(&web.id).await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.instances(&web.id, true).await, Err(StoreError::NotFound(_))));
        let live: Vec<String> =
            store.live_instances().await.unwrap().into_iter().map(|i| i.id).collect();
        assert_eq!(live, ["b"]);
        let events = store.service_events_after(put, 10).await.unwrap();
        let last = events.last().expect("a deleted event");
        assert_eq!(
            (last.kind.as_str(), last.service_id, last.instance.as_ref()),
            ("deleted", web.id, None)
        );
        assert_eq!((last.project.as_str(), last.service.as_str()), ("shop", "web"));
        assert_eq!(store.service_revision().await.unwrap(), last.revision);
        assert_eq!(
            store.service_events_after(0, 10).await.unwrap()[0].service_id,
            web.id,
            "a deleted service's earlier events stay"
        );

        // Its name can be used again, from version 1.
        let (again, _) =
            store.add_service_version("shop", "web", &apply("web:1", 1)).await.unwrap();
        assert_ne!(again.id, web.id);
        assert_eq!(again.version, 1);
        let err = store.put_instance(&instance(web.id, "late", 0, 1), "instance").await;
        assert!(matches!(err, Err(StoreError::NotFound(_))), "{err:?}");

        // The server has no project deletion; the schema cascades if a project row goes.
        store.create_project("gone").await.unwrap();
        let (doomed, _) = store.add_service_version("gone", "web", &apply("x", 1)).await.unwrap();
        store.put_instance(&instance(doomed.id, "d", 0, 1), "instance").await.unwrap();
        let delete = "DELETE FROM projects WHERE name = 'gone'";
        match store.db() {
            kiln_store::Db::Sqlite(p) => sqlx::query(delete).execute(p).await.map(|_| ()),
            kiln_store::Db::Postgres(p) => sqlx::query(delete).execute(p).await.map(|_| ()),
        }
        .unwrap();
        assert!(matches!(store.service_by_id(&doomed.id).await, Err(StoreError::NotFound(_))));
        assert!(store.live_instances().await.unwrap().iter().all(|i| i.id != "d"));
        let names: Vec<String> =
            store.services(None).await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["api", "web"]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_persist_across_reopening() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("kiln.db");
    let (service, versions, inst, events) = {
        let store = Store::open(&path).await.unwrap();
        store.create_project("shop").await.unwrap();
        store.add_service_version("shop", "web", &apply("web:1", 1)).await.unwrap();
        let (service, _) =
            store.add_service_version("shop", "web", &on(1, "scale", 3)).await.unwrap();
        let inst = instance(service.id, "a", 0, 1);
        store.put_instance(&inst, "instance").await.unwrap();
        let versions = store.service_versions(&service.id).await.unwrap();
        let events = store.service_events_after(0, 10).await.unwrap();
        store.close().await;
        (service, versions, inst, events)
    };
    for round in 0..2 {
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.service("shop", "web").await.unwrap(), service);
        assert_eq!(store.service_versions(&service.id).await.unwrap(), versions);
        assert_eq!(store.instances(&service.id, false).await.unwrap(), std::slice::from_ref(&inst));
        let mut stored = store.service_events_after(0, 10).await.unwrap();
        assert_eq!(stored.drain(..1).collect::<Vec<_>>(), events);
        // Revisions go on from where they were.
        let next = store.put_instance(&inst, "instance").await.unwrap();
        assert_eq!(next, events[0].revision + 1 + round);
        store.close().await;
    }
}
