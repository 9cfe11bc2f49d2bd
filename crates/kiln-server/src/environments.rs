//! Environments of a project: their order, the protected flag and their variables, with
//! secrets sealed by the server's [`SecretBox`] exactly as project secrets are (AES-GCM, the
//! project and the secret's place as associated data) and shown only as `***`.
//!
//! [`Environments::variables`] is what the environment's jobs and service instances are to get
//! (secrets opened, and the values their logs must mask); deploys will call it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_api::environments::{EnvVariable, Environment, MASK};
use kiln_store::{EnvValue, EnvVariableRecord, EnvironmentRecord, Store};

use crate::error::{ApiErr, ApiResult};
use crate::secrets::SecretBox;

/// What an environment's jobs and service instances get.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvVars {
    /// Every variable, secrets opened, by name.
    pub env: BTreeMap<String, String>,
    /// The secrets' values: what their logs must mask.
    pub masked: Vec<String>,
}

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values: a debug print of this must not leak a secret.
        f.debug_struct("EnvVars")
            .field("names", &self.env.keys().collect::<Vec<_>>())
            .field("masked", &self.masked.len())
            .finish()
    }
}

/// The environments' part of the server: the store and the secret box it seals with.
#[derive(Debug, Clone)]
pub struct Environments {
    store: Store,
    secrets: Arc<SecretBox>,
}

/// The name a secret of environment `env` is sealed under: apart from project secrets (whose
/// names have no `/`) and from the same name in another environment, so a sealed value copied
/// elsewhere does not open.
fn sealed_name(env: &str, name: &str) -> String {
    format!("env/{env}/{name}")
}

impl Environments {
    /// The environments of a server.
    pub fn new(store: Store, secrets: Arc<SecretBox>) -> Environments {
        Environments { store, secrets }
    }

    /// The API form of an environment with its variables (secrets masked).
    pub async fn dto(&self, e: EnvironmentRecord) -> ApiResult<Environment> {
        let vars = self.store.env_variables(&e.project, &e.name).await?;
        Ok(Environment {
            project: e.project,
            name: e.name,
            after: e.after,
            protected: e.protected,
            variables: vars.into_iter().map(variable_dto).collect(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        })
    }

    /// Every environment of `project`, in its order.
    pub async fn list(&self, project: &str) -> ApiResult<Vec<Environment>> {
        let mut out = Vec::new();
        for e in self.store.environments(project).await? {
            out.push(self.dto(e).await?);
        }
        Ok(out)
    }

    /// Sets variable `name` of `env`: plain, or sealed when `secret`.
    pub async fn set_variable(
        &self,
        project: &str,
        env: &str,
        name: &str,
        value: &str,
        secret: bool,
    ) -> ApiResult<EnvVariable> {
        let value = if secret {
            if value.is_empty() {
                return Err(ApiErr::bad_request("a secret's value must not be empty"));
            }
            let sealed = self
                .secrets
                .seal(project, &sealed_name(env, name), value)
                .map_err(|e| ApiErr::internal(format!("encrypt secret: {e}")))?;
            EnvValue::Sealed(sealed)
        } else {
            EnvValue::Plain(value.to_string())
        };
        let stored = self.store.set_env_variable(project, env, name, &value).await?;
        Ok(variable_dto(stored))
    }

    /// What the jobs and service instances of environment `env` of `project` get: every
    /// variable with secrets opened, and the secrets' values to mask in their logs.
    pub async fn variables(&self, project: &str, env: &str) -> ApiResult<EnvVars> {
        let mut out = EnvVars { env: BTreeMap::new(), masked: Vec::new() };
        for v in self.store.env_variables(project, env).await? {
            let value = match &v.value {
                EnvValue::Plain(value) => value.clone(),
                EnvValue::Sealed(sealed) => {
                    let value = self
                        .secrets
                        .open(project, &sealed_name(env, &v.name), sealed)
                        .map_err(|e| {
                            ApiErr::internal(format!(
                                "secret `{}` of environment `{project}/{env}`: {e}",
                                v.name
                            ))
                        })?;
                    out.masked.push(value.clone());
                    value
                }
            };
            out.env.insert(v.name, value);
        }
        Ok(out)
    }
}

/// The API form of a variable: a secret's value is `***`.
fn variable_dto(v: EnvVariableRecord) -> EnvVariable {
    let (value, secret) = match v.value {
        EnvValue::Plain(value) => (value, false),
        EnvValue::Sealed(_) => (MASK.to_string(), true),
    };
    EnvVariable { name: v.name, value, secret, updated_at: v.updated_at }
}
