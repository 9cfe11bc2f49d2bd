//! `kiln artifacts RUN [--job JOB] [--download [DIR]]`: list a run's artifacts, or extract
//! each job's archive into `DIR/<job>/` with `kiln_runtime::archive::unpack`, under the same
//! rule as a job's inputs: entries that would land outside are refused, symlinks leading out
//! are skipped with a warning, and an archive past the limits (bytes, entries) is refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use futures::StreamExt;
use kiln_api::Artifact;
use kiln_client::Client;
use kiln_runtime::archive::Skipped;
use serde::Serialize;

use super::{CmdResult, Conn, Fail, human_size, outln, print_json, table};
use crate::Format;

/// Files listed per job in the table before `… and N more`.
const FILES_SHOWN: usize = 8;

/// `kiln artifacts`.
#[derive(Debug, Args)]
pub struct ArtifactsArgs {
    /// The run: its id or `project/pipeline#number`.
    run: String,
    /// Only this job's artifacts.
    #[arg(long)]
    job: Option<String>,
    /// Download and extract each job's artifacts into DIR/<job>/.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = ".")]
    download: Option<PathBuf>,
    #[command(flatten)]
    conn: Conn,
}

/// What a download wrote, for `-o json`.
#[derive(Debug, Serialize)]
struct Extracted {
    job: String,
    dir: String,
    files: Vec<ExtractedFile>,
    /// Symlinks left out (they lead outside the directory), each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    skipped: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ExtractedFile {
    path: String,
    size: u64,
}

/// The directory name of a job's artifacts: its id with path separators replaced, so a
/// matrix value like `linux/amd64` stays one directory.
fn job_dir(job: &str) -> String {
    let name: String = job.chars().map(|c| if c == '/' || c == '\\' { '_' } else { c }).collect();
    if name.is_empty() || name == "." || name == ".." { format!("_{name}") } else { name }
}

/// Runs `kiln artifacts`.
pub async fn artifacts(args: ArtifactsArgs) -> CmdResult {
    super::check_run(&args.run)?;
    let client = args.conn.client()?;
    let run = client.run(&args.run).await?;
    let mut list = client.artifacts(&run.run.id).await?;
    if let Some(job) = &args.job {
        if !run.jobs.iter().any(|j| &j.id == job) {
            return Err(Fail::invalid(format!("run {} has no job `{job}`", run.run.full_name())));
        }
        list.retain(|a| &a.job == job);
    }
    let json = args.conn.output == Format::Json;
    let Some(dir) = &args.download else {
        if json {
            print_json(&list)?;
        } else if list.is_empty() {
            eprintln!("run {} stored no artifacts", run.run.full_name());
        } else {
            print_table(&list);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if list.is_empty() {
        if json {
            print_json(&Vec::<Extracted>::new())?;
        }
        return Err(Fail::invalid(format!(
            "run {} stored no artifacts{}",
            run.run.full_name(),
            args.job.as_deref().map(|j| format!(" for job `{j}`")).unwrap_or_default()
        )));
    }
    let mut written = Vec::new();
    for a in &list {
        let dest = dir.join(job_dir(&a.job));
        let (files, skipped) = download(&client, &run.run.id, a, dir, &dest).await?;
        for s in &skipped {
            eprintln!("warning: artifacts of `{}`: {s}", a.job);
        }
        if !json {
            outln!(
                "{}: {} file{} ({}) → {}",
                a.job,
                files.len(),
                if files.len() == 1 { "" } else { "s" },
                human_size(files.iter().map(|f| f.size).sum()),
                dest.display()
            );
            for f in &files {
                outln!("  {}", dest.join(&f.path).display());
            }
        }
        let skipped = skipped.iter().map(ToString::to_string).collect();
        written.push(Extracted {
            job: a.job.clone(),
            dir: dest.display().to_string(),
            files,
            skipped,
        });
    }
    if json {
        print_json(&written)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(list: &[Artifact]) {
    let mut t = table(&["JOB", "FILES", "SIZE", "DIGEST"]);
    for a in list {
        let mut files: Vec<String> = a
            .files
            .iter()
            .take(FILES_SHOWN)
            .map(|f| format!("{} ({})", f.path, human_size(f.size)))
            .collect();
        if a.files.len() > FILES_SHOWN {
            files.push(format!("… and {} more", a.files.len() - FILES_SHOWN));
        }
        let job = if a.attempt > 1 {
            format!("{} (attempt {})", a.job, a.attempt)
        } else {
            a.job.clone()
        };
        let digest = match a.digest.split_once(':') {
            Some((algo, hex)) if hex.len() > 16 => format!("{algo}:{}", &hex[..16]),
            _ => a.digest.clone(),
        };
        t.add_row(vec![job, files.join("\n"), human_size(a.size), digest]);
    }
    outln!("{t}");
}

/// Downloads one job's archive into a temporary file in `dir` and extracts it into `dest`:
/// the files written and the symlinks skipped.
async fn download(
    client: &Client,
    run_id: &str,
    artifact: &Artifact,
    dir: &Path,
    dest: &Path,
) -> Result<(Vec<ExtractedFile>, Vec<Skipped>), Fail> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Fail::invalid(format!("cannot create {}: {e}", dir.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kiln-artifact-")
        .suffix(".tar.gz")
        .tempfile_in(dir)
        .map_err(|e| Fail::invalid(format!("cannot write in {}: {e}", dir.display())))?;
    let mut stream = std::pin::pin!(client.download_artifact(run_id, &artifact.job).await?);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        tmp.write_all(&chunk)
            .map_err(|e| Fail::invalid(format!("cannot write {}: {e}", tmp.path().display())))?;
    }
    tmp.flush()
        .map_err(|e| Fail::invalid(format!("cannot write {}: {e}", tmp.path().display())))?;
    let dest = dest.to_path_buf();
    let job = artifact.job.clone();
    let entries = tokio::task::spawn_blocking(move || {
        let r = kiln_runtime::archive::unpack(tmp.path(), &dest);
        drop(tmp);
        r
    })
    .await
    .map_err(|e| Fail::invalid(format!("extracting the artifacts of `{job}` stopped: {e}")))?
    .map_err(|e| Fail::invalid(format!("artifacts of `{}`: {e}", artifact.job)))?;
    let files =
        entries.files.into_iter().map(|e| ExtractedFile { path: e.path, size: e.size }).collect();
    Ok((files, entries.skipped))
}
