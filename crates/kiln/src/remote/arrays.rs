//! How `kiln run show` prints an array job's progress (`array: N`): counts, a bar, the
//! failed indexes (as ranges, with the first reasons and how to read their logs) and the
//! durations histogram, as Slurm's `sacct` and AWS Batch's console summarise an array.

use kiln_api::{ArrayProgress, RunDetail};

/// Width of the progress bar, in characters.
const BAR: usize = 30;

/// Prints the progress of every array job of `run`.
pub fn print(run: &RunDetail) {
    for j in &run.jobs {
        if let Some(a) = &j.array {
            for line in lines(&run.run.full_name(), &j.id, a) {
                outln!("{line}");
            }
        }
    }
}

/// The lines printed for array job `job` of run `run`.
pub fn lines(run: &str, job: &str, a: &ArrayProgress) -> Vec<String> {
    let mut out = Vec::new();
    let done = a.done();
    let pct = if a.size == 0 { 100.0 } else { f64::from(done) * 100.0 / f64::from(a.size) };
    let filled = (pct / 100.0 * BAR as f64).round() as usize;
    out.push(format!(
        "array {job}: {done}/{} done [{}{}] {pct:.1}%",
        a.size,
        "#".repeat(filled.min(BAR)),
        "-".repeat(BAR - filled.min(BAR))
    ));
    let retries = match a.retries {
        0 => String::new(),
        1 => ", 1 retry".to_string(),
        n => format!(", {n} retries"),
    };
    out.push(format!(
        "  {} succeeded, {} failed, {} canceled, {} running, {} queued, {} pending{retries} \
         (at most {} at once)",
        a.succeeded, a.failed, a.canceled, a.running, a.queued, a.pending, a.parallelism
    ));
    if !a.failed_indexes.is_empty() {
        out.push(format!("  failed indexes: {}", a.failed_indexes));
        for f in a.failures.iter().take(5) {
            let why = f.reason.as_deref().unwrap_or("-");
            out.push(format!("    {}: {why}", f.index));
        }
        if let Some(f) = a.failures.first() {
            out.push(format!("  logs of one: kiln logs {run} {job} --index {}", f.index));
        }
    }
    let total: u32 = a.durations.iter().map(|b| b.count).sum();
    if total > 0 {
        let most = a.durations.iter().map(|b| b.count).max().unwrap_or(1).max(1);
        out.push("  durations:".to_string());
        let mut below = "0".to_string();
        for b in a.durations.iter().filter(|b| b.count > 0) {
            let label = match b.le_ms {
                Some(ms) => format!("<= {}", human_ms(ms)),
                None => format!("> {below}"),
            };
            let width = (f64::from(b.count) / f64::from(most) * 20.0).ceil() as usize;
            out.push(format!("    {label:>9} {:<20} {}", "#".repeat(width), b.count));
            if let Some(ms) = b.le_ms {
                below = human_ms(ms);
            }
        }
    }
    out
}

/// `250ms`, `2.5s`, `5m`, `1h`.
fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        _ => format!("{}h", ms / 3_600_000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_api::{DurationBucket, IndexFailure};

    #[test]
    fn an_array_with_a_failure_names_it_and_how_to_read_its_log() {
        let a = ArrayProgress {
            size: 10,
            parallelism: 4,
            succeeded: 8,
            failed: 1,
            running: 1,
            retries: 1,
            failed_indexes: "7".into(),
            failures: vec![IndexFailure {
                index: 7,
                attempts: 2,
                reason: Some("exited with code 3 after 2 attempts".into()),
            }],
            durations: vec![
                DurationBucket { le_ms: Some(100), count: 9 },
                DurationBucket { le_ms: Some(2_500), count: 1 },
                DurationBucket { le_ms: None, count: 0 },
            ],
            ..ArrayProgress::default()
        };
        let text = lines("p/x#1", "t", &a).join("\n");
        assert!(text.starts_with("array t: 9/10 done ["), "{text}");
        assert!(text.contains("8 succeeded, 1 failed, 0 canceled, 1 running"), "{text}");
        assert!(text.contains(", 1 retry (at most 4 at once)"), "{text}");
        assert!(text.contains("failed indexes: 7\n    7: exited with code 3 after 2 attempts"));
        assert!(text.contains("kiln logs p/x#1 t --index 7"), "{text}");
        assert!(text.contains("<= 100ms"), "{text}");
        assert!(text.contains("<= 2.5s"), "{text}");
    }
}
