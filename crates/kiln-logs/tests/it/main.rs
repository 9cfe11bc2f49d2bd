//! Integration tests of `kiln-logs`: the store on a real directory, following under concurrent
//! appends, reopening, torn tails, masking and key validation.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::StreamExt;
use kiln_logs::{LogError, LogKey, LogLine, LogStore, LogStoreConfig, Masker, Record, Stream};
use tempfile::TempDir;

/// Generous bound so a broken follower fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(60);

fn line(text: impl Into<String>) -> LogLine {
    LogLine {
        stream: Stream::Stdout,
        time: Utc.with_ymd_and_hms(2026, 11, 22, 4, 30, 0).unwrap(),
        text: text.into(),
    }
}

fn key(raw: &str) -> LogKey {
    LogKey::new(raw).unwrap()
}

fn store() -> (TempDir, LogStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    (dir, store)
}

fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

/// Collects a follower to its end, failing on an error or on the deadline.
async fn collect(follow: kiln_logs::Follow) -> Vec<Record> {
    tokio::time::timeout(DEADLINE, follow.map(|r| r.expect("follow yielded an error")).collect())
        .await
        .expect("follower did not end")
}

#[test]
fn append_and_read_ranges() {
    let (_dir, store) = store();
    let k = key("run/1/build/1");
    for i in 1..=1000u64 {
        let mut l = line(format!("line {i}"));
        if i % 2 == 0 {
            l.stream = Stream::Stderr;
        }
        assert_eq!(store.append(&k, &l).unwrap(), i);
    }
    assert_eq!(seqs(&store.read(&k, 0, 3).unwrap()), [1, 2, 3]);
    assert_eq!(seqs(&store.read(&k, 1, 3).unwrap()), [1, 2, 3]);
    let mid = store.read(&k, 500, 4).unwrap();
    assert_eq!(seqs(&mid), [500, 501, 502, 503]);
    assert_eq!(mid[0].text, "line 500");
    assert_eq!(mid[0].stream, Stream::Stderr);
    assert_eq!(mid[1].stream, Stream::Stdout);
    assert_eq!(mid[0].time, line("").time);
    // Around where index entries would be with a smaller spacing.
    for from in [255, 256, 257, 258, 513, 769] {
        assert_eq!(seqs(&store.read(&k, from, 2).unwrap()), [from, from + 1]);
    }
    assert_eq!(seqs(&store.read(&k, 998, 100).unwrap()), [998, 999, 1000]);
    assert!(store.read(&k, 1001, 10).unwrap().is_empty());
    assert!(store.read(&k, 1, 0).unwrap().is_empty());
    assert_eq!(store.read(&k, 0, usize::MAX).unwrap().len(), 1000);
    // Another log is independent; a missing one is empty.
    assert_eq!(store.append(&key("run/1/test/1"), &line("x")).unwrap(), 1);
    assert!(store.read(&key("run/9/none/1"), 0, 10).unwrap().is_empty());
    let info = store.info(&k).unwrap();
    assert_eq!((info.last_seq, info.closed), (1000, false));
}

