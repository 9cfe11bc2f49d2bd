//! The agent's image cache: what its engine holds, reported to the server for ImageLocality
//! placement (only when it changed), prepull orders carried out, and LRU eviction under a
//! size budget (`kiln agent --image-cache-size`).
//!
//! Last use is kept per image name ([`kiln_scheduler::image_key`] of the references tasks
//! and prepulls named) in `WORK_DIR/images.json`, so the order survives an agent restart; an
//! image never used here counts from when it was made. An image a running task (or one
//! being pulled) names is never evicted, and the engine itself refuses to remove one a
//! container uses. Sizes are each image's own (layers shared between images counted in
//! each), so the budget is kept conservatively.
//!
//! [`plan_eviction`] is the pure decision; [`ImageCache`] does the I/O around it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kiln_api::agent::{ImagesReport, PrepullDone, PrepullOrder};
use kiln_api::pool::NodeImage;
use kiln_client::Client;
use kiln_exec::{ExecError, Executor, ImageInfo};
use kiln_scheduler::image_key;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the cache looks at the engine when nothing woke it.
const TICK: Duration = Duration::from_secs(30);

/// Every name an image answers to, by [`image_key`]: its tags, its digests and its id.
fn keys(i: &ImageInfo) -> impl Iterator<Item = String> + '_ {
    i.tags.iter().chain(&i.digests).map(|n| image_key(n)).chain(std::iter::once(i.id.clone()))
}

/// When `image` was last used according to `last_used` (the latest of its names), if ever.
fn last_use(
    image: &ImageInfo,
    last_used: &BTreeMap<String, DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    keys(image).filter_map(|k| last_used.get(&k).copied()).max()
}

/// The images to remove, least recently used first, so that what stays fits in `budget`
/// bytes: `in_use` names (image keys) are never chosen, and an image never used counts from
/// its creation. Empty when everything fits already; when the images in use alone exceed
/// the budget, every other image is chosen.
pub fn plan_eviction(
    images: &[ImageInfo],
    last_used: &BTreeMap<String, DateTime<Utc>>,
    in_use: &BTreeSet<String>,
    budget: u64,
) -> Vec<String> {
    let mut total: u64 = images.iter().map(|i| i.size).sum();
    if total <= budget {
        return Vec::new();
    }
    let mut candidates: Vec<(i64, &str, u64)> = images
        .iter()
        .filter(|i| !keys(i).any(|k| in_use.contains(&k)))
        .map(|i| {
            let when = last_use(i, last_used).map_or(i.created, |t| t.timestamp().max(i.created));
            (when, i.id.as_str(), i.size)
        })
        .collect();
    candidates.sort();
    let mut out = Vec::new();
    for (_, id, size) in candidates {
        if total <= budget {
            break;
        }
        total = total.saturating_sub(size);
        out.push(id.to_string());
    }
    out
}

#[derive(Default)]
struct State {
    /// Last use per image key (persisted).
    last_used: BTreeMap<String, DateTime<Utc>>,
    /// Image keys running tasks and pulls name, with how many.
    in_use: BTreeMap<String, u32>,
    /// Finished prepulls not reported yet.
    done: Vec<PrepullDone>,
    /// The images last reported (at registration or in a report).
    sent: Option<Vec<NodeImage>>,
}

/// The agent's image cache over its executor; see the module docs. Cheap to share (`Arc`).
pub struct ImageCache {
    executor: Arc<dyn Executor>,
    /// Most bytes of images kept; `None`: no eviction.
    budget: Option<u64>,
    /// `WORK_DIR/images.json`.
    path: PathBuf,
    state: Mutex<State>,
    wake: Notify,
}

/// Marks names in use while it lives (a running task's images); dropping it stamps their
/// last use and wakes the cache.
pub struct InUse {
    cache: Arc<ImageCache>,
    keys: Vec<String>,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let now = Utc::now();
        {
            let mut st = self.cache.lock();
            for k in &self.keys {
                if let Some(n) = st.in_use.get_mut(k) {
                    *n -= 1;
                    if *n == 0 {
                        st.in_use.remove(k);
                    }
                }
                st.last_used.insert(k.clone(), now);
            }
        }
        self.cache.wake.notify_one();
    }
}

