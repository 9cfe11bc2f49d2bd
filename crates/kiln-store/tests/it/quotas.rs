//! Project quotas and agent tokens (migration 0006).

use kiln_store::{NewToken, QuotaLimits, Role, StoreError};

use crate::on_both;

#[tokio::test]
async fn a_quota_is_set_replaced_listed_and_removed() {
    on_both(|store| async move {
        store.create_project("shop").await.unwrap();
        store.create_project("ads").await.unwrap();
        let limits = QuotaLimits { cpu_millis: Some(8000), memory_bytes: None, jobs: Some(4) };
        let q = store.set_quota("shop", &limits).await.unwrap();
        assert_eq!((q.project.as_str(), q.limits), ("shop", limits));

        let tighter = QuotaLimits { jobs: Some(2), ..Default::default() };
        store.set_quota("shop", &tighter).await.unwrap();
        store.set_quota("ads", &limits).await.unwrap();
        let all = store.quotas().await.unwrap();
        let got: Vec<_> = all.iter().map(|q| (q.project.as_str(), q.limits)).collect();
        assert_eq!(got, [("ads", limits), ("shop", tighter)]);

        store.delete_quota("shop").await.unwrap();
        assert_eq!(store.quota("shop").await.unwrap(), None);
        assert!(matches!(store.delete_quota("shop").await, Err(StoreError::NotFound(_))));
        assert!(matches!(store.set_quota("ghost", &limits).await, Err(StoreError::NotFound(_))));
        assert_eq!(store.quotas().await.unwrap().len(), 1, "ads keeps its quota");
    })
    .await;
}

#[tokio::test]
async fn agent_tokens_are_stored_with_their_role() {
    on_both(|store| async move {
        let new = NewToken { name: "pool".into(), role: Role::Agent, project: None };
        let (token, secret) = store.create_token(&new).await.unwrap();
        assert_eq!(token.role, Role::Agent);
        let verified = store.verify_token(secret.expose()).await.unwrap().expect("verifies");
        assert_eq!(verified.role, Role::Agent);
        assert!(Role::Agent < Role::Viewer, "an agent token reads nothing a viewer reads");
    })
    .await;
}
