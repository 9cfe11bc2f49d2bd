//! What the server stands on, checked and named when it fails: the data directory (still
//! there, the same one, writable) and the database. A write to the API while the data
//! directory is read-only, missing or replaced is refused at once (503 `unavailable` naming
//! the directory and what is wrong) rather than half done; an answer that a storage fault
//! failed (507 or 503, see [`crate::error::ApiErr::storage`]) gets its cause named the same
//! way, or the database named when that is what went away. Both pass by themselves once the
//! directory or the database is back: nothing is remembered between requests.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::App;
use crate::error::{ApiErr, StorageAnswer};

/// The data directory and the database, as the server started on them.
#[derive(Debug)]
pub struct Storage {
    data: PathBuf,
    /// Device and inode of the data directory at start: another directory put at its path
    /// (a restored backup, an empty one) is not the one the server has open.
    id: Option<(u64, u64)>,
    /// The database when it is a server of its own (`PostgreSQL database D at H:P`).
    database: Option<String>,
}

impl Storage {
    /// The data directory `data` as it is now, and the store's database.
    pub fn new(data: &Path, store: &kiln_store::Store) -> Storage {
        let id = std::fs::metadata(data).ok().map(|m| (m.dev(), m.ino()));
        let database = match store.db() {
            kiln_store::Db::Postgres(pool) => {
                let o = pool.connect_options();
                Some(format!(
                    "the PostgreSQL database {} at {}:{}",
                    o.get_database().unwrap_or(o.get_username()),
                    o.get_host(),
                    o.get_port()
                ))
            }
            kiln_store::Db::Sqlite(_) => None,
        };
        Storage { data: data.to_path_buf(), id, database }
    }

    /// What is wrong with the data directory now, if anything: missing, replaced, read-only
    /// or not writable by the server. One `stat` and one `access`.
    pub fn data_fault(&self) -> Option<String> {
        let data = self.data.display();
        let meta = match std::fs::metadata(&self.data) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(format!(
                    "the data directory {data} is missing (removed or renamed while the server \
                     runs); put it back"
                ));
            }
            Err(e) => return Some(format!("the data directory {data} cannot be read: {e}")),
        };
        if self.id.is_some_and(|id| id != (meta.dev(), meta.ino())) {
            return Some(format!(
                "the data directory {data} was replaced by another directory while the server \
                 runs; put the original back (or restart the server to use the new one)"
            ));
        }
        match rustix::fs::access(&self.data, rustix::fs::Access::WRITE_OK) {
            Ok(()) => None,
            Err(e) if e == rustix::io::Errno::ROFS => Some(format!(
                "the data directory {data} is on a read-only file system; writes are refused \
                 until it is writable again"
            )),
            Err(e) => Some(format!("the data directory {data} is not writable: {e}")),
        }
    }

    /// The cause of a storage fault `message` named: the data directory's fault if it has
    /// one, else the database when it is unreachable (`unavailable`), else `message` as is.
    pub fn describe(&self, unavailable: bool, message: &str) -> String {
        if let Some(fault) = self.data_fault() {
            return format!("{fault} ({message})");
        }
        match &self.database {
            Some(db) if unavailable => format!("{db} cannot be used now: {message}"),
            _ => message.to_string(),
        }
    }
}

/// A request that changes something: the API's writes, not an agent's reports (an agent
/// keeps its events and outcomes until they are taken, and the runs they belong to wait for
/// the storage by themselves).
fn is_write(method: &Method, path: &str) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        && path.starts_with("/api/v1/")
        && !["/api/v1/agents", "/api/v1/leases/"].iter().any(|p| path.starts_with(p))
}

/// The middleware: refuses writes while the data directory is at fault, and names the cause
/// in every storage fault answer.
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    if is_write(req.method(), req.uri().path())
        && let Some(fault) = app.storage.data_fault()
    {
        tracing::warn!("refused {} {}: {fault}", req.method(), req.uri().path());
        return ApiErr::storage(false, fault).into_response();
    }
    let resp = next.run(req).await;
    let Some(answer) = resp.extensions().get::<StorageAnswer>().cloned() else { return resp };
    let message = app.storage.describe(!answer.full, &answer.message);
    if message == answer.message {
        return resp;
    }
    ApiErr::storage(answer.full, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_of_the_api_are_guarded_and_an_agent_s_reports_are_not() {
        assert!(is_write(&Method::POST, "/api/v1/projects/a/pipelines/p/runs"));
        assert!(is_write(&Method::PUT, "/api/v1/projects/a/secrets/s"));
        assert!(is_write(&Method::DELETE, "/api/v1/projects/a/services/web"));
        assert!(!is_write(&Method::GET, "/api/v1/runs"));
        assert!(!is_write(&Method::POST, "/api/v1/agents/x/reports"));
        assert!(!is_write(&Method::POST, "/api/v1/leases/l/events"));
        assert!(!is_write(&Method::POST, "/v2/a/b/blobs/uploads/"));
    }
}