impl ImageCache {
    /// A cache over `executor`'s images, keeping its records in `work_dir`, evicting down to
    /// `budget` bytes when one is given.
    pub fn new(
        executor: Arc<dyn Executor>,
        work_dir: &std::path::Path,
        budget: Option<u64>,
    ) -> Arc<ImageCache> {
        let path = work_dir.join("images.json");
        let last_used = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Arc::new(ImageCache {
            executor,
            budget,
            path,
            state: Mutex::new(State { last_used, ..State::default() }),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `images` (references as tasks name them) in use until the guard drops.
    pub fn using<'a>(self: &Arc<Self>, images: impl IntoIterator<Item = &'a str>) -> InUse {
        let now = Utc::now();
        let keys: Vec<String> =
            images.into_iter().filter(|i| !i.trim().is_empty()).map(image_key).collect();
        let mut st = self.lock();
        for k in &keys {
            *st.in_use.entry(k.clone()).or_insert(0) += 1;
            st.last_used.insert(k.clone(), now);
        }
        InUse { cache: self.clone(), keys }
    }

    /// The engine's images as the server sees them; `None` when the executor has none.
    pub async fn list(&self) -> Option<Vec<NodeImage>> {
        match self.executor.list_images().await {
            Ok(images) => Some(self.node_images(&images)),
            Err(ExecError::Unsupported { .. }) => None,
            Err(e) => {
                tracing::warn!("listing images failed: {e}");
                Some(Vec::new())
            }
        }
    }

    fn node_images(&self, images: &[ImageInfo]) -> Vec<NodeImage> {
        let st = self.lock();
        let mut out: Vec<NodeImage> = images
            .iter()
            .map(|i| NodeImage {
                id: i.id.clone(),
                tags: i.tags.clone(),
                digests: i.digests.clone(),
                size: i.size,
                last_used: last_use(i, &st.last_used),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// What the server was told at registration.
    pub fn registered(&self, images: Option<Vec<NodeImage>>) {
        self.lock().sent = images;
    }

    /// Carries out a prepull order beside everything else; its end is reported.
    pub fn prepull(self: &Arc<Self>, order: PrepullOrder) {
        let cache = self.clone();
        tokio::spawn(async move {
            let guard = cache.using([order.image.as_str()]);
            let auth = order.pull.as_ref().map(|p| kiln_exec::RegistryAuth {
                registry: p.registry.clone(),
                username: p.username.clone(),
                password: p.password.clone(),
            });
            let started = Instant::now();
            let r = cache.executor.pull_image(&order.image, auth.as_ref()).await;
            let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            if let Err(e) = &r {
                tracing::warn!("prepull of {}: {e}", order.image);
            }
            let done = PrepullDone { id: order.id, error: r.err().map(|e| e.to_string()), millis };
            cache.lock().done.push(done);
            drop(guard);
        });
    }

    /// Evicts (when over budget), then reports to the server what changed, until `stop`:
    /// woken by tasks ending and prepulls, else every [`TICK`]. `session` is the agent's
    /// live session id.
    pub async fn keep(
        self: Arc<Self>,
        client: Client,
        session: Arc<Mutex<String>>,
        stop: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
            self.evict().await;
            self.save();
            let Some(images) = self.list().await else {
                // Only prepull answers to send (they failed: no images here).
                if self.lock().done.is_empty() {
                    continue;
                }
                self.report(&client, &session, None).await;
                continue;
            };
            let changed = self.lock().sent.as_ref() != Some(&images);
            if changed || !self.lock().done.is_empty() {
                self.report(&client, &session, changed.then_some(images)).await;
            }
        }
    }

    async fn report(
        &self,
        client: &Client,
        session: &Mutex<String>,
        images: Option<Vec<NodeImage>>,
    ) {
        let prepulls = std::mem::take(&mut self.lock().done);
        let report = ImagesReport { images: images.clone(), prepulls: prepulls.clone() };
        let id = session.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if id.is_empty() {
            self.lock().done.extend(prepulls);
            return;
        }
        match client.report_images(&id, &report).await {
            Ok(()) => {
                if images.is_some() {
                    self.lock().sent = images;
                }
            }
            Err(e) => {
                tracing::warn!("image report: {e}; sent again later");
                self.lock().done.extend(prepulls);
                self.wake.notify_one();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// Removes least recently used images not in use until the rest fits the budget.
    async fn evict(&self) {
        let Some(budget) = self.budget else { return };
        let Ok(images) = self.executor.list_images().await else { return };
        let ids = {
            let st = self.lock();
            let in_use: BTreeSet<String> = st.in_use.keys().cloned().collect();
            plan_eviction(&images, &st.last_used, &in_use, budget)
        };
        for id in ids {
            // Checked again: a task may have started with it since the plan was made.
            let image = images.iter().find(|i| i.id == id);
            let busy = {
                let st = self.lock();
                image.is_some_and(|i| keys(i).any(|k| st.in_use.contains_key(&k)))
            };
            if busy {
                continue;
            }
            match self.executor.remove_image(&id).await {
                Ok(()) => {
                    let names: Vec<String> = image.map(|i| i.tags.clone()).unwrap_or_default();
                    tracing::info!(
                        "evicted image {id} {names:?} (image cache over {budget} bytes)"
                    );
                    let mut st = self.lock();
                    if let Some(i) = image {
                        for k in keys(i) {
                            st.last_used.remove(&k);
                        }
                    }
                }
                Err(e) => tracing::warn!("evicting image {id}: {e}"),
            }
        }
    }

    /// Writes the last-use records (whole, by rename).
    fn save(&self) {
        let bytes = serde_json::to_vec(&self.lock().last_used).unwrap_or_default();
        let tmp = self.path.with_extension("json.tmp");
        if std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &self.path)).is_err() {
            tracing::warn!("could not write {}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const MI: u64 = 1 << 20;

    fn image(id: &str, tag: &str, size_mi: u64, created: i64) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            tags: vec![tag.into()],
            digests: vec![],
            size: size_mi * MI,
            created,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn nothing_goes_while_everything_fits() {
        let images = [image("sha256:a", "a:1", 100, 1), image("sha256:b", "b:1", 100, 2)];
        let plan = plan_eviction(&images, &BTreeMap::new(), &BTreeSet::new(), 200 * MI);
        assert!(plan.is_empty(), "{plan:?}");
    }

    #[test]
    fn the_least_recently_used_go_first_until_the_rest_fits() {
        let images = [
            image("sha256:a", "a:1", 100, 1),
            image("sha256:b", "b:1", 100, 2),
            image("sha256:c", "c:1", 100, 3),
            image("sha256:d", "d:1", 100, 4),
        ];
        // `a` was used last, `c` long ago; `b` and `d` never (they count from creation).
        let used = BTreeMap::from([("a:1".to_string(), at(1000)), ("c:1".to_string(), at(3))]);
        let plan = plan_eviction(&images, &used, &BTreeSet::new(), 200 * MI);
        assert_eq!(plan, ["sha256:b", "sha256:c"]);
    }

    #[test]
    fn an_image_in_use_is_never_chosen() {
        let images = [image("sha256:a", "a:1", 100, 1), image("sha256:b", "b:1", 100, 2)];
        let in_use = BTreeSet::from([image_key("a:1")]);
        assert_eq!(plan_eviction(&images, &BTreeMap::new(), &in_use, 100 * MI), ["sha256:b"]);
        // In use by its id or a name written another way: still kept.
        let in_use = BTreeSet::from(["sha256:a".to_string(), image_key("docker.io/library/b")]);
        let mut images = images.to_vec();
        images[1].tags = vec!["b:latest".into()];
        assert!(plan_eviction(&images, &BTreeMap::new(), &in_use, 0).is_empty());
    }

    #[test]
    fn over_budget_by_images_in_use_alone_every_other_goes() {
        let images = [image("sha256:a", "a:1", 500, 1), image("sha256:b", "b:1", 10, 2)];
        let in_use = BTreeSet::from([image_key("a:1")]);
        assert_eq!(plan_eviction(&images, &BTreeMap::new(), &in_use, 100 * MI), ["sha256:b"]);
    }
}
