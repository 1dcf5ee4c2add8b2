//! The Docker hosts of the fleet: where a new instance goes, reconciliation host by host (a host
//! that does not answer marks its instances `unreachable`, nothing is deleted, and the other
//! hosts are compared as usual), `host_list`, and `instance_move`, which carries an instance and
//! its workspace to another host.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::instances::{invalid, record_json, spec_of, status_of};
use super::{Access, OpError, OpSpec, Ops, Output, report_progress};
use crate::instance::{Host, HostHealth, Load, Placement, RunState, fleet::show_labels};
use crate::store::{InstanceRecord, InstanceStatus, NewActivity};

pub const LIST: OpSpec = OpSpec::tool(
    "host_list",
    "List the Docker hosts: whether each answers, its engine version, labels, instances and \
     capacity used.",
    Access::Owner,
    || json!({ "type": "object", "properties": {} }),
);

pub const MOVE: OpSpec = OpSpec::tool(
    "instance_move",
    "Move an instance to another Docker host: it is stopped, its /workspace is copied there, \
     its container is created there, and the old one is removed. Running instances are \
     started again on the new host.",
    Access::Owner,
    || {
        json!({
            "type": "object",
            "properties": {
                "name": { "type": "string" },
                "host": { "type": "string", "description": "the host to move it to" }
            },
            "required": ["name", "host"]
        })
    },
);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveArgs {
    name: String,
    host: String,
}

/// What each host holds, from the stored instances (leaving `except` out). Instances stored
/// without a host count for `default_host`.
pub fn loads(
    records: &[InstanceRecord],
    except: Option<&str>,
    default_host: &str,
) -> HashMap<String, Load> {
    let mut load: HashMap<String, Load> = HashMap::new();
    for r in records.iter().filter(|r| Some(r.name.as_str()) != except) {
        let host = if r.host.is_empty() {
            default_host
        } else {
            &r.host
        };
        let l = load.entry(host.to_string()).or_default();
        l.instances += 1;
        l.memory_mb += u64::try_from(r.memory_mb).unwrap_or(0);
    }
    load
}

/// Chooses a host for `name` (a new instance, or one `moving` off its host), promising
/// `memory_mb`, from what the hosts hold now.
pub(super) async fn place(
    ops: &Ops,
    name: &str,
    want: &Placement,
    memory_mb: i64,
    moving: bool,
) -> Result<String, OpError> {
    let records = ops.store().list_instances().await?;
    let memory = u64::try_from(memory_mb).unwrap_or(0);
    let fleet = ops.fleet();
    let load = loads(&records, moving.then_some(name), fleet.first_host());
    fleet.choose(want, &load, memory).map_err(|why| {
        let verb = if moving { "moved" } else { "placed" };
        OpError::Conflict(format!("instance {name} cannot be {verb}: {why}"))
    })
}

/// A host as `host_list` and `/status` show it: its last health and what it holds.
pub(super) struct HostReport {
    host: Arc<Host>,
    health: HostHealth,
    used: Load,
}

/// Every host, probed, with what it holds.
pub(super) async fn reports(ops: &Ops) -> Result<Vec<HostReport>, OpError> {
    let records = ops.store().list_instances().await?;
    let fleet = ops.fleet();
    let load = loads(&records, None, fleet.first_host());
    Ok(fleet
        .probe_all()
        .await
        .into_iter()
        .map(|(host, health)| HostReport {
            used: load.get(host.name()).copied().unwrap_or_default(),
            host,
            health,
        })
        .collect())
}

impl HostReport {
    fn reachable(&self) -> bool {
        self.health.reachable == Some(true)
    }

    /// The facts; `where_` adds the endpoint and labels (owners only: `/status` is for members).
    pub(super) fn json(&self, where_: bool) -> Value {
        let spec = &self.host.spec;
        let mut data = json!({
            "name": self.host.name(),
            "reachable": self.reachable(),
            "version": self.health.version,
            "error": self.health.error,
            "instances": self.used.instances,
            "capacity_instances": spec.capacity_instances,
            "memory_mb": self.used.memory_mb,
            "capacity_memory_mb": spec.capacity_memory_mb,
        });
        if where_ {
            data["endpoint"] = json!(spec.endpoint);
            data["labels"] = json!(spec.labels);
        }
        data
    }

