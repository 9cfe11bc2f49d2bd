//! The main scenarios again, each on a fresh PostgreSQL database, when
//! `KILN_STORE_TEST_POSTGRES` names a server (`cargo xtask ci` starts one and sets it, with
//! `KILN_REQUIRE_POSTGRES=1` so that these fail rather than skip without it).

use crate::support::{Backend, TestServer};
use crate::{
    api, config, deploys, environments, files, git, instance_config, scans, schedules, scrape,
    trigger, usage,
};

/// `#[tokio::test] fn NAME` running `SCENARIO` on a fresh PostgreSQL database, or skipping it.
macro_rules! on_postgres {
    ($($name:ident => $scenario:path;)*) => {$(
        #[tokio::test]
        async fn $name() {
            if let Some(backend) = Backend::postgres(stringify!($name)).await {
                $scenario(backend).await;
            }
        }
    )*};
}

on_postgres! {
    usage_on_postgres =>
        usage::usage_adds_up_to_reservations_times_seconds_and_survives_restarts_on;
    scan_findings_and_notices_on_postgres =>
        scans::a_pushed_image_has_exactly_the_expected_findings_and_a_later_advisory_notifies_it_once_on;
    scan_policy_on_postgres =>
        scans::the_image_policy_refuses_latest_and_deploys_of_an_image_with_a_critical_finding_on;
    apply_keeps_versions_on_postgres =>
        api::invalid_workflow_is_refused_with_positions_and_nothing_is_stored_on;
    trigger_records_outputs_on_postgres =>
        api::trigger_runs_jobs_and_records_states_outputs_durations_and_who_on;
    approvals_on_postgres =>
        api::approval_stage_pauses_until_approved_or_rejected_and_records_who_and_when_on;
    cancel_on_postgres => api::cancel_kills_running_jobs_on;
    retry_on_postgres => api::retry_reruns_failed_jobs_and_keeps_the_outputs_of_passed_ones_on;
    concurrency_on_postgres => api::concurrency_limit_queues_runs_fifo_on;
    tokens_and_roles_on_postgres => api::every_call_needs_a_token_and_roles_limit_what_it_may_do_on;
    secrets_on_postgres => api::secrets_are_encrypted_injected_and_masked_in_logs_on;
    artifacts_on_postgres =>
        files::artifacts_are_stored_listed_downloaded_and_placed_into_needing_jobs_on;
    caches_on_postgres => files::caches_are_restored_before_and_saved_after_the_job_on;
    missed_schedules_on_postgres => schedules::missed_fires_are_skipped_or_run_once_on;
    crash_after_fire_claim_on_postgres =>
        schedules::a_crash_after_a_fire_is_claimed_loses_and_doubles_nothing_on;
    crash_after_delivery_claim_on_postgres =>
        git::a_crash_after_a_delivery_is_claimed_loses_and_doubles_nothing_on;
    trigger_job_on_postgres =>
        trigger::a_trigger_job_passes_an_output_as_a_param_waits_and_gets_the_downstream_outputs_on;
    trigger_job_restart_on_postgres =>
        trigger::a_restart_while_a_trigger_job_waits_resumes_it_without_a_second_run_on;
    metric_rules_on_postgres =>
        scrape::a_bad_rule_file_is_refused_with_positions_and_nothing_is_stored_on;
    environments_on_postgres =>
        environments::environments_keep_their_order_and_variables_with_secrets_masked_on;
    config_render_errors_on_postgres =>
        config::render_errors_name_file_and_line_and_store_nothing_on;
    config_approvals_on_postgres =>
        config::a_protected_environment_needs_a_second_person_to_approve_on;
    config_watch_resumes_on_postgres =>
        config::a_watch_resumes_after_a_server_restart_with_the_latest_release_and_no_duplicate_on;
    deploys_on_postgres => deploys::deploys_supersede_and_roll_back_by_themselves_and_by_hand_on;
    bad_deploys_on_postgres => deploys::bad_deploys_are_refused_and_nothing_is_stored_on;
}

/// Instances in an environment with config files, on PostgreSQL (host ports 47050-47099).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instance_config_on_postgres() {
    if let Some(backend) = Backend::postgres("instance_config_on_postgres").await {
        instance_config::instances_get_their_environment_and_config_and_releases_are_written_in_place_on(
            backend, 47050,
        )
        .await;
    }
}

/// On PostgreSQL nothing of the state is in the data directory: a second server on the same
/// database finds the first one's admin token and pipelines, and a paused run it resumes.
#[tokio::test]
async fn a_restarted_server_finds_its_state_in_postgres_not_in_the_data_directory() {
    let Some(backend) = Backend::postgres("restart_on_postgres").await else { return };
    let s = TestServer::start_on(backend.clone()).await;
    assert!(!s.data.join("kiln.db").exists(), "no SQLite database beside PostgreSQL");
    s.apply("api", "gated", GATED).await;
    let run = s.trigger("api", "gated", &[]).await;
    s.wait_for(&run.id, "paused", |d| d.run.state == "paused").await;
    let data = s.data.clone();
    // Stop the first server without dropping the database (`stop` would).
    let mut s = s;
    let first = s.server.take().unwrap();
    first.stop().await;

    let again = kiln_server::start(kiln_server::ServerConfig {
        database: backend.database_url(),
        ..kiln_server::ServerConfig::new(data, "127.0.0.1:0".parse().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(again.first_admin_token, None, "the admin token is in the database already");
    assert_eq!(again.resumed, 1, "the paused run is resumed");
    let admin = kiln_client::Client::new(&again.url, &s.admin_token).unwrap();
    assert_eq!(admin.pipeline("api", "gated").await.unwrap().version, 1);
    assert_eq!(admin.run(&run.id).await.unwrap().run.state, "paused");
    again.stop().await;
    s.stop().await;
}

const GATED: &str = r#"
name: gated
stages:
  - name: build
    jobs:
      build: { script: "echo JOB_OUT v=7" }
  - name: approve
    type: approval
  - name: deploy
    jobs:
      deploy: { script: "echo deploying v$v" }
"#;
