//! The PreStart/PostStop wrapper around one job attempt, the same for the agent and for
//! `kiln run`:
//!
//! 1. PreStart: the workflow's `source` commit is checked out ([`crate::checkout`]), then the
//!    artifacts of the jobs it needs and its restored `cache:` are unpacked, all into a seed
//!    directory that the executor copies into the workspace;
//! 2. the task runs through [`drive_task`] (timeout, cancel, `JOB_OUT`), the workspace
//!    exported when something is kept from it;
//! 3. PostStop: `artifacts:` paths are packed from the workspace and kept, then `cache:` paths
//!    (on success). The job's exit code passes through; a failed artifact save fails a job
//!    that had exited 0 (downstream jobs would miss the files), a failed cache save is a
//!    warning in the log. Every step says what it did in the job's log (`kiln: …` lines).
//!
//! Where archives come from and go to is the [`Files`] trait: the agent's implementation
//! talks to the server's lease endpoints, [`DirFiles`] uses directories on this machine.
//! Nothing here knows of HTTP or a server.

use std::future::Future;
use std::path::{Path, PathBuf};

use kiln_engine::Outcome;
use kiln_exec::{Executor, LogLine, Stream, TaskSpec};
use kiln_workflow::plan::{ArtifactWhen, CachePolicy, Job};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::archive;
use crate::checkout::{self, Checkout};
use crate::task::{TaskEvent, TaskRequest, drive_task};

/// Why a [`Files`] call failed (a transport or file-system error, shown as it is).
pub type FilesError = Box<dyn std::error::Error + Send + Sync>;

/// Where an attempt's archives (gzip-compressed tars) come from and go to. Each call may
/// run concurrently with the calls of other attempts; none is retried by the wrapper.
pub trait Files: Send + Sync {
    /// Writes the artifacts archive that job `job` of this run kept to `dest`. `Ok(false)`:
    /// the job kept none (skipped, failed, or matched no file).
    fn fetch_input(
        &self,
        job: &str,
        dest: &Path,
    ) -> impl Future<Output = Result<bool, FilesError>> + Send;

    /// Writes the cache archive saved under `key` (the final key, files' hash included) to
    /// `dest`. `Ok(false)`: no such cache.
    fn fetch_cache(
        &self,
        key: &str,
        dest: &Path,
    ) -> impl Future<Output = Result<bool, FilesError>> + Send;

    /// Keeps `archive` as this attempt's artifacts (a later attempt's replace them).
    fn put_artifacts(&self, archive: &Path) -> impl Future<Output = Result<(), FilesError>> + Send;

    /// Keeps `archive` as the cache `key`, replacing what was saved under it.
    fn put_cache(
        &self,
        key: &str,
        archive: &Path,
    ) -> impl Future<Output = Result<(), FilesError>> + Send;
}

/// One attempt to run inside the wrapper.
#[derive(Debug)]
pub struct Attempt<'a> {
    /// The rendered job: its timeout, `cache:` and `artifacts:`.
    pub job: &'a Job,
    /// The task to run (id, labels, env, ports set by the caller); its `seed` is set here.
    pub spec: TaskSpec,
    /// Jobs whose artifacts are placed into the workspace, in this order (a later one wins).
    pub inputs: &'a [String],
    /// The commit to check out into the workspace before anything else.
    pub checkout: Option<&'a Checkout>,
    /// Whether `cache:` is restored and saved (`false`: `kiln run --no-cache`).
    pub cache: bool,
    /// Scratch space of this attempt (seed, workspace export, archives); created when
    /// needed, removed by the caller afterwards.
    pub dir: &'a Path,
}

/// Runs `attempt` wrapped: PreStart, [`drive_task`], PostStop. Never fails: a PreStart
/// error is written to the log (`kiln: error: …`) and becomes `Outcome::Error`. Every log
/// line, the wrapper's own included, goes to `on_event`.
pub async fn run_attempt<F: Files>(
    executor: &dyn Executor,
    files: &F,
    attempt: Attempt<'_>,
    cancel: &CancellationToken,
    mut on_event: impl FnMut(TaskEvent) + Send,
) -> Outcome {
    match wrapped(executor, files, attempt, cancel, &mut on_event).await {
        Ok(o) => o,
        Err(e) => {
            note(&mut on_event, format!("error: {e}"));
            Outcome::Error(e)
        }
    }
}

