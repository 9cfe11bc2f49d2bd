//! The store's error type. Every message names the thing and where it is
//! ("pipeline `api/build` not found").

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change contradicts what is stored (a duplicate name, a finished run, a decided stage).
    #[error("{0}")]
    Conflict(String),
    /// What the change was decided on moved meanwhile (another change came first): read it
    /// again, decide again, retry.
    #[error("{0}")]
    Moved(String),
    /// The caller's input is not acceptable (a bad name, an empty field).
    #[error("{0}")]
    Invalid(String),
    /// A stored row could not be read back (a value the code does not know); the database was
    /// changed outside Kiln or by a newer version.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The operating system could not provide random bytes for a token.
    #[error("no randomness for a new token: {0}")]
    Entropy(String),
    /// The database server could not be reached or refused the connection; the message names
    /// the cause (refused at host:port, authentication failed for user X, database Y does not
    /// exist, no answer in time).
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    /// The database failed.
    #[error("{what}: {source}")]
    Db {
        /// What was being done.
        what: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// The driver's error, if the database failed.
    pub fn db_error(&self) -> Option<&sqlx::Error> {
        match self {
            StoreError::Db { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A fault of what the store stands on, not of the request: it passes once the disk has room
/// again, the data directory is writable again or the database server is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The disk (or the database server's) is full.
    Full,
    /// The database cannot be written: a read-only or vanished data directory, an I/O error.
    ReadOnly,
    /// The database server cannot be reached or is shutting down.
    Unavailable,
}

impl StoreError {
    /// The storage fault behind this error, if it is one (see [`Fault`]).
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StoreError::Connect(_) => Some(Fault::Unavailable),
            StoreError::Db { source, .. } => fault_of(source),
            _ => None,
        }
    }
}

/// The storage fault behind a driver error: SQLite's result codes (the primary code is the
/// low byte of the extended one), PostgreSQL's SQLSTATE classes, and lost connections.
fn fault_of(err: &sqlx::Error) -> Option<Fault> {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            let sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
            if sqlite && let Ok(n) = code.parse::<i32>() {
                // SQLite: FULL 13; READONLY 8, IOERR 10, CANTOPEN 14, NOTADB 26.
                return match n & 0xff {
                    13 => Some(Fault::Full),
                    8 | 10 | 14 | 26 => Some(Fault::ReadOnly),
                    _ => None,
                };
            }
            match code.as_ref() {
                "53100" => Some(Fault::Full),
                c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                    Some(Fault::Unavailable)
                }
                "25006" => Some(Fault::ReadOnly),
                _ => None,
            }
        }
        sqlx::Error::Io(e) if e.raw_os_error() == Some(28) => Some(Fault::Full),
        sqlx::Error::Io(e) if e.raw_os_error() == Some(30) => Some(Fault::ReadOnly),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Some(Fault::Unavailable),
        _ => None,
    }
}

/// Attaches what was being done to a driver error.
pub(crate) trait Ctx<T> {
    /// Wraps an error as [`StoreError::Db`] described by `what`.
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, sqlx::Error> {
    fn ctx<F: FnOnce() -> String>(self, what: F) -> Result<T> {
        self.map_err(|source| StoreError::Db { what: what(), source })
    }
}

/// What kind of constraint a driver error violated, if any.
pub(crate) fn violation(err: &sqlx::Error) -> Option<sqlx::error::ErrorKind> {
    match err {
        sqlx::Error::Database(e) => Some(e.kind()),
        _ => None,
    }
}

/// True for a unique or primary key violation.
pub(crate) fn is_unique(err: &sqlx::Error) -> bool {
    matches!(violation(err), Some(sqlx::error::ErrorKind::UniqueViolation))
}

/// True for a foreign key violation.
pub(crate) fn is_foreign_key(err: &sqlx::Error) -> bool {
    matches!(violation(err), Some(sqlx::error::ErrorKind::ForeignKeyViolation))
}
