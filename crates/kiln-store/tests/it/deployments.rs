//! Deployments: numbered per service and environment, one pending or running at a time,
//! approvals from pending only, a success superseding the environment's previous one, an
//! automatic rollback started in the same transaction that ends the deployment it undoes, and
//! deployed services remembering what they run.

use kiln_store::{
    DeployedAs, DeploymentEnd, DeploymentRun, NewDeployment, NewServiceVersion, Store, StoreError,
};
use serde_json::json;

use crate::on_both;

fn new(env: &str, image: &str, pending: bool) -> NewDeployment {
    NewDeployment {
        service: "api".into(),
        environment: env.into(),
        kind: "deploy".into(),
        pending,
        image: format!("shop/api:{image}"),
        digest: format!("sha256:{image:0>64}"),
        image_ref: format!("127.0.0.1:7171/shop/api@sha256:{image:0>64}"),
        config: Some(("api".into(), 3)),
        service_name: format!("api-{env}"),
        service_version: None,
        spec: json!({ "name": format!("api-{env}"), "image": image }),
        yaml: "kind: service\n".into(),
        file: "api.yml".into(),
        run: None,
        asked_by: "alice".into(),
        note: Some(format!("image {image}")),
        rollback_of: None,
        promoted_from: None,
    }
}

fn ended(state: &'static str) -> DeploymentEnd {
    DeploymentEnd { state, reason: None, then: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployments_are_numbered_one_at_a_time_and_a_success_supersedes_the_last() {
    on_both(|store: Store| async move {
        store.create_project("shop").await.unwrap();
        let first = store.add_deployment("shop", &new("dev", "1", false)).await.unwrap();
        assert_eq!((first.number, first.state.as_str()), (1, "running"));
        assert_eq!(first.config, Some(("api".to_string(), 3)));
        assert_eq!(first.service_version, None);

        // While it runs, no other one of api to dev starts; another environment is apart.
        let Err(StoreError::Conflict(m)) =
            store.add_deployment("shop", &new("dev", "2", false)).await
        else {
            panic!("a second running deployment was accepted");
        };
        assert!(m.contains("deployment 1 of `shop/api` to `dev` is still running"), "{m}");
        let other = store.add_deployment("shop", &new("prod", "1", true)).await.unwrap();
        assert_eq!((other.number, other.state.as_str()), (1, "pending"));

        store.set_deployment_version(&first, 4).await.unwrap();
        let (done, then) = store.finish_deployment(&first, &ended("succeeded")).await.unwrap();
        assert_eq!((done.state.as_str(), done.service_version), ("succeeded", Some(4)));
        assert!(done.finished_at.is_some() && then.is_none());
        // Ended once: a second end (another server) finds it moved.
        assert!(matches!(
            store.finish_deployment(&first, &ended("failed")).await,
            Err(StoreError::Moved(_))
        ));
        assert!(store.set_deployment_version(&first, 5).await.is_err());

        let second = store.add_deployment("shop", &new("dev", "2", false)).await.unwrap();
        assert_eq!(second.number, 2);
        store.finish_deployment(&second, &ended("succeeded")).await.unwrap();
        let states = |list: Vec<kiln_store::DeploymentRecord>| {
            list.into_iter().map(|d| (d.number, d.state)).collect::<Vec<_>>()
        };
        let history = store.deployments("shop", Some("api"), Some("dev")).await.unwrap();
        assert_eq!(states(history), [(2, "succeeded".into()), (1, "superseded".into())]);
        assert_eq!(store.deployments("shop", None, None).await.unwrap().len(), 3);
        assert!(store.deployments("shop", Some("web"), None).await.unwrap().is_empty());
        assert!(matches!(
            store.deployments("nope", None, None).await,
            Err(StoreError::NotFound(_))
        ));

        // A pending one is approved or rejected once, never from another state.
        let approved = store.decide_deployment(&other, true, "bob").await.unwrap();
        assert_eq!(approved.state, "running");
        assert_eq!(approved.approved_by.as_deref(), Some("bob"));
        let Err(StoreError::Conflict(m)) = store.decide_deployment(&other, false, "carol").await
        else {
            panic!("a running deployment was rejected");
        };
        assert!(m.contains("is running, not waiting for approval"), "{m}");
        assert_eq!(store.deployments_in("running").await.unwrap().len(), 1);

        // An automatic rollback ends the deployment and starts the one that undoes it, together.
        let bad = store.add_deployment("shop", &new("dev", "3", false)).await.unwrap();
        let undo = NewDeployment {
            kind: "auto-rollback".into(),
            asked_by: "kiln".into(),
            rollback_of: Some(2),
            service_version: Some(7),
            run: Some(DeploymentRun { id: "r".into(), name: "shop/ci#1".into(), job: "d".into() }),
            ..new("dev", "2", false)
        };
        let end = DeploymentEnd {
            state: "rolled_back",
            reason: Some("not healthy in time".into()),
            then: Some(undo),
        };
        let (bad, undo) = store.finish_deployment(&bad, &end).await.unwrap();
        assert_eq!(
            (bad.state.as_str(), bad.reason.as_deref()),
            ("rolled_back", Some("not healthy in time"))
        );
        let undo = undo.unwrap();
        assert_eq!((undo.number, undo.state.as_str(), undo.rollback_of), (4, "running", Some(2)));
        assert_eq!(undo.run.as_ref().map(|r| r.name.as_str()), Some("shop/ci#1"));
        store.finish_deployment(&undo, &ended("succeeded")).await.unwrap();
        let history = store.deployments("shop", Some("api"), Some("dev")).await.unwrap();
        assert_eq!(
            states(history),
            [
                (4, "succeeded".into()),
                (3, "rolled_back".into()),
                (2, "superseded".into()),
                (1, "superseded".into())
            ]
        );

        let pending = store.add_deployment("shop", &new("qa", "1", true)).await.unwrap();
        let rejected = store.decide_deployment(&pending, false, "bob").await.unwrap();
        assert_eq!(
            (rejected.state.as_str(), rejected.reason.as_deref()),
            ("rejected", Some("rejected by bob"))
        );
        assert!(rejected.finished_at.is_some());
        assert!(matches!(
            store.deployment("shop", "api", "qa", 9).await,
            Err(StoreError::NotFound(m)) if m.contains("deployment 9 of `api` to `qa`")
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployed_service_remembers_what_it_runs() {
    on_both(|store: Store| async move {
        store.create_project("shop").await.unwrap();
        let deployed = DeployedAs { service: "api".into(), environment: "dev".into() };
        let v = NewServiceVersion {
            kind: "apply".into(),
            replicas: 1,
            template: None,
            spec: json!({ "image": "x" }),
            yaml: String::new(),
            file: "api.yml".into(),
            note: None,
            by: "alice".into(),
            owner: None,
            deployed: Some(deployed.clone()),
        };
        let (s, _) = store.add_service_version("shop", "api-dev", &v).await.unwrap();
        assert_eq!(s.deployed.as_ref(), Some(&deployed));
        // Later versions keep it; a hand-applied service has none.
        let (s, _) = store
            .add_service_version(
                "shop",
                "api-dev",
                &NewServiceVersion { deployed: None, ..v.clone() },
            )
            .await
            .unwrap();
        assert_eq!(s.deployed, Some(deployed));
        let (s, _) = store
            .add_service_version("shop", "web", &NewServiceVersion { deployed: None, ..v })
            .await
            .unwrap();
        assert_eq!(s.deployed, None);
    })
    .await;
}
