//! The server's side of the OCI registry: Kiln tokens checked for `kiln-registry`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use kiln_registry::{Authenticator, Principal};
use kiln_store::Store;
use sha2::{Digest, Sha256};

use crate::auth::CACHE_TTL;

/// Checks registry passwords against the token table (cached like API tokens).
#[derive(Debug)]
pub struct TokenAuth {
    store: Store,
    cache: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TokenAuth {
    /// Over `store`'s tokens.
    pub fn new(store: Store) -> TokenAuth {
        TokenAuth { store, cache: Mutex::default() }
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
        let p = Principal { name: token.name, role: token.role, project: token.project };
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, (p.clone(), Instant::now()));
        Some(p)
    }
}

/// How long a lease's pull token is valid: its agent pulls the images when the task starts.
pub const PULL_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long a job's registry token is valid.
pub const JOB_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);
