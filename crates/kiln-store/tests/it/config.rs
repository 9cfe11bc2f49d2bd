//! The config center's records: items and values with their audit entries, releases numbered
//! without gaps, heads moved only from the revision a decision saw, approvals, rejections and
//! gray releases promoted once.

use std::collections::BTreeMap;

use kiln_store::{
    ConfigDecided, ConfigDecision, ConfigSnapshot, NewConfigRelease, Store, StoreError,
};

use crate::on_both;

fn release(digest: &str, pending: bool, instances: &[&str]) -> NewConfigRelease {
    NewConfigRelease {
        pending,
        kind: "release".into(),
        rollback_of: None,
        instances: instances.iter().map(|s| s.to_string()).collect(),
        digest: digest.into(),
        files: BTreeMap::from([("app.yaml".to_string(), format!("digest: {digest}\n"))]),
        snapshot: ConfigSnapshot {
            templates: BTreeMap::from([("app.yaml".to_string(), "digest: {{ d }}\n".to_string())]),
            shared_values: "d: 1\n".into(),
            values: String::new(),
        },
        note: Some(format!("note {digest}")),
        by: "alice".into(),
    }
}

async fn setup(store: &Store) {
    store.create_project("shop").await.unwrap();
    store.create_environment("shop", "prod", None, true).await.unwrap();
}

#[tokio::test]
async fn items_and_values_are_audited_only_when_they_change() {
    on_both(|store: Store| async move {
        setup(&store).await;
        assert!(
            store
                .set_config_item("shop", "api", "app.yaml", "a: {{ a }}\n", "alice")
                .await
                .unwrap()
        );
        assert!(
            !store
                .set_config_item("shop", "api", "app.yaml", "a: {{ a }}\n", "alice")
                .await
                .unwrap()
        );
        assert!(
            store.set_config_item("shop", "api", "app.yaml", "a: {{ a }}!\n", "bob").await.unwrap()
        );
        assert!(store.set_config_values("shop", "api", None, "a: 1\n", "alice").await.unwrap());
        assert!(
            store.set_config_values("shop", "api", Some("prod"), "a: 2\n", "alice").await.unwrap()
        );
        assert!(
            !store.set_config_values("shop", "api", Some("prod"), "a: 2\n", "alice").await.unwrap()
        );
        let missing = store
            .set_config_values("shop", "api", Some("qa"), "a: 3\n", "alice")
            .await
            .unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
        let nul = store.set_config_item("shop", "api", "x", "a\0b", "alice").await.unwrap_err();
        assert!(matches!(nul, StoreError::Invalid(_)), "{nul}");

        let app = store.config_app("shop", "api").await.unwrap();
        assert_eq!(app.shared_values, "a: 1\n");
        let items = store.config_items(&app.id).await.unwrap();
        assert_eq!(
            (items[0].file.as_str(), items[0].template.as_str(), items[0].updated_by.as_str()),
            ("app.yaml", "a: {{ a }}!\n", "bob")
        );
        let values = store.config_values(&app.id).await.unwrap();
        assert_eq!((values[0].environment.as_str(), values[0].yaml.as_str()), ("prod", "a: 2\n"));
        store.delete_config_item("shop", "api", "app.yaml", "carol").await.unwrap();
        assert!(store.config_items(&app.id).await.unwrap().is_empty());

        let audit = store.config_audit("shop", "api").await.unwrap();
        let seen: Vec<(&str, Option<&str>, &str)> = audit
            .iter()
            .map(|a| (a.action.as_str(), a.environment.as_deref(), a.by.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("template", None, "alice"),
                ("template", None, "bob"),
                ("values", None, "alice"),
                ("values", Some("prod"), "alice"),
                ("template removed", None, "carol"),
            ]
        );
        assert!(audit[0].detail.contains("added `app.yaml`"), "{:?}", audit[0]);
        assert!(audit.windows(2).all(|w| w[0].id < w[1].id));
    })
    .await;
}

