//! The `check(input, expect)` helper over small workflows: one rule per test. The rendering
//! is the plan summary (stages, then `job id <- [needs] gate if | run`) or the diagnostics.

use crate::support::{check, check_files};

#[test]
fn minimal() {
    insta::assert_snapshot!(check("name: x\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"), @r#"
    plan x
    stage 0 s: a
    job a <- [] gate - if success() | script ["echo"]
    "#);
}

#[test]
fn implicit_needs_skip_approval_stages_and_gates_apply() {
    insta::assert_snapshot!(check(r#"
name: g
stages:
  - name: one
    jobs: { a: { script: echo }, b: { script: echo } }
  - name: ok?
    type: approval
  - name: two
    jobs: { c: { script: echo } }
  - name: three
    jobs: { d: { script: echo }, e: { script: echo, needs: [a] } }
"#), @r#"
    plan g
    stage 0 one: a b
    stage 1 ok?: approval (-)
    stage 2 two: c
    stage 3 three: d e
    job a <- [] gate - if success() | script ["echo"]
    job b <- [] gate - if success() | script ["echo"]
    job c <- [a b] gate 1 if success() | script ["echo"]
    job d <- [c] gate 1 if success() | script ["echo"]
    job e <- [a] gate 1 if success() | script ["echo"]
    "#);
}

#[test]
fn needs_as_text_and_matrix_expansion() {
    insta::assert_snapshot!(check(r#"
name: m
stages:
  - name: one
    jobs:
      t:
        matrix: { os: [linux, mac], v: [1, 2] }
        script: echo
  - name: two
    jobs:
      u: { needs: t, script: echo }
"#), @r#"
    plan m
    stage 0 one: t[linux,1] t[linux,2] t[mac,1] t[mac,2]
    stage 1 two: u
    job t[linux,1] <- [] gate - if success() | script ["echo"]
    job t[linux,2] <- [] gate - if success() | script ["echo"]
    job t[mac,1] <- [] gate - if success() | script ["echo"]
    job t[mac,2] <- [] gate - if success() | script ["echo"]
    job u <- [t[linux,1] t[linux,2] t[mac,1] t[mac,2]] gate - if success() | script ["echo"]
    "#);
}

#[test]
fn script_text_is_split_into_lines() {
    insta::assert_snapshot!(check("name: s\nstages:\n  - name: s\n    jobs:\n      a:\n        script: |\n          echo one\n          if true; then\n            echo two\n          fi\n"), @r#"
    plan s
    stage 0 s: a
    job a <- [] gate - if success() | script ["echo one", "if true; then", "  echo two", "fi"]
    "#);
}

#[test]
fn conditions_are_stored_without_braces() {
    insta::assert_snapshot!(check(r#"
name: c
params: { p: { default: x } }
stages:
  - name: s
    jobs:
      a: { script: echo, if: "${{ params.p == 'x' }}" }
      b: { script: echo, if: always() }
      c: { script: echo, if: false }
      d: { script: echo }
"#), @r#"
    plan c
    param p: String = x
    stage 0 s: a b c d
    job a <- [] gate - if params.p == 'x' | script ["echo"]
    job b <- [] gate - if always() | script ["echo"]
    job c <- [] gate - if false | script ["echo"]
    job d <- [] gate - if success() | script ["echo"]
    "#);
}

#[test]
fn outputs_of_transitive_needs_are_readable() {
    insta::assert_snapshot!(check(r#"
name: t
stages:
  - name: one
    jobs: { a: { script: echo JOB_OUT k=v } }
  - name: two
    jobs: { b: { script: echo } }
  - name: three
    jobs: { c: { script: "echo ${{ jobs.a.outputs.k }} ${{ jobs['b'].result }}" } }
"#), @r#"
    main.yml:9:36: warning: `${{ jobs.a.outputs.k }}` is spliced into the script as text: a value holding `"` or `;` runs as commands; set it in the job's env (`OUT: ${{ jobs.a.outputs.k }}`) and use "$OUT" instead
    plan t
    stage 0 one: a
    stage 1 two: b
    stage 2 three: c
    job a <- [] gate - if success() | script ["echo JOB_OUT k=v"]
    job b <- [a] gate - if success() | script ["echo"]
    job c <- [b] gate - if success() | script ["echo ${{ jobs.a.outputs.k }} ${{ jobs['b'].result }}"]
    "#);
}

#[test]
fn matrix_include_only_and_partial_exclude() {
    insta::assert_snapshot!(check(r#"
name: m
stages:
  - name: s
    jobs:
      inc:
        matrix: { include: [{ os: a, v: 1 }, { os: b, v: 2 }, { os: a, v: 1 }] }
        script: echo ${{ matrix.v }}
      exc:
        matrix: { os: [a, b], v: [1, 2, 3], exclude: [{ v: 2 }, { os: b, v: 3 }], include: [{ os: c, v: 9 }] }
        script: echo
"#), @r#"
    plan m
    stage 0 s: inc[a,1] inc[b,2] exc[a,1] exc[a,3] exc[b,1] exc[c,9]
    job inc[a,1] <- [] gate - if success() | script ["echo ${{ matrix.v }}"]
    job inc[b,2] <- [] gate - if success() | script ["echo ${{ matrix.v }}"]
    job exc[a,1] <- [] gate - if success() | script ["echo"]
    job exc[a,3] <- [] gate - if success() | script ["echo"]
    job exc[b,1] <- [] gate - if success() | script ["echo"]
    job exc[c,9] <- [] gate - if success() | script ["echo"]
    "#);
}

#[test]
fn every_unknown_key_is_reported_with_the_expected_keys() {
    insta::assert_snapshot!(check(r#"
name: u
on: { image: { repository: app, tgas: v1 } }
jobs: {}
stages:
  - name: s
    runs-on: linux
    jobs:
      a: { script: echo, steps: [], imgae: x }
"#), @"
    main.yml:3:33: error: unknown key 'tgas' in image trigger (did you mean 'tags'?); expected one of: repository, tags
    main.yml:4:1: error: unknown key 'jobs' in the workflow file; expected one of: name, timeout, concurrency, params, env, stages, uses, with, on, source, service-pools, prepull
    main.yml:7:5: error: unknown key 'runs-on' in stage 's'; expected one of: name, type, description, jobs
    main.yml:9:26: error: unknown key 'steps' in job 'a'; expected one of: image, script, command, args, env, workdir, timeout, retry, resources, needs, if, matrix, array, parallelism, services, cache, artifacts, constraints, ports, network, priority, placement, checkout, allow-untrusted-inline, service-pools, trigger, deploy, build, environment
    main.yml:9:37: error: unknown key 'imgae' in job 'a' (did you mean 'image'?); expected one of: image, script, command, args, env, workdir, timeout, retry, resources, needs, if, matrix, array, parallelism, services, cache, artifacts, constraints, ports, network, priority, placement, checkout, allow-untrusted-inline, service-pools, trigger, deploy, build, environment
    ");
}

#[test]
fn with_needs_uses() {
    insta::assert_snapshot!(check("name: w\nwith: { a: 1 }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"), @"main.yml:2:9: error: 'with' gives values to a template: it needs 'uses'");
}

#[test]
fn empty_names_are_errors() {
    insta::assert_snapshot!(check("name: ''\nstages:\n  - name: ' '\n    jobs: { a: { script: echo } }\n"), @"
    main.yml:1:7: error: name: must not be empty
    main.yml:3:11: error: a stage name must not be empty
    ");
}

#[test]
fn expression_errors_point_inside_block_scalars() {
    insta::assert_snapshot!(check("name: e\nstages:\n  - name: s\n    jobs:\n      a:\n        script: |\n          echo ok\n          echo ${{ params.x }} ${{ 1 = 2 }}\n"), @"main.yml:8:38: error: invalid expression: expected '}}' to close '${{', found '='");
}

#[test]
fn stages_missing_entirely() {
    insta::assert_snapshot!(check("name: nothing\n"), @"main.yml:1:1: error: the workflow has no 'stages' (or 'uses' to run a template): add stages: [...]");
}

#[test]
fn stage_without_name_and_with_bad_type() {
    insta::assert_snapshot!(check("name: n\nstages:\n  - jobs: { a: { script: echo } }\n  - name: x\n    type: [approval]\n"), @"
    main.yml:3:5: error: stage 1 has no 'name'
    main.yml:4:11: error: stage 'x' has no jobs: add jobs, or type: approval for an approval stage
    main.yml:5:11: error: stage 'x' type: expected one of jobs, approval, found a list
    ");
}

#[test]
fn retry_and_resources_forms() {
    insta::assert_snapshot!(check(r#"
name: r
stages:
  - name: s
    jobs:
      a: { script: echo, retry: 3, resources: { cpu: 1.5 } }
      b: { script: echo, retry: { max: 1, on: timeout }, resources: { memory: 64Ki } }
      c: { script: echo, retry: -1 }
      d: { script: echo, retry: [1] }
"#), @"
    main.yml:8:33: error: retry: expected a whole number such as 2, found '-1'
    main.yml:9:33: error: retry: expected a count such as 2, or { max: 2, on: [failure, timeout] }, found a list
    ");
}

#[test]
fn template_caller_may_not_have_stages_and_with_values_are_literal() {
    insta::assert_snapshot!(check_files(&[
        ("main.yml", "name: m\nuses: t.yml\nwith: { p: '${{ params.p }}' }\n"),
        ("t.yml", "name: t\nparams: { p: {} }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"),
    ]), @"main.yml:3:12: error: with: values are literal; expressions are not evaluated here");
}

#[test]
fn template_load_errors_are_located_at_uses() {
    insta::assert_snapshot!(check_files(&[("main.yml", "name: m\nuses: nope.yml\n")]), @"main.yml:2:7: error: can not read template 'nope.yml': no such file nope.yml");
}

#[test]
fn unreadable_entry() {
    insta::assert_snapshot!(check_files(&[]), @"main.yml:1:1: error: can not read the workflow: no such file main.yml");
}

#[test]
fn duplicate_job_across_stages_and_reserved_characters() {
    insta::assert_snapshot!(check(r#"
name: d
stages:
  - name: a
    jobs: { x: { script: echo } }
  - name: b
    jobs: { x: { script: echo }, "y[1]": { script: echo } }
"#), @"
    main.yml:7:13: error: duplicate job id 'x' (first in stage 'a', line 5): job ids are unique in the workflow
    main.yml:7:34: error: job id 'y[1]': expected letters, digits, _ and -
    ");
}

#[test]
fn tags_and_quoted_scalars_stay_text() {
    insta::assert_snapshot!(check(r#"
name: !!str 123
params:
  a: { default: !!str true }
  b: { type: bool, default: "true" }
stages:
  - name: s
    jobs: { a: { script: [1, true, "~", 1.10] } }
"#), @r#"
    plan 123
    param a: String = true
    param b: Bool = true
    stage 0 s: a
    job a <- [] gate - if success() | script ["1", "true", "~", "1.10"]
    "#);
}

#[test]
fn blank_script_text_is_empty() {
    insta::assert_snapshot!(check("name: b\nstages:\n  - name: s\n    jobs: { a: { script: '  ' } }\n"), @"main.yml:4:26: error: script is empty");
}

#[test]
fn null_is_not_text() {
    insta::assert_snapshot!(check("name: n\nstages:\n  - name: s\n    jobs: { a: { script: [echo, null, ~] } }\n"), @"
    main.yml:4:33: error: script: expected text, found nothing (null)
    main.yml:4:39: error: script: expected text, found nothing (null)
    ");
}

#[test]
fn ten_thousand_jobs_compile_quickly() {
    use std::fmt::Write as _;
    let mut text = String::from("name: big\nparams: { v: { default: '1' } }\nstages:\n");
    for s in 0..100 {
        let _ = write!(text, "  - name: s{s}\n    jobs:\n");
        for j in 0..100 {
            let read = if s > 0 {
                format!(" ${{{{ jobs.j{}_{j}.outputs.k }}}}", s - 1)
            } else {
                String::new()
            };
            let _ = writeln!(
                text,
                "      j{s}_{j}: {{ env: {{ V: '${{{{ params.v }}}}{read}' }}, script: 'echo \"$V\"' }}"
            );
        }
    }
    let started = std::time::Instant::now();
    let compiled =
        kiln_workflow::compile("main.yml", &crate::support::MapLoader::new(&[("main.yml", &text)]));
    let elapsed = started.elapsed();
    assert!(compiled.diagnostics.is_empty(), "{:?}", compiled.diagnostics.first());
    assert_eq!(compiled.plan.map(|p| p.jobs.len()), Some(10_000));
    eprintln!("compiled 10,000 jobs in {elapsed:?}");
    assert!(elapsed < std::time::Duration::from_secs(20), "took {elapsed:?}");
}

#[test]
fn concurrency_is_a_whole_number_of_at_least_one() {
    let with = |value: &str| {
        check(&format!(
            "name: c\nconcurrency: {value}\nstages:\n  - name: s\n    jobs: {{ a: {{ script: echo }} }}\n"
        ))
    };
    insta::assert_snapshot!(with("3").lines().next().unwrap_or_default(), @"plan c");
    insta::assert_snapshot!(
        ["0", "-1", "1.5", "two", "[1]", "99999999999"].map(with).concat(),
        @"
    main.yml:2:14: error: concurrency: must be at least 1 (how many runs of this workflow may run at once)
    main.yml:2:14: error: concurrency: expected a whole number such as 2, found '-1'
    main.yml:2:14: error: concurrency: expected a whole number such as 2, found '1.5'
    main.yml:2:14: error: concurrency: expected a whole number such as 2, found 'two'
    main.yml:2:14: error: concurrency: expected a whole number such as 2, found a list
    main.yml:2:14: error: concurrency: expected a whole number such as 2, found '99999999999'
    "
    );
}

#[test]
fn a_template_caller_may_set_concurrency() {
    let template =
        "name: t\nconcurrency: 4\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n";
    let compile = |main: &str| {
        kiln_workflow::compile(
            "main.yml",
            &crate::support::MapLoader::new(&[("main.yml", main), ("t.yml", template)]),
        )
    };
    let inherited = compile("name: m\nuses: t.yml\n");
    assert_eq!(inherited.plan.map(|p| p.concurrency), Some(Some(4)));
    let replaced = compile("name: m\nuses: t.yml\nconcurrency: 1\n");
    assert_eq!(replaced.plan.map(|p| p.concurrency), Some(Some(1)));
    insta::assert_snapshot!(check_files(&[("main.yml", "name: m\nuses: t.yml\nconcurrency: 0\n"), ("t.yml", template)]), @"main.yml:3:14: error: concurrency: must be at least 1 (how many runs of this workflow may run at once)");
}

#[test]
fn cache_and_artifact_paths_are_checked_around_templates() {
    insta::assert_snapshot!(check(r#"
name: p
params: { dir: { default: x } }
stages:
  - name: s
    jobs:
      a:
        script: echo
        matrix: { os: [linux] }
        cache:
          key: ${{ matrix.os }}
          paths: ["${{ '../x' }}/y", "a/${{ params.dir }}/../../b", "${{ matrix.osx }}"]
        artifacts:
          paths:
            - |
              dist/${{ params.dir }}
"#), @r"
    main.yml:12:59: error: cache paths: 'a/${{ params.dir }}/../../b' leaves the workspace with '..'
    main.yml:12:74: error: matrix.osx: the matrix of job 'a' has no axis 'osx' (axes: os)
    main.yml:16:37: error: artifacts paths: 'dist/${{ params.dir }}\n' holds a line break
    ");
}

#[test]
fn image_triggers_compile_and_match_their_own_project_s_pushes() {
    use kiln_workflow::plan::ImageTrigger;
    let files = [(
        "main.yml",
        "name: t\non:\n  image:\n    - { repository: app, tags: ['v*', latest] }\n    - repository: 'shop/*'\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n",
    )];
    let loader = crate::support::MapLoader::new(&files);
    let compiled = kiln_workflow::compile("main.yml", &loader);
    let plan = compiled.plan.expect("compiles");
    assert_eq!(
        plan.triggers.image,
        vec![
            ImageTrigger { repository: "app".into(), tags: vec!["v*".into(), "latest".into()] },
            ImageTrigger { repository: "shop/*".into(), tags: vec![] },
        ]
    );
    let [app, any] = [&plan.triggers.image[0], &plan.triggers.image[1]];
    assert!(app.matches("shop", "shop/app", "v1.2"));
    assert!(app.matches("shop", "shop/app", "latest"));
    assert!(!app.matches("shop", "shop/app", "dev"));
    assert!(!app.matches("shop", "shop/api", "v1"));
    assert!(!app.matches("other", "shop/app", "v1"), "another project's pushes never count");
    assert!(any.matches("shop", "shop/web", "anything"));
    assert!(!any.matches("shop", "shop/web/sub", "x"), "* stops at /");

    // One trigger without a list, and the errors.
    insta::assert_snapshot!(check("name: t\non: { image: { repository: app } }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"), @"
    plan t
    stage 0 s: a
    job a <- [] gate - if success() | script [\"echo\"]
    ");
    insta::assert_snapshot!(check("name: t\non:\n  image:\n    - { tags: [v1] }\n    - { repository: 'a[' }\n    - { repository: b, tags: ['[x'] }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"), @"
    main.yml:4:7: error: image trigger has no 'repository': add repository: <name or glob>
    main.yml:5:21: error: image repository 'a[' is not a valid glob: unclosed character class; missing ']'
    main.yml:6:31: error: image tag '[x' is not a valid glob: unclosed character class; missing ']'
    ");
}

#[test]
fn git_triggers_and_source_compile() {
    use kiln_workflow::git::{PullRequestAction, PushTrigger, Source};
    let compile = |text: &str| {
        let files = [("main.yml", text)];
        let loader = crate::support::MapLoader::new(&files);
        kiln_workflow::compile("main.yml", &loader)
    };
    let yaml = "name: t\nsource: { repository: 'git@git.example.com:shop/app.git', credentials: GIT_TOKEN }\non:\n  push: { branches: [main, 'release/*'], paths-ignore: ['docs/**'] }\n  merge_request: { types: [opened, merged] }\nstages:\n  - name: s\n    jobs:\n      a: { script: echo }\n      b: { script: echo, checkout: false }\n";
    let plan = compile(yaml).plan.expect("compiles");
    assert_eq!(
        plan.source,
        Some(Source {
            repository: "git@git.example.com:shop/app.git".into(),
            credentials: Some("GIT_TOKEN".into())
        })
    );
    assert_eq!(
        plan.triggers.push,
        Some(PushTrigger {
            branches: Some(vec!["main".into(), "release/*".into()]),
            tags: None,
            paths: vec![],
            paths_ignore: vec!["docs/**".into()],
        })
    );
    let pr = plan.triggers.pull_request.expect("merge_request is pull_request");
    assert_eq!(pr.types, vec![PullRequestAction::Opened, PullRequestAction::Merged]);
    assert!(plan.jobs[0].checkout && !plan.jobs[1].checkout);

    // `push:` alone is every push; `source` may be the repository alone.
    let plan = compile("name: t\nsource: shop/app\non:\n  push:\n  pull_request:\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n").plan.expect("compiles");
    assert_eq!(plan.triggers.push, Some(PushTrigger::default()));
    assert_eq!(plan.triggers.pull_request.unwrap().types, PullRequestAction::DEFAULT);

    insta::assert_snapshot!(check("name: t\non:\n  push: { branches: ['a['], paths: [x], paths-ignore: [y] }\n  pull_request: { types: [open] }\n  merge_request:\nstages:\n  - name: s\n    jobs: { a: { script: echo, checkout: maybe } }\n"), @"
    main.yml:3:9: error: on.push and on.pull_request start runs for the workflow's repository: add source: { repository: <clone URL or owner/name> }
    main.yml:3:22: error: on.push branch 'a[' is not a valid glob: unclosed character class; missing ']'
    main.yml:3:41: error: on.push: use paths or paths-ignore, not both
    main.yml:4:27: error: on.pull_request types: expected one of opened, synchronize, reopened, closed, merged, found 'open'
    main.yml:5:16: error: on: merge_request is another name for pull_request: write one of them
    main.yml:8:42: error: checkout: expected true or false, found 'maybe'
    ");
    insta::assert_snapshot!(check("name: t\nsource: { credentials: GIT }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"), @"
    main.yml:2:9: error: source has no 'repository': add repository: <clone URL or owner/name>
    ");
    insta::assert_snapshot!(check("name: t\nsource: { repository: a/b, credentials: 'not a name' }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"), @"
    main.yml:2:41: error: source credentials: expected the name of a project secret (letters, digits and _), found 'not a name'
    ");
}

#[test]
fn concurrency_groups_compile_and_render() {
    use kiln_workflow::git::ConcurrencyGroup;
    let files = [(
        "main.yml",
        "name: t\nparams: { env: { default: dev } }\nconcurrency:\n  group: 'deploy-${{ params.env }}-${{ source.branch }}'\n  cancel-in-progress: true\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n",
    )];
    let loader = crate::support::MapLoader::new(&files);
    let plan = kiln_workflow::compile("main.yml", &loader).plan.expect("compiles");
    assert_eq!(plan.concurrency, Some(1), "a group's limit defaults to 1");
    let group = plan.concurrency_group.expect("group");
    assert!(group.cancel_in_progress);
    let value = |name: &str| match name {
        "params.env" => Some("prod".to_string()),
        "source.branch" => Some("main".to_string()),
        _ => None,
    };
    assert_eq!(group.render(&value), "deploy-prod-main");
    assert_eq!(
        ConcurrencyGroup { group: "x-${{ source.tag }}".into(), cancel_in_progress: false }
            .render(&value),
        "x-"
    );

    insta::assert_snapshot!(check("name: t\nconcurrency: { group: '${{ jobs.a.outputs.x }}', limit: 0, cancel: true }\nstages:\n  - name: s\n    jobs: { a: { script: echo } }\n"), @"
    main.yml:2:23: error: concurrency group: '${{ jobs.a.outputs.x }}' is not known here; use source.branch, source.tag, source.ref, source.event, source.repository or params.NAME
    main.yml:2:57: error: concurrency: must be at least 1 (how many runs of this workflow may run at once)
    main.yml:2:60: error: unknown key 'cancel' in concurrency; expected one of: group, limit, cancel-in-progress
    ");
}

/// `${{ }}` is spliced into a script as text, so a value holding `"; touch pwned; echo "`
/// runs as commands. A param or an upstream job's output written inline is a warning naming
/// the variable to use instead; a value that comes from outside (a param an image push fills)
/// is an error unless the job opts in with `allow-untrusted-inline: true`; the commit's facts
/// from a webhook are named by their `KILN_*` variables.
#[test]
fn untrusted_values_inline_in_a_script_are_warned_about_or_refused() {
    let out = check(
        r#"
name: inj
params:
  msg: { type: string }
stages:
  - name: s
    jobs:
      a:
        matrix: { os: [linux] }
        script:
          - echo "${{ params.msg }}"
          - echo "${{ matrix.os }}"
  - name: t
    jobs:
      b:
        script: echo "JOB_OUT title=x"
      c:
        needs: [b]
        command: [echo, "${{ params.msg }}"]
        env: { TITLE: "${{ jobs.b.outputs.title }}" }
      d:
        needs: [b]
        script: echo "${{ jobs.b.outputs.title }}"
"#,
    );
    assert!(
        out.contains(
            "main.yml:11:23: warning: `${{ params.msg }}` is spliced into the script as text: a \
             value holding `\"` or `;` runs as commands; use the variable \"$msg\" instead"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "main.yml:23:27: warning: `${{ jobs.b.outputs.title }}` is spliced into the script \
             as text: a value holding `\"` or `;` runs as commands; use the variable \"$title\" \
             instead"
        ),
        "{out}"
    );
    // The file's own values (a matrix axis) and other fields (argv, env) are fine.
    assert_eq!(out.matches("warning").count(), 2, "{out}");
    assert!(!out.contains("error"), "{out}");

    // A param an image push fills comes from outside: an error unless the job opts in.
    let pushed = r#"
name: pushed
on: { image: { repository: app } }
params:
  tag: { type: string }
stages:
  - name: s
    jobs:
      a:
        script: docker run "app:${{ params.tag }}"
"#;
    let out = check(pushed);
    assert!(
        out.contains(
            "main.yml:10:37: error: `${{ params.tag }}` comes from outside (an image push fills \
             it) and is spliced into the script as text, where it can run commands; use the \
             variable \"$tag\" instead, or set allow-untrusted-inline: true on the job"
        ),
        "{out}"
    );
    let allowed = pushed.replace("      a:\n", "      a:\n        allow-untrusted-inline: true\n");
    let out = check(&allowed);
    assert!(!out.contains("error"), "{out}");
    assert!(out.contains("warning: `${{ params.tag }}` comes from outside"), "{out}");

    // The commit's facts from a git webhook are variables, never spliced.
    let out = check(
        "name: git\nstages:\n  - name: s\n    jobs:\n      a: { script: 'echo \"${{ source.branch }}\"' }\n",
    );
    assert!(
        out.contains(
            "error: `source.branch` is not spliced into scripts: it comes from outside (a git \
             webhook) and could run commands; use the variable \"$KILN_BRANCH\""
        ),
        "{out}"
    );
}

/// Limits are checked when the file is compiled (`kiln validate`, apply), not found at run
/// time: a script over 64 KiB (a 1.5 MB script used to fail with "Argument list too long"),
/// more than 10,000 jobs, names and ids over 128 characters.
#[test]
fn limits_are_errors_at_validate_time() {
    use std::fmt::Write as _;
    let long = "x".repeat(kiln_workflow::MAX_SCRIPT_BYTES);
    let out = check(&format!(
        "name: big\nstages:\n  - name: s\n    jobs:\n      a:\n        script:\n          - echo {long}\n"
    ));
    assert!(
        out.contains(
            "main.yml:7:11: error: script of job 'a' is 65542 bytes; at most 65536 are allowed"
        ),
        "{}",
        &out[..out.len().min(400)]
    );
    let fits = "x".repeat(kiln_workflow::MAX_SCRIPT_BYTES - 10);
    let out = check(&format!(
        "name: ok\nstages:\n  - name: s\n    jobs:\n      a: {{ script: 'echo {fits}' }}\n"
    ));
    assert!(!out.contains("error"), "{}", &out[..400]);

    let mut many = String::from("name: many\nstages:\n  - name: s\n    jobs:\n");
    for j in 0..=kiln_workflow::MAX_JOBS {
        let _ = writeln!(many, "      j{j}: {{ script: echo }}");
    }
    let out = check(&many);
    assert!(
        out.contains("main.yml:3:3: error: the workflow has 10001 jobs (matrix instances counted); at most 10000 are allowed"),
        "{}",
        &out[..out.len().min(400)]
    );

    let id = "j".repeat(129);
    let stage = "s".repeat(129);
    let out = check(&format!(
        "name: {id}\nstages:\n  - name: {stage}\n    jobs:\n      {id}: {{ script: echo }}\n"
    ));
    assert!(
        out.contains(
            "main.yml:1:7: error: workflow name is 129 characters; at most 128 are allowed"
        ),
        "{out}"
    );
    assert!(
        out.contains("main.yml:3:11: error: stage name is 129 characters; at most 128 are allowed"),
        "{out}"
    );
    assert!(
        out.contains("main.yml:5:7: error: job id is 129 characters; at most 128 are allowed"),
        "{out}"
    );
}
