//! `kiln registry advisories import`, `kiln registry scan` and `kiln registry vulns`:
//! vulnerability scanning of the registry's images (docs/registry.md#vulnerability-scanning),
//! and `kiln project policy`, a project's image policy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::{Cell, Color};
use kiln_api::scan::{AdvisoryFile, ImagePolicy, ImageScan, ImportAdvisories};
use kiln_client::Client;

use super::{CmdResult, Fail, local_time, outln, print_json, table};

/// `kiln registry advisories …`.
#[derive(Debug, Subcommand)]
pub enum AdvisoriesSub {
    /// Import OSV advisories (admin): a file (one advisory, an array, or JSON lines) or a
    /// directory of `.json`/`.jsonl` files, read recursively; all or nothing. Prints how
    /// many were new, updated and unchanged, and the stored images they newly hit.
    Import {
        /// A file or a directory.
        path: PathBuf,
    },
}

/// The OSV files under `path` (itself if a file), sorted.
fn files_of(path: &Path) -> Result<Vec<PathBuf>, Fail> {
    let meta =
        std::fs::metadata(path).map_err(|e| Fail::invalid(format!("{}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![path.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| Fail::invalid(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| Fail::invalid(format!("{}: {e}", dir.display())))?;
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "json" || e == "jsonl") {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Fail::invalid(format!(
            "{}: no .json or .jsonl files in this directory",
            path.display()
        )));
    }
    Ok(out)
}

/// Runs `kiln registry advisories …`.
pub async fn advisories(client: &Client, sub: AdvisoriesSub, json: bool) -> CmdResult {
    let AdvisoriesSub::Import { path } = sub;
    let paths = files_of(&path)?;
    let mut files = Vec::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let content = std::fs::read_to_string(p)
            .map_err(|e| Fail::invalid(format!("{}: {e}", p.display())))?;
        files.push(AdvisoryFile { name: p.display().to_string(), content });
        if !json && (i + 1) % 1000 == 0 {
            eprintln!("read {} of {} files…", i + 1, paths.len());
        }
    }
    if !json {
        eprintln!("importing {} file{}…", files.len(), if files.len() == 1 { "" } else { "s" });
    }
    let r = client.import_advisories(&ImportAdvisories { files }).await?;
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["ADVISORIES", "COUNT"]);
    t.add_row(vec![Cell::new("read"), Cell::new(r.read)]);
    t.add_row(vec![Cell::new("new"), Cell::new(r.new)]);
    t.add_row(vec![Cell::new("updated"), Cell::new(r.updated)]);
    t.add_row(vec![Cell::new("unchanged"), Cell::new(r.unchanged)]);
    t.add_row(vec![Cell::new("stored in all"), Cell::new(r.total)]);
    outln!("{t}");
    if !r.notices.is_empty() {
        let mut t = table(&["REPOSITORY", "TAGS", "DIGEST", "NEW ADVISORIES"]);
        for n in &r.notices {
            t.add_row(vec![
                Cell::new(&n.repository),
                Cell::new(if n.tags.is_empty() { "-".to_string() } else { n.tags.join(", ") }),
                Cell::new(&n.digest),
                Cell::new(n.advisories.join(", ")),
            ]);
        }
        outln!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

fn severity_cell(s: &str) -> Cell {
    let cell = Cell::new(s);
    match s {
        "critical" => cell.fg(Color::Red),
        "high" => cell.fg(Color::Magenta),
        "medium" => cell.fg(Color::Yellow),
        _ => cell,
    }
}

/// Prints an image's scan: a summary line on stderr, the findings as a table.
pub fn print_scan(s: &ImageScan, json: bool) -> CmdResult {
    if json {
        print_json(s)?;
        return Ok(ExitCode::SUCCESS);
    }
    let when = s.scanned_at.map(local_time).unwrap_or_else(|| "never".into());
    eprintln!(
        "{} ({}): {}, {} packages, scanned {when}, {} findings",
        s.image,
        s.digest,
        s.state,
        s.packages,
        s.findings.len()
    );
    if let Some(e) = &s.error {
        eprintln!("{}: {e}", if s.state == "skipped" { "skipped" } else { "error" });
    }
    let mut t = table(&["SEVERITY", "ADVISORY", "PACKAGE", "INSTALLED", "FIXED", "SOURCE"]);
    for f in &s.findings {
        let advisory = match f.aliases.first() {
            Some(a) => format!("{} ({a})", f.advisory),
            None => f.advisory.clone(),
        };
        t.add_row(vec![
            severity_cell(&f.severity),
            Cell::new(advisory),
            Cell::new(format!("{} ({})", f.package, f.ecosystem)),
            Cell::new(&f.installed),
            Cell::new(f.fixed.as_deref().unwrap_or("-")),
            Cell::new(&f.source),
        ]);
    }
    outln!("{t}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `kiln project policy`: shows, or changes then shows, a project's image policy.
pub async fn policy(
    client: &Client,
    project: &str,
    change: (Option<bool>, Option<bool>),
    json: bool,
) -> CmdResult {
    let mut p = client.image_policy(project).await?;
    if change.0.is_some() || change.1.is_some() {
        p = ImagePolicy {
            block_critical_deploys: change.0.unwrap_or(p.block_critical_deploys),
            no_critical_latest: change.1.unwrap_or(p.no_critical_latest),
        };
        p = client.set_image_policy(project, &p).await?;
    }
    if json {
        print_json(&p)?;
        return Ok(ExitCode::SUCCESS);
    }
    let on = |b: bool| if b { "on" } else { "off" };
    let mut t = table(&["POLICY", "STATE"]);
    t.add_row(vec![
        Cell::new("block deploys of images with a critical finding"),
        Cell::new(on(p.block_critical_deploys)),
    ]);
    t.add_row(vec![
        Cell::new("refuse `latest` on images with a critical finding"),
        Cell::new(on(p.no_critical_latest)),
    ]);
    outln!("{t}");
    Ok(ExitCode::SUCCESS)
}
