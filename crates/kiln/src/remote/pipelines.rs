//! `kiln pipeline apply|list` and `kiln project list|create`.
//!
//! `apply` compiles the file here only to learn which template files its `uses:` name: they
//! are sent along under the names the file loader gives them, which is the join rule the
//! server's loader applies too. The server compiles again and is the judge of validity.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use kiln_api::ApplyPipeline;
use kiln_client::Client;
use kiln_workflow::{Loader, Source};

use super::{CmdResult, Conn, DEFAULT_PROJECT, Fail, outln, print_diagnostics, print_json, table};
use crate::Format;
use crate::load::FsLoader;

/// `kiln pipeline`.
#[derive(Debug, Args)]
pub struct PipelineCmd {
    #[command(subcommand)]
    cmd: PipelineSub,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum PipelineSub {
    /// Create or update a pipeline on the server from a workflow file (and its templates).
    Apply {
        /// The workflow file.
        file: String,
        /// Project to store it in (created if missing, which needs an admin token).
        #[arg(long, env = "KILN_PROJECT", default_value = DEFAULT_PROJECT)]
        project: String,
        /// Pipeline name [default: the workflow's `name:` if it is a valid pipeline name
        /// (1 to 64 letters, digits, `.`, `_` or `-`), else the file name without its
        /// extension].
        #[arg(long)]
        name: Option<String>,
    },
    /// List a project's pipelines.
    List {
        /// Project.
        #[arg(long, env = "KILN_PROJECT", default_value = DEFAULT_PROJECT)]
        project: String,
    },
}

/// `kiln project`.
#[derive(Debug, Args)]
pub struct ProjectCmd {
    #[command(subcommand)]
    cmd: ProjectSub,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum ProjectSub {
    /// List the projects the token can see.
    List,
    /// Create a project (admin).
    Create {
        /// 1 to 64 letters, digits, `.`, `_` or `-`.
        name: String,
    },
    /// Show a project's image policy, or change it (admin of the project).
    Policy {
        /// The project.
        name: String,
        /// Refuse deploys of images with a critical finding (`=false` to allow them).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        block_critical_deploys: Option<bool>,
        /// Refuse the tag `latest` on images with a critical finding (`=false` to allow).
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        no_critical_latest: Option<bool>,
    },
}

/// Wraps the file loader and keeps every template file read (not the entry file), by the
/// name the loader gave it.
struct RecordingLoader {
    files: RefCell<BTreeMap<String, String>>,
}

impl Loader for RecordingLoader {
    fn load(&self, from: &str, path: &str) -> Result<Source, String> {
        let source = FsLoader.load(from, path)?;
        if !from.is_empty() {
            self.files.borrow_mut().insert(source.name.clone(), source.text.clone());
        }
        Ok(source)
    }
}

/// The templates `file` uses, by the names the server's loader will ask for, and the
/// workflow's `name:` if the file compiles.
fn template_files(file: &str) -> (BTreeMap<String, String>, Option<String>) {
    let recorder = RecordingLoader { files: RefCell::new(BTreeMap::new()) };
    // Diagnostics are the server's to give: it compiles the same text again.
    let name = kiln_workflow::compile(file, &recorder).plan.map(|p| p.name);
    let mut files = recorder.files.into_inner();
    files.remove(file);
    (files, name)
}

/// Runs `kiln pipeline …`.
pub async fn pipeline(cmd: PipelineCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let format = cmd.conn.output;
    match cmd.cmd {
        PipelineSub::Apply { file, project, name } => {
            apply(&client, format, &file, &project, name).await
        }
        PipelineSub::List { project } => {
            let list = client.pipelines(&project).await?;
            if format == Format::Json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                eprintln!(
                    "project {project} has no pipelines yet: add one with `kiln pipeline apply FILE --project {project}`"
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&[
                "PIPELINE",
                "VERSION",
                "STAGES",
                "JOBS",
                "PARAMS",
                "CONCURRENCY",
                "UPDATED",
            ]);
            for p in &list {
                let params: Vec<String> = p
                    .params
                    .iter()
                    .map(|p| match &p.default {
                        Some(d) => format!("{}={d}", p.name),
                        None => p.name.clone(),
                    })
                    .collect();
                t.add_row(vec![
                    format!("{}/{}", p.project, p.name),
                    p.version.to_string(),
                    p.stages.join(" → "),
                    p.jobs.to_string(),
                    params.join("\n"),
                    p.concurrency.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    super::local_time(p.updated_at),
                ]);
            }
            outln!("{t}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn apply(
    client: &Client,
    format: Format,
    file: &str,
    project: &str,
    name: Option<String>,
) -> CmdResult {
    let yaml = std::fs::read_to_string(file)
        .map_err(|e| Fail::invalid(format!("cannot read {file}: {e}")))?;
    let (files, workflow_name) = template_files(file);
    let name = match name.or(workflow_name.filter(|n| kiln_store::is_valid_name(n))) {
        Some(n) => n,
        None => Path::new(file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Fail::invalid(format!("{file}: cannot name a pipeline after it; pass --name"))
            })?,
    };
    let body = ApplyPipeline { yaml, file: Some(file.to_string()), files };
    let result = match client.apply_pipeline(project, &name, &body).await {
        Err(e) if missing_project(&e, project) => {
            client.create_project(project).await.map_err(|e| {
                let mut fail = Fail::from(e);
                fail.message = format!(
                    "project `{project}` does not exist and could not be created: {}",
                    fail.message
                );
                fail
            })?;
            eprintln!("created project {project}");
            client.apply_pipeline(project, &name, &body).await
        }
        other => other,
    };
    let result = match result {
        Ok(r) => r,
        Err(kiln_client::ClientError::Api { error, .. })
            if error.code == kiln_api::codes::INVALID_WORKFLOW =>
        {
            let message = if error.diagnostics.is_empty() {
                format!("{file} was not applied: {}", error.message)
            } else {
                format!("{file} was not applied: fix the errors above")
            };
            return Err(Fail { message, diagnostics: error.diagnostics, ..Fail::invalid("") });
        }
        Err(e) => return Err(e.into()),
    };
    print_diagnostics(&result.warnings);
    if format == Format::Json {
        print_json(&result)?;
        return Ok(ExitCode::SUCCESS);
    }
    let p = &result.pipeline;
    outln!(
        "pipeline {}/{} {} (version {}, {} job{})",
        p.project,
        p.name,
        result.change,
        p.version,
        p.jobs,
        if p.jobs == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// True when `e` says that `project` does not exist.
fn missing_project(e: &kiln_client::ClientError, project: &str) -> bool {
    match e {
        kiln_client::ClientError::Api { error, .. } => {
            error.code == kiln_api::codes::NOT_FOUND
                && error.message.contains(&format!("project `{project}`"))
        }
        kiln_client::ClientError::Transport(_) => false,
    }
}

/// Runs `kiln project …`.
pub async fn project(cmd: ProjectCmd) -> CmdResult {
    let client = cmd.conn.client()?;
    let format = cmd.conn.output;
    match cmd.cmd {
        ProjectSub::List => {
            let list = client.projects().await?;
            if format == Format::Json {
                print_json(&list)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut t = table(&["PROJECT", "CREATED"]);
            for p in &list {
                t.add_row(vec![p.name.clone(), super::local_time(p.created_at)]);
            }
            outln!("{t}");
        }
        ProjectSub::Policy { name, block_critical_deploys, no_critical_latest } => {
            let change = (block_critical_deploys, no_critical_latest);
            return super::scans::policy(&client, &name, change, format == Format::Json).await;
        }
        ProjectSub::Create { name } => {
            let p = client.create_project(&name).await?;
            if format == Format::Json {
                print_json(&p)?;
            } else {
                outln!("project {} created", p.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
