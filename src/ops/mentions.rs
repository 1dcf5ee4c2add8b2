//! Files by name across the fleet, for `@name.ext` mentions: each active instance's
//! `/workspace` is listed once into an index kept here, used until it is a minute old, and
//! listed again on a miss (a file made a moment ago is found). `@instance:path` is exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{Value, json};

use super::{OpError, Ops};
use crate::instance::files::{self, IndexedFile};
use crate::store::{InstanceRecord, InstanceStatus};

/// An index older than this is listed again before it is used.
const FRESH: Duration = Duration::from_secs(60);
/// On a miss, an index at least this old is listed again.
const RECHECK: Duration = Duration::from_secs(2);

/// A file a mention names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    pub instance: String,
    /// The agent that owns the instance, if any.
    pub agent: Option<String>,
    pub path: String,
    pub size: u64,
    /// Seconds since the epoch.
    pub modified: i64,
}

impl Found {
    /// `instance:path`, the exact form of a mention.
    pub fn exact(&self) -> String {
        format!(
            "{}:{}",
            self.instance,
            self.path.trim_start_matches("/workspace/")
        )
    }
}

struct Listing {
    at: Instant,
    files: Arc<Vec<IndexedFile>>,
}

/// The per-instance file lists.
#[derive(Default)]
pub struct MentionIndex {
    listings: Mutex<HashMap<String, Listing>>,
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

impl Ops {
    /// The files of one instance, from the index when it is younger than `max_age`.
    async fn listing(
        &self,
        instance: &str,
        max_age: Duration,
    ) -> Result<Arc<Vec<IndexedFile>>, OpError> {
        let index = &self.inner.mentions;
        if let Some(l) = index.listings.lock().expect("index lock").get(instance)
            && l.at.elapsed() < max_age
        {
            return Ok(l.files.clone());
        }
        let files = Arc::new(files::index(self.instances().as_ref(), instance).await?);
        index.listings.lock().expect("index lock").insert(
            instance.to_string(),
            Listing {
                at: Instant::now(),
                files: files.clone(),
            },
        );
        Ok(files)
    }

    async fn active_instances(&self) -> Result<Vec<InstanceRecord>, OpError> {
        let mut all = self.store().list_instances().await?;
        all.retain(|i| i.status == InstanceStatus::Active);
        Ok(all)
    }

    /// Files whose name is `name` (any case) in every active instance, newest first, and the
    /// instances that could not be searched (with why).
    pub async fn find_files(&self, name: &str) -> Result<(Vec<Found>, Vec<String>), OpError> {
        let instances = self.active_instances().await?;
        let same = |f: &IndexedFile| base_name(&f.path).eq_ignore_ascii_case(name);
        let (found, failed) = self.matching(&instances, FRESH, same).await;
        if !found.is_empty() {
            return Ok((found, failed));
        }
        Ok(self.matching(&instances, RECHECK, same).await)
    }

    /// `instance:path`: that file, if it exists (listed again once if not in the index).
    pub async fn find_exact(&self, instance: &str, path: &str) -> Result<Option<Found>, OpError> {
        let record = self.store().instance(instance).await?;
        let path = files::resolve(path)?;
        for max_age in [FRESH, Duration::ZERO] {
            let files = self.listing(&record.name, max_age).await?;
            if let Some(f) = files.iter().find(|f| f.path == path) {
                return Ok(Some(found(&record, f)));
            }
        }
        Ok(None)
    }

    async fn matching(
        &self,
        instances: &[InstanceRecord],
        max_age: Duration,
        keep: impl Fn(&IndexedFile) -> bool,
    ) -> (Vec<Found>, Vec<String>) {
        let listings = join_all(instances.iter().map(|i| self.listing(&i.name, max_age))).await;
        let mut out = Vec::new();
        let mut failed = Vec::new();
        for (record, listing) in instances.iter().zip(listings) {
            match listing {
                Ok(files) => out.extend(files.iter().filter(|f| keep(f)).map(|f| found(record, f))),
                Err(e) => {
                    tracing::warn!(instance = %record.name, "cannot list files for mentions: {e}");
                    failed.push(format!("{}: {e}", record.name));
                }
            }
        }
        out.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.path.cmp(&b.path)));
        (out, failed)
    }

    /// What the admin chat box offers for `@q`: agents whose name starts with `q`, then files
    /// whose name contains it (names starting with it first, then newest), at most 20 in all.
    pub async fn mention_suggestions(&self, q: &str) -> Result<Value, OpError> {
        let q = q.trim().trim_start_matches('@').to_ascii_lowercase();
        let agents: Vec<String> = self
            .store()
            .list_agents()
            .await?
            .into_iter()
            .map(|a| a.name)
            .filter(|n| n.starts_with(&q))
            .take(20)
            .collect();
        let instances = self.active_instances().await?;
        let (mut files, _) = self
            .matching(&instances, FRESH, |f| {
                base_name(&f.path).to_ascii_lowercase().contains(&q)
            })
            .await;
        files.sort_by_key(|f| !base_name(&f.path).to_ascii_lowercase().starts_with(&q));
        files.truncate(20usize.saturating_sub(agents.len()));
        let files: Vec<Value> = files
            .iter()
            .map(|f| {
                json!({
                    "name": base_name(&f.path), "mention": f.exact(), "instance": f.instance,
                    "agent": f.agent, "path": f.path, "size": f.size, "modified": f.modified,
                })
            })
            .collect();
        Ok(json!({ "agents": agents, "files": files }))
    }
}

fn found(record: &InstanceRecord, f: &IndexedFile) -> Found {
    Found {
        instance: record.name.clone(),
        agent: record.agent.clone(),
        path: f.path.clone(),
        size: f.size,
        modified: f.modified,
    }
}
