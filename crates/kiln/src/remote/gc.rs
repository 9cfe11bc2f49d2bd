//! `kiln gc`: a garbage collection of the server's caches and artifacts now (admin).

use std::process::ExitCode;

use clap::Args;
use comfy_table::Cell;

use super::{CmdResult, Conn, human_size, outln, print_json, table};
use crate::Format;

/// `kiln gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    conn: Conn,
}

/// Runs `kiln gc`: prints what was removed (a table, or the API's report as JSON).
pub async fn gc(args: GcArgs) -> CmdResult {
    let client = args.conn.client()?;
    let r = client.gc().await?;
    if args.conn.output == Format::Json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["REMOVED", "COUNT"]);
    t.add_row(vec![Cell::new("caches evicted"), Cell::new(r.caches.len())]);
    t.add_row(vec![Cell::new("artifacts expired"), Cell::new(r.artifacts.len())]);
    t.add_row(vec![Cell::new("orphaned blob files"), Cell::new(r.orphans)]);
    t.add_row(vec![Cell::new("bytes freed"), Cell::new(human_size(r.bytes_freed))]);
    outln!("{t}");
    for c in &r.caches {
        outln!("evicted cache {c}");
    }
    for a in &r.artifacts {
        outln!("expired artifacts {a}");
    }
    outln!(
        "caches now hold {} of a {} budget",
        human_size(r.cache_bytes),
        human_size(r.cache_budget)
    );
    Ok(ExitCode::SUCCESS)
}
