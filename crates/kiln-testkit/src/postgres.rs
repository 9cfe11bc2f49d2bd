//! Fresh PostgreSQL databases for tests, on the server `KILN_STORE_TEST_POSTGRES` names
//! (`cargo xtask ci` starts one and sets it, with `KILN_REQUIRE_POSTGRES=1`).

/// The variable naming the PostgreSQL server (`postgres://USER@HOST:PORT`, no database).
pub const URL_VAR: &str = "KILN_STORE_TEST_POSTGRES";

/// A database made for one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestDb {
    /// The server, without a database (`postgres://postgres@127.0.0.1:55432`).
    pub server: String,
    /// The database's name.
    pub name: String,
}

impl TestDb {
    /// Its URL.
    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// Drops it, even with connections still open.
    pub async fn drop_database(&self) {
        let admin = admin_pool(&self.server).await;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.name)))
            .execute(&admin)
            .await
            .expect("drop test database");
        admin.close().await;
    }
}

/// A fresh database `<prefix>_<uuid>` on the server [`URL_VAR`] names, or `None` with a note
/// (once per test binary) when it is unset, in which case the test passes without running.
/// With `KILN_REQUIRE_POSTGRES=1`, an unset variable fails the test instead.
pub async fn fresh_database(prefix: &str, test: &str) -> Option<TestDb> {
    let Some(server) = std::env::var(URL_VAR).ok().filter(|s| !s.is_empty()) else {
        assert!(
            std::env::var("KILN_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "{test}: KILN_REQUIRE_POSTGRES=1 but {URL_VAR} names no server"
        );
        // Once per test binary, past the harness's capture of `eprintln!`.
        static NOTE: std::sync::Once = std::sync::Once::new();
        NOTE.call_once(|| {
            let note = format!(
                "note: {URL_VAR} is unset: PostgreSQL tests pass without running (set it to \
                 postgres://USER@HOST:PORT)\n"
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
        });
        return None;
    };
    let server = server.trim_end_matches('/').to_string();
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let admin = admin_pool(&server).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    Some(TestDb { server, name })
}

/// A connection pool to the `postgres` database of `server`.
pub async fn admin_pool(server: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(&format!("{server}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL at {server}: {e}"))
}
