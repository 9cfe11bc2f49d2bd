//! Environments: their order (no cycle, no deletion of one another comes after), the
//! protected flag, variables plain or sealed (never both), names checked.

use kiln_store::{EnvValue, SealedSecret, Store, StoreError};

use crate::on_both;

fn names(list: &[kiln_store::EnvironmentRecord]) -> Vec<(&str, Option<&str>)> {
    list.iter().map(|e| (e.name.as_str(), e.after.as_deref())).collect()
}

#[tokio::test]
async fn environments_are_listed_in_their_order_and_cannot_loop() {
    on_both(|store: Store| async move {
        store.create_project("shop").await.unwrap();
        store.create_environment("shop", "prod", None, true).await.unwrap();
        store.create_environment("shop", "dev", None, false).await.unwrap();
        let staging = store.create_environment("shop", "staging", Some("dev"), false).await.unwrap();
        assert_eq!(staging.after.as_deref(), Some("dev"));
        let prod = store.update_environment("shop", "prod", Some(Some("staging")), None).await.unwrap();
        assert!(prod.protected, "an update of the order keeps the flag");
        let list = store.environments("shop").await.unwrap();
        assert_eq!(names(&list), [("dev", None), ("staging", Some("dev")), ("prod", Some("staging"))]);

        let cycle = store.update_environment("shop", "dev", Some(Some("prod")), None).await.unwrap_err();
        assert!(matches!(&cycle, StoreError::Invalid(m) if m.contains("`prod` already comes after `dev`")), "{cycle}");
        let own = store.update_environment("shop", "dev", Some(Some("dev")), None).await.unwrap_err();
        assert!(matches!(own, StoreError::Invalid(_)), "{own}");
        let unknown = store.create_environment("shop", "qa", Some("nope"), false).await.unwrap_err();
        assert!(matches!(&unknown, StoreError::Invalid(m) if m.contains("no environment `nope`")), "{unknown}");
        let taken = store.create_environment("shop", "dev", None, false).await.unwrap_err();
        assert!(matches!(taken, StoreError::Conflict(_)), "{taken}");
        let bad = store.create_environment("shop", "no/slash", None, false).await.unwrap_err();
        assert!(matches!(bad, StoreError::Invalid(_)), "{bad}");
        let missing = store.create_environment("nope", "dev", None, false).await.unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");

        let refused = store.delete_environment("shop", "staging").await.unwrap_err();
        assert!(matches!(&refused, StoreError::Conflict(m) if m.contains("`prod` comes after `staging`")), "{refused}");
        store.update_environment("shop", "prod", Some(None), Some(false)).await.unwrap();
        store.delete_environment("shop", "staging").await.unwrap();
        let list = store.environments("shop").await.unwrap();
        assert_eq!(names(&list), [("dev", None), ("prod", None)]);
        assert!(!list[1].protected);
        assert!(matches!(store.environment("shop", "staging").await, Err(StoreError::NotFound(_))));
    })
    .await;
}

#[tokio::test]
async fn a_variable_is_plain_or_sealed_and_replaced_by_name() {
    on_both(|store: Store| async move {
        store.create_project("shop").await.unwrap();
        store.create_environment("shop", "prod", None, false).await.unwrap();
        let sealed =
            SealedSecret { key_id: "k1".into(), nonce: vec![1; 12], ciphertext: vec![9; 20] };
        store
            .set_env_variable("shop", "prod", "LOG_LEVEL", &EnvValue::Plain("info".into()))
            .await
            .unwrap();
        store
            .set_env_variable("shop", "prod", "DB_PASSWORD", &EnvValue::Sealed(sealed.clone()))
            .await
            .unwrap();
        let vars = store.env_variables("shop", "prod").await.unwrap();
        let got: Vec<(&str, &EnvValue)> =
            vars.iter().map(|v| (v.name.as_str(), &v.value)).collect();
        assert_eq!(
            got,
            [
                ("DB_PASSWORD", &EnvValue::Sealed(sealed.clone())),
                ("LOG_LEVEL", &EnvValue::Plain("info".into()))
            ]
        );
        // A plain value replaces a secret of the same name and the other way round.
        store
            .set_env_variable("shop", "prod", "LOG_LEVEL", &EnvValue::Sealed(sealed.clone()))
            .await
            .unwrap();
        store
            .set_env_variable("shop", "prod", "DB_PASSWORD", &EnvValue::Plain("open".into()))
            .await
            .unwrap();
        let vars = store.env_variables("shop", "prod").await.unwrap();
        assert_eq!(vars[0].value, EnvValue::Plain("open".into()));
        assert_eq!(vars[1].value, EnvValue::Sealed(sealed.clone()));

        let bad = store
            .set_env_variable("shop", "prod", "lower", &EnvValue::Plain("x".into()))
            .await
            .unwrap_err();
        assert!(matches!(bad, StoreError::Invalid(_)), "{bad}");
        let empty = SealedSecret { key_id: "k1".into(), nonce: vec![], ciphertext: vec![1] };
        let bad = store
            .set_env_variable("shop", "prod", "X", &EnvValue::Sealed(empty))
            .await
            .unwrap_err();
        assert!(matches!(bad, StoreError::Invalid(_)), "{bad}");
        store.delete_env_variable("shop", "prod", "LOG_LEVEL").await.unwrap();
        let gone = store.delete_env_variable("shop", "prod", "LOG_LEVEL").await.unwrap_err();
        assert!(matches!(gone, StoreError::NotFound(_)), "{gone}");
        let nowhere = store.env_variables("shop", "qa").await.unwrap_err();
        assert!(matches!(nowhere, StoreError::NotFound(_)), "{nowhere}");
    })
    .await;
}
