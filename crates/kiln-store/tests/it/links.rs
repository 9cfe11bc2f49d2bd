//! Runs started by runs and groups: a set of runs is created with its links and group in one
//! transaction, creating it again under its key gives the same runs (never a second downstream
//! run for one trigger attempt), and every read of a run shows its parent, group and author.

use kiln_store::{NewRunSet, NewToken, Role, RunFilter};

use crate::{new_run, on_both, pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_set_of_runs_is_created_once_per_key_with_its_parent_group_and_author() {
    on_both(|store| async move {
        let ci = pipeline(&store, "shop", "ci").await;
        let api = pipeline(&store, "api", "build").await;
        let web = pipeline(&store, "web", "build").await;
        let (token, _) = store
            .create_token(&NewToken { name: "alice".into(), role: Role::Developer, project: None })
            .await
            .unwrap();
        let upstream = store.create_run(&new_run(&ci)).await.unwrap();
        assert_eq!((upstream.parent.clone(), upstream.group, upstream.author), (None, None, None));

        let set = NewRunSet {
            key: Some(format!("job:{}:rebuild:1", upstream.id)),
            group: Some("run shop/ci#1 job rebuild".into()),
            parent: Some((upstream.id, "rebuild".into())),
            author: Some(token.id),
            runs: vec![new_run(&api), new_run(&web)],
        };
        let made = store.create_run_set(&set).await.unwrap();
        assert!(made.created);
        let group = made.group.clone().expect("a group");
        assert_eq!(group.created_by, "run shop/ci#1 job rebuild");
        let names: Vec<String> = made.runs.iter().map(|r| r.full_name()).collect();
        assert_eq!(names, ["api/build#1", "web/build#1"]);
        for run in &made.runs {
            let parent = run.parent.clone().expect("a parent");
            assert_eq!(
                (parent.run, parent.name.as_str(), parent.job.as_str()),
                (upstream.id, "shop/ci#1", "rebuild")
            );
            assert_eq!((run.group, run.author), (Some(group.id), Some(token.id)));
        }

        // Again (a restart while the job waited): the same runs, nothing new.
        let again = store.create_run_set(&set).await.unwrap();
        assert!(!again.created);
        assert_eq!((again.group, again.runs.clone()), (Some(group.clone()), made.runs.clone()));
        let all = store.runs(&RunFilter::default()).await.unwrap();
        assert_eq!(all.len(), 3, "one upstream, two downstream runs: {all:#?}");

        let (shown, runs) = store.group(&group.id).await.unwrap();
        assert_eq!((shown, runs), (group.clone(), made.runs.clone()));
        assert_eq!(store.downstream_runs(&upstream.id).await.unwrap(), made.runs);
        assert_eq!(store.run(&made.runs[1].id).await.unwrap(), made.runs[1]);
        assert_eq!(store.token(&token.id).await.unwrap().name, "alice");

        // Without a key every call makes runs; without a group, parent or author, no link.
        let plain = NewRunSet {
            key: None,
            group: None,
            parent: None,
            author: None,
            runs: vec![new_run(&api)],
        };
        let one = store.create_run_set(&plain).await.unwrap();
        let two = store.create_run_set(&plain).await.unwrap();
        assert_ne!(one.runs[0].id, two.runs[0].id);
        assert_eq!((one.group, one.runs[0].parent.clone()), (None, None));
        let empty = NewRunSet { runs: Vec::new(), ..plain };
        assert!(store.create_run_set(&empty).await.is_err(), "an empty set is refused");
    })
    .await;
}
