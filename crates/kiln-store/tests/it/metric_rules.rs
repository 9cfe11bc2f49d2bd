//! Metric scraping rules (migration 0013): stored, replaced, unchanged when applied again,
//! listed and removed.

use kiln_store::{RuleChange, StoreError};

use crate::on_both;

#[tokio::test]
async fn a_rule_is_stored_replaced_listed_and_removed() {
    on_both(|store| async move {
        store.create_project("build").await.unwrap();
        store.create_project("web").await.unwrap();
        let spec = serde_json::json!({ "name": "distcc", "selector": "app=distcc" });
        let yaml = "kind: metric\nname: distcc\n";
        let put = |spec: serde_json::Value, yaml: &'static str, project: &'static str| {
            let store = store.clone();
            async move { store.put_metric_rule(project, "distcc", &spec, yaml, "m.yml", "ann").await }
        };
        let (r, change) = put(spec.clone(), yaml, "build").await.unwrap();
        assert_eq!((r.project.as_str(), r.name.as_str(), change), ("build", "distcc", RuleChange::Created));
        assert_eq!((r.spec.clone(), r.by.as_str()), (spec.clone(), "ann"));
        let (_, change) = put(spec.clone(), yaml, "build").await.unwrap();
        assert_eq!(change, RuleChange::Unchanged);
        let other = serde_json::json!({ "name": "distcc", "selector": "app=distccd" });
        let (r2, change) = put(other.clone(), "kind: metric\n", "build").await.unwrap();
        assert_eq!((change, r2.spec.clone(), r2.created_at), (RuleChange::Updated, other, r.created_at));
        put(spec.clone(), yaml, "web").await.unwrap();

        let all = store.metric_rules(None).await.unwrap();
        let names: Vec<(&str, &str)> =
            all.iter().map(|r| (r.project.as_str(), r.name.as_str())).collect();
        assert_eq!(names, [("build", "distcc"), ("web", "distcc")]);
        assert_eq!(store.metric_rules(Some("web")).await.unwrap().len(), 1);

        store.delete_metric_rule("build", "distcc").await.unwrap();
        assert!(matches!(store.metric_rule("build", "distcc").await, Err(StoreError::NotFound(_))));
        assert!(matches!(
            store.delete_metric_rule("build", "distcc").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(put(spec.clone(), yaml, "ghost").await, Err(StoreError::NotFound(_))));
    })
    .await;
}
