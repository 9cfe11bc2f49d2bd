//! A page of a stored log read at its end beside the same page at its start (the ratio should
//! be about 1: a page seeks through the log's index instead of scanning the file), for a
//! closed 2,000,000-line job log and for a run's log (a view over two jobs' logs of 1,000,000
//! lines each). Floor of the old cost: reading the whole job log once, which every page cost
//! before the index was kept beside the log.
//!
//! Each read is what a request does: a store that has never seen the log (the log is closed,
//! so nothing of it is cached) reads its index and one page of 1,000 lines.
//!
//! Run with `cargo xtask bench logs` or `cargo bench -p kiln-logs --bench pages`.

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use kiln_logs::{LogKey, LogLine, LogStore, Stream};

const LINES: u64 = 2_000_000;
const PAGE: usize = 1000;

fn line(text: String) -> LogLine {
    LogLine { stream: Stream::Stdout, time: Utc::now(), text }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: LogStore,
    job: LogKey,
    run: LogKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    let job = LogKey::new("runs/bench/0/1").unwrap();
    let run = LogKey::new("runs/bench/all").unwrap();
    let (a, b) = (LogKey::new("runs/bench/1/1").unwrap(), LogKey::new("runs/bench/2/1").unwrap());
    let started = Instant::now();
    for i in 1..=LINES {
        let text = format!("line {i} of a build that prints a great deal, as builds do");
        store.append(&job, &line(text.clone())).unwrap();
        let (k, label) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        store.append_viewed(k, &line(text), None, &run, label).unwrap();
    }
    for k in [&job, &run, &a, &b] {
        store.close(k).unwrap();
    }
    println!(
        "fixture: {LINES} lines in a job log and a run log, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Fixture { _dir: dir, store, job, run }
}

/// Median time of `f` over `n` calls.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

fn pages(c: &mut Criterion) {
    let f = fixture();
    let fresh = || LogStore::open(f.store.root()).unwrap();
    let read = |key: &LogKey, from: u64| {
        let (records, _) = fresh().page(key, from, PAGE).unwrap();
        assert_eq!(records.len(), PAGE);
    };
    let end = LINES - PAGE as u64;
    let mut group = c.benchmark_group("log page of 1000 lines, 2,000,000-line log");
    group.bench_function("job log, start", |b| b.iter(|| read(&f.job, 1)));
    group.bench_function("job log, end", |b| b.iter(|| read(&f.job, end)));
    group.bench_function("run log, start", |b| b.iter(|| read(&f.run, 1)));
    group.bench_function("run log, end", |b| b.iter(|| read(&f.run, end)));
    group.sample_size(10);
    group.bench_function("floor of the old cost: the whole job log", |b| {
        b.iter(|| fresh().export(&f.job, 1, &mut std::io::sink()).unwrap())
    });
    group.finish();

    // Side by side.
    let rows = [
        ("job log", median(51, || read(&f.job, 1)), median(51, || read(&f.job, end))),
        ("run log", median(51, || read(&f.run, 1)), median(51, || read(&f.run, end))),
    ];
    let whole = median(3, || {
        fresh().export(&f.job, 1, &mut std::io::sink()).unwrap();
    });
    println!("\n{:<10} {:>12} {:>12} {:>10}", "log", "start (ms)", "end (ms)", "end/start");
    for (name, start, end) in rows {
        println!(
            "{name:<10} {:>12.3} {:>12.3} {:>10.2}",
            start.as_secs_f64() * 1e3,
            end.as_secs_f64() * 1e3,
            end.as_secs_f64() / start.as_secs_f64()
        );
    }
    println!(
        "reading the whole job log (what every page cost without the index): {:.0} ms",
        whole.as_secs_f64() * 1e3
    );
}

criterion_group!(benches, pages);
criterion_main!(benches);