/// A `kiln: …` line in the job's log.
fn note(on_event: &mut (impl FnMut(TaskEvent) + Send), text: impl Into<String>) {
    on_event(TaskEvent::Log(LogLine {
        stream: Stream::Stderr,
        time: chrono::Utc::now(),
        text: format!("kiln: {}", text.into()),
    }));
}

/// A size for people: `12 B`, `3.4 KiB`, `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, archive::ArchiveError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("worker failed: {e}"))?
        .map_err(|e| e.to_string())
}

async fn file_size(path: &Path) -> u64 {
    tokio::fs::metadata(path).await.map(|m| m.len()).unwrap_or(0)
}

async fn wrapped<F: Files>(
    executor: &dyn Executor,
    files: &F,
    attempt: Attempt<'_>,
    cancel: &CancellationToken,
    on_event: &mut (impl FnMut(TaskEvent) + Send),
) -> Result<Outcome, String> {
    let Attempt { job, mut spec, inputs, checkout, cache, dir } = attempt;
    let cache_spec = job.cache.as_ref().filter(|_| cache);
    let seed = dir.join("seed");
    let wants_cache_save = cache_spec.is_some_and(|c| c.policy != CachePolicy::Pull);
    let export = (job.artifacts.is_some() || wants_cache_save).then(|| dir.join("workspace.tar"));
    // Scratch space only for a job that receives or keeps files: most jobs need none, and
    // creating and removing directories per job is not free.
    let scratch =
        checkout.is_some() || !inputs.is_empty() || cache_spec.is_some() || export.is_some();
    if scratch {
        tokio::fs::create_dir_all(&seed)
            .await
            .map_err(|e| format!("create {}: {e}", seed.display()))?;
    }

    // PreStart: the source commit, then artifacts of needed jobs, then the cache.
    if let Some(c) = checkout {
        let done = checkout::checkout(c, &seed)
            .await
            .map_err(|e| format!("checking out {}: {e}", c.repository))?;
        let at = if c.git_ref.is_empty() { String::new() } else { format!(" ({})", c.git_ref) };
        note(on_event, format!("checked out {} of {}{at}", done.commit, c.repository));
    }
    for input in inputs {
        let archive_path = dir.join("input.tar.gz");
        match files.fetch_input(input, &archive_path).await {
            Ok(true) => {
                let seed2 = seed.clone();
                let unpacked = blocking(move || archive::unpack(&archive_path, &seed2))
                    .await
                    .map_err(|e| format!("unpacking the artifacts of `{input}`: {e}"))?;
                for skipped in &unpacked.skipped {
                    note(on_event, format!("warning: artifacts of `{input}`: {skipped}"));
                }
                note(
                    on_event,
                    format!(
                        "placed {} file(s) from the artifacts of `{input}`",
                        unpacked.files.len()
                    ),
                );
            }
            Ok(false) => note(on_event, format!("job `{input}` stored no artifacts")),
            Err(e) => return Err(format!("downloading the artifacts of `{input}`: {e}")),
        }
    }
    let cache_key = match cache_spec {
        Some(c) => {
            let mut key = c.key.clone();
            if !c.files.is_empty() {
                let (s, files) = (seed.clone(), c.files.clone());
                let hash = blocking(move || archive::hash_files(&s, &files))
                    .await
                    .map_err(|e| format!("cache key files: {e}"))?;
                key = format!("{key}-{hash}");
            }
            if c.policy != CachePolicy::Push {
                let archive_path = dir.join("cache-in.tar.gz");
                match files.fetch_cache(&key, &archive_path).await {
                    Ok(true) => {
                        let size = file_size(&archive_path).await;
                        let s = seed.clone();
                        match blocking(move || archive::unpack(&archive_path, &s)).await {
                            Ok(unpacked) => {
                                for skipped in &unpacked.skipped {
                                    note(on_event, format!("warning: cache `{key}`: {skipped}"));
                                }
                                note(
                                    on_event,
                                    format!(
                                        "restored cache `{key}` ({} file(s), {})",
                                        unpacked.files.len(),
                                        human_bytes(size)
                                    ),
                                )
                            }
                            Err(e) => note(
                                on_event,
                                format!("warning: cache `{key}` could not be restored: {e}"),
                            ),
                        }
                    }
                    Ok(false) => note(
                        on_event,
                        format!("cache `{key}` not found; the job starts without it"),
                    ),
                    Err(e) => {
                        note(on_event, format!("warning: cache `{key}` could not be fetched: {e}"))
                    }
                }
            }
            Some(key)
        }
        None => None,
    };

    // An empty seed is not handed over: copying nothing into a container still costs an
    // archive round trip to the engine on every job start.
    spec.seed = if scratch { non_empty(&seed).await } else { None };

    let result = drive_task(
        executor,
        TaskRequest { spec, timeout: job.timeout, export: export.clone() },
        cancel.clone(),
        &mut *on_event,
    )
    .await;
    let mut outcome = result.outcome;
    let exported = match (&export, &result.export) {
        (Some(path), Some(Ok(()))) => Some(path.clone()),
        (Some(_), Some(Err(e))) => {
            note(on_event, format!("reading the workspace failed: {e}"));
            if job.artifacts.is_some() && outcome == Outcome::Exited(0) {
                outcome = Outcome::Error(format!(
                    "the job exited 0, but its artifacts could not be read: {e}"
                ));
            }
            None
        }
        _ => None,
    };

    // PostStop: artifacts, then the cache.
    if let (Some(spec), Some(ws)) = (&job.artifacts, &exported) {
        let wanted = match spec.when {
            ArtifactWhen::OnSuccess => outcome == Outcome::Exited(0),
            ArtifactWhen::OnFailure => {
                matches!(outcome, Outcome::Exited(c) if c != 0)
                    || matches!(outcome, Outcome::Killed { .. })
            }
            ArtifactWhen::Always => true,
        };
        if wanted {
            let out = dir.join("artifacts.tar.gz");
            let (ws2, out2, paths) = (ws.clone(), out.clone(), spec.paths.clone());
            let selected = blocking(move || archive::select(&ws2, &paths, &out2)).await;
            for skipped in selected.iter().flat_map(|c| &c.skipped) {
                note(on_event, format!("warning: artifacts: {skipped}"));
            }
            let saved = match selected.map(|c| c.files) {
                Ok(files) if files.is_empty() => {
                    note(
                        on_event,
                        format!("warning: no files match the artifacts paths {:?}", spec.paths),
                    );
                    Ok(())
                }
                Ok(selected) => {
                    let size = file_size(&out).await;
                    match files.put_artifacts(&out).await {
                        Ok(()) => {
                            note(
                                on_event,
                                format!(
                                    "stored artifacts: {} file(s), {}",
                                    selected.len(),
                                    human_bytes(size)
                                ),
                            );
                            Ok(())
                        }
                        Err(e) => Err(format!("uploading artifacts failed: {e}")),
                    }
                }
                Err(e) => Err(format!("packing artifacts failed: {e}")),
            };
            if let Err(e) = saved {
                note(on_event, format!("error: {e}"));
                if outcome == Outcome::Exited(0) {
                    outcome = Outcome::Error(format!("the job exited 0, but {e}"));
                }
            }
        }
    }
    if let (Some(c), Some(key), Some(ws)) = (cache_spec, &cache_key, &exported)
        && c.policy != CachePolicy::Pull
        && outcome == Outcome::Exited(0)
    {
        let out = dir.join("cache-out.tar.gz");
        let (ws2, out2, paths) = (ws.clone(), out.clone(), c.paths.clone());
        let selected = blocking(move || archive::select(&ws2, &paths, &out2)).await;
        for skipped in selected.iter().flat_map(|c| &c.skipped) {
            note(on_event, format!("warning: cache `{key}`: {skipped}"));
        }
        let saved = match selected.map(|c| c.files) {
            Ok(selected) if selected.is_empty() => {
                Err(format!("no files match the cache paths {:?}", c.paths))
            }
            Ok(selected) => {
                let size = file_size(&out).await;
                files
                    .put_cache(key, &out)
                    .await
                    .map(|()| {
                        format!(
                            "saved cache `{key}` ({} file(s), {})",
                            selected.len(),
                            human_bytes(size)
                        )
                    })
                    .map_err(|e| format!("uploading cache `{key}` failed: {e}"))
            }
            Err(e) => Err(format!("packing cache `{key}` failed: {e}")),
        };
        match saved {
            Ok(msg) => note(on_event, msg),
            Err(e) => note(on_event, format!("warning: {e}")),
        }
    }
    Ok(outcome)
}

