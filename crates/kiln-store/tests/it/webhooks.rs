//! Webhook deliveries are claimed once; a run keeps the commit git started it for.

use kiln_store::{NewDelivery, NewRun, PullRequestRef, RunSource};

use crate::{new_run, on_both, pipeline};

#[tokio::test]
async fn a_delivery_id_is_claimed_once_and_keeps_its_outcome() {
    on_both(|store| async move {
        let new = NewDelivery {
            provider: "github".into(),
            id: "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            event: "push".into(),
            repository: "shop/app".into(),
        };
        assert_eq!(store.claim_delivery(&new, &[]).await.unwrap(), None, "first delivery is new");
        let runs = vec!["shop/app#1".to_string(), "ops/deploy#4".to_string()];
        store.finish_delivery("github", &new.id, "started 2 run(s)", &runs).await.unwrap();

        let again = store.claim_delivery(&new, &[]).await.unwrap().expect("a replay is recognised");
        assert_eq!(again.outcome, "started 2 run(s)");
        assert_eq!(again.runs, runs);
        assert_eq!(again.event, "push");

        // The same id from another provider is another delivery.
        let gitea = NewDelivery { provider: "gitea".into(), ..new.clone() };
        assert_eq!(store.claim_delivery(&gitea, &[]).await.unwrap(), None);
        let listed = store.deliveries(10).await.unwrap();
        assert_eq!(listed.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_run_keeps_its_source_commit() {
    on_both(|store| async move {
        let build = pipeline(&store, "shop", "build").await;
        let source = RunSource {
            provider: "gitlab".into(),
            event: "pull_request".into(),
            repository: "shop/app".into(),
            clone_url: "https://gitlab.example.com/shop/app.git".into(),
            git_ref: "refs/heads/feature".into(),
            branch: Some("feature".into()),
            tag: None,
            commit: "a".repeat(40),
            message: "Add the cart\n\nLonger text.".into(),
            author: "Ada <ada@example.com>".into(),
            pull_request: Some(PullRequestRef {
                number: 7,
                target: "main".into(),
                action: "opened".into(),
            }),
        };
        let run = store
            .create_run(&NewRun { source: Some(source.clone()), ..new_run(&build) })
            .await
            .unwrap();
        assert_eq!(run.source.as_ref(), Some(&source));
        assert_eq!(store.run(&run.id).await.unwrap().source, Some(source));
        let plain = store.create_run(&new_run(&build)).await.unwrap();
        assert_eq!(store.run(&plain.id).await.unwrap().source, None);
    })
    .await;
}