#[test]
fn close_is_idempotent_and_final() {
    let (_dir, store) = store();
    let k = key("a/b");
    store.append(&k, &line("one")).unwrap();
    store.close(&k).unwrap();
    store.close(&k).unwrap();
    assert!(matches!(store.append(&k, &line("late")), Err(LogError::Closed(_))));
    assert_eq!(seqs(&store.read(&k, 0, 10).unwrap()), [1]);
    assert!(store.info(&k).unwrap().closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_from_start_during_10000_concurrent_appends() {
    for capacity in [1024, 4] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogStoreConfig { channel_capacity: capacity, ..LogStoreConfig::default() };
        let store = LogStore::with_config(dir.path(), config).unwrap();
        let k = key("run/1/build/1");
        // Some lines before the follower exists, the rest while it runs.
        for i in 1..=100 {
            store.append(&k, &line(format!("{i}"))).unwrap();
        }
        let follow = store.follow(&k, 0).unwrap();
        let writer = {
            let store = store.clone();
            let k = k.clone();
            tokio::task::spawn_blocking(move || {
                for i in 101..=10_000 {
                    store.append(&k, &line(format!("{i}"))).unwrap();
                }
                store.close(&k).unwrap();
            })
        };
        let records = collect(follow).await;
        writer.await.unwrap();
        assert_eq!(seqs(&records), (1..=10_000).collect::<Vec<_>>(), "capacity {capacity}");
        assert!(records.iter().all(|r| r.text == r.seq.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follow_from_the_middle_and_two_followers() {
    let (_dir, store) = store();
    let k = key("run/2/build/1");
    for i in 1..=50 {
        store.append(&k, &line(format!("{i}"))).unwrap();
    }
    let from_middle = store.follow(&k, 26).unwrap();
    let from_start = store.follow(&k, 0).unwrap();
    let a = tokio::spawn(collect(from_middle));
    let b = tokio::spawn(collect(from_start));
    let writer = {
        let store = store.clone();
        let k = k.clone();
        tokio::spawn(async move {
            for i in 51..=3000 {
                store.append(&k, &line(format!("{i}"))).unwrap();
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            store.close(&k).unwrap();
        })
    };
    writer.await.unwrap();
    assert_eq!(seqs(&a.await.unwrap()), (26..=3000).collect::<Vec<_>>());
    assert_eq!(seqs(&b.await.unwrap()), (1..=3000).collect::<Vec<_>>());
    // Resuming after `Last-Event-ID: 2990` on a closed log replays the rest and ends.
    let tail = collect(store.follow(&k, 2991).unwrap()).await;
    assert_eq!(seqs(&tail), (2991..=3000).collect::<Vec<_>>());
    // Past the end of a closed log: ends at once.
    assert!(collect(store.follow(&k, 5000).unwrap()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_waits_for_a_log_that_does_not_exist_yet() {
    let (_dir, store) = store();
    let k = key("run/3/later/1");
    let follow = store.follow(&k, 0).unwrap();
    let reader = tokio::spawn(collect(follow));
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.append(&k, &line("first")).unwrap();
    store.close(&k).unwrap();
    let records = reader.await.unwrap();
    assert_eq!(seqs(&records), [1]);
    assert_eq!(records[0].text, "first");
}

#[tokio::test]
async fn reopen_continues_seq_and_reads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("run/4/build/1");
    {
        let store = LogStore::open(dir.path()).unwrap();
        for i in 1..=600 {
            store.append(&k, &line(format!("{i}"))).unwrap();
        }
    }
    let store = LogStore::open(dir.path()).unwrap();
    assert_eq!(store.info(&k).unwrap().last_seq, 600);
    assert_eq!(store.append(&k, &line("601")).unwrap(), 601);
    let all = store.read(&k, 0, usize::MAX).unwrap();
    assert_eq!(seqs(&all), (1..=601).collect::<Vec<_>>());
    assert_eq!(seqs(&store.read(&k, 300, 2).unwrap()), [300, 301]);
    store.close(&k).unwrap();
    drop(store);
    // A closed log stays closed across processes, and following it just replays.
    let store = LogStore::open(dir.path()).unwrap();
    assert!(matches!(store.append(&k, &line("late")), Err(LogError::Closed(_))));
    assert_eq!(collect(store.follow(&k, 600).unwrap()).await.len(), 2);
}

#[test]
fn torn_tail_is_ignored_and_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("run/5/build/1");
    let path = {
        let store = LogStore::open(dir.path()).unwrap();
        for i in 1..=3 {
            store.append(&k, &line(format!("{i}"))).unwrap();
        }
        store.path(&k)
    };
    // A crash in the middle of writing frame 4.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(br#"{"seq":4,"time":"2026-11-22T04:30:00Z","stream":"out","te"#);
    std::fs::write(&path, &bytes).unwrap();

    let store = LogStore::open(dir.path()).unwrap();
    assert_eq!(seqs(&store.read(&k, 0, 10).unwrap()), [1, 2, 3]);
    assert_eq!(store.append(&k, &line("four")).unwrap(), 4);
    let all = store.read(&k, 0, 10).unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4]);
    assert_eq!(all[3].text, "four");
    // The torn bytes are gone from the file: every line is a whole frame.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.ends_with('\n'));
    assert!(!text.contains("\"te\n") && !text.contains("\"te{"));
}

#[test]
fn garbage_file_is_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let k = key("junk");
    std::fs::write(dir.path().join("junk.log"), b"not json\n\xff\xfe\n{\"seq\":9}\n").unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    assert!(store.read(&k, 0, 10).unwrap().is_empty());
    assert_eq!(store.append(&k, &line("ok")).unwrap(), 1);
    assert_eq!(seqs(&store.read(&k, 0, 10).unwrap()), [1]);
}

#[tokio::test]
async fn append_masked_keeps_secrets_out_of_the_file_and_followers() {
    let (_dir, store) = store();
    let k = key("run/6/deploy/1");
    let masker = Masker::new(["hunter2hunter2", "tok_ABCDEF"]);
    let follow = store.follow(&k, 0).unwrap();
    store.append_masked(&k, &line("password=hunter2hunter2"), &masker).unwrap();
    store.append_masked(&k, &line("tok_ABCDEF at the end tok_ABCDEF"), &masker).unwrap();
    store.append(&k, &line("plain")).unwrap();
    store.close(&k).unwrap();

    let raw = std::fs::read(store.path(&k)).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(!raw.contains("hunter2"), "{raw}");
    assert!(!raw.contains("ABCDEF"), "{raw}");
    assert!(raw.contains("password=***"));

    let texts: Vec<String> = store.read(&k, 0, 10).unwrap().into_iter().map(|r| r.text).collect();
    assert_eq!(texts, ["password=***", "*** at the end ***", "plain"]);
    let followed: Vec<String> = collect(follow).await.into_iter().map(|r| r.text).collect();
    assert_eq!(followed, texts);
}

#[test]
fn key_validation_rejects_escapes() {
    for bad in ["..", "../etc/passwd", "a/../../b", "/etc/passwd", "/", "a/./b", "~/x"] {
        assert!(matches!(LogKey::new(bad), Err(LogError::InvalidKey { .. })), "{bad:?} accepted");
        assert!(bad.parse::<LogKey>().is_err());
    }
    let (dir, store) = store();
    let k = LogKey::from_segments(["run", "7", "build", "1"]).unwrap();
    assert!(store.path(&k).starts_with(dir.path()));
}

#[tokio::test]
async fn a_lagging_follower_rereads_the_file_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogStoreConfig { channel_capacity: 2, index_every: 16 };
    let store = LogStore::with_config(dir.path(), config).unwrap();
    let k = key("run/8/build/1");
    store.append(&k, &line("1")).unwrap();
    let follow = store.follow(&k, 0).unwrap();
    // The follower is not polled while 500 lines go by: its channel overflows.
    for i in 2..=500 {
        store.append(&k, &line(format!("{i}"))).unwrap();
    }
    store.close(&k).unwrap();
    let records = collect(follow).await;
    assert_eq!(seqs(&records), (1..=500).collect::<Vec<_>>());
}

#[tokio::test]
async fn closed_logs_hold_no_file_or_channel_and_stay_readable() {
    let (_dir, store) = store();
    // More logs than a process may have open files: each is closed after its lines.
    for i in 0..2000 {
        let k = key(&format!("runs/r{i}/0/1"));
        store.append(&k, &line(format!("only line of {i}"))).unwrap();
        store.close(&k).unwrap();
    }
    assert_eq!(store.cached(), 0, "closed logs are forgotten");
    let k = key("runs/r1999/0/1");
    let read = store.read(&k, 1, 10).unwrap();
    assert_eq!(read.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(), ["only line of 1999"]);
    assert!(store.info(&k).unwrap().closed);
    let followed = collect(store.follow(&k, 1).unwrap()).await;
    assert_eq!(seqs(&followed), [1]);
    assert_eq!(store.cached(), 0, "reading and following a closed log does not bring it back");
    assert!(matches!(store.append(&k, &line("late")), Err(LogError::Closed(_))));
    // A log being written stays cached until it is closed; its follower sees everything.
    let open = key("runs/live/0/1");
    store.append(&open, &line("a")).unwrap();
    let follower = store.follow(&open, 1).unwrap();
    assert_eq!(store.cached(), 1);
    store.append(&open, &line("b")).unwrap();
    store.close(&open).unwrap();
    assert_eq!(seqs(&collect(follower).await), [1, 2]);
    assert_eq!(store.cached(), 0);
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

#[tokio::test]
async fn a_view_shows_its_sources_lines_in_arrival_order_and_stores_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogStoreConfig { channel_capacity: 64, index_every: 100 };
    let store = LogStore::with_config(dir.path(), config).unwrap();
    let (build, test, run) = (key("runs/r/0/1"), key("runs/r/1/1"), key("runs/r/all"));
    let follower = store.follow(&run, 0).unwrap();
    let masker = Masker::new(["hunter2hunter2"]);
    let mut expected = Vec::new();
    let mut text_bytes = 0;
    for i in 1..=5000u64 {
        let (k, label) = if i % 3 == 0 { (&test, "test") } else { (&build, "build") };
        let text = format!("line {i} of {label} hunter2hunter2 {}", "x".repeat(60));
        text_bytes += text.len() as u64 + 1;
        store.append_viewed(k, &line(text), Some(&masker), &run, label).unwrap();
        expected.push(format!("{label}\tline {i} of {label} *** {}", "x".repeat(60)));
    }
    // A line stored in a source without the view is not shown, and the next ones still are.
    store.append(&build, &line("not in the view")).unwrap();
    store.append_viewed(&build, &line("after"), None, &run, "build").unwrap();
    expected.push("build\tafter".to_string());
    for k in [&build, &test, &run] {
        store.close(k).unwrap();
    }
    let texts = |records: Vec<Record>| records.into_iter().map(|r| r.text).collect::<Vec<_>>();
    assert_eq!(texts(store.read(&run, 1, usize::MAX).unwrap()), expected);
    for from in [1u64, 99, 100, 101, 2500, 4999, 5001] {
        let page = store.read(&run, from, 3).unwrap();
        assert_eq!(seqs(&page), (from..(from + 3).min(5002)).collect::<Vec<_>>(), "from {from}");
        assert_eq!(texts(page), expected[from as usize - 1..(from as usize + 2).min(5001)]);
    }
    assert_eq!(texts(collect(follower).await), expected);
    // Read again by a fresh store (from the index files), and followed after the end.
    let again = LogStore::with_config(dir.path(), config).unwrap();
    assert_eq!(texts(again.read(&run, 4000, 2).unwrap()), expected[3999..4001]);
    assert_eq!(texts(collect(again.follow(&run, 4990).unwrap()).await), expected[4989..]);
    assert!(again.index_path(&run).exists() && again.index_path(&build).exists());
    // Each line once: the whole directory holds less than 1.3 times the text.
    let stored = dir_bytes(dir.path()) - 64 * 1024; // less the reserve file
    assert!(stored * 10 <= text_bytes * 13, "{stored} bytes stored for {text_bytes} of text");
}

#[test]
fn logs_written_by_older_versions_still_read_and_continue() {
    let dir = tempfile::tempdir().unwrap();
    let (job, run) = (key("runs/old/0/1"), key("runs/old/all"));
    std::fs::create_dir_all(dir.path().join("runs/old/0")).unwrap();
    std::fs::write(
        dir.path().join("runs/old/0/1.log"),
        concat!(
            r#"{"seq":1,"time":"2026-11-22T04:30:00.123456789Z","stream":"out","text":"one"}"#,
            "\n",
            r#"{"seq":2,"time":"2026-11-22T04:30:01Z","stream":"err","text":"two"}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("runs/old/all.log"),
        concat!(
            r#"{"seq":1,"time":"2026-11-22T04:30:00.123456789Z","stream":"out","text":"build\tone"}"#, "\n",
            r#"{"seq":2,"time":"2026-11-22T04:30:01Z","stream":"err","text":"build\ttwo"}"#, "\n",
        ),
    )
    .unwrap();
    let store = LogStore::open(dir.path()).unwrap();
    let old = store.read(&run, 1, 10).unwrap();
    assert_eq!(
        old.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        ["build\tone", "build\ttwo"]
    );
    assert_eq!(old[0].time.to_rfc3339(), "2026-11-22T04:30:00.123456789+00:00");
    // A job that was running when the server was upgraded goes on in the new format.
    store.append_viewed(&job, &line("three"), None, &run, "build").unwrap();
    store.close(&job).unwrap();
    store.close(&run).unwrap();
    let all = store.read(&run, 1, 10).unwrap();
    assert_eq!(seqs(&all), [1, 2, 3]);
    assert_eq!(all[2].text, "build\tthree");
    assert_eq!(all[2].time, line("").time);
    let job_lines = store.read(&job, 2, 10).unwrap();
    assert_eq!(
        job_lines.iter().map(|r| (r.seq, r.text.as_str())).collect::<Vec<_>>(),
        [(2, "two"), (3, "three")]
    );
    assert_eq!(job_lines[0].stream, Stream::Stderr);
}

#[test]
fn a_page_at_the_end_of_a_2_000_000_line_log_seeks_through_its_index() {
    let (_dir, store) = store();
    let k = key("runs/big/0/1");
    for i in 1..=2_000_000u64 {
        store.append(&k, &line(format!("line {i}"))).unwrap();
    }
    store.close(&k).unwrap();
    let index = store.index_path(&k);
    assert!(index.exists(), "no index beside the log");
    let check = |store: &LogStore| {
        let (page, info) = store.page(&k, 1_999_000, 1000).unwrap();
        assert_eq!(seqs(&page), (1_999_000..2_000_000).collect::<Vec<_>>());
        assert_eq!(page[0].text, "line 1999000");
        assert_eq!(page[999].text, "line 1999999");
        assert_eq!((info.last_seq, info.closed), (2_000_000, true));
        assert_eq!(store.read(&k, 2_000_000, 5).unwrap()[0].text, "line 2000000");
    };
    check(&store);
    // An index that is lost, or wrong, is made again from the log.
    std::fs::remove_file(&index).unwrap();
    check(&LogStore::open(store.root()).unwrap());
    assert!(index.exists(), "the index was not made again");
    std::fs::write(&index, "1025\t999999999\t-\t\n").unwrap();
    check(&LogStore::open(store.root()).unwrap());
    let text = std::fs::read_to_string(&index).unwrap();
    assert_eq!(text.lines().count(), 2_000_000 / 1024, "one entry every 1024 lines");
}
