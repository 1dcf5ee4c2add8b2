//! The fleet: one or several Docker engines behind the same [`InstanceBackend`]. Each instance
//! lives on one host; every call about an instance goes to that host. A host that stops
//! answering is marked down and left alone for a growing while (1 s, doubling, at most 30 s):
//! calls for its instances fail at once with the reason instead of waiting on it, and the rest of
//! the fleet is not slowed. The next probe after the wait finds out whether it is back.
//!
//! Placement (which host a new instance goes to) is decided here from the hosts' labels,
//! capacities and load; the caller supplies the load, since only the store knows it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{InstanceBackend, InstanceError};

mod routing;

/// The name of the one host when the config names a single engine (`[docker] host`).
pub const DEFAULT_HOST: &str = "default";
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A probe that gets no answer in this time counts as a host that does not answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the config says of a host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostSpec {
    pub name: String,
    /// Where the engine is, for people (never carries a secret).
    pub endpoint: String,
    pub labels: BTreeMap<String, String>,
    pub capacity_instances: Option<u32>,
    pub capacity_memory_mb: Option<u64>,
}

/// What the fleet last learnt of a host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostHealth {
    /// `None` until the host has been asked.
    pub reachable: Option<bool>,
    /// The engine's version, from the last probe that reached it.
    pub version: Option<String>,
    /// Why it was last unreachable.
    pub error: Option<String>,
    /// Failed probes or calls in a row.
    pub failures: u32,
    /// While set and in the future, the host is not asked again.
    retry_at: Option<Instant>,
    /// The reachability last reported by [`Host::changed`].
    reported: Option<bool>,
}

impl HostHealth {
    /// Seconds until the host is tried again, while it is down.
    pub fn retry_in(&self) -> Option<u64> {
        self.retry_at
            .map(|at| at.saturating_duration_since(Instant::now()).as_secs())
    }
}

pub struct Host {
    pub spec: HostSpec,
    backend: Arc<dyn InstanceBackend>,
    health: Mutex<HostHealth>,
}

impl Host {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn health(&self) -> HostHealth {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fails at once while the host is waiting out a failure.
    fn gate(&self) -> Result<(), InstanceError> {
        let health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match health.retry_at {
            Some(at) if at > Instant::now() => Err(InstanceError::Unreachable(format!(
                "host {} ({}) is not answering ({}); it is tried again in {} s",
                self.spec.name,
                self.spec.endpoint,
                health.error.as_deref().unwrap_or("no answer"),
                at.saturating_duration_since(Instant::now()).as_secs() + 1
            ))),
            _ => Ok(()),
        }
    }

    /// Learns from a call's outcome: an unreachable engine starts (or lengthens) the wait.
    fn observe<T>(&self, result: &Result<T, InstanceError>) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Err(InstanceError::Unreachable(why)) => {
                let wait = BACKOFF_FIRST
                    .saturating_mul(1 << health.failures.min(5))
                    .min(BACKOFF_MAX);
                health.failures = health.failures.saturating_add(1);
                health.reachable = Some(false);
                health.error = Some(why.clone());
                health.retry_at = Some(Instant::now() + wait);
            }
            _ => {
                health.failures = 0;
                health.reachable = Some(true);
                health.error = None;
                health.retry_at = None;
            }
        }
    }

    /// Runs a call on this host's engine, unless the host is waiting out a failure.
    pub async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, InstanceError>>,
    ) -> Result<T, InstanceError> {
        self.gate()?;
        let result = call.await;
        self.observe(&result);
        result
    }

    /// The engine, for calls that name no instance (pulling an image, a workspace copy).
    pub fn backend(&self) -> &dyn InstanceBackend {
        self.backend.as_ref()
    }

    /// Asks the engine for its version (unless the host is waiting out a failure), giving it
    /// [`PROBE_TIMEOUT`] to answer.
    pub async fn probe(&self) -> HostHealth {
        let asked = async {
            tokio::time::timeout(PROBE_TIMEOUT, self.backend.engine())
                .await
                .unwrap_or_else(|_| {
                    Err(InstanceError::Unreachable(format!(
                        "{}: no answer within {} s",
                        self.spec.endpoint,
                        PROBE_TIMEOUT.as_secs()
                    )))
                })
        };
        if let Ok(version) = self.run(asked).await {
            self.health
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .version = Some(version);
        }
        self.health()
    }

    /// Whether the host went down (`Some(false)`) or came back (`Some(true)`) since the last
    /// call. A host first seen answering is not news.
    pub fn changed(&self) -> Option<bool> {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let now = health.reachable?;
        let before = health.reported.replace(now);
        match before {
            None if now => None,
            Some(was) if was == now => None,
            _ => Some(now),
        }
    }

    /// Known to be down right now.
    pub fn is_down(&self) -> bool {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reachable
            == Some(false)
    }
}

/// Where a new instance may go.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Placement {
    /// The least-loaded host that fits.
    #[default]
    Anywhere,
    /// This host.
    Host(String),
    /// A host carrying all these labels.
    Labels(BTreeMap<String, String>),
}

/// What a host already holds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Load {
    pub instances: u64,
    pub memory_mb: u64,
}

pub struct Fleet {
    hosts: Vec<Arc<Host>>,
    /// Instance name -> host name.
    placement: RwLock<HashMap<String, String>>,
}

