//! The server's side of the OCI registry: Kiln tokens checked for `kiln-registry`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use kiln_registry::{Authenticator, Principal};
use kiln_store::{Store, TokenId};
use sha2::{Digest, Sha256};

use crate::auth::CACHE_TTL;

/// Checks registry passwords against the token table (cached like API tokens). A revoke
/// ([`TokenAuth::revoke`]) drops the cache and is remembered by token id, so neither the
/// token nor a registry token minted from it is accepted a moment longer.
#[derive(Debug)]
pub struct TokenAuth {
    store: Store,
    cache: Mutex<HashMap<String, (Principal, Instant)>>,
    revoked: Mutex<HashSet<TokenId>>,
}

impl TokenAuth {
    /// Over `store`'s tokens, knowing the ids of those revoked already.
    pub async fn load(store: Store) -> Result<TokenAuth, kiln_store::StoreError> {
        let revoked = store
            .tokens()
            .await?
            .into_iter()
            .filter(|t| t.revoked_at.is_some())
            .map(|t| t.id)
            .collect();
        Ok(TokenAuth { store, cache: Mutex::default(), revoked: Mutex::new(revoked) })
    }

    /// Token `id` was revoked: forget every cached password and refuse registry tokens
    /// minted from it.
    pub fn revoke(&self, id: TokenId) {
        self.revoked.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[async_trait]
impl Authenticator for TokenAuth {
    async fn authenticate(&self, secret: &str) -> Option<Principal> {
        let hash = hex::encode(Sha256::digest(secret.as_bytes()));
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(&hash).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(p, _)| p.clone())
        };
        if cached.is_some() {
            return cached;
        }
        let token = self.store.verify_token(secret).await.ok().flatten()?;
        let p = Principal {
            name: token.name,
            role: token.role,
            project: token.project,
            token: Some(token.id),
        };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, (p.clone(), Instant::now()));
        Some(p)
    }

    fn revoked(&self, principal: &Principal) -> bool {
        principal
            .token
            .as_ref()
            .is_some_and(|id| self.revoked.lock().unwrap_or_else(|p| p.into_inner()).contains(id))
    }
}

/// How long a lease's pull token is valid: its agent pulls the images when the task starts.
pub const PULL_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a job's registry token is valid.
pub const JOB_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
