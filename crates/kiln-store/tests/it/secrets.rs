//! Sealed project secrets: set, replace, list without values, load sealed, delete.

use kiln_store::{SealedSecret, StoreError};

use crate::on_both;

fn sealed(key: &str, fill: u8) -> SealedSecret {
    SealedSecret { key_id: key.to_string(), nonce: vec![fill; 12], ciphertext: vec![fill; 40] }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_are_stored_sealed_and_listed_without_values() {
    on_both(|store| async move {
        store.create_project("api").await.unwrap();
        store.create_project("web").await.unwrap();
        assert!(store.secrets("api").await.unwrap().is_empty());
        assert!(store.sealed_secrets("api").await.unwrap().is_empty());

        let token = store.set_secret("api", "DEPLOY_TOKEN", &sealed("k1", 1)).await.unwrap();
        assert_eq!(token.name, "DEPLOY_TOKEN");
        assert_eq!(token.created_at, token.updated_at);
        store.set_secret("api", "AWS_KEY", &sealed("k1", 2)).await.unwrap();
        store.set_secret("web", "DEPLOY_TOKEN", &sealed("k1", 3)).await.unwrap();

        // Replacing keeps created_at and moves updated_at.
        let replaced = store.set_secret("api", "DEPLOY_TOKEN", &sealed("k2", 4)).await.unwrap();
        assert_eq!(replaced.created_at, token.created_at);
        assert!(replaced.updated_at >= token.updated_at);

        let listed = store.secrets("api").await.unwrap();
        assert_eq!(
            listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["AWS_KEY", "DEPLOY_TOKEN"]
        );
        assert_eq!(listed[1], replaced);

        let loaded = store.sealed_secrets("api").await.unwrap();
        assert_eq!(
            loaded,
            [
                ("AWS_KEY".to_string(), sealed("k1", 2)),
                ("DEPLOY_TOKEN".to_string(), sealed("k2", 4)),
            ]
        );
        let web = store.sealed_secrets("web").await.unwrap();
        assert_eq!(web, [("DEPLOY_TOKEN".to_string(), sealed("k1", 3))], "per project");

        store.delete_secret("api", "AWS_KEY").await.unwrap();
        let names: Vec<_> =
            store.secrets("api").await.unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["DEPLOY_TOKEN"]);
        let err = store.delete_secret("api", "AWS_KEY").await.unwrap_err();
        assert_eq!(err.to_string(), "secret `AWS_KEY` of project `api` not found");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_errors() {
    on_both(|store| async move {
        store.create_project("api").await.unwrap();
        for bad in ["", "lower", "1ST", "A-B", "A B", "É", &"A".repeat(129)] {
            let err = store.set_secret("api", bad, &sealed("k1", 1)).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{bad}: {err}");
            assert!(err.to_string().contains("upper-case letters"), "{err}");
        }
        let err = store.set_secret("api", "a-b", &sealed("k1", 1)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret name `a-b` is not valid: use 1 to 128 upper-case letters `A-Z`, digits or \
             `_`, not starting with a digit (like `DEPLOY_TOKEN`)"
        );
        store.set_secret("api", &"A".repeat(128), &sealed("k1", 1)).await.unwrap();
        for empty in [
            SealedSecret { key_id: String::new(), ..sealed("k1", 1) },
            SealedSecret { nonce: Vec::new(), ..sealed("k1", 1) },
            SealedSecret { ciphertext: Vec::new(), ..sealed("k1", 1) },
        ] {
            let err = store.set_secret("api", "X", &empty).await.unwrap_err();
            assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        }

        let err = store.set_secret("nope", "X", &sealed("k1", 1)).await.unwrap_err();
        assert_eq!(err.to_string(), "project `nope` not found");
        let err = store.secrets("nope").await.unwrap_err();
        assert_eq!(err.to_string(), "project `nope` not found");
        let err = store.sealed_secrets("nope").await.unwrap_err();
        assert_eq!(err.to_string(), "project `nope` not found");
        let err = store.delete_secret("nope", "X").await.unwrap_err();
        assert_eq!(err.to_string(), "project `nope` not found");
        let err = store.delete_secret("api", "MISSING").await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    })
    .await;
}

#[test]
fn sealed_secret_debug_hides_the_bytes() {
    let secret =
        SealedSecret { key_id: "k1".to_string(), nonce: vec![7; 12], ciphertext: vec![42; 40] };
    let shown = format!("{secret:?}");
    assert_eq!(shown, r#"SealedSecret { key_id: "k1", .. }"#);
    let pretty = format!("{secret:#?}");
    assert!(!pretty.contains("42") && !pretty.contains("40"), "{pretty}");
}
