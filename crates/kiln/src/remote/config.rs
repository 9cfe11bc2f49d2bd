//! `kiln config`: an application's config items (templates) and values, renders (a preview),
//! unified diffs (draft against the current release, two environments, two releases),
//! releases (a no-op when nothing rendered changed; waiting for a second person's approval on
//! a protected environment; gray to some instances, then to all), approvals, history,
//! rollbacks (a new release with old files) and the audit log; `get` fetches what a consumer
//! gets. Tables, or the API's objects with `-o json`.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfy_table::Cell;
use kiln_api::config::{ReleaseOutcome, ReleaseRequest, RollbackRequest, SetValues};

use super::{CmdResult, Conn, Fail, local_time, outln, print_json, table};
use crate::Format;

/// `kiln config`.
#[derive(Debug, Args)]
pub struct ConfigCmd {
    #[command(subcommand)]
    cmd: ConfigSub,
    /// The project.
    #[arg(long, short = 'p', env = "KILN_PROJECT", global = true)]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum ConfigSub {
    /// List the applications with config.
    #[command(alias = "ls")]
    List,
    /// An application's items and values (`--file F`: print that item's template).
    Show {
        /// The application.
        app: String,
        /// Print this item's template.
        #[arg(long)]
        file: Option<String>,
    },
    /// Set the template of a config item (its syntax is checked first).
    SetTemplate {
        /// The application (made with its first item or values).
        app: String,
        /// The item's file name (a relative path, like `app.yaml` or `conf.d/db.conf`).
        file: String,
        /// Where the template is (`-`: stdin).
        #[arg(long = "from", value_name = "PATH")]
        from: String,
    },
    /// Remove a config item.
    RmTemplate {
        /// The application.
        app: String,
        /// The item's file name.
        file: String,
    },
    /// Set the shared values, or an environment's (a YAML map).
    SetValues {
        /// The application.
        app: String,
        /// The environment whose values these are (default: the shared values).
        #[arg(long)]
        env: Option<String>,
        /// Where the values are (`-`: stdin).
        #[arg(long = "from", value_name = "PATH")]
        from: String,
    },
    /// Render the draft of an application in an environment (a preview: nothing is released).
    Render {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
    },
    /// A unified diff: the draft against the current release, against another environment
    /// (`--against`), or two releases (`--from N --to M`).
    Diff {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// Another environment to compare with (both drafts rendered).
        #[arg(long, conflicts_with_all = ["from", "to"])]
        against: Option<String>,
        /// A release of the environment (with --to).
        #[arg(long, requires = "to")]
        from: Option<u32>,
        /// Another release (with --from).
        #[arg(long, requires = "from")]
        to: Option<u32>,
    },
    /// Release the draft: an immutable release of the rendered files (nothing when they did
    /// not change); on a protected environment it waits for another person's approval.
    Release {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// Why, kept with the release.
        #[arg(long)]
        note: Option<String>,
        /// A gray release: only these instances get it (comma-separated ids).
        #[arg(long, value_delimiter = ',', conflicts_with = "all")]
        to_instances: Vec<String>,
        /// Release the gray release that is out to everyone.
        #[arg(long)]
        all: bool,
    },
    /// Approve a release waiting on a protected environment (not the one who asked).
    Approve {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// The release's number.
        number: u32,
    },
    /// Reject a release waiting on a protected environment.
    Reject {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// The release's number.
        number: u32,
    },
    /// Every release of an application in an environment.
    History {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
    },
    /// Roll back: a new release with release N's files (nothing is deleted).
    Rollback {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// The release whose files come back.
        #[arg(long)]
        to: u32,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Every change of an application's config.
    Audit {
        /// The application.
        app: String,
    },
    /// What a consumer gets now: the release's number, digest and files.
    Get {
        /// The application.
        app: String,
        /// The environment.
        #[arg(long)]
        env: String,
        /// The consumer's instance id (for gray releases).
        #[arg(long)]
        instance: Option<String>,
    },
}

/// The text of `--from PATH` (`-`: stdin).
fn read_from(path: &str) -> Result<String, Fail> {
    if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Fail::invalid(format!("cannot read stdin: {e}")))?;
        return Ok(text);
    }
    std::fs::read_to_string(path).map_err(|e| Fail::invalid(format!("cannot read {path}: {e}")))
}