impl Fleet {
    pub fn new(hosts: Vec<(HostSpec, Arc<dyn InstanceBackend>)>) -> Self {
        Self {
            hosts: hosts
                .into_iter()
                .map(|(spec, backend)| {
                    Arc::new(Host {
                        spec,
                        backend,
                        health: Mutex::new(HostHealth::default()),
                    })
                })
                .collect(),
            placement: RwLock::new(HashMap::new()),
        }
    }

    /// A fleet of one engine, named [`DEFAULT_HOST`].
    pub fn single(endpoint: &str, backend: Arc<dyn InstanceBackend>) -> Self {
        let spec = HostSpec {
            name: DEFAULT_HOST.into(),
            endpoint: if endpoint.trim().is_empty() {
                "local socket".into()
            } else {
                endpoint.trim().into()
            },
            ..HostSpec::default()
        };
        Self::new(vec![(spec, backend)])
    }

    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.hosts
    }

    pub fn host(&self, name: &str) -> Option<&Arc<Host>> {
        self.hosts.iter().find(|h| h.spec.name == name)
    }

    /// The host that instances recorded without one belong to: the first configured.
    pub fn first_host(&self) -> &str {
        self.hosts.first().map(|h| h.name()).unwrap_or(DEFAULT_HOST)
    }

    /// A host by name, or an error saying it is not configured.
    pub fn on(&self, name: &str) -> Result<&Arc<Host>, InstanceError> {
        self.host(name).ok_or_else(|| {
            InstanceError::Unreachable(format!(
                "host {name} is not in the configuration ([[docker.hosts]])"
            ))
        })
    }

    /// Records that `instance` lives on `host`.
    pub fn place(&self, instance: &str, host: &str) {
        self.placement
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(instance.to_string(), host.to_string());
    }

    /// Records `host` for `instance` unless it already has one (a reader of older records must
    /// not undo a move made meanwhile).
    pub fn adopt(&self, instance: &str, host: &str) {
        self.placement
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(instance.to_string())
            .or_insert_with(|| host.to_string());
    }

    pub fn forget(&self, instance: &str) {
        self.placement
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(instance);
    }

    /// The host an instance lives on. With a single host, every instance lives there.
    pub fn host_of(&self, instance: &str) -> Result<&Arc<Host>, InstanceError> {
        let placed = self
            .placement
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(instance)
            .cloned();
        match placed {
            Some(host) => self.on(&host),
            None if self.hosts.len() == 1 => Ok(&self.hosts[0]),
            None => Err(InstanceError::Failed(format!(
                "instance {instance} has no host recorded"
            ))),
        }
    }

    /// Picks the host for a new instance that promises `memory_mb`: among the hosts `want`
    /// allows that are not known to be down and have room, the one with the smallest share of
    /// its capacity in use (a host without capacity counts as empty), then the fewest
    /// instances, then the first configured. `load` says what each host holds.
    pub fn choose(
        &self,
        want: &Placement,
        load: &HashMap<String, Load>,
        memory_mb: u64,
    ) -> Result<String, String> {
        let allowed: Vec<&Arc<Host>> = match want {
            Placement::Anywhere => self.hosts.iter().collect(),
            Placement::Host(name) => match self.host(name) {
                Some(host) => vec![host],
                None => {
                    return Err(format!(
                        "there is no host {name:?}; the hosts are {}",
                        self.names()
                    ));
                }
            },
            Placement::Labels(labels) => {
                let matching: Vec<_> = self
                    .hosts
                    .iter()
                    .filter(|h| labels.iter().all(|(k, v)| h.spec.labels.get(k) == Some(v)))
                    .collect();
                if matching.is_empty() {
                    return Err(format!("no host has the labels {}", show_labels(labels)));
                }
                matching
            }
        };
        let mut reasons = Vec::new();
        let mut best: Option<(f64, u64, usize, &Arc<Host>)> = None;
        for (index, host) in allowed.into_iter().enumerate() {
            let used = load.get(host.name()).copied().unwrap_or_default();
            if host.is_down() {
                let why = host.health().error.unwrap_or_else(|| "no answer".into());
                reasons.push(format!("{} is not answering: {why}", host.name()));
                continue;
            }
            let mut share: f64 = 0.0;
            if let Some(cap) = host.spec.capacity_instances {
                if used.instances + 1 > u64::from(cap) {
                    reasons.push(format!("{} is full ({cap} instances)", host.name()));
                    continue;
                }
                share = share.max((used.instances + 1) as f64 / f64::from(cap));
            }
            if let Some(cap) = host.spec.capacity_memory_mb {
                if used.memory_mb + memory_mb > cap {
                    reasons.push(format!(
                        "{} has {} of {cap} MiB left",
                        host.name(),
                        cap.saturating_sub(used.memory_mb)
                    ));
                    continue;
                }
                share = share.max((used.memory_mb + memory_mb) as f64 / cap as f64);
            }
            let key = (share, used.instances, index);
            if best.is_none_or(|(s, n, i, _)| key < (s, n, i)) {
                best = Some((share, used.instances, index, host));
            }
        }
        match best {
            Some((_, _, _, host)) => Ok(host.name().to_string()),
            None => Err(format!("no host can take it: {}", reasons.join("; "))),
        }
    }

    fn names(&self) -> String {
        self.hosts
            .iter()
            .map(|h| h.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Probes every host at once.
    pub async fn probe_all(&self) -> Vec<(Arc<Host>, HostHealth)> {
        let probes = self.hosts.iter().map(|h| async move {
            let health = h.probe().await;
            (h.clone(), health)
        });
        futures_util::future::join_all(probes).await
    }
}

pub fn show_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
