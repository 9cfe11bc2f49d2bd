//! The JSON of the agent lease protocol, pinned by snapshots: agents and servers of one
//! protocol version must agree on every byte, so a change of shape shows in review (and,
//! when it breaks old agents, bumps `kiln_api::agent::PROTOCOL`).

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use kiln_api::agent::{
    AgentEvent, AgentInfo, CacheQuery, Checkout, ConfigUpdate, EventsResponse, InstanceConfig,
    Lease, LeaseReport, LeaseRequest, LeaseResponse, OnChange, PROTOCOL, RegisterAgent,
    ReportsResponse,
};
use kiln_api::pool::{AttrValue, PortRange, Resources};
use kiln_engine::{Command, Outcome, Run, StartJob};
use kiln_workflow::{Loader, Source};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Pretty JSON of `value`, after checking it reads back as the same value.
fn json<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> String {
    let text = serde_json::to_string_pretty(value).expect("wire types serialize");
    let back: T = serde_json::from_str(&text).expect("wire types read back");
    assert_eq!(&back, value, "{text}");
    text
}

struct Text(&'static str);

impl Loader for Text {
    fn load(&self, _from: &str, path: &str) -> Result<Source, String> {
        Ok(Source { name: path.to_string(), text: self.0.to_string() })
    }
}

const WORKFLOW: &str = r#"
name: shop
params:
  version: { default: "1.0" }
stages:
  - name: build
    jobs:
      build:
        image: busybox
        script: ["make VERSION=${{ params.version }}", "echo JOB_OUT digest=sha256:abc"]
        env: { CC: gcc }
        timeout: 10m
        retry: 2
        resources: { cpu: 2, memory: 512Mi }
        constraints:
          - [city, LIKE, shenzhen]
        ports:
          - { name: web, container: 8080 }
        cache:
          key: deps
          paths: [target/]
        artifacts:
          paths: [dist/]
        services:
          - name: db
            image: postgres:15
"#;

/// The `StartJob` the engine hands the server for the workflow above: a real one, so the
/// snapshot shows what an agent really gets.
fn start_job() -> StartJob {
    let compiled = kiln_workflow::compile("shop.yml", &Text(WORKFLOW));
    let plan = compiled.plan.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics));
    let params = kiln_workflow::bind_params(&plan, &[]).expect("defaults bind");
    let mut run = Run::new(std::sync::Arc::new(plan), params);
    run.start()
        .into_iter()
        .find_map(|c| match c {
            Command::StartJob(sj) => Some(*sj),
            _ => None,
        })
        .expect("the first stage starts a job")
}

#[test]
fn register_and_session() {
    let register = RegisterAgent {
        name: "sz-1".into(),
        executor: "docker".into(),
        capacity: 4,
        hostname: "build-07".into(),
        ip: "10.1.2.3".into(),
        resources: Some(Resources {
            cpu_millis: 8000,
            memory_bytes: 16 << 30,
            disk_bytes: 100 << 30,
        }),
        ports: Some(PortRange { start: 31000, end: 31999 }),
        attributes: BTreeMap::from([
            ("city".to_string(), AttrValue::Text("shenzhen".into())),
            ("zones".to_string(), AttrValue::Set(vec!["gz".into(), "sz".into()])),
        ]),
        held: vec!["0190a1b2c3d4".into()],
        protocol: PROTOCOL,
        version: "0.1.0".into(),
        images: Some(vec![busybox()]),
    };
    insta::assert_snapshot!("register_agent", json(&register));
    let info = AgentInfo {
        id: "0190a1b2c3d4e5f6".into(),
        name: "sz-1".into(),
        executor: "docker".into(),
        capacity: 4,
        running: 1,
        connected_at: Utc.with_ymd_and_hms(2026, 12, 7, 6, 0, 0).unwrap(),
        protocol: PROTOCOL,
        version: "0.1.0".into(),
    };
    insta::assert_snapshot!("agent_info", json(&info));
}

/// An image as an agent reports it.
fn busybox() -> kiln_api::pool::NodeImage {
    kiln_api::pool::NodeImage {
        id: "sha256:7c6867712e15".into(),
        tags: vec!["busybox:latest".into()],
        digests: vec!["10.0.0.5:7474/shop/busybox@sha256:9ae97d36d261".into()],
        size: 1_980_000,
        last_used: Some(Utc.with_ymd_and_hms(2026, 12, 7, 6, 0, 0).unwrap()),
    }
}

