//! API tokens. A secret is `kiln_` followed by 32 random bytes in hex; only its SHA-256 is
//! stored, so a leaked database leaks no usable token. A revoked token never verifies.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::{Ctx, is_foreign_key};
use crate::model::DbText;
use crate::{
    NewToken, ProjectId, Result, Role, Store, StoreError, Token, TokenId, TokenSecret, now,
};

/// Every secret starts with this, so scanners can spot leaked Kiln tokens.
const PREFIX: &str = "kiln_";

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    role: String,
    project_id: Option<String>,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl TokenRow {
    fn into_token(self) -> Result<Token> {
        Ok(Token {
            id: TokenId::from_db(&self.id)?,
            name: self.name,
            role: Role::from_db(&self.role)?,
            project: self.project_id.as_deref().map(ProjectId::from_db).transpose()?,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
        })
    }
}

/// Hex SHA-256 of a secret, as stored.
fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Store {
    /// Creates a token and returns it with its secret. The secret is shown this once: the
    /// store keeps only its hash. `NotFound` if the project scope does not exist.
    pub async fn create_token(&self, new: &NewToken) -> Result<(Token, TokenSecret)> {
        if new.name.trim().is_empty() {
            return Err(StoreError::Invalid("a token needs a name".to_string()));
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Entropy(e.to_string()))?;
        let secret = TokenSecret(format!("{PREFIX}{}", hex::encode(bytes)));
        let what = || format!("create token `{}`", new.name);
        let row = with_write!(self, p => sqlx::query_as::<_, TokenRow>(
            "INSERT INTO tokens (id, name, hash, role, project_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id, name, role, project_id, created_at, last_used_at, revoked_at")
            .bind(TokenId::new().text())
            .bind(&new.name)
            .bind(hash(&secret.0))
            .bind(new.role.text())
            .bind(new.project.map(|p| p.text()))
            .bind(now())
            .fetch_one(p)
            .await);
        match row {
            Ok(row) => Ok((row.into_token()?, secret)),
            Err(e) if is_foreign_key(&e) => Err(StoreError::NotFound(format!(
                "project {} (scope of token `{}`)",
                new.project.map(|p| p.to_string()).unwrap_or_default(),
                new.name
            ))),
            Err(e) => Err(e).ctx(what),
        }
    }

    /// The live token whose secret is `secret`, marking it used now; `None` for anything else
    /// (malformed, unknown, revoked). Lookup is by hash, so the secret is never compared
    /// byte by byte against stored data.
    pub async fn verify_token(&self, secret: &str) -> Result<Option<Token>> {
        if !secret.starts_with(PREFIX) {
            return Ok(None);
        }
        let what = || "verify a token".to_string();
        let row = with_write!(self, p => sqlx::query_as::<_, TokenRow>(
            "UPDATE tokens SET last_used_at = $2 WHERE hash = $1 AND revoked_at IS NULL \
             RETURNING id, name, role, project_id, created_at, last_used_at, revoked_at")
            .bind(hash(secret))
            .bind(now())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.map(TokenRow::into_token).transpose()
    }

    /// Every token (revoked ones too), oldest first; no secrets.
    pub async fn tokens(&self) -> Result<Vec<Token>> {
        let what = || "list tokens".to_string();
        let rows = with_db!(&self.db, p => sqlx::query_as::<_, TokenRow>(
            "SELECT id, name, role, project_id, created_at, last_used_at, revoked_at \
             FROM tokens ORDER BY created_at, id")
            .fetch_all(p)
            .await)
        .ctx(what)?;
        rows.into_iter().map(TokenRow::into_token).collect()
    }

    /// One token by id (revoked or not); `NotFound` if there is none.
    pub async fn token(&self, id: &TokenId) -> Result<Token> {
        let what = || format!("get token {id}");
        let row = with_db!(&self.db, p => sqlx::query_as::<_, TokenRow>(
            "SELECT id, name, role, project_id, created_at, last_used_at, revoked_at \
             FROM tokens WHERE id = $1")
            .bind(id.text())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("token {id}")))?.into_token()
    }

    /// Revokes a token; from now on it never verifies. Revoking a revoked token keeps the
    /// first revocation time.
    pub async fn revoke_token(&self, id: &TokenId) -> Result<Token> {
        let what = || format!("revoke token {id}");
        let row = with_write!(self, p => sqlx::query_as::<_, TokenRow>(
            "UPDATE tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
             RETURNING id, name, role, project_id, created_at, last_used_at, revoked_at")
            .bind(id.text())
            .bind(now())
            .fetch_optional(p)
            .await)
        .ctx(what)?;
        row.ok_or_else(|| StoreError::NotFound(format!("token {id}")))?.into_token()
    }

    /// The stored hash of a token, for tests and audits (never the secret).
    pub async fn token_hash(&self, id: &TokenId) -> Result<String> {
        let what = || format!("get the hash of token {id}");
        let hash: Option<String> = with_db!(&self.db, p =>
            sqlx::query_scalar("SELECT hash FROM tokens WHERE id = $1")
                .bind(id.text())
                .fetch_optional(p)
                .await)
        .ctx(what)?;
        hash.ok_or_else(|| StoreError::NotFound(format!("token {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
