//! Project secrets, sealed. The server seals each value (AES-GCM) before it reaches the store
//! and opens it when a job needs it: the store keeps the key id, nonce and ciphertext and never
//! sees plaintext. Listing shows names and times only.

use chrono::{DateTime, Utc};

use crate::error::Ctx;
use crate::{Result, SealedSecret, SecretInfo, Store, StoreError, now};

/// Longest secret name.
const MAX_NAME: usize = 128;

#[derive(sqlx::FromRow)]
struct InfoRow {
    name: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl InfoRow {
    fn into_info(self) -> SecretInfo {
        SecretInfo { name: self.name, created_at: self.created_at, updated_at: self.updated_at }
    }
}

#[derive(sqlx::FromRow)]
struct SealedRow {
    name: String,
    key_id: String,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Checks a secret name: an environment variable name, `[A-Z_][A-Z0-9_]*`, at most 128 bytes
/// (jobs see secrets as environment variables).
pub(crate) fn check_secret_name(name: &str) -> Result<()> {
    check_variable_name("secret", name)
}

/// Checks the name of a secret or a variable (`what`) as [`check_secret_name`] does.
pub(crate) fn check_variable_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{what} name `{name}` is not valid: use 1 to {MAX_NAME} upper-case letters `A-Z`, \
             digits or `_`, not starting with a digit (like `DEPLOY_TOKEN`)"
        )))
    }
}

impl Store {
    /// Sets the secret `name` of `project` to `sealed`, creating it or replacing its value
    /// (`created_at` is kept, `updated_at` moves). `Invalid` for a name that is not an
    /// environment variable name or an empty field of `sealed`; `NotFound` for a missing
    /// project.
    pub async fn set_secret(
        &self,
        project: &str,
        name: &str,
        sealed: &SealedSecret,
    ) -> Result<SecretInfo> {
        check_secret_name(name)?;
        if sealed.key_id.is_empty() || sealed.nonce.is_empty() || sealed.ciphertext.is_empty() {
            return Err(StoreError::Invalid(format!(
                "secret `{name}` of project `{project}` needs a key id, a nonce and a ciphertext"
            )));
        }
        let what = || format!("set secret `{name}` of project `{project}`");
        let row = with_write!(self, p => sqlx::query_as::<_, InfoRow>(
            "INSERT INTO secrets \
             (project_id, name, key_id, nonce, ciphertext, created_at, updated_at) \
             SELECT id, $2, $3, $4, $5, $6, $6 FROM projects WHERE name = $1 \
             ON CONFLICT (project_id, name) DO UPDATE SET key_id = excluded.key_id, \
             nonce = excluded.nonce, ciphertext = excluded.ciphertext, \
             updated_at = excluded.updated_at \
             RETURNING name, created_at, updated_at")
            .bind(project)
            .bind(name)
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(now())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        // No row: the SELECT found no project.
        row.map(InfoRow::into_info)
            .ok_or_else(|| StoreError::NotFound(format!("project `{project}`")))
    }

    /// The secrets of `project`, by name, without their values. `NotFound` if the project
    /// does not exist.
    pub async fn secrets(&self, project: &str) -> Result<Vec<SecretInfo>> {
        let what = || format!("list secrets of project `{project}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, InfoRow>(
            "SELECT s.name, s.created_at, s.updated_at \
             FROM secrets s JOIN projects pr ON pr.id = s.project_id \
             WHERE pr.name = $1 ORDER BY s.name")
            .bind(project)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.project(project).await?;
        }
        Ok(rows.into_iter().map(InfoRow::into_info).collect())
    }

    /// The sealed values of every secret of `project`, by name, for the server to open when a
    /// job needs them. `NotFound` if the project does not exist.
    pub async fn sealed_secrets(&self, project: &str) -> Result<Vec<(String, SealedSecret)>> {
        let what = || format!("load secrets of project `{project}`");
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, SealedRow>(
            "SELECT s.name, s.key_id, s.nonce, s.ciphertext \
             FROM secrets s JOIN projects pr ON pr.id = s.project_id \
             WHERE pr.name = $1 ORDER BY s.name")
            .bind(project)
            .fetch_all(p)
            .await)
        .ctx(what)?;
        if rows.is_empty() {
            self.project(project).await?;
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let sealed =
                    SealedSecret { key_id: r.key_id, nonce: r.nonce, ciphertext: r.ciphertext };
                (r.name, sealed)
            })
            .collect())
    }

    /// Deletes the secret `name` of `project`. `NotFound` if there is no such secret (or no
    /// such project).
    pub async fn delete_secret(&self, project: &str, name: &str) -> Result<()> {
        let what = || format!("delete secret `{name}` of project `{project}`");
        let deleted = with_write!(self, p => sqlx::query(
            "DELETE FROM secrets \
             WHERE project_id = (SELECT id FROM projects WHERE name = $1) AND name = $2")
            .bind(project)
            .bind(name)
            .execute(p)
            .await
            .map(|done| done.rows_affected()))
        .ctx(what)?;
        if deleted == 0 {
            self.project(project).await?;
            return Err(StoreError::NotFound(format!("secret `{name}` of project `{project}`")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_env_var_names() {
        for ok in ["A", "_", "DEPLOY_TOKEN", "_X1", "AWS_SECRET_ACCESS_KEY", &"A".repeat(128)] {
            assert!(check_secret_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "lower", "A-B", "A B", "É", "A.B", &"A".repeat(129)] {
            assert!(check_secret_name(bad).is_err(), "{bad}");
        }
    }
}
