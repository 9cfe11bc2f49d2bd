//! Nodes: registration keeps what operators set; attribute changes are all-or-nothing.

use std::collections::BTreeMap;

use kiln_store::{NodeChange, StoreError};
use serde_json::json;

use crate::on_both;

#[tokio::test]
async fn registering_again_replaces_facts_and_keeps_operator_settings() {
    on_both(|store| async move {
        let first =
            store.register_node("sz-1", &json!({"ip": "10.0.0.1", "capacity": 4})).await.unwrap();
        assert_eq!(first.facts["ip"], "10.0.0.1");
        assert!(!first.disabled && first.attributes.is_empty());

        let change = NodeChange {
            set: BTreeMap::from([
                ("city".to_string(), json!("shenzhen")),
                ("cores".to_string(), json!(8)),
                ("zones".to_string(), json!(["gz", "sz"])),
            ]),
            unset: vec![],
            disabled: Some(true),
        };
        let changed = store.update_node("sz-1", &change).await.unwrap();
        assert!(changed.disabled);
        assert_eq!(changed.attributes["cores"], json!(8));
        assert_eq!(changed.attributes["zones"], json!(["gz", "sz"]));

        let again =
            store.register_node("sz-1", &json!({"ip": "10.0.0.9", "capacity": 8})).await.unwrap();
        assert_eq!(again.facts["ip"], "10.0.0.9");
        assert!(again.disabled, "an operator's disable outlives a re-registration");
        assert_eq!(again.attributes["city"], "shenzhen");
        assert_eq!(again.registered_at, first.registered_at);
        assert!(again.last_seen >= first.last_seen);

        let unset =
            NodeChange { unset: vec!["city".into()], disabled: Some(false), ..Default::default() };
        let after = store.update_node("sz-1", &unset).await.unwrap();
        assert!(!after.disabled);
        assert_eq!(after.attributes.keys().collect::<Vec<_>>(), ["cores", "zones"]);

        store.register_node("bj-1", &json!({})).await.unwrap();
        let all = store.nodes().await.unwrap();
        assert_eq!(all.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["bj-1", "sz-1"]);
        assert_eq!(all[1].attributes.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn an_unknown_node_is_not_found_and_nothing_is_written() {
    on_both(|store| async move {
        let change = NodeChange {
            set: BTreeMap::from([("city".to_string(), json!("x"))]),
            ..Default::default()
        };
        assert!(matches!(store.update_node("ghost", &change).await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.node("ghost").await, Err(StoreError::NotFound(_))));
        assert!(store.nodes().await.unwrap().is_empty());
        store.register_node("n", &json!({})).await.unwrap();
        store.update_node("n", &change).await.unwrap();
        store.delete_node("n").await.unwrap();
        assert!(store.nodes().await.unwrap().is_empty());
        assert!(matches!(store.delete_node("n").await, Err(StoreError::NotFound(_))));
    })
    .await;
}
