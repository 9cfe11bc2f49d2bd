//! The server's object store as the log store's archive: finished job logs moved to
//! `<object store>/logs/` ([`LogObjects`], a [`kiln_logs::LogArchive`] over
//! [`kiln_objstore::Objects`]), and which logs go there ([`is_job_log`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_logs::{LogArchive, LogKey};
use kiln_objstore::Objects;

/// [`LogArchive`] over an object store. Its blocking calls run the store's futures on the
/// server's runtime (`block_in_place` + `block_on`): the log store calls them from its
/// archiving thread and from readers off the runtime's workers.
#[derive(Debug)]
pub struct LogObjects {
    objects: Arc<dyn Objects>,
    /// Where a log file is linked (or copied) before an upload that consumes it.
    staging: PathBuf,
    runtime: tokio::runtime::Handle,
}

impl LogObjects {
    /// Over `objects`, staging in `staging` (emptied; best on the log directory's filesystem:
    /// a hard link then, else a copy), on the current runtime.
    pub fn new(objects: Arc<dyn Objects>, staging: impl Into<PathBuf>) -> io::Result<LogObjects> {
        let staging = staging.into();
        std::fs::create_dir_all(&staging)?;
        // Links an earlier process left mid-upload.
        for entry in std::fs::read_dir(&staging)? {
            let _ = std::fs::remove_file(entry?.path());
        }
        Ok(LogObjects { objects, staging, runtime: tokio::runtime::Handle::current() })
    }

    fn block<T>(&self, f: impl Future<Output = T>) -> T {
        tokio::task::block_in_place(|| self.runtime.block_on(f))
    }
}

impl LogArchive for LogObjects {
    fn put_file(&self, name: &str, file: &Path) -> io::Result<()> {
        let staged = self.staging.join(format!("log-{}", uuid::Uuid::now_v7().simple()));
        if std::fs::hard_link(file, &staged).is_err() {
            std::fs::copy(file, &staged)?;
        }
        let put = self.block(self.objects.put_file(name, &staged));
        if put.is_err() {
            let _ = std::fs::remove_file(&staged);
        }
        put
    }

    fn put_bytes(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.block(self.objects.put_bytes(name, bytes.into()))
    }

    fn get(&self, name: &str, range: Option<(u64, u64)>) -> io::Result<Option<Vec<u8>>> {
        self.block(async {
            match self.objects.get(name, range).await? {
                Some(object) => Ok(Some(object.bytes().await?)),
                None => Ok(None),
            }
        })
    }

    fn describe(&self) -> String {
        self.objects.describe()
    }
}

/// Whether `key` is a job attempt's log (`runs/<run>/<job index>/<attempt>`), the logs moved
/// to the object store once closed (a run's log is a view over them and stays local; service
/// instances' logs stay local).
pub fn is_job_log(key: &LogKey) -> bool {
    let parts: Vec<&str> = key.as_str().split('/').collect();
    matches!(parts.as_slice(), ["runs", _, job, attempt]
        if job.bytes().all(|b| b.is_ascii_digit()) && attempt.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::is_job_log;
    use kiln_logs::LogKey;

    #[test]
    fn only_job_attempt_logs_are_archived() {
        let key = |k: &str| LogKey::new(k).unwrap();
        assert!(is_job_log(&key("runs/0193-ab/0/1")));
        assert!(is_job_log(&key("runs/0193-ab/12/3")));
        assert!(!is_job_log(&key("runs/0193-ab/all")));
        assert!(!is_job_log(&key("services/s/i")));
        assert!(!is_job_log(&key("runs/0193-ab/x/1")));
        assert!(!is_job_log(&key("runs/0193-ab/0/1/2")));
    }
}
