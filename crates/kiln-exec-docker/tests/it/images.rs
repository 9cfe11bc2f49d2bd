//! Image operations an agent's cache uses: list, pull (a failure is `ImageNotFound`) and
//! remove (every tag of the image; refused while a container uses it).

use bollard::models::{ContainerConfig, ContainerCreateBody};
use bollard::query_parameters::{
    CommitContainerOptions, CreateContainerOptions, RemoveContainerOptions,
};
use kiln_exec::{ExecError, Executor};
use kiln_exec_docker::DockerExecutor;

use crate::{IMAGE, executor, unique_id};

/// A new image (busybox plus a label, so its own id) tagged `repo:a` and `repo:b`.
async fn distinct_image(exec: &DockerExecutor, repo: &str) -> String {
    let docker = exec.client();
    let name = unique_id("commit").to_string();
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        cmd: Some(vec!["true".into()]),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
    docker.create_container(Some(options), body).await.unwrap();
    let config = ContainerConfig {
        labels: Some([("kiln.test".to_string(), name.clone())].into()),
        ..Default::default()
    };
    let options = CommitContainerOptions {
        container: Some(name.clone()),
        repo: Some(repo.into()),
        tag: Some("a".into()),
        ..Default::default()
    };
    let id = docker.commit_container(options, config).await.unwrap().id;
    let tag = bollard::query_parameters::TagImageOptions {
        repo: Some(repo.into()),
        tag: Some("b".into()),
    };
    docker.tag_image(&id, Some(tag)).await.unwrap();
    docker.remove_container(&name, None::<RemoveContainerOptions>).await.unwrap();
    id
}

#[tokio::test]
async fn lists_pulls_and_removes_images() {
    let exec = executor().await;
    let images = exec.list_images().await.unwrap();
    let busybox = images
        .iter()
        .find(|i| i.tags.iter().any(|t| t == IMAGE))
        .unwrap_or_else(|| panic!("{IMAGE} is not listed: {images:?}"));
    assert!(busybox.id.starts_with("sha256:"), "{busybox:?}");
    assert!(busybox.size > 100_000, "{busybox:?}");

    let repo = format!("kiln-test/{}", unique_id("img"));
    let id = distinct_image(&exec, &repo).await;
    let listed = exec.list_images().await.unwrap();
    let mine = listed.iter().find(|i| i.id == id).expect("the new image is listed");
    let mut tags = mine.tags.clone();
    tags.sort();
    assert_eq!(tags, [format!("{repo}:a"), format!("{repo}:b")]);

    // A pull from a registry that is not there fails as ImageNotFound.
    let missing = format!("127.0.0.1:9/{repo}:nope");
    match exec.pull_image(&missing, None).await {
        Err(ExecError::ImageNotFound { image, .. }) => assert_eq!(image, missing),
        other => panic!("expected ImageNotFound, got {other:?}"),
    }

    // A container of the image holds it: removal is refused and the image stays.
    let docker = exec.client();
    let user = unique_id("user").to_string();
    let body = ContainerCreateBody {
        image: Some(format!("{repo}:a")),
        cmd: Some(vec!["true".into()]),
        ..Default::default()
    };
    let options = CreateContainerOptions { name: Some(user.clone()), ..Default::default() };
    docker.create_container(Some(options), body).await.unwrap();
    let refused = exec.remove_image(&id).await.unwrap_err();
    assert!(matches!(refused, ExecError::Engine(_)), "{refused:?}");
    assert!(exec.list_images().await.unwrap().iter().any(|i| i.id == id), "still there");
    docker.remove_container(&user, None::<RemoveContainerOptions>).await.unwrap();

    // Unused: every tag and the image go, busybox stays.
    exec.remove_image(&id).await.unwrap();
    let after = exec.list_images().await.unwrap();
    assert!(after.iter().all(|i| i.id != id), "{after:?}");
    assert!(after.iter().any(|i| i.tags.iter().any(|t| t == IMAGE)), "busybox stays");
    // Removing an image that is gone is fine.
    exec.remove_image(&id).await.unwrap();
}