/// `dir` if it holds anything, else `None`: also when it does not exist, and `Some` when it
/// cannot be read otherwise (the executor would fail on it just the same, and an unreadable
/// seed is better reported there).
pub async fn non_empty(dir: &Path) -> Option<PathBuf> {
    match tokio::fs::read_dir(dir).await {
        Ok(mut entries) => match entries.next_entry().await {
            Ok(None) => None,
            _ => Some(dir.to_path_buf()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some(dir.to_path_buf()),
    }
}

/// [`Files`] in directories of this machine, for `kiln run`: a run's artifacts in
/// `artifacts/<job>.tar.gz` (and unpacked in `artifacts/<job>/`, for people), caches in
/// `<cache>/<SHA-256 of the key>.tar.gz`, as the server's blob directory lays out one
/// project's caches. Files are written to a temporary name and renamed, so a reader never
/// sees half an archive.
#[derive(Debug, Clone)]
pub struct DirFiles {
    /// The run's artifacts directory.
    pub artifacts: PathBuf,
    /// The cache directory (one project's).
    pub cache: PathBuf,
    /// The job whose attempt this is (whose artifacts [`Files::put_artifacts`] keeps).
    pub job: String,
}

impl DirFiles {
    /// Where job `job`'s artifacts archive is kept.
    pub fn artifacts_archive(&self, job: &str) -> PathBuf {
        self.artifacts.join(format!("{}.tar.gz", file_name(job)))
    }

    /// Where the cache `key` is kept.
    pub fn cache_archive(&self, key: &str) -> PathBuf {
        self.cache.join(format!("{}.tar.gz", hex::encode(Sha256::digest(key.as_bytes()))))
    }
}

/// A job id as a file name (`/` cannot be one's part).
fn file_name(job: &str) -> String {
    job.replace('/', "_")
}

/// Copies `from` to `to` through a temporary file and a rename.
async fn install(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let tmp = to.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
    tokio::fs::copy(from, &tmp).await?;
    match tokio::fs::rename(&tmp, to).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Copies `from` to `dest` if it exists: `Ok(false)` when it does not.
async fn fetch(from: &Path, dest: &Path) -> Result<bool, FilesError> {
    match tokio::fs::copy(from, dest).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("{}: {e}", from.display()).into()),
    }
}

impl Files for DirFiles {
    async fn fetch_input(&self, job: &str, dest: &Path) -> Result<bool, FilesError> {
        fetch(&self.artifacts_archive(job), dest).await
    }

    async fn fetch_cache(&self, key: &str, dest: &Path) -> Result<bool, FilesError> {
        fetch(&self.cache_archive(key), dest).await
    }

    async fn put_artifacts(&self, archive: &Path) -> Result<(), FilesError> {
        let kept = self.artifacts_archive(&self.job);
        install(archive, &kept).await.map_err(|e| format!("{}: {e}", kept.display()))?;
        // Unpacked beside it for people to look at; a retry's replace an earlier attempt's.
        let open = self.artifacts.join(file_name(&self.job));
        match tokio::fs::remove_dir_all(&open).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("{}: {e}", open.display()).into());
            }
            _ => {}
        }
        blocking(move || archive::unpack(&kept, &open)).await?;
        Ok(())
    }

    async fn put_cache(&self, key: &str, archive: &Path) -> Result<(), FilesError> {
        let kept = self.cache_archive(key);
        install(archive, &kept).await.map_err(|e| format!("{}: {e}", kept.display()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::non_empty;

    #[tokio::test]
    async fn only_a_seed_with_files_is_handed_to_the_executor() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(non_empty(dir.path()).await, None);
        std::fs::write(dir.path().join("restored.txt"), "cache").unwrap();
        assert_eq!(non_empty(dir.path()).await.as_deref(), Some(dir.path()));
        assert_eq!(non_empty(&dir.path().join("never-made")).await, None);
    }
}