/// Runs `kiln config …`.
pub async fn config(cmd: ConfigCmd) -> CmdResult {
    let json = cmd.conn.output == Format::Json;
    let p = cmd
        .project
        .clone()
        .ok_or_else(|| Fail::invalid("which project? pass --project P (or set KILN_PROJECT)"))?;
    let c = cmd.conn.client()?;
    let outcome = |o: &ReleaseOutcome| -> Result<ExitCode, Fail> {
        if json {
            print_json(o)?;
        } else {
            outln!("{}", o.message);
        }
        Ok(ExitCode::SUCCESS)
    };
    match cmd.cmd {
        ConfigSub::List => {
            let list = c.config_apps(&p).await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!(
                    "no config (add an item with `kiln config set-template APP FILE --from PATH`)"
                );
            } else {
                let mut t = table(&["APP", "FILES", "ENVIRONMENTS", "UPDATED"]);
                for a in &list {
                    t.add_row(vec![
                        Cell::new(&a.name),
                        Cell::new(a.files.join(", ")),
                        Cell::new(a.environments.join(", ")),
                        Cell::new(local_time(a.updated_at)),
                    ]);
                }
                outln!("{t}");
            }
        }
        ConfigSub::Show { app, file } => {
            let a = c.config_app(&p, &app).await?;
            if let Some(file) = file {
                let item = a.items.iter().find(|i| i.file == file).ok_or_else(|| {
                    Fail::invalid(format!(
                        "`{app}` has no item `{file}` (`kiln config show {app}`)"
                    ))
                })?;
                if json {
                    print_json(item)?;
                } else {
                    print!("{}", item.template);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if json {
                print_json(&a)?;
                return Ok(ExitCode::SUCCESS);
            }
            outln!("config of {}/{}", a.project, a.name);
            let mut t = table(&["ITEM", "LINES", "UPDATED BY", "UPDATED"]);
            for i in &a.items {
                t.add_row(vec![
                    Cell::new(&i.file),
                    Cell::new(i.template.lines().count()),
                    Cell::new(&i.updated_by),
                    Cell::new(local_time(i.updated_at)),
                ]);
            }
            outln!("{t}");
            outln!("shared values:");
            outln!("{}", indent(&a.shared_values));
            for v in &a.values {
                outln!(
                    "values of {} (by {}, {}):",
                    v.environment,
                    v.updated_by,
                    local_time(v.updated_at)
                );
                outln!("{}", indent(&v.yaml));
            }
        }
        ConfigSub::SetTemplate { app, file, from } => {
            let template = read_from(&from)?;
            let r = c.set_config_template(&p, &app, &file, &template).await?;
            if json {
                print_json(&r)?;
            } else {
                outln!("item {file} of {p}/{app}: {}", r.change);
            }
        }
        ConfigSub::RmTemplate { app, file } => {
            c.remove_config_template(&p, &app, &file).await?;
            if json {
                print_json(&serde_json::json!({ "app": app, "file": file, "deleted": true }))?;
            } else {
                outln!("item {file} of {p}/{app} removed");
            }
        }
        ConfigSub::SetValues { app, env, from } => {
            let yaml = read_from(&from)?;
            let req = SetValues { yaml, file: (from != "-").then_some(from) };
            let r = c.set_config_values(&p, &app, env.as_deref(), &req).await?;
            if json {
                print_json(&r)?;
            } else {
                let whose =
                    env.map_or_else(|| "shared values".to_string(), |e| format!("values of {e}"));
                outln!("{whose} of {p}/{app}: {}", r.change);
            }
        }
        ConfigSub::Render { app, env } => {
            let r = c.config_render(&p, &app, &env).await?;
            if json {
                print_json(&r)?;
            } else {
                for (file, text) in &r.files {
                    outln!("==> {file} <==");
                    print!("{text}");
                    if !text.is_empty() && !text.ends_with('\n') {
                        outln!();
                    }
                }
                eprintln!(
                    "{} file(s), digest {} (a preview: nothing was released)",
                    r.files.len(),
                    r.digest
                );
            }
        }
        ConfigSub::Diff { app, env, against, from, to } => {
            let releases = from.zip(to);
            let d = c.config_diff(&p, &app, &env, against.as_deref(), releases).await?;
            if json {
                print_json(&d)?;
            } else if d.unified.is_empty() {
                eprintln!("no difference between {} and {}", d.from, d.to);
            } else {
                for line in d.unified.lines() {
                    outln!("{}", colored(line));
                }
            }
        }
        ConfigSub::Release { app, env, note, to_instances, all } => {
            let req = ReleaseRequest { note, instances: to_instances, all };
            return outcome(&c.config_release(&p, &app, &env, &req).await?);
        }
        ConfigSub::Approve { app, env, number } => {
            return outcome(&c.config_decide(&p, &app, &env, number, true).await?);
        }
        ConfigSub::Reject { app, env, number } => {
            return outcome(&c.config_decide(&p, &app, &env, number, false).await?);
        }
        ConfigSub::Rollback { app, env, to, note } => {
            return outcome(
                &c.config_rollback(&p, &app, &env, &RollbackRequest { to, note }).await?,
            );
        }
        ConfigSub::History { app, env } => {
            let list = c.config_history(&p, &app, &env).await?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                outln!("no releases of {app} in {env} yet");
            } else {
                let mut t = table(&[
                    "RELEASE",
                    "STATE",
                    "TO",
                    "KIND",
                    "DIGEST",
                    "BY",
                    "AT",
                    "APPROVED BY",
                    "NOTE",
                ]);
                for r in &list {
                    let to = if r.instances.is_empty() {
                        "everyone".to_string()
                    } else {
                        r.instances.join(",")
                    };
                    let mark = match (r.current, r.gray) {
                        (true, _) => " (current)",
                        (_, true) => " (gray)",
                        _ => "",
                    };
                    let kind = match r.rollback_of {
                        Some(n) => format!("rollback to {n}"),
                        None => r.kind.clone(),
                    };
                    let decided = match (&r.decided_by, r.state.as_str()) {
                        (Some(by), "rejected") => format!("rejected by {by}"),
                        (Some(by), _) => by.clone(),
                        (None, _) => "-".into(),
                    };
                    t.add_row(vec![
                        Cell::new(format!("{}{mark}", r.number)),
                        super::state_cell(&r.state),
                        Cell::new(to),
                        Cell::new(kind),
                        Cell::new(r.digest.get(..19).unwrap_or(&r.digest)),
                        Cell::new(&r.requested_by),
                        Cell::new(local_time(r.requested_at)),
                        Cell::new(decided),
                        Cell::new(r.note.as_deref().unwrap_or("")),
                    ]);
                }
                outln!("{t}");
            }
        }
        ConfigSub::Audit { app } => {
            let list = c.config_audit(&p, &app).await?;
            if json {
                print_json(&list)?;
            } else {
                let mut t = table(&["#", "AT", "ENVIRONMENT", "ACTION", "BY", "DETAIL"]);
                for e in &list {
                    t.add_row(vec![
                        Cell::new(e.id),
                        Cell::new(local_time(e.at)),
                        Cell::new(e.environment.as_deref().unwrap_or("-")),
                        Cell::new(&e.action),
                        Cell::new(&e.by),
                        Cell::new(&e.detail),
                    ]);
                }
                outln!("{t}");
            }
        }
        ConfigSub::Get { app, env, instance } => {
            let got =
                c.fetch_config(&p, &app, &env, instance.as_deref(), None, None).await?.ok_or_else(
                    || Fail::invalid("the server answered 304 to an unconditional request"),
                )?;
            if json {
                print_json(&got)?;
            } else {
                let gray = if got.gray { " (gray)" } else { "" };
                outln!("release {}{gray} of {app} in {env}, digest {}", got.release, got.digest);
                for (file, text) in &got.files {
                    outln!("==> {file} <==");
                    print!("{text}");
                    if !text.is_empty() && !text.ends_with('\n') {
                        outln!();
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// YAML indented by two spaces, or `(none)`.
fn indent(yaml: &str) -> String {
    if yaml.trim().is_empty() {
        return "  (none)".into();
    }
    yaml.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// A unified diff line, red or green when colours are on.
fn colored(line: &str) -> String {
    let style = console::Style::new();
    let style = if line.starts_with("+++") || line.starts_with("---") {
        style.bold()
    } else if line.starts_with('+') {
        style.green()
    } else if line.starts_with('-') {
        style.red()
    } else if line.starts_with("@@") {
        style.cyan()
    } else {
        style
    };
    style.apply_to(line).to_string()
}
