//! `kiln triggers`: what starts the runs of a server's pipelines, with schedules' next fire
//! times in their zone and in UTC.

use std::process::ExitCode;

use chrono::DateTime;
use clap::Args;
use kiln_api::triggers::{FireTime, TriggerInfo};

use super::{CmdResult, Conn, opt_time, outln, print_json, table};
use crate::Format;

/// `kiln triggers`.
#[derive(Debug, Args)]
pub struct TriggersArgs {
    /// Only this project's pipelines [default: every project the token can see].
    #[arg(long)]
    project: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

/// Runs `kiln triggers`.
pub async fn triggers(args: TriggersArgs) -> CmdResult {
    let client = args.conn.client()?;
    let list = client.triggers(args.project.as_deref()).await?;
    if args.conn.output == Format::Json {
        print_json(&list)?;
    } else if list.is_empty() {
        outln!("no pipelines: add one with `kiln pipeline apply FILE`");
    } else {
        print_triggers(&list);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_triggers(list: &[TriggerInfo]) {
    let mut t = table(&["PIPELINE", "KIND", "DETAILS", "NEXT FIRES", "LAST FIRED"]);
    for trigger in list {
        let mut details = trigger.details.clone();
        let (next, last) = match &trigger.schedule {
            Some(s) => {
                if !s.params.is_empty() {
                    let params: Vec<String> =
                        s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    details.push_str(&format!("\nparams: {}", params.join(" ")));
                }
                let next: Vec<String> = s.next.iter().map(fire_time).collect();
                let last = match (&s.last_run, s.last_fired_at) {
                    (Some(run), at) => format!("{} ({run})", opt_time(at)),
                    (None, at) => opt_time(at),
                };
                (if next.is_empty() { "never".into() } else { next.join("\n") }, last)
            }
            None => ("-".to_string(), "-".to_string()),
        };
        t.add_row(vec![
            format!("{}/{}", trigger.project, trigger.pipeline),
            trigger.kind.as_str().to_string(),
            details,
            next,
            last,
        ]);
    }
    outln!("{t}");
}

/// `2026-12-01 08:00:00 +08:00 (00:00:00 UTC)`: the zone's clock, then UTC (with its date
/// when that differs).
fn fire_time(f: &FireTime) -> String {
    let utc = f.at;
    let Ok(local) = DateTime::parse_from_rfc3339(&f.local) else {
        return utc.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    };
    let same_day = local.date_naive() == utc.date_naive();
    let utc_text =
        if same_day { utc.format("%H:%M:%S UTC") } else { utc.format("%Y-%m-%d %H:%M:%S UTC") };
    format!("{} ({utc_text})", local.format("%Y-%m-%d %H:%M:%S %:z"))
}
