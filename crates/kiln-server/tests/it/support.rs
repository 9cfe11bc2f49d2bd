//! The shared test kit (`kiln-testkit`: a real server on loopback with its agent on the
//! process executor, on SQLite or a fresh PostgreSQL database), and what only these tests
//! read of a run.

use kiln_api::RunDetail;
pub use kiln_testkit::{Backend, TestAgent, TestServer, host, is_final};

/// Job `id` of a run, or a panic that shows the run.
pub fn job<'a>(d: &'a RunDetail, id: &str) -> &'a kiln_api::JobInfo {
    d.jobs.iter().find(|j| j.id == id).unwrap_or_else(|| panic!("no job {id} in {d:#?}"))
}

/// The text of a run's log lines (one job's, or the whole run's).
pub async fn log_text(s: &TestServer, run: &str, job: Option<&str>) -> Vec<String> {
    let page = s.admin.logs(run, job, None, 1, 10_000).await.unwrap();
    page.lines.into_iter().map(|l| l.text).collect()
}
