//! The elastic pool's records (migration 0027): node groups, the nodes asked for, events.

use kiln_store::StoreError;
use serde_json::json;

use crate::on_both;

#[tokio::test]
async fn node_groups_are_stored_replaced_and_deleted() {
    on_both(|store| async move {
        let spec = json!({ "name": "big", "min": 0, "max": 4 });
        assert!(store.put_node_group("big", &spec).await.unwrap(), "created");
        assert!(!store.put_node_group("big", &spec).await.unwrap(), "the same: unchanged");
        let wider = json!({ "name": "big", "min": 0, "max": 8 });
        assert!(store.put_node_group("big", &wider).await.unwrap());
        store.put_node_group("arm", &json!({ "name": "arm" })).await.unwrap();
        let all = store.node_groups().await.unwrap();
        let names: Vec<_> = all.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["arm", "big"]);
        assert_eq!(all[1].spec, wider);
        store.delete_node_group("arm").await.unwrap();
        assert!(matches!(store.delete_node_group("arm").await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.put_node_group(" ", &spec).await, Err(StoreError::Invalid(_))));
    })
    .await;
}

#[tokio::test]
async fn pool_nodes_keep_their_group_and_request_time_through_state_changes() {
    on_both(|store| async move {
        store.set_pool_node("big-1", "big", "coming").await.unwrap();
        store.set_pool_node("big-2", "big", "coming").await.unwrap();
        let asked = store.pool_nodes().await.unwrap()[0].requested_at;
        store.set_pool_node("big-1", "other", "ready").await.unwrap();
        store.set_pool_node("big-1", "big", "draining").await.unwrap();
        let nodes = store.pool_nodes().await.unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!((nodes[0].group.as_str(), nodes[0].state.as_str()), ("big", "draining"));
        assert_eq!(nodes[0].requested_at, asked);
        assert!(matches!(
            store.set_pool_node("big-1", "big", "gone").await,
            Err(StoreError::Invalid(_))
        ));
        store.delete_pool_node("big-1").await.unwrap();
        store.delete_pool_node("big-1").await.unwrap();
        assert_eq!(store.pool_nodes().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn pool_events_are_listed_oldest_first_by_group_and_after_an_id() {
    on_both(|store| async move {
        let nodes = vec!["big-1".to_string(), "big-2".to_string()];
        let first =
            store.add_pool_event("big", "scale-out", &nodes, "2 tasks fit no node").await.unwrap();
        store.add_pool_event("arm", "provider-failed", &[], "exit status 3").await.unwrap();
        let third =
            store.add_pool_event("big", "scale-in", &nodes[..1], "idle for 5s").await.unwrap();
        assert!(first.id < third.id);
        let all = store.pool_events(None, None, 100).await.unwrap();
        let kinds: Vec<_> = all.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["scale-out", "provider-failed", "scale-in"]);
        assert_eq!(all[0].nodes, nodes);
        let big = store.pool_events(Some("big"), None, 100).await.unwrap();
        assert_eq!(big.len(), 2);
        let after = store.pool_events(None, Some(first.id), 100).await.unwrap();
        assert_eq!(after.len(), 2);
        let last = store.pool_events(None, None, 1).await.unwrap();
        assert_eq!(last[0].id, third.id, "the latest, when limited");
    })
    .await;
}
