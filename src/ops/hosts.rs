//! The Docker hosts of the fleet: where a new instance goes, reconciliation host by host (a host
//! that does not answer marks its instances `unreachable`, nothing is deleted, and the other
//! hosts are compared as usual), `host_list`, and `instance_move`, which carries an instance and
//! its workspace to another host.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::instances::{invalid, record_json, spec_of, status_of};
use super::{Access, OpError, OpSpec, Ops, Output, report_progress};
use crate::instance::{Load, Placement, RunState, fleet::show_labels};
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

/// What each host holds, from the stored instances (leaving `except` out).
fn loads(records: &[InstanceRecord], except: Option<&str>) -> HashMap<String, Load> {
    let mut load: HashMap<String, Load> = HashMap::new();
    for r in records.iter().filter(|r| Some(r.name.as_str()) != except) {
        let l = load.entry(r.host.clone()).or_default();
        l.instances += 1;
        l.memory_mb += u64::try_from(r.memory_mb).unwrap_or(0);
    }
    load
}

/// Chooses the host for a new instance.
pub(super) async fn place(
    ops: &Ops,
    name: &str,
    want: &Placement,
    memory_mb: i64,
) -> Result<String, OpError> {
    let records = ops.store().list_instances().await?;
    let memory = u64::try_from(memory_mb).unwrap_or(0);
    ops.fleet()
        .choose(want, &loads(&records, None), memory)
        .map_err(|why| OpError::Conflict(format!("instance {name} cannot be placed: {why}")))
}

pub async fn list(ops: &Ops) -> Result<Output, OpError> {
    let records = ops.store().list_instances().await?;
    let load = loads(&records, None);
    let mut text = String::new();
    let mut data = Vec::new();
    for (host, health) in ops.fleet().probe_all().await {
        let used = load.get(host.name()).copied().unwrap_or_default();
        let state = match (health.reachable, &health.version) {
            (Some(true), Some(version)) => format!("answers, {version}"),
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
        let labels = if host.spec.labels.is_empty() {
            String::new()
        } else {
            format!(" [{}]", show_labels(&host.spec.labels))
        };
        text.push_str(&format!(
            "\n• {} ({}){labels}: {state}; {}, {}",
            host.name(),
            host.spec.endpoint,
            capacity(
                used.instances,
                host.spec.capacity_instances.map(u64::from),
                "instances"
            ),
            capacity(used.memory_mb, host.spec.capacity_memory_mb, "MiB"),
        ));
        data.push(json!({
            "name": host.name(),
            "endpoint": host.spec.endpoint,
            "labels": host.spec.labels,
            "reachable": health.reachable == Some(true),
            "version": health.version,
            "error": health.error,
            "instances": used.instances,
            "memory_mb": used.memory_mb,
            "capacity_instances": host.spec.capacity_instances,
            "capacity_memory_mb": host.spec.capacity_memory_mb,
        }));
    }
    let answering = data
        .iter()
        .filter(|h| h["reachable"] == json!(true))
        .count();
    let text = format!("{answering} of {} Docker host(s) answer{text}", data.len());
    Ok(Output::new(text, json!({ "hosts": data })))
}

/// One line per host for the status report: up or down, engine, instances against capacity.
pub async fn summary(ops: &Ops) -> Result<Vec<Value>, OpError> {
    let records = ops.store().list_instances().await?;
    let load = loads(&records, None);
    let mut hosts = Vec::new();
    for (host, health) in ops.fleet().probe_all().await {
        let used = load.get(host.name()).copied().unwrap_or_default();
        hosts.push(json!({
            "name": host.name(),
            "reachable": health.reachable == Some(true),
            "version": health.version,
            "error": health.error,
            "instances": used.instances,
            "capacity_instances": host.spec.capacity_instances,
            "memory_mb": used.memory_mb,
            "capacity_memory_mb": host.spec.capacity_memory_mb,
        }));
    }
    Ok(hosts)
}

/// A status line for a host from [`summary`].
pub fn summary_line(h: &Value) -> String {
    let state = if h["reachable"] == json!(true) {
        format!("up, {}", h["version"].as_str().unwrap_or("?"))
    } else {
        format!("DOWN: {}", h["error"].as_str().unwrap_or("no answer"))
    };
    let capacity = match h["capacity_instances"].as_u64() {
        Some(cap) => format!("{} of {cap} instances", h["instances"]),
        None => format!("{} instance(s)", h["instances"]),
    };
    format!(
        "docker host {}: {state}; {capacity}",
        h["name"].as_str().unwrap_or("?")
    )
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
    let records = ops.store().list_instances().await?;
    let memory = u64::try_from(record.memory_mb).unwrap_or(0);
    fleet
        .choose(
            &Placement::Host(target.to_string()),
            &loads(&records, Some(&record.name)),
            memory,
        )
        .map_err(|why| OpError::Conflict(format!("{} cannot move: {why}", record.name)))?;
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
