//! `kiln service logs SERVICE [--instance ID] [-f]`: the stdout and stderr of a service's
//! instances as their agents sent them. By default every instance the service lists, each
//! line prefixed by its instance's id (like `docker compose logs`), ordered by time; with
//! `--instance`, that one instance's lines, unprefixed. With `-f` the logs are followed live
//! until every followed instance has ended (the instances listed when it starts). `-o json`
//! prints one `LogLine` per line, with an `instance` field.

use std::process::ExitCode;

use futures::StreamExt;
use kiln_api::LogLine;
use kiln_client::Client;

use super::logs::LogPrinter;
use super::{CmdResult, Fail, outln};
use crate::Format;

/// Lines asked for per page.
const PAGE: u32 = 1000;

/// Prints lines of instances: prefixed by the instance in text, with an `instance` field in
/// JSON.
struct Printer {
    text: LogPrinter,
    json: bool,
    prefixed: bool,
}

impl Printer {
    fn line(&mut self, instance: &str, mut line: LogLine) -> Result<(), Fail> {
        if self.json {
            let mut value =
                serde_json::to_value(&line).map_err(|e| Fail::invalid(e.to_string()))?;
            if let Some(m) = value.as_object_mut() {
                m.remove("job");
                m.insert("instance".into(), instance.into());
            }
            outln!("{value}");
        } else {
            line.job = self.prefixed.then(|| instance.to_string());
            self.text.line(&line);
        }
        Ok(())
    }
}

/// Runs `kiln service logs`.
pub async fn logs(
    client: &Client,
    project: &str,
    service: &str,
    instance: Option<String>,
    follow: bool,
    format: Format,
) -> CmdResult {
    let (ids, prefixed) = match instance {
        Some(id) => (vec![id], false),
        None => {
            let info = client.service(project, service).await?;
            let ids: Vec<String> = info.instances.into_iter().map(|i| i.id).collect();
            (ids, true)
        }
    };
    if ids.is_empty() {
        eprintln!("service {project}/{service} has no instances");
        return Ok(ExitCode::SUCCESS);
    }
    let mut printer = Printer {
        text: LogPrinter::for_prefixes(ids.iter().map(String::as_str), Format::Table, false),
        json: format == Format::Json,
        prefixed,
    };
    if follow {
        let mut streams = Vec::new();
        for id in &ids {
            let lines = client.follow_instance(project, service, id, 1).await?;
            let id = id.clone();
            streams.push(lines.map(move |l| (id.clone(), l)).boxed());
        }
        let mut all = futures::stream::select_all(streams);
        while let Some((id, line)) = all.next().await {
            printer.line(&id, line?)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Every line of every instance, then in time order (each instance's in its own order).
    let mut lines: Vec<(usize, LogLine)> = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let mut from = 1;
        loop {
            let page = client.instance_logs(project, service, id, from, PAGE).await?;
            let done = page.closed || page.lines.is_empty() || page.next <= from;
            from = page.next;
            lines.extend(page.lines.into_iter().map(|l| (n, l)));
            if done {
                break;
            }
        }
    }
    lines.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)).then(a.1.seq.cmp(&b.1.seq)));
    for (n, line) in lines {
        printer.line(&ids[n], line)?;
    }
    Ok(ExitCode::SUCCESS)
}
