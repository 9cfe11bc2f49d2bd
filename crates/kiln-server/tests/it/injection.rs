//! Values spliced into scripts: an apply answers a warning naming the variable to use for a
//! param written inline, and refuses a value from outside (a param an image push fills)
//! unless the job opts in with `allow-untrusted-inline: true`.

use kiln_client::ClientError;

use crate::support::TestServer;

#[tokio::test]
async fn an_apply_warns_about_inline_params_and_refuses_pushed_ones_unless_allowed() {
    let s = TestServer::start_with(0).await;
    let said = s
        .apply("inj", "msg", "name: msg\nparams: { msg: {} }\nstages:\n  - name: s\n    jobs:\n      a: { script: 'echo \"${{ params.msg }}\"' }\n")
        .await;
    let warnings: Vec<&str> = said.warnings.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(said.warnings.len(), 1, "{warnings:?}");
    assert_eq!(said.warnings[0].severity, "warning");
    assert!(warnings[0].contains("use the variable \"$msg\" instead"), "{warnings:?}");

    let pushed = "name: pushed\non: { image: { repository: app } }\nparams: { tag: {} }\nstages:\n  - name: s\n    jobs:\n      a:\n        script: docker run \"app:${{ params.tag }}\"\n";
    let err = s.apply_as(&s.admin, "inj", "pushed", pushed).await.unwrap_err();
    let ClientError::Api { status, error } = err else { panic!("{err}") };
    assert_eq!((status, error.code.as_str()), (422, "invalid_workflow"), "{error:?}");
    let d = &error.diagnostics;
    assert!(
        d.iter().any(|d| d.severity == "error"
            && d.line == 8
            && d.message.contains("comes from outside (an image push fills it)")
            && d.message.contains("allow-untrusted-inline: true")),
        "{d:#?}"
    );
    assert!(s.admin.pipelines("inj").await.unwrap().iter().all(|p| p.name != "pushed"));
    let allowed = pushed.replace("      a:\n", "      a:\n        allow-untrusted-inline: true\n");
    let said = s.apply("inj", "pushed", &allowed).await;
    assert_eq!(said.change, "created");
    assert!(said.warnings.iter().all(|d| d.severity == "warning"), "{:?}", said.warnings);
    assert_eq!(said.warnings.len(), 1, "{:?}", said.warnings);
    s.stop().await;
}