#[test]
fn prepull_orders_and_image_reports() {
    let resp = LeaseResponse {
        prepull: vec![kiln_api::agent::PrepullOrder {
            id: "0190a1b2c3d7".into(),
            image: "10.0.0.5:7474/shop/web:2".into(),
            pull: Some(kiln_api::agent::PullAuth {
                registry: "10.0.0.5:7474".into(),
                username: "kiln".into(),
                password: "kiln_pull_x.sig".into(),
            }),
        }],
        ..LeaseResponse::default()
    };
    insta::assert_snapshot!("prepull_order", json(&resp));
    let report = kiln_api::agent::ImagesReport {
        images: Some(vec![busybox()]),
        prepulls: vec![
            kiln_api::agent::PrepullDone { id: "0190a1b2c3d7".into(), error: None, millis: 812 },
            kiln_api::agent::PrepullDone {
                id: "0190a1b2c3d8".into(),
                error: Some("image \"x:1\" not found: pull failed: manifest unknown".into()),
                millis: 20,
            },
        ],
    };
    insta::assert_snapshot!("images_report", json(&report));
    // An agent of an executor without images sends none, and an older one no field.
    let old: RegisterAgent =
        serde_json::from_str(r#"{"name":"old","executor":"process","capacity":1}"#).unwrap();
    assert_eq!(old.images, None);
}

#[test]
fn an_agent_from_before_versions_speaks_protocol_1() {
    let old: RegisterAgent =
        serde_json::from_str(r#"{"name":"old","executor":"process","capacity":1}"#).unwrap();
    assert_eq!((old.protocol, old.version.as_str()), (1, ""));
    let msg = kiln_api::agent::protocol_mismatch("", old.protocol, "0.2.0", 2).unwrap();
    assert_eq!(msg, "the agent speaks protocol 1, server 0.2.0 protocol 2: upgrade the agent");
    let msg = kiln_api::agent::protocol_mismatch("0.3.0", 3, "0.2.0", 2).unwrap();
    assert_eq!(msg, "agent 0.3.0 speaks protocol 3, server 0.2.0 protocol 2: upgrade the server");
    assert_eq!(kiln_api::agent::protocol_mismatch("0.2.0", 2, "0.2.1", 2), None);
}

#[test]
fn lease_poll_and_a_typed_start_job() {
    insta::assert_snapshot!(
        "lease_request",
        json(&LeaseRequest { held: vec!["l1".into()], free: 3, wait_ms: 20_000 })
    );
    let lease = Lease {
        id: "0190a1b2c3d4".into(),
        run: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        run_name: "shop/shop#7".into(),
        project: "shop".into(),
        job_index: 0,
        start: start_job(),
        env: BTreeMap::from([
            ("KILN_JOB".to_string(), "build".to_string()),
            ("KILN_RUN_NUMBER".to_string(), "7".to_string()),
        ]),
        inputs: vec![],
        checkout: Some(Checkout {
            repository: "https://git.example/shop/app.git".into(),
            git_ref: "refs/heads/main".into(),
            commit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into(),
            credentials: None,
        }),
        instance: None,
        pull: Some(kiln_api::agent::PullAuth {
            registry: "10.0.0.5:7474".into(),
            username: "kiln".into(),
            password: "kiln_job_eyJwcm9qZWN0Ijoi.c2ln".into(),
        }),
    };
    let resp = LeaseResponse {
        leases: vec![lease],
        cancel: vec!["l2".into()],
        unknown: vec!["l3".into()],
        config: vec![],
        prepull: vec![],
    };
    insta::assert_snapshot!("lease_response", json(&resp));
}

#[test]
fn an_instance_config_and_its_updates() {
    let files = BTreeMap::from([
        ("app.yaml".to_string(), "port: 8080\nlog: warn\n".to_string()),
        ("conf.d/db.conf".to_string(), "host=db.staging\n".to_string()),
    ]);
    let config = InstanceConfig {
        path: "/etc/kiln/config".into(),
        release: 3,
        digest: "sha256:4f2a9c1b7e0d".into(),
        files: files.clone(),
        on_change: OnChange::Signal { signal: "HUP".into() },
    };
    insta::assert_snapshot!("instance_config", json(&config));
    for mode in [OnChange::Restart, OnChange::None] {
        let text = serde_json::to_string(&mode).unwrap();
        assert_eq!(serde_json::from_str::<OnChange>(&text).unwrap(), mode, "{text}");
    }
    let resp = LeaseResponse {
        config: vec![ConfigUpdate {
            lease: "0190a1b2c3d5".into(),
            release: 4,
            digest: "sha256:77e1d0c2a9b3".into(),
            files,
            signal: Some("HUP".into()),
        }],
        ..LeaseResponse::default()
    };
    insta::assert_snapshot!("config_update", json(&resp));
    let applied =
        vec![AgentEvent::ConfigApplied { release: 4, digest: "sha256:77e1d0c2a9b3".into() }];
    insta::assert_snapshot!("config_applied", json(&applied));
    // A poll answer of an older server has no `config`.
    let old: LeaseResponse =
        serde_json::from_str(r#"{"leases":[],"cancel":[],"unknown":[]}"#).unwrap();
    assert!(old.config.is_empty());
}

#[test]
fn an_instance_lease_and_its_health() {
    let mut start = start_job();
    start.job.timeout = None;
    let lease = Lease {
        id: "0190a1b2c3d5".into(),
        run: "01a24f56664d72e1".into(),
        run_name: "shop/distccd/0".into(),
        project: "shop".into(),
        job_index: 0,
        start,
        env: BTreeMap::from([("KILN_SLOT".to_string(), "0".to_string())]),
        inputs: vec![],
        checkout: None,
        instance: Some(kiln_api::agent::InstanceLease {
            service: "shop/distccd".into(),
            instance: "01a24f56664d72e1".into(),
            slot: 0,
            version: 2,
            health: Some(kiln_api::agent::HealthCheck {
                probe: kiln_api::agent::Probe::Http { port: "stats".into(), path: "/".into() },
                grace_ms: 2000,
                interval_ms: 5000,
                timeout_ms: 1000,
                failures: 3,
            }),
            config: None,
        }),
        pull: None,
    };
    insta::assert_snapshot!("instance_lease", json(&lease));
    let health = vec![
        AgentEvent::Health { healthy: true, detail: "HTTP 200".into() },
        AgentEvent::Health { healthy: false, detail: "connection refused".into() },
    ];
    insta::assert_snapshot!("health_events", json(&health));
    for probe in [
        kiln_api::agent::Probe::Tcp { port: "distcc".into() },
        kiln_api::agent::Probe::Command { argv: vec!["pgrep".into(), "distccd".into()] },
    ] {
        let text = serde_json::to_string(&probe).unwrap();
        assert_eq!(serde_json::from_str::<kiln_api::agent::Probe>(&text).unwrap(), probe);
    }
}

#[test]
fn events_and_reports() {
    let time = Utc.with_ymd_and_hms(2026, 12, 7, 6, 0, 1).unwrap();
    let events = vec![
        AgentEvent::Waiting {
            reason: "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.".into(),
        },
        AgentEvent::Started,
        AgentEvent::Log { stream: "stdout".into(), time, text: "cc -c a.c".into() },
        AgentEvent::Log { stream: "stderr".into(), time, text: "warning: unused".into() },
        AgentEvent::Output { key: "digest".into(), value: "sha256:abc".into() },
        AgentEvent::Exited { outcome: Outcome::Exited(0) },
        AgentEvent::Exited { outcome: Outcome::Exited(2) },
        AgentEvent::Exited { outcome: Outcome::TimedOut },
        AgentEvent::Exited { outcome: Outcome::Canceled },
        AgentEvent::Exited { outcome: Outcome::Error("image not found".into()) },
        AgentEvent::Exited {
            outcome: Outcome::Killed {
                code: 137,
                why: "killed by the out-of-memory killer".into(),
            },
        },
    ];
    let report = vec![LeaseReport { lease: "l1".into(), events }];
    insta::assert_snapshot!("lease_reports", json(&report));
    insta::assert_snapshot!(
        "reports_response",
        json(&ReportsResponse { cancel: vec!["l1".into()], unknown: vec!["l9".into()] })
    );
    insta::assert_snapshot!("events_response", json(&EventsResponse { cancel: true }));
    insta::assert_snapshot!("cache_query", json(&CacheQuery { key: "deps-3f2a".into() }));
}

#[test]
fn a_build_job_in_a_lease() {
    const BUILD: &str = r#"
name: shop
params:
  version: { default: "1.0" }
stages:
  - name: build
    jobs:
      image:
        build:
          context: app
          tags: ["web:${{ params.version }}", "$KILN_REGISTRY/shop/web:latest"]
          build-args: { VERSION: "${{ params.version }}" }
          target: release
"#;
    let compiled = kiln_workflow::compile("shop.yml", &Text(BUILD));
    let plan = compiled.plan.unwrap_or_else(|| panic!("{:?}", compiled.diagnostics));
    let params = kiln_workflow::bind_params(&plan, &[]).expect("defaults bind");
    let mut run = Run::new(std::sync::Arc::new(plan), params);
    let start = run
        .start()
        .into_iter()
        .find_map(|c| match c {
            Command::StartJob(sj) => Some(*sj),
            _ => None,
        })
        .expect("the build starts");
    insta::assert_snapshot!("build_job_run", json(&start.job.run));
}

#[test]
fn a_usage_report() {
    use kiln_api::usage::{UsageAmounts, UsageAttempt, UsageBy, UsageGroup, UsageReport};
    let at = |h| Utc.with_ymd_and_hms(2026, 12, 7, h, 0, 0).unwrap();
    let amounts = UsageAmounts {
        attempts: 1,
        seconds: 4,
        cpu_core_seconds: 2.0,
        memory_gib_seconds: 1.0,
        disk_gib_seconds: 0.0,
    };
    let report = UsageReport {
        project: "api".into(),
        since: at(0),
        until: at(12),
        by: UsageBy::NodeGroup,
        groups: vec![UsageGroup { key: "ci".into(), amounts }],
        total: amounts,
        attempts: vec![UsageAttempt {
            run: "0193a1b2-0000-7000-8000-000000000001".into(),
            job: "build".into(),
            attempt: 1,
            pipeline: "release".into(),
            environment: String::new(),
            node: "builder-1".into(),
            node_group: "ci".into(),
            cpu_millis: 500,
            memory_bytes: 256 << 20,
            disk_bytes: 0,
            started_at: at(9),
            ended_at: at(9) + chrono::Duration::seconds(4),
            seconds: 4,
        }],
    };
    insta::assert_snapshot!("usage_report", json(&report));
}

#[test]
fn a_log_page_with_times_and_its_last_line() {
    use kiln_api::{LogLine, LogMark, LogPage};
    let time = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 1).unwrap();
    let page = LogPage {
        lines: vec![
            LogLine {
                seq: 1024,
                time,
                stream: "stderr".into(),
                job: None,
                text: "\u{1b}[31merror\u{1b}[0m: ***".into(),
                mark: None,
            },
            LogLine {
                seq: 1025,
                time,
                stream: "stdout".into(),
                job: None,
                text: "\u{1b}[0K\u{1b}[31;1mexit status 2: make test\u{1b}[0m".into(),
                mark: Some(LogMark {
                    kind: "exit".into(),
                    name: Some("make test".into()),
                    title: None,
                    collapsed: false,
                    status: Some(2),
                }),
            },
        ],
        next: 1026,
        closed: false,
        last: 200_000,
    };
    insta::assert_snapshot!("log_page", json(&page));
    // A page from a server before `last` reads as an empty log's.
    let old: LogPage = serde_json::from_str(r#"{"lines":[],"next":1,"closed":true}"#).unwrap();
    assert_eq!(old.last, 0);
}

#[test]
fn a_node_group_its_provider_request_and_a_pool_event() {
    use kiln_api::autoscale::{
        Amount, NodeGroupInfo, NodeGroupSpec, NodeTemplate, PoolEvent, PoolNode, ProviderAnswer,
        ProviderFailure, ProviderRequest, ProviderSpec,
    };
    let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap();
    let spec = NodeGroupSpec {
        kind: None,
        name: "big".into(),
        min: 0,
        max: 8,
        idle_time: Some("5m".into()),
        node: NodeTemplate {
            cpus: Amount::Number(8.0),
            memory: Amount::Text("16Gi".into()),
            disk: None,
            ports: Some("31000-32000".into()),
            capacity: Some(4),
            attributes: BTreeMap::from([("city".into(), AttrValue::Text("paris".into()))]),
        },
        provider: ProviderSpec {
            command: Some(vec!["/etc/kiln/pool-hook.sh".into()]),
            http: None,
            env: BTreeMap::from([("REGION".into(), "***".into())]),
            timeout: None,
            boot_timeout: Some("10m".into()),
            backoff: Some("10s".into()),
        },
    };
    let info = NodeGroupInfo {
        spec,
        nodes: vec![PoolNode {
            name: "big-1f2e3d4c".into(),
            state: "ready".into(),
            running: 2,
            idle_ms: None,
        }],
        failure: Some(ProviderFailure {
            action: "up".into(),
            error: "`/etc/kiln/pool-hook.sh up` exited with status 3: quota".into(),
            failures: 2,
            retry_at: at,
        }),
        updated_at: at,
    };
    insta::assert_snapshot!("node_group_info", json(&info));
    let req = ProviderRequest {
        action: "up".into(),
        group: "big".into(),
        count: 2,
        nodes: vec!["big-1f2e3d4c".into(), "big-9a8b7c6d".into()],
        server: "http://10.0.0.5:7171".into(),
        agent_args: vec!["--attribute".into(), "group=big".into(), "--cpus".into(), "8".into()],
    };
    insta::assert_snapshot!("provider_request", json(&req));
    insta::assert_snapshot!(
        "provider_answer",
        json(&ProviderAnswer { nodes: vec!["i-0abc".into()] })
    );
    let event = PoolEvent {
        id: 7,
        at,
        group: "big".into(),
        kind: "scale-out".into(),
        nodes: vec!["big-1f2e3d4c".into()],
        reason: "asked for 1 node(s): 3 tasks fit no current node".into(),
    };
    insta::assert_snapshot!("pool_event", json(&event));
}
