//! The registry's management API under `/api/v1` (what `kiln registry` calls).

use kiln_api::{RegistryGcRequest, SetVisibility};
use kiln_client::{Client, ClientError};
use kiln_store::Role;
use reqwest::Method;

use crate::support::Reg;

#[tokio::test]
async fn repositories_tags_visibility_gc_events_and_webhooks() {
    let reg = Reg::start().await;
    let admin = Client::new(&reg.url, &reg.admin).unwrap();
    let m = reg.push_image("team/app", "v1", &reg.admin, &[b"a"]).await;
    reg.push_image("other/tool", "latest", &reg.admin, &[b"b"]).await;

    let repos = admin.registry_repositories().await.unwrap();
    let names: Vec<_> =
        repos.iter().map(|r| (r.name.as_str(), r.project.as_str(), r.public)).collect();
    assert_eq!(names, vec![("other/tool", "other", false), ("team/app", "team", false)]);
    let viewer = Client::new(&reg.url, &reg.token("v", Role::Viewer, Some("team")).await).unwrap();
    let repos = viewer.registry_repositories().await.unwrap();
    assert_eq!(repos.len(), 1);
    let tags = viewer.registry_tags("team/app").await.unwrap();
    assert_eq!((tags[0].tag.as_str(), tags[0].digest.as_str()), ("v1", m.as_str()));
    let err = viewer.registry_tags("other/tool").await.unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 404, .. }), "{err:?}");

    // Visibility: admins of the project only.
    let err = viewer
        .registry_visibility(&SetVisibility { repository: "team/app".into(), public: true })
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 403, .. }));
    let r = admin
        .registry_visibility(&SetVisibility { repository: "team/app".into(), public: true })
        .await
        .unwrap();
    assert!(r.public);
    assert_eq!(
        reg.req(Method::GET, "/v2/team/app/manifests/v1", None).send().await.unwrap().status(),
        200
    );

    // Events.
    let events = viewer.registry_events(None, None).await.unwrap();
    assert_eq!(events.len(), 1, "a team token sees team events only");
    assert_eq!(events[0].digest, m);
    assert_eq!(admin.registry_events(None, None).await.unwrap().len(), 2);

    // Webhooks.
    let hook = |url: &str| kiln_api::CreateWebhook { url: url.into(), events: None, secret: None };
    let w = admin.add_webhook("team", &hook("http://127.0.0.1:9/hook")).await.unwrap();
    assert_eq!(w.events, ["push"], "a webhook takes pushes unless told otherwise");
    let secret = w.secret.clone().expect("the secret is shown at creation");
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = admin.webhooks("team").await.unwrap();
    assert_eq!(listed, vec![kiln_api::Webhook { secret: None, ..w.clone() }], "shown once only");
    assert!(listed[0].signed);
    let err = admin.add_webhook("team", &hook("ftp://x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 400, .. }));
    admin.delete_webhook("team", &w.id).await.unwrap();
    assert!(admin.webhooks("team").await.unwrap().is_empty());

    // GC: admin only; deleting the tag frees the image after a zero grace window.
    let err = viewer.registry_gc(&RegistryGcRequest::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 403, .. }));
    reg.req(Method::DELETE, "/v2/other/tool/manifests/latest", Some(&reg.admin))
        .send()
        .await
        .unwrap();
    let report = admin.registry_gc(&RegistryGcRequest { grace_seconds: Some(0) }).await.unwrap();
    assert_eq!(report.manifests.len(), 1);
    assert_eq!(report.blobs, 2);
    assert!(report.bytes_freed > 0);
}
