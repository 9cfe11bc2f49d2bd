//! Vulnerability scanning's records: a failed scan keeps the findings of the last good one, an
//! import stores its advisories, changed findings and one `vulnerability` event per repository
//! holding a newly hit image (not per index child) with its outbox rows, and image policies.

use kiln_store::{
    AdvisoryImport, FindingRecord, ImagePolicy, NewAdvisory, NewRegistryManifest, PackageRecord,
    ScanOutcome,
};

use crate::on_both;

fn finding(advisory: &str) -> FindingRecord {
    FindingRecord {
        advisory: advisory.into(),
        aliases: vec!["CVE-2021-25900".into()],
        summary: "smallvec: buffer overflow in insert_many".into(),
        severity: "critical".into(),
        ecosystem: "crates.io".into(),
        package: "smallvec".into(),
        installed: "1.6.0".into(),
        fixed: Some("1.6.1".into()),
        source: "app/Cargo.lock".into(),
    }
}

#[tokio::test]
async fn scans_findings_notices_and_policies_are_stored_as_decided() {
    on_both(|store| async move {
        let project = store.create_project("shop").await.unwrap();
        store.registry_ensure_repository("shop/app", &project.id).await.unwrap();
        let manifest = |digest: &str, tag: Option<&str>| NewRegistryManifest {
            repository: "shop/app".into(),
            digest: digest.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: b"{}".to_vec(),
            artifact_type: None,
            subject: None,
            annotations: None,
            blobs: vec![],
            children: vec![],
            tag: tag.map(str::to_string),
            actor: "ci".into(),
        };
        let d = format!("sha256:{}", "ab".repeat(32));
        store.registry_put_manifest(&manifest(&d, Some("1.0"))).await.unwrap();
        assert_eq!(store.scan_queue().await.unwrap(), [("shop/app".to_string(), d.clone())]);

        let packages = vec![PackageRecord {
            ecosystem: "crates.io".into(),
            name: "smallvec".into(),
            version: "1.6.0".into(),
            source: "app/Cargo.lock".into(),
            release: None,
        }];
        let good = ScanOutcome::Scanned {
            packages: packages.clone(),
            findings: vec![finding("RUSTSEC-2021-0003")],
        };
        let r = store.record_scan(&d, &good).await.unwrap();
        assert_eq!((r.state.as_str(), r.packages), ("scanned", 1));
        assert!(store.scan_queue().await.unwrap().is_empty());
        // A failed scan says why and keeps what the last good one found.
        let failed = ScanOutcome::Failed("layer 1 of 1 is not in the blob store".into());
        let r = store.record_scan(&d, &failed).await.unwrap();
        assert_eq!(r.state, "failed");
        assert_eq!(r.error.as_deref(), Some("layer 1 of 1 is not in the blob store"));
        assert_eq!(r.packages, 1);
        assert!(r.scanned_at.is_some());
        assert_eq!(store.image_findings(&d).await.unwrap(), [finding("RUSTSEC-2021-0003")]);
        assert_eq!(store.image_packages(&d).await.unwrap(), packages);
        store.record_scan(&d, &good).await.unwrap();
        assert_eq!(store.scanned_digests().await.unwrap(), vec![d.clone()]);

        // An import: the advisory, the image's new findings and one event for its repository.
        let hook = store
            .add_webhook(&project.id, "http://127.0.0.1:9/hook", &["vulnerability".into()], None)
            .await
            .unwrap();
        let import = AdvisoryImport {
            advisories: vec![NewAdvisory {
                id: "RUSTSEC-2022-0013".into(),
                modified: "2022-03-08T12:00:00Z".into(),
                osv: serde_json::json!({"id": "RUSTSEC-2022-0013"}),
                packages: vec![("crates.io".into(), "regex".into())],
            }],
            findings: vec![(
                d.clone(),
                vec![finding("RUSTSEC-2021-0003"), finding("RUSTSEC-2022-0013")],
            )],
            notices: vec![(d.clone(), vec!["RUSTSEC-2022-0013".into()])],
        };
        let events = store.import_advisories(&import).await.unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!((e.action.as_str(), e.repository.as_str()), ("vulnerability", "shop/app"));
        assert_eq!(
            (e.tags.clone(), e.advisories.clone()),
            (vec!["1.0".to_string()], vec!["RUSTSEC-2022-0013".to_string()])
        );
        assert_eq!(e.tag, None);
        assert_eq!(store.image_findings(&d).await.unwrap().len(), 2);
        assert_eq!(
            store.advisories().await.unwrap(),
            [serde_json::json!({"id": "RUSTSEC-2022-0013"})]
        );
        let due = store.registry_due_deliveries(chrono::Utc::now(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(
            matches!(&due[0].payload, kiln_store::DeliveryPayload::Vulnerability(v) if v.id == e.id)
        );
        let listed = store.registry_events(Some(&project.id), 10).await.unwrap();
        assert_eq!(listed[0], *e);
        assert_eq!(store.registry_deliveries(&hook.id, 10).await.unwrap()[0].kind, "vulnerability");

        // Policies: off until set.
        assert_eq!(store.image_policy(&project.id).await.unwrap(), ImagePolicy::default());
        let on = ImagePolicy { block_critical_deploys: true, no_critical_latest: false };
        store.set_image_policy(&project.id, &on).await.unwrap();
        assert_eq!(store.image_policy(&project.id).await.unwrap(), on);
    })
    .await;
}
