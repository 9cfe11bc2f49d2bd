//! Delivery: the head of every application and environment a consumer asked for, in memory,
//! each behind a `tokio::sync::watch` channel. A release stores first, then publishes the new
//! head here, which wakes every long poll and watch of that application and environment at
//! once: no consumer polls the store. A head replaces the one held only if its revision is
//! newer, so a slow load never overwrites a later release. The served bodies are serialized
//! once per release, not once per consumer.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::watch;

/// One release as consumers get it.
#[derive(Debug)]
pub struct Served {
    /// Its number.
    pub number: u32,
    /// Its files' digest (the `ETag`).
    pub digest: String,
    /// The JSON body (`kiln_api::config::DeliveredConfig`).
    pub body: Bytes,
}

impl Served {
    /// The release as consumers get it, files included (read back from its body).
    pub fn delivered(&self) -> Result<kiln_api::config::DeliveredConfig, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// What an application's consumers in one environment get.
#[derive(Debug, Default)]
pub struct Head {
    /// The store's revision of this head.
    pub revision: u64,
    /// The release everyone gets.
    pub current: Option<Arc<Served>>,
    /// The gray release and the instances that get it.
    pub gray: Option<(Arc<Served>, BTreeSet<String>)>,
}

impl Head {
    /// The release consumer `instance` gets (none before the first release).
    pub fn serves(&self, instance: Option<&str>) -> Option<&Arc<Served>> {
        kiln_config::release::serves(
            self.current.as_ref(),
            self.gray.as_ref().map(|(s, ids)| (s, ids)),
            instance,
        )
    }
}

/// Project, application, environment.
type Key = (String, String, String);

/// The heads consumers watch.
#[derive(Debug, Default)]
pub struct Hub {
    heads: Mutex<HashMap<Key, watch::Sender<Arc<Head>>>>,
}

fn key(project: &str, app: &str, env: &str) -> Key {
    (project.to_string(), app.to_string(), env.to_string())
}

impl Hub {
    fn heads(&self) -> std::sync::MutexGuard<'_, HashMap<Key, watch::Sender<Arc<Head>>>> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver of the head held for `project/app` in `env`, if one is held.
    pub fn get(&self, project: &str, app: &str, env: &str) -> Option<watch::Receiver<Arc<Head>>> {
        self.heads().get(&key(project, app, env)).map(watch::Sender::subscribe)
    }

    /// Holds `head` for `project/app` in `env` unless a newer one is held, waking the
    /// receivers when it replaces one; returns a receiver.
    pub fn put(
        &self,
        project: &str,
        app: &str,
        env: &str,
        head: Head,
    ) -> watch::Receiver<Arc<Head>> {
        let mut heads = self.heads();
        match heads.get(&key(project, app, env)) {
            Some(tx) => {
                tx.send_if_modified(|held| {
                    let newer = head.revision > held.revision;
                    if newer {
                        *held = Arc::new(head);
                    }
                    newer
                });
                tx.subscribe()
            }
            None => {
                let (tx, rx) = watch::channel(Arc::new(head));
                heads.insert(key(project, app, env), tx);
                rx
            }
        }
    }

    /// Drops the heads of environment `env` of `project` (deleted): their watches end.
    pub fn forget_environment(&self, project: &str, env: &str) {
        self.heads().retain(|(p, _, e), _| !(p == project && e == env));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(number: u32) -> Arc<Served> {
        Arc::new(Served { number, digest: format!("d{number}"), body: Bytes::new() })
    }

    #[tokio::test]
    async fn a_newer_head_wakes_the_watchers_an_older_one_is_ignored() {
        let hub = Hub::default();
        let mut rx =
            hub.put("p", "a", "prod", Head { revision: 2, current: Some(served(2)), gray: None });
        let stale = Head { revision: 1, current: Some(served(1)), gray: None };
        hub.put("p", "a", "prod", stale);
        assert!(!rx.has_changed().unwrap(), "an older head changes nothing");
        let gray = Some((served(3), BTreeSet::from(["i1".to_string()])));
        hub.put("p", "a", "prod", Head { revision: 3, current: Some(served(2)), gray });
        rx.changed().await.unwrap();
        let head = rx.borrow_and_update().clone();
        assert_eq!(head.serves(Some("i1")).map(|s| s.number), Some(3));
        assert_eq!(head.serves(Some("i2")).map(|s| s.number), Some(2));
        assert_eq!(head.serves(None).map(|s| s.number), Some(2));
        hub.forget_environment("p", "prod");
        assert!(hub.get("p", "a", "prod").is_none());
        assert!(rx.changed().await.is_err(), "a forgotten head ends its watches");
    }
}