#[tokio::test]
async fn releases_move_the_head_only_from_the_revision_they_saw() {
    on_both(|store: Store| async move {
        setup(&store).await;
        store.set_config_item("shop", "api", "app.yaml", "x\n", "alice").await.unwrap();
        let head = store.config_head("shop", "api", "prod").await.unwrap();
        assert_eq!((head.target.revision, head.current.as_ref()), (0, None));
        assert_eq!(store.config_revision("shop", "api", "prod").await.unwrap(), Some(0));
        assert_eq!(store.config_revision("shop", "api", "qa").await.unwrap(), None);
        assert_eq!(store.config_revision("shop", "web", "prod").await.unwrap(), None);

        let r1 = store
            .add_config_release("shop", "api", "prod", 0, &release("d1", false, &[]))
            .await
            .unwrap();
        assert_eq!((r1.number, r1.state.as_str()), (1, "released"));
        let stale = store
            .add_config_release("shop", "api", "prod", 0, &release("d2", false, &[]))
            .await
            .unwrap_err();
        assert!(matches!(&stale, StoreError::Moved(m) if m.contains("try again")), "{stale}");

        let r2 = store
            .add_config_release("shop", "api", "prod", 1, &release("d2", true, &[]))
            .await
            .unwrap();
        assert_eq!((r2.number, r2.state.as_str()), (2, "pending"));
        let head = store.config_head("shop", "api", "prod").await.unwrap();
        assert_eq!(head.target.revision, 2);
        assert_eq!(head.current.as_ref().map(|r| r.number), Some(1));
        assert_eq!(head.pending.as_ref().map(|r| r.number), Some(2));

        let approved = store
            .decide_config_release(
                "shop",
                "api",
                "prod",
                2,
                &ConfigDecided { number: 2, decision: ConfigDecision::Approve, by: "bob" },
            )
            .await
            .unwrap();
        assert_eq!(
            (approved.state.as_str(), approved.decided_by.as_deref()),
            ("released", Some("bob"))
        );
        assert!(approved.decided_at.is_some());
        let again = store
            .decide_config_release(
                "shop",
                "api",
                "prod",
                3,
                &ConfigDecided { number: 2, decision: ConfigDecision::Approve, by: "bob" },
            )
            .await
            .unwrap_err();
        assert!(matches!(again, StoreError::Conflict(_)), "{again}");
        assert_eq!(
            store.config_head("shop", "api", "prod").await.unwrap().target.revision,
            3,
            "a refused change moves nothing"
        );

        let r3 = store
            .add_config_release("shop", "api", "prod", 3, &release("d3", true, &[]))
            .await
            .unwrap();
        let rejected = store
            .decide_config_release(
                "shop",
                "api",
                "prod",
                4,
                &ConfigDecided { number: r3.number, decision: ConfigDecision::Reject, by: "bob" },
            )
            .await
            .unwrap();
        assert_eq!(rejected.state, "rejected");

        let g = store
            .add_config_release("shop", "api", "prod", 5, &release("d4", false, &["i1"]))
            .await
            .unwrap();
        let head = store.config_head("shop", "api", "prod").await.unwrap();
        assert_eq!(head.current.as_ref().map(|r| r.number), Some(2));
        assert_eq!(
            head.gray.as_ref().map(|r| (r.number, r.instances.clone())),
            Some((g.number, vec!["i1".to_string()]))
        );
        assert_eq!(head.pending, None);
        store
            .decide_config_release(
                "shop",
                "api",
                "prod",
                6,
                &ConfigDecided { number: g.number, decision: ConfigDecision::Promote, by: "carol" },
            )
            .await
            .unwrap();
        let head = store.config_head("shop", "api", "prod").await.unwrap();
        assert_eq!(
            head.current.as_ref().map(|r| (r.number, r.promoted_by.clone())),
            Some((4, Some("carol".to_string())))
        );
        assert_eq!(head.gray, None);

        assert_eq!(store.config_revision("shop", "api", "prod").await.unwrap(), Some(7));
        let history = store.config_releases("shop", "api", "prod").await.unwrap();
        let numbers: Vec<(u32, &str)> =
            history.iter().map(|r| (r.number, r.state.as_str())).collect();
        assert_eq!(numbers, [(1, "released"), (2, "released"), (3, "rejected"), (4, "released")]);
        assert_eq!(history[0].files["app.yaml"], "digest: d1\n");
        assert_eq!(history[0].snapshot.shared_values, "d: 1\n");
        let actions: Vec<String> = store
            .config_audit("shop", "api")
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.environment.is_some())
            .map(|a| a.action)
            .collect();
        assert_eq!(
            actions,
            [
                "release",
                "release requested",
                "approve",
                "release requested",
                "reject",
                "gray release",
                "release to all"
            ]
        );
    })
    .await;
}