    /// One line for `/status`: up or down, engine, instances against capacity.
    pub(super) fn status_line(&self) -> String {
        let state = match (self.reachable(), &self.health.version) {
            (true, Some(version)) => format!("up, {version}"),
            _ => format!(
                "DOWN: {}",
                self.health.error.as_deref().unwrap_or("no answer")
            ),
        };
        let capacity = match self.host.spec.capacity_instances {
            Some(cap) => format!("{} of {cap} instances", self.used.instances),
            None => format!("{} instance(s)", self.used.instances),
        };
        format!("docker host {}: {state}; {capacity}", self.host.name())
    }

    /// One line for `host_list`, with the endpoint, labels, memory and the next try.
    fn list_line(&self) -> String {
        let (health, spec, used) = (&self.health, &self.host.spec, &self.used);
        let state = match (self.reachable(), &health.version) {
            (true, Some(version)) => format!("answers, {version}"),
            _ => format!(
                "not answering: {}{}",
                health.error.as_deref().unwrap_or("no answer"),
                health
                    .retry_in()
                    .map(|s| format!(" (next try in {s} s)"))
                    .unwrap_or_default()
            ),
        };
        let capacity = |used: u64, cap: Option<u64>, unit: &str| match cap {
            Some(cap) => format!("{used} of {cap} {unit}"),
            None => format!("{used} {unit}"),
        };
        let labels = if spec.labels.is_empty() {
            String::new()
        } else {
            format!(" [{}]", show_labels(&spec.labels))
        };
        format!(
            "• {} ({}){labels}: {state}; {}, {}",
            self.host.name(),
            spec.endpoint,
            capacity(
                used.instances,
                spec.capacity_instances.map(u64::from),
                "instances"
            ),
            capacity(used.memory_mb, spec.capacity_memory_mb, "MiB"),
        )
    }
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let reports = reports(ops).await?;
    let answering = reports.iter().filter(|r| r.reachable()).count();
    let mut text = format!("{answering} of {} Docker host(s) answer", reports.len());
    for report in &reports {
        text.push('\n');
        text.push_str(&report.list_line());
    }
    let data: Vec<Value> = reports.iter().map(|r| r.json(true)).collect();
    Ok(Output::new(text, json!({ "hosts": data })))
}

/// The fleet as the database and the engines agree on it.
pub struct Reconciled {
    pub records: Vec<InstanceRecord>,
    /// Instances with our label that the database does not know.
    pub unknown: Vec<String>,
    /// Set when a host did not answer: its instances keep their stored state.
    pub unreachable: Option<String>,
}

fn note_status(ops: &Ops, r: &InstanceRecord, live: InstanceStatus, why: &str) {
    ops.store().record(NewActivity {
        kind: "instance.status".into(),
        actor: "system".into(),
        instance: Some(r.name.clone()),
        summary: format!(
            "{}: {} -> {} ({why})",
            r.name,
            r.status.as_str(),
            live.as_str()
        ),
        ..NewActivity::default()
    });
}

/// Compares the database with each host: statuses follow the containers (one removed behind our
/// back becomes `missing`), instances on a host that does not answer become `unreachable`, and
/// labelled containers the database does not know are listed.
pub async fn reconcile(ops: &Ops) -> Result<Reconciled, OpError> {
    let mut records = ops.store().list_instances().await?;
    let fleet = ops.fleet();
    let mut down = Vec::new();
    for (host, health) in fleet.probe_all().await {
        if health.reachable != Some(true) {
            let why = health.error.unwrap_or_else(|| "no answer".into());
            down.push(format!("{}: {why}", host.name()));
        }
    }
    let managed = ops.instances().managed().await.unwrap_or_default();
    for r in &mut records {
        if r.status == InstanceStatus::Provisioning {
            continue;
        }
        fleet.adopt(&r.name, &r.host);
        let live = match fleet.on(&r.host) {
            Err(e) => Err(e.to_string()),
            Ok(host) if host.is_down() => Err(host
                .health()
                .error
                .unwrap_or_else(|| "the host does not answer".into())),
            Ok(_) => match ops.instances().state(&r.name).await {
                Ok(state) => Ok(status_of(&state)),
                Err(e @ crate::instance::InstanceError::Unreachable(_)) => Err(e.to_string()),
                Err(e) => {
                    r.last_error = Some(e.to_string());
                    continue;
                }
            },
        };
        let (live, error, why) = match live {
            Ok(live) => (live, r.last_error.clone(), "found by reconciliation"),
            Err(e) => (
                InstanceStatus::Unreachable,
                Some(e),
                "its host does not answer",
            ),
        };
        // A failed instance without a container stays failed: missing would hide the reason.
        let keep_failed = r.status == InstanceStatus::Failed && live == InstanceStatus::Missing;
        if live != r.status && !keep_failed {
            ops.store()
                .set_instance_status(&r.name, live, error.as_deref())
                .await?;
            note_status(ops, r, live, why);
            r.status = live;
            r.last_error = error;
        }
    }
    // Last, so that a host that came back during this pass (any call can find that out) is
    // reported in the same pass as its instances.
    note_host_changes(ops);
    let mut unknown: Vec<String> = managed
        .into_iter()
        .filter(|name| !records.iter().any(|r| &r.name == name))
        .collect();
    unknown.sort();
    unknown.dedup();
    Ok(Reconciled {
        records,
        unknown,
        unreachable: (!down.is_empty()).then(|| down.join("; ")),
    })
}

