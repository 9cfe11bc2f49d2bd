//! A full disk under a SQLite store (a small tmpfs mounted by the test; the tests run as
//! root): every write fails with [`Fault::Full`], none with "non-zero transaction depth" (a
//! connection left counting a transaction SQLite already rolled back), and writes succeed
//! again by themselves once space is freed.

use kiln_store::{Fault, Store};
use kiln_testkit::{Mount, fill};
use tempfile::TempDir;

use crate::src;

#[tokio::test]
async fn a_full_disk_fails_each_write_with_its_cause_and_never_wedges_the_store() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let _mount = Mount::tmpfs(&data, "32m");
    let store = Store::open(data.join("kiln.db")).await.unwrap();
    store.create_project("api").await.unwrap();
    // Pipelines of 3 MB each: more than SQLite's page cache, so a transaction spills to the
    // write-ahead log before its commit, and the log soon needs more room than it has.
    let big = src(&format!("# {}\nversion: 1\n", "x".repeat(3_000_000)));
    store.upsert_pipeline("api", "p0", &big).await.unwrap();

    let filler = fill(&data);
    let mut failures = Vec::new();
    for i in 1..2000 {
        if let Err(e) = store.upsert_pipeline("api", &format!("p{i}"), &big).await {
            failures.push(e);
            if failures.len() == 5 {
                break;
            }
        }
    }
    assert_eq!(failures.len(), 5, "the full disk was never noticed");
    for e in &failures {
        assert_eq!(e.fault(), Some(Fault::Full), "{e}");
        assert!(!e.to_string().contains("transaction depth"), "wedged: {e}");
    }

    std::fs::remove_file(&filler).unwrap();
    store.upsert_pipeline("api", "after", &big).await.expect("writes work again");
    assert!(store.pipeline("api", "after").await.is_ok());
    store.close().await;
}

/// What SQLite does on a full disk or an I/O error (it may roll the transaction back by
/// itself, so the driver's own rollback then fails), reproduced at will: the connection is
/// given back to the pool still counting a transaction, and the store must not use it again.
#[tokio::test]
async fn a_transaction_rolled_back_by_sqlite_itself_does_not_wedge_later_writes() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("kiln.db")).await.unwrap();
    store.create_project("api").await.unwrap();
    let kiln_store::Db::Sqlite(pool) = store.db() else { unreachable!("a SQLite store") };
    for _ in 0..4 {
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("ROLLBACK").execute(&mut *tx).await.unwrap();
        // Dropped: the driver's ROLLBACK fails ("no transaction is active").
        drop(tx);
    }
    for i in 0..40 {
        store
            .upsert_pipeline("api", &format!("p{i}"), &src("version: 1\n"))
            .await
            .unwrap_or_else(|e| panic!("write {i} after the rollbacks: {e}"));
    }
    store.close().await;
}

/// PostgreSQL going away for a while (a proxy between the store and the server, taken down
/// and brought back): writes fail as [`Fault::Unavailable`] meanwhile, and work again by
/// themselves once it is back.
#[tokio::test]
async fn postgres_going_away_fails_writes_as_unavailable_until_it_is_back() {
    let Some(db) = kiln_testkit::postgres::fresh_database("kiln_test_store", "faults_pg").await
    else {
        return;
    };
    let (user, at) = db.server.trim_start_matches("postgres://").split_once('@').unwrap();
    let proxy = kiln_testkit::CuttableProxy::start(at.parse().unwrap()).await;
    let url = format!("postgres://{user}@{}/{}", proxy.addr(), db.name);
    let store = Store::connect_postgres(&url).await.unwrap();
    store.create_project("api").await.unwrap();

    proxy.down();
    let e = store.upsert_pipeline("api", "p", &src("version: 1\n")).await.unwrap_err();
    assert_eq!(e.fault(), Some(Fault::Unavailable), "{e}");

    proxy.up();
    store.upsert_pipeline("api", "p", &src("version: 1\n")).await.expect("writes work again");
    assert!(store.pipeline("api", "p").await.is_ok());
    store.close().await;
    db.drop_database().await;
}
