//! The elastic pool's calls: node groups and the autoscaler's events.

use kiln_api::autoscale::{AppliedNodeGroup, NodeGroupInfo, NodeGroupSpec, PoolEvent};
use reqwest::Method;

use crate::{Client, Result};

impl Client {
    /// Every node group with its nodes.
    pub async fn node_groups(&self) -> Result<Vec<NodeGroupInfo>> {
        self.json(self.request(Method::GET, self.url(&["pool", "groups"]))).await
    }

    /// Creates or replaces a node group.
    pub async fn apply_node_group(&self, spec: &NodeGroupSpec) -> Result<AppliedNodeGroup> {
        self.json(self.request(Method::PUT, self.url(&["pool", "groups"])).json(spec)).await
    }

    /// One node group.
    pub async fn node_group(&self, name: &str) -> Result<NodeGroupInfo> {
        self.json(self.request(Method::GET, self.url(&["pool", "groups", name]))).await
    }

    /// Deletes a node group that has no node left.
    pub async fn delete_node_group(&self, name: &str) -> Result<()> {
        let url = self.url(&["pool", "groups", name]);
        self.send(self.request(Method::DELETE, url)).await.map(|_| ())
    }

    /// The autoscaler's latest `limit` events (of `group`), oldest first, after id `after`.
    pub async fn pool_events(
        &self,
        group: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<PoolEvent>> {
        let mut url = self.url(&["pool", "events"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(g) = group {
                q.append_pair("group", g);
            }
            if let Some(a) = after {
                q.append_pair("after", &a.to_string());
            }
            q.append_pair("limit", &limit.to_string());
        }
        self.json(self.request(Method::GET, url)).await
    }
}