/// `host.down` / `host.up` in the activity feed for hosts whose reachability changed.
fn note_host_changes(ops: &Ops) {
    for host in ops.fleet().hosts() {
        let (kind, summary) = match host.changed() {
            Some(false) => (
                "host.down",
                format!(
                    "Docker host {} does not answer: {}",
                    host.name(),
                    host.health().error.unwrap_or_else(|| "no answer".into())
                ),
            ),
            Some(true) => (
                "host.up",
                format!("Docker host {} answers again", host.name()),
            ),
            None => continue,
        };
        ops.store().record(NewActivity {
            kind: kind.into(),
            actor: "system".into(),
            summary,
            ..NewActivity::default()
        });
    }
}

pub async fn move_instance(ops: &Ops, args: MoveArgs) -> Result<Output, OpError> {
    let record = ops.store().instance(args.name.trim()).await?;
    let target = args.host.trim();
    let fleet = ops.fleet();
    if fleet.host(target).is_none() {
        return Err(invalid(MOVE.name, format!("there is no host {target:?}")));
    }
    if record.host == target {
        return Err(invalid(
            MOVE.name,
            format!("{} is already on {target}", record.name),
        ));
    }
    let want = Placement::Host(target.to_string());
    place(ops, &record.name, &want, record.memory_mb, true).await?;
    let source = fleet.on(&record.host)?;
    let dest = fleet.on(target)?;
    let name = record.name.clone();
    // Whatever the target already holds under this name is not ours to replace or clean up.
    if dest.run(dest.backend().state(&name)).await? != RunState::Missing {
        return Err(OpError::Conflict(format!(
            "host {target} already has a container for {name}; remove it there first"
        )));
    }
    let key = format!("move:{name}");
    let was_running = record.status == InstanceStatus::Active;
    report_progress(&key, format!("stopping {name} on {}…", source.name()));
    source.run(source.backend().stop(&name)).await?;
    let image = record.image.clone();
    let progress = |line: String| report_progress(&format!("pull:{image}"), line);
    let spec = spec_of(&record);
    let imported = async {
        dest.run(dest.backend().ensure_image(&record.image, &progress))
            .await?;
        report_progress(&key, format!("copying the workspace to {target}…"));
        let archive = source.run(source.backend().export_workspace(&name)).await?;
        // Refuses an existing workspace volume, and removes its own on failure.
        dest.run(dest.backend().import_workspace(&spec, archive))
            .await
    }
    .await;
    let copied = match imported {
        Ok(()) => dest
            .run(dest.backend().create(&spec, None))
            .await
            .map_err(|e| (e, true)),
        Err(e) => Err((e, false)),
    };
    if let Err((e, made_volume)) = copied {
        // Nothing changed on the source but a stop; a half-made copy (ours) goes.
        if made_volume {
            let _ = dest.run(dest.backend().remove(&name, false)).await;
        }
        if was_running {
            let _ = source.run(source.backend().start(&name)).await;
        }
        return Err(OpError::Failed(format!(
            "{name} could not be moved to {target}: {e}; it stays on {}",
            source.name()
        )));
    }
    ops.store().set_instance_host(&name, target).await?;
    fleet.place(&name, target);
    let status = if was_running {
        InstanceStatus::Active
    } else {
        dest.run(dest.backend().stop(&name)).await?;
        InstanceStatus::Stopped
    };
    ops.store().set_instance_status(&name, status, None).await?;
    let mut text = format!(
        "Moved {name} from {} to {target} with its workspace; it is {}.",
        source.name(),
        status.as_str()
    );
    if let Err(e) = source.run(source.backend().remove(&name, false)).await {
        text.push_str(&format!(
            " The old container and workspace on {} could not be removed ({e}); remove them there.",
            source.name()
        ));
    }
    let record = ops.store().instance(&name).await?;
    let mut data: Value = record_json(&record);
    data["moved_from"] = json!(source.name());
    Ok(Output::new(text, data))
}
