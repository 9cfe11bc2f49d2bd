//! Cache records: per project, a key names a blob; lookups mark entries used.

use kiln_store::{ProjectId, StoreError};

use crate::on_both;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caches_put_look_up_and_list() {
    on_both(|store| async move {
        let api = store.create_project("api").await.unwrap();
        let web = store.create_project("web").await.unwrap();
        assert!(store.caches(&api.id).await.unwrap().is_empty());
        assert_eq!(store.cache(&api.id, "deps-a").await.unwrap(), None);

        let put = store.put_cache(&api.id, "deps-a", "c/1.tar", 100).await.unwrap();
        assert_eq!(
            (put.project_id, put.key.as_str(), put.blob.as_str(), put.size),
            (api.id, "deps-a", "c/1.tar", 100)
        );
        assert_eq!(put.created_at, put.last_used_at);
        store.put_cache(&api.id, "deps-b ${{ hash }} é", "c/2.tar", 5).await.unwrap();
        store.put_cache(&web.id, "deps-a", "c/3.tar", 7).await.unwrap();

        // A lookup returns the entry and marks it used.
        let hit = store.cache(&api.id, "deps-a").await.unwrap().expect("hit");
        assert_eq!((hit.blob.as_str(), hit.created_at), ("c/1.tar", put.created_at));
        assert!(hit.last_used_at >= put.last_used_at);
        let listed = store.caches(&api.id).await.unwrap();
        assert_eq!(listed[0], hit, "the lookup's time is stored");

        // Putting the key again replaces what it names.
        let again = store.put_cache(&api.id, "deps-a", "c/4.tar", 200).await.unwrap();
        assert_eq!((again.blob.as_str(), again.size), ("c/4.tar", 200));
        assert!(again.created_at >= put.created_at);
        let listed = store.caches(&api.id).await.unwrap();
        assert_eq!(
            listed.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
            ["deps-a", "deps-b ${{ hash }} é"]
        );
        assert_eq!(listed[0], again);
        let other = store.cache(&web.id, "deps-a").await.unwrap().expect("per project");
        assert_eq!(other.blob, "c/3.tar");
        assert_eq!(store.cache(&api.id, "deps-c").await.unwrap(), None);
        assert_eq!(store.cache(&ProjectId::new(), "deps-a").await.unwrap(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_errors() {
    on_both(|store| async move {
        let api = store.create_project("api").await.unwrap();
        let ghost = ProjectId::new();
        let err = store.put_cache(&ghost, "k", "c/1.tar", 1).await.unwrap_err();
        assert_eq!(err.to_string(), format!("project {ghost} not found"));
        let err = store.caches(&ghost).await.unwrap_err();
        assert_eq!(err.to_string(), format!("project {ghost} not found"));
        for key in ["", "a\nb", "tab\there", &"k".repeat(513)] {
            let err = store.put_cache(&api.id, key, "c/1.tar", 1).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{key:?}: {err}");
        }
        store.put_cache(&api.id, &"k".repeat(512), "c/1.tar", 1).await.unwrap();
        for blob in ["", "/abs", "../x", "a/./b"] {
            let err = store.put_cache(&api.id, "k", blob, 1).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{blob:?}: {err}");
        }
        let err = store.put_cache(&api.id, "k", "c/1.tar", u64::MAX).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(store.caches(&api.id).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caches_are_listed_by_use_and_removed_only_if_unchanged() {
    on_both(|store| async move {
        let api = store.create_project("api").await.unwrap();
        let web = store.create_project("web").await.unwrap();
        assert_eq!(store.cache_usage().await.unwrap(), (0, 0));
        store.put_cache(&api.id, "a", "c/a.tar", 100).await.unwrap();
        store.put_cache(&web.id, "b", "c/b.tar", 20).await.unwrap();
        store.put_cache(&api.id, "c", "c/c.tar", 3).await.unwrap();
        store.cache(&api.id, "a").await.unwrap().expect("hit");
        assert_eq!(store.cache_usage().await.unwrap(), (3, 123));

        let all = store.all_caches().await.unwrap();
        let keys: Vec<_> = all.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["b", "c", "a"], "least recently used first");

        // `c` is stored again meanwhile: its old record is not removed.
        store.put_cache(&api.id, "c", "c/c2.tar", 4).await.unwrap();
        let removed = store.remove_caches(&all[..2]).await.unwrap();
        assert_eq!(removed, all[..1]);
        let left: Vec<_> =
            store.all_caches().await.unwrap().into_iter().map(|c| (c.key, c.blob)).collect();
        assert_eq!(
            left,
            [("a".to_string(), "c/a.tar".to_string()), ("c".to_string(), "c/c2.tar".to_string())]
        );
        assert_eq!(store.cache_usage().await.unwrap(), (2, 104));
        assert!(store.remove_caches(&[]).await.unwrap().is_empty());
        assert!(store.named_blobs().await.unwrap().contains(&"c/c2.tar".to_string()));
    })
    .await;
}
