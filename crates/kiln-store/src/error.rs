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
